/**
 * The materialised views: events, parcels and stock in SQLite, derived from events and always
 * rebuildable from the documents. Writes here run inside the caller's transaction: an event and
 * the views it changes commit together or not at all.
 */
import type Database from 'better-sqlite3';
import type { PoskoEvent } from '../domain/events.ts';
import type { ParcelId } from '../domain/ids.ts';
import { deriveParcel, stockContributions, type ParcelState, type StockContribution } from '../domain/parcel-state.ts';
import { EVENT_COLUMNS, fromRow, toRow, type EventRow } from './event-rows.ts';

/** A parcels table row. */
export interface ParcelRow {
  id: string; unit: number; status: string; item: string | null; org: string | null; uom: string | null;
  batch: string | null; expiry: string | null; location: string | null; dest: string | null; holdings: string;
  in_transit: number; distributed: number; written_off: number; last_event: string; last_kind: string;
  last_hlc: string; first_hlc: string; events: number;
}

/** Rounds a quantity so that sums in any order agree (kg to the milligram is plenty). */
const round = (n: number) => Math.round(n * 1e6) / 1e6;

function toParcelRow(s: ParcelState): ParcelRow {
  const holdings: Record<string, number> = {};
  for (const [p, n] of Object.entries(s.holdings)) holdings[p] = round(n);
  return {
    id: s.id, unit: s.unit ? 1 : 0, status: s.status, item: s.item, org: s.org, uom: s.unitOfMeasure,
    batch: s.batch, expiry: s.expiry, location: s.location, dest: s.dest, holdings: JSON.stringify(holdings),
    in_transit: round(s.inTransit), distributed: round(s.distributed), written_off: round(s.writtenOff),
    last_event: s.lastEvent, last_kind: s.lastKind, last_hlc: s.lastHlc, first_hlc: s.firstHlc, events: s.events,
  };
}

/** A parcel row's contribution to stock, recovered from the row itself (what to subtract on change). */
function rowContributions(r: ParcelRow): StockContribution[] {
  const state = {
    id: r.id, item: r.item, org: r.org, holdings: JSON.parse(r.holdings) as Record<string, number>,
    inTransit: r.in_transit, dest: r.dest,
  } as unknown as ParcelState;
  return stockContributions(state);
}

/** Prepared statements over the view tables of one database. */
export class Views {
  private readonly insertEventStmt: Database.Statement;
  private readonly eventByKeyStmt: Database.Statement;
  private readonly eventByIdStmt: Database.Statement;
  private readonly eventsOfParcelStmt: Database.Statement;
  private readonly parcelStmt: Database.Statement;
  private readonly upsertParcelStmt: Database.Statement;
  private readonly deleteParcelStmt: Database.Statement;
  private readonly stockAddStmt: Database.Statement;
  private readonly stockPruneStmt: Database.Statement;
  private readonly maxHlcStmt: Database.Statement;

  constructor(readonly db: Database.Database) {
    this.insertEventStmt = db.prepare(
      `INSERT INTO events (${EVENT_COLUMNS.join(', ')}) VALUES (${EVENT_COLUMNS.map((c) => '@' + c).join(', ')})`,
    );
    this.eventByKeyStmt = db.prepare('SELECT * FROM events WHERE key = ?');
    this.eventByIdStmt = db.prepare('SELECT * FROM events WHERE id = ?');
    this.eventsOfParcelStmt = db.prepare('SELECT * FROM events WHERE parcel = ? ORDER BY hlc, post, id');
    this.parcelStmt = db.prepare('SELECT * FROM parcels WHERE id = ?');
    const cols = ['id', 'unit', 'status', 'item', 'org', 'uom', 'batch', 'expiry', 'location', 'dest', 'holdings',
      'in_transit', 'distributed', 'written_off', 'last_event', 'last_kind', 'last_hlc', 'first_hlc', 'events'];
    this.upsertParcelStmt = db.prepare(
      `INSERT OR REPLACE INTO parcels (${cols.join(', ')}) VALUES (${cols.map((c) => '@' + c).join(', ')})`,
    );
    this.deleteParcelStmt = db.prepare('DELETE FROM parcels WHERE id = ?');
    this.stockAddStmt = db.prepare(
      `INSERT INTO stock (post, item, org, on_hand, incoming, parcels) VALUES (@post, @item, @org, @onHand, @incoming, @parcels)
       ON CONFLICT (post, item, org) DO UPDATE SET
         on_hand = round(on_hand + excluded.on_hand, 6), incoming = round(incoming + excluded.incoming, 6),
         parcels = parcels + excluded.parcels`,
    );
    this.stockPruneStmt = db.prepare('DELETE FROM stock WHERE post = ? AND item = ? AND org = ? AND parcels = 0 AND on_hand = 0 AND incoming = 0');
    this.maxHlcStmt = db.prepare('SELECT max(hlc) AS hlc FROM events');
  }

  /** The event recorded under an idempotency key, if any. */
  eventByKey(key: string): PoskoEvent | undefined {
    const r = this.eventByKeyStmt.get(key) as EventRow | undefined;
    return r && fromRow(r);
  }

  /** The event with this id, if any. */
  eventById(id: string): PoskoEvent | undefined {
    const r = this.eventByIdStmt.get(id) as EventRow | undefined;
    return r && fromRow(r);
  }

  /** Every event about a parcel, in causal order. */
  eventsOfParcel(parcel: string): PoskoEvent[] {
    return (this.eventsOfParcelStmt.all(parcel) as EventRow[]).map(fromRow);
  }

  /** A parcel's row, if it has any effective event. */
  parcel(id: string): ParcelRow | undefined {
    return this.parcelStmt.get(id) as ParcelRow | undefined;
  }

  /** The greatest HLC of any stored event (the clock's floor after a restart). */
  maxHlc(): string | undefined {
    return (this.maxHlcStmt.get() as { hlc: string | null }).hlc ?? undefined;
  }

  /** Inserts an event into the journal. Call inside a transaction, then `refreshParcels`. */
  insertEvent(e: PoskoEvent): number {
    return Number(this.insertEventStmt.run(toRow(e)).lastInsertRowid);
  }

  /**
   * Re-derives the given parcels from their events and moves stock by the difference between each
   * parcel's old and new contribution. Call inside the same transaction as the event inserts.
   */
  refreshParcels(ids: Iterable<ParcelId>): Map<string, ParcelRow | undefined> {
    const out = new Map<string, ParcelRow | undefined>();
    for (const id of ids) {
      if (out.has(id)) continue;
      const before = this.parcel(id);
      const state = deriveParcel(id, this.eventsOfParcel(id));
      const after = state && toParcelRow(state);
      if (before) this.addStock(rowContributions(before), -1);
      if (after) {
        this.upsertParcelStmt.run(after);
        this.addStock(rowContributions(after), +1);
      } else if (before) this.deleteParcelStmt.run(id);
      out.set(id, after);
    }
    return out;
  }

  private addStock(rows: StockContribution[], sign: 1 | -1): void {
    for (const r of rows) {
      this.stockAddStmt.run({ post: r.post, item: r.item, org: r.org, onHand: sign * r.onHand, incoming: sign * r.incoming, parcels: sign });
      if (sign < 0) this.stockPruneStmt.run(r.post, r.item, r.org);
    }
  }

  /** Empties the derived views (events, parcels, stock), for a rebuild inside a transaction. */
  clear(): void {
    this.db.exec('DELETE FROM stock; DELETE FROM parcels; DELETE FROM events;');
  }
}
