/**
 * Events: the immutable facts posko records. Schemas for what arrives at the edge (a scan) and for
 * the stored event, and the idempotency key that makes a scanner's retry count once. Pure.
 */
import { z } from 'zod';
import { DEVICE_ID_RE, type DeviceId, type EventId, type ParcelId, type PostId } from './ids.ts';

/** Every kind of event, BNPB logistics stages in posko's words. */
export const EVENT_KINDS = [
  'receive', // penerimaan: the parcel arrived at this post
  'dispatch', // pengiriman: left this post for a destination
  'checkpoint', // passed a checkpoint on the way
  'distribute', // penyaluran: handed out to beneficiaries
  'count', // stock-take: the quantity found on the shelf
  'damage',
  'loss',
  'return', // came back into store
  'expire',
  'void', // correction: cancels an earlier event, with a reason
] as const;

export const EventKindSchema = z.enum(EVENT_KINDS);
export type EventKind = z.infer<typeof EventKindSchema>;

/** Characters allowed in free-text identifiers sent by devices (no control characters). */
const TEXT_RE = /^[^\u0000-\u001f\u007f]*$/;
const text = (max: number) => z.string().trim().min(1).max(max).regex(TEXT_RE, 'no control characters allowed');

/** Largest quantity one event may carry: a sanity bound, not a business rule. */
export const MAX_QTY = 1_000_000;

/** One scan as a device or client sends it (HTTP body item, MQTT payload). */
export const ScanInputSchema = z
  .strictObject({
    code: z.string().min(1).max(512).optional().describe('the raw scanned string, as the scanner sent it'),
    action: EventKindSchema.describe('what happened to the parcel'),
    id: text(128).optional().describe('idempotency key chosen by the client; a retry with the same id never counts twice'),
    qty: z.number().positive().max(MAX_QTY).optional().describe('quantity; else from GS1 (37)/(30); else the parcel\'s'),
    unit: text(32).optional().describe('unit of measure (kg, dus, paket, …)'),
    item: text(64).optional().describe('item code from the catalog (BERAS, HYGKIT, …)'),
    to: text(64).optional().describe('destination post or site, for dispatch'),
    org: text(64).optional().describe('the agency the parcel belongs to or came from (BPBD, Dinsos, PMI, …)'),
    device: z.string().regex(DEVICE_ID_RE).optional().describe('device id; taken from the token for device tokens'),
    operator: text(64).optional().describe('who scanned, where known'),
    at: z.iso.datetime({ offset: true }).optional().describe('the device\'s own clock; shown, never used for ordering'),
    voids: z.uuid().optional().describe('for action "void": the id of the event to cancel'),
    reason: text(500).optional().describe('why: required for "void"'),
  })
  .superRefine((s, ctx) => {
    if (s.action === 'void') {
      if (!s.voids) ctx.addIssue({ code: 'custom', path: ['voids'], message: 'a void needs the id of the event it cancels' });
      if (!s.reason) ctx.addIssue({ code: 'custom', path: ['reason'], message: 'a void needs a reason' });
    } else {
      if (s.code === undefined) ctx.addIssue({ code: 'custom', path: ['code'], message: 'code is required' });
      if (s.voids) ctx.addIssue({ code: 'custom', path: ['voids'], message: 'only a void may name an event to cancel' });
    }
    if (s.action === 'dispatch' && !s.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'a dispatch needs a destination (to)' });
  });
export type ScanInput = z.infer<typeof ScanInputSchema>;

/** Most scans one request may carry. */
export const MAX_BATCH = 1000;

/** The body of `POST /api/v1/scans`: one scan or a batch. */
export const ScanBatchSchema = z.strictObject({ scans: z.array(z.unknown()).min(1) });

/** What a parsed code contributes to an event (kept small: the full parse is re-derivable). */
export interface EventCode {
  kind: 'gs1' | 'ean' | 'upc' | 'label' | 'opaque';
  ais: Record<string, string>;
}

/** A recorded event. Immutable once written. */
export interface PoskoEvent {
  id: EventId;
  kind: EventKind;
  /** Idempotency key: `<post>/<device or "api">/<client id>`; unique. */
  key: string;
  post: PostId;
  device: DeviceId | null;
  operator: string | null;
  /** The raw scanned code ('' for a void). */
  code: string;
  parsed: EventCode | null;
  parcel: ParcelId;
  item: string | null;
  /** Explicit quantity, or null when the event takes the parcel's. */
  qty: number | null;
  unit: string | null;
  org: string | null;
  dest: string | null;
  batch: string | null;
  expiry: string | null;
  /** The device's clock as sent (ISO), for display only. */
  deviceAt: string | null;
  /** The gateway's hybrid logical clock: the order of events. */
  hlc: string;
  voids: EventId | null;
  reason: string | null;
}

/** The idempotency key of a scan: stable across retries of the same scan from the same device. */
export function idempotencyKey(post: PostId, device: DeviceId | null, clientId: string): string {
  return `${post}/${device ?? 'api'}/${clientId}`;
}

/** The parts of a scan that must match for a retry to count as the same scan. */
export function scanFingerprint(s: Pick<ScanInput, 'code' | 'action' | 'qty' | 'item' | 'to' | 'org' | 'voids'>): string {
  return JSON.stringify([s.code ?? '', s.action, s.qty ?? null, s.item ?? null, s.to ?? null, s.org ?? null, s.voids ?? null]);
}

/** The fingerprint of a stored event, comparable with `scanFingerprint` of the scan that made it. */
export function eventFingerprint(e: PoskoEvent): string {
  return JSON.stringify([e.code, e.kind, e.qty, e.item, e.dest, e.org, e.voids]);
}
