/**
 * Device credentials and status: each scanner or phone gets a token, which is its HTTP bearer
 * token and its MQTT password (username: the device id). Only hashes are stored (SHA-256 to check
 * it here; Mosquitto's PBKDF2 form to write a password file for an external broker), so a copied
 * database does not leak working tokens. Used by the gateway and the CLI alike, on the same
 * database (WAL lets the CLI add or revoke a device while the gateway runs; revocation takes
 * effect on the next request or connection).
 */
import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { PoskoError } from '../domain/errors.ts';
import { EventKindSchema, type EventKind } from '../domain/events.ts';
import { DEVICE_ID_RE } from '../domain/ids.ts';

/** A device as listed (never with its token). */
export interface Device {
  id: string;
  name: string;
  createdAt: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
  /** What a bare barcode from this device records. */
  defaultAction: EventKind;
  /** From its MQTT status messages and last will: null until it reported. */
  online: boolean | null;
  firmware: string | null;
  battery: number | null;
  statusAt: string | null;
  lastScanAt: string | null;
}

/** A device's last reported status (MQTT `status` topic). */
export interface DeviceStatus {
  online: boolean;
  firmware?: string | undefined;
  battery?: number | undefined;
  extra?: Record<string, unknown>;
}

/** The SHA-256 of a token, hex. Tokens are 256-bit random, so a plain hash suffices. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A password hash in Mosquitto's `$7$` format (PBKDF2-SHA512, 101 iterations, 12-byte salt). */
export function mosquittoHash(password: string, salt: Buffer = randomBytes(12), iterations = 101): string {
  const hash = pbkdf2Sync(password, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
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

interface DeviceRow {
  id: string; name: string; created_at: string; revoked_at: string | null; last_seen_at: string | null;
  mqtt_hash: string | null; default_action: string; online: number | null; firmware: string | null;
  battery: number | null; status_at: string | null; last_scan_at: string | null;
}
const toDevice = (r: DeviceRow): Device => ({
  id: r.id, name: r.name, createdAt: r.created_at, revokedAt: r.revoked_at, lastSeenAt: r.last_seen_at,
  defaultAction: r.default_action as EventKind, online: r.online === null ? null : r.online === 1,
  firmware: r.firmware, battery: r.battery, statusAt: r.status_at, lastScanAt: r.last_scan_at,
});

/** Device registry over one database. */
export class Devices {
  private readonly byTokenStmt: Database.Statement;
  private readonly byIdStmt: Database.Statement;
  private readonly seenStmt: Database.Statement;
  private readonly statusStmt: Database.Statement;

  constructor(private readonly db: Database.Database, private readonly now: () => Date = () => new Date()) {
    this.byTokenStmt = db.prepare('SELECT * FROM devices WHERE token_hash = ? AND revoked_at IS NULL');
    this.byIdStmt = db.prepare('SELECT * FROM devices WHERE id = ?');
    this.seenStmt = db.prepare('UPDATE devices SET last_seen_at = ?, last_scan_at = coalesce(?, last_scan_at) WHERE id = ?');
    this.statusStmt = db.prepare('UPDATE devices SET online = ?, firmware = coalesce(?, firmware), battery = coalesce(?, battery), status = ?, status_at = ?, last_seen_at = ? WHERE id = ?');
  }

  /**
   * Registers a device and returns its token, which is shown once and never stored. The id is the
   * name made safe, with a suffix when taken. Durable on return.
   */
  add(name: string, opts: { defaultAction?: string } = {}): { device: Device; token: string } {
    const clean = name.trim();
    if (clean.length === 0 || clean.length > 64) throw new PoskoError('VALIDATION', 'device name: 1-64 characters');
    const action = EventKindSchema.safeParse(opts.defaultAction ?? 'receive');
    if (!action.success || action.data === 'void') throw new PoskoError('VALIDATION', `default action must be one of ${EventKindSchema.options.filter((k) => k !== 'void').join(', ')}`);
    const base = clean.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[-_.]+/, '').slice(0, 48) || 'device';
    const token = newToken();
    const createdAt = this.now().toISOString();
    const insert = this.db.prepare('INSERT INTO devices (id, name, token_hash, mqtt_hash, default_action, created_at) VALUES (?, ?, ?, ?, ?, ?)');
    const exists = this.db.prepare('SELECT 1 FROM devices WHERE id = ?');
    const mqttHash = mosquittoHash(token);
    const id = this.db.transaction(() => {
      let candidate = base;
      for (let n = 2; exists.get(candidate); n++) candidate = `${base}-${n}`;
      if (!DEVICE_ID_RE.test(candidate)) throw new PoskoError('VALIDATION', `device id ${candidate} is not valid`);
      insert.run(candidate, clean, hashToken(token), mqttHash, action.data, createdAt);
      return candidate;
    }).immediate();
    return { device: this.get(id)!, token };
  }

  /** Every device, revoked ones included. */
  list(): Device[] {
    return (this.db.prepare('SELECT * FROM devices ORDER BY created_at, id').all() as DeviceRow[]).map(toDevice);
  }

  /** One device, revoked or not. */
  get(id: string): Device | undefined {
    const r = this.byIdStmt.get(id) as DeviceRow | undefined;
    return r && toDevice(r);
  }

  /** Revokes a device's token: its next request or connection is refused. Durable on return. */
  revoke(id: string): Device {
    const r = this.db.prepare('UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ? RETURNING *').get(this.now().toISOString(), id) as DeviceRow | undefined;
    if (!r) throw new PoskoError('NOT_FOUND', `no device ${id}`);
    return toDevice(r);
  }

  /** The active (not revoked) device holding this token, if any. */
  byToken(token: string): Device | undefined {
    const r = this.byTokenStmt.get(hashToken(token)) as DeviceRow | undefined;
    return r && toDevice(r);
  }

  /** Records that a device was heard from (and scanned, when `scanned`). */
  touch(id: string, scanned: boolean): void {
    const at = this.now().toISOString();
    this.seenStmt.run(at, scanned ? at : null, id);
  }

  /** Records a device's reported status (or its last will: offline). */
  setStatus(id: string, s: DeviceStatus): void {
    const at = this.now().toISOString();
    this.statusStmt.run(s.online ? 1 : 0, s.firmware ?? null, s.battery ?? null, JSON.stringify(s), at, at, id);
  }

  /** Active devices with their Mosquitto password hashes, for an external broker's password file. */
  mosquittoHashes(): { id: string; hash: string }[] {
    return (this.db.prepare('SELECT id, mqtt_hash FROM devices WHERE revoked_at IS NULL AND mqtt_hash IS NOT NULL ORDER BY id').all() as { id: string; mqtt_hash: string }[])
      .map((r) => ({ id: r.id, hash: r.mqtt_hash }));
  }
}
