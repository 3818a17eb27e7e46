/**
 * The device protocol over MQTT (see firmware-bridge/PROTOCOL.md): topics, the scan and status
 * payloads a device sends, and the ack it gets back. Pure: shared by the gateway, the Pi bridge
 * and the tests.
 */
import { z } from 'zod';
import { DEVICE_ID_RE } from './ids.ts';
import { EventKindSchema, MAX_QTY } from './events.ts';

/** Largest MQTT payload a device may send; larger ones are rejected. */
export const MAX_DEVICE_PAYLOAD = 16 * 1024;

/** The three per-device topics of a post. */
export function deviceTopics(post: string, device: string): { scan: string; ack: string; status: string } {
  return { scan: `posko/${post}/scan/${device}`, ack: `posko/${post}/ack/${device}`, status: `posko/${post}/status/${device}` };
}

/** Splits `posko/<post>/<kind>/<device>`; undefined when the topic is not one of ours. */
export function parseDeviceTopic(topic: string): { post: string; kind: 'scan' | 'ack' | 'status'; device: string } | undefined {
  const m = /^posko\/([^/]+)\/(scan|ack|status)\/([^/]+)$/.exec(topic);
  if (!m || !DEVICE_ID_RE.test(m[3]!)) return undefined;
  return { post: m[1]!, kind: m[2] as 'scan' | 'ack' | 'status', device: m[3]! };
}

const text = (max: number) => z.string().trim().min(1).max(max).regex(/^[^\u0000-\u001f\u007f]*$/, 'no control characters allowed');

/**
 * A scan published by a device. `seq` is the device's own counter, kept across power cuts: it
 * makes a retry count once. The device has no trustworthy clock: `at` is shown, never ordered by.
 */
export const DeviceScanSchema = z.strictObject({
  seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  code: z.string().min(1).max(512),
  action: EventKindSchema.exclude(['void']).optional(),
  qty: z.number().positive().max(MAX_QTY).optional(),
  unit: text(32).optional(),
  item: text(64).optional(),
  to: text(64).optional(),
  org: text(64).optional(),
  operator: text(64).optional(),
  at: z.iso.datetime({ offset: true }).optional(),
});
export type DeviceScan = z.infer<typeof DeviceScanSchema>;

/** A device's status report (retained); its last will is `{ "online": false }`. */
export const DeviceStatusSchema = z.looseObject({
  online: z.boolean(),
  fw: z.string().max(64).optional(),
  battery: z.number().min(0).max(100).optional(),
  rssi: z.number().optional(),
  buffered: z.number().int().min(0).optional(),
});
export type DeviceStatusReport = z.infer<typeof DeviceStatusSchema>;

/** What the gateway answers on the device's ack topic, after the commit. */
export interface DeviceAck {
  /** The scan's seq (null for a bare barcode or an unreadable payload). */
  seq: number | null;
  status: 'accepted' | 'duplicate' | 'rejected';
  /** The event recorded (accepted or duplicate). */
  event?: string;
  error?: { code: string; message: string };
  /** What the parcel now is, for a small screen: id, status, quantity here, where. */
  parcel?: { id: string; status: string; qty: number; location: string | null; item: string | null };
}
