/**
 * Group commit: concurrent single-scan requests share transactions, and each still gets its own
 * correct answer only after the commit.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openTestGateway, type TestGateway } from '../helpers/gateway.ts';

let g: TestGateway;
afterEach(async () => { await g.close(); });

describe('group commit', () => {
  it('commits a burst of concurrent single scans in few transactions, each answered correctly', async () => {
    g = openTestGateway();
    const spy = vi.spyOn(g.gw.ingest, 'ingestGroups');
    const device = g.gw.store.devices.add('hp-relawan');
    const calls = Array.from({ length: 60 }, (_, i) => g.call('POST', '/api/v1/scans', {
      body: { code: `PSK1:DEMO:G${i}`, action: 'receive', qty: i + 1, id: `g${i % 50}` },
      ...(i % 2 ? { token: device.token } : {}),
    }));
    const res = await Promise.all(calls);
    // ids g0..g9 come twice (i and i+50), from the same sender, with different content.
    res.forEach((r, i) => {
      const sameSenderRetry = i >= 50;
      if (sameSenderRetry) expect(r.status).toBe(409); // same id, same sender, different content
      else expect(r.status).toBe(201);
      if (r.status === 201) expect(r.body.parcel).toMatchObject({ id: `label:DEMO:G${i}`, qty: i + 1 });
    });
    expect(spy.mock.calls.length).toBeLessThan(10);
    expect(g.gw.store.db.prepare('SELECT count(*) FROM events').pluck().get()).toBe(res.filter((r) => r.status === 201).length);
  });
});
