/**
 * systemd readiness and watchdog pings, observed through a stand-in `systemd-notify` on PATH that
 * records its arguments (the real one needs a running systemd).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { notifySystemd } from '../../src/systemd.ts';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

function recorder() {
  const dir = mkdtempSync(join(tmpdir(), 'posko-notify-'));
  dirs.push(dir);
  const log = join(dir, 'calls');
  writeFileSync(join(dir, 'systemd-notify'), `#!/bin/sh\necho "$*" >> "${log}"\n`, { mode: 0o755 });
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
  const calls = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
  return { env, calls };
}

const until = async (f: () => boolean) => { for (let i = 0; i < 100 && !f(); i++) await new Promise((r) => setTimeout(r, 30)); };

describe('systemd notify', () => {
  it('does nothing outside systemd', () => {
    const { env, calls } = recorder();
    delete env.NOTIFY_SOCKET;
    notifySystemd(env, createLogger('silent'))();
    expect(calls()).toEqual([]);
  });

  it('reports ready, pings the watchdog at half its period, and says when it stops', async () => {
    const { env, calls } = recorder();
    env.NOTIFY_SOCKET = '/run/systemd/notify';
    env.WATCHDOG_USEC = '2000000'; // 2 s → a ping every second
    const stop = notifySystemd(env, createLogger('silent'));
    await until(() => calls().some((c) => c.includes('WATCHDOG=1')));
    stop();
    await until(() => calls().includes('--stopping'));
    const c = calls();
    expect(c[0]).toBe(`--ready --pid=${process.pid}`);
    expect(c).toContain(`--pid=${process.pid} WATCHDOG=1`);
    expect(c.at(-1)).toBe('--stopping');
  });
});
