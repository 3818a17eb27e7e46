/**
 * Branded identifiers and their formats. A brand keeps a post id from being passed where a device
 * id is expected; the regexes are the one definition of what a valid id looks like.
 */
import { z } from 'zod';

/** Post ids: short, upper case, usable in MQTT topics and document ids (`KKR-KBG`, `DEMO`). */
export const POST_ID_RE = /^[A-Z0-9][A-Z0-9-]{0,15}$/;
/** Device ids: what a scanner calls itself; safe in MQTT topics and file names. */
export const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const PostIdSchema = z.string().regex(POST_ID_RE, 'post id: 1-16 of A-Z, 0-9 and -, starting with a letter or digit').brand<'PostId'>();
export const DeviceIdSchema = z.string().regex(DEVICE_ID_RE, 'device id: 1-64 of A-Z, a-z, 0-9, _ . -').brand<'DeviceId'>();

export type PostId = z.infer<typeof PostIdSchema>;
export type DeviceId = z.infer<typeof DeviceIdSchema>;
/** A globally unique event id (UUID). */
export type EventId = string & z.$brand<'EventId'>;
/** A parcel's identity: `sscc:…`, `gtin:…:…`, `label:…:…`, `ean:…` or `code:…`. */
export type ParcelId = string & z.$brand<'ParcelId'>;

/** Brands a trusted string as a post id (for values already validated, e.g. config). */
export const asPostId = (s: string): PostId => s as PostId;
/** Brands a trusted string as a device id. */
export const asDeviceId = (s: string): DeviceId => s as DeviceId;
/** Brands a trusted string as an event id. */
export const asEventId = (s: string): EventId => s as EventId;
/** Brands a trusted string as a parcel id. */
export const asParcelId = (s: string): ParcelId => s as ParcelId;

/** The document id of a post's ledger for one UTC day. */
export function ledgerDocId(post: PostId, day: string): string {
  return `ledger/${post}/${day}`;
}
