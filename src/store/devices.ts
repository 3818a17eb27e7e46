/**
 * Device credentials: each scanner or phone gets a token; only its SHA-256 hash is stored, so a
 * copied database does not leak working tokens. Used by the gateway and the CLI alike, on the same
 * database (WAL lets the CLI add or revoke a device while the gateway runs; revocation takes
 * effect on the next request).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { PoskoError } from '../domain/errors.ts';
import { DEVICE_ID_RE } from '../domain/ids.ts';

/** A device as listed (never with its token). */
export interface Device {
  id: string;
  name: string;
  createdAt: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
}

/** The SHA-256 of a token, hex. Tokens are 256-bit random, so a plain hash suffices. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A fresh random token (base64url, 43 characters). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Compares two strings in constant time. */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

interface DeviceRow { id: string; name: string; created_at: string; revoked_at: string | null; last_seen_at: string | null }
const toDevice = (r: DeviceRow): Device => ({ id: r.id, name: r.name, createdAt: r.created_at, revokedAt: r.revoked_at, lastSeenAt: r.last_seen_at });

/** Device registry over one database. */
export class Devices {
  constructor(private readonly db: Database.Database, private readonly now: () => Date = () => new Date()) {}

  /**
   * Registers a device and returns its token, which is shown once and never stored. The id is the
   * name made safe, with a suffix when taken. Durable on return.
   */
  add(name: string): { device: Device; token: string } {
    const clean = name.trim();
    if (clean.length === 0 || clean.length > 64) throw new PoskoError('VALIDATION', 'device name: 1-64 characters');
    const base = clean.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[-_.]+/, '').slice(0, 48) || 'device';
    const token = newToken();
    const createdAt = this.now().toISOString();
    const insert = this.db.prepare('INSERT INTO devices (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)');
    const exists = this.db.prepare('SELECT 1 FROM devices WHERE id = ?');
    const id = this.db.transaction(() => {
      let candidate = base;
      for (let n = 2; exists.get(candidate); n++) candidate = `${base}-${n}`;
      if (!DEVICE_ID_RE.test(candidate)) throw new PoskoError('VALIDATION', `device id ${candidate} is not valid`);
      insert.run(candidate, clean, hashToken(token), createdAt);
      return candidate;
    }).immediate();
    return { device: { id, name: clean, createdAt, revokedAt: null, lastSeenAt: null }, token };
  }

  /** Every device, revoked ones included. */
  list(): Device[] {
    return (this.db.prepare('SELECT * FROM devices ORDER BY created_at, id').all() as DeviceRow[]).map(toDevice);
  }

  /** Revokes a device's token: its next request is refused. Durable on return. */
  revoke(id: string): Device {
    const r = this.db.prepare('UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? RETURNING *').get(this.now().toISOString(), id) as DeviceRow | undefined;
    if (!r) throw new PoskoError('NOT_FOUND', `no device ${id}`);
    return toDevice(r);
  }

  /** The active (not revoked) device holding this token, if any. */
  byToken(token: string): Device | undefined {
    const r = this.db.prepare('SELECT * FROM devices WHERE token_hash = ? AND revoked_at IS NULL').get(hashToken(token)) as DeviceRow | undefined;
    return r && toDevice(r);
  }
}
