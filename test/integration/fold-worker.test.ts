/**
 * Background folding runs in a worker thread on its own connection: scans committed by the main
 * thread reach the ledger documents without anyone calling fold, and a stop leaves nothing pending.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openTestGateway, type TestGateway } from '../helpers/gateway.ts';

let g: TestGateway;
afterEach(async () => { await g.close(); });

describe('fold worker', () => {
  it('folds in the background and stops cleanly', async () => {
    g = openTestGateway({ config: { foldIntervalMs: '100', logLevel: 'debug' } });
    await g.gw.start();
    for (let i = 0; i < 50; i++) {
      const r = await g.call('POST', '/api/v1/scans', { body: { code: `PSK1:DEMO:W${i}`, action: 'receive', id: `w${i}` } });
      expect(r.status).toBe(201);
    }
    const deadline = Date.now() + 15_000;
    while (g.gw.folder.pending() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(g.gw.folder.pending()).toBe(0);
    const docs = g.gw.store.docs.list('ledger/DEMO/');
    expect(docs.reduce((n, d) => n + d.events, 0)).toBe(50);
    const metrics = await g.call('GET', '/metrics');
    expect(metrics.body).toMatch(/posko_folded_events_total 50/);
  });
});
