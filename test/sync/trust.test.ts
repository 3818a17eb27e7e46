/**
 * Trust boundaries of sync, with real gateways on temp SQLite files (no mocks of our code): a
 * message or bundle that was tampered with, comes from an impostor, is replayed, writes someone
 * else's document, carries hostile ledger content, damaged Automerge bytes or a wrong hash is
 * refused with a stable code, NOTHING it carried is kept, and the next valid sync still works.
 */
import * as A from '@automerge/automerge';
import { serve as serveHttp } from '@hono/node-server';
import fc from 'fast-check';
import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PoskoError } from '../../src/domain/errors.ts';
import { digestOf } from '../../src/sync/documents.ts';
import { actorPrefix, headsStatementBytes, identityFrom, newSecrets, signBytes, type Identity } from '../../src/sync/identity.ts';
import type { LedgerDoc } from '../../src/sync/ledger.ts';
import { ReplySchema, decodeMessage, encodeMessage, type ChunkMeta, type Hello, type Reply } from '../../src/sync/messages.ts';
import { exportBundle, importBundle, serve, syncWith, type SyncReport } from '../../src/sync/session.ts';
import { open, peekHeader, seal } from '../../src/sync/wire.ts';
import { HttpTransport } from '../../src/transport/http-sync.ts';
import { errorOf } from '../helpers/errors.ts';
import { CODES, openTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { direct, introduce, publicOf, recording } from '../helpers/sync.ts';

const opened: TestGateway[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((f) => f()));
  await Promise.all(opened.splice(0).map((g) => g.close()));
});

function gateway(post: string, role: 'post' | 'hq' = 'post'): TestGateway {
  const g = openTestGateway({ config: { postId: post, role } });
  opened.push(g);
  return g;
}

const SCAN_CODES = [CODES.sscc, CODES.gtinSerial, CODES.gtinExpiryBatch, CODES.ean13];
let scans = 0;

/** One scan through the real API, folded into the post's ledger. */
async function scan(g: TestGateway): Promise<void> {
  const code = SCAN_CODES[scans++ % SCAN_CODES.length]!;
  const r = await g.call('POST', '/api/v1/scans', { body: { code, action: 'receive', item: 'BERAS', qty: 10, unit: 'kg', id: randomUUID() } });
  expect(r.status).toBe(201);
  g.gw.foldNow();
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

async function eventIds(g: TestGateway): Promise<string[]> {
  const r = await g.call('GET', '/api/v1/events?limit=1000');
  expect(r.status).toBe(200);
  return (r.body.events as { id: string }[]).map((e) => e.id).sort();
}

async function eventsOfPost(g: TestGateway, post: string): Promise<number> {
  const r = await g.call('GET', '/api/v1/events?limit=1000');
  return (r.body.events as { post: string }[]).filter((e) => e.post === post).length;
}

/** What a gateway holds: documents, their heads, and the views built from them. */
async function dataOf(g: TestGateway) {
  return {
    root: digestOf(g.gw.sync.state()),
    docs: g.gw.store.docs.list(),
    events: await eventIds(g),
    parcels: g.gw.store.queries.count('parcels'),
    stock: g.gw.store.queries.count('stock'),
  };
}

/** What a gateway knows about its peers: rows (keys, status, sequence numbers, bytes), heads, refusals. */
function trustOf(g: TestGateway) {
  return {
    peers: g.gw.sync.peers(),
    peerHeads: g.gw.store.db.prepare('SELECT * FROM peer_heads ORDER BY peer, doc_id').all(),
    refusals: g.gw.sync.refusals(10_000),
    seq: g.gw.store.meta.get('sync.seq'),
  };
}

/** Everything: for a refused message, not one row may differ. */
async function everything(g: TestGateway) {
  return { ...(await dataOf(g)), ...trustOf(g) };
}

/** A valid sync after the attack: complete, nothing refused, the client's new scan arrives. */
async function expectSyncStillWorks(client: TestGateway, server: TestGateway): Promise<SyncReport> {
  await scan(client);
  const mine = await eventIds(client);
  const report = await syncWith(client.gw.sync, client.gw.sync.enrolled(server.gw.identity.id)!, direct(server));
  expect(report.complete).toBe(true);
  expect(report.refusedByPeer).toEqual([]);
  expect(report.refusedHere).toEqual([]);
  const theirs = new Set(await eventIds(server));
  expect(mine.filter((id) => !theirs.has(id))).toEqual([]);
  return report;
}

/** The code of what `serve` throws for a message. */
function serveCode(to: TestGateway, message: Uint8Array): string {
  return errorOf(() => serve(to.gw.sync, message)).code;
}

// ---- hand-built messages (what a hostile but enrolled peer can send) ----

interface RawChunk {
  doc: string;
  bytes: Uint8Array;
  heads: string[];
  full: boolean;
  /** Defaults to the bytes' real SHA-256 and length. */
  sha?: string;
  len?: number;
  /** Who signs the heads (default: nobody; `helloFrom` signs as its sender). */
  signer?: Identity;
}

function metaOf(c: RawChunk): ChunkMeta {
  const sigs = c.signer
    ? [{ signer: c.signer.id, heads: [...c.heads].sort(), sig: signBytes(c.signer, headsStatementBytes(c.doc, c.heads)).toString('base64url') }]
    : [];
  return { doc: c.doc, heads: c.heads, sha: c.sha ?? sha256(c.bytes), len: c.len ?? c.bytes.length, full: c.full, sigs };
}

/** A hello from `from` to `to`, sealed with `from`'s real identity and its next sequence number. */
function helloFrom(from: TestGateway, to: TestGateway, chunks: RawChunk[]): Buffer {
  const hello: Hello = { root: digestOf(from.gw.sync.state()), chunks: chunks.map((c) => metaOf({ signer: from.gw.identity, ...c })) };
  return seal(from.gw.identity, [publicOf(to)], 'hello', from.gw.sync.nextSeq(), encodeMessage(hello, chunks.map((c) => c.bytes)));
}

/** Opens `to`'s sealed reply at `from`. */
function readReply(from: TestGateway, to: TestGateway, sealed: Uint8Array): Reply {
  const { header, body } = open(from.gw.identity, to.gw.identity.publicKey, sealed);
  expect(header.kind).toBe('reply');
  return decodeMessage<Reply>(body, ReplySchema).json;
}

/** Sends hand-built chunks from `from` to `to`'s `serve`; returns the reply. */
function push(from: TestGateway, to: TestGateway, chunks: RawChunk[]): Reply {
  return readReply(from, to, serve(to.gw.sync, helloFrom(from, to, chunks)));
}

/** A document's stored chunk for a peer that has nothing of it (the whole saved document). */
function wholeChunk(g: TestGateway, doc: string): RawChunk {
  const c = g.gw.sync.chunkSince(doc, [])!;
  return { doc, bytes: c.bytes, heads: c.heads, full: c.full };
}

function ledgerIds(g: TestGateway, post: string): string[] {
  return g.gw.store.docs.list(`ledger/${post}/`).map((d) => d.id);
}

/** Copies an entry for a new ledger entry: ImmutableStrings copied, `over` applied (undefined deletes; `{ raw }` is stored as is). */
function entryLike(src: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) out[k] = A.isImmutableString(v) ? new A.ImmutableString(v.toString()) : v;
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete out[k];
    else if (typeof v === 'string') out[k] = new A.ImmutableString(v);
    else if (v !== null && typeof v === 'object' && 'raw' in v) out[k] = (v as { raw: unknown }).raw;
    else out[k] = v;
  }
  return out;
}

/** The first entry of a ledger document, and its hour bucket. */
function firstEntry(doc: A.Doc<LedgerDoc>): { hour: string; entry: Record<string, unknown> } {
  const hour = Object.keys(doc.hours)[0]!;
  const entry = Object.values(doc.hours[hour]!)[0]! as unknown as Record<string, unknown>;
  return { hour, entry };
}

/**
 * `owner`'s ledger document `doc`, loaded with `actor` and changed by `edit`: the chunk of that
 * change (`saveSince` the stored heads) and the heads it reaches.
 */
function craftChange(owner: TestGateway, doc: string, actor: string, edit: (d: LedgerDoc, hour: string, sample: Record<string, unknown>) => void): RawChunk {
  const base = owner.gw.store.docs.load<LedgerDoc>(doc, actor)!;
  const before = A.getHeads(base);
  const { hour, entry } = firstEntry(base);
  const after = A.change(base, (d) => edit(d, hour, entry));
  const chunk: RawChunk = { doc, bytes: A.saveSince(after, before), heads: A.getHeads(after), full: false };
  A.free(after);
  return chunk;
}

/** A fresh event id, key and parcel for a forged entry. */
function freshIds(): Record<string, string> {
  const id = randomUUID();
  return { id, key: `forged-${id}`, parcel: `FORGED-${id.slice(0, 8)}` };
}

// ---------------------------------------------------------------------------------------------

describe('tampered, truncated and stray messages', () => {
  it('refuses every single-byte change anywhere in a sealed hello, and the untampered hello still works', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    const doc = ledgerIds(a, 'POST-A')[0]!;
    const hello = helloFrom(a, hq, [wholeChunk(a, doc)]);
    const n = hello.readUInt16BE(5);
    const headerEnd = 7 + n;
    const sigStart = hello.length - 64;
    const before = await everything(hq);

    const seen = new Map<string, number>();
    // Every byte of the prefix, header and signature; every 7th of the ciphertext (and its ends).
    const positions = [...Array(hello.length).keys()]
      .filter((i) => i < headerEnd || i >= sigStart - 1 || i === headerEnd || (i - headerEnd) % 7 === 0);
    for (const mask of [0x01, 0x80]) {
      for (const i of positions) {
        const t = Buffer.from(hello);
        t[i]! ^= mask;
        const code = serveCode(hq, t);
        let expected: string;
        if (i < 5) expected = 'SYNC_MALFORMED'; // magic, version
        else if (i < 7) {
          // The header length: a header cut short or run on into the ciphertext no longer parses,
          // except when the byte it runs on to happens to be JSON whitespace (then the header
          // still parses, and the signature is what fails).
          let parses = true;
          try { peekHeader(t); } catch { parses = false; }
          expected = parses ? 'SYNC_BAD_SIGNATURE' : 'SYNC_MALFORMED';
        } else if (i < headerEnd) {
          // A header that no longer parses is malformed; one that names someone else is from an
          // unknown sender whose key does not sign it; otherwise the enrolled key does not sign it.
          let from: string | undefined;
          try { from = peekHeader(t).from; } catch { from = undefined; }
          expected = from === undefined ? 'SYNC_MALFORMED' : from === 'POST-A' ? 'SYNC_BAD_SIGNATURE' : 'SYNC_UNKNOWN_PEER';
        } else expected = 'SYNC_BAD_SIGNATURE'; // ciphertext or signature
        expect({ i, mask, code }).toEqual({ i, mask, code: expected });
        const region = i < 7 ? 'prefix' : i < headerEnd ? 'header' : i < sigStart ? 'ciphertext' : 'signature';
        seen.set(`${region} ${code}`, (seen.get(`${region} ${code}`) ?? 0) + 1);
      }
    }
    // Each region was hit, and flips inside the header produced both codes.
    expect([...seen.keys()].sort()).toEqual(expect.arrayContaining([
      'ciphertext SYNC_BAD_SIGNATURE', 'header SYNC_BAD_SIGNATURE', 'header SYNC_MALFORMED', 'prefix SYNC_MALFORMED', 'signature SYNC_BAD_SIGNATURE',
    ]));
    expect(await everything(hq)).toEqual(before);

    // The message itself was never consumed: the untampered hello is accepted and applied.
    const reply = readReply(a, hq, serve(hq.gw.sync, hello));
    expect(reply.refused).toEqual([]);
    expect(hq.gw.store.docs.heads(doc)).toEqual(a.gw.store.docs.heads(doc));
    await expectSyncStillWorks(a, hq);
  });

  it('refuses every truncation, an extension, random garbage and an empty buffer as malformed or unsigned', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    const hello = helloFrom(a, hq, [wholeChunk(a, ledgerIds(a, 'POST-A')[0]!)]);
    const n = hello.readUInt16BE(5);
    const before = await everything(hq);

    for (let len = 0; len < hello.length; len++) {
      const expected = len < 7 + 64 || 7 + n + 64 > len ? 'SYNC_MALFORMED' : 'SYNC_BAD_SIGNATURE';
      expect({ len, code: serveCode(hq, hello.subarray(0, len)) }).toEqual({ len, code: expected });
    }
    expect(serveCode(hq, new Uint8Array(0))).toBe('SYNC_MALFORMED');
    expect(serveCode(hq, Buffer.concat([hello, Buffer.from([0])]))).toBe('SYNC_BAD_SIGNATURE');
    expect(serveCode(hq, Buffer.concat([hello, hello]))).toBe('SYNC_BAD_SIGNATURE');

    // Random bytes, with and without a valid magic and version in front.
    const prefix = Buffer.from([0x50, 0x53, 0x4b, 0x53, 0x01]);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), fc.boolean(), (bytes, withMagic) => {
      const m = withMagic ? Buffer.concat([prefix, bytes]) : bytes;
      expect(serveCode(hq, m)).toBe('SYNC_MALFORMED');
    }), { seed: 20240611, numRuns: 400 });

    // A header that parses but has the wrong shape, and one of the right shape from nobody.
    const framed = (header: unknown, tail = Buffer.alloc(80)) => {
      const h = Buffer.from(JSON.stringify(header));
      const p = Buffer.alloc(7);
      prefix.copy(p);
      p.writeUInt16BE(h.length, 5);
      return Buffer.concat([p, h, tail]);
    };
    expect(serveCode(hq, framed({ kind: 'hello' }))).toBe('SYNC_MALFORMED');
    expect(serveCode(hq, framed([1, 2, 3]))).toBe('SYNC_MALFORMED');
    expect(serveCode(hq, framed(null))).toBe('SYNC_MALFORMED');
    const shaped = { kind: 'hello', from: 'POST-Z', key: 'x', role: 'post', to: ['HQ'], seq: 1, salt: '', iv: '', keys: {} };
    expect(serveCode(hq, framed(shaped))).toBe('SYNC_UNKNOWN_PEER');
    expect(serveCode(hq, framed({ ...shaped, from: 'POST-A' }))).toBe('SYNC_BAD_SIGNATURE');
    expect(serveCode(hq, framed({ ...shaped, seq: 1.5 }))).toBe('SYNC_MALFORMED');

    expect(await everything(hq)).toEqual(before);
    expect(readReply(a, hq, serve(hq.gw.sync, hello)).refused).toEqual([]);
    await expectSyncStillWorks(a, hq);
  });

  it('refuses a valid message sealed for another gateway (SYNC_NOT_FOR_US) without consuming its sequence number', async () => {
    const hq = gateway('HQ', 'hq');
    const other = gateway('HQ2', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    introduce(other, a);
    await scan(a);
    const doc = ledgerIds(a, 'POST-A')[0]!;
    const forOther = seal(a.gw.identity, [publicOf(other)], 'hello', a.gw.sync.nextSeq(),
      encodeMessage({ root: digestOf(a.gw.sync.state()), chunks: [metaOf({ ...wholeChunk(a, doc), signer: a.gw.identity })] }, [wholeChunk(a, doc).bytes]));
    const before = await everything(hq);
    const e = errorOf(() => serve(hq.gw.sync, forOther));
    expect(e.code).toBe('SYNC_NOT_FOR_US');
    expect(await everything(hq)).toEqual(before);
    // It is a perfectly good message for its recipient.
    expect(readReply(a, other, serve(other.gw.sync, forOther)).refused).toEqual([]);
    await expectSyncStillWorks(a, hq);
  });

  it('refuses signed messages whose body does not decrypt, is not a hello, or is not a message kind that starts an exchange', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    const before = await dataOf(hq);
    const hqPub = [publicOf(hq)];

    // Ciphertext replaced by random bytes, then signed again with A's real key: signature fine,
    // nothing decrypts.
    const good = helloFrom(a, hq, [wholeChunk(a, ledgerIds(a, 'POST-A')[0]!)]);
    const headerEnd = 7 + good.readUInt16BE(5);
    const signed = Buffer.concat([good.subarray(0, headerEnd), Buffer.from(good.subarray(headerEnd, good.length - 64)).fill(0x42)]);
    expect(serveCode(hq, Buffer.concat([signed, signBytes(a.gw.identity, signed)]))).toBe('SYNC_MALFORMED');

    // A body that is no hello.
    const notHello = seal(a.gw.identity, hqPub, 'hello', a.gw.sync.nextSeq(), encodeMessage({ hello: 'world' }));
    const e = errorOf(() => serve(hq.gw.sync, notHello));
    expect(e.code).toBe('SYNC_MALFORMED');
    expect(e.details?.issues).toBeDefined();
    // A chunk whose declared length runs past the body.
    const c = wholeChunk(a, ledgerIds(a, 'POST-A')[0]!);
    const longer = seal(a.gw.identity, hqPub, 'hello', a.gw.sync.nextSeq(),
      encodeMessage({ root: '', chunks: [metaOf({ ...c, len: c.bytes.length + 1 })] }, [c.bytes]));
    expect(serveCode(hq, longer)).toBe('SYNC_MALFORMED');
    const shorter = seal(a.gw.identity, hqPub, 'hello', a.gw.sync.nextSeq(),
      encodeMessage({ root: '', chunks: [metaOf({ ...c, len: c.bytes.length - 1 })] }, [c.bytes]));
    expect(serveCode(hq, shorter)).toBe('SYNC_MALFORMED');
    // Kinds that cannot start an exchange.
    for (const kind of ['reply', 'acked', 'bundle'] as const) {
      expect(serveCode(hq, seal(a.gw.identity, hqPub, kind, a.gw.sync.nextSeq(), encodeMessage({ re: '0'.repeat(64) })))).toBe('SYNC_MALFORMED');
    }
    // An ack whose body is not an ack.
    expect(serveCode(hq, seal(a.gw.identity, hqPub, 'ack', a.gw.sync.nextSeq(), encodeMessage({ heads: 'all of them' })))).toBe('SYNC_MALFORMED');

    expect(await dataOf(hq)).toEqual(before);
    expect(hq.gw.sync.known('POST-A').size).toBe(0);
    await expectSyncStillWorks(a, hq);
  });
});

describe('impersonation and enrollment', () => {
  it('refuses a gateway that uses an enrolled id with another key (SYNC_BAD_SIGNATURE) and keeps the enrolled key', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    const impostor = gateway('POST-A');
    expect(impostor.gw.identity.publicKey).not.toBe(a.gw.identity.publicKey);
    introduce(hq, a);
    impostor.gw.sync.enroll(publicOf(hq));
    await scan(a);
    await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    await scan(impostor);
    await scan(impostor);
    const before = await everything(hq);

    await expect(syncWith(impostor.gw.sync, impostor.gw.sync.enrolled('HQ')!, direct(hq))).rejects.toMatchObject({ code: 'SYNC_BAD_SIGNATURE' });
    // Even carrying the real POST-A's public key in its header does not help.
    const claimsA = seal({ ...impostor.gw.identity, publicKey: a.gw.identity.publicKey }, [publicOf(hq)], 'hello', 1_000_000,
      encodeMessage({ root: '', chunks: [metaOf(wholeChunk(impostor, ledgerIds(impostor, 'POST-A')[0]!))] }, [wholeChunk(impostor, ledgerIds(impostor, 'POST-A')[0]!).bytes]));
    expect(serveCode(hq, claimsA)).toBe('SYNC_BAD_SIGNATURE');

    expect(await everything(hq)).toEqual(before);
    expect(hq.gw.sync.peer('POST-A')).toMatchObject({ status: 'enrolled', public_key: a.gw.identity.publicKey });
    await expectSyncStillWorks(a, hq);
  });

  it('records an unknown self-signed gateway as pending (ENROLLMENT_PENDING), keeps nothing it sent, and syncs once approved', async () => {
    const hq = gateway('HQ', 'hq');
    const b = gateway('POST-B');
    b.gw.sync.enroll(publicOf(hq));
    await scan(b);
    const before = await dataOf(hq);
    expect(hq.gw.sync.peer('POST-B')).toBeUndefined();

    const bHq = b.gw.sync.enrolled('HQ')!;
    await expect(syncWith(b.gw.sync, bHq, direct(hq))).rejects.toMatchObject({ code: 'ENROLLMENT_PENDING' });
    expect(hq.gw.sync.peer('POST-B')).toMatchObject({ status: 'pending', source: 'request', role: 'post', public_key: b.gw.identity.publicKey, recv_seq: 0 });
    expect(hq.gw.sync.enrolled('POST-B')).toBeUndefined();
    // Asking again does not get it in either.
    await expect(syncWith(b.gw.sync, bHq, direct(hq))).rejects.toMatchObject({ code: 'ENROLLMENT_PENDING' });
    expect(await dataOf(hq)).toEqual(before);
    expect(hq.gw.sync.known('POST-B').size).toBe(0);

    hq.gw.sync.approve('POST-B');
    expect(hq.gw.sync.peer('POST-B')).toMatchObject({ status: 'enrolled', public_key: b.gw.identity.publicKey });
    const report = await syncWith(b.gw.sync, bHq, direct(hq));
    expect(report.complete).toBe(true);
    expect(report.refusedByPeer).toEqual([]);
    expect(await eventsOfPost(hq, 'POST-B')).toBe(1);
    await expectSyncStillWorks(b, hq);
  });

  it('refuses a gateway using the receiver\'s own id, an id that is no post id, and a revoked peer, recording nothing', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    const before = await dataOf(hq);
    const peersBefore = hq.gw.sync.peers();

    // Self-signed, but claims to be HQ itself.
    const fakeHq = identityFrom('HQ', 'hq', newSecrets());
    expect(serveCode(hq, seal(fakeHq, [publicOf(hq)], 'hello', 1, encodeMessage({ root: '', chunks: [] })))).toBe('SYNC_UNKNOWN_PEER');
    // Self-signed, with an id that is not a post id.
    const odd = identityFrom('evil gateway', 'hq', newSecrets());
    expect(serveCode(hq, seal(odd, [publicOf(hq)], 'hello', 1, encodeMessage({ root: '', chunks: [] })))).toBe('SYNC_UNKNOWN_PEER');
    expect(hq.gw.sync.peers()).toEqual(peersBefore);

    // Revoked: its messages no longer count, and it does not become a pending request again.
    hq.gw.sync.revoke('POST-A');
    const revokedRow = hq.gw.sync.peer('POST-A');
    const dataRevoked = await dataOf(hq);
    await scan(a);
    const e = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq)).then(() => undefined, (x: unknown) => x as PoskoError);
    expect(e).toBeInstanceOf(PoskoError);
    // Today its self-signature makes it an "enrollment request" that the revoked row ignores
    // (ENROLLMENT_PENDING); SYNC_UNKNOWN_PEER would say it better. Either way it stays revoked.
    expect(['SYNC_UNKNOWN_PEER', 'ENROLLMENT_PENDING']).toContain(e!.code);
    expect(hq.gw.sync.peer('POST-A')).toEqual(revokedRow);
    expect(await dataOf(hq)).toEqual(dataRevoked);
    expect(before.events.length).toBe(1);
  });
});

describe('replay', () => {
  it('refuses a recorded hello or ack played again (SYNC_REPLAYED with lastSeen), answers the last one again, and changes nothing', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    const rec = recording(direct(hq));
    const first = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, rec);
    expect(first.complete).toBe(true);
    // HQ had its post directory to send: hello, ack (and possibly a confirming hello).
    expect(peekHeader(rec.sent[0]!).kind).toBe('hello');
    expect(rec.sent.some((m) => peekHeader(m).kind === 'ack')).toBe(true);
    const lastSeen = hq.gw.sync.peer('POST-A')!.recv_seq;
    expect(lastSeen).toBe(Math.max(...rec.sent.map((m) => peekHeader(m).seq)));
    const before = await everything(hq);

    const last = rec.sent[rec.sent.length - 1]!;
    for (const m of rec.sent.slice(0, -1)) {
      const e = errorOf(() => serve(hq.gw.sync, m));
      expect(e.code).toBe('SYNC_REPLAYED');
      expect(e.details).toEqual({ lastSeen });
    }
    // The last message again (a network that delivers twice) gets the very same answer.
    expect(serve(hq.gw.sync, last).equals(rec.received[rec.received.length - 1]!)).toBe(true);
    // HQ's own answer reflected back at it is from a sender HQ does not know (itself).
    for (const m of rec.received) expect(serveCode(hq, m)).toBe('SYNC_UNKNOWN_PEER');
    expect(await everything(hq)).toEqual(before);
    await expectSyncStillWorks(a, hq);
  });

  it('completes a sync after the client\'s sequence counter was rolled back (it skips past lastSeen)', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    const lastSeen = hq.gw.sync.peer('POST-A')!.recv_seq;
    expect(lastSeen).toBeGreaterThan(0);

    a.gw.store.meta.set('sync.seq', '0'); // e.g. restored from an old backup
    await scan(a);
    const rec = recording(direct(hq));
    const report = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, rec);
    expect(report.complete).toBe(true);
    expect(report.refusedByPeer).toEqual([]);
    expect(peekHeader(rec.sent[0]!).seq).toBe(1);
    expect(peekHeader(rec.sent[1]!).seq).toBe(lastSeen + 1);
    expect(await eventsOfPost(hq, 'POST-A')).toBe(2);
    expect(Number(a.gw.store.meta.get('sync.seq'))).toBeGreaterThan(lastSeen);
    await expectSyncStillWorks(a, hq);
  });
});

describe('document ownership', () => {
  async function threeGateways() {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    const b = gateway('POST-B');
    introduce(hq, a);
    introduce(hq, b);
    await scan(a);
    await scan(a);
    expect((await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq))).complete).toBe(true);
    await scan(b);
    const aLedger = ledgerIds(a, 'POST-A')[0]!;
    const bLedger = ledgerIds(b, 'POST-B')[0]!;
    expect(hq.gw.store.docs.heads(aLedger)).toEqual(a.gw.store.docs.heads(aLedger));
    return { hq, a, b, aLedger, bLedger };
  }

  it('refuses POST-B\'s changes to POST-A\'s ledger (NOT_OWNER) and records it, while B\'s own ledger in the same hello applies', async () => {
    const { hq, a, b, aLedger, bLedger } = await threeGateways();
    const aHeads = hq.gw.store.docs.heads(aLedger);
    const aEvents = await eventsOfPost(hq, 'POST-A');
    const aDocInfo = hq.gw.store.docs.info(aLedger);
    const stockBefore = (await hq.call('GET', '/api/v1/stock')).body;

    const forged = craftChange(a, aLedger, b.gw.store.actorId(), (d, hour, sample) => {
      const f = freshIds();
      d.hours[hour]![f.id!] = entryLike(sample, f) as never;
    });
    const own = wholeChunk(b, bLedger);
    const reply = push(b, hq, [forged, own]);

    expect(reply.refused).toEqual([{ doc: aLedger, code: 'NOT_OWNER', message: expect.stringContaining(aLedger) }]);
    expect(reply.acks).toEqual(expect.arrayContaining([[aLedger, aHeads], [bLedger, own.heads]]));
    expect(hq.gw.sync.refusals()).toEqual([expect.objectContaining({ peer: 'POST-B', doc_id: aLedger, code: 'NOT_OWNER' })]);
    // A's ledger and everything built from it at HQ are untouched; B's arrived.
    expect(hq.gw.store.docs.heads(aLedger)).toEqual(aHeads);
    expect(hq.gw.store.docs.info(aLedger)).toEqual(aDocInfo);
    expect(await eventsOfPost(hq, 'POST-A')).toBe(aEvents);
    expect(hq.gw.store.docs.heads(bLedger)).toEqual(own.heads);
    expect(await eventsOfPost(hq, 'POST-B')).toBe(1);
    const stockAfter = (await hq.call('GET', '/api/v1/stock')).body.stock as { post: string }[];
    expect(stockAfter.filter((s) => s.post === 'POST-A')).toEqual((stockBefore.stock as { post: string }[]).filter((s) => s.post === 'POST-A'));

    await expectSyncStillWorks(a, hq);
    await expectSyncStillWorks(b, hq);
  });

  // BUG (see report): the owner check compares actor-id prefixes, and a prefix is only a hash of
  // the owner's public key, which every post learns from the directory. A hostile enrolled post
  // writes another post's ledger by choosing an actor id with that post's prefix.
  it('refuses POST-B\'s changes to POST-A\'s ledger even when B chooses an actor id with A\'s prefix', async () => {
    const { hq, a, b, aLedger } = await threeGateways();
    const before = await dataOf(hq);
    const posing = actorPrefix(a.gw.identity.publicKey) + 'ee'.repeat(8);
    const forged = craftChange(a, aLedger, posing, (d, hour, sample) => {
      const f = freshIds();
      d.hours[hour]![f.id!] = entryLike(sample, f) as never;
    });
    const reply = push(b, hq, [forged]);
    expect(reply.refused.map((r) => r.code)).toEqual(['NOT_OWNER']);
    expect(await dataOf(hq)).toEqual(before);
  });
});

describe('hostile ledger content', () => {
  it('refuses a post\'s own ledger with invalid entries (BAD_DOCUMENT) and inserts nothing, not even its valid entries', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    const b = gateway('POST-B');
    introduce(hq, a);
    introduce(hq, b);
    await scan(a);
    await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    await scan(b); // B's ledger holds one valid event; HQ has none of it yet
    const bLedger = ledgerIds(b, 'POST-B')[0]!;
    const bActor = b.gw.store.actorId();
    const aEvent = (await a.call('GET', '/api/v1/events?limit=10')).body.events[0] as { id: string; key: string };
    const before = await dataOf(hq);

    // Each hostile entry, and the reason the refusal must give.
    const bad: Record<string, [(sample: Record<string, unknown>) => unknown, string]> = {
      'missing key': [(s) => entryLike(s, { ...freshIds(), key: undefined }), 'field key is missing'],
      'missing hlc': [(s) => entryLike(s, { ...freshIds(), hlc: undefined }), 'field hlc is missing'],
      'kind explode': [(s) => entryLike(s, { ...freshIds(), kind: 'explode' }), 'unknown event kind explode'],
      'post mismatch': [(s) => entryLike(s, { ...freshIds(), post: 'POST-A' }), 'event of post POST-A in post POST-B'],
      'qty as string': [(s) => entryLike(s, { ...freshIds(), qty: { raw: '5' } }), 'qty is not a number'],
      'qty NaN': [(s) => entryLike(s, { ...freshIds(), qty: { raw: Number.NaN } }), 'qty is not a number'],
      'hlc garbage': [(s) => entryLike(s, { ...freshIds(), hlc: 'yesterday' }), 'hlc is not'],
      'parsed not JSON': [(s) => entryLike(s, { ...freshIds(), parsed: '{not json' }), 'parsed is not JSON'],
      'id with a control character': [(s) => entryLike(s, { ...freshIds(), id: 'evil\u0000id' }), 'field id is missing or not text'],
      'entry not a map': [() => 42, 'entry is not a map'],
      'item is a number': [(s) => entryLike(s, { ...freshIds(), item: { raw: 7 } }), 'field item is not text'],
      'id of another post\'s event': [(s) => entryLike(s, { ...freshIds(), id: aEvent.id }), 'clashes with a different event'],
      'key of another post\'s event': [(s) => entryLike(s, { ...freshIds(), key: aEvent.key }), 'reuses another post\'s idempotency key'],
    };
    for (const [name, [make, reason]] of Object.entries(bad)) {
      const chunk = craftChange(b, bLedger, bActor, (d, hour, sample) => { d.hours[hour]![`bad-${randomUUID()}`] = make(sample) as never; });
      // As a whole document, the way a peer that has nothing of it gets it.
      const base = b.gw.store.docs.load<LedgerDoc>(bLedger, bActor)!;
      const whole = A.loadIncremental(base, chunk.bytes);
      const full: RawChunk = { doc: bLedger, bytes: A.save(whole), heads: A.getHeads(whole), full: true };
      A.free(whole);
      const reply = push(b, hq, [full]);
      expect({ name, refused: reply.refused.map((r) => r.code) }).toEqual({ name, refused: ['BAD_DOCUMENT'] });
      expect({ name, message: reply.refused[0]!.message }).toEqual({ name, message: expect.stringContaining(reason) });
    }

    // The ledger itself says it is someone else's.
    const wrongPost = b.gw.store.docs.load<LedgerDoc>(bLedger, bActor)!;
    const relabelled = A.change(wrongPost, (d) => { d.post = new A.ImmutableString('POST-A'); });
    expect(push(b, hq, [{ doc: bLedger, bytes: A.save(relabelled), heads: A.getHeads(relabelled), full: true }]).refused.map((r) => r.code)).toEqual(['BAD_DOCUMENT']);
    const wrongDay = A.change(b.gw.store.docs.load<LedgerDoc>(bLedger, bActor)!, (d) => { d.day = new A.ImmutableString('1999-01-01'); });
    expect(push(b, hq, [{ doc: bLedger, bytes: A.save(wrongDay), heads: A.getHeads(wrongDay), full: true }]).refused.map((r) => r.code)).toEqual(['BAD_DOCUMENT']);

    expect(await dataOf(hq)).toEqual(before);
    expect(hq.gw.store.docs.info(bLedger)).toBeUndefined();
    expect(hq.gw.sync.refusals(100).map((r) => r.code)).toEqual(Array(Object.keys(bad).length + 2).fill('BAD_DOCUMENT'));
    await expectSyncStillWorks(b, hq);
    expect(await eventsOfPost(hq, 'POST-B')).toBe(2);
  });
});

describe('corrupt Automerge files', () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'automerge-corrupt');
  const files = readdirSync(dir).filter((f) => f.endsWith('.bin')).sort();

  /**
   * Per file, what the receiver answers for: [full: true, has the doc], [full: true, does not],
   * [full: false, has the doc], [full: false, does not]. A whole document is loaded alone first,
   * so `full: true` is always CHUNK_CORRUPT; as changes into a document with history most damage
   * is ignored in silence by Automerge and caught because the claimed heads are not reached; into
   * a replica without the document, the bytes are loaded alone (A.load), which reports damage.
   */
  const C = 'CHUNK_CORRUPT';
  const I = 'CHUNK_INCOMPLETE';
  const S = 'STALE';
  const EXPECTED: Record<string, [string, string, string, string]> = {
    'derived-a-truncated-mid-chunk.bin': [C, C, I, C],
    'derived-b-checksum-byte-flipped.bin': [C, C, I, C],
    'derived-c-body-byte-flipped.bin': [C, C, I, C],
    'derived-c2-body-byte-flipped-checksum-fixed.bin': [C, C, I, C],
    'derived-d-valid-header-garbage-body.bin': [C, C, I, C],
    'derived-d2-valid-doc-trailing-garbage.bin': [C, C, I, C],
    'derived-e-incremental-byte-flipped.bin': [C, C, I, C],
    'derived-e2-incremental-byte-flipped-checksum-fixed.bin': [C, C, S, S],
    'derived-f-panic-doc-shifted-byte-checksum-fixed.bin': [C, C, C, C],
    'derived-f2-panic-incorrect-max-op-byte96-checksum-fixed.bin': [C, C, C, C],
    'fuzzfound-panic-rawcolumniter-slab-boundary.bin': [C, C, C, C],
    'upstream-backend-load-index-out-of-bounds-2.bin': [C, C, I, C],
    'upstream-backend-load-index-out-of-bounds-3.bin': [C, C, I, C],
    'upstream-backend-load-index-out-of-bounds.bin': [C, C, I, C],
    'upstream-backend-load-leb-failed-to-read-whole-buffer.bin': [C, C, I, C],
    'upstream-backend-load-overflowing-add.bin': [C, C, I, C],
    'upstream-fixture-64bit-obj-id-change.bin': [C, C, I, C],
    'upstream-fixture-counter-value-has-incorrect-meta.bin': [C, C, I, C],
    'upstream-fixture-counter-value-is-overlong.bin': [C, C, I, C],
    'upstream-fuzz-action-is-48.bin': [C, C, I, C],
    'upstream-fuzz-crash-da39a3ee.bin': [C, C, I, C],
    'upstream-fuzz-incorrect-max-op.bin': [C, C, I, C],
    'upstream-fuzz-invalid-deflate-stream.bin': [C, C, I, C],
    'upstream-fuzz-missing-actor.bin': [C, C, I, C],
    'upstream-fuzz-overflow-in-length.bin': [C, C, I, C],
    'upstream-fuzz-too-many-deps.bin': [C, C, I, C],
    'upstream-fuzz-too-many-ops.bin': [C, C, I, C],
    'upstream-load-change-with-zero-start-op.bin': [C, C, I, C],
  };

  it('knows every fixture', () => {
    expect(files).toEqual(Object.keys(EXPECTED).sort());
  });

  it('refuses every corrupt file as a whole document or as changes, into a replica with and without that document; stores nothing; sync still works', async () => {
    const withDoc = gateway('HQ', 'hq');
    const without = gateway('HQ2', 'hq');
    const a = gateway('POST-A');
    introduce(withDoc, a);
    introduce(without, a);
    // A relays HQ's post directory to HQ2 at the end: HQ2 must trust HQ to write it.
    without.gw.sync.enroll(publicOf(withDoc));
    await scan(a);
    expect((await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(withDoc))).complete).toBe(true);
    await scan(a); // the heads A's next chunk would bring: what a damaged copy of it claims
    const doc = ledgerIds(a, 'POST-A')[0]!;
    const claimed = a.gw.store.docs.heads(doc);
    expect(withDoc.gw.store.docs.heads(doc)).not.toEqual(claimed);
    expect(without.gw.store.docs.info(doc)).toBeUndefined();
    const before = [await dataOf(withDoc), await dataOf(without)];

    const got: Record<string, string[]> = {};
    for (const f of files) {
      const bytes = readFileSync(join(dir, f));
      const codes: string[] = [];
      for (const full of [true, false]) {
        for (const target of [withDoc, without]) {
          const reply = push(a, target, [{ doc, bytes, heads: claimed, full }]);
          // Changes that build on changes the receiver lacks are not refused, only acknowledged
          // with what it has (STALE: what a restored receiver must answer); nothing is stored.
          expect(reply.refused.length).toBeLessThanOrEqual(1);
          if (reply.refused[0]) expect(reply.refused[0].doc).toBe(doc);
          codes.push(reply.refused[0]?.code ?? S);
        }
      }
      got[f] = codes;
    }
    if (process.env.PRINT_FIXTURES) console.log(JSON.stringify(got));
    expect(got).toEqual(EXPECTED);
    expect(await dataOf(withDoc)).toEqual(before[0]);
    expect(await dataOf(without)).toEqual(before[1]);
    // Each refusal was recorded, with its code.
    const recorded = (codes: string[]) => codes.filter((c) => c !== S).sort();
    expect(withDoc.gw.sync.refusals(1000).map((r) => r.code).sort()).toEqual(recorded(files.flatMap((f) => [EXPECTED[f]![0], EXPECTED[f]![2]])));
    expect(without.gw.sync.refusals(1000).map((r) => r.code).sort()).toEqual(recorded(files.flatMap((f) => [EXPECTED[f]![1], EXPECTED[f]![3]])));

    // Automerge in this process still works, and so does a real sync into both replicas.
    await expectSyncStillWorks(a, withDoc);
    await expectSyncStillWorks(a, without);
    expect((await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(withDoc))).complete).toBe(true);
    expect(withDoc.gw.store.docs.heads(doc)).toEqual(a.gw.store.docs.heads(doc));
    expect(without.gw.store.docs.heads(doc)).toEqual(a.gw.store.docs.heads(doc));
    expect(await eventIds(withDoc)).toEqual(await eventIds(without));
  });

  it('refuses the files Automerge silently merges even when the sender claims exactly the heads they reach', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    const doc = ledgerIds(a, 'POST-A')[0]!;
    const mine = hq.gw.store.docs.load<unknown>(doc)!;
    const before = await dataOf(hq);

    const got: Record<string, string> = {};
    for (const f of files) {
      const bytes = readFileSync(join(dir, f));
      let heads: string[];
      try {
        const merged = A.loadIncremental(A.clone(mine), bytes);
        heads = A.getHeads(merged);
        A.free(merged);
      } catch {
        continue; // Automerge refuses it outright: covered above
      }
      if (heads.join() === A.getHeads(mine).join()) continue; // ignored in silence: nothing to claim
      const reply = push(a, hq, [{ doc, bytes, heads, full: false }]);
      got[f] = reply.refused.map((r) => r.code).join();
    }
    // These add changes by an actor that is not POST-A's: the owner check refuses them.
    expect(got).toEqual({
      'derived-c2-body-byte-flipped-checksum-fixed.bin': 'NOT_OWNER',
      'derived-d2-valid-doc-trailing-garbage.bin': 'NOT_OWNER',
      'upstream-fuzz-incorrect-max-op.bin': 'NOT_OWNER',
    });
    A.free(mine);
    expect(await dataOf(hq)).toEqual(before);
    await expectSyncStillWorks(a, hq);
  });
});

describe('chunk hashes', () => {
  it('refuses a chunk whose bytes do not match its SHA-256 (CHUNK_CORRUPT) before Automerge sees it; the other chunk applies', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    await scan(a);
    const doc = ledgerIds(a, 'POST-A')[0]!;
    const next = a.gw.sync.chunkSince(doc, hq.gw.store.docs.heads(doc))!;
    expect(next.full).toBe(false);
    const before = await dataOf(hq);

    // Same length, one byte different, the hash of the original.
    const altered = Buffer.from(next.bytes);
    altered[altered.length - 1]! ^= 0xff;
    const reply = push(a, hq, [{ doc, bytes: altered, heads: next.heads, full: false, sha: sha256(next.bytes) }]);
    expect(reply.refused).toEqual([{ doc, code: 'CHUNK_CORRUPT', message: expect.stringContaining('SHA-256') }]);
    expect(await dataOf(hq)).toEqual(before);
    // Altered whole documents too, and a hash that is simply someone else's.
    const whole = wholeChunk(a, doc);
    const wholeAltered = Buffer.from(whole.bytes);
    wholeAltered[20]! ^= 0x01;
    expect(push(a, hq, [{ ...whole, bytes: wholeAltered, sha: sha256(whole.bytes) }]).refused.map((r) => r.code)).toEqual(['CHUNK_CORRUPT']);
    expect(push(a, hq, [{ ...whole, sha: sha256(Buffer.from('something else')) }]).refused.map((r) => r.code)).toEqual(['CHUNK_CORRUPT']);
    expect(await dataOf(hq)).toEqual(before);

    // In one hello with a good chunk: only the bad one is refused.
    const mixed = push(a, hq, [{ doc, bytes: altered, heads: next.heads, full: false, sha: sha256(next.bytes) }, { doc, bytes: next.bytes, heads: next.heads, full: false }]);
    expect(mixed.refused.map((r) => r.code)).toEqual(['CHUNK_CORRUPT']);
    expect(hq.gw.store.docs.heads(doc)).toEqual(a.gw.store.docs.heads(doc));
    await expectSyncStillWorks(a, hq);
  });

  // BUG (see report): a hash mismatch is refused in `checkChunks` (session.ts), outside
  // `SyncStore.apply`, so it is never written to sync_refusals nor passed to onRefused (log,
  // metric): the operator does not see that a peer sends damaged chunks.
  it('records a hash-mismatch refusal like every other refusal', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    await scan(a);
    const c = wholeChunk(a, ledgerIds(a, 'POST-A')[0]!);
    expect(push(a, hq, [{ ...c, sha: sha256(Buffer.from('x')) }]).refused.map((r) => r.code)).toEqual(['CHUNK_CORRUPT']);
    expect(hq.gw.sync.refusals()).toEqual([expect.objectContaining({ peer: 'POST-A', doc_id: c.doc, code: 'CHUNK_CORRUPT' })]);
  });
});

describe('bundles', () => {
  it('refuses a tampered bundle (SYNC_BAD_SIGNATURE) and one from an unknown sender (SYNC_UNKNOWN_PEER); a second import changes nothing', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    const b = gateway('POST-B');
    introduce(hq, a);
    b.gw.sync.enroll(publicOf(hq));
    await scan(a);
    await scan(b);
    const bundle = exportBundle(a.gw.sync, [publicOf(hq)], null).bytes;
    const headerEnd = 7 + bundle.readUInt16BE(5);
    const before = await everything(hq);

    for (const at of [headerEnd + 3, Math.floor((headerEnd + bundle.length - 64) / 2), bundle.length - 65, bundle.length - 1, bundle.length - 40]) {
      const t = Buffer.from(bundle);
      t[at]! ^= 0x01;
      expect({ at, code: errorOf(() => importBundle(hq.gw.sync, t)).code }).toEqual({ at, code: 'SYNC_BAD_SIGNATURE' });
    }
    expect(errorOf(() => importBundle(hq.gw.sync, bundle.subarray(0, bundle.length - 1))).code).toBe('SYNC_BAD_SIGNATURE');
    expect(errorOf(() => importBundle(hq.gw.sync, bundle.subarray(0, 50))).code).toBe('SYNC_MALFORMED');
    expect(errorOf(() => importBundle(hq.gw.sync, new Uint8Array(0))).code).toBe('SYNC_MALFORMED');

    const fromB = exportBundle(b.gw.sync, [publicOf(hq)], null).bytes;
    expect(errorOf(() => importBundle(hq.gw.sync, fromB)).code).toBe('SYNC_UNKNOWN_PEER');
    // A bundle is no enrollment request.
    expect(hq.gw.sync.peer('POST-B')).toBeUndefined();
    // A live message is no bundle.
    expect(errorOf(() => importBundle(hq.gw.sync, helloFrom(a, hq, []))).code).toBe('SYNC_MALFORMED');
    expect(await everything(hq)).toEqual(before);

    const first = importBundle(hq.gw.sync, bundle);
    expect(first.refused).toEqual([]);
    expect(first.events).toBe(1);
    const afterFirst = await dataOf(hq);
    const second = importBundle(hq.gw.sync, bundle);
    expect(second).toMatchObject({ from: 'POST-A', changed: 0, events: 0, refused: [] });
    expect(await dataOf(hq)).toEqual(afterFirst);
    await expectSyncStillWorks(a, hq);
  });

  it('refuses a bundle for another gateway (SYNC_NOT_FOR_US) and one from a revoked peer (SYNC_UNKNOWN_PEER)', async () => {
    const hq = gateway('HQ', 'hq');
    const other = gateway('HQ2', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    introduce(other, a);
    await scan(a);
    const before = await everything(hq);
    expect(errorOf(() => importBundle(hq.gw.sync, exportBundle(a.gw.sync, [publicOf(other)], null).bytes)).code).toBe('SYNC_NOT_FOR_US');
    expect(await everything(hq)).toEqual(before);

    const bundle = exportBundle(a.gw.sync, [publicOf(hq), publicOf(other)], null).bytes;
    hq.gw.sync.revoke('POST-A');
    const revoked = await everything(hq);
    expect(errorOf(() => importBundle(hq.gw.sync, bundle)).code).toBe('SYNC_UNKNOWN_PEER');
    expect(await everything(hq)).toEqual(revoked);
    // The same bundle is fine for the other recipient.
    expect(importBundle(other.gw.sync, bundle).events).toBe(1);
  });
});

describe('POST /sync/v1', () => {
  async function post(g: TestGateway, body: Uint8Array | string, contentType?: string) {
    const headers: Record<string, string> = contentType ? { 'content-type': contentType } : {};
    const res = await g.gw.app.request('/sync/v1', { method: 'POST', headers, body });
    const text = Buffer.from(await res.arrayBuffer()).toString('utf8');
    return { status: res.status, type: res.headers.get('content-type') ?? '', text };
  }

  function expectError(r: { status: number; type: string; text: string }, status: number, code: string) {
    expect(r.status).toBe(status);
    expect(r.type).toMatch(/^application\/json/);
    const body = JSON.parse(r.text) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(typeof body.error.message).toBe('string');
    expect(r.text).not.toMatch(/stack|\bat .+\.ts:\d+|node_modules/);
    return body.error as { code: string; message: string; details?: Record<string, unknown> };
  }

  it('answers garbage, the wrong content type, tampering, strangers and replays with a JSON error and a stable code, no stack', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    const b = gateway('POST-B');
    introduce(hq, a);
    b.gw.sync.enroll(publicOf(hq));
    await scan(a);
    const hello = helloFrom(a, hq, [wholeChunk(a, ledgerIds(a, 'POST-A')[0]!)]);
    // The route prepares HQ's own documents (fold, manifest) before it answers anything: let it
    // do that once, so what follows compares only what the refused messages could change.
    expectError(await post(hq, Buffer.from('warm-up'), 'application/octet-stream'), 400, 'SYNC_MALFORMED');
    const before = await everything(hq);

    expectError(await post(hq, hello, 'text/plain'), 400, 'BAD_REQUEST');
    expectError(await post(hq, hello, 'application/json'), 400, 'BAD_REQUEST');
    expectError(await post(hq, hello), 400, 'BAD_REQUEST');
    expectError(await post(hq, '{"hello":"world"}', 'application/json'), 400, 'BAD_REQUEST');
    expectError(await post(hq, new Uint8Array(0), 'application/octet-stream'), 400, 'SYNC_MALFORMED');
    expectError(await post(hq, Buffer.from('GET / HTTP/1.1\r\n\r\n'), 'application/octet-stream'), 400, 'SYNC_MALFORMED');
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 0xff;
    expectError(await post(hq, garbage, 'application/octet-stream'), 400, 'SYNC_MALFORMED');
    expectError(await post(hq, Buffer.concat([Buffer.from('PSKS\x01\xff\xff'), garbage]), 'application/octet-stream'), 400, 'SYNC_MALFORMED');
    const tampered = Buffer.from(hello);
    tampered[hello.length - 100]! ^= 0x01;
    expectError(await post(hq, tampered, 'application/octet-stream'), 401, 'SYNC_BAD_SIGNATURE');
    const fromB = helloFrom(b, hq, []);
    const forOther = seal(a.gw.identity, [publicOf(b)], 'hello', a.gw.sync.nextSeq(), encodeMessage({ root: '', chunks: [] }));
    expectError(await post(hq, forOther, 'application/octet-stream'), 400, 'SYNC_NOT_FOR_US');
    expect(await everything(hq)).toEqual(before);

    expectError(await post(hq, fromB, 'application/octet-stream'), 403, 'ENROLLMENT_PENDING');
    expect(hq.gw.sync.peer('POST-B')?.status).toBe('pending');

    // The right content type with a charset is fine; the message was not consumed by the refusals.
    const ok = await post(hq, hello, 'application/octet-stream; charset=binary');
    expect(ok.status).toBe(200);
    expect(ok.type).toMatch(/^application\/octet-stream/);
    // Delivered twice: the same answer again.
    expect((await post(hq, hello, 'application/octet-stream')).status).toBe(200);
    // Once newer messages came, it is a replay.
    await expectSyncStillWorks(a, hq);
    const replayed = expectError(await post(hq, hello, 'application/octet-stream'), 409, 'SYNC_REPLAYED');
    expect(replayed.details).toEqual({ lastSeen: hq.gw.sync.peer('POST-A')!.recv_seq });
  });

  // BUG (see report): the server sends errors as { error: { code, details } } (http/errors.ts),
  // but HttpTransport (transport/http-sync.ts) reads `code` and `details` at the top level, so
  // every refusal arrives as SYNC_PEER_ERROR without lastSeen and a restored post never skips
  // its sequence number over HTTP.
  it('over real HTTP, a client whose sequence counter was rolled back still completes (SYNC_REPLAYED reaches HttpTransport)', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    const server = serveHttp({ fetch: hq.gw.app.fetch, port: 0, hostname: '127.0.0.1' });
    cleanups.push(() => new Promise<void>((resolve) => { server.close(() => resolve()); }));
    await new Promise<void>((resolve) => { if (server.listening) resolve(); else server.once('listening', () => resolve()); });
    const port = (server.address() as AddressInfo).port;
    const http = new HttpTransport(`http://127.0.0.1:${port}`);

    await scan(a);
    expect((await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, http)).complete).toBe(true);
    a.gw.store.meta.set('sync.seq', '0');
    await scan(a);
    const report = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, http);
    expect(report.complete).toBe(true);
    expect(await eventsOfPost(hq, 'POST-A')).toBe(2);
  });
});
