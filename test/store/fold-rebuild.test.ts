/**
 * Folding the journal into ledger documents, storage as snapshot plus chunks, and rebuilding the
 * views from the documents: the rebuilt views must equal the live ones.
 */
import * as A from '@automerge/automerge';
import { afterEach, describe, expect, it } from 'vitest';
import { commitFold, LedgerFolder } from '../../src/ingest/fold.ts';
import { asPostId } from '../../src/domain/ids.ts';
import { rebuildViews } from '../../src/store/rebuild.ts';
import { Store } from '../../src/store/store.ts';
import { ledgerEvents, type LedgerDoc } from '../../src/sync/ledger.ts';
import { CODES, openTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gws: TestGateway[] = [];
afterEach(async () => { for (const g of gws) await g.close(); gws = []; });

/** A gateway whose physical clock we drive, starting 2026-11-29 08:00 UTC. */
function gatewayAt(start = Date.UTC(2026, 10, 29, 8)) {
  let t = start;
  const g = openTestGateway({ now: () => t });
  gws.push(g);
  return { g, advance: (ms: number) => { t += ms; } };
}

function snapshot(store: Store) {
  const db = store.db;
  return {
    events: db.prepare('SELECT id, key, kind, post, device, operator, code, parsed, parcel, item, qty, unit, org, dest, batch, expiry, device_at, hlc, voids, reason FROM events ORDER BY id').all(),
    parcels: db.prepare('SELECT * FROM parcels ORDER BY id').all(),
    stock: db.prepare('SELECT * FROM stock ORDER BY post, item, org').all(),
  };
}

async function scan(g: TestGateway, body: object) {
  const r = await g.call('POST', '/api/v1/scans', { body });
  expect([200, 201]).toContain(r.status);
  return r.body;
}

describe('ledger folding', () => {
  it('folds every committed event exactly once, into per-day documents with hour buckets', async () => {
    const { g, advance } = gatewayAt();
    for (let i = 0; i < 30; i++) {
      await scan(g, { code: `PSK1:DEMO:P${i}`, action: 'receive', item: 'BERAS', qty: 10, id: `r${i}` });
      advance(40 * 60 * 1000); // 40 minutes: 30 scans span two UTC days
    }
    expect(g.gw.folder.pending()).toBe(30);
    expect(g.gw.folder.foldAll()).toBe(30);
    expect(g.gw.folder.pending()).toBe(0);
    expect(g.gw.folder.foldAll()).toBe(0);
    const docs = g.gw.store.docs.list('ledger/DEMO/');
    expect(docs.map((d) => d.id)).toEqual(['ledger/DEMO/2026-11-29/0000', 'ledger/DEMO/2026-11-30/0000']);
    expect(docs.reduce((n, d) => n + d.events, 0)).toBe(30);
    const doc = g.gw.store.docs.load<LedgerDoc>('ledger/DEMO/2026-11-29/0000')!;
    expect(Object.keys(doc.hours).sort()).toEqual(['08', '09', '10', '11', '12', '13', '14', '15', '16', '17', '18', '19', '20', '21', '22', '23']);
    const events = ledgerEvents(doc);
    expect(events.every((e) => e.post === 'DEMO' && e.item === 'BERAS' && e.qty === 10)).toBe(true);
    expect(doc.hours['08']![events.find((e) => e.key === 'DEMO/api/r0')!.id]!.code).toBeInstanceOf(A.ImmutableString);
  });

  it('appends chunks and compacts them into a snapshot when they outgrow it', async () => {
    const { g } = gatewayAt();
    const id = 'ledger/DEMO/2026-11-29/0000';
    const seen: { snapshotBytes: number; chunks: number }[] = [];
    for (let round = 0; round < 12; round++) {
      for (let i = 0; i < 5; i++) await scan(g, { code: `PSK1:DEMO:R${round}X${i}`, action: 'receive', id: `c${round}-${i}` });
      g.gw.folder.foldOnce();
      const info = g.gw.store.docs.list(id)[0]!;
      seen.push({ snapshotBytes: info.snapshotBytes, chunks: info.chunks });
      expect(info.chunkBytes).toBeLessThanOrEqual(info.snapshotBytes);
    }
    expect(seen.some((s) => s.chunks > 0)).toBe(true); // chunks were appended...
    expect(new Set(seen.map((s) => s.snapshotBytes)).size).toBeGreaterThan(1); // ...and compacted into new snapshots
    const doc = g.gw.store.docs.load<LedgerDoc>(id)!;
    expect(ledgerEvents(doc)).toHaveLength(60);
  });

  it('does not fold twice when another process folded in between (stale cache)', async () => {
    const { g } = gatewayAt();
    await scan(g, { code: 'PSK1:DEMO:A', action: 'receive', id: 'a' });
    g.gw.folder.foldOnce(); // the gateway now caches the open ledger
    await scan(g, { code: 'PSK1:DEMO:B', action: 'receive', id: 'b' });
    // A second folder (like the CLI's) on the same database folds B first.
    const other = new LedgerFolder(g.gw.store, asPostId('DEMO'), g.gw.store.actorId());
    expect(other.foldOnce()).toBe(1);
    other.forget();
    await scan(g, { code: 'PSK1:DEMO:C', action: 'receive', id: 'c' });
    expect(g.gw.folder.foldOnce()).toBe(1);
    const doc = g.gw.store.docs.load<LedgerDoc>('ledger/DEMO/2026-11-29/0000')!;
    expect(ledgerEvents(doc).map((e) => e.key).sort()).toEqual(['DEMO/api/a', 'DEMO/api/b', 'DEMO/api/c']);
  });
});

describe('rebuild', () => {
  it('rebuilds views from the documents equal to the live views', async () => {
    const { g, advance } = gatewayAt();
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await scan(g, { code: `PSK1:DEMO:P${i % 15}`, action: (['receive', 'dispatch', 'distribute', 'count'] as const)[i % 4], to: 'KKR-KBG', qty: 0.1 * (1 + (i % 7)), item: i % 2 ? 'BERAS' : 'MIE', org: i % 3 ? 'PMI' : 'BPBD', id: `e${i}` });
      ids.push(r.event.id);
      advance(7 * 60 * 1000);
    }
    for (let i = 0; i < 30; i++) await scan(g, { code: CODES.ean13, action: i % 3 ? 'receive' : 'distribute', qty: 0.1 * (i % 5 + 1), id: `bulk-${i}` });
    await scan(g, { code: CODES.ean13, action: 'receive', qty: 12, id: 'bulk1' });
    await scan(g, { code: CODES.ean13, action: 'distribute', qty: 5, id: 'bulk2' });
    await scan(g, { code: CODES.gtinExpiryBatch, action: 'receive', qty: 3, id: 'gtin1' });
    await scan(g, { action: 'void', voids: ids[3], reason: 'salah scan', id: 'v1' });
    const live = snapshot(g.gw.store);
    expect(live.stock.length).toBeGreaterThan(3);
    g.gw.folder.foldAll();
    const r = rebuildViews(g.gw.store);
    expect(r.events).toBe(74);
    expect(snapshot(g.gw.store)).toEqual(live);
    // The fold position now covers everything: nothing is folded again.
    expect(g.gw.folder.pending()).toBe(0);
    // And ingest goes on after a rebuild.
    await scan(g, { code: 'PSK1:DEMO:NEW', action: 'receive', id: 'after' });
    expect(g.gw.folder.foldAll()).toBe(1);
  });
});

describe('ledger segments', () => {
  it('fills bounded segments in order and never writes a full one again', async () => {
    const { g } = gatewayAt();
    const folder = new LedgerFolder(g.gw.store, asPostId('DEMO'), g.gw.store.actorId(), 10);
    for (let i = 0; i < 7; i++) await scan(g, { code: `PSK1:DEMO:S${i}`, action: 'receive', id: `s${i}` });
    expect(folder.foldOnce()).toBe(7);
    for (let i = 7; i < 25; i++) await scan(g, { code: `PSK1:DEMO:S${i}`, action: 'receive', id: `s${i}` });
    expect(folder.foldOnce()).toBe(18);
    const docs = g.gw.store.docs.list('ledger/DEMO/');
    expect(docs.map((d) => [d.id, d.events])).toEqual([
      ['ledger/DEMO/2026-11-29/0000', 10], ['ledger/DEMO/2026-11-29/0001', 10], ['ledger/DEMO/2026-11-29/0002', 5],
    ]);
    const all = docs.flatMap((d) => ledgerEvents(g.gw.store.docs.load<LedgerDoc>(d.id)!).map((e) => e.key));
    expect(all.sort()).toEqual(Array.from({ length: 25 }, (_, i) => `DEMO/api/s${i}`).sort());
    folder.forget();
  });

  it('refuses a stale plan when another folder committed first, and redoes it', async () => {
    const { g } = gatewayAt();
    await scan(g, { code: 'PSK1:DEMO:X', action: 'receive', id: 'x' });
    const a = new LedgerFolder(g.gw.store, asPostId('DEMO'), g.gw.store.actorId());
    const plan = a.prepare()!;
    expect(g.gw.folder.foldOnce()).toBe(1); // someone else folds first
    expect(commitFold(g.gw.store, plan)).toBe(false);
    a.settle(false);
    expect(a.foldOnce()).toBe(0);
    expect(g.gw.store.docs.list('ledger/')[0]!.events).toBe(1);
    a.forget();
  });
});
