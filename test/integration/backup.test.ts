/**
 * Backups to a USB stick while the gateway runs, and restore onto a new SD card: consistent,
 * checked, refused while a gateway runs on the target, and a damaged backup is refused.
 */
import { readdirSync, rmSync, truncateSync, copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, tempDir } from '../helpers/gateway.ts';
import { runCli, startChild, stopChild } from '../helpers/child.ts';

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const fresh = () => { const d = tempDir('posko-backup-'); dirs.push(d); return d; };

async function scan(url: string, n: number) {
  const res = await fetch(`${url}/api/v1/scans`, {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ scans: Array.from({ length: 50 }, (_, i) => ({ code: `PSK1:DEMO:B${n}-${i}`, action: 'receive', qty: 2, item: 'MIE', id: `b${n}-${i}` })) }),
  });
  expect(res.status).toBe(200);
}

describe('posko backup / restore', () => {
  it('backs up a running gateway consistently and restores it onto a fresh data directory', async () => {
    const data = fresh();
    const usb = fresh();
    const gw = await startChild(['--data-dir', data, '--admin-token', ADMIN_TOKEN]);
    let keepScanning = true;
    let batches = 0;
    const load = (async () => { while (keepScanning) await scan(gw.url, batches++); })();
    try {
      await new Promise((r) => setTimeout(r, 300));
      const b = runCli(['backup', usb, '--json', '--data-dir', data]);
      expect(b.status).toBe(0);
      const { file, bytes } = JSON.parse(b.stdout);
      expect(bytes).toBeGreaterThan(0);
      expect(readdirSync(usb)).toEqual([file.split('/').pop()]);
      // Restoring over the running gateway is refused.
      const refused = runCli(['restore', usb, '--data-dir', data]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/CONFLICT: a gateway \(pid \d+\) is running/);
    } finally {
      keepScanning = false;
      await load;
      await stopChild(gw);
    }
    const sd = fresh();
    const r = runCli(['restore', usb, '--json', '--data-dir', sd]);
    expect(r.status).toBe(0);
    const restored = JSON.parse(r.stdout);
    expect(restored.events % 50).toBe(0); // a batch is in a backup whole or not at all
    expect(restored.events).toBeGreaterThan(0);
    const again = await startChild(['--data-dir', sd, '--admin-token', ADMIN_TOKEN]);
    try {
      const ev = await (await fetch(`${again.url}/api/v1/events?limit=1000`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json() as any;
      const total = (await (await fetch(`${again.url}/api/v1/parcels?limit=1`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json() as any).parcels.length;
      expect(ev.events.length).toBe(Math.min(1000, restored.events));
      expect(total).toBe(1);
    } finally {
      await stopChild(again);
    }
  }, 90_000);

  it('refuses a damaged backup and keeps the data directory as it was', () => {
    const data = fresh();
    const usb = fresh();
    expect(runCli(['devices', 'add', 'x', '--data-dir', data]).status).toBe(0); // creates a database
    expect(runCli(['backup', usb, '--data-dir', data]).status).toBe(0);
    const file = join(usb, readdirSync(usb)[0]!);
    const damaged = join(fresh(), 'posko-DEMO-20261129T000000Z.db');
    copyFileSync(file, damaged);
    truncateSync(damaged, Math.floor(statSync(damaged).size / 2));
    const target = fresh();
    const r = runCli(['restore', damaged, '--data-dir', target]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/VALIDATION/);
    expect(readdirSync(target)).toEqual([]);
  });
});
