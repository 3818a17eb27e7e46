/**
 * The SQLite side of sync: the `Replica` the protocol runs over. It serves chunks of stored
 * documents, applies a peer's chunks after checking them (hash, completeness, that every change
 * is by an actor allowed to write that document, that the content is valid), updates the views
 * from what each merge added, and keeps per-peer state: enrolment, what each peer has, sequence
 * numbers, bytes and budgets, and the refusals.
 */
import * as A from '@automerge/automerge';
import { createHash, randomBytes } from 'node:crypto';
import { PoskoError, isPoskoError, type ErrorCode } from '../domain/errors.ts';
import type { PoskoEvent } from '../domain/events.ts';
import type { ParcelId } from '../domain/ids.ts';
import { compareEvents } from '../domain/parcel-state.ts';
import { DIRECTORY_DOC, directoryEntries, directoryRoot, enrollInDirectory, type DirectoryDoc, type DirectoryEntry } from '../sync/directory.ts';
import { ledgerPost, sameHeads, writersOf, type DocHeads } from '../sync/documents.ts';
import { actorPrefix, headsStatementBytes, signBytes, verifyBytes, type Identity, type PublicIdentity, type Role } from '../sync/identity.ts';
import { manifestId, manifestRoot, updateManifest, type ManifestDoc } from '../sync/manifest.ts';
import { addedEntries, entryToEvent, ledgerSize, type LedgerDoc } from '../sync/ledger.ts';
import type { Refusal, Statement } from '../sync/messages.ts';
import type { ApplyResult, Chunk, ChunkOut, Replica } from '../sync/session.ts';
import { storageError } from './db.ts';
import type { Store } from './store.ts';

/** A peer as stored. */
export interface PeerRow {
  id: string; role: Role; public_key: string; status: 'enrolled' | 'pending' | 'revoked'; source: 'cli' | 'directory' | 'request';
  url: string | null; created_at: string; recv_seq: number; last_attempt_at: string | null; last_success_at: string | null; last_heard_at: string | null;
  last_error: string | null; failures: number; next_attempt_ms: number; bytes_sent: number; bytes_received: number;
  budget_bytes: number | null; budget_day: string | null; budget_used: number;
}

/** Hooks for the gateway: merged events (to move the clock on), refusals (to log). */
export interface SyncStoreHooks {
  onEvents?: (events: readonly PoskoEvent[]) => void;
  onRefused?: (peer: string, r: Refusal) => void;
  now?: () => number;
}

function freeQuietly(doc: A.Doc<unknown> | undefined): void {
  if (!doc) return;
  try { A.free(doc); } catch { /* already freed */ }
}

/** What applying a chunk built on changes this replica lacks gives: nothing, not a refusal. */
const STALE = { changed: false, events: [] as PoskoEvent[], stale: true } as const;

function refusal(doc: string, code: ErrorCode, message: string): PoskoError {
  return new PoskoError(code, message, { doc });
}

/**
 * The last few documents sync loaded, each valid only while the stored heads are its heads (a
 * fold or another process may have written since). A multi-round exchange then loads a big
 * ledger once, not once per message.
 */
class DocCache {
  private readonly docs = new Map<string, { heads: string; doc: A.Doc<unknown> }>();

  constructor(private readonly size = 2) {}

  private static key(heads: readonly string[]): string {
    return [...heads].sort().join(',');
  }

  /** The cached document if it is what is stored (it stays cached: read it, do not consume it). */
  peek(id: string, storedHeads: readonly string[]): A.Doc<unknown> | undefined {
    const e = this.docs.get(id);
    return e && e.heads === DocCache.key(storedHeads) ? e.doc : undefined;
  }

  /** Removes and returns the cached document if it is what is stored (for a caller to consume). */
  take(id: string, storedHeads: readonly string[]): A.Doc<unknown> | undefined {
    const e = this.docs.get(id);
    if (!e) return undefined;
    this.docs.delete(id);
    if (e.heads === DocCache.key(storedHeads)) return e.doc;
    freeQuietly(e.doc);
    return undefined;
  }

  put(id: string, doc: A.Doc<unknown>): void {
    const old = this.docs.get(id);
    if (old && old.doc !== doc) freeQuietly(old.doc);
    this.docs.delete(id);
    this.docs.set(id, { heads: DocCache.key(A.getHeads(doc)), doc });
    while (this.docs.size > this.size) {
      const [first] = this.docs.keys();
      freeQuietly(this.docs.get(first!)!.doc);
      this.docs.delete(first!);
    }
  }
}

/** The SQLite-backed replica of one gateway. */
export class SyncStore implements Replica {
  private readonly now: () => number;
  private readonly writerActor: string;
  private readonly cache = new DocCache();
  /** Per peer, the last message answered and its answer (in memory: lost on restart, harmlessly). */
  private readonly answers = new Map<string, { request: string; answer: Uint8Array }>();

  constructor(readonly store: Store, readonly me: Identity, private readonly hooks: SyncStoreHooks = {}) {
    this.now = hooks.now ?? Date.now;
    this.writerActor = actorPrefix(me.publicKey) + randomBytes(8).toString('hex');
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  // ---- peers ----

  peer(id: string): PeerRow | undefined {
    return this.store.db.prepare('SELECT * FROM peers WHERE id = ?').get(id) as PeerRow | undefined;
  }

  peers(): PeerRow[] {
    return this.store.db.prepare('SELECT * FROM peers ORDER BY id').all() as PeerRow[];
  }

  enrolled(id: string): PublicIdentity | undefined {
    const p = this.peer(id);
    return p && p.status === 'enrolled' ? { id: p.id, role: p.role, publicKey: p.public_key } : undefined;
  }

  /**
   * Enrolls (or re-enrolls with a new key, URL or role) a gateway. At HQ the post directory
   * document records it too, so every post learns it at its next sync.
   */
  enroll(p: { id: string; role: Role; publicKey: string; url?: string | null; budgetBytes?: number | null }): PeerRow {
    if (p.id === this.me.id) throw new PoskoError('VALIDATION', `${p.id} is this gateway itself`);
    const run = this.store.db.transaction(() => {
      const old = this.peer(p.id);
      this.store.db.prepare(
        `INSERT INTO peers (id, role, public_key, status, source, url, created_at, budget_bytes)
         VALUES (@id, @role, @key, 'enrolled', 'cli', @url, @at, @budget)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, public_key = excluded.public_key, status = 'enrolled',
           source = 'cli', url = coalesce(excluded.url, peers.url), budget_bytes = coalesce(excluded.budget_bytes, peers.budget_bytes),
           recv_seq = CASE WHEN peers.public_key = excluded.public_key THEN peers.recv_seq ELSE 0 END`,
      ).run({ id: p.id, role: p.role, key: p.publicKey, url: p.url ?? null, at: this.iso(), budget: p.budgetBytes ?? null });
      if (old && old.public_key !== p.publicKey) this.store.db.prepare('DELETE FROM peer_heads WHERE peer = ?').run(p.id);
      if (this.me.role === 'hq') this.writeDirectory({ id: p.id, role: p.role, publicKey: p.publicKey, url: p.url ?? old?.url ?? null, revoked: false });
    });
    run.immediate();
    return this.peer(p.id)!;
  }

  /** Approves a pending enrollment request. */
  approve(id: string): PeerRow {
    const p = this.peer(id);
    if (!p || p.status !== 'pending') throw new PoskoError('NOT_FOUND', `no pending enrollment request from ${id}`);
    return this.enroll({ id, role: p.role, publicKey: p.public_key, url: p.url });
  }

  /** Stops trusting a gateway (at HQ, for every post too). */
  revoke(id: string): void {
    const p = this.peer(id);
    if (!p) throw new PoskoError('NOT_FOUND', `no peer ${id}`);
    this.store.db.transaction(() => {
      this.store.db.prepare("UPDATE peers SET status = 'revoked' WHERE id = ?").run(id);
      if (this.me.role === 'hq') this.writeDirectory({ id, role: p.role, publicKey: p.public_key, url: p.url, revoked: true });
    }).immediate();
  }

  /** Sets where a peer is reached (null: it only reaches us) and its daily byte budget. */
  configure(id: string, c: { url?: string | null; budgetBytes?: number | null }): void {
    if (!this.peer(id)) throw new PoskoError('NOT_FOUND', `no peer ${id}`);
    if (c.url !== undefined) this.store.db.prepare('UPDATE peers SET url = ? WHERE id = ?').run(c.url, id);
    if (c.budgetBytes !== undefined) this.store.db.prepare('UPDATE peers SET budget_bytes = ? WHERE id = ?').run(c.budgetBytes, id);
  }

  requestEnrollment(p: PublicIdentity): boolean {
    // The first request for an id stands (the operator compares its fingerprint before
    // approving); a request always asks for the role of a post.
    this.store.db.prepare(
      `INSERT INTO peers (id, role, public_key, status, source, created_at) VALUES (?, 'post', ?, 'pending', 'request', ?)
       ON CONFLICT (id) DO NOTHING`,
    ).run(p.id, p.publicKey, this.iso());
    const row = this.peer(p.id);
    return row?.status === 'pending' && row.public_key === p.publicKey;
  }

  /** Writes one entry of the directory document (HQ only), inside the caller's transaction. */
  private writeDirectory(e: DirectoryEntry): void {
    this.writeOwn<DirectoryDoc>(DIRECTORY_DOC, (doc) => enrollInDirectory(doc, e), () => directoryRoot(actorPrefix(this.me.publicKey)));
  }

  /**
   * Changes a document this gateway writes (directory, manifest), inside the caller's transaction.
   * Each process writes with an actor of its own under this gateway's prefix: the CLI and the
   * gateway may both write, and their changes must never share (actor, seq).
   */
  private writeOwn<T>(id: string, change: (doc: A.Doc<T>) => A.Doc<T>, root: () => A.Doc<T>): void {
    const actor = this.writerActor;
    let before = this.store.docs.load<T>(id, actor);
    if (!before) {
      const r = root();
      before = A.clone(r, actor as A.ActorId);
      freeQuietly(r);
    }
    const beforeHeads = A.getHeads(before);
    const after = change(before);
    try {
      if (after === before) return;
      const chunk = beforeHeads.length === 0 ? A.save(after) : A.saveSince(after, beforeHeads);
      const info = this.store.docs.info(id);
      const compact = !info || info.chunkBytes + chunk.byteLength > info.snapshotBytes;
      this.store.docs.put(id, { chunk, snapshot: compact ? A.save(after) : undefined, heads: A.getHeads(after), events: 0 });
    } finally {
      freeQuietly(after);
      if (after !== before) freeQuietly(before);
    }
  }

  /**
   * Brings this post's manifest up to date with its ledger segments (run before a sync or an
   * export, after folding). Only the newest segment of the newest day is open; the rest are sealed.
   */
  refreshManifest(): void {
    const ledgers = this.store.docs.list(`ledger/${this.me.id}/`);
    const last = ledgers[ledgers.length - 1]?.id;
    const map = new Map(ledgers.map((l) => [l.id, { events: l.events, heads: l.heads, sealed: l.id !== last }]));
    try {
      this.store.db.transaction(() => {
        this.writeOwn<ManifestDoc>(manifestId(this.me.id), (doc) => updateManifest(doc, this.me.id, this.me.role, map),
          () => manifestRoot(actorPrefix(this.me.publicKey), this.me.id, this.me.role));
      }).immediate();
    } catch (e) {
      throw storageError(e);
    }
  }

  /** Learns the gateways in a merged directory (HQ's word), without overriding local enrolments. */
  private learnDirectory(doc: A.Doc<DirectoryDoc>): void {
    for (const e of directoryEntries(doc).entries) {
      if (e.id === this.me.id) continue;
      const old = this.peer(e.id);
      if (old && old.source !== 'directory' && old.status !== 'pending') continue;
      this.store.db.prepare(
        `INSERT INTO peers (id, role, public_key, status, source, url, created_at) VALUES (@id, @role, @key, @status, 'directory', @url, @at)
         ON CONFLICT (id) DO UPDATE SET role = excluded.role, public_key = excluded.public_key, status = excluded.status,
           source = 'directory', url = coalesce(peers.url, excluded.url)`,
      ).run({ id: e.id, role: e.role, key: e.publicKey, status: e.revoked ? 'revoked' : 'enrolled', url: e.url, at: this.iso() });
    }
  }

  // ---- sequence numbers, budgets, status ----

  nextSeq(): number {
    return this.store.db.transaction(() => {
      const n = Number(this.store.meta.get('sync.seq') ?? 0) + 1;
      this.store.meta.set('sync.seq', String(n));
      return n;
    }).immediate();
  }

  skipSeq(seq: number): void {
    if (Number(this.store.meta.get('sync.seq') ?? 0) < seq) this.store.meta.set('sync.seq', String(seq));
  }

  acceptSeq(peer: string, seq: number): void {
    const p = this.peer(peer);
    if (p && seq <= p.recv_seq) {
      throw new PoskoError('SYNC_REPLAYED', `message ${seq} from ${peer} was already seen (last ${p.recv_seq}); a replay changes nothing`, { lastSeen: p.recv_seq });
    }
    this.store.db.prepare('UPDATE peers SET recv_seq = ? WHERE id = ?').run(seq, peer);
  }

  private today(): string {
    return this.iso().slice(0, 10);
  }

  budgetLeft(peer: string): number {
    const p = this.peer(peer);
    if (!p || p.budget_bytes === null) return Number.POSITIVE_INFINITY;
    const used = p.budget_day === this.today() ? p.budget_used : 0;
    return Math.max(0, p.budget_bytes - used);
  }

  spend(peer: string, sent: number, received: number): void {
    const day = this.today();
    this.store.db.prepare(
      `UPDATE peers SET bytes_sent = bytes_sent + @sent, bytes_received = bytes_received + @received,
         budget_used = CASE WHEN budget_day = @day THEN budget_used + @sent ELSE @sent END, budget_day = @day
       WHERE id = @peer`,
    ).run({ peer, sent, received, day });
  }

  /** Records the outcome of an attempt to sync with a peer, and when to try next. */
  recordAttempt(peer: string, outcome: { ok: true } | { ok: false; error: string; nextAttemptMs: number }): void {
    const at = this.iso();
    if (outcome.ok) {
      this.store.db.prepare('UPDATE peers SET last_attempt_at = ?, last_success_at = ?, last_error = NULL, failures = 0, next_attempt_ms = 0 WHERE id = ?').run(at, at, peer);
    } else {
      this.store.db.prepare('UPDATE peers SET last_attempt_at = ?, last_error = ?, failures = failures + 1, next_attempt_ms = ? WHERE id = ?')
        .run(at, outcome.error.slice(0, 500), outcome.nextAttemptMs, peer);
    }
  }

  lastAnswer(peer: string, request: string): Uint8Array | undefined {
    const a = this.answers.get(peer);
    return a && a.request === request ? a.answer : undefined;
  }

  rememberAnswer(peer: string, request: string, answer: Uint8Array): void {
    this.answers.set(peer, { request, answer });
  }

  heard(peer: string): void {
    this.store.db.prepare('UPDATE peers SET last_heard_at = ? WHERE id = ?').run(this.iso(), peer);
  }

  /** The most recent refusals (newest first). */
  refusals(limit = 50): { at: string; peer: string; doc_id: string; code: string; message: string }[] {
    return this.store.db.prepare('SELECT at, peer, doc_id, code, message FROM sync_refusals ORDER BY id DESC LIMIT ?').all(limit) as never;
  }

  /** How many documents a peer lacks (by what it is known to have). */
  pendingFor(peer: string): number {
    const known = this.known(peer);
    let n = 0;
    for (const [doc, heads] of this.state()) if (heads.length > 0 && !sameHeads(heads, known.get(doc))) n++;
    return n;
  }

  // ---- replica state ----

  state(): DocHeads {
    return this.store.docs.allHeads();
  }

  known(peer: string): DocHeads {
    const out: DocHeads = new Map();
    for (const r of this.store.db.prepare('SELECT doc_id, heads FROM peer_heads WHERE peer = ?').all(peer) as { doc_id: string; heads: string }[]) {
      out.set(r.doc_id, JSON.parse(r.heads) as string[]);
    }
    return out;
  }

  learn(peer: string, entries: Iterable<readonly [string, readonly string[]]>, replace = false): void {
    const put = this.store.db.prepare(
      'INSERT INTO peer_heads (peer, doc_id, heads) VALUES (?, ?, ?) ON CONFLICT (peer, doc_id) DO UPDATE SET heads = excluded.heads',
    );
    this.store.db.transaction(() => {
      if (replace) this.store.db.prepare('DELETE FROM peer_heads WHERE peer = ?').run(peer);
      for (const [doc, heads] of entries) put.run(peer, doc, JSON.stringify([...heads].sort()));
    }).immediate();
  }

  chunkSince(docId: string, since: readonly string[], maxBytes = Number.POSITIVE_INFINITY): ChunkOut | undefined {
    const info = this.store.docs.info(docId);
    if (!info || info.heads.length === 0 || sameHeads(info.heads, since)) return undefined;
    const mine = this.writes(docId);
    let doc = this.cache.peek(docId, info.heads);
    if (!doc) {
      doc = this.store.docs.load<unknown>(docId);
      if (!doc) return undefined;
      this.cache.put(docId, doc);
    }
    const have = since.filter((h) => A.hasHeads(doc, [h]));
    const heads = A.getHeads(doc);
    // A fresh peer gets the saved document, not its history change by change (unless it is
    // ours and too big for one message). Uncompressed: the message's brotli does far better
    // than Automerge's own deflate.
    if (have.length === 0 && (!mine || info.snapshotBytes <= maxBytes)) {
      return { bytes: A.getBackend(doc).saveNoCompress(), full: true, heads, sigs: this.statementsFor(docId, heads), partial: false };
    }
    const bytes = A.saveSince(doc, have);
    if (bytes.length === 0) return undefined;
    if (bytes.length <= maxBytes || !mine) return { bytes, full: false, heads, sigs: this.statementsFor(docId, heads), partial: false };
    // Too big for one message over this link, and ours to sign: send a prefix of the changes
    // (in causal order), signed at its own heads; the rest follows in the next messages.
    const changes = A.getChangesSince(doc, have);
    const metas = A.getChangesMetaSince(doc, have);
    let n = 0;
    let size = 0;
    while (n < changes.length && (n === 0 || size + changes[n]!.length <= maxBytes)) size += changes[n++]!.length;
    if (n === changes.length) return { bytes, full: false, heads, sigs: this.statementsFor(docId, heads), partial: false };
    const taken = metas.slice(0, n);
    const deps = new Set(taken.flatMap((m) => m.deps));
    const prefixHeads = taken.map((m) => m.hash).filter((h) => !deps.has(h));
    return { bytes: Buffer.concat(changes.slice(0, n)), full: false, heads: prefixHeads, sigs: this.statementsFor(docId, prefixHeads), partial: true };
  }

  /** True when this gateway writes (and so signs) a document. */
  private writes(docId: string): boolean {
    const w = writersOf(docId);
    return w.post === this.me.id || (w.hq && this.me.role === 'hq');
  }

  /**
   * The statements that authenticate a document at `heads`: this gateway's own signature when
   * it writes the document, and the latest one kept from each other writer.
   */
  private statementsFor(docId: string, heads: readonly string[]): Statement[] {
    const out: Statement[] = [];
    if (this.writes(docId)) {
      out.push({ signer: this.me.id, heads: [...heads].sort(), sig: signBytes(this.me, headsStatementBytes(docId, heads)).toString('base64url') });
    }
    for (const r of this.store.db.prepare('SELECT signer, heads, sig FROM doc_sigs WHERE doc_id = ? AND signer != ?').all(docId, this.me.id) as { signer: string; heads: string; sig: string }[]) {
      out.push({ signer: r.signer, heads: JSON.parse(r.heads) as string[], sig: r.sig });
    }
    return out;
  }

  /** The gateways allowed to write a document, by the actor-id prefix of their changes. */
  private writersByPrefix(docId: string): Map<string, PublicIdentity> {
    const w = writersOf(docId);
    const out = new Map<string, PublicIdentity>();
    const add = (p: PublicIdentity) => out.set(actorPrefix(p.publicKey), p);
    const self = { id: this.me.id, role: this.me.role, publicKey: this.me.publicKey };
    if (w.post) {
      const p = w.post === this.me.id ? self : this.enrolled(w.post);
      if (p) add(p);
    }
    if (w.hq) {
      if (this.me.role === 'hq') add(self);
      for (const p of this.store.db.prepare("SELECT id, role, public_key FROM peers WHERE role = 'hq' AND status = 'enrolled'").all() as { id: string; role: Role; public_key: string }[]) {
        add({ id: p.id, role: p.role, publicKey: p.public_key });
      }
    }
    return out;
  }

  /**
   * Checks that every change a chunk adds is by a gateway allowed to write the document and is
   * covered by that gateway's signature over heads it descends from. Returns the statements
   * that checked out (to keep for passing the document on).
   */
  private checkAuthors(id: string, after: A.Doc<unknown>, added: A.ChangeMetadata[], sigs: readonly Statement[]): Statement[] {
    const writers = this.writersByPrefix(id);
    const valid: { s: Statement; uncovered: Set<string> }[] = [];
    for (const s of sigs) {
      const signer = [...writers.values()].find((w) => w.id === s.signer);
      if (!signer) continue;
      if (!verifyBytes(signer.publicKey, headsStatementBytes(id, s.heads), Buffer.from(s.sig, 'base64url'))) {
        throw refusal(id, 'NOT_OWNER', `the signature of ${s.signer} over ${id} does not verify`);
      }
      if (!A.hasHeads(after, s.heads)) continue;
      valid.push({ s, uncovered: new Set(A.getChangesMetaSince(after, s.heads).map((c) => c.hash)) });
    }
    for (const ch of added) {
      const author = writers.get(ch.actor.slice(0, 32));
      if (!author) throw refusal(id, 'NOT_OWNER', `a change by actor ${ch.actor.slice(0, 12)}… is not by a gateway allowed to write ${id}`);
      if (!valid.some((v) => v.s.signer === author.id && !v.uncovered.has(ch.hash))) {
        throw refusal(id, 'NOT_OWNER', `a change to ${id} in ${author.id}'s name is not covered by ${author.id}'s signature`);
      }
    }
    return valid.map((v) => v.s);
  }

  /**
   * Keeps the statements that cover this document: per writer, every statement that no other
   * statement of that writer covers (one, unless its history forked, as after a restore).
   */
  private keepStatements(id: string, after: A.Doc<unknown>, statements: readonly Statement[]): void {
    const kept = this.store.db.prepare('SELECT signer, heads FROM doc_sigs WHERE doc_id = ?').all(id) as { signer: string; heads: string }[];
    const del = this.store.db.prepare('DELETE FROM doc_sigs WHERE doc_id = ? AND signer = ? AND heads = ?');
    const put = this.store.db.prepare('INSERT OR IGNORE INTO doc_sigs (doc_id, signer, heads, sig) VALUES (?, ?, ?, ?)');
    // `a` covers `b` when every head of b is a, or an ancestor of a.
    const covers = (a: readonly string[], b: readonly string[]) => {
      if (!A.hasHeads(after, [...a]) || !A.hasHeads(after, [...b])) return false;
      const beyond = new Set(A.getChangesMetaSince(after, [...a]).map((c) => c.hash));
      return b.every((h) => !beyond.has(h));
    };
    for (const s of statements) {
      if (s.signer === this.me.id) continue;
      const mine = kept.filter((k) => k.signer === s.signer).map((k) => ({ key: k.heads, heads: JSON.parse(k.heads) as string[] }));
      if (mine.some((k) => covers(k.heads, s.heads))) continue;
      for (const k of mine) if (covers(s.heads, k.heads)) del.run(id, s.signer, k.key);
      const key = JSON.stringify([...s.heads].sort());
      put.run(id, s.signer, key, s.sig);
      kept.push({ signer: s.signer, heads: key });
    }
  }

  apply(from: string, chunks: readonly Chunk[]): ApplyResult {
    const result: ApplyResult = { acks: [], refused: [], changed: 0, events: 0 };
    const merged: PoskoEvent[] = [];
    const displaced: ParcelId[] = [];
    try {
      this.store.db.transaction(() => {
        for (const c of chunks) {
          try {
            const out = this.store.db.transaction(() => this.applyOne(c))();
            if (out.changed) result.changed++;
            result.events += out.events.length;
            merged.push(...out.events);
            displaced.push(...(out.displaced ?? []));
          } catch (e) {
            if (isPoskoError(e) && e.status === 422) {
              const r: Refusal = { doc: c.meta.doc, code: e.code, message: e.message };
              result.refused.push(r);
              this.store.db.prepare('INSERT INTO sync_refusals (at, peer, doc_id, code, message) VALUES (?, ?, ?, ?, ?)')
                .run(this.iso(), from, c.meta.doc, r.code, r.message.slice(0, 2000));
              this.hooks.onRefused?.(from, r);
            } else throw e;
          }
          result.acks.push([c.meta.doc, this.store.docs.heads(c.meta.doc)]);
        }
        // Parcels and stock once for everything merged here: a parcel that several documents
        // touch (a bulk line handled at many posts) is derived once, not once per document.
        this.store.views.applyEvents(merged);
        if (displaced.length > 0) this.store.views.refreshParcels(displaced);
      }).immediate();
    } catch (e) {
      throw isPoskoError(e) ? e : storageError(e);
    }
    if (merged.length > 0) this.hooks.onEvents?.(merged);
    return result;
  }

  /** Applies one chunk inside a savepoint; throws a 422 PoskoError to refuse it. */
  private applyOne(c: Chunk): { changed: boolean; events: PoskoEvent[]; displaced?: ParcelId[]; stale?: boolean } {
    const id = c.meta.doc;
    if (c.bytes.length !== c.meta.len || createHash('sha256').update(c.bytes).digest('hex') !== c.meta.sha) {
      throw refusal(id, 'CHUNK_CORRUPT', 'the chunk does not match its SHA-256');
    }
    const stored = this.store.docs.info(id);
    let before = stored ? this.cache.take(id, stored.heads) ?? this.store.docs.load<unknown>(id) : undefined;
    const hadBefore = before !== undefined;
    const beforeHeads = before ? A.getHeads(before) : [];
    let after: A.Doc<unknown> | undefined;
    let keep = false;
    try {
      try {
        // A whole document is loaded on its own first: that is where Automerge reports damage
        // (merged into a document with history, a damaged chunk is often ignored in silence).
        if (!before) after = A.load(c.bytes);
        else {
          if (c.meta.full) freeQuietly(A.load(c.bytes));
          const base = before;
          before = undefined; // loadIncremental takes it over
          after = A.loadIncremental(base, c.bytes);
        }
      } catch (e) {
        // Changes that build on changes this replica does not have (it was restored from a
        // backup, or the sender's idea of what it has is stale): not damage. Nothing is stored;
        // the ack of what is stored tells the sender where to start again.
        if (!c.meta.full && /deps should already be in the document/.test((e as Error).message)) return STALE;
        throw refusal(id, 'CHUNK_CORRUPT', `Automerge could not read the chunk: ${(e as Error).message}`.slice(0, 300));
      }
      if (!c.meta.full && A.getMissingDeps(after, []).length > 0) return STALE;
      // loadIncremental applies what it can and keeps quiet about the rest: check we got it all.
      if (!A.hasHeads(after, c.meta.heads) || A.getMissingDeps(after, []).length > 0) {
        throw refusal(id, 'CHUNK_INCOMPLETE', 'the chunk does not reach the heads it claims (damaged, or a change it depends on is missing)');
      }
      const added = A.getChangesMetaSince(after, beforeHeads);
      if (added.length === 0) {
        if (stored) {
          this.cache.put(id, after);
          keep = true;
        }
        return { changed: false, events: [] };
      }
      const statements = this.checkAuthors(id, after, added, c.meta.sigs);
      const events = this.checkContent(id, beforeHeads, after);
      const heads = A.getHeads(after);
      const chunk = hadBefore ? A.saveSince(after, beforeHeads) : new Uint8Array(0);
      const compact = !stored || stored.chunkBytes + chunk.byteLength > stored.snapshotBytes;
      const size = ledgerPost(id) ? ledgerSize(after as A.Doc<LedgerDoc>) : 0;
      this.store.docs.put(id, { chunk, snapshot: compact ? A.save(after) : undefined, heads, events: size });
      this.keepStatements(id, after, statements);
      const fresh: PoskoEvent[] = [];
      const displaced: ParcelId[] = [];
      for (const e of events) {
        const existing = this.store.views.eventById(e.id);
        if (existing) {
          if (existing.key !== e.key || existing.post !== e.post) throw refusal(id, 'BAD_DOCUMENT', `event ${e.id} clashes with a different event`);
          // Our own event, not folded yet here, is already in the document: never fold it again.
          this.store.views.markMerged(e.id);
          continue;
        }
        // The same idempotency key under two event ids: a scanner retried after its post was
        // restored from a backup. One scan counts once: the first (causal order) stays in the
        // views, the other stays in its document only. A rebuild makes the same choice.
        const sameKey = this.store.views.eventByKey(e.key);
        if (sameKey) {
          if (sameKey.post !== e.post) throw refusal(id, 'BAD_DOCUMENT', `event ${e.id} reuses another post's idempotency key`);
          if (compareEvents(e, sameKey) > 0) continue;
          this.store.views.removeEvent(sameKey.id);
          displaced.push(sameKey.parcel);
        }
        this.store.views.insertEvent(e, true);
        fresh.push(e);
      }
      if (id === DIRECTORY_DOC) this.learnDirectory(after as A.Doc<DirectoryDoc>);
      // Kept for the next message about this document (valid while it is what is stored; if the
      // surrounding transaction rolls back, the stored heads differ and it is not used).
      this.cache.put(id, after);
      keep = true;
      return { changed: true, events: fresh, displaced };
    } finally {
      freeQuietly(before);
      if (!keep) freeQuietly(after);
    }
  }

  /** Checks what a merge adds to a document; returns the ledger events it adds. */
  private checkContent(id: string, beforeHeads: readonly string[], after: A.Doc<unknown>): PoskoEvent[] {
    const post = ledgerPost(id);
    if (post) {
      const doc = after as { post?: unknown; day?: unknown };
      if (String(doc.post) !== post || String(doc.day) !== id.split('/')[2]) throw refusal(id, 'BAD_DOCUMENT', `${id} does not describe post ${post}'s ledger of that day`);
      const events: PoskoEvent[] = [];
      for (const raw of addedEntries(after as A.Doc<LedgerDoc>, beforeHeads)) {
        const e = entryToEvent(raw, post);
        if (typeof e === 'string') throw refusal(id, 'BAD_DOCUMENT', `${id}: ${e}`);
        events.push(e);
      }
      return events;
    }
    if (id === DIRECTORY_DOC) {
      const { invalid } = directoryEntries(after as A.Doc<DirectoryDoc>);
      if (invalid.length > 0) throw refusal(id, 'BAD_DOCUMENT', `the post directory has invalid entries: ${invalid.slice(0, 5).join(', ')}`);
    }
    return [];
  }
}
