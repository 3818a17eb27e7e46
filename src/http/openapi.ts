/**
 * The OpenAPI 3.1 description of the HTTP API, generated from the same zod schemas that validate
 * requests (zod's own JSON Schema output), so the document cannot drift from the code.
 */
import { z } from 'zod';
import { ERROR_STATUS } from '../domain/errors.ts';
import { MAX_BATCH, ScanInputSchema } from '../domain/events.ts';
import { EventsQuery, ParcelListQuery, ParseBody, StockQuery } from './schemas.ts';

const json = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });

function queryParams(schema: z.ZodObject) {
  const js = json(schema) as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, s]) => ({ name, in: 'query', required: js.required?.includes(name) ?? false, schema: s }));
}

const errorRef = { $ref: '#/components/schemas/Error' };
const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [String(s), { description: 'error', content: { 'application/json': { schema: errorRef } } }]));

let cached: object | undefined;

/** The OpenAPI document (built once). */
export function openApiDocument(): object {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'posko gateway API',
      version: '1',
      description: 'Scans in, parcels and stock out. Every /api call needs `Authorization: Bearer <token>` (admin or device token). Errors are `{ error: { code, message, details? } }` with stable codes.',
    },
    servers: [{ url: '/api/v1' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Scan: json(ScanInputSchema),
        Error: {
          type: 'object', required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { enum: Object.keys(ERROR_STATUS) }, message: { type: 'string' }, details: { type: 'object' } } } },
        },
      },
    },
    security: [{ bearer: [] }],
    paths: {
      '/scans': {
        post: {
          summary: `Record one scan, or a batch of up to ${MAX_BATCH}. Committed before the answer; retries with the same id count once.`,
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { oneOf: [{ $ref: '#/components/schemas/Scan' }, { type: 'object', required: ['scans'], properties: { scans: { type: 'array', maxItems: MAX_BATCH, items: { $ref: '#/components/schemas/Scan' } } } }] } } },
          },
          responses: {
            '201': { description: 'one scan recorded: { status: "created", event, parsed, parcel }' },
            '200': { description: 'one scan already recorded ({ status: "duplicate", … }), or a batch: { results, created, duplicates, rejected }' },
            ...errors(400, 401, 403, 409, 413, 422, 503),
          },
        },
      },
      '/parcels': { get: { summary: 'Parcels, newest activity first; filter by status, post, text', parameters: queryParams(ParcelListQuery), responses: { '200': { description: '{ parcels, next }' }, ...errors(401, 422) } } },
      '/parcels/{id}': { get: { summary: 'A parcel\'s state and history', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }], responses: { '200': { description: '{ parcel, history }' }, ...errors(401, 404) } } },
      '/stock': { get: { summary: 'Stock on hand and incoming per post, item and organisation', parameters: queryParams(StockQuery), responses: { '200': { description: '{ post, stock }' }, ...errors(401, 422) } } },
      '/events': { get: { summary: 'Events after a cursor (stable, append-only order)', parameters: queryParams(EventsQuery), responses: { '200': { description: '{ events, next }' }, ...errors(401, 422) } } },
      '/barcodes/parse': { post: { summary: 'Parse a scanned code (GS1, EAN/UPC, post label, opaque)', requestBody: { required: true, content: { 'application/json': { schema: json(ParseBody) } } }, responses: { '200': { description: '{ kind, ais, expiry?, warnings, … }' }, ...errors(400, 401, 422) } } },
      '/openapi.json': { get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' } } } },
    },
  };
  return cached;
}
