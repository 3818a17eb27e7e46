/**
 * The bridge command: configuration from flags and POSKO_BRIDGE_* variables with clear errors,
 * and the real command (`main.ts` run as a child process) bridging stdin to a real gateway:
 * scans recorded exactly once, SIGTERM stops it cleanly, end of input drains and exits, and
 * --dry-run prints what a scanner sends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedEnv, type MqttEnv } from '../../../test/helpers/mqtt.ts';
import { ConfigError, isoWithOffset, parseBridgeConfig, type BridgeConfig } from '../main.ts';

const MAIN = resolve(import.meta.dirname, '../main.ts');
const ROOT = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'posko-bridge-cli-'));

const base = ['--url', 'mqtt://127.0.0.1:1883', '--post', 'KKR-KBG', '--device', 'pi-gudang-1', '--token', 'tok-0123456789abcdef', '--buffer', '/var/lib/posko-bridge/pi-gudang-1.jsonl'];

function problems(argv: string[], env: Record<string, string> = {}): string[] {
  try {
    parseBridgeConfig(argv, env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('bridge configuration', () => {
  it('reads flags with defaults', () => {
    const c = parseBridgeConfig([...base, '--evdev', '/dev/input/by-id/usb-scanner-event-kbd', '--action', 'receive'], {}) as BridgeConfig;
    expect(c).toMatchObject({ url: 'mqtt://127.0.0.1:1883', post: 'KKR-KBG', device: 'pi-gudang-1', evdev: '/dev/input/by-id/usb-scanner-event-kbd', action: 'receive', baud: 9600, gapMs: 50, gsKey: 'F8', noCtrlChars: false, capacity: 100_000, sendTime: 'auto', stdin: false, dryRun: false });
  });

  it('reads POSKO_BRIDGE_* variables, flags win, and a token file', () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'tok-from-file-0123\n');
    const env = {
      POSKO_BRIDGE_URL: 'mqtts://gw.posko.lan:8883', POSKO_BRIDGE_POST: 'KKR-KBG', POSKO_BRIDGE_DEVICE: 'pi-env', POSKO_BRIDGE_TOKEN_FILE: tokenFile,
      POSKO_BRIDGE_BUFFER: '/tmp/b.jsonl', POSKO_BRIDGE_SERIAL: '/dev/ttyUSB0', POSKO_BRIDGE_BAUD: '115200', POSKO_BRIDGE_GAP_MS: '80', POSKO_BRIDGE_NO_CTRL_CHARS: 'true',
    };
    const c = parseBridgeConfig(['--device', 'pi-flag'], env) as BridgeConfig;
    expect(c).toMatchObject({ url: 'mqtts://gw.posko.lan:8883', device: 'pi-flag', token: 'tok-from-file-0123', serial: '/dev/ttyUSB0', baud: 115200, gapMs: 80, noCtrlChars: true });
  });

  it('names each problem by its flag', () => {
    expect(problems(['--evdev', '/dev/input/event0'])).toEqual(['--url: required', '--post: required', '--device: required', '--token: required', '--buffer: required']);
    expect(problems([...base])).toEqual(['--evdev: give exactly one scanner: --evdev, --serial or --stdin']);
    expect(problems([...base, '--evdev', '/dev/input/event0', '--serial', '/dev/ttyUSB0'])).toEqual(['--evdev: give exactly one scanner: --evdev, --serial or --stdin']);
    expect(problems([...base, '--stdin', '--url', 'http://gw:8080'])).toEqual(['--url: must look like mqtt://host:1883 or mqtts://host:8883']);
    expect(problems([...base, '--stdin', '--device', 'has space'])[0]).toMatch(/^--device: device id/);
    expect(problems([...base, '--stdin', '--action', 'steal'])[0]).toMatch(/^--action: /);
    expect(problems([...base, '--stdin', '--action', 'dispatch'])).toEqual(['--to: a dispatch needs a destination (--to)']);
    expect(problems([...base, '--stdin', '--baud', 'fast'])).toEqual(['--baud: must be a number']);
    expect(problems([...base, '--stdin', '--gs-key', 'F99'])).toEqual(['--gs-key: a function key F1…F24, or none']);
    expect(problems([...base, '--stdin', '--event-size', '32'])[0]).toMatch(/^--event-size: /);
    expect(problems([...base, '--stdin', '--qty=-3'])[0]).toMatch(/^--qty: /);
    expect(problems([...base, '--stdin', '--bogus'])[0]).toMatch(/Unknown option '--bogus'/);
    expect(problems([...base, '--stdin', '--token-file', join(dir, 'missing')].filter((a, i, all) => a !== '--token' && all[i - 1] !== '--token'))[0]).toMatch(/^--token-file: cannot read/);
    expect(parseBridgeConfig(['--help'], {})).toBe('help');
  });

  it('needs no gateway settings for a dry run', () => {
    expect(parseBridgeConfig(['--dry-run', '--stdin'], {})).toMatchObject({ dryRun: true, stdin: true });
  });

  it('formats device time with its UTC offset, as the scan schema wants', () => {
    expect(isoWithOffset(new Date('2026-11-29T00:15:00.250Z'))).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$/);
    expect(new Date(isoWithOffset(new Date('2026-11-29T00:15:00.250Z'))).toISOString()).toBe('2026-11-29T00:15:00.250Z');
  });
});

/** Runs the bridge command as the user would. */
function runCommand(args: string[]): { proc: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TZ: 'Asia/Makassar' } });
  let out = '', err = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, err: () => err, exit };
}

async function until(pred: () => boolean | Promise<boolean>, ms = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('bridge command against a real gateway', () => {
  let env: MqttEnv;
  let dev: { id: string; token: string };
  beforeAll(async () => {
    env = await embeddedEnv();
    dev = await env.addDevice('pi-bridge-cli');
  });
  afterAll(async () => {
    await env?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const journal = () => join(dir, `${dev.id}.jsonl`);
  const args = () => ['--url', env.url, '--post', 'DEMO', '--device', dev.id, '--token', dev.token, '--buffer', journal(), '--stdin', '--action', 'receive', '--send-time', 'always'];
  const scanSeqs = () => readFileSync(journal(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.t === 'scan').map((r) => r.seq as number);
  async function gatewayKeys(): Promise<string[]> {
    const r = await env.g.call('GET', '/api/v1/events?limit=1000');
    return (r.body.events as { device: string; key: string }[]).filter((e) => e.device === dev.id).map((e) => e.key);
  }

  it('bridges scanner input to the gateway and stops cleanly on SIGTERM', async () => {
    const run = runCommand(args());
    run.proc.stdin!.write(']C10109506000134352\u001d10ABC\r\nPSK1:DEMO:CLI-1\r');
    run.proc.stdin!.write('\nPSK1:DEMO:CLI-2\r\n');
    await until(async () => (await gatewayKeys()).length === 3, 20_000, `3 events; log:\n${run.err()}`);
    const seqs = scanSeqs();
    expect(seqs).toHaveLength(3);
    expect(seqs[0]!).toBeGreaterThan(1); // a new journal starts at a random point, not at 1 (a re-flashed Pi must not reuse seqs)
    expect((await gatewayKeys()).sort()).toEqual(seqs.map((s) => `DEMO/${dev.id}/seq-${s}`).sort());
    const events = (await env.g.call('GET', '/api/v1/events?limit=1000')).body.events.filter((e: any) => e.device === dev.id);
    expect(events.find((e: any) => e.key.endsWith(`seq-${seqs[0]}`)).code).toBe(']C10109506000134352\u001d10ABC');
    expect(events.every((e: any) => e.kind === 'receive')).toBe(true);
    run.proc.kill('SIGTERM');
    expect(await run.exit).toBe(0);
    const log = run.err().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(log.filter((l) => l.msg === 'scan accepted')).toHaveLength(3);
    expect(log.find((l) => l.msg === 'scan buffered')?.code).toBe(']C10109506000134352\\x1d10ABC');
    expect(log.at(-1)).toMatchObject({ msg: 'bridge stopped', pending: 0 });
  });

  it('delivers everything and exits by itself when its input ends, continuing the seq', async () => {
    const before = scanSeqs();
    const run = runCommand(args());
    run.proc.stdin!.end('PSK1:DEMO:CLI-3\r\nPSK1:DEMO:CLI-4\n');
    expect(await run.exit).toBe(0);
    const seqs = scanSeqs();
    expect(seqs.slice(0, before.length)).toEqual(before);
    expect(seqs.slice(before.length)).toEqual([before.at(-1)! + 1, before.at(-1)! + 2]);
    const keys = await gatewayKeys();
    expect(keys.sort()).toEqual(seqs.map((s) => `DEMO/${dev.id}/seq-${s}`).sort());
  });

  it('prints scans in a dry run, connecting nowhere', async () => {
    const run = runCommand(['--dry-run', '--stdin', '--log-level', 'warn']);
    run.proc.stdin!.end(']C10109506000134352\u001d10ABC\r\n');
    expect(await run.exit).toBe(0);
    expect(JSON.parse(run.out().trim())).toEqual({ code: ']C10109506000134352\u001d10ABC', printable: ']C10109506000134352\\x1d10ABC', length: 25 });
  });

  it('exits 2 with the problems and the usage on a bad configuration', async () => {
    const run = runCommand(['--stdin', '--url', 'http://nope']);
    expect(await run.exit).toBe(2);
    expect(run.err()).toMatch(/invalid configuration:\n {2}--url: must look like mqtt:\/\//);
    expect(run.err()).toMatch(/--device: required/);
    expect(run.err()).toMatch(/^usage: /m);
  });
});
