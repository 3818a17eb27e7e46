/**
 * What the benchmarks share: GS1 check digits for realistic codes, the gateway as a child process
 * (start, health, stop), a small HTTP client with /metrics parsing, the fold-backlog wait,
 * percentiles, machine load and report formatting. Importing it runs nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/** The project root (the gateway runs from here). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const REQUEST_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 30_000;
const FOLD_DRAIN_TIMEOUT_MS = 60_000;

/** GS1 mod-10 check digit of `body` (digits without the check digit): weights 3,1,3,1… from the right. */
export function gs1CheckDigit(body: string): number {
  if (!/^[0-9]+$/.test(body)) throw new RangeError(`not a digit string: ${body}`);
  let sum = 0;
  for (let i = body.length - 1, w = 3; i >= 0; i--, w = 4 - w) sum += (body.charCodeAt(i) - 48) * w;
  return (10 - (sum % 10)) % 10;
}
// Self-check against published GS1 examples before measuring anything.
if (gs1CheckDigit('00614141123456789') !== 0 || gs1CheckDigit('400638133393') !== 1) {
  throw new Error('gs1CheckDigit self-check failed');
}

/** GS1 Indonesia (899) and a 7-digit company prefix, for generated SSCCs and GTINs. */
export const COMPANY_PREFIX = '8990001';
export const ITEMS = ['BERAS', 'MIE', 'AIRGELAS', 'HYGKIT', 'FAMKIT'] as const;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** An HTTP reply. */
export interface Reply { status: number; text: string }

/** A small HTTP client for one gateway. */
export class Client {
  constructor(readonly port: number, readonly token: string) {}

  agent(maxSockets: number): http.Agent {
    return new http.Agent({ keepAlive: true, maxSockets });
  }

  request(agent: http.Agent | false, method: string, path: string, body?: Buffer, auth = true): Promise<Reply> {
    return new Promise((resolvePromise, reject) => {
      const headers: Record<string, string | number> = {};
      if (auth) headers['authorization'] = `Bearer ${this.token}`;
      if (body) { headers['content-type'] = 'application/json'; headers['content-length'] = body.length; }
      const req = http.request({ host: '127.0.0.1', port: this.port, method, path, agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`timeout after ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  async getJson<T>(path: string, auth = true): Promise<T> {
    const r = await this.request(false, 'GET', path, undefined, auth);
    if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    return JSON.parse(r.text) as T;
  }

  /** The gateway's /metrics as `name{labels}` → value. */
  async metrics(): Promise<Map<string, number>> {
    const r = await this.request(false, 'GET', '/metrics', undefined, false);
    if (r.status !== 200) throw new Error(`GET /metrics: HTTP ${r.status}`);
    const m = new Map<string, number>();
    for (const line of r.text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const sp = line.lastIndexOf(' ');
      m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
    return m;
  }
}

/** Errors seen, with the first few messages kept for the report. */
export class Errors {
  count = 0;
  readonly samples: string[] = [];
  add(msg: string): void {
    this.count++;
    if (this.samples.length < 5) this.samples.push(msg);
  }
}

/** The environment for child processes: POSKO_* from the caller's shell dropped (the flags are the whole config). */
export const childEnv = () => ({ ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('POSKO_'))), NODE_ENV: 'production' });

/** A gateway child process. `mqttPort` is set when its embedded broker runs. */
export interface Gateway { child: ChildProcess; port: number; mqttPort: number | undefined; dataDir: string; token: string; stderr: () => string }

/**
 * Starts `posko start` on `dataDir` with HTTP (and the embedded MQTT broker) on free ports and
 * resolves once it prints its "listening on" line. `cpuProf` writes CPU profiles to bench/results.
 */
export async function startGateway(dataDir: string, token: string, opts: { cpuProf?: boolean; requireMqtt?: boolean; onChild?: (c: ChildProcess) => void } = {}): Promise<Gateway> {
  if (opts.cpuProf) mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  const prof = opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(ROOT, 'bench', 'results')] : [];
  const child = spawn(
    process.execPath,
    [...prof, '--import', 'tsx', 'src/main.ts', 'start', '--data-dir', dataDir, '--http-port', '0', '--http-host', '127.0.0.1',
      '--mqtt-port', '0', '--mqtt-host', '127.0.0.1', '--admin-token', token, '--log-level', 'warn'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() },
  );
  opts.onChild?.(child);
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; if (err.length > 100_000) err = err.slice(-50_000); });
  const ports = await new Promise<{ port: number; mqttPort: number | undefined }>((resolvePorts, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" line within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      if (out.length < 100_000) out += s;
      const m = /listening on http:\/\/[^\s:]+:(\d+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      // The banner is one write with the MQTT line before the URL line.
      const q = /MQTT broker for devices on port (\d+)/.exec(out);
      if (!q && opts.requireMqtt) reject(new Error('the gateway did not start its embedded MQTT broker'));
      else resolvePorts({ port: Number(m[1]), mqttPort: q ? Number(q[1]) : undefined });
    });
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`gateway exited during start-up (code ${code}, signal ${sig})`)); });
  }).catch((e: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}\n--- gateway stdout ---\n${out}\n--- gateway stderr ---\n${err}`);
  });
  return { child, ...ports, dataDir, token, stderr: () => err };
}

/** Polls /healthz until it says ok. */
export async function waitHealthy(client: Client, timeoutMs: number): Promise<Record<string, unknown>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const h = await client.getJson<Record<string, unknown>>('/healthz', false);
      if (h['status'] === 'ok') return h;
      last = h;
    } catch (e) { last = e; }
    await sleep(100);
  }
  throw new Error(`GET /healthz not ok within ${timeoutMs} ms: ${String(last)}`);
}

/** SIGTERM, wait for exit (the gateway folds what is pending first); SIGKILL after 20 s. */
export async function stopGateway(gw: Gateway): Promise<{ exitCode: number | null; signal: string | null; ms: number }> {
  const t0 = performance.now();
  const { child } = gw;
  if (child.exitCode !== null || child.signalCode !== null) return { exitCode: child.exitCode, signal: child.signalCode, ms: 0 };
  const exited = new Promise<{ exitCode: number | null; signal: string | null }>((r) => child.once('exit', (exitCode, signal) => r({ exitCode, signal })));
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const res = await exited;
  clearTimeout(killer);
  return { ...res, ms: performance.now() - t0 };
}

/** Set when a fold never caught up: later waits are skipped (the phases still run and count). */
export const foldTrouble: string[] = [];

/**
 * Waits until the gateway's background fold has nothing pending; returns the seconds waited. A
 * fold that does not catch up is a gateway problem worth a loud warning, but not a reason to stop
 * measuring ingest: after one timeout the bench stops waiting.
 */
export async function drainFold(client: Client): Promise<number> {
  if (foldTrouble.length > 0) return 0;
  const t0 = performance.now();
  for (;;) {
    const h = await client.getJson<{ pendingFold?: number }>('/healthz', false);
    if (!h.pendingFold) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > FOLD_DRAIN_TIMEOUT_MS) {
      const msg = `the gateway's fold still had ${h.pendingFold} events pending after ${FOLD_DRAIN_TIMEOUT_MS / 1000} s; no longer waiting for it`;
      foldTrouble.push(msg);
      process.stdout.write(`warning: ${msg}\n`);
      return (performance.now() - t0) / 1000;
    }
    await sleep(100);
  }
}

export interface Percentiles { p50: number; p90: number; p99: number; max: number; mean: number }

export function percentiles(samples: number[]): Percentiles {
  if (samples.length === 0) return { p50: NaN, p90: NaN, p99: NaN, max: NaN, mean: NaN };
  const s = Float64Array.from(samples).sort();
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s[s.length - 1]!, mean: samples.reduce((a, b) => a + b, 0) / samples.length };
}

/** Total and idle CPU time of all CPUs (ms), to see how busy the machine was. */
export function cpuTimes(): { idle: number; all: number } {
  return os.cpus().reduce((a, c) => { const t = c.times; return { idle: a.idle + t.idle, all: a.all + t.user + t.nice + t.sys + t.idle + t.irq }; }, { idle: 0, all: 0 });
}

/** Percent of all CPUs busy between two `cpuTimes()` samples. */
export const busyPercent = (a: { idle: number; all: number }, b: { idle: number; all: number }) => {
  const all = b.all - a.all;
  return all > 0 ? (100 * (all - (b.idle - a.idle))) / all : 0;
};

/** Percent of all CPUs busy during `ms` (this process is idle meanwhile). */
export async function otherCpuBusy(ms: number): Promise<number> {
  const a = cpuTimes();
  await sleep(ms);
  return busyPercent(a, cpuTimes());
}

/** Bytes under a directory. */
export function dirBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    const st = statSync(p);
    n += st.isDirectory() ? dirBytes(p) : st.size;
  }
  return n;
}

/** A number for a report cell ('-' when missing). */
export const fmt = (x: number | null | undefined, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));

/** Seeded PRNG (mulberry32): the same scans on every run (ingest and sync benches). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
