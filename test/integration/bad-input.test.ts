/**
 * Bad input at the HTTP edge: each kind gets the right status and stable error code, a clear
 * message without internals, and leaves the database exactly as it was. Nothing is a 500.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODES, openTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gw: TestGateway;
/** A gateway with a 2 KB body limit. */
let small: TestGateway;

/** Facts from the seed that some cases need. */
const ctx = { deviceToken: '', revokedToken: '', voidEventId: '', seedEventId: '' };

interface Req {
  method: string;
  path: string;
  body?: unknown;
  raw?: string;
  /** undefined: admin token; null: no Authorization header; a string: that token. */
  token?: string | null;
  headers?: Record<string, string>;
}

interface Case {
  name: string;
  req: () => Req;
  status: number;
  code: string;
  /** Sent to the gateway with the 2 KB body limit. */
  small?: boolean;
}

const SCANS = '/api/v1/scans';
const post = (body: unknown): (() => Req) => () => ({ method: 'POST', path: SCANS, body });
const postRaw = (raw: string): (() => Req) => () => ({ method: 'POST', path: SCANS, raw, headers: { 'content-type': 'application/json' } });
const get = (path: string, token?: string | null): (() => Req) => () => (token === undefined ? { method: 'GET', path } : { method: 'GET', path, token });

const receive = (extra: Record<string, unknown> = {}) => ({ code: CODES.ean13, action: 'receive', qty: 1, item: 'HYGKIT', org: 'PMI', ...extra });

/** A valid label scan; many of them make big batches that would write rows if not refused. */
const label = (i: number) => ({ code: `PSK1:BAD:L${i}`, action: 'receive', qty: 1, operator: 'operator-with-a-long-name' });

/** About 10 KB of valid scans: written if the body limit were not enforced. */
const BIG = { scans: Array.from({ length: 120 }, (_, i) => label(i)) };

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

const cases: Case[] = [
  // --- the body is not a JSON object ---
  { name: 'malformed JSON', req: postRaw('{"code": "4006381333931", "action":'), status: 400, code: 'BAD_JSON' },
  { name: 'empty body', req: postRaw(''), status: 400, code: 'BAD_JSON' },
  { name: 'whitespace-only body', req: postRaw('  \n\t '), status: 400, code: 'BAD_JSON' },
  { name: 'JSON array body', req: post([receive()]), status: 422, code: 'VALIDATION' },
  { name: 'JSON number body', req: postRaw('42'), status: 422, code: 'VALIDATION' },
  { name: 'JSON string body', req: postRaw('"receive"'), status: 422, code: 'VALIDATION' },
  { name: 'JSON null body', req: postRaw('null'), status: 422, code: 'VALIDATION' },
  { name: 'JSON boolean body', req: postRaw('true'), status: 422, code: 'VALIDATION' },

  // --- one scan with bad fields ---
  { name: 'missing action', req: post({ code: CODES.ean13, qty: 1 }), status: 422, code: 'VALIDATION' },
  { name: 'unknown action', req: post(receive({ action: 'steal' })), status: 422, code: 'VALIDATION' },
  { name: 'qty as a string', req: post(receive({ qty: '5' })), status: 422, code: 'VALIDATION' },
  { name: 'negative qty', req: post(receive({ qty: -1 })), status: 422, code: 'VALIDATION' },
  { name: 'zero qty', req: post(receive({ qty: 0 })), status: 422, code: 'VALIDATION' },
  { name: 'qty 1e9 (over the sanity bound)', req: post(receive({ qty: 1e9 })), status: 422, code: 'VALIDATION' },
  { name: 'code as a number', req: post(receive({ code: 4006381333931 })), status: 422, code: 'VALIDATION' },
  { name: 'code of 600 characters', req: post(receive({ code: 'A'.repeat(600) })), status: 422, code: 'VALIDATION' },
  { name: 'empty code', req: post(receive({ code: '' })), status: 422, code: 'VALIDATION' },
  { name: 'blank code (spaces only)', req: post(receive({ code: '   ' })), status: 422, code: 'VALIDATION' },
  { name: 'missing code on a receive', req: post({ action: 'receive', qty: 1 }), status: 422, code: 'VALIDATION' },
  { name: 'control characters in item', req: post(receive({ item: 'BE\u0001RAS' })), status: 422, code: 'VALIDATION' },
  { name: 'DEL character in org', req: post(receive({ org: 'PMI\u007f' })), status: 422, code: 'VALIDATION' },
  { name: 'item of spaces only', req: post(receive({ item: '   ' })), status: 422, code: 'VALIDATION' },
  { name: 'item longer than 64', req: post(receive({ item: 'X'.repeat(65) })), status: 422, code: 'VALIDATION' },
  { name: 'client id longer than 128', req: post(receive({ id: 'i'.repeat(129) })), status: 422, code: 'VALIDATION' },
  { name: 'unknown extra field', req: post(receive({ colour: 'red' })), status: 422, code: 'VALIDATION' },
  { name: 'dispatch without to', req: post({ code: CODES.sscc, action: 'dispatch' }), status: 422, code: 'VALIDATION' },
  { name: 'void without voids', req: post({ action: 'void', reason: 'typo' }), status: 422, code: 'VALIDATION' },
  { name: 'void naming a non-UUID', req: post({ action: 'void', voids: 'not-a-uuid', reason: 'typo' }), status: 422, code: 'VALIDATION' },
  { name: 'void without reason', req: () => ({ method: 'POST', path: SCANS, body: { action: 'void', voids: ctx.seedEventId } }), status: 422, code: 'VALIDATION' },
  { name: 'non-void naming an event to cancel', req: () => ({ method: 'POST', path: SCANS, body: receive({ voids: ctx.seedEventId }) }), status: 422, code: 'VALIDATION' },
  { name: 'at that is not a datetime', req: post(receive({ at: 'yesterday' })), status: 422, code: 'VALIDATION' },
  { name: 'at with month 13', req: post(receive({ at: '2025-13-01T00:00:00Z' })), status: 422, code: 'VALIDATION' },
  { name: 'device id with spaces', req: post(receive({ device: 'bad device!' })), status: 422, code: 'VALIDATION' },
  { name: '__proto__ key in a scan', req: postRaw('{"code":"4006381333931","action":"receive","__proto__":{"qty":5}}'), status: 422, code: 'VALIDATION' },
  { name: 'at without a UTC offset', req: post(receive({ at: '2025-01-01T00:00:00' })), status: 422, code: 'VALIDATION' },
  { name: 'code of GS separators only', req: post(receive({ code: '\x1d\x1d' })), status: 422, code: 'VALIDATION' },
  { name: 'code of an AIM identifier only', req: post(receive({ code: ']C1' })), status: 422, code: 'VALIDATION' },
  { name: 'empty ISO 15434 envelope', req: post(receive({ code: '[)>\x1e05\x1d\x1e\x04' })), status: 422, code: 'VALIDATION' },
  { name: 'malformed posko label', req: post(receive({ code: 'PSK1:demo' })), status: 422, code: 'VALIDATION' },
  { name: 'GS1 AI repeated with different values', req: post(receive({ code: '(01)09506000134352(10)A(10)B' })), status: 422, code: 'VALIDATION' },

  // --- GS1 / EAN errors in a single scan ---
  { name: 'GS1 check digit', req: post(receive({ code: '(00)106141412345678909' })), status: 422, code: 'GS1_CHECK_DIGIT' },
  { name: 'GS1 check digit (AIM element string)', req: post(receive({ code: ']C100106141412345678907' })), status: 422, code: 'GS1_CHECK_DIGIT' },
  { name: 'GS1 invalid date (month 13)', req: post(receive({ code: '(01)09506000134352(17)251301' })), status: 422, code: 'GS1_INVALID_DATE' },
  { name: 'GS1 invalid date (30 February)', req: post(receive({ code: ']C1010950600013435217250230' })), status: 422, code: 'GS1_INVALID_DATE' },
  { name: 'GS1 unknown AI', req: post(receive({ code: '(01)09506000134352(89)X' })), status: 422, code: 'GS1_UNKNOWN_AI' },
  { name: 'GS1 bad length (13-digit GTIN)', req: post(receive({ code: '(01)0950600013435' })), status: 422, code: 'GS1_BAD_LENGTH' },
  { name: 'GS1 bad length (batch of 21)', req: post(receive({ code: `(01)09506000134352(10)${'A'.repeat(21)}` })), status: 422, code: 'GS1_BAD_LENGTH' },
  { name: 'GS1 invalid character', req: post(receive({ code: '(01)09506000134352(10)AB~C' })), status: 422, code: 'GS1_INVALID_CHARACTER' },
  { name: 'GS1 empty value', req: post(receive({ code: '(01)09506000134352(10)' })), status: 422, code: 'GS1_EMPTY_VALUE' },
  { name: 'GS1 Digital Link with a wrong GTIN check digit', req: post(receive({ code: 'https://id.gs1.org/01/09506000134353' })), status: 422, code: 'GS1_CHECK_DIGIT' },
  { name: 'GS1 Digital Link with broken percent-encoding', req: post(receive({ code: 'https://id.gs1.org/01/09506000134352/10/%E0%A4%A' })), status: 422, code: 'GS1_INVALID_CHARACTER' },
  { name: 'EAN-13 wrong check digit', req: post(receive({ code: '4006381333932' })), status: 422, code: 'EAN_CHECK_DIGIT' },

  // --- batches ---
  { name: 'batch of 1001 scans', req: post({ scans: Array.from({ length: 1001 }, (_, i) => label(i)) }), status: 413, code: 'BATCH_TOO_LARGE' },
  { name: 'body of 10 KB over the 2 KB limit', small: true, req: post(BIG), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'body of 10 KB over the 2 KB limit, with Content-Length', small: true, req: () => ({ method: 'POST', path: SCANS, raw: JSON.stringify(BIG), headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(JSON.stringify(BIG))) } }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'batch with one scan of wrong types', req: post({ scans: [label(1), label(2), receive({ qty: 'ten' }), label(3)] }), status: 422, code: 'VALIDATION' },
  { name: 'batch with one scan missing its action', req: post({ scans: [label(4), { code: CODES.ean13 }] }), status: 422, code: 'VALIDATION' },
  { name: 'scans not an array', req: post({ scans: label(1) }), status: 422, code: 'VALIDATION' },
  { name: 'scans null', req: post({ scans: null }), status: 422, code: 'VALIDATION' },
  { name: 'empty scans array', req: post({ scans: [] }), status: 422, code: 'VALIDATION' },
  { name: 'batch with an extra top-level field', req: post({ scans: [label(5)], flush: true }), status: 422, code: 'VALIDATION' },
  { name: 'batch of 1001 with bad scans in it (size checked first)', req: post({ scans: Array.from({ length: 1001 }, () => 7) }), status: 413, code: 'BATCH_TOO_LARGE' },

  // --- authentication and authorisation ---
  { name: 'no Authorization header', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: null }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'wrong token', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: 'not-the-admin-token-xxxxxxxx' }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'Basic instead of Bearer', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: null, headers: { authorization: 'Basic dXNlcjpwYXNz' } }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'Bearer without a token', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: null, headers: { authorization: 'Bearer ' } }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'Bearer with two tokens', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: null, headers: { authorization: 'Bearer abc def' } }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'token of 10 000 characters', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: 'x'.repeat(10_000) }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'revoked device token', req: () => ({ method: 'POST', path: SCANS, body: label(6), token: ctx.revokedToken }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'read without a token', req: get('/api/v1/parcels', null), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'device impersonation', req: () => ({ method: 'POST', path: SCANS, body: receive({ device: 'someone-else' }), token: ctx.deviceToken }), status: 403, code: 'FORBIDDEN' },
  { name: 'device impersonation inside a batch', req: () => ({ method: 'POST', path: SCANS, body: { scans: [label(7), { ...label(8), device: 'someone-else' }] }, token: ctx.deviceToken }), status: 403, code: 'FORBIDDEN' },

  // --- conflicts and references ---
  { name: 'idempotency conflict (same id, other qty)', req: post({ id: 'seed-1', code: CODES.sscc, action: 'receive', qty: 49, item: 'BERAS', org: 'BPBD' }), status: 409, code: 'IDEMPOTENCY_CONFLICT' },
  { name: 'void of an unknown event', req: post({ action: 'void', voids: '0f8fad5b-d9cb-469f-a165-70867728950e', reason: 'x' }), status: 404, code: 'NOT_FOUND' },
  { name: 'void of a void', req: () => ({ method: 'POST', path: SCANS, body: { action: 'void', voids: ctx.voidEventId, reason: 'undo the undo' } }), status: 409, code: 'CONFLICT' },

  // --- routes and query strings ---
  { name: 'unknown API route', req: () => ({ method: 'POST', path: '/api/v1/scan', body: label(9) }), status: 404, code: 'NOT_FOUND' },
  { name: 'unknown route outside the API', req: get('/nope', null), status: 404, code: 'NOT_FOUND' },
  { name: 'wrong method on /scans', req: () => ({ method: 'PUT', path: SCANS, body: label(9) }), status: 404, code: 'NOT_FOUND' },
  { name: 'unknown parcel', req: get(`/api/v1/parcels/${encodeURIComponent('sscc:000000000000000000')}`), status: 404, code: 'NOT_FOUND' },
  { name: 'parcels limit=0', req: get('/api/v1/parcels?limit=0'), status: 422, code: 'VALIDATION' },
  { name: 'parcels limit=abc', req: get('/api/v1/parcels?limit=abc'), status: 422, code: 'VALIDATION' },
  { name: 'parcels limit=501', req: get('/api/v1/parcels?limit=501'), status: 422, code: 'VALIDATION' },
  { name: 'parcels limit=2.5', req: get('/api/v1/parcels?limit=2.5'), status: 422, code: 'VALIDATION' },
  { name: 'parcels q longer than 100', req: get(`/api/v1/parcels?q=${'a'.repeat(101)}`), status: 422, code: 'VALIDATION' },
  { name: 'parcels after empty', req: get('/api/v1/parcels?after='), status: 422, code: 'VALIDATION' },
  { name: 'parcels status=bogus', req: get('/api/v1/parcels?status=bogus'), status: 422, code: 'VALIDATION' },
  { name: 'parcels unknown query parameter', req: get('/api/v1/parcels?colour=red'), status: 422, code: 'VALIDATION' },
  { name: 'parcels after=garbage cursor', req: get('/api/v1/parcels?after=garbage'), status: 400, code: 'BAD_REQUEST' },
  { name: 'parcels after=cursor of the wrong shape', req: get(`/api/v1/parcels?after=${b64(['only-one'])}`), status: 400, code: 'BAD_REQUEST' },
  { name: 'parcels after=cursor with numbers', req: get(`/api/v1/parcels?after=${b64([1, 2])}`), status: 400, code: 'BAD_REQUEST' },
  { name: 'events after=-1', req: get('/api/v1/events?after=-1'), status: 422, code: 'VALIDATION' },
  { name: 'events after=abc', req: get('/api/v1/events?after=abc'), status: 422, code: 'VALIDATION' },
  { name: 'events after of 16 digits', req: get('/api/v1/events?after=1234567890123456'), status: 422, code: 'VALIDATION' },
  { name: 'events limit=0', req: get('/api/v1/events?limit=0'), status: 422, code: 'VALIDATION' },
  { name: 'events limit=1001', req: get('/api/v1/events?limit=1001'), status: 422, code: 'VALIDATION' },
  { name: 'stock unknown query parameter', req: get('/api/v1/stock?colour=red'), status: 422, code: 'VALIDATION' },

  // --- barcode parsing ---
  { name: 'parse: malformed JSON', req: () => ({ method: 'POST', path: '/api/v1/barcodes/parse', raw: '{code:' }), status: 400, code: 'BAD_JSON' },
  { name: 'parse: no code', req: () => ({ method: 'POST', path: '/api/v1/barcodes/parse', body: {} }), status: 422, code: 'VALIDATION' },
  { name: 'parse: code of 600 characters', req: () => ({ method: 'POST', path: '/api/v1/barcodes/parse', body: { code: '1'.repeat(600) } }), status: 422, code: 'VALIDATION' },
  { name: 'parse: GS1 check digit', req: () => ({ method: 'POST', path: '/api/v1/barcodes/parse', body: { code: '(00)106141412345678909' } }), status: 422, code: 'GS1_CHECK_DIGIT' },
];

// ---------------------------------------------------------------------------------------------

interface Snapshot { events: number; parcels: number; stock: number; eventIds: string | null; parcelSum: string | null; stockSum: string | null; docs: number }

function snapshot(g: TestGateway): Snapshot {
  return g.gw.store.db.prepare(`
    SELECT
      (SELECT count(*) FROM events) AS events,
      (SELECT count(*) FROM parcels) AS parcels,
      (SELECT count(*) FROM stock) AS stock,
      (SELECT group_concat(seq || ':' || id || ':' || kind, ',') FROM (SELECT * FROM events ORDER BY seq)) AS eventIds,
      (SELECT group_concat(id || ':' || status || ':' || holdings || ':' || in_transit || ':' || last_hlc, ',') FROM (SELECT * FROM parcels ORDER BY id)) AS parcelSum,
      (SELECT group_concat(post || '/' || item || '/' || org || '=' || on_hand || '+' || incoming || '#' || parcels, ',') FROM (SELECT * FROM stock ORDER BY post, item, org)) AS stockSum,
      (SELECT count(*) FROM docs) AS docs
  `).get() as Snapshot;
}

/** Stack-trace text: `at fn (file:1:2)` frames, file:line references, node_modules paths. */
const STACK_RE = /(\n\s*at\s)|(\bat\s+\S*\s*\(?\S+:\d+:\d+\)?)|(\.[cm]?[tj]s:\d)|node_modules|(\bstack\b)/;

function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [k, ...strings(x)]);
  return [];
}

async function send(g: TestGateway, r: Req) {
  const opts: { body?: unknown; raw?: string; token?: string | null; headers?: Record<string, string> } = {};
  if (r.raw !== undefined) opts.raw = r.raw;
  else if (r.body !== undefined) opts.body = r.body;
  if (r.token !== undefined) opts.token = r.token;
  if (r.headers) opts.headers = r.headers;
  return g.call(r.method, r.path, opts);
}

beforeAll(async () => {
  gw = openTestGateway();
  small = openTestGateway({ config: { maxBodyBytes: '2048' } });

  const seed = async (g: TestGateway, body: unknown) => {
    const r = await g.call('POST', SCANS, { body });
    expect([200, 201]).toContain(r.status);
    return r.body;
  };
  const first = await seed(gw, { id: 'seed-1', code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD' });
  ctx.seedEventId = first.event.id;
  await seed(gw, { code: CODES.ean13, action: 'receive', qty: 10, item: 'HYGKIT', org: 'PMI' });
  await seed(gw, { code: CODES.gtinSerial, action: 'receive', qty: 5, item: 'SELIMUT', org: 'Dinsos' });
  await seed(gw, { code: CODES.sscc, action: 'dispatch', to: 'KKR-KBG' });
  const extra = await seed(gw, { code: 'PSK1:DEMO:S1', action: 'receive', qty: 2, item: 'TENDA', org: 'BPBD' });
  const v = await seed(gw, { action: 'void', voids: extra.event.id, reason: 'scanned twice' });
  ctx.voidEventId = v.event.id;
  await seed(small, { code: CODES.ean13, action: 'receive', qty: 3, item: 'HYGKIT', org: 'PMI' });

  ctx.deviceToken = gw.gw.store.devices.add('scanner-ok').token;
  const revoked = gw.gw.store.devices.add('scanner-revoked');
  ctx.revokedToken = revoked.token;
  gw.gw.store.devices.revoke(revoked.device.id);
});

afterAll(async () => {
  await gw?.close();
  await small?.close();
});

describe('bad input', () => {
  it('has a non-trivial seed and enough cases', () => {
    const s = snapshot(gw);
    expect(s).toMatchObject({ events: 6, parcels: 3, stock: 3 });
    expect(s.stockSum).toBe('DEMO/HYGKIT/PMI=10.0+0.0#1,DEMO/SELIMUT/Dinsos=5.0+0.0#1,KKR-KBG/BERAS/BPBD=0.0+50.0#1');
    expect(snapshot(small).events).toBe(1);
    expect(Buffer.byteLength(JSON.stringify(BIG))).toBeGreaterThan(10 * 1024);
    expect(cases.length).toBeGreaterThanOrEqual(35);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it.each(cases)('$name → $status $code', async (c) => {
    const g = c.small ? small : gw;
    const before = snapshot(g);
    const r = await send(g, c.req());

    expect(r.status).not.toBe(500);
    expect({ status: r.status, code: r.body?.error?.code }).toEqual({ status: c.status, code: c.code });
    expect(typeof r.body.error.message).toBe('string');
    expect(r.body.error.message.trim().length).toBeGreaterThan(0);
    expect(r.body.error).not.toHaveProperty('stack');
    expect(Object.keys(r.body)).toEqual(['error']);
    for (const s of strings(r.body)) expect(s).not.toMatch(STACK_RE);
    expect(r.headers.get('content-type')).toContain('application/json');
    if (c.status === 401) expect(r.headers.get('www-authenticate')).toBe('Bearer realm="posko"');

    expect(snapshot(g)).toEqual(before);
  });

  it('a batch with a bad GS1 code among good ones is 200: the bad one is rejected, the rest written', async () => {
    const before = snapshot(gw);
    const r = await gw.call('POST', SCANS, { body: { scans: [label(100), receive({ code: '(00)106141412345678909' }), label(101)] } });
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: any) => x.status)).toEqual(['created', 'rejected', 'created']);
    expect(r.body.results[1].error.code).toBe('GS1_CHECK_DIGIT');
    for (const s of strings(r.body.results[1].error)) expect(s).not.toMatch(STACK_RE);
    expect(snapshot(gw).events).toBe(before.events + 2);
  });

  it('no bad input produced a 500 (metrics agree)', async () => {
    const r = await gw.call('GET', '/metrics', { token: null });
    expect(r.status).toBe(200);
    expect(r.body).toContain('posko_http_requests_total');
    expect(r.body).not.toMatch(/posko_http_requests_total\{[^}]*status="5\d\d"[^}]*\}/);
    const s = await small.call('GET', '/metrics', { token: null });
    expect(s.body).not.toMatch(/posko_http_requests_total\{[^}]*status="5\d\d"[^}]*\}/);
  });
});
