/**
 * Start-up benchmark: a post with many events (default 200,000, DESIGN.md's target case) must start
 * in ≤ 3 s and stay under 250 MB RSS. Builds the data directory once through the real ingest and
 * fold code (in this process), then starts the real gateway as a child process several times and
 * measures the time from spawn to the first healthy /healthz, and its RSS after start and after a
 * round of typical queries. Writes bench/results/startup.json.
 *
 *   npx tsx bench/startup.ts [--events 200000] [--runs 3]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { Gateway } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import type { ScanInput } from '../src/domain/events.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { events: { type: 'string', default: '200000' }, runs: { type: 'string', default: '3' } } });
const EVENTS = Number(values.events);
const RUNS = Number(values.runs);
const TOKEN = 'bench-admin-token-0123456789';
const ITEMS = ['BERAS', 'MIE', 'AIRGELAS', 'HYGKIT', 'FAMKIT', 'TENDAGULUNG'];
const ORGS = ['BPBD', 'Dinsos', 'PMI', 'TNI', 'NGO-A'];

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

async function build(dir: string): Promise<{ seconds: number }> {
  const t0 = performance.now();
  // A clock that advances 2 s per scan: 200,000 scans span about 4.6 days, so several ledger days.
  let t = Date.UTC(2026, 10, 20);
  const gw = new Gateway(loadConfig({}, { dataDir: dir, adminToken: TOKEN, logLevel: 'silent', mqttPort: '0' }), { log: createLogger('silent'), now: () => (t += 2000) });
  const actions: ScanInput['action'][] = ['receive', 'receive', 'dispatch', 'distribute', 'checkpoint'];
  for (let done = 0; done < EVENTS; done += 1000) {
    const scans: ScanInput[] = [];
    for (let i = done; i < Math.min(EVENTS, done + 1000); i++) {
      const action = actions[i % actions.length]!;
      scans.push({ code: `PSK1:DEMO:P${Math.floor(i / 4)}`, action, id: `s${i}`, qty: 1 + (i % 20), item: ITEMS[i % ITEMS.length], org: ORGS[i % ORGS.length], ...(action === 'dispatch' ? { to: 'KKR-MKM' } : {}) });
    }
    gw.ingest.ingest(scans, { device: null });
    if (done % 20000 === 0) { gw.folder.foldAll(); process.stdout.write(`\rbuilding: ${done}/${EVENTS}`); }
  }
  gw.folder.foldAll();
  await gw.stop();
  process.stdout.write(`\rbuilt ${EVENTS} events                \n`);
  return { seconds: (performance.now() - t0) / 1000 };
}

async function startOnce(dir: string): Promise<{ startS: number; rssAfterStartMb: number; rssAfterQueriesMb: number; queryMs: Record<string, number> }> {
  const t0 = performance.now();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'start', '--data-dir', dir, '--http-port', '0', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--mqtt-host', '127.0.0.1', '--admin-token', TOKEN, '--log-level', 'warn'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise<string>((res, rej) => {
    proc.stdout!.on('data', (d: Buffer) => { out += d; const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out); if (m) res(m[1]!); });
    proc.once('exit', (c) => rej(new Error(`exited ${c}: ${out}`)));
  });
  while (!(await fetch(`${url}/healthz`).then((r) => r.ok, () => false))) await new Promise((r) => setTimeout(r, 10));
  const startS = (performance.now() - t0) / 1000;
  const rssAfterStartMb = rssMb(proc.pid!);
  const queryMs: Record<string, number> = {};
  for (const path of ['/api/v1/stock', '/api/v1/parcels?limit=50', '/api/v1/parcels?status=in_transit&limit=50', '/api/v1/events?limit=500', '/api/v1/parcels/label:DEMO:P777']) {
    const q0 = performance.now();
    const r = await fetch(url + path, { headers: { authorization: `Bearer ${TOKEN}` } });
    await r.arrayBuffer();
    queryMs[path] = Math.round((performance.now() - q0) * 10) / 10;
  }
  const rssAfterQueriesMb = rssMb(proc.pid!);
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
  return { startS, rssAfterStartMb, rssAfterQueriesMb, queryMs };
}

const dir = mkdtempSync(join(tmpdir(), 'posko-startup-'));
try {
  const built = await build(dir);
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await startOnce(dir));
  const worst = { startS: Math.max(...runs.map((r) => r.startS)), rssMb: Math.max(...runs.map((r) => Math.max(r.rssAfterStartMb, r.rssAfterQueriesMb))) };
  console.log(`\nstart-up with ${EVENTS} events (${RUNS} runs)`);
  console.log('run  start s  RSS after start MB  RSS after queries MB  slowest query ms');
  runs.forEach((r, i) => console.log(`${String(i + 1).padEnd(4)} ${r.startS.toFixed(2).padStart(7)}  ${String(r.rssAfterStartMb).padStart(18)}  ${String(r.rssAfterQueriesMb).padStart(20)}  ${Math.max(...Object.values(r.queryMs)).toFixed(1).padStart(16)}`));
  console.log(`targets: start ≤ 3 s: ${worst.startS.toFixed(2)} s ${worst.startS <= 3 ? 'PASS' : 'FAIL'}; RSS ≤ 250 MB: ${worst.rssMb} MB ${worst.rssMb <= 250 ? 'PASS' : 'FAIL'}`);
  console.log('query times (last run):', runs[runs.length - 1]!.queryMs);
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/startup.json'), JSON.stringify({ events: EVENTS, buildSeconds: built.seconds, runs, worst, date: new Date().toISOString() }, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
