/**
 * The gateway's storage, opened once: the database and the repositories over it. Everything that
 * reads or writes SQLite goes through here, so the gateway and the CLI share one definition.
 */
import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { Devices } from './devices.ts';
import { DocStore } from './doc-store.ts';
import { openDb } from './db.ts';
import { Meta } from './meta.ts';
import { Queries } from './queries.ts';
import { Views } from './views.ts';

/** Open storage: database, views, documents, devices, settings and read queries. */
export class Store {
  readonly views: Views;
  readonly docs: DocStore;
  readonly meta: Meta;
  readonly devices: Devices;
  readonly queries: Queries;

  private constructor(readonly db: Database.Database, readonly dataDir: string) {
    this.views = new Views(db);
    this.docs = new DocStore(db);
    this.meta = new Meta(db);
    this.devices = new Devices(db);
    this.queries = new Queries(db);
  }

  /** Opens (creating and migrating if needed) the store in `dataDir`. */
  static open(dataDir: string): Store {
    return new Store(openDb(dataDir), dataDir);
  }

  /** This gateway's Automerge actor id, created on first use and kept until a restore. */
  actorId(): string {
    return this.meta.getOrInit('actor', () => randomBytes(16).toString('hex'));
  }

  /**
   * Makes the actor id start with the identity's prefix (peers accept changes only from actors
   * of the gateway allowed to write a document): a new actor id when it does not.
   */
  ensureActorPrefix(prefix: string): string {
    const actor = this.actorId();
    if (actor.startsWith(prefix) && actor.length === prefix.length + 16) return actor;
    const fresh = prefix + randomBytes(8).toString('hex');
    this.meta.set('actor', fresh);
    return fresh;
  }

  /** Closes the database; WAL content is checkpointed by SQLite on close. */
  close(): void {
    if (this.db.open) this.db.close();
  }
}
