/**
 * The JSON API under `/api/v1`: scans in; parcels, stock and events out; barcode parsing.
 */
import { Hono } from 'hono';
import { parseBarcode } from '../domain/barcode.ts';
import { PoskoError } from '../domain/errors.ts';
import { encodeHlc } from '../domain/hlc.ts';
import { MAX_BATCH, ScanBatchSchema, ScanInputSchema, type ScanInput } from '../domain/events.ts';
import type { CommitQueue } from '../ingest/commit-queue.ts';
import type { ScanResult } from '../ingest/ingest.ts';
import type { Metrics } from '../metrics.ts';
import type { Store } from '../store/store.ts';
import type { AuthEnv } from './auth.ts';
import { openApiDocument } from './openapi.ts';
import { EventsQuery, ParcelListQuery, ParseBody, StockQuery } from './schemas.ts';
import { readJson, readQuery, validate } from './validate.ts';

/** What the API routes need. */
export interface ApiDeps {
  store: Store;
  /** Where scans go: the group-commit queue in front of ingest. */
  ingest: CommitQueue;
  metrics: Metrics;
  post: string;
  role: string;
  /** The gateway clock's current wall time (HLC-backed: never behind what it has issued). */
  clockWall: () => number;
  /** The reference year for GS1 dates: the gateway's HLC year. */
  referenceYear: () => number;
}

/** Builds the `/api/v1` routes (auth is applied by the caller). */
export function apiRoutes(deps: ApiDeps): Hono<AuthEnv> {
  const api = new Hono<AuthEnv>();
  const { store, ingest, metrics } = deps;

  api.post('/scans', async (c) => {
    const body = await readJson(c);
    const batch = typeof body === 'object' && body !== null && !Array.isArray(body) && 'scans' in body;
    let raw: unknown[];
    if (batch) {
      const b = validate(ScanBatchSchema, body, 'batch');
      if (b.scans.length > MAX_BATCH) throw new PoskoError('BATCH_TOO_LARGE', `a batch holds at most ${MAX_BATCH} scans; this one has ${b.scans.length}`);
      raw = b.scans;
    } else raw = [body];
    const scans: ScanInput[] = raw.map((s, i) => validate(ScanInputSchema, s, batch ? `scan ${i}` : 'scan'));
    const principal = c.get('principal');
    if (principal.kind === 'device') {
      const other = scans.find((s) => s.device !== undefined && s.device !== principal.device);
      if (other) throw new PoskoError('FORBIDDEN', `device ${principal.device} may not send scans as ${other.device}`);
    }
    const results = await ingest.submit(scans, { device: principal.kind === 'device' ? principal.device : null });
    for (const r of results) metrics.scans.inc({ result: r.status });
    if (!batch) {
      const r = results[0]!;
      if (r.status === 'rejected') throw new PoskoError(r.error.code as never, r.error.message, r.error.details);
      return c.json(r, r.status === 'created' ? 201 : 200);
    }
    const count = (s: ScanResult['status']) => results.filter((r) => r.status === s).length;
    return c.json({ results, created: count('created'), duplicates: count('duplicate'), rejected: count('rejected') }, 200);
  });

  api.get('/parcels', (c) => {
    const q = readQuery(c, ParcelListQuery);
    return c.json(store.queries.parcels(q));
  });

  api.get('/parcels/:id', (c) => {
    const id = c.req.param('id');
    const found = store.queries.parcel(id);
    if (!found) throw new PoskoError('NOT_FOUND', `no parcel ${id}`);
    return c.json(found);
  });

  api.get('/stock', (c) => {
    const q = readQuery(c, StockQuery);
    return c.json({ post: deps.post, stock: store.queries.stock(q) });
  });

  api.get('/events', (c) => {
    const q = readQuery(c, EventsQuery);
    return c.json(store.queries.events(q.after, q.limit));
  });

  api.post('/barcodes/parse', async (c) => {
    const { code } = validate(ParseBody, await readJson(c), 'body');
    return c.json(parseBarcode(code, { referenceYear: deps.referenceYear() }));
  });

  api.get('/devices', (c) => {
    const wall = deps.clockWall();
    const midnight = wall - (wall % 86_400_000);
    return c.json({ devices: store.queries.devices(store.devices.list(), encodeHlc({ wall: midnight, counter: 0 })) });
  });

  api.get('/openapi.json', (c) => c.json(openApiDocument()));

  return api;
}
