/**
 * Mapping between `PoskoEvent` and its SQLite row. One place, so the journal, the views and the
 * rebuild read and write events the same way.
 */
import type { EventCode, EventKind, PoskoEvent } from '../domain/events.ts';
import type { DeviceId, EventId, ParcelId, PostId } from '../domain/ids.ts';

/** An events table row. */
export interface EventRow {
  seq?: number;
  id: string; key: string; kind: string; post: string; device: string | null; operator: string | null;
  code: string; parsed: string | null; parcel: string; item: string | null; qty: number | null;
  unit: string | null; org: string | null; dest: string | null; batch: string | null; expiry: string | null;
  device_at: string | null; hlc: string; voids: string | null; reason: string | null;
}

/** The columns of the events table in insert order. */
export const EVENT_COLUMNS = [
  'id', 'key', 'kind', 'post', 'device', 'operator', 'code', 'parsed', 'parcel', 'item', 'qty', 'unit',
  'org', 'dest', 'batch', 'expiry', 'device_at', 'hlc', 'voids', 'reason',
] as const;

/** Converts an event to its row. */
export function toRow(e: PoskoEvent): EventRow {
  return {
    id: e.id, key: e.key, kind: e.kind, post: e.post, device: e.device, operator: e.operator, code: e.code,
    parsed: e.parsed ? JSON.stringify(e.parsed) : null, parcel: e.parcel, item: e.item, qty: e.qty, unit: e.unit,
    org: e.org, dest: e.dest, batch: e.batch, expiry: e.expiry, device_at: e.deviceAt, hlc: e.hlc,
    voids: e.voids, reason: e.reason,
  };
}

/** Converts a row back to an event. */
export function fromRow(r: EventRow): PoskoEvent {
  return {
    id: r.id as EventId, key: r.key, kind: r.kind as EventKind, post: r.post as PostId,
    device: r.device as DeviceId | null, operator: r.operator, code: r.code,
    parsed: r.parsed ? (JSON.parse(r.parsed) as EventCode) : null, parcel: r.parcel as ParcelId, item: r.item,
    qty: r.qty, unit: r.unit, org: r.org, dest: r.dest, batch: r.batch, expiry: r.expiry, deviceAt: r.device_at,
    hlc: r.hlc, voids: r.voids as EventId | null, reason: r.reason,
  };
}
