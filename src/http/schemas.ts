/**
 * Schemas of the HTTP API's query strings and bodies other than scans (those live in the domain),
 * shared by the routes and the OpenAPI description.
 */
import { z } from 'zod';
import { PARCEL_STATUSES } from '../domain/parcel-state.ts';

export const ParcelListQuery = z.strictObject({
  status: z.enum(PARCEL_STATUSES).optional(),
  post: z.string().min(1).max(64).optional(),
  q: z.string().min(1).max(100).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  after: z.string().min(1).max(512).optional(),
});

export const StockQuery = z.strictObject({
  post: z.string().min(1).max(64).optional(),
  item: z.string().min(1).max(64).optional(),
});

export const EventsQuery = z.strictObject({
  after: z.string().regex(/^\d{1,15}$/, 'a cursor from a previous page (digits)').default('0').transform(Number),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const ParseBody = z.strictObject({ code: z.string().min(1).max(512) });
