/**
 * The ledger document: a post's events for one UTC day, as an Automerge document nested in hour
 * buckets keyed by event id, every string an ImmutableString (DESIGN.md: flat maps slow down as
 * they grow; collaborative text is 3x larger). Only the owning post writes its ledger. Pure: no I/O.
 */
import * as A from '@automerge/automerge';
import { EVENT_KINDS, type EventCode, type EventKind, type PoskoEvent } from '../domain/events.ts';
import { decodeHlc } from '../domain/hlc.ts';
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

/** Most events in one Automerge change (about 8 KiB): batching cuts the cost per event, and a
 * change is the smallest piece a sync message can carry. */
export const CHANGE_EVENTS = 256;

/**
 * Adds events to a ledger in changes of at most CHANGE_EVENTS (batched: one change per fold costs a fraction of one per
 * event). `hourOfEvent` gives each event's bucket. Events already present are skipped.
 */
export function appendToLedger(
  doc: A.Doc<LedgerDoc>,
  events: readonly PoskoEvent[],
  hourOfEvent: (e: PoskoEvent) => string,
): A.Doc<LedgerDoc> {
  const fresh = events.filter((e) => doc.hours[hourOfEvent(e)]?.[e.id] === undefined);
  let out = doc;
  // Changes of at most CHANGE_EVENTS events: the unit a slow link can take in one message.
  for (let i = 0; i < fresh.length; i += CHANGE_EVENTS) {
    out = A.change(out, (d) => {
      for (const e of fresh.slice(i, i + CHANGE_EVENTS)) {
        const h = hourOfEvent(e);
        d.hours[h] ??= {};
        d.hours[h]![e.id] = toEntry(e);
      }
    });
  }
  return out;
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

const ID_TEXT_RE = /^[^\u0000-\u001f\u007f]{1,512}$/;

function text(v: unknown): string | undefined {
  if (A.isImmutableString(v)) return v.toString();
  return typeof v === 'string' ? v : undefined;
}

/**
 * An entry of a merged ledger as an event, or a reason why it is not a valid one. A peer's ledger
 * is data from outside: every field is checked before it reaches the views.
 */
export function entryToEvent(raw: unknown, post: string): PoskoEvent | string {
  if (raw === null || typeof raw !== 'object') return 'entry is not a map';
  const x = raw as Record<string, unknown>;
  for (const f of ['id', 'key', 'kind', 'post', 'hlc', 'code', 'parcel'] as const) {
    const v = text(x[f]);
    if (v === undefined || (f !== 'code' && !ID_TEXT_RE.test(v))) return `field ${f} is missing or not text`;
  }
  for (const f of [...STRING_FIELDS, 'parsed'] as const) {
    if (x[f] !== undefined && text(x[f]) === undefined) return `field ${f} is not text`;
  }
  if (x.qty !== undefined && (typeof x.qty !== 'number' || !Number.isFinite(x.qty))) return 'qty is not a number';
  if (text(x.post) !== post) return `event of post ${text(x.post)} in post ${post}'s ledger`;
  if (!(EVENT_KINDS as readonly string[]).includes(text(x.kind)!)) return `unknown event kind ${text(x.kind)}`;
  if (decodeHlc(text(x.hlc)!) === undefined) return 'hlc is not a hybrid logical clock value';
  if (x.parsed !== undefined) {
    try { JSON.parse(text(x.parsed)!); } catch { return 'parsed is not JSON'; }
  }
  return fromEntry(x as unknown as LedgerEntry);
}

/**
 * The entries a merge added to a ledger: those `after` holds beyond `beforeHeads` (all of them
 * when there is nothing before). Found with Automerge's diff, so the cost follows the merge, not
 * the size of the document. Untyped: check each with `entryToEvent`.
 */
export function addedEntries(after: A.Doc<LedgerDoc>, beforeHeads: readonly string[]): unknown[] {
  const out: unknown[] = [];
  const hours = (after as { hours?: unknown }).hours;
  if (hours === null || typeof hours !== 'object') return out;
  const bucket = (h: string) => (hours as Record<string, unknown>)[h];
  if (beforeHeads.length === 0) {
    for (const b of Object.values(hours as Record<string, unknown>)) {
      if (b !== null && typeof b === 'object') out.push(...Object.values(b as Record<string, unknown>));
    }
    return out;
  }
  for (const p of A.diff(after, [...beforeHeads], A.getHeads(after))) {
    if (p.action !== 'put' || p.path.length !== 3 || p.path[0] !== 'hours') continue;
    const b = bucket(String(p.path[1]));
    if (b !== null && typeof b === 'object') out.push((b as Record<string, unknown>)[String(p.path[2])]);
  }
  return out;
}
