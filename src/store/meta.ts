/**
 * Small key-value settings kept in the database (the gateway's actor id, the fold position).
 * Writes join the caller's transaction when there is one.
 */
import type Database from 'better-sqlite3';

/** The journal sequence number folded into ledger documents so far. */
export const META_FOLD_SEQ = 'fold.seq';

/**
 * The first ledger segment number this gateway may write (0; after a restore from backup, a
 * random number from 1000): a restored post never writes again into a segment it may have written
 * before the backup was lost (HQ may hold a later version of it, and two versions of one segment
 * written apart would hide each other's hour buckets when merged).
 */
export const META_SEGMENT_BASE = 'ledger.segment-base';

/** Typed access to the `meta` table. */
export class Meta {
  private readonly getStmt: Database.Statement;
  private readonly setStmt: Database.Statement;

  constructor(db: Database.Database) {
    this.getStmt = db.prepare('SELECT value FROM meta WHERE key = ?');
    this.setStmt = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  }

  /** The value under `key`, if set. */
  get(key: string): string | undefined {
    return (this.getStmt.get(key) as { value: string } | undefined)?.value;
  }

  /** Sets `key`; durable when the surrounding transaction (or this statement) commits. */
  set(key: string, value: string): void {
    this.setStmt.run(key, value);
  }

  /** The value under `key`, or `make()` stored there first. */
  getOrInit(key: string, make: () => string): string {
    const v = this.get(key);
    if (v !== undefined) return v;
    const fresh = make();
    this.set(key, fresh);
    return fresh;
  }
}
