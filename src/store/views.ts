/**
 * The materialised views: events, parcels and stock in SQLite, derived from events and always
 * rebuildable from the documents. Writes here run inside the caller's transaction: an event and
 * the views it changes commit together or not at all.
 */
import type Database from 'better-sqlite3';
import type { PoskoEvent } from '../domain/events.ts';
import type { ParcelId } from '../domain/ids.ts';
import { applyEvent, compareEvents, deriveParcel, stockContributions, type ParcelState, type StockContribution } from '../domain/parcel-state.ts';
import { EVENT_COLUMNS, fromRow, toRow, type EventRow } from './event-rows.ts';

/** A parcels table row. */
export interface ParcelRow {
  id: string; unit: number; status: string; item: string | null; org: string | null; uom: string | null;
  batch: string | null; expiry: string | null; location: string | null; dest: string | null; holdings: string;
  in_transit: number; distributed: number; written_off: number; size: number; last_event: string; last_kind: string;
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
    in_transit: round(s.inTransit), distributed: round(s.distributed), written_off: round(s.writtenOff), size: s.size,
    last_event: s.lastEvent, last_kind: s.lastKind, last_hlc: s.lastHlc, first_hlc: s.firstHlc, events: s.events,
  };
}

/** The parcel state a row holds (rows keep everything needed to apply the next event). */
function fromParcelRow(r: ParcelRow): ParcelState {
  return {
    id: r.id as ParcelId, unit: r.unit === 1, status: r.status as ParcelState['status'], item: r.item, org: r.org,
    unitOfMeasure: r.uom, batch: r.batch, expiry: r.expiry, location: r.location, dest: r.dest,
    holdings: JSON.parse(r.holdings) as Record<string, number>, inTransit: r.in_transit, distributed: r.distributed,
    writtenOff: r.written_off, size: r.size, lastEvent: r.last_event, lastKind: r.last_kind as ParcelState['lastKind'],
    lastHlc: r.last_hlc, firstHlc: r.first_hlc, events: r.events,
  };
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
  private readonly insertMergedStmt: Database.Statement;
  private readonly markMergedByIdStmt: Database.Statement;
  private readonly voidedStmt: Database.Statement;

  constructor(readonly db: Database.Database) {
    this.insertEventStmt = db.prepare(
      `INSERT INTO events (${EVENT_COLUMNS.join(', ')}) VALUES (${EVENT_COLUMNS.map((c) => '@' + c).join(', ')})`,
    );
    this.eventByKeyStmt = db.prepare('SELECT * FROM events WHERE key = ?');
    this.eventByIdStmt = db.prepare('SELECT * FROM events WHERE id = ?');
    this.eventsOfParcelStmt = db.prepare('SELECT * FROM events WHERE parcel = ? ORDER BY hlc, post, id');
    this.parcelStmt = db.prepare('SELECT * FROM parcels WHERE id = ?');
    const cols = ['id', 'unit', 'status', 'item', 'org', 'uom', 'batch', 'expiry', 'location', 'dest', 'holdings',
      'in_transit', 'distributed', 'written_off', 'size', 'last_event', 'last_kind', 'last_hlc', 'first_hlc', 'events'];
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
    this.insertMergedStmt = db.prepare(
      `INSERT INTO events (${EVENT_COLUMNS.join(', ')}, merged) VALUES (${EVENT_COLUMNS.map((c) => '@' + c).join(', ')}, 1)`,
    );
    this.voidedStmt = db.prepare('SELECT 1 FROM events WHERE voids = ? LIMIT 1');
    this.markMergedByIdStmt = db.prepare('UPDATE events SET merged = 1 WHERE id = ? AND merged = 0');
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

  /**
   * Inserts an event into the journal. Call inside a transaction, then `applyEvents`. `merged`:
   * the event came inside a ledger document (from a peer), so it is never folded.
   */
  insertEvent(e: PoskoEvent, merged = false): number {
    return Number((merged ? this.insertMergedStmt : this.insertEventStmt).run(toRow(e)).lastInsertRowid);
  }

  private isVoided(id: string): boolean {
    return this.voidedStmt.get(id) !== undefined;
  }

  /** Takes an event out of the views (call `refreshParcels` for its parcel after). */
  removeEvent(id: string): void {
    this.db.prepare('DELETE FROM events WHERE id = ?').run(id);
  }

  /** Records that a stored event is now inside a ledger document (it is not folded again). */
  markMerged(id: string): void {
    this.markMergedByIdStmt.run(id);
  }

  /**
   * Updates the parcels these newly inserted events concern, and stock by the difference between
   * each parcel's old and new contribution. An event newer than everything the parcel has seen
   * (always so for a new local event) is applied in one step; a void or an older event (merged
   * from elsewhere) re-derives the parcel from all its events. Call inside the transaction that
   * inserted the events.
   */
  applyEvents(events: readonly PoskoEvent[]): Map<string, ParcelRow | undefined> {
    const byParcel = new Map<ParcelId, PoskoEvent[]>();
    for (const e of events) {
      const list = byParcel.get(e.parcel);
      if (list) list.push(e); else byParcel.set(e.parcel, [e]);
    }
    const out = new Map<string, ParcelRow | undefined>();
    for (const [id, list] of byParcel) {
      const before = this.parcel(id);
      list.sort(compareEvents);
      // A void merged before the event it cancels is already stored: then re-derive too.
      const stepwise = list.every((e) => e.kind !== 'void' && !this.isVoided(e.id)) && (!before || list[0]!.hlc > before.last_hlc);
      let state: ParcelState | undefined;
      if (stepwise) {
        state = before ? fromParcelRow(before) : undefined;
        for (const e of list) state = applyEvent(state, e);
      } else state = deriveParcel(id, this.eventsOfParcel(id));
      out.set(id, this.replaceParcel(id, before, state));
    }
    return out;
  }

  /** Re-derives the given parcels from all their events (rebuilds, repairs). */
  refreshParcels(ids: Iterable<ParcelId>): Map<string, ParcelRow | undefined> {
    const out = new Map<string, ParcelRow | undefined>();
    for (const id of ids) {
      if (out.has(id)) continue;
      out.set(id, this.replaceParcel(id, this.parcel(id), deriveParcel(id, this.eventsOfParcel(id))));
    }
    return out;
  }

  private replaceParcel(id: string, before: ParcelRow | undefined, state: ParcelState | undefined): ParcelRow | undefined {
    const after = state && toParcelRow(state);
    if (before) this.addStock(stockContributions(fromParcelRow(before)), -1);
    if (after) {
      this.upsertParcelStmt.run(after);
      this.addStock(stockContributions(state), +1);
    } else if (before) this.deleteParcelStmt.run(id);
    return after;
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
