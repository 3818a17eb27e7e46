/**
 * The sealed message every sync exchange and bundle travels in: a small clear header (who sends,
 * for whom, a per-sender sequence number), a body that is brotli-compressed and then encrypted
 * for each recipient (a random content key, wrapped with an X25519+HKDF key per recipient;
 * AES-256-GCM), and an Ed25519 signature over all of it. `open` checks everything before it
 * returns anything: wrong magic, unknown sender, a bad signature, a message for someone else or
 * a body that does not decrypt are refused with a stable code. Pure: node:crypto and node:zlib.
 *
 *   "PSKS" | version u8 | header length u16 | header JSON | ciphertext | signature (64)
 *
 * The body is a frame: u32 JSON length | JSON | binary blobs (lengths listed in the JSON).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib';
import { PoskoError } from '../domain/errors.ts';
import { messageKey, signBytes, verifyBytes, type Identity, type PublicIdentity } from './identity.ts';

const MAGIC = Buffer.from('PSKS');
const VERSION = 1;
const SIG_BYTES = 64;
const TAG_BYTES = 16;
const IV_BYTES = 12;

/** Kinds of sealed messages. */
export type MessageKind = 'hello' | 'reply' | 'ack' | 'acked' | 'bundle';

/** The clear header of a sealed message. */
export interface Header {
  kind: MessageKind;
  from: string;
  /** The sender's public key, in a hello: lets a gateway that does not know it yet record an enrollment request. */
  key?: string;
  to: string[];
  /** Per-sender sequence number; live messages must increase (replays are refused). */
  seq: number;
  /** base64url: HKDF salt and the content IV. */
  salt: string;
  iv: string;
  /** Per recipient: the content key, wrapped (base64url of iv|ciphertext|tag). */
  keys: Record<string, string>;
}

/** A decoded message body: JSON plus binary blobs. */
export interface Body<T> {
  json: T;
  blobs: Uint8Array[];
}

/** Largest header accepted. */
const MAX_HEADER = 60_000;
/** Largest decompressed body accepted (a hostile message must not inflate without bound). */
export const MAX_BODY_BYTES = 256 * 1024 * 1024;

function wrapInfo(from: string, to: string): string {
  return `posko-sync-v1 ${from}->${to}`;
}

function aesSeal(key: Uint8Array, iv: Uint8Array, plain: Uint8Array, aad?: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  if (aad) c.setAAD(aad);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function aesOpen(key: Uint8Array, iv: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Buffer {
  if (sealed.length < TAG_BYTES) throw new Error('short ciphertext');
  const d = createDecipheriv('aes-256-gcm', key, iv);
  if (aad) d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]);
}

/** Encodes a body frame: JSON and blobs. */
export function encodeBody<T>(body: Body<T>): Buffer {
  const json = Buffer.from(JSON.stringify(body.json));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([len, json, ...body.blobs]);
}

/** Decodes a body frame; `blobSizes` reads the blob lengths from the JSON. */
export function decodeBody<T>(frame: Uint8Array, blobSizes: (json: T) => number[]): Body<T> {
  const buf = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (buf.length < 4) throw new PoskoError('SYNC_MALFORMED', 'message body is truncated');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw new PoskoError('SYNC_MALFORMED', 'message body is truncated');
  let json: T;
  try {
    json = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as T;
  } catch {
    throw new PoskoError('SYNC_MALFORMED', 'message body is not valid JSON');
  }
  const blobs: Uint8Array[] = [];
  let at = 4 + n;
  for (const size of blobSizes(json)) {
    if (!Number.isSafeInteger(size) || size < 0 || at + size > buf.length) throw new PoskoError('SYNC_MALFORMED', 'message body is truncated');
    blobs.push(buf.subarray(at, at + size));
    at += size;
  }
  if (at !== buf.length) throw new PoskoError('SYNC_MALFORMED', 'message body has trailing bytes');
  return { json, blobs };
}

/** Seals a body from `me` for `recipients`. */
export function seal(me: Identity, recipients: readonly PublicIdentity[], kind: MessageKind, seq: number, body: Uint8Array): Buffer {
  // Only a message that may come from a stranger carries the sender's key.
  const salt = randomBytes(16);
  const iv = randomBytes(IV_BYTES);
  const contentKey = randomBytes(32);
  const keys: Record<string, string> = {};
  for (const r of recipients) {
    const kek = messageKey(me.boxKey, r.publicKey, salt, wrapInfo(me.id, r.id));
    const wrapIv = randomBytes(IV_BYTES);
    keys[r.id] = Buffer.concat([wrapIv, aesSeal(kek, wrapIv, contentKey)]).toString('base64url');
  }
  const header: Header = {
    kind, from: me.id, ...(kind === 'hello' || kind === 'bundle' ? { key: me.publicKey } : {}), to: recipients.map((r) => r.id), seq,
    salt: salt.toString('base64url'), iv: iv.toString('base64url'), keys,
  };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const compressed = brotliCompressSync(body, {
    // Bytes on a satellite link cost more than CPU: the best quality up to 1 MB (a few ms per
    // 100 KB), less above, where it would cost seconds.
    params: { [zlib.BROTLI_PARAM_QUALITY]: body.length <= 1_048_576 ? 11 : body.length <= 4_194_304 ? 9 : 5, [zlib.BROTLI_PARAM_SIZE_HINT]: body.length },
  });
  const ciphertext = aesSeal(contentKey, iv, compressed, headerBytes);
  const prefix = Buffer.alloc(MAGIC.length + 3);
  MAGIC.copy(prefix);
  prefix.writeUInt8(VERSION, 4);
  prefix.writeUInt16BE(headerBytes.length, 5);
  const signed = Buffer.concat([prefix, headerBytes, ciphertext]);
  return Buffer.concat([signed, signBytes(me, signed)]);
}

/** Reads the clear header of a sealed message without verifying it (to find the sender's key). */
export function peekHeader(message: Uint8Array): Header {
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (buf.length < MAGIC.length + 3 + SIG_BYTES || !buf.subarray(0, 4).equals(MAGIC)) {
    throw new PoskoError('SYNC_MALFORMED', 'not a posko sync message (bad magic or too short)');
  }
  if (buf.readUInt8(4) !== VERSION) throw new PoskoError('SYNC_MALFORMED', `unsupported sync message version ${buf.readUInt8(4)}`);
  const n = buf.readUInt16BE(5);
  if (n > MAX_HEADER || 7 + n + SIG_BYTES > buf.length) throw new PoskoError('SYNC_MALFORMED', 'sync message header is truncated');
  let h: Header;
  try {
    h = JSON.parse(buf.subarray(7, 7 + n).toString('utf8')) as Header;
  } catch {
    throw new PoskoError('SYNC_MALFORMED', 'sync message header is not valid JSON');
  }
  const ok = h && typeof h === 'object' && typeof h.kind === 'string' && typeof h.from === 'string' && (h.key === undefined || typeof h.key === 'string')
    && Array.isArray(h.to) && h.to.every((t) => typeof t === 'string') && Number.isSafeInteger(h.seq)
    && typeof h.salt === 'string' && typeof h.iv === 'string' && h.keys !== null && typeof h.keys === 'object';
  if (!ok) throw new PoskoError('SYNC_MALFORMED', 'sync message header has the wrong shape');
  return h;
}

/**
 * Verifies and opens a sealed message for `me`. `senderKey` is the public key this gateway has
 * enrolled for `header.from` (never the key the message claims). Throws SYNC_BAD_SIGNATURE,
 * SYNC_NOT_FOR_US or SYNC_MALFORMED; returns the header and the decompressed body.
 */
export function open(me: Identity, senderKey: string, message: Uint8Array): { header: Header; body: Buffer } {
  const header = peekHeader(message);
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  const signed = buf.subarray(0, buf.length - SIG_BYTES);
  if (!verifyBytes(senderKey, signed, buf.subarray(buf.length - SIG_BYTES))) {
    throw new PoskoError('SYNC_BAD_SIGNATURE', `the message is not signed by ${header.from}'s enrolled key`);
  }
  const wrapped = header.keys[me.id];
  if (!header.to.includes(me.id) || typeof wrapped !== 'string') {
    throw new PoskoError('SYNC_NOT_FOR_US', `the message is for ${header.to.join(', ')}, not ${me.id}`);
  }
  const n = buf.readUInt16BE(5);
  const headerBytes = buf.subarray(7, 7 + n);
  try {
    const salt = Buffer.from(header.salt, 'base64url');
    const w = Buffer.from(wrapped, 'base64url');
    const kek = messageKey(me.boxKey, senderKey, salt, wrapInfo(header.from, me.id));
    const contentKey = aesOpen(kek, w.subarray(0, IV_BYTES), w.subarray(IV_BYTES));
    const compressed = aesOpen(contentKey, Buffer.from(header.iv, 'base64url'), buf.subarray(7 + n, buf.length - SIG_BYTES), headerBytes);
    const body = brotliDecompressSync(compressed, { maxOutputLength: MAX_BODY_BYTES });
    return { header, body };
  } catch (e) {
    if (e instanceof PoskoError) throw e;
    throw new PoskoError('SYNC_MALFORMED', 'the message body does not decrypt or decompress');
  }
}
