/**
 * The ledger document: a post's events for one UTC day, as an Automerge document nested in hour
 * buckets keyed by event id, every string an ImmutableString (DESIGN.md: flat maps slow down as
 * they grow; collaborative text is 3x larger). Only the owning post writes its ledger. Pure: no I/O.
 */
import * as A from '@automerge/automerge';
import type { EventCode, EventKind, PoskoEvent } from '../domain/events.ts';
import type { DeviceId, EventId, ParcelId, PostId } from '../domain/ids.ts';

/** One event as stored in a ledger document. Absent fields are null in the event. */
export interface LedgerEntry {
  id: A.ImmutableString; key: A.ImmutableString; kind: A.ImmutableString; post: A.ImmutableString;
  hlc: A.ImmutableString; code: A.ImmutableString; parcel: A.ImmutableString;
  device?: A.ImmutableString; operator?: A.ImmutableString; parsed?: A.ImmutableString; item?: A.ImmutableString;
  qty?: number; unit?: A.ImmutableString; org?: A.ImmutableString; dest?: A.ImmutableString;
  batch?: A.ImmutableString; expiry?: A.ImmutableString; deviceAt?: A.ImmutableString;
  voids?: A.ImmutableString; reason?: A.ImmutableString;
}

/** The ledger document's shape. */
export interface LedgerDoc {
  /** `post` and `day` this ledger covers. */
  post: A.ImmutableString;
  day: A.ImmutableString;
  /** Hour of day (UTC, "00".."23") → event id → event. */
  hours: Record<string, Record<string, LedgerEntry>>;
}

const STRING_FIELDS = ['device', 'operator', 'item', 'unit', 'org', 'dest', 'batch', 'expiry', 'deviceAt', 'voids', 'reason'] as const;

function toEntry(e: PoskoEvent): LedgerEntry {
  const s = (v: string) => new A.ImmutableString(v);
  const entry: LedgerEntry = {
    id: s(e.id), key: s(e.key), kind: s(e.kind), post: s(e.post), hlc: s(e.hlc), code: s(e.code), parcel: s(e.parcel),
  };
  for (const f of STRING_FIELDS) {
    const v = e[f];
    if (v !== null) entry[f] = s(v);
  }
  if (e.parsed) entry.parsed = s(JSON.stringify(e.parsed));
  if (e.qty !== null) entry.qty = e.qty;
  return entry;
}

function fromEntry(x: LedgerEntry): PoskoEvent {
  const str = (v: A.ImmutableString | undefined) => (v === undefined ? null : v.toString());
  return {
    id: x.id.toString() as EventId, key: x.key.toString(), kind: x.kind.toString() as EventKind,
    post: x.post.toString() as PostId, device: str(x.device) as DeviceId | null, operator: str(x.operator),
    code: x.code.toString(), parsed: x.parsed ? (JSON.parse(x.parsed.toString()) as EventCode) : null,
    parcel: x.parcel.toString() as ParcelId, item: str(x.item), qty: x.qty ?? null, unit: str(x.unit),
    org: str(x.org), dest: str(x.dest), batch: str(x.batch), expiry: str(x.expiry), deviceAt: str(x.deviceAt),
    hlc: x.hlc.toString(), voids: str(x.voids) as EventId | null, reason: str(x.reason),
  };
}

/** The hour bucket ("00".."23") of an event, from its HLC wall time. */
export function hourOf(hlcWallMs: number): string {
  return new Date(hlcWallMs).toISOString().slice(11, 13);
}

/** A new, empty ledger for a post and day, authored by `actor`. */
export function createLedger(actor: string, post: string, day: string): A.Doc<LedgerDoc> {
  return A.change(A.init<LedgerDoc>({ actor: actor as A.ActorId }), { message: `ledger ${post} ${day}` }, (d) => {
    d.post = new A.ImmutableString(post);
    d.day = new A.ImmutableString(day);
    d.hours = {};
  });
}

/**
 * Adds events to a ledger in one change (batched: one change per fold costs a fraction of one per
 * event). `hourOfEvent` gives each event's bucket. Events already present are skipped.
 */
export function appendToLedger(
  doc: A.Doc<LedgerDoc>,
  events: readonly PoskoEvent[],
  hourOfEvent: (e: PoskoEvent) => string,
): A.Doc<LedgerDoc> {
  const fresh = events.filter((e) => doc.hours[hourOfEvent(e)]?.[e.id] === undefined);
  if (fresh.length === 0) return doc;
  return A.change(doc, (d) => {
    for (const e of fresh) {
      const h = hourOfEvent(e);
      d.hours[h] ??= {};
      d.hours[h]![e.id] = toEntry(e);
    }
  });
}

/** Every event in a ledger document. */
export function ledgerEvents(doc: A.Doc<LedgerDoc>): PoskoEvent[] {
  const out: PoskoEvent[] = [];
  for (const bucket of Object.values(doc.hours ?? {})) for (const entry of Object.values(bucket)) out.push(fromEntry(entry));
  return out;
}

/** How many events a ledger holds. */
export function ledgerSize(doc: A.Doc<LedgerDoc>): number {
  let n = 0;
  for (const bucket of Object.values(doc.hours ?? {})) n += Object.keys(bucket).length;
  return n;
}
