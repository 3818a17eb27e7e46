/**
 * The sync protocol: pure logic over a `Replica` (what this gateway stores and knows about its
 * peers) and a `Transport` (anything that carries one message and brings back the answer).
 *
 * A live exchange (client → server):
 *   hello  { root, chunks the server lacks (by what the client last saw it acknowledge) }
 *   reply  { acks, refusals, chunks the client lacks, the server's root }
 *   ack    { the heads the client now has }            (only when the reply carried chunks)
 * Each side keeps, per peer, the heads the peer acknowledged. The hello's `root` (a digest of the
 * client's whole state) lets the server check that knowledge: when it does not match (a peer was
 * restored, a message was lost) the client sends a full summary once. "Nothing changed" is one
 * small round trip whatever the number of documents. Bundles are the same chunks, one way.
 */
import { createHash } from 'node:crypto';
import { brotliCompressSync, constants as zlib } from 'node:zlib';
import { PoskoError } from '../domain/errors.ts';
import { POST_ID_RE } from '../domain/ids.ts';
import { byPriority, digestOf, sameHeads, type DocHeads } from './documents.ts';
import { isPublicKey, verifyBytes, type Identity, type PublicIdentity } from './identity.ts';
import {
  AckSchema, AckedSchema, BundleSchema, HelloSchema, ReplySchema, decodeMessage, encodeMessage,
  type ChunkMeta, type Hello, type Refusal, type Reply, type Statement,
} from './messages.ts';
import { open, peekHeader, seal, type Body, type MessageKind } from './wire.ts';

/** A chunk with its bytes. */
export interface Chunk {
  meta: ChunkMeta;
  bytes: Uint8Array;
}

/** A chunk as a replica serves it. */
export interface ChunkOut {
  bytes: Uint8Array;
  full: boolean;
  heads: string[];
  sigs: Statement[];
  /** Only the first part of what the peer lacks: more follows. */
  partial: boolean;
}

/** What applying a peer's chunks did. */
export interface ApplyResult {
  /** For every document offered: the heads this replica now has. */
  acks: [string, string[]][];
  refused: Refusal[];
  /** Documents that changed, and events added to the views. */
  changed: number;
  events: number;
}

/** What the sync protocol needs from storage. Implemented over SQLite by `store/sync-store.ts`. */
export interface Replica {
  readonly me: Identity;
  /** Every stored document and its heads. */
  state(): DocHeads;
  /**
   * What a peer that has `since` lacks of a document; undefined when it lacks nothing. Over
   * `maxBytes`, a document this gateway writes comes as a prefix of its changes (`partial`).
   */
  chunkSince(doc: string, since: readonly string[], maxBytes?: number): ChunkOut | undefined;
  /**
   * Verifies and applies a peer's chunks (hash, completeness, signatures, ownership, content); a
   * refused document changes nothing and is recorded, the others apply.
   */
  apply(from: string, chunks: readonly Chunk[]): ApplyResult;
  /** The heads a peer is known to have. */
  known(peer: string): DocHeads;
  /** Records heads a peer has; `replace` forgets everything else known about it. */
  learn(peer: string, entries: Iterable<readonly [string, readonly string[]]>, replace?: boolean): void;
  /** An enrolled (not revoked, not pending) peer. */
  enrolled(id: string): PublicIdentity | undefined;
  /**
   * Records that an unknown gateway asked to be enrolled; false when the id is known already
   * (revoked, or a request is pending: the first request stands, its fingerprint is checked).
   */
  requestEnrollment(p: PublicIdentity): boolean;
  /** The next sequence number for a message this gateway sends. */
  nextSeq(): number;
  /** Moves this gateway's sequence past `seq` (a peer saw a higher one: we were restored). */
  skipSeq(seq: number): void;
  /** Refuses a live message whose sequence number is not above the last one from that peer. */
  acceptSeq(peer: string, seq: number): void;
  /** The answer given to a peer's last message, if `request` (its SHA-256) is that message. */
  lastAnswer(peer: string, request: string): Uint8Array | undefined;
  /** Remembers the answer to a peer's last message (a network that delivers it twice gets it again). */
  rememberAnswer(peer: string, request: string, answer: Uint8Array): void;
  /** Bytes this replica may still send to a peer in the current budget period. */
  budgetLeft(peer: string): number;
  /** Records that a peer completed a message with us. */
  heard(peer: string): void;
  /** Counts bytes exchanged with a peer. */
  spend(peer: string, sent: number, received: number): void;
}

/** Carries one sealed message to a peer and returns its sealed answer. */
export interface Transport {
  readonly label: string;
  exchange(message: Uint8Array): Promise<Uint8Array>;
}

/** Limits for one exchange. */
export interface SyncLimits {
  /** Largest body (uncompressed chunk bytes) of one message; more travels in further rounds. */
  maxMessageBytes: number;
  /** Most rounds of one sync (each a hello and its reply). */
  maxRounds: number;
}

export const DEFAULT_LIMITS: SyncLimits = { maxMessageBytes: 2 * 1024 * 1024, maxRounds: 200 };

/** Progress of a sync or bundle, for a progress bar. */
export type Progress = (p: { stage: string; done: number; total: number; bytes: number }) => void;

/** What one sync with a peer did. */
export interface SyncReport {
  peer: string;
  complete: boolean;
  roundTrips: number;
  bytesSent: number;
  bytesReceived: number;
  chunksSent: number;
  chunksReceived: number;
  events: number;
  refusedByPeer: Refusal[];
  refusedHere: Refusal[];
  /** Stopped because the per-peer byte budget is spent. */
  budgetExhausted: boolean;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function entries(state: DocHeads): [string, string[]][] {
  return [...state.entries()].filter(([, h]) => h.length > 0);
}

/** Picks the chunks a peer lacks, in priority order, within a byte limit and budget. */
export function pickChunks(
  replica: Replica,
  state: DocHeads,
  known: DocHeads,
  limit: number,
  budget: number,
): { chunks: Chunk[]; more: boolean; budgetExhausted: boolean } {
  const chunks: Chunk[] = [];
  let total = 0;
  let spent = 0;
  for (const doc of byPriority(state.keys())) {
    if (sameHeads(state.get(doc), known.get(doc))) continue;
    // What is left of this message; a big document of ours is cut to fit (at least 16 KiB).
    const room = Math.max(limit - total, 16 * 1024);
    const c = replica.chunkSince(doc, known.get(doc) ?? [], room);
    if (!c) continue;
    // The budget counts bytes on the wire (compressed): estimated with a fast brotli pass.
    if (Number.isFinite(budget)) {
      spent += brotliCompressSync(c.bytes, { params: { [zlib.BROTLI_PARAM_QUALITY]: 1 } }).length;
      if (spent > budget) return { chunks, more: true, budgetExhausted: true };
    }
    if (chunks.length > 0 && total + c.bytes.length > limit) return { chunks, more: true, budgetExhausted: false };
    chunks.push({ meta: { doc, heads: c.heads, sha: sha256(c.bytes), len: c.bytes.length, full: c.full, sigs: c.sigs }, bytes: c.bytes });
    total += c.bytes.length;
    if (c.partial) return { chunks, more: true, budgetExhausted: false };
  }
  return { chunks, more: false, budgetExhausted: false };
}

function withBytes(chunks: ChunkMeta[], blobs: Uint8Array[]): Chunk[] {
  return chunks.map((meta, i) => ({ meta, bytes: blobs[i]! }));
}

function sealFor(replica: Replica, peer: PublicIdentity, kind: MessageKind, body: Buffer): Buffer {
  return seal(replica.me, [peer], kind, replica.nextSeq(), body);
}

/**
 * Verifies a message's sender: an enrolled peer's key must have signed it. An unknown gateway whose
 * message is signed by the key it carries is recorded as an enrollment request.
 */
function senderOf(replica: Replica, message: Uint8Array): PublicIdentity {
  const h = peekHeader(message);
  const peer = replica.enrolled(h.from);
  if (peer) return peer;
  const key = h.key;
  const selfSigned = key !== undefined && POST_ID_RE.test(h.from) && isPublicKey(key) && h.from !== replica.me.id
    && verifyBytes(key, message.subarray(0, message.length - 64), message.subarray(message.length - 64));
  if (selfSigned && replica.requestEnrollment({ id: h.from, role: 'post', publicKey: key })) {
    throw new PoskoError('ENROLLMENT_PENDING', `${h.from} is not enrolled here; its request waits for approval (posko enroll ${h.from} --approve)`);
  }
  throw new PoskoError('SYNC_UNKNOWN_PEER', `${h.from} is not an enrolled gateway`);
}

/** Answers one live message (hello or ack) from a peer. Throws a PoskoError for a refused message. */
export function serve(replica: Replica, message: Uint8Array, limits: SyncLimits = DEFAULT_LIMITS): Buffer {
  const peer = senderOf(replica, message);
  const { header, body } = open(replica.me, peer.publicKey, message);
  const re = sha256(message);
  // The same message again (a network or proxy that delivers twice): the same answer, and
  // nothing changes. Any older message is a replay.
  const again = replica.lastAnswer(peer.id, re);
  if (again) return Buffer.from(again);
  replica.acceptSeq(peer.id, header.seq);
  if (header.kind === 'ack') {
    const ack = decodeMessage(body, AckSchema).json;
    replica.learn(peer.id, ack.heads);
    replica.spend(peer.id, 0, message.length);
    const out = sealFor(replica, peer, 'acked', encodeMessage({ re }));
    replica.spend(peer.id, out.length, 0);
    replica.heard(peer.id);
    replica.rememberAnswer(peer.id, re, out);
    return out;
  }
  if (header.kind !== 'hello') throw new PoskoError('SYNC_MALFORMED', `a ${header.kind} message cannot start an exchange`);
  const { json: hello, blobs } = decodeMessage<Hello>(body, HelloSchema);
  if (hello.summary) replica.learn(peer.id, hello.summary, true);
  const applied = replica.apply(peer.id, withBytes(hello.chunks, blobs));
  // The client has what it sent, whether or not this replica took it.
  replica.learn(peer.id, hello.chunks.map((c) => [c.doc, c.heads] as const));
  const state = replica.state();
  const known = replica.known(peer.id);
  const needSummary = !hello.summary && digestOf(known) !== hello.root;
  const picked = needSummary
    ? { chunks: [], more: false, budgetExhausted: false }
    : pickChunks(replica, state, known, Math.min(limits.maxMessageBytes, hello.maxReply ?? Number.POSITIVE_INFINITY), replica.budgetLeft(peer.id));
  const reply: Reply = {
    re, root: digestOf(state), acks: applied.acks, refused: applied.refused,
    chunks: picked.chunks.map((c) => c.meta), needSummary, more: picked.more,
    ...(hello.wantSummary ? { summary: entries(state) } : {}),
  };
  const out = sealFor(replica, peer, 'reply', encodeMessage(reply, picked.chunks.map((c) => c.bytes)));
  replica.spend(peer.id, out.length, message.length);
  replica.heard(peer.id);
  replica.rememberAnswer(peer.id, re, out);
  return out;
}

/** One request and its verified answer. A SYNC_REPLAYED answer moves our sequence on and retries once. */
async function roundTrip<T extends { re: string }>(
  replica: Replica, peer: PublicIdentity, transport: Transport, kind: MessageKind, body: Buffer,
  expect: MessageKind, parse: (b: Buffer) => Body<T>, report: SyncReport,
): Promise<{ sent: Buffer; answer: Body<T> }> {
  for (let attempt = 0; ; attempt++) {
    const sent = sealFor(replica, peer, kind, body);
    let raw: Uint8Array;
    // Bytes count when they leave (a cut link costs them too).
    report.bytesSent += sent.length;
    replica.spend(peer.id, sent.length, 0);
    try {
      raw = await transport.exchange(sent);
    } catch (e) {
      const lastSeen = (e as PoskoError).details?.lastSeen;
      if ((e as PoskoError).code === 'SYNC_REPLAYED' && typeof lastSeen === 'number' && attempt === 0) {
        replica.skipSeq(lastSeen);
        continue;
      }
      throw e;
    }
    report.roundTrips++;
    report.bytesReceived += raw.length;
    replica.spend(peer.id, 0, raw.length);
    const { header, body: answer } = open(replica.me, peer.publicKey, raw);
    if (header.kind !== expect || header.from !== peer.id) throw new PoskoError('SYNC_PEER_ERROR', `expected a ${expect} from ${peer.id}, got a ${header.kind} from ${header.from}`);
    const parsed = parse(answer);
    if (parsed.json.re !== sha256(sent)) throw new PoskoError('SYNC_PEER_ERROR', 'the answer is not for this request');
    return { sent, answer: parsed };
  }
}

/**
 * Syncs with one peer until neither side lacks anything (or the budget or round limit stops it).
 * Progress is kept after every round: an exchange cut mid-way resumes from what was acknowledged.
 */
export async function syncWith(
  replica: Replica, peer: PublicIdentity, transport: Transport, limits: SyncLimits = DEFAULT_LIMITS, progress?: Progress,
): Promise<SyncReport> {
  const report: SyncReport = {
    peer: peer.id, complete: false, roundTrips: 0, bytesSent: 0, bytesReceived: 0, chunksSent: 0, chunksReceived: 0,
    events: 0, refusedByPeer: [], refusedHere: [], budgetExhausted: false,
  };
  let sendSummary = false;
  let wantSummary = false;
  let resends = 0;
  for (let round = 0; round < limits.maxRounds; round++) {
    const state = replica.state();
    const picked = pickChunks(replica, state, replica.known(peer.id), limits.maxMessageBytes, replica.budgetLeft(peer.id));
    const hello: Hello = {
      root: digestOf(state), chunks: picked.chunks.map((c) => c.meta), maxReply: Math.max(16 * 1024, limits.maxMessageBytes),
      ...(sendSummary ? { summary: entries(state) } : {}), ...(wantSummary ? { wantSummary: true } : {}),
    };
    const { answer: reply } = await roundTrip(
      replica, peer, transport, 'hello', encodeMessage(hello, picked.chunks.map((c) => c.bytes)), 'reply',
      (b) => decodeMessage<Reply>(b, ReplySchema), report,
    );
    const r = reply.json;
    if (r.summary) replica.learn(peer.id, r.summary, true);
    replica.learn(peer.id, r.acks);
    report.chunksSent += picked.chunks.length;
    report.refusedByPeer.push(...r.refused);
    if (r.needSummary) {
      if (sendSummary) throw new PoskoError('SYNC_PEER_ERROR', `${peer.id} asked for a summary twice`);
      sendSummary = true;
      continue;
    }
    sendSummary = false;
    wantSummary = false;
    const applied = replica.apply(peer.id, withBytes(r.chunks, reply.blobs));
    report.refusedHere.push(...applied.refused);
    report.chunksReceived += r.chunks.length;
    report.events += applied.events;
    // The peer has what it sent.
    replica.learn(peer.id, r.chunks.map((c) => [c.doc, c.heads] as const));
    if (r.chunks.length > 0) {
      const mine = replica.state();
      const heads = r.chunks.map((c) => [c.doc, mine.get(c.doc) ?? []] as [string, string[]]);
      await roundTrip(replica, peer, transport, 'ack', encodeMessage({ re: reply.json.re, heads }), 'acked', (b) => decodeMessage(b, AckedSchema), report);
    }
    progress?.({ stage: 'sync', done: report.chunksSent + report.chunksReceived, total: report.chunksSent + report.chunksReceived + (picked.more || r.more ? 1 : 0), bytes: report.bytesSent + report.bytesReceived });
    if (picked.budgetExhausted) {
      report.budgetExhausted = true;
      return report;
    }
    if (picked.more || r.more) continue;
    // We just learned what the peer really has: what we picked before may have missed something.
    if (r.summary) continue;
    // A chunk the peer could not use (it lacks what the chunk builds on: it was restored, say)
    // is acknowledged with what the peer has, not refused: send again from there.
    const refusedDocs = new Set(r.refused.map((x) => x.doc));
    const acked = new Map(r.acks);
    const unmet = picked.chunks.some((c) => !refusedDocs.has(c.meta.doc) && !c.meta.heads.every((h) => acked.get(c.meta.doc)?.includes(h)));
    if (unmet && resends++ < 3) continue;
    if (digestOf(replica.known(peer.id)) !== r.root && !wantSummary && round < limits.maxRounds - 1) {
      // What we believe the peer has is not what it has: ask for its summary once.
      wantSummary = true;
      continue;
    }
    report.complete = true;
    return report;
  }
  return report;
}

/** Options of a bundle export. */
export interface BundleOptions {
  /** Whose knowledge picks the chunks (what it is known to have), or null for everything. */
  forPeer: string | null;
  /** Most chunk bytes per bundle; more is split over several bundles. Default: no limit. */
  maxBytes?: number;
  /** Which documents' heads to announce in `have` (default: every document). */
  haveDocs?: Iterable<string>;
  progress?: Progress;
}

/**
 * Writes one-way bundles for `recipients`: what `forPeer` is not known to have (or everything),
 * each bundle at most `maxBytes` of chunks. Always at least one bundle (it announces `have`).
 */
export function exportBundles(replica: Replica, recipients: readonly PublicIdentity[], opts: BundleOptions): { bundles: Buffer[]; chunks: number } {
  const state = replica.state();
  const known = new Map(opts.forPeer ? replica.known(opts.forPeer) : []);
  const haveDocs = opts.haveDocs ? new Set(opts.haveDocs) : undefined;
  const have = entries(state).filter(([doc]) => !haveDocs || haveDocs.has(doc));
  const bundles: Buffer[] = [];
  let chunks = 0;
  let bytes = 0;
  for (;;) {
    const picked = pickChunks(replica, state, known, opts.maxBytes ?? Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
    for (const c of picked.chunks) known.set(c.meta.doc, c.meta.heads);
    chunks += picked.chunks.length;
    bytes += picked.chunks.reduce((n, c) => n + c.bytes.length, 0);
    if (picked.chunks.length > 0 || bundles.length === 0) {
      const body = encodeMessage({ chunks: picked.chunks.map((c) => c.meta), have, for: opts.forPeer }, picked.chunks.map((c) => c.bytes));
      bundles.push(seal(replica.me, recipients, 'bundle', replica.nextSeq(), body));
    }
    opts.progress?.({ stage: 'export', done: chunks, total: chunks + (picked.more ? 1 : 0), bytes });
    if (!picked.more) return { bundles, chunks };
  }
}

/** Writes one bundle for `recipients` with everything `forPeer` is not known to have (or everything). */
export function exportBundle(replica: Replica, recipients: readonly PublicIdentity[], forPeer: string | null, progress?: Progress): { bytes: Buffer; chunks: number } {
  const { bundles, chunks } = exportBundles(replica, recipients, { forPeer, ...(progress ? { progress } : {}) });
  return { bytes: bundles[0]!, chunks };
}

/** Verifies and merges a bundle. Importing the same bundle twice changes nothing the second time. */
export function importBundle(replica: Replica, message: Uint8Array, progress?: Progress): { from: string; chunks: number; docs: string[]; changed: number; events: number; refused: Refusal[] } {
  const h = peekHeader(message);
  const sender = replica.enrolled(h.from);
  if (!sender) throw new PoskoError('SYNC_UNKNOWN_PEER', `the bundle is from ${h.from}, which is not enrolled here`);
  const { header, body } = open(replica.me, sender.publicKey, message);
  if (header.kind !== 'bundle') throw new PoskoError('SYNC_MALFORMED', `not a bundle but a ${header.kind} message`);
  const { json, blobs } = decodeMessage(body, BundleSchema);
  const chunks = withBytes(json.chunks, blobs);
  let changed = 0;
  let events = 0;
  const refused: Refusal[] = [];
  // In groups (one transaction each, views updated once per group), for progress and so that a
  // huge bundle does not become one huge transaction.
  for (let i = 0; i < chunks.length;) {
    const group: Chunk[] = [];
    let bytes = 0;
    while (i < chunks.length && (group.length === 0 || (group.length < 32 && bytes + chunks[i]!.bytes.length <= 32 * 1024 * 1024))) {
      bytes += chunks[i]!.bytes.length;
      group.push(chunks[i++]!);
    }
    const r = replica.apply(sender.id, group);
    changed += r.changed;
    events += r.events;
    refused.push(...r.refused);
    progress?.({ stage: 'import', done: i, total: chunks.length, bytes });
  }
  // The sender has what it sent, and what it says it has.
  replica.learn(sender.id, [...json.chunks.map((c) => [c.doc, c.heads] as const), ...json.have]);
  return { from: sender.id, chunks: json.chunks.length, docs: json.chunks.map((c) => c.doc), changed, events, refused };
}
