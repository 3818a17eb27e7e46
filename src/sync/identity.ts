/**
 * A gateway's cryptographic identity: an Ed25519 key that signs every sync message and bundle,
 * and an X25519 key that lets peers encrypt for it. The public half travels as one string (both
 * raw public keys, base64url); the fingerprint people compare by eye or QR code is a short hash of
 * it. Pure: node:crypto only, no storage (`store/identity-file.ts` keeps the private keys).
 */
import {
  createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, sign, verify, type KeyObject,
} from 'node:crypto';
import { PoskoError } from '../domain/errors.ts';

/** The role a gateway plays in the district. */
export type Role = 'post' | 'hq';

/** What anyone may know about a gateway: enough to verify it and to encrypt for it. */
export interface PublicIdentity {
  id: string;
  role: Role;
  /**
   * `pk1.` then base64url of the raw Ed25519 public key (32 bytes) followed by the raw X25519
   * public key (32 bytes). The prefix names the format and keeps a key from starting with "-"
   * (a command line would take it for an option).
   */
  publicKey: string;
}

/** A gateway's own identity, with its private keys. */
export interface Identity extends PublicIdentity {
  signKey: KeyObject;
  boxKey: KeyObject;
}

/** The private keys as stored (PKCS#8 DER, base64). */
export interface IdentitySecrets {
  sign: string;
  box: string;
}

// DER prefixes that wrap a raw 32-byte public key into SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');

const KEY_PREFIX = 'pk1.';
const PUBLIC_KEY_RE = /^pk1\.[A-Za-z0-9_-]{86}$/;

/** Two new key pairs, as stored secrets. */
export function newSecrets(): IdentitySecrets {
  const der = (k: KeyObject) => k.export({ format: 'der', type: 'pkcs8' }).toString('base64');
  return { sign: der(generateKeyPairSync('ed25519').privateKey), box: der(generateKeyPairSync('x25519').privateKey) };
}

/** The identity of a gateway from its stored secrets. */
export function identityFrom(id: string, role: Role, secrets: IdentitySecrets): Identity {
  const signKey = createPrivateKey({ key: Buffer.from(secrets.sign, 'base64'), format: 'der', type: 'pkcs8' });
  const boxKey = createPrivateKey({ key: Buffer.from(secrets.box, 'base64'), format: 'der', type: 'pkcs8' });
  const raw = (k: KeyObject) => createPublicKey(k).export({ format: 'der', type: 'spki' }).subarray(-32);
  return { id, role, signKey, boxKey, publicKey: KEY_PREFIX + Buffer.concat([raw(signKey), raw(boxKey)]).toString('base64url') };
}

/** True when the string has the shape of a posko public key. */
export function isPublicKey(s: string): boolean {
  return PUBLIC_KEY_RE.test(s) && Buffer.from(s.slice(KEY_PREFIX.length), 'base64url').length === 64;
}

function keyBytes(publicKey: string): Buffer {
  if (!isPublicKey(publicKey)) throw new PoskoError('VALIDATION', 'not a posko public key (pk1. and 86 characters of base64url)');
  return Buffer.from(publicKey.slice(KEY_PREFIX.length), 'base64url');
}

/** The Ed25519 verification key inside a public key string. */
export function verifyKeyOf(publicKey: string): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI, keyBytes(publicKey).subarray(0, 32)]), format: 'der', type: 'spki' });
}

/** The X25519 key inside a public key string. */
export function boxKeyOf(publicKey: string): KeyObject {
  return createPublicKey({ key: Buffer.concat([X25519_SPKI, keyBytes(publicKey).subarray(32)]), format: 'der', type: 'spki' });
}

/**
 * The fingerprint people compare: SHA-256 of the public key, first 20 bytes in base32, in groups
 * of four (`ABCD-EFGH-...`, 8 groups). Read it aloud over a radio; compare it on both screens.
 */
export function fingerprint(publicKey: string): string {
  const digest = createHash('sha256').update(keyBytes(publicKey)).digest().subarray(0, 20);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join('-');
}

/** The actor-id prefix every Automerge change by this identity carries (hex, 16 bytes). */
export function actorPrefix(publicKey: string): string {
  return createHash('sha256').update('posko-actor\0').update(keyBytes(publicKey)).digest().subarray(0, 16).toString('hex');
}

/** Ed25519 signature of `data`. */
export function signBytes(me: Identity, data: Uint8Array): Buffer {
  return sign(null, data, me.signKey);
}

/** True when `sig` is `publicKey`'s signature of `data`. */
export function verifyBytes(publicKey: string, data: Uint8Array, sig: Uint8Array): boolean {
  try {
    return verify(null, data, verifyKeyOf(publicKey), sig);
  } catch {
    return false;
  }
}

/**
 * The symmetric key for one message between two gateways: X25519 agreement of the sender's and
 * the recipient's keys, through HKDF-SHA256 with the message's random salt. Either side computes it.
 */
export function messageKey(mine: KeyObject, theirPublicKey: string, salt: Uint8Array, info: string): Buffer {
  const shared = diffieHellman({ privateKey: mine, publicKey: boxKeyOf(theirPublicKey) });
  return Buffer.from(hkdfSync('sha256', shared, salt, info, 32));
}

/** What a head statement signs: this document, at exactly these heads, is as its writer made it. */
export function headsStatementBytes(docId: string, heads: readonly string[]): Buffer {
  return Buffer.from(`posko-heads-v1\0${docId}\0${[...heads].sort().join(',')}`);
}
