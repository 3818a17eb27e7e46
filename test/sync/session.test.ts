import { afterEach, describe, expect, it } from 'vitest';
import { openTestGateway, CODES, type TestGateway } from '../helpers/gateway.ts';
import { direct, introduce } from '../helpers/sync.ts';
import { syncWith, type Transport } from '../../src/sync/session.ts';

const open: TestGateway[] = [];
afterEach(async () => { await Promise.all(open.splice(0).map((g) => g.close())); });

function gateway(post: string, role: 'post' | 'hq' = 'post'): TestGateway {
  const g = openTestGateway({ config: { postId: post, role } });
  open.push(g);
  return g;
}

describe('sync session', () => {
  it('brings a post\'s scans to HQ and back, and nothing changed costs one round trip', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    const r1 = await a.call('POST', '/api/v1/scans', { body: { code: CODES.sscc, action: 'receive', item: 'BERAS', qty: 10, unit: 'kg' } });
    expect(r1.status).toBe(201);
    a.gw.foldNow();
    const report = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    expect(report.complete).toBe(true);
    expect(report.refusedByPeer).toEqual([]);
    const parcels = await hq.call('GET', '/api/v1/parcels');
    expect(parcels.body.parcels).toHaveLength(1);
    const stock = await hq.call('GET', '/api/v1/stock');
    expect(stock.body.stock.some((s: { post: string }) => s.post === 'POST-A')).toBe(true);

    const again = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    expect(again.complete).toBe(true);
    expect(again.roundTrips).toBe(1);
    expect(again.bytesSent + again.bytesReceived).toBeLessThan(1024);
  });

  it('sends a big backlog in messages that fit the link, and a link that drops every few messages still gets it all', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    // 3,000 events in a few fold changes: one ledger segment of ~100 KB.
    for (let b = 0; b < 3; b++) {
      const scans = Array.from({ length: 1000 }, (_, i) => ({ code: `PSK1:POST-A:${b * 1000 + i}`, action: 'receive', item: 'BERAS', qty: 5, unit: 'kg', org: 'BPBD' }));
      expect((await a.call('POST', '/api/v1/scans', { body: { scans } })).body.created).toBe(1000);
      a.gw.foldNow();
    }
    const sizes: number[] = [];
    let calls = 0;
    const lossy: Transport = {
      label: 'lossy',
      async exchange(m) {
        sizes.push(m.length);
        // Every third message is lost on the way (the server never sees it).
        if (++calls % 3 === 0) throw new Error('link dropped');
        return direct(hq).exchange(m);
      },
    };
    const limits = { maxMessageBytes: 24 * 1024, maxRounds: 50 };
    let attempts = 0;
    for (;;) {
      attempts++;
      try {
        const r = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, lossy, limits);
        if (r.complete) break;
      } catch { /* the link dropped: try again, from what was acknowledged */ }
      expect(attempts).toBeLessThan(40);
    }
    expect(hq.gw.store.queries.count('events')).toBe(3000);
    // Every message fitted the link's size (chunk bytes, plus the envelope and its compression).
    expect(Math.max(...sizes)).toBeLessThan(24 * 1024 + 4096);
    expect(sizes.length).toBeGreaterThan(4);
  });

  it('replies to a client in messages no bigger than the client asks for', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    for (let b = 0; b < 3; b++) {
      const scans = Array.from({ length: 500 }, (_, i) => ({ code: `PSK1:HQ:${b * 500 + i}`, action: 'receive', item: 'AIR', qty: 1, unit: 'dus' }));
      expect((await hq.call('POST', '/api/v1/scans', { body: { scans } })).body.created).toBe(500);
    }
    hq.gw.foldNow();
    const answers: number[] = [];
    const t: Transport = { label: 't', async exchange(m) { const r = await direct(hq).exchange(m); answers.push(r.length); return r; } };
    const r = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, t, { maxMessageBytes: 20 * 1024, maxRounds: 50 });
    expect(r.complete).toBe(true);
    expect(a.gw.store.queries.count('events')).toBe(1500);
    expect(Math.max(...answers)).toBeLessThan(20 * 1024 + 4096);
  });

  it('keeps to a per-peer daily byte budget of wire bytes: what does not fit waits', async () => {
    const hq = gateway('HQ', 'hq');
    const a = gateway('POST-A');
    introduce(hq, a);
    for (let b = 0; b < 2; b++) {
      const scans = Array.from({ length: 1000 }, (_, i) => ({ code: `PSK1:POST-A:${b * 1000 + i}`, action: 'receive', item: 'BERAS', qty: 5, unit: 'kg' }));
      expect((await a.call('POST', '/api/v1/scans', { body: { scans } })).body.created).toBe(1000);
    }
    a.gw.foldNow();
    a.gw.sync.configure('HQ', { budgetBytes: 30 * 1024 });
    const limits = { maxMessageBytes: 16 * 1024, maxRounds: 50 };
    const first = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq), limits);
    expect(first.budgetExhausted).toBe(true);
    expect(first.complete).toBe(false);
    const got = hq.gw.store.queries.count('events');
    expect(got).toBeGreaterThan(0);
    expect(got).toBeLessThan(2000);
    expect(a.gw.sync.budgetLeft('HQ')).toBeLessThan(16 * 1024);
    // The budget is raised (or the next day comes): the rest follows, nothing twice.
    a.gw.sync.configure('HQ', { budgetBytes: null });
    const rest = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq), limits);
    expect(rest.complete).toBe(true);
    expect(hq.gw.store.queries.count('events')).toBe(2000);
  });
});
