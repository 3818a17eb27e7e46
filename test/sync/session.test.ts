import { afterEach, describe, expect, it } from 'vitest';
import { openTestGateway, CODES, type TestGateway } from '../helpers/gateway.ts';
import { direct, introduce } from '../helpers/sync.ts';
import { syncWith } from '../../src/sync/session.ts';

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
});
