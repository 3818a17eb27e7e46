/**
 * Integration tests of every HTTP route of the gateway, in-process through `app.request()` on a
 * real temp SQLite database.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, CODES, openTestGateway, type TestGateway } from '../helpers/gateway.ts';

// ---------------------------------------------------------------------------------------------
// Helpers (independent of src: check digits are computed here, not with the code under test)
// ---------------------------------------------------------------------------------------------

/** GS1 mod-10 check digit of a digit string (without its check digit). */
function checkDigit(body: string): number {
  let sum = 0;
  for (let i = body.length - 1, w = 3; i >= 0; i--, w = w === 3 ? 1 : 3) sum += Number(body[i]) * w;
  return (10 - (sum % 10)) % 10;
}

/** A valid 18-digit SSCC value for serial `n`. */
function ssccValue(n: number): string {
  const body = '1' + '0614141' + String(n).padStart(9, '0');
  return body + String(checkDigit(body));
}

/** A valid SSCC element string `00…` (20 digits) for serial `n`. */
function sscc(n: number): string {
  return '00' + ssccValue(n);
}

/** The same SSCC as a GS1 element string with a wrong check digit. */
function badSscc(n: number): string {
  const v = ssccValue(n);
  return ']C100' + v.slice(0, -1) + String((Number(v.slice(-1)) + 1) % 10);
}

function db(gw: TestGateway) {
  return gw.gw.store.db;
}

function count(gw: TestGateway, table: 'events' | 'parcels' | 'stock'): number {
  return (db(gw).prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
}

async function stock(gw: TestGateway, query = ''): Promise<{ post: string; item: string; org: string; onHand: number; incoming: number; parcels: number }[]> {
  const r = await gw.call('GET', `/api/v1/stock${query}`);
  expect(r.status).toBe(200);
  return r.body.stock;
}

async function scan(gw: TestGateway, body: Record<string, unknown>, token?: string | null) {
  return gw.call('POST', '/api/v1/scans', token === undefined ? { body } : { body, token });
}

async function parcel(gw: TestGateway, id: string) {
  return gw.call('GET', `/api/v1/parcels/${encodeURIComponent(id)}`);
}

let gw: TestGateway;
beforeEach(() => { gw = openTestGateway(); });
afterEach(async () => { await gw.close(); });

// ---------------------------------------------------------------------------------------------
// POST /api/v1/scans
// ---------------------------------------------------------------------------------------------

describe('POST /api/v1/scans: single scans', () => {
  it('creates an event and returns 201 with the event, the parsed code and the parcel', async () => {
    const r = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD', unit: 'kg', operator: 'Sari', at: '2025-03-01T08:00:00+07:00' });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('created');
    const e = r.body.event;
    expect(e.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.kind).toBe('receive');
    expect(e.post).toBe('DEMO');
    expect(e.device).toBeNull();
    expect(e.code).toBe(CODES.sscc);
    expect(e.parcel).toBe('sscc:106141412345678908');
    expect(e.qty).toBe(50);
    expect(e.item).toBe('BERAS');
    expect(e.org).toBe('BPBD');
    expect(e.unit).toBe('kg');
    expect(e.operator).toBe('Sari');
    expect(e.deviceAt).toBe('2025-03-01T08:00:00+07:00');
    expect(e.parsed).toEqual({ kind: 'gs1', ais: { '00': '106141412345678908' } });
    expect(typeof e.hlc).toBe('string');
    expect(r.body.parsed.kind).toBe('gs1');
    expect(r.body.parsed.sscc).toBe('106141412345678908');
    expect(r.body.parcel).toMatchObject({ id: 'sscc:106141412345678908', status: 'in_store', qty: 50, holdings: { DEMO: 50 }, item: 'BERAS', org: 'BPBD', unit: 'kg', events: 1, lastEvent: e.id, lastKind: 'receive' });
    const row = db(gw).prepare('SELECT id, kind, parcel, qty FROM events').all();
    expect(row).toEqual([{ id: e.id, kind: 'receive', parcel: 'sscc:106141412345678908', qty: 50 }]);
  });

  it('takes a retry with the same id as a duplicate: 200, same event id, one row', async () => {
    const body = { id: 'scan-0001', code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD' };
    const first = await scan(gw, body);
    expect(first.status).toBe(201);
    expect(first.body.status).toBe('created');
    const second = await scan(gw, body);
    expect(second.status).toBe(200);
    expect(second.body.status).toBe('duplicate');
    expect(second.body.event.id).toBe(first.body.event.id);
    expect(second.body.event.hlc).toBe(first.body.event.hlc);
    expect(second.body.parcel.qty).toBe(50);
    expect(count(gw, 'events')).toBe(1);
    expect(db(gw).prepare('SELECT key FROM events').all()).toEqual([{ key: 'DEMO/api/scan-0001' }]);
  });

  it('refuses the same id with different content: 409 IDEMPOTENCY_CONFLICT, nothing written', async () => {
    const first = await scan(gw, { id: 'scan-0002', code: CODES.sscc, action: 'receive', qty: 50 });
    expect(first.status).toBe(201);
    const r = await scan(gw, { id: 'scan-0002', code: CODES.sscc, action: 'receive', qty: 51 });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('IDEMPOTENCY_CONFLICT');
    expect(r.body.error.details).toEqual({ event: first.body.event.id });
    const r2 = await scan(gw, { id: 'scan-0002', code: CODES.ean13, action: 'receive', qty: 50 });
    expect(r2.status).toBe(409);
    expect(r2.body.error.code).toBe('IDEMPOTENCY_CONFLICT');
    expect(count(gw, 'events')).toBe(1);
    expect((await parcel(gw, 'sscc:106141412345678908')).body.parcel.qty).toBe(50);
  });

  it('gives two scans without an id two events (no accidental dedupe)', async () => {
    const body = { code: CODES.ean13, action: 'receive', qty: 3 };
    expect((await scan(gw, body)).status).toBe(201);
    expect((await scan(gw, body)).status).toBe(201);
    expect(count(gw, 'events')).toBe(2);
  });
});

describe('POST /api/v1/scans: batches', () => {
  const batchOf = (n: number, prefix: string) =>
    Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, code: sscc(1000 + i), action: 'receive', qty: i + 1, item: 'BERAS', org: 'BPBD' }));

  it('records a batch of 100: 200 with one result per scan, in order, and the counts', async () => {
    const scans = batchOf(100, 'b');
    const r = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(r.status).toBe(200);
    expect(r.body.created).toBe(100);
    expect(r.body.duplicates).toBe(0);
    expect(r.body.rejected).toBe(0);
    expect(r.body.results).toHaveLength(100);
    r.body.results.forEach((res: any, i: number) => {
      expect(res.status).toBe('created');
      expect(res.event.parcel).toBe(`sscc:${ssccValue(1000 + i)}`);
      expect(res.event.qty).toBe(i + 1);
    });
    expect(count(gw, 'events')).toBe(100);
    expect(count(gw, 'parcels')).toBe(100);
    expect(await stock(gw)).toEqual([{ post: 'DEMO', item: 'BERAS', org: 'BPBD', onHand: 5050, incoming: 0, parcels: 100 }]);
    // HLCs strictly increase within the batch
    const hlcs = r.body.results.map((x: any) => x.event.hlc as string);
    expect([...hlcs].sort()).toEqual(hlcs);
    expect(new Set(hlcs).size).toBe(100);
  });

  it('rejects only the scan with a bad GS1 check digit; the others are created', async () => {
    const scans: Record<string, unknown>[] = batchOf(5, 'm');
    scans[2] = { id: 'm-bad', code: badSscc(77), action: 'receive', qty: 1 };
    const r = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: any) => x.status)).toEqual(['created', 'created', 'rejected', 'created', 'created']);
    expect(r.body.results[2].error.code).toBe('GS1_CHECK_DIGIT');
    expect(typeof r.body.results[2].error.message).toBe('string');
    expect(r.body.results[2].error.message.length).toBeGreaterThan(0);
    expect(r.body).toMatchObject({ created: 4, duplicates: 0, rejected: 1 });
    expect(count(gw, 'events')).toBe(4);
    expect((await parcel(gw, `sscc:${ssccValue(77)}`)).status).toBe(404);
  });

  it('takes a retried batch as all duplicates and writes no new rows', async () => {
    const scans = batchOf(20, 'r');
    const first = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(first.body.created).toBe(20);
    const before = db(gw).prepare('SELECT seq, id, hlc FROM events ORDER BY seq').all();
    const again = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ created: 0, duplicates: 20, rejected: 0 });
    expect(again.body.results.map((x: any) => x.event.id)).toEqual(first.body.results.map((x: any) => x.event.id));
    expect(db(gw).prepare('SELECT seq, id, hlc FROM events ORDER BY seq').all()).toEqual(before);
    expect(count(gw, 'parcels')).toBe(20);
  });

  it('within one batch, a repeated id is a duplicate and a reused id with other content is rejected', async () => {
    const r = await gw.call('POST', '/api/v1/scans', { body: { scans: [
      { id: 'z', code: CODES.ean13, action: 'receive', qty: 1 },
      { id: 'z', code: CODES.ean13, action: 'receive', qty: 2 },
      { id: 'z', code: CODES.ean13, action: 'receive', qty: 1 },
    ] } });
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: any) => x.status)).toEqual(['created', 'rejected', 'duplicate']);
    expect(r.body.results[1].error.code).toBe('IDEMPOTENCY_CONFLICT');
    expect(r.body.results[2].event.id).toBe(r.body.results[0].event.id);
    expect(r.body).toMatchObject({ created: 1, duplicates: 1, rejected: 1 });
    expect(count(gw, 'events')).toBe(1);
    expect((await parcel(gw, 'gtin:04006381333931')).body.parcel.qty).toBe(1);
  });

  it('mixes new and duplicate scans in one batch', async () => {
    const scans = batchOf(4, 'x');
    await gw.call('POST', '/api/v1/scans', { body: { scans: scans.slice(0, 2) } });
    const r = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(r.body.results.map((x: any) => x.status)).toEqual(['duplicate', 'duplicate', 'created', 'created']);
    expect(r.body).toMatchObject({ created: 2, duplicates: 2, rejected: 0 });
    expect(count(gw, 'events')).toBe(4);
  });
});

// ---------------------------------------------------------------------------------------------
// Parcel lifecycle, stock and voids
// ---------------------------------------------------------------------------------------------

describe('parcel lifecycle across events', () => {
  const PARCEL = 'sscc:106141412345678908';

  it('receive → dispatch → return → distribute moves the parcel and the stock', async () => {
    const rec = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD' });
    expect(rec.status).toBe(201);
    expect(await stock(gw)).toEqual([{ post: 'DEMO', item: 'BERAS', org: 'BPBD', onHand: 50, incoming: 0, parcels: 1 }]);

    const dis = await scan(gw, { code: CODES.sscc, action: 'dispatch', to: 'KKR-KBG' });
    expect(dis.status).toBe(201);
    expect(dis.body.event.dest).toBe('KKR-KBG');
    expect(dis.body.parcel).toMatchObject({ status: 'in_transit', dest: 'KKR-KBG', inTransit: 50, qty: 0, holdings: {} });
    const afterDispatch = await stock(gw);
    expect(afterDispatch.find((s) => s.post === 'DEMO')).toBeUndefined();
    expect(afterDispatch).toEqual([{ post: 'KKR-KBG', item: 'BERAS', org: 'BPBD', onHand: 0, incoming: 50, parcels: 1 }]);
    expect(await stock(gw, '?post=KKR-KBG')).toHaveLength(1);
    expect(await stock(gw, '?post=DEMO')).toEqual([]);

    const ret = await scan(gw, { code: CODES.sscc, action: 'return' });
    expect(ret.body.parcel).toMatchObject({ status: 'in_store', holdings: { DEMO: 50 }, inTransit: 0, dest: null });
    expect(await stock(gw)).toEqual([{ post: 'DEMO', item: 'BERAS', org: 'BPBD', onHand: 50, incoming: 0, parcels: 1 }]);

    const dist = await scan(gw, { code: CODES.sscc, action: 'distribute' });
    expect(dist.body.parcel).toMatchObject({ status: 'distributed', qty: 0, distributed: 50, events: 4 });
    expect(await stock(gw)).toEqual([]);

    const p = await parcel(gw, PARCEL);
    expect(p.status).toBe(200);
    expect(p.body.parcel.status).toBe('distributed');
    expect(p.body.history.map((e: any) => e.kind)).toEqual(['receive', 'dispatch', 'return', 'distribute']);
  });

  it('damage writes a unit parcel off', async () => {
    await scan(gw, { code: CODES.gtinSerial, action: 'receive', qty: 12, item: 'HYGKIT', org: 'PMI' });
    const r = await scan(gw, { code: CODES.gtinSerial, action: 'damage', reason: 'wet' });
    expect(r.status).toBe(201);
    expect(r.body.parcel).toMatchObject({ id: 'sgtin:09506000134352:SN0001', status: 'damaged', writtenOff: 12, qty: 0 });
    expect(await stock(gw)).toEqual([]);
  });

  it('bulk GTIN lines add and subtract quantities', async () => {
    const gtinParcel = 'gtin:04006381333931';
    const a = await scan(gw, { code: CODES.ean13, action: 'receive', qty: 10, item: 'HYGKIT', org: 'PMI' });
    expect(a.body.event.parcel).toBe(gtinParcel);
    expect(a.body.parsed.kind).toBe('ean');
    await scan(gw, { code: CODES.ean13, action: 'receive', qty: 10, item: 'HYGKIT', org: 'PMI' });
    expect(await stock(gw)).toEqual([{ post: 'DEMO', item: 'HYGKIT', org: 'PMI', onHand: 20, incoming: 0, parcels: 1 }]);
    const d = await scan(gw, { code: CODES.ean13, action: 'distribute', qty: 5 });
    expect(d.body.parcel).toMatchObject({ id: gtinParcel, status: 'in_store', qty: 15, distributed: 5, holdings: { DEMO: 15 } });
    expect(await stock(gw)).toEqual([{ post: 'DEMO', item: 'HYGKIT', org: 'PMI', onHand: 15, incoming: 0, parcels: 1 }]);
    const c = await scan(gw, { code: CODES.ean13, action: 'count', qty: 14 });
    expect(c.body.parcel.qty).toBe(14);
    expect((await stock(gw))[0]?.onHand).toBe(14);
  });

  it('void recomputes the state as if the event never happened', async () => {
    await scan(gw, { code: CODES.ean13, action: 'receive', qty: 10, item: 'HYGKIT', org: 'PMI' });
    await scan(gw, { code: CODES.ean13, action: 'receive', qty: 10, item: 'HYGKIT', org: 'PMI' });
    const parcelBefore = (await parcel(gw, 'gtin:04006381333931')).body.parcel;
    const stockBefore = await stock(gw);
    const d = await scan(gw, { code: CODES.ean13, action: 'distribute', qty: 5 });
    expect(d.body.parcel.qty).toBe(15);

    const v = await scan(gw, { action: 'void', voids: d.body.event.id, reason: 'wrong quantity scanned' });
    expect(v.status).toBe(201);
    expect(v.body.event).toMatchObject({ kind: 'void', voids: d.body.event.id, reason: 'wrong quantity scanned', code: '', parcel: 'gtin:04006381333931' });
    expect(v.body.parsed).toBeNull();
    expect(v.body.parcel).toEqual(parcelBefore);
    expect(await stock(gw)).toEqual(stockBefore);
    const p = await parcel(gw, 'gtin:04006381333931');
    expect(p.body.parcel).toEqual(parcelBefore);
    expect(p.body.history.map((e: any) => e.kind)).toEqual(['receive', 'receive', 'distribute', 'void']);
    expect(count(gw, 'events')).toBe(4);
  });

  it('voiding the only event of a parcel removes the parcel and its stock', async () => {
    const r = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD' });
    const v = await scan(gw, { action: 'void', voids: r.body.event.id, reason: 'scanned at the wrong post' });
    expect(v.status).toBe(201);
    expect(v.body.parcel).toBeNull();
    expect((await parcel(gw, PARCEL)).status).toBe(404);
    expect(await stock(gw)).toEqual([]);
    expect(count(gw, 'parcels')).toBe(0);
  });

  it('voiding a dispatch puts the parcel back in store', async () => {
    await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD' });
    const dis = await scan(gw, { code: CODES.sscc, action: 'dispatch', to: 'KKR-KBG' });
    await scan(gw, { action: 'void', voids: dis.body.event.id, reason: 'truck did not leave' });
    expect((await parcel(gw, PARCEL)).body.parcel).toMatchObject({ status: 'in_store', holdings: { DEMO: 50 }, inTransit: 0, dest: null });
    expect(await stock(gw)).toEqual([{ post: 'DEMO', item: 'BERAS', org: 'BPBD', onHand: 50, incoming: 0, parcels: 1 }]);
  });

  it('void of an unknown event id → 404 NOT_FOUND, nothing written', async () => {
    await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50 });
    const r = await scan(gw, { action: 'void', voids: '0f8fad5b-d9cb-469f-a165-70867728950e', reason: 'x' });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('NOT_FOUND');
    expect(count(gw, 'events')).toBe(1);
  });

  it('void without a reason → 422 VALIDATION naming reason', async () => {
    const rec = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50 });
    const r = await scan(gw, { action: 'void', voids: rec.body.event.id });
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe('VALIDATION');
    expect(r.body.error.details.issues).toEqual([{ path: 'reason', message: 'a void needs a reason' }]);
    expect(count(gw, 'events')).toBe(1);
    expect((await parcel(gw, PARCEL)).body.parcel.qty).toBe(50);
  });

  it('a void cannot be voided → 409 CONFLICT', async () => {
    const rec = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 50 });
    const v = await scan(gw, { action: 'void', voids: rec.body.event.id, reason: 'oops' });
    const r = await scan(gw, { action: 'void', voids: v.body.event.id, reason: 'undo' });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('CONFLICT');
    expect(count(gw, 'events')).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// GET /api/v1/parcels/:id and /api/v1/parcels
// ---------------------------------------------------------------------------------------------

describe('GET /api/v1/parcels/:id', () => {
  it('returns the parcel and its history in HLC order', async () => {
    const ids: string[] = [];
    for (const body of [
      { code: CODES.sscc, action: 'receive', qty: 50, item: 'BERAS', org: 'BPBD' },
      { code: CODES.ssccAim, action: 'checkpoint' },
      { code: CODES.sscc, action: 'dispatch', to: 'KKR-KBG' },
    ]) ids.push((await scan(gw, body)).body.event.id);
    await scan(gw, { code: CODES.ean13, action: 'receive', qty: 1 }); // another parcel: not in the history
    const r = await parcel(gw, 'sscc:106141412345678908');
    expect(r.status).toBe(200);
    expect(r.body.parcel).toMatchObject({ id: 'sscc:106141412345678908', status: 'in_transit', events: 3, item: 'BERAS' });
    expect(r.body.history.map((e: any) => e.id)).toEqual(ids);
    const hlcs = r.body.history.map((e: any) => e.hlc as string);
    expect([...hlcs].sort()).toEqual(hlcs);
    expect(r.body.history[1].code).toBe(CODES.ssccAim);
    for (const e of r.body.history) expect(e.cursor).toMatch(/^\d+$/);
  });

  it('finds parcels whose ids hold colons and spaces when URL-encoded', async () => {
    await scan(gw, { code: CODES.gtinSerial, action: 'receive', qty: 1 });
    await scan(gw, { code: 'PALLET 7/A', action: 'receive', qty: 1 });
    expect((await parcel(gw, 'sgtin:09506000134352:SN0001')).body.parcel.id).toBe('sgtin:09506000134352:SN0001');
    const opaque = await parcel(gw, 'code:PALLET 7/A');
    expect(opaque.status).toBe(200);
    expect(opaque.body.parcel.id).toBe('code:PALLET 7/A');
  });

  it('unknown parcel → 404 NOT_FOUND', async () => {
    const r = await parcel(gw, 'sscc:000000000000000000');
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('NOT_FOUND');
    expect(r.body.error.message).toContain('sscc:000000000000000000');
  });
});

describe('GET /api/v1/parcels', () => {
  async function seed() {
    // 6 at DEMO, in store; 3 dispatched to KKR-KBG; 2 distributed; 1 BERAS from Dinsos
    const scans: Record<string, unknown>[] = [];
    for (let i = 0; i < 12; i++) scans.push({ code: sscc(i), action: 'receive', qty: 10, item: i === 11 ? 'BERAS' : 'AIR', org: i === 11 ? 'Dinsos' : 'BPBD' });
    for (let i = 6; i < 9; i++) scans.push({ code: sscc(i), action: 'dispatch', to: 'KKR-KBG' });
    for (let i = 9; i < 11; i++) scans.push({ code: sscc(i), action: 'distribute' });
    const r = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(r.body.created).toBe(scans.length);
  }

  it('lists parcels newest activity first', async () => {
    await seed();
    const r = await gw.call('GET', '/api/v1/parcels');
    expect(r.status).toBe(200);
    expect(r.body.parcels).toHaveLength(12);
    expect(r.body.next).toBeNull();
    const last = r.body.parcels.map((p: any) => p.lastHlc as string);
    expect([...last].sort().reverse()).toEqual(last);
  });

  it('filters by status', async () => {
    await seed();
    const inTransit = await gw.call('GET', '/api/v1/parcels?status=in_transit');
    expect(inTransit.body.parcels.map((p: any) => p.id).sort()).toEqual([6, 7, 8].map((i) => `sscc:${ssccValue(i)}`).sort());
    const distributed = await gw.call('GET', '/api/v1/parcels?status=distributed');
    expect(distributed.body.parcels.map((p: any) => p.id).sort()).toEqual([9, 10].map((i) => `sscc:${ssccValue(i)}`).sort());
    const inStore = await gw.call('GET', '/api/v1/parcels?status=in_store');
    expect(inStore.body.parcels).toHaveLength(7);
    const lost = await gw.call('GET', '/api/v1/parcels?status=lost');
    expect(lost.body).toEqual({ parcels: [], next: null });
  });

  it('filters by post (location or destination)', async () => {
    await seed();
    const kkr = await gw.call('GET', '/api/v1/parcels?post=KKR-KBG');
    expect(kkr.body.parcels.map((p: any) => p.id).sort()).toEqual([6, 7, 8].map((i) => `sscc:${ssccValue(i)}`).sort());
    const demo = await gw.call('GET', '/api/v1/parcels?post=DEMO');
    const demoIds = new Set(demo.body.parcels.map((p: any) => p.id));
    for (const i of [0, 1, 2, 3, 4, 5, 11]) expect(demoIds.has(`sscc:${ssccValue(i)}`)).toBe(true);
    const none = await gw.call('GET', '/api/v1/parcels?post=NOWHERE');
    expect(none.body.parcels).toEqual([]);
  });

  it('filters by text in id, item or org, with LIKE wildcards taken literally', async () => {
    await seed();
    const beras = await gw.call('GET', '/api/v1/parcels?q=BERAS');
    expect(beras.body.parcels.map((p: any) => p.id)).toEqual([`sscc:${ssccValue(11)}`]);
    const dinsos = await gw.call('GET', '/api/v1/parcels?q=Dinsos');
    expect(dinsos.body.parcels.map((p: any) => p.id)).toEqual([`sscc:${ssccValue(11)}`]);
    const byId = await gw.call('GET', `/api/v1/parcels?q=${ssccValue(3).slice(-6)}`);
    expect(byId.body.parcels.map((p: any) => p.id)).toEqual([`sscc:${ssccValue(3)}`]);
    const wildcard = await gw.call('GET', `/api/v1/parcels?q=${encodeURIComponent('%')}`);
    expect(wildcard.body.parcels).toEqual([]);
    const combined = await gw.call('GET', '/api/v1/parcels?q=AIR&status=in_transit');
    expect(combined.body.parcels).toHaveLength(3);
  });

  it('pages with limit and next, covering every parcel exactly once', async () => {
    await seed();
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const url: string = `/api/v1/parcels?limit=5${after ? `&after=${encodeURIComponent(after)}` : ''}`;
      const r = await gw.call('GET', url);
      expect(r.status).toBe(200);
      expect(r.body.parcels.length).toBeLessThanOrEqual(5);
      seen.push(...r.body.parcels.map((p: any) => p.id));
      after = r.body.next;
      pages++;
      expect(pages).toBeLessThan(10);
    } while (after);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(12);
    expect(new Set(seen).size).toBe(12);
    const all = (db(gw).prepare('SELECT id FROM parcels ORDER BY last_hlc DESC, id DESC').all() as { id: string }[]).map((r) => r.id);
    expect(seen).toEqual(all);
  });

  it('pages a filtered list too', async () => {
    await seed();
    const a = await gw.call('GET', '/api/v1/parcels?status=in_transit&limit=2');
    expect(a.body.parcels).toHaveLength(2);
    expect(a.body.next).toEqual(expect.any(String));
    const b = await gw.call('GET', `/api/v1/parcels?status=in_transit&limit=2&after=${encodeURIComponent(a.body.next)}`);
    expect(b.body.parcels).toHaveLength(1);
    expect(b.body.next).toBeNull();
    const ids = [...a.body.parcels, ...b.body.parcels].map((p: any) => p.id).sort();
    expect(ids).toEqual([6, 7, 8].map((i) => `sscc:${ssccValue(i)}`).sort());
  });
});

// ---------------------------------------------------------------------------------------------
// GET /api/v1/events
// ---------------------------------------------------------------------------------------------

describe('GET /api/v1/events', () => {
  it('pages through 250 events with limit 100: each exactly once, in order; later events follow the last cursor', async () => {
    const scans = Array.from({ length: 250 }, (_, i) => ({ id: `e-${i}`, code: `PSK1:DEMO:E${i}`, action: 'receive', qty: 1 }));
    const w = await gw.call('POST', '/api/v1/scans', { body: { scans } });
    expect(w.body.created).toBe(250);
    const expected = w.body.results.map((r: any) => r.event.id);

    const seen: string[] = [];
    const sizes: number[] = [];
    let after = '0';
    let lastCursor = '0';
    for (;;) {
      const r = await gw.call('GET', `/api/v1/events?after=${after}&limit=100`);
      expect(r.status).toBe(200);
      if (r.body.events.length === 0) { expect(r.body.next).toBeNull(); break; }
      sizes.push(r.body.events.length);
      seen.push(...r.body.events.map((e: any) => e.id));
      const cursors = r.body.events.map((e: any) => Number(e.cursor));
      for (let i = 1; i < cursors.length; i++) expect(cursors[i]).toBeGreaterThan(cursors[i - 1]);
      expect(r.body.next).toBe(r.body.events[r.body.events.length - 1].cursor);
      // the same cursor gives the same page again
      const again = await gw.call('GET', `/api/v1/events?after=${after}&limit=100`);
      expect(again.body).toEqual(r.body);
      lastCursor = r.body.next;
      after = r.body.next;
      expect(sizes.length).toBeLessThan(10);
    }
    expect(sizes).toEqual([100, 100, 50]);
    expect(seen).toEqual(expected);

    const later = await gw.call('POST', '/api/v1/scans', { body: { scans: [
      { code: 'PSK1:DEMO:LATE1', action: 'receive' }, { code: 'PSK1:DEMO:LATE2', action: 'receive' }, { code: 'PSK1:DEMO:E0', action: 'dispatch', to: 'KKR-KBG' },
    ] } });
    const r = await gw.call('GET', `/api/v1/events?after=${lastCursor}&limit=100`);
    expect(r.body.events.map((e: any) => e.id)).toEqual(later.body.results.map((x: any) => x.event.id));
    expect(r.body.events.map((e: any) => e.kind)).toEqual(['receive', 'receive', 'dispatch']);
  });

  it('defaults to after=0 and limit=100', async () => {
    const scans = Array.from({ length: 120 }, (_, i) => ({ code: `PSK1:DEMO:D${i}`, action: 'receive' }));
    await gw.call('POST', '/api/v1/scans', { body: { scans } });
    const r = await gw.call('GET', '/api/v1/events');
    expect(r.status).toBe(200);
    expect(r.body.events).toHaveLength(100);
    expect(r.body.events[0].code).toBe('PSK1:DEMO:D0');
    const empty = await gw.call('GET', '/api/v1/events?after=999999');
    expect(empty.body).toEqual({ events: [], next: null });
  });
});

// ---------------------------------------------------------------------------------------------
// POST /api/v1/barcodes/parse
// ---------------------------------------------------------------------------------------------

describe('POST /api/v1/barcodes/parse', () => {
  const parse = (code: string) => gw.call('POST', '/api/v1/barcodes/parse', { body: { code } });

  it('recognises GS1, EAN, label and opaque codes', async () => {
    const g = await parse(CODES.gtinExpiryBatch);
    expect(g.status).toBe(200);
    expect(g.body).toMatchObject({ kind: 'gs1', symbology: ']C1', gtin: '09506000134352', batch: 'ABC123', ais: { '01': '09506000134352', '17': '251231', '10': 'ABC123' } });
    expect(g.body.expiry).toMatch(/^\d{4}-12-31$/);
    const s = await parse(CODES.sscc);
    expect(s.body).toMatchObject({ kind: 'gs1', sscc: '106141412345678908' });
    const e = await parse(CODES.ean13);
    expect(e.body).toMatchObject({ kind: 'ean', gtin: '04006381333931', ais: { '01': '04006381333931' } });
    const l = await parse('PSK1:kkr-kbg:a-17');
    expect(l.body).toMatchObject({ kind: 'label', label: { post: 'KKR-KBG', serial: 'A-17' } });
    const o = await parse('hello world 123');
    expect(o.body).toEqual({ kind: 'opaque', raw: 'hello world 123', ais: {}, warnings: [] });
  });

  // The century of a YYMMDD date follows the gateway's clock year (GS1 window year-49..year+50).
  it('resolves two-digit years around the current year after the gateway has recorded a scan', async () => {
    await scan(gw, { code: CODES.sscc, action: 'receive', qty: 1 });
    const g = await parse(CODES.gtinExpiryBatch);
    expect(g.body.expiry).toBe('2025-12-31');
  });

  // src bug: on a gateway that has recorded nothing yet, the clock's wall is 0 (1970), so
  // `referenceYear` (src/gateway.ts:82) is 1970 and src/http/api.ts:82 passes it unguarded
  // (ingest guards with `> 2000`): '251231' comes back as 1925-12-31.
  it('resolves two-digit years around the current year on a fresh gateway too', async () => {
    const g = await parse(CODES.gtinExpiryBatch);
    expect(g.status).toBe(200);
    expect(g.body.expiry).toBe('2025-12-31');
  });

  it('invalid check digit → 422 GS1_CHECK_DIGIT', async () => {
    const r = await parse('(00)106141412345678909');
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe('GS1_CHECK_DIGIT');
    expect(r.body.error.details).toMatchObject({ ai: '00', value: '106141412345678909' });
  });

  it('invalid date → 422 GS1_INVALID_DATE', async () => {
    const r = await parse('(01)09506000134352(17)250230');
    expect(r.status).toBe(422);
    expect(r.body.error.code).toBe('GS1_INVALID_DATE');
    expect(r.body.error.details).toMatchObject({ ai: '17', value: '250230' });
  });

  it('(37) alone → 200 with a GS1_REQUISITE warning', async () => {
    const r = await parse('(37)10');
    expect(r.status).toBe(200);
    expect(r.body.kind).toBe('gs1');
    expect(r.body.count).toBe(10);
    expect(r.body.warnings.map((w: any) => w.code)).toContain('GS1_REQUISITE');
  });

  it('writes nothing', async () => {
    await parse(CODES.sscc);
    expect(count(gw, 'events')).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Health, metrics, OpenAPI
// ---------------------------------------------------------------------------------------------

describe('open endpoints and the API description', () => {
  it('GET /healthz needs no token', async () => {
    const r = await gw.call('GET', '/healthz', { token: null });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'ok', post: 'DEMO', role: 'post', version: '0.1.0' });
    expect(typeof r.body.uptimeS).toBe('number');
    expect(r.body.pendingFold).toBe(0);
  });

  it('GET /metrics needs no token and counts scans', async () => {
    await scan(gw, { code: CODES.sscc, action: 'receive', qty: 1 });
    await scan(gw, { code: '(00)106141412345678909', action: 'receive' });
    const r = await gw.call('GET', '/metrics', { token: null });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('text/plain');
    expect(typeof r.body).toBe('string');
    expect(r.body).toContain('posko_scans_total');
    expect(r.body).toMatch(/posko_scans_total\{result="created"\} 1\b/);
    expect(r.body).toMatch(/posko_scans_total\{result="rejected"\} 1\b/);
    expect(r.body).toMatch(/posko_events 1\b/);
  });

  it('GET /api/v1/openapi.json with a token describes the API', async () => {
    const r = await gw.call('GET', '/api/v1/openapi.json');
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe('3.1.0');
    expect(r.body.paths).toHaveProperty('/scans');
    const anon = await gw.call('GET', '/api/v1/openapi.json', { token: null });
    expect(anon.status).toBe(401);
    expect(anon.body.error.code).toBe('UNAUTHENTICATED');
    expect(anon.headers.get('www-authenticate')).toBe('Bearer realm="posko"');
  });
});

// ---------------------------------------------------------------------------------------------
// Device tokens
// ---------------------------------------------------------------------------------------------

describe('device tokens', () => {
  it('a device token can post scans; the event carries its device id', async () => {
    const { device, token } = gw.gw.store.devices.add('scanner 1');
    expect(token).not.toBe(ADMIN_TOKEN);
    const r = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 5 }, token);
    expect(r.status).toBe(201);
    expect(r.body.event.device).toBe(device.id);
    expect(device.id).toBe('scanner-1');
    expect(r.body.event.key).toMatch(/^DEMO\/scanner-1\/[0-9a-f-]{36}$/);
    const own = await scan(gw, { code: CODES.ean13, action: 'receive', qty: 1, device: device.id }, token);
    expect(own.status).toBe(201);
    expect(own.body.event.device).toBe(device.id);
    // a device token can read too
    const list = await gw.call('GET', '/api/v1/parcels', { token });
    expect(list.status).toBe(200);
    expect(list.body.parcels).toHaveLength(2);
  });

  it('the same client id from two devices makes two events (keys are per device)', async () => {
    const a = gw.gw.store.devices.add('a');
    const b = gw.gw.store.devices.add('b');
    const body = { id: 'same', code: CODES.sscc, action: 'checkpoint' };
    expect((await scan(gw, body, a.token)).status).toBe(201);
    expect((await scan(gw, body, b.token)).status).toBe(201);
    expect((await scan(gw, body, a.token)).status).toBe(200);
    expect(count(gw, 'events')).toBe(2);
  });

  it('a device token sending another device id → 403 FORBIDDEN, nothing written', async () => {
    const { token } = gw.gw.store.devices.add('scanner 2');
    const r = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 5, device: 'other' }, token);
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('FORBIDDEN');
    const batch = await gw.call('POST', '/api/v1/scans', { token, body: { scans: [{ code: CODES.ean13, action: 'receive' }, { code: CODES.sscc, action: 'receive', device: 'other' }] } });
    expect(batch.status).toBe(403);
    expect(count(gw, 'events')).toBe(0);
  });

  it('the admin may send scans on behalf of a device', async () => {
    const r = await scan(gw, { code: CODES.sscc, action: 'receive', qty: 5, device: 'hh-07' });
    expect(r.status).toBe(201);
    expect(r.body.event.device).toBe('hh-07');
  });

  it('a revoked token → 401', async () => {
    const { device, token } = gw.gw.store.devices.add('scanner 3');
    expect((await scan(gw, { code: CODES.sscc, action: 'receive', qty: 5 }, token)).status).toBe(201);
    gw.gw.store.devices.revoke(device.id);
    const r = await scan(gw, { code: CODES.ean13, action: 'receive', qty: 5 }, token);
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe('UNAUTHENTICATED');
    expect((await gw.call('GET', '/api/v1/parcels', { token })).status).toBe(401);
    expect(count(gw, 'events')).toBe(1);
  });
});
