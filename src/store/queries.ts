/**
 * Read queries behind the API: parcels, stock, events with a stable cursor. They read the views
 * only, never Automerge documents.
 */
import type Database from 'better-sqlite3';
import type { PoskoEvent } from '../domain/events.ts';
import { PoskoError } from '../domain/errors.ts';
import { fromRow, type EventRow } from './event-rows.ts';
import type { ParcelRow } from './views.ts';

/** A parcel as the API shows it. */
export interface ParcelJson {
  id: string;
  status: string;
  item: string | null;
  org: string | null;
  unit: string | null;
  batch: string | null;
  expiry: string | null;
  location: string | null;
  dest: string | null;
  /** Quantity on hand, summed over posts. */
  qty: number;
  holdings: Record<string, number>;
  inTransit: number;
  distributed: number;
  writtenOff: number;
  lastEvent: string;
  lastKind: string;
  lastHlc: string;
  firstHlc: string;
  events: number;
}

/** Converts a parcels row to its API form. */
export function parcelJson(r: ParcelRow): ParcelJson {
  const holdings = JSON.parse(r.holdings) as Record<string, number>;
  const qty = Math.round(Object.values(holdings).reduce((a, b) => a + b, 0) * 1e6) / 1e6;
  return {
    id: r.id, status: r.status, item: r.item, org: r.org, unit: r.uom, batch: r.batch, expiry: r.expiry,
    location: r.location, dest: r.dest, qty, holdings, inTransit: r.in_transit, distributed: r.distributed,
    writtenOff: r.written_off, lastEvent: r.last_event, lastKind: r.last_kind, lastHlc: r.last_hlc,
    firstHlc: r.first_hlc, events: r.events,
  };
}

/** An event as the API shows it, with its cursor. */
export type EventJson = PoskoEvent & { cursor: string };

/** A stock line. */
export interface StockJson { post: string; item: string; /** null when no organisation was named */ org: string | null; onHand: number; incoming: number; parcels: number }

/** Filters for the parcel list. */
export interface ParcelFilter { status?: string; post?: string; q?: string; limit: number; after?: string }

/** Read-only queries over the views. */
export class Queries {
  constructor(private readonly db: Database.Database) {}

  /** A parcel and its full history, or undefined. */
  parcel(id: string): { parcel: ParcelJson; history: EventJson[] } | undefined {
    const r = this.db.prepare('SELECT * FROM parcels WHERE id = ?').get(id) as ParcelRow | undefined;
    if (!r) return undefined;
    const history = (this.db.prepare('SELECT * FROM events WHERE parcel = ? ORDER BY hlc, post, id').all(id) as EventRow[]).map(eventJson);
    return { parcel: parcelJson(r), history };
  }

  /**
   * Parcels, newest activity first, filtered by status, post (where it is or was last seen, or
   * where it is heading) and text (id, item,
   * org). Paged by an opaque cursor (`next`).
   */
  parcels(f: ParcelFilter): { parcels: ParcelJson[]; next: string | null } {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.status) { where.push('status = ?'); args.push(f.status); }
    if (f.post) { where.push('(location = ? OR dest = ?)'); args.push(f.post, f.post); }
    if (f.q) {
      where.push("(id LIKE ? ESCAPE '\\' OR item LIKE ? ESCAPE '\\' OR org LIKE ? ESCAPE '\\')");
      const like = `%${f.q.replace(/[\\%_]/g, (c) => '\\' + c)}%`;
      args.push(like, like, like);
    }
    if (f.after) {
      const [hlc, id] = decodeCursor(f.after);
      where.push('(last_hlc < ? OR (last_hlc = ? AND id < ?))');
      args.push(hlc, hlc, id);
    }
    const sql = `SELECT * FROM parcels ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY last_hlc DESC, id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, f.limit + 1) as ParcelRow[];
    const page = rows.slice(0, f.limit);
    const last = page[page.length - 1];
    return { parcels: page.map(parcelJson), next: rows.length > f.limit && last ? encodeCursor([last.last_hlc, last.id]) : null };
  }

  /** Stock lines, optionally for one post and/or item; totals per post and item across orgs too. */
  stock(f: { post?: string; item?: string }): StockJson[] {
    const where: string[] = [];
    const args: string[] = [];
    if (f.post) { where.push('post = ?'); args.push(f.post); }
    if (f.item) { where.push('item = ?'); args.push(f.item); }
    const sql = `SELECT post, item, nullif(org, '') AS org, on_hand AS onHand, incoming, parcels FROM stock ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY post, item, org`;
    return this.db.prepare(sql).all(...args) as StockJson[];
  }

  /** Events after a cursor, in the local journal order (stable: new events only ever append). */
  events(after: number, limit: number): { events: EventJson[]; next: string | null } {
    const rows = this.db.prepare('SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?').all(after, limit) as EventRow[];
    const events = rows.map(eventJson);
    const last = rows[rows.length - 1];
    return { events, next: last ? String(last.seq) : null };
  }

  /**
   * Devices with what an operator wants to see: last seen, last scan, scans today (since UTC
   * midnight of the gateway's clock), firmware, battery, online (from status and last will).
   */
  devices<D extends { id: string }>(list: D[], todayStartHlc: string): (D & { scansToday: number })[] {
    const stmt = this.db.prepare('SELECT count(*) AS n FROM events WHERE device = ? AND hlc >= ?');
    return list.map((d) => ({ ...d, scansToday: (stmt.get(d.id, todayStartHlc) as { n: number }).n }));
  }

  /** Rows in one view, for metrics. */
  count(view: 'events' | 'parcels' | 'stock'): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM ${view}`).get() as { n: number }).n;
  }
}

function eventJson(r: EventRow): EventJson {
  return { ...fromRow(r), cursor: String(r.seq) };
}

/** Opaque cursors: base64url of a JSON array. */
export function encodeCursor(parts: string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

/** Decodes a cursor made by `encodeCursor`; a damaged one is a BAD_REQUEST. */
export function decodeCursor(c: string): [string, string] {
  let v: unknown;
  try { v = JSON.parse(Buffer.from(c, 'base64url').toString()); } catch { v = undefined; }
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || typeof v[1] !== 'string') {
    throw new PoskoError('BAD_REQUEST', 'the cursor is not one this server issued');
  }
  return [v[0], v[1]];
}
