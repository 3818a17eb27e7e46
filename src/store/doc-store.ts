/**
 * Automerge document storage in SQLite: per document a snapshot (`save()`) plus incremental chunks
 * appended after it; when the chunks outgrow the snapshot they are compacted into a new snapshot,
 * in the same transaction. Writes run inside the caller's transaction, so a document change and
 * whatever it records (e.g. which events were folded) commit together.
 */
import * as A from '@automerge/automerge';
import type Database from 'better-sqlite3';

interface DocRow {
  id: string; snapshot: Buffer | null; snapshot_bytes: number; chunk_bytes: number; chunks: number; heads: string; events: number;
}

/** What is stored about one document. */
export interface DocInfo {
  id: string;
  snapshotBytes: number;
  chunkBytes: number;
  chunks: number;
  heads: string[];
  events: number;
}

function toInfo(r: Omit<DocRow, 'snapshot'>): DocInfo {
  return { id: r.id, snapshotBytes: r.snapshot_bytes, chunkBytes: r.chunk_bytes, chunks: r.chunks, heads: JSON.parse(r.heads) as string[], events: r.events };
}

/** SQLite-backed storage of Automerge documents. */
export class DocStore {
  private readonly getStmt: Database.Statement;
  private readonly chunksStmt: Database.Statement;
  private readonly upsertStmt: Database.Statement;
  private readonly appendChunkStmt: Database.Statement;
  private readonly dropChunksStmt: Database.Statement;
  private readonly listStmt: Database.Statement;
  private readonly infoStmt: Database.Statement;

  constructor(private readonly db: Database.Database) {
    this.getStmt = db.prepare('SELECT * FROM docs WHERE id = ?');
    this.chunksStmt = db.prepare('SELECT data FROM doc_chunks WHERE doc_id = ? ORDER BY n');
    this.upsertStmt = db.prepare(
      `INSERT INTO docs (id, snapshot, snapshot_bytes, chunk_bytes, chunks, heads, events)
       VALUES (@id, @snapshot, @snapshot_bytes, @chunk_bytes, @chunks, @heads, @events)
       ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot, snapshot_bytes = excluded.snapshot_bytes,
         chunk_bytes = excluded.chunk_bytes, chunks = excluded.chunks, heads = excluded.heads, events = excluded.events`,
    );
    this.appendChunkStmt = db.prepare('INSERT INTO doc_chunks (doc_id, n, data) VALUES (?, ?, ?)');
    this.dropChunksStmt = db.prepare('DELETE FROM doc_chunks WHERE doc_id = ?');
    this.infoStmt = db.prepare('SELECT id, snapshot_bytes, chunk_bytes, chunks, heads, events FROM docs WHERE id = ?');
    this.listStmt = db.prepare('SELECT id, snapshot_bytes, chunk_bytes, chunks, heads, events FROM docs WHERE id LIKE ? ORDER BY id');
  }

  /** Loads a document (snapshot, then every chunk), or undefined when it is not stored. */
  load<T>(id: string, actor?: string): A.Doc<T> | undefined {
    const row = this.getStmt.get(id) as DocRow | undefined;
    if (!row) return undefined;
    const opts = actor ? { actor: actor as A.ActorId } : undefined;
    let doc = row.snapshot ? A.load<T>(row.snapshot, opts) : A.init<T>(opts);
    for (const { data } of this.chunksStmt.all(id) as { data: Buffer }[]) doc = A.loadIncremental(doc, data);
    return doc;
  }

  /**
   * Records a document's new changes: `chunk` is `saveIncremental(doc)` since the last store. With
   * `snapshot` (`save(doc)`, made by the caller outside the transaction: it is the slow part) the
   * snapshot is replaced and the chunks dropped; callers compact when the chunks would outgrow
   * the snapshot. Call inside a transaction; durable when that transaction commits.
   */
  put(id: string, w: { chunk: Uint8Array; snapshot: Uint8Array | undefined; heads: string[]; events: number }): void {
    const row = this.getStmt.get(id) as DocRow | undefined;
    const heads = JSON.stringify(w.heads);
    if (w.snapshot || !row || !row.snapshot) {
      // A document's first write must be a snapshot: chunks alone start from nothing.
      const snap = w.snapshot ?? w.chunk;
      this.dropChunksStmt.run(id);
      this.upsertStmt.run({ id, snapshot: snap, snapshot_bytes: snap.byteLength, chunk_bytes: 0, chunks: 0, heads, events: w.events });
      return;
    }
    if (w.chunk.byteLength > 0) this.appendChunkStmt.run(id, row.chunks, w.chunk);
    this.upsertStmt.run({
      id, snapshot: row.snapshot, snapshot_bytes: row.snapshot_bytes, chunk_bytes: row.chunk_bytes + w.chunk.byteLength,
      chunks: row.chunks + (w.chunk.byteLength > 0 ? 1 : 0), heads, events: w.events,
    });
  }

  /** Every stored document's heads. */
  allHeads(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const r of this.db.prepare('SELECT id, heads FROM docs').all() as { id: string; heads: string }[]) out.set(r.id, JSON.parse(r.heads) as string[]);
    return out;
  }

  /** What is stored about one document, if it is stored. */
  info(id: string): DocInfo | undefined {
    const r = this.infoStmt.get(id) as Omit<DocRow, 'snapshot'> | undefined;
    return r && toInfo(r);
  }

  /** The heads stored for a document (empty when it is not stored). */
  heads(id: string): string[] {
    const r = this.db.prepare('SELECT heads FROM docs WHERE id = ?').get(id) as { heads: string } | undefined;
    return r ? (JSON.parse(r.heads) as string[]) : [];
  }

  /** What is stored about the documents whose id starts with `prefix`. */
  list(prefix = ''): DocInfo[] {
    return (this.listStmt.all(`${prefix}%`) as Omit<DocRow, 'snapshot'>[]).map(toInfo);
  }
}
