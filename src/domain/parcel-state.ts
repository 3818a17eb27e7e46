/**
 * Parcel identity and state. A parcel's state is a pure fold of every event about it, whichever post
 * recorded it, in HLC order; voided events are left out. Contradictions (a parcel received twice,
 * handed out twice, stock below zero) are kept as data for the anomaly views, never thrown.
 */
import type { EventKind, PoskoEvent } from './events.ts';
import { asParcelId, type ParcelId } from './ids.ts';

/** The minimal parse result parcel identity needs (a `ParsedCode` satisfies it). */
export interface CodeIdentity {
  kind: 'gs1' | 'ean' | 'upc' | 'label' | 'opaque';
  raw: string;
  ais: Record<string, string>;
  label?: { post: string; serial: string };
}

/**
 * A parcel's identity: SSCC (00) when present; else GTIN + serial (01)+(21); else the post's label;
 * else a GTIN alone (a bulk line: cartons of one product, counted by quantity); else the raw code.
 * `unit` parcels are one physical thing that moves whole; bulk lines move by quantity.
 */
export function parcelIdentity(code: CodeIdentity): { id: ParcelId; unit: boolean } {
  const sscc = code.ais['00'];
  if (sscc) return { id: asParcelId(`sscc:${sscc}`), unit: true };
  const gtin = code.ais['01'] ?? code.ais['02'];
  const serial = code.ais['21'];
  if (gtin && serial) return { id: asParcelId(`sgtin:${gtin}:${serial}`), unit: true };
  if (code.label) return { id: asParcelId(`label:${code.label.post}:${code.label.serial}`), unit: true };
  if (gtin) {
    const batch = code.ais['10'];
    return { id: asParcelId(batch ? `gtin:${gtin}:${batch}` : `gtin:${gtin}`), unit: false };
  }
  return { id: asParcelId(`code:${code.raw.trim()}`), unit: true };
}

/** True when a parcel id names a bulk line rather than one physical parcel. */
export function isBulkParcel(id: string): boolean {
  return id.startsWith('gtin:');
}

export const PARCEL_STATUSES = ['in_store', 'in_transit', 'distributed', 'damaged', 'lost', 'expired', 'empty'] as const;
export type ParcelStatus = (typeof PARCEL_STATUSES)[number];

/** A parcel's current state, derived from its events. */
export interface ParcelState {
  id: ParcelId;
  unit: boolean;
  status: ParcelStatus;
  item: string | null;
  org: string | null;
  unitOfMeasure: string | null;
  batch: string | null;
  expiry: string | null;
  /** Where it is or was last seen (a post id). */
  location: string | null;
  /** Where it is going, while in transit. */
  dest: string | null;
  /** Quantity held per post. Can go negative: that is an anomaly, kept as data. */
  holdings: Record<string, number>;
  /** Quantity on the road, and its destination. */
  inTransit: number;
  distributed: number;
  writtenOff: number;
  /** A unit parcel's own quantity, once known (from its receive, count or code). */
  size: number;
  lastEvent: string;
  lastKind: EventKind;
  lastHlc: string;
  firstHlc: string;
  events: number;
}

/** Quantities that GS1 data in the code implies: count (37), else variable quantity (30). */
function codeQuantity(e: PoskoEvent): number | null {
  const ais = e.parsed?.ais;
  const raw = ais?.['37'] ?? ais?.['30'];
  return raw === undefined ? null : Number(raw);
}

const STATUS_OF: Partial<Record<EventKind, ParcelStatus>> = {
  receive: 'in_store',
  return: 'in_store',
  count: 'in_store',
  dispatch: 'in_transit',
  checkpoint: 'in_transit',
  distribute: 'distributed',
  damage: 'damaged',
  loss: 'lost',
  expire: 'expired',
};

/** Orders events causally: by HLC, then by post, then by id, so every replica agrees. */
export function compareEvents(a: Pick<PoskoEvent, 'hlc' | 'post' | 'id'>, b: Pick<PoskoEvent, 'hlc' | 'post' | 'id'>): number {
  return a.hlc < b.hlc ? -1 : a.hlc > b.hlc ? 1 : a.post < b.post ? -1 : a.post > b.post ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Derives a parcel's state from all its events (any order; they are sorted here). Voids cancel
 * the events they name, and the voids themselves leave no trace in the state. Returns undefined
 * when no effective event is left.
 */
export function deriveParcel(id: ParcelId, events: readonly PoskoEvent[]): ParcelState | undefined {
  const voided = new Set(events.filter((e) => e.kind === 'void' && e.voids).map((e) => e.voids as string));
  const effective = events.filter((e) => e.kind !== 'void' && !voided.has(e.id)).sort(compareEvents);
  const first = effective[0];
  if (!first) return undefined;
  let s = emptyParcel(id, first);
  for (const e of effective) s = applyEvent(s, e);
  return s;
}

function emptyParcel(id: ParcelId, first: PoskoEvent): ParcelState {
  return {
    id, unit: !isBulkParcel(id), status: 'in_store', item: null, org: null, unitOfMeasure: null, batch: null, expiry: null,
    location: null, dest: null, holdings: {}, inTransit: 0, distributed: 0, writtenOff: 0, size: 0,
    lastEvent: first.id, lastKind: first.kind, lastHlc: first.hlc, firstHlc: first.hlc, events: 0,
  };
}

/**
 * Advances a parcel's state by one event that comes after all events already in it (causal
 * order). `deriveParcel` is this step folded over the sorted events; ingest uses it directly for
 * a new local event, which is always the newest. Returns a new state; the input is not changed.
 * `s` undefined starts a new parcel. Voids cannot be applied stepwise: re-derive instead.
 */
export function applyEvent(prev: ParcelState | undefined, e: PoskoEvent): ParcelState {
  const s: ParcelState = prev ? { ...prev, holdings: { ...prev.holdings } } : emptyParcel(e.parcel, e);
  const unit = s.unit;
  s.item ??= e.item; s.org ??= e.org; s.unitOfMeasure ??= e.unit; s.batch ??= e.batch; s.expiry ??= e.expiry;
  const explicit = e.qty ?? codeQuantity(e);
  if (unit && explicit !== null && (e.kind === 'receive' || e.kind === 'count' || s.size === 0)) s.size = explicit;
  const q = unit ? (s.size || 1) : (explicit ?? 1);
  const held = (p: string) => s.holdings[p] ?? 0;
  const take = (p: string, n: number) => { s.holdings[p] = held(p) - n; };
  switch (e.kind) {
    case 'receive':
      if (unit) { s.holdings = { [e.post]: q }; s.inTransit = 0; }
      else { s.holdings[e.post] = held(e.post) + q; s.inTransit = Math.max(0, s.inTransit - q); }
      s.dest = null;
      break;
    case 'return':
      if (unit) { s.holdings = { [e.post]: q }; s.inTransit = 0; } else s.holdings[e.post] = held(e.post) + q;
      s.dest = null;
      break;
    case 'count':
      if (unit) { s.holdings = { [e.post]: q }; s.inTransit = 0; } else s.holdings[e.post] = q;
      break;
    case 'dispatch':
      if (unit) { s.holdings = {}; s.inTransit = q; } else { take(e.post, q); s.inTransit += q; }
      s.dest = e.dest;
      break;
    case 'checkpoint':
    case 'void':
      break;
    case 'distribute':
      if (unit) { s.holdings = {}; s.inTransit = 0; } else take(e.post, q);
      s.distributed += q;
      break;
    case 'damage': case 'loss': case 'expire':
      if (unit) { s.holdings = {}; s.inTransit = 0; } else take(e.post, q);
      s.writtenOff += q;
      break;
  }
  for (const [p, n] of Object.entries(s.holdings)) if (n === 0) delete s.holdings[p];
  s.location = e.post;
  s.lastEvent = e.id; s.lastKind = e.kind; s.lastHlc = e.hlc; s.events += 1;
  s.status = STATUS_OF[e.kind] ?? s.status;
  if (!unit) {
    const onHand = Object.values(s.holdings).reduce((a, b) => a + b, 0);
    const byEvent = STATUS_OF[e.kind] ?? 'in_store';
    s.status = onHand > 0 ? 'in_store' : s.inTransit > 0 ? 'in_transit' : s.distributed > 0 ? 'distributed' : byEvent === 'in_store' ? 'empty' : byEvent;
  }
  return s;
}

/** One row of a parcel's contribution to stock: quantity on hand at a post, by item and org. */
export interface StockContribution {
  post: string;
  item: string;
  org: string;
  onHand: number;
  incoming: number;
}

/** The item key stock is grouped by: the catalog item, else the GTIN, else "UNKNOWN". */
export function stockItemKey(s: Pick<ParcelState, 'item' | 'id'>): string {
  if (s.item) return s.item;
  const m = /^s?gtin:(\d{14})/.exec(s.id);
  return m ? `GTIN:${m[1]}` : 'UNKNOWN';
}

/** What a parcel adds to the stock view: its holdings per post, and what is incoming to its destination. */
export function stockContributions(s: ParcelState | undefined): StockContribution[] {
  if (!s) return [];
  const item = stockItemKey(s);
  const org = s.org ?? '';
  const rows: StockContribution[] = Object.entries(s.holdings).map(([post, onHand]) => ({ post, item, org, onHand, incoming: 0 }));
  if (s.inTransit > 0 && s.dest) rows.push({ post: s.dest, item, org, onHand: 0, incoming: s.inTransit });
  return rows;
}
