/**
 * The `posko` command line against a real gateway process on the same data directory: device
 * management while it runs, the generated admin token, barcode parsing, config errors, rebuild.
 */
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/gateway.ts';
import { runCli, startChild, stopChild } from '../helpers/child.ts';

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const fresh = () => { const d = tempDir('posko-cli-'); dirs.push(d); return d; };

describe('posko CLI', () => {
  it('generates an admin token on first start, prints it once, and manages devices while the gateway runs', async () => {
    const dir = fresh();
    const gw = await startChild(['--data-dir', dir]);
    try {
      const token = readFileSync(`${dir}/admin-token`, 'utf8').trim();
      expect(token.length).toBeGreaterThanOrEqual(32);
      expect(gw.output()).toContain(token);
      const health = await fetch(`${gw.url}/healthz`);
      expect(health.status).toBe(200);
      expect((await fetch(`${gw.url}/api/v1/stock`)).status).toBe(401);
      expect((await fetch(`${gw.url}/api/v1/stock`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

      const add = runCli(['devices', 'add', 'Gudang pintu 1', '--json', '--data-dir', dir]);
      expect(add.status).toBe(0);
      const dev = JSON.parse(add.stdout);
      expect(dev).toMatchObject({ id: 'Gudang-pintu-1', name: 'Gudang pintu 1' });
      expect(dev.token.length).toBeGreaterThanOrEqual(32);
      const scan = () => fetch(`${gw.url}/api/v1/scans`, {
        method: 'POST', headers: { authorization: `Bearer ${dev.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ code: 'PSK1:DEMO:1', action: 'receive', id: 'x1' }),
      });
      const r = await scan();
      expect(r.status).toBe(201);
      expect(((await r.json()) as any).event.device).toBe('Gudang-pintu-1');

      const list = runCli(['devices', 'list', '--json', '--data-dir', dir]);
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ id: 'Gudang-pintu-1', revokedAt: null })]);
      expect(list.stdout).not.toContain(dev.token);

      expect(runCli(['devices', 'revoke', 'Gudang-pintu-1', '--data-dir', dir]).status).toBe(0);
      expect((await scan()).status).toBe(401);
      expect(runCli(['devices', 'revoke', 'nope', '--data-dir', dir]).status).toBe(1);

      const rebuilt = runCli(['rebuild', '--json', '--data-dir', dir]);
      expect(rebuilt.status).toBe(0);
      expect(JSON.parse(rebuilt.stdout)).toMatchObject({ events: 1, parcels: 1 });
      // The gateway keeps working after the CLI rebuilt its views.
      const after = await fetch(`${gw.url}/api/v1/parcels/${encodeURIComponent('label:DEMO:1')}`, { headers: { authorization: `Bearer ${token}` } });
      expect(after.status).toBe(200);
    } finally {
      const code = await stopChild(gw);
      expect({ code, signal: gw.proc.signalCode, out: code === 0 ? '' : gw.output() }).toEqual({ code: 0, signal: null, out: '' });
    }
    // Second start: the token is kept, not printed again.
    const again = await startChild(['--data-dir', dir]);
    const token = readFileSync(`${dir}/admin-token`, 'utf8').trim();
    expect(again.output()).not.toContain(token);
    await stopChild(again);
  }, 60_000);

  it('uses POSKO_ADMIN_TOKEN when set', async () => {
    const dir = fresh();
    const gw = await startChild(['--data-dir', dir], { POSKO_ADMIN_TOKEN: 'env-token-abcdefghijkl' });
    try {
      expect((await fetch(`${gw.url}/api/v1/stock`, { headers: { authorization: 'Bearer env-token-abcdefghijkl' } })).status).toBe(200);
    } finally { await stopChild(gw); }
  });

  it('parses barcodes: JSON out, exit 2 with the error code when invalid', () => {
    const ok = runCli(['barcode', 'parse', '(01)09506000134352(17)251231(10)ABC']);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ kind: 'gs1', ais: { '01': '09506000134352', '17': '251231', '10': 'ABC' }, expiry: '2025-12-31' });
    const bad = runCli(['barcode', 'parse', '(01)09506000134353']);
    expect(bad.status).toBe(2);
    expect(JSON.parse(bad.stdout).error.code).toBe('GS1_CHECK_DIGIT');
  });

  it('refuses a bad setting at start-up, naming it', () => {
    const r = runCli(['start', '--http-port', 'delapan', '--data-dir', fresh()]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/httpPort \(--http-port or POSKO_HTTP_PORT\)/);
    const e = runCli(['start', '--data-dir', fresh()], { POSKO_ROLE: 'boss' });
    expect(e.status).toBe(2);
    expect(e.stderr).toMatch(/role/);
  });

  it('prints help and refuses unknown commands', () => {
    expect(runCli(['--help']).stdout).toContain('posko devices add');
    expect(runCli(['fly']).status).toBe(2);
  });
});
