/**
 * Folds committed events into the post's Automerge ledger documents, in batches. Each fold is one
 * SQLite transaction that stores the documents' new chunks and advances the fold position
 * (`fold.seq`), so across any crash an event is folded exactly once: either both commit or neither.
 */
import * as A from '@automerge/automerge';
import type { PoskoEvent } from '../domain/events.ts';
import { decodeHlc, hlcDay } from '../domain/hlc.ts';
import { ledgerDocId, type PostId } from '../domain/ids.ts';
import { storageError } from '../store/db.ts';
import { fromRow, type EventRow } from '../store/event-rows.ts';
import type { Store } from '../store/store.ts';
import { appendToLedger, createLedger, hourOf, ledgerSize, type LedgerDoc } from '../sync/ledger.ts';

const FOLD_SEQ = 'fold.seq';

function wallOf(e: PoskoEvent): number {
  return decodeHlc(e.hlc)?.wall ?? 0;
}

/** Folds this post's journal into its ledger documents. */
export class LedgerFolder {
  /** The open ledger of the current day, kept between folds; older days are freed after use. */
  private open: { id: string; doc: A.Doc<LedgerDoc> } | undefined;

  constructor(private readonly store: Store, private readonly post: PostId, private readonly actor: string) {}

  /** The journal position folded so far. */
  foldedSeq(): number {
    return Number(this.store.meta.get(FOLD_SEQ) ?? 0);
  }

  /** How many of this post's events wait to be folded. */
  pending(): number {
    return (this.store.db.prepare('SELECT count(*) AS n FROM events WHERE seq > ? AND post = ?').get(this.foldedSeq(), this.post) as { n: number }).n;
  }

  /**
   * Folds up to `limit` pending events. Returns how many were folded. Durable on return: the chunks
   * and the new fold position are committed together. The Automerge work (change, save) happens
   * before the write transaction, which only stores bytes, so ingest is never held up behind it;
   * if another folder committed in between, this attempt is dropped and redone.
   */
  foldOnce(limit = 2000): number {
    for (let attempt = 0; attempt < 3; attempt++) {
      const n = this.tryFold(limit);
      if (n !== undefined) return n;
    }
    return 0;
  }

  /** One fold attempt; undefined when another folder got there first. */
  private tryFold(limit: number): number | undefined {
    const from = this.foldedSeq();
    const rows = this.store.db
      .prepare('SELECT * FROM events WHERE seq > ? AND post = ? ORDER BY seq LIMIT ?')
      .all(from, this.post, limit) as EventRow[];
    if (rows.length === 0) return 0;
    const lastSeq = rows[rows.length - 1]!.seq!;
    const byDay = new Map<string, PoskoEvent[]>();
    for (const r of rows) {
      const e = fromRow(r);
      const day = hlcDay({ wall: wallOf(e), counter: 0 });
      let list = byDay.get(day);
      if (!list) byDay.set(day, (list = []));
      list.push(e);
    }
    const updated: { id: string; doc: A.Doc<LedgerDoc> }[] = [];
    const discard = () => {
      // The in-memory documents hold changes that did not commit: drop them, reload next time.
      for (const u of updated) freeQuietly(u.doc);
      if (this.open && updated.some((u) => u.id === this.open!.id)) this.open = undefined;
    };
    let committed: boolean;
    try {
      const writes: { id: string; doc: A.Doc<LedgerDoc>; chunk: Uint8Array; snapshot: Uint8Array | undefined; heads: string[]; events: number }[] = [];
      for (const [day, events] of byDay) {
        const id = ledgerDocId(this.post, day);
        const stored = this.store.docs.info(id);
        const heads = stored?.heads ?? [];
        // The cached document is used only if it is what is stored: another process (the CLI's
        // rebuild) may have folded since, and a stale copy would reuse its change numbers.
        const cached = this.open?.id === id && sameHeads(A.getHeads(this.open.doc), heads) ? this.open.doc : undefined;
        if (this.open?.id === id && !cached) { freeQuietly(this.open.doc); this.open = undefined; }
        const base = cached ?? this.store.docs.load<LedgerDoc>(id, this.actor) ?? createLedger(this.actor, this.post, day);
        const doc = appendToLedger(base, events, (e) => hourOf(wallOf(e)));
        updated.push({ id, doc });
        const chunk = A.saveIncremental(doc);
        const compact = !stored || stored.snapshotBytes === 0 || stored.chunkBytes + chunk.byteLength > stored.snapshotBytes;
        writes.push({ id, doc, chunk, snapshot: compact ? A.save(doc) : undefined, heads, events: ledgerSize(doc) });
      }
      committed = this.store.db.transaction(() => {
        if (this.foldedSeq() !== from) return false;
        for (const w of writes) if (!sameHeads(this.store.docs.heads(w.id), w.heads)) return false;
        for (const w of writes) this.store.docs.put(w.id, w.doc, w.chunk, w.events, w.snapshot);
        this.store.meta.set(FOLD_SEQ, String(lastSeq));
        return true;
      }).immediate();
    } catch (e) {
      discard();
      throw storageError(e);
    }
    if (!committed) {
      discard();
      return undefined;
    }
    // A change returns a new document sharing the old one's handle: free by id, never a superseded doc.
    const keep = [...updated];
    if (this.open && !updated.some((u) => u.id === this.open!.id)) keep.push(this.open);
    const newest = keep.reduce((a, b) => (b.id > a.id ? b : a));
    for (const k of keep) if (k !== newest) freeQuietly(k.doc);
    this.open = newest;
    return rows.length;
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

function sameHeads(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

function freeQuietly(doc: A.Doc<unknown>): void {
  try { A.free(doc); } catch { /* already freed */ }
}
