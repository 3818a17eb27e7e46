/**
 * Folds committed events into the post's Automerge ledger documents, in batches. A fold has two
 * halves: `prepare` reads the journal and does the Automerge work (change, save) without writing
 * anything, so it can run in a worker thread; `commit` is one short SQLite transaction on the
 * writer that stores the new chunks and advances the fold position (`fold.seq`) together, so
 * across any crash an event is folded exactly once. A commit is refused if anyone else folded
 * since the plan was prepared, and the plan is then simply redone.
 *
 * Ledger documents are bounded segments: `ledger/<post>/<day>/<n>` holds at most
 * `SEGMENT_EVENTS` events (DESIGN.md: Automerge costs grow with document size), then the next
 * segment is opened; full segments are never written again.
 */
import * as A from '@automerge/automerge';
import type { PoskoEvent } from '../domain/events.ts';
import { decodeHlc, hlcDay } from '../domain/hlc.ts';
import type { PostId } from '../domain/ids.ts';
import { storageError } from '../store/db.ts';
import { fromRow, type EventRow } from '../store/event-rows.ts';
import { META_FOLD_SEQ, META_SEGMENT_BASE } from '../store/meta.ts';
import type { Store } from '../store/store.ts';
import { appendToLedger, createLedger, hourOf, ledgerSize, type LedgerDoc } from '../sync/ledger.ts';

/** Most events in one ledger segment. */
export const SEGMENT_EVENTS = 5000;

/** The id of a ledger segment. */
export function segmentId(post: string, day: string, n: number): string {
  return `ledger/${post}/${day}/${String(n).padStart(4, '0')}`;
}

/** What one document write of a fold stores. */
export interface DocWrite {
  id: string;
  /** Heads stored before this fold (the commit checks they are still what is stored). */
  baseHeads: string[];
  heads: string[];
  chunk: Uint8Array;
  /** A full `save()`, when the chunks would outgrow the stored snapshot. */
  snapshot: Uint8Array | undefined;
  events: number;
}

/** A prepared fold, ready to commit. */
export interface FoldPlan {
  /** The fold position the plan was made from, and the one it moves to. */
  from: number;
  to: number;
  count: number;
  writes: DocWrite[];
}

function wallOf(e: PoskoEvent): number {
  return decodeHlc(e.hlc)?.wall ?? 0;
}

function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

function freeQuietly(doc: A.Doc<unknown>): void {
  try { A.free(doc); } catch { /* already freed */ }
}

/** The fold position: the journal sequence number folded so far. */
export function foldedSeq(store: Store): number {
  return Number(store.meta.get(META_FOLD_SEQ) ?? 0);
}

/**
 * Stores a prepared fold in one transaction. Returns false (and writes nothing) when the journal
 * was folded by someone else since the plan was made. Durable when it returns true.
 */
export function commitFold(store: Store, plan: FoldPlan): boolean {
  try {
    return store.db.transaction(() => {
      if (foldedSeq(store) !== plan.from) return false;
      for (const w of plan.writes) if (!sameHeads(store.docs.heads(w.id), w.baseHeads)) return false;
      for (const w of plan.writes) store.docs.put(w.id, { chunk: w.chunk, snapshot: w.snapshot, heads: w.heads, events: w.events });
      store.meta.set(META_FOLD_SEQ, String(plan.to));
      return true;
    }).immediate();
  } catch (e) {
    throw storageError(e);
  }
}

/** Folds this post's journal into its ledger segments. */
export class LedgerFolder {
  /** The open segment, kept between folds while it is what is stored; others are freed after use. */
  private open: { id: string; doc: A.Doc<LedgerDoc> } | undefined;
  /** Documents changed by the last `prepare`, until `settle` says whether they were stored. */
  private prepared: { id: string; doc: A.Doc<LedgerDoc> }[] = [];

  constructor(
    private readonly store: Store,
    private readonly post: PostId,
    private readonly actor: string,
    private readonly segmentEvents = SEGMENT_EVENTS,
  ) {}

  /** The journal position folded so far. */
  foldedSeq(): number {
    return foldedSeq(this.store);
  }

  /** How many of this post's events wait to be folded. */
  pending(): number {
    return (this.store.db.prepare('SELECT count(*) AS n FROM events WHERE seq > ? AND post = ? AND merged = 0').get(this.foldedSeq(), this.post) as { n: number }).n;
  }

  /**
   * Prepares a fold of up to `limit` pending events: reads only. Returns undefined when nothing is
   * pending. Call `settle()` with the commit's outcome before preparing again.
   */
  prepare(limit = 2000): FoldPlan | undefined {
    const from = this.foldedSeq();
    const rows = this.store.db
      .prepare('SELECT * FROM events WHERE seq > ? AND post = ? AND merged = 0 ORDER BY seq LIMIT ?')
      .all(from, this.post, limit) as EventRow[];
    if (rows.length === 0) return undefined;
    const byDay = new Map<string, PoskoEvent[]>();
    for (const r of rows) {
      const e = fromRow(r);
      const day = hlcDay({ wall: wallOf(e), counter: 0 });
      let list = byDay.get(day);
      if (!list) byDay.set(day, (list = []));
      list.push(e);
    }
    const writes: DocWrite[] = [];
    try {
      for (const [day, events] of byDay) {
        let rest = events;
        while (rest.length > 0) {
          const { id, base, baseHeads, size } = this.openSegment(day);
          const take = rest.slice(0, this.segmentEvents - size);
          rest = rest.slice(take.length);
          const doc = appendToLedger(base, take, (e) => hourOf(wallOf(e)));
          this.prepared.push({ id, doc });
          const chunk = A.saveIncremental(doc);
          const stored = this.store.docs.info(id);
          const compact = !stored || stored.snapshotBytes === 0 || stored.chunkBytes + chunk.byteLength > stored.snapshotBytes;
          writes.push({ id, baseHeads, heads: A.getHeads(doc), chunk, snapshot: compact ? A.save(doc) : undefined, events: ledgerSize(doc) });
          // A later slice of this fold continues from the changed document.
          this.open = { id, doc };
        }
      }
    } catch (e) {
      this.settle(false);
      throw e;
    }
    return { from, to: rows[rows.length - 1]!.seq!, count: rows.length, writes };
  }

  /** The segment of `day` that takes new events: the last one, or a new one when it is full. */
  private openSegment(day: string): { id: string; base: A.Doc<LedgerDoc>; baseHeads: string[]; size: number } {
    const floor = Number(this.store.meta.get(META_SEGMENT_BASE) ?? 0);
    const segments = this.store.docs.list(`ledger/${this.post}/${day}/`).filter((d) => Number(d.id.slice(d.id.lastIndexOf('/') + 1)) >= floor);
    const last = segments[segments.length - 1];
    const n = last ? Number(last.id.slice(last.id.lastIndexOf('/') + 1)) : 0;
    // Within one prepare the open document may be ahead of what is stored.
    const pending = this.prepared.findLast((p) => p.id.startsWith(`ledger/${this.post}/${day}/`));
    if (pending) {
      const size = ledgerSize(pending.doc);
      const baseHeads = this.baseHeadsOf(pending.id);
      if (size < this.segmentEvents) return { id: pending.id, base: pending.doc, baseHeads, size };
      const next = Number(pending.id.slice(pending.id.lastIndexOf('/') + 1)) + 1;
      return this.fresh(day, next);
    }
    if (!last || last.events >= this.segmentEvents) return this.fresh(day, last ? n + 1 : floor);
    const id = last.id;
    // The cached document is used only if it is what is stored: another folder (the CLI's
    // rebuild) may have folded since, and a stale copy would reuse its change numbers.
    let base = this.open?.id === id && sameHeads(A.getHeads(this.open.doc), last.heads) ? this.open.doc : undefined;
    if (!base) {
      if (this.open) freeQuietly(this.open.doc);
      this.open = undefined;
      base = this.store.docs.load<LedgerDoc>(id, this.actor) ?? createLedger(this.actor, this.post, day);
    }
    return { id, base, baseHeads: last.heads, size: last.events };
  }

  private baseHeadsOf(id: string): string[] {
    return this.store.docs.info(id)?.heads ?? [];
  }

  private fresh(day: string, n: number): { id: string; base: A.Doc<LedgerDoc>; baseHeads: string[]; size: number } {
    return { id: segmentId(this.post, day, n), base: createLedger(this.actor, this.post, day), baseHeads: [], size: 0 };
  }

  /**
   * Tells the folder whether its last plan was stored. If not, the documents it changed in memory
   * are dropped and reloaded next time.
   */
  settle(committed: boolean): void {
    const touched = this.prepared;
    this.prepared = [];
    const latest = new Map<string, A.Doc<LedgerDoc>>();
    for (const p of touched) latest.set(p.id, p.doc); // later entries supersede earlier ones (shared handles)
    if (!committed) {
      for (const doc of latest.values()) freeQuietly(doc);
      if (this.open && latest.has(this.open.id)) this.open = undefined;
      return;
    }
    // Keep only the newest segment open; a change returns a new document sharing the old one's
    // handle, so free by id, never a superseded copy.
    const keep = [...latest].map(([id, doc]) => ({ id, doc }));
    if (this.open && !latest.has(this.open.id)) keep.push(this.open);
    if (keep.length === 0) return;
    const newest = keep.reduce((a, b) => (b.id > a.id ? b : a));
    for (const k of keep) if (k.id !== newest.id) freeQuietly(k.doc);
    this.open = newest;
  }

  /** Prepares and commits one fold here. Returns how many events were folded. Durable on return. */
  foldOnce(limit = 2000): number {
    for (let attempt = 0; attempt < 3; attempt++) {
      const plan = this.prepare(limit);
      if (!plan) return 0;
      let ok = false;
      try {
        ok = commitFold(this.store, plan);
      } finally {
        this.settle(ok);
      }
      if (ok) return plan.count;
    }
    return 0;
  }

  /** Folds everything pending (before a sync, an export or a rebuild). */
  foldAll(): number {
    let n = 0;
    for (let k = this.foldOnce(); k > 0; k = this.foldOnce()) n += k;
    return n;
  }

  /** Frees the cached document. */
  forget(): void {
    if (this.open) freeQuietly(this.open.doc);
    this.open = undefined;
  }
}
