/**
 * Ingest benchmark: how many scans per second the gateway commits, and how fast it answers at a
 * steady field rate.
 *
 * What it does
 *   - Starts a real gateway as a child process (`node --import tsx src/main.ts start`, the same as
 *     `npx tsx src/main.ts start` without the npx/tsx wrapper processes) on a fresh temp data dir,
 *     `--http-port 0` (the port is read from the "listening on http://...:PORT" line), a random
 *     admin token and `--log-level warn`; waits for GET /healthz. The load generator runs in this
 *     process, so every number includes real HTTP over loopback, JSON, auth, validation, the
 *     gateway's single JS thread and the SQLite commit (synchronous=FULL: a scan is answered only
 *     after it is durable). On a 2-core machine both processes share the same two cores.
 *   - Scans are realistic and deterministic (seeded PRNG): GS1 SSCCs with a correct mod-10 check
 *     digit sent as `]C100<sscc>` with item/org on receive, followed later by a dispatch (to KKR-KBG)
 *     or distribute of the same parcel; ~10% EAN-13 bulk codes (one GTIN per item) with a qty.
 *     Each scan has a unique `id`, so every one must create exactly one event.
 *   - Phases (single-scan bodies are serialised before the clock starts; batch bodies are made
 *     while sending, about 0.2 ms each, because the batch phase runs for a time, not a count):
 *       warmup  a few single scans and batches (JIT, connections); not reported.
 *       a  batch   POST /api/v1/scans with {scans:[100]}, 4 concurrent requests (closed loop),
 *                  at least 20,000 scans AND at least 12 s (capped at 60,000 scans, so the fold
 *                  can catch up within the time budget). The gateway folds its journal into
 *                  Automerge every 3 s, and that costs more CPU per event than ingest does; a
 *                  window that ends before the first fold measures a burst that cannot last (with
 *                  the fold on the HTTP thread, such a window read about 6x high). The scans
 *                  committed in each second are printed to show bursts and stalls.
 *       b  single  one scan per request, 16 concurrent keep-alive connections (closed loop).
 *       c  open    one scan per request at a steady 200 scans/s on a fixed timetable (open loop:
 *                  a send never waits for an earlier answer); latency = answer time minus the
 *                  *scheduled* send time, so a stalled gateway (or a late sender) is charged in
 *                  full (no coordinated omission).
 *     After the warm-up and after each phase the bench waits until the gateway's background fold
 *     has caught up (healthz pendingFold = 0), so every phase starts from the same state; how
 *     long that takes and what it costs is reported. Folds inside a phase are part of the phase.
 *   - Every response is checked (201 for a single scan, 200 with created = 100 for a batch); after
 *     each phase the new events are paged from GET /api/v1/events and their idempotency keys are
 *     compared one-for-one with the ids sent (proves each scan was committed exactly once).
 *   - Gateway-side facts come from its /metrics, read before and after each phase: process CPU
 *     seconds, events folded, and the longest event-loop stall (prom-client resets it on every
 *     read). Bench-side CPU comes from process.cpuUsage(). Before starting, the bench checks how
 *     busy the CPUs already are and warns if other work would skew the numbers.
 *
 * Output: a table on stdout, the targets with PASS/FAIL (batch >= 2,000 scans/s; p99 <= 25 ms at
 * 200 scans/s), and all numbers as JSON in bench/results/ingest.json (ingest.quick.json with
 * --quick, so a smoke run never overwrites a real measurement).
 *
 * Usage: npm run bench [-- --quick] [-- --keep-data] [-- --cpu-prof]   (1 to 1.5 min on 2 cores)
 *   --quick      small counts (about 25 s end to end), for a smoke run
 *   --keep-data  keep the temp data directory (its path is printed)
 *   --cpu-prof   run the gateway under `node --cpu-prof`: CPU.<date>.<pid>.<thread>.cpuprofile files
 *                land in bench/results/ (the biggest is the main thread; the small one is tsx's loader
 *                thread). Open in Chrome DevTools > Performance or speedscope. Slows the gateway, so
 *                the numbers go to ingest.profiled.json instead.
 * Exit: 0 when it ran (even if a target is missed: this is a measurement, not a test);
 *       1 when the gateway failed to start or any request failed or any scan is missing.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  Client, COMPANY_PREFIX, dirBytes, drainFold, Errors, fmt, foldTrouble, gs1CheckDigit, ITEMS, otherCpuBusy, prng,
  percentiles, ROOT, sleep, startGateway, stopGateway, waitHealthy, type Gateway, type Percentiles, type Reply,
} from './harness.ts';

// ---------------------------------------------------------------------------------------------
// Settings

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: { quick: { type: 'boolean' }, 'keep-data': { type: 'boolean' }, 'cpu-prof': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
});
if (flags.help) {
  process.stdout.write('usage: tsx bench/ingest.ts [--quick] [--keep-data] [--cpu-prof]\n');
  process.exit(0);
}
const QUICK = flags.quick === true;

const CFG = {
  batchScans: QUICK ? 2_000 : 20_000, // at least this many…
  batchMinSeconds: QUICK ? 3 : 12, // …and for at least this long: several fold cycles (every 3 s)
  batchMaxScans: QUICK ? 10_000 : 60_000, // …but no more: the fold must catch up afterwards
  batchSize: 100,
  batchConcurrency: 4,
  singleScans: QUICK ? 500 : 5_000,
  singleConcurrency: 16,
  openRate: 200, // scans per second
  openScans: QUICK ? 600 : 3_000, // 3 s / 15 s at 200/s
  openMaxSockets: 64,
  warmupSingles: 200,
  warmupBatches: 5,
};
const TARGETS = { batchScansPerS: 2_000, openP99Ms: 25 };
const START_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// Scan generation: GS1 check digits, SSCCs, EAN-13s, a deterministic parcel lifecycle


interface Scan {
  code: string;
  action: 'receive' | 'dispatch' | 'distribute';
  id: string;
  qty?: number;
  item?: string;
  to?: string;
  org?: string;
}

const ORGS = ['BPBD', 'Dinsos', 'PMI', 'BNPB'] as const;
const DEST = 'KKR-KBG';
/** One EAN-13 bulk line per item (GTIN-13 with a correct check digit). */
const EAN13: Record<string, string> = Object.fromEntries(
  ITEMS.map((item, i) => {
    const body = `${COMPANY_PREFIX}${String(10_001 + i).padStart(5, '0')}`;
    return [item, body + gs1CheckDigit(body)];
  }),
);

/** Makes scans that follow parcels through receive → dispatch | distribute, with some bulk lines. */
class ScanStream {
  private readonly rnd = prng(0x505c0);
  private serial = 0;
  private seq = 0;
  /** Received unit parcels not yet moved on: [code, item]. */
  private readonly inStore: [string, string][] = [];
  constructor(private readonly runId: string) {}

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }

  private sscc(): string {
    const ext = String(this.serial % 10);
    const body = `${ext}${COMPANY_PREFIX}${String(Math.floor(this.serial / 10)).padStart(9, '0')}`;
    this.serial++;
    return body + gs1CheckDigit(body);
  }

  next(): Scan {
    const id = `bench-${this.runId}-${++this.seq}`;
    const r = this.rnd();
    if (r < 0.1) {
      const item = this.pick(ITEMS);
      const action = this.rnd() < 0.6 ? 'receive' : 'distribute';
      return { code: EAN13[item]!, action, id, item, qty: 5 + Math.floor(this.rnd() * 46), ...(action === 'receive' ? { org: this.pick(ORGS) } : {}) };
    }
    if (this.inStore.length < 50 || r < 0.55) {
      const item = this.pick(ITEMS);
      const code = `]C100${this.sscc()}`;
      this.inStore.push([code, item]);
      return { code, action: 'receive', id, item, org: this.pick(ORGS), qty: 1 + Math.floor(this.rnd() * 20) };
    }
    const k = Math.floor(this.rnd() * this.inStore.length);
    const [code] = this.inStore[k]!;
    this.inStore[k] = this.inStore[this.inStore.length - 1]!;
    this.inStore.pop();
    return this.rnd() < 0.6 ? { code, action: 'dispatch', id, to: DEST } : { code, action: 'distribute', id };
  }

  take(n: number): Scan[] {
    return Array.from({ length: n }, () => this.next());
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP




// ---------------------------------------------------------------------------------------------
// Gateway process






// ---------------------------------------------------------------------------------------------
// Measurement helpers



interface PhaseResult {
  name: string;
  label: string;
  scans: number;
  requests: number;
  concurrency: number | null;
  targetRate: number | null;
  seconds: number;
  scansPerS: number;
  /** Request latency in ms (phase c: from the scheduled send time). */
  latencyMs: Percentiles;
  errors: number;
  errorSamples: string[];
  duplicates: number;
  committedVerified: boolean;
  /** Phase c: how late sends left compared to the timetable (bench-side), ms. */
  sendLagMs?: Percentiles;
  /**
   * Per second: phase c by the timetable (requests scheduled in that second); phases a and b by
   * answer time (requests answered and scans created in that second). Latency p50/max in ms.
   */
  timeline?: { second: number; requests: number; scans: number; p50: number; max: number }[];
  gateway: {
    cpuSeconds: number;
    cpuPercentOfOneCore: number;
    /**
     * Mean wall time of POST /scans in the gateway's own histogram. With concurrent requests it
     * includes waiting for the thread (a handler awaits its body while another runs), so it is not
     * a CPU cost.
     */
    serverMeanMs: number | null;
    /**
     * The fold backlog when the phase ended (healthz pendingFold), how long the gateway took to
     * fold it while the bench waited, the gateway CPU meanwhile, and that CPU per backlog event
     * (given only for a backlog of 1,000+ events: it includes any fold already under way).
     */
    drain: { pendingAtEnd: number; seconds: number; cpuSeconds: number; cpuMsPerEvent: number | null };
    /** Longest event-loop stall during the phase (prom-client monitorEventLoopDelay, reset per scrape). */
    eventLoopMaxMs: number | null;
    foldedEvents: number;
    rssMB: number | null;
  };
  bench: { cpuSeconds: number; cpuPercentOfOneCore: number };
}

const metricSum = (m: Map<string, number>, pred: (k: string) => boolean) => {
  let s = 0;
  for (const [k, v] of m) if (pred(k)) s += v;
  return s;
};
const M = {
  cpu: (m: Map<string, number>) => m.get('posko_process_cpu_seconds_total') ?? NaN,
  folded: (m: Map<string, number>) => m.get('posko_folded_events_total') ?? 0,
  loopMaxMs: (m: Map<string, number>) => { const v = m.get('posko_nodejs_eventloop_lag_max_seconds'); return v === undefined ? null : v * 1000; },
  rssMB: (m: Map<string, number>) => { const v = m.get('posko_process_resident_memory_bytes'); return v === undefined ? null : v / 2 ** 20; },
  scanSum: (m: Map<string, number>) => metricSum(m, (k) => k.startsWith('posko_http_request_duration_seconds_sum') && k.includes('scans')),
  scanCount: (m: Map<string, number>) => metricSum(m, (k) => k.startsWith('posko_http_request_duration_seconds_count') && k.includes('scans')),
};

// ---------------------------------------------------------------------------------------------
// The benchmark

interface Ctx {
  client: Client;
  stream: ScanStream;
  post: string;
  /** Journal cursor: events after it were not yet verified. */
  cursor: string;
  totalSent: number;
}

/** Pages the events written since the last check and compares their keys with the ids sent. */
async function verifyCommitted(ctx: Ctx, sent: Scan[]): Promise<{ ok: boolean; problem?: string }> {
  const expected = new Set(sent.map((s) => `${ctx.post}/api/${s.id}`));
  let seen = 0;
  let stray = 0;
  for (;;) {
    const page = await ctx.client.getJson<{ events: { key: string }[]; next: string | null }>(`/api/v1/events?after=${ctx.cursor}&limit=1000`);
    for (const e of page.events) {
      seen++;
      if (!expected.delete(e.key)) stray++;
    }
    if (page.next) ctx.cursor = page.next;
    if (page.events.length < 1000) break;
  }
  if (expected.size === 0 && stray === 0 && seen === sent.length) return { ok: true };
  return { ok: false, problem: `sent ${sent.length}, new events ${seen}, missing ${expected.size}, unexpected ${stray}` };
}



/** Checks one reply; returns the number of scans it created (or counts an error). */
function checkReply(r: Reply, scans: number, errors: Errors, dup: { n: number }): number {
  if (scans === 1) {
    if (r.status === 201) return 1;
    if (r.status === 200) { dup.n++; return 0; }
    errors.add(`HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    return 0;
  }
  if (r.status !== 200) { errors.add(`HTTP ${r.status}: ${r.text.slice(0, 300)}`); return 0; }
  const b = JSON.parse(r.text) as { created: number; duplicates: number; rejected: number; results: { status: string; error?: unknown }[] };
  if (b.rejected > 0 || b.created + b.duplicates !== scans) {
    const bad = b.results.find((x) => x.status === 'rejected');
    errors.add(`batch: created ${b.created}, duplicates ${b.duplicates}, rejected ${b.rejected} ${bad ? JSON.stringify(bad.error).slice(0, 300) : ''}`);
  }
  dup.n += b.duplicates;
  return b.created;
}

interface Load { bodies: Buffer[]; scansPer: number[] }

/** A request body and how many scans it holds; undefined when the phase is done sending. */
type Source = () => { body: Buffer; n: number } | undefined;

function fromLoad(load: Load): Source {
  let i = 0;
  return () => (i < load.bodies.length ? { body: load.bodies[i]!, n: load.scansPer[i++]! } : undefined);
}

function singles(scans: Scan[]): Load {
  return { bodies: scans.map((s) => Buffer.from(JSON.stringify(s))), scansPer: scans.map(() => 1) };
}
function batches(scans: Scan[], size: number): Load {
  const bodies: Buffer[] = [];
  const scansPer: number[] = [];
  for (let i = 0; i < scans.length; i += size) {
    const chunk = scans.slice(i, i + size);
    bodies.push(Buffer.from(JSON.stringify({ scans: chunk })));
    scansPer.push(chunk.length);
  }
  return { bodies, scansPer };
}

/** One answered request: when (ms after the phase start), its latency, the scans it created. */
interface Done { at: number; lat: number; scans: number }

/** Closed loop: `concurrency` workers each send the next body as soon as their previous answer came. */
async function closedLoop(ctx: Ctx, next: Source, concurrency: number, errors: Errors, dup: { n: number }): Promise<{ seconds: number; lat: number[]; done: Done[] }> {
  const agent = ctx.client.agent(concurrency);
  const lat: number[] = [];
  const done: Done[] = [];
  const t0 = performance.now();
  const worker = async () => {
    for (let req = next(); req !== undefined; req = next()) {
      const s = performance.now();
      try {
        const r = await ctx.client.request(agent, 'POST', '/api/v1/scans', req.body);
        const now = performance.now();
        lat.push(now - s);
        done.push({ at: now - t0, lat: now - s, scans: checkReply(r, req.n, errors, dup) });
      } catch (e) {
        errors.add(`request failed: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return { seconds, lat, done };
}

/** Open loop: send body i at t0 + i/rate whatever happened to earlier ones. */
async function openLoop(ctx: Ctx, load: Load, rate: number, errors: Errors, dup: { n: number }): Promise<{ seconds: number; lat: number[]; lag: number[] }> {
  const agent = ctx.client.agent(CFG.openMaxSockets);
  const n = load.bodies.length;
  const intervalMs = 1000 / rate;
  const lat: number[] = new Array<number>(n);
  const lag: number[] = new Array<number>(n);
  const inflight: Promise<void>[] = [];
  const t0 = performance.now() + 20;
  let i = 0;
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      while (i < n && t0 + i * intervalMs <= now) {
        const k = i++;
        const scheduled = t0 + k * intervalMs;
        lag[k] = performance.now() - scheduled;
        inflight.push(
          ctx.client.request(agent, 'POST', '/api/v1/scans', load.bodies[k]!).then(
            (r) => { lat[k] = performance.now() - scheduled; checkReply(r, 1, errors, dup); },
            (e: unknown) => { lat[k] = performance.now() - scheduled; errors.add(`request failed: ${(e as Error).message}`); },
          ),
        );
      }
      if (i >= n) { done(); return; }
      setTimeout(tick, Math.max(0, t0 + i * intervalMs - performance.now()));
    };
    setTimeout(tick, Math.max(0, t0 - performance.now()));
  });
  await Promise.all(inflight);
  const seconds = (performance.now() - t0) / 1000;
  agent.destroy();
  return { seconds, lat, lag };
}

async function runPhase(
  ctx: Ctx,
  spec: { name: string; label: string; scans: number; minSeconds?: number; mode: 'batch' | 'single' | 'open'; concurrency?: number; rate?: number },
): Promise<PhaseResult> {
  // Batches are made while sending, until both the count and the duration are reached; the
  // other phases send a fixed list made in advance.
  let scans: Scan[];
  let source: Source;
  let load: Load | undefined;
  if (spec.mode === 'batch') {
    scans = [];
    let t0 = NaN;
    source = () => {
      if (Number.isNaN(t0)) t0 = performance.now();
      const elapsed = (performance.now() - t0) / 1000;
      if (scans.length >= CFG.batchMaxScans || (scans.length >= spec.scans && elapsed >= (spec.minSeconds ?? 0))) return undefined;
      const chunk = ctx.stream.take(CFG.batchSize);
      scans.push(...chunk);
      return { body: Buffer.from(JSON.stringify({ scans: chunk })), n: chunk.length };
    };
  } else {
    scans = ctx.stream.take(spec.scans);
    load = singles(scans);
    source = fromLoad(load);
  }
  const errors = new Errors();
  const dup = { n: 0 };
  const m0 = await ctx.client.metrics();
  const c0 = process.cpuUsage();
  let seconds: number;
  let lat: number[];
  let lag: number[] | undefined;
  let done: Done[] | undefined;
  if (spec.mode === 'open') ({ seconds, lat, lag } = await openLoop(ctx, load!, spec.rate!, errors, dup));
  else ({ seconds, lat, done } = await closedLoop(ctx, source, spec.concurrency!, errors, dup));
  const c1 = process.cpuUsage(c0);
  const m1 = await ctx.client.metrics();
  // Let the fold catch up (so the next phase starts level) and measure what that takes.
  const pendingAtEnd = (await ctx.client.getJson<{ pendingFold?: number }>('/healthz', false)).pendingFold ?? 0;
  const drainS = await drainFold(ctx.client);
  const m2 = await ctx.client.metrics();
  const drainCpu = M.cpu(m2) - M.cpu(m1);
  const drain = { pendingAtEnd, seconds: drainS, cpuSeconds: drainCpu, cpuMsPerEvent: pendingAtEnd >= 1000 ? (1000 * drainCpu) / pendingAtEnd : null };
  ctx.totalSent += scans.length;
  const verified = await verifyCommitted(ctx, scans);
  if (!verified.ok) errors.add(`commit check: ${verified.problem}`);
  const gwCpu = M.cpu(m1) - M.cpu(m0);
  const reqs = M.scanCount(m1) - M.scanCount(m0);
  const benchCpu = (c1.user + c1.system) / 1e6;
  const serverMeanMs = reqs > 0 ? (1000 * (M.scanSum(m1) - M.scanSum(m0))) / reqs : null;
  const timeline = lag ? perSecond(lat, spec.rate!) : done ? perSecondDone(done, seconds) : undefined;
  return {
    name: spec.name,
    label: spec.label,
    scans: scans.length,
    requests: lat.length,
    concurrency: spec.concurrency ?? null,
    targetRate: spec.rate ?? null,
    seconds,
    scansPerS: scans.length / seconds,
    latencyMs: percentiles(lat.filter((x) => x !== undefined)),
    errors: errors.count,
    errorSamples: errors.samples,
    duplicates: dup.n,
    committedVerified: verified.ok,
    ...(lag ? { sendLagMs: percentiles(lag) } : {}),
    ...(timeline ? { timeline } : {}),
    gateway: {
      cpuSeconds: gwCpu,
      cpuPercentOfOneCore: (100 * gwCpu) / seconds,
      serverMeanMs,
      drain,
      eventLoopMaxMs: M.loopMaxMs(m1),
      foldedEvents: M.folded(m1) - M.folded(m0),
      rssMB: M.rssMB(m1),
    },
    bench: { cpuSeconds: benchCpu, cpuPercentOfOneCore: (100 * benchCpu) / seconds },
  };
}


/** Latency p50/max per second of the open-loop timetable (request k is scheduled at k/rate s). */
function perSecond(lat: number[], rate: number): NonNullable<PhaseResult['timeline']> {
  const out: NonNullable<PhaseResult['timeline']> = [];
  for (let s = 0; s * rate < lat.length; s++) {
    const p = percentiles(lat.slice(s * rate, (s + 1) * rate).filter((x) => x !== undefined));
    const n = Math.min(rate, lat.length - s * rate);
    out.push({ second: s, requests: n, scans: n, p50: p.p50, max: p.max });
  }
  return out;
}

/** Requests and scans answered per second of a closed-loop phase, with their latency p50/max. */
function perSecondDone(done: Done[], seconds: number): NonNullable<PhaseResult['timeline']> {
  const out: NonNullable<PhaseResult['timeline']> = [];
  for (let s = 0; s < Math.ceil(seconds); s++) {
    const inS = done.filter((d) => d.at >= s * 1000 && d.at < (s + 1) * 1000);
    const p = percentiles(inS.map((d) => d.lat));
    out.push({ second: s, requests: inS.length, scans: inS.reduce((a, d) => a + d.scans, 0), p50: p.p50, max: p.max });
  }
  return out;
}



// ---------------------------------------------------------------------------------------------
// Report


function table(results: PhaseResult[]): string {
  const head = ['phase', 'scans', 'reqs', 'conc', 'seconds', 'scans/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors'];
  const rows = results.map((r) => [
    r.label, String(r.scans), String(r.requests), r.concurrency !== null ? String(r.concurrency) : `${r.targetRate}/s`,
    fmt(r.seconds, 2), fmt(r.scansPerS, 0), fmt(r.latencyMs.p50), fmt(r.latencyMs.p90), fmt(r.latencyMs.p99), fmt(r.latencyMs.max), String(r.errors),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

function whereTimeGoes(results: PhaseResult[]): string {
  const head = ['phase', 'gw CPU %', 'gw max stall ms', 'best second scans/s', 'folded', 'unfolded at end', 'catch-up s', 'ms CPU/event', 'bench CPU %'];
  const rows = results.map((r) => [
    r.label, fmt(r.gateway.cpuPercentOfOneCore, 0), fmt(r.gateway.eventLoopMaxMs, 0),
    r.name === 'open' || !r.timeline ? '-' : String(Math.max(...r.timeline.map((t) => t.scans))),
    String(r.gateway.foldedEvents), String(r.gateway.drain.pendingAtEnd), fmt(r.gateway.drain.seconds, 1), fmt(r.gateway.drain.cpuMsPerEvent, 2),
    fmt(r.bench.cpuPercentOfOneCore, 0),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const cpus = os.cpus();
  const machine = {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemMB: Math.round(os.totalmem() / 2 ** 20),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    date: new Date().toISOString(),
    loadAvgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    /** Share of all CPUs busy with other work during the second before the bench started. */
    busyPercentAtStart: await otherCpuBusy(1000),
  };
  process.stdout.write(`posko ingest benchmark${QUICK ? ' (--quick)' : ''}: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}; CPUs ${fmt(machine.busyPercentAtStart, 0)}% busy before start\n`);
  if (machine.busyPercentAtStart > 20) {
    process.stdout.write(`warning: other processes were using ${fmt(machine.busyPercentAtStart, 0)}% of the CPUs just before the run; the numbers will be low and noisy\n`);
  }

  const dataDir = mkdtempSync(join(os.tmpdir(), 'posko-bench-'));
  const token = randomBytes(24).toString('hex');
  const tStart = performance.now();
  let gw: Gateway;
  try {
    gw = await startGateway(dataDir, token, { cpuProf: flags['cpu-prof'] === true });
  } catch (e) {
    process.stderr.write(`bench: the gateway failed to start: ${(e as Error).message}\n`);
    rmSync(dataDir, { recursive: true, force: true });
    return 1;
  }
  const startS = (performance.now() - tStart) / 1000;
  let earlyExit = false;
  let stopping = false;
  gw.child.once('exit', (code, sig) => {
    if (stopping) return;
    earlyExit = true;
    process.stderr.write(`bench: gateway exited unexpectedly (code ${code}, signal ${sig})\n`);
  });
  const onSignal = () => { gw.child.kill('SIGTERM'); process.exit(1); };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const client = new Client(gw.port, token);
  const results: PhaseResult[] = [];
  let failure: string | undefined;
  let stop: Awaited<ReturnType<typeof stopGateway>> | undefined;
  let health: Record<string, unknown> = {};
  let dataDirBytes = NaN;
  try {
    health = await waitHealthy(client, START_TIMEOUT_MS);
    process.stdout.write(`gateway pid ${gw.child.pid} on port ${gw.port}, ready in ${startS.toFixed(1)} s; data ${dataDir}\n\n`);
    const ctx: Ctx = { client, stream: new ScanStream(randomBytes(4).toString('hex')), post: String(health['post']), cursor: '0', totalSent: 0 };

    // Warm-up: JIT both sides, lazy modules, SQLite page cache. Verified, not reported.
    {
      const errors = new Errors();
      const dup = { n: 0 };
      const s1 = ctx.stream.take(CFG.warmupSingles);
      await closedLoop(ctx, fromLoad(singles(s1)), 8, errors, dup);
      const s2 = ctx.stream.take(CFG.warmupBatches * CFG.batchSize);
      await closedLoop(ctx, fromLoad(batches(s2, CFG.batchSize)), 2, errors, dup);
      ctx.totalSent += s1.length + s2.length;
      const v = await verifyCommitted(ctx, [...s1, ...s2]);
      if (errors.count > 0 || !v.ok) throw new Error(`warm-up failed: ${[...errors.samples, v.problem ?? ''].join('; ')}`);
      await drainFold(client);
    }

    const phases = [
      { name: 'batch', label: `a  batches of ${CFG.batchSize}`, scans: CFG.batchScans, minSeconds: CFG.batchMinSeconds, mode: 'batch' as const, concurrency: CFG.batchConcurrency },
      { name: 'single', label: 'b  single scans', scans: CFG.singleScans, mode: 'single' as const, concurrency: CFG.singleConcurrency },
      { name: 'open', label: `c  open loop ${CFG.openRate}/s`, scans: CFG.openScans, mode: 'open' as const, rate: CFG.openRate },
    ];
    for (const p of phases) {
      process.stdout.write(`running ${p.label.slice(3)} (${p.scans}${p.minSeconds ? `+ scans, at least ${p.minSeconds} s` : ' scans'})…\n`);
      const r = await runPhase(ctx, p);
      results.push(r);
      if (earlyExit) throw new Error('the gateway exited during the benchmark');
    }

    // Cross-check the total with the gateway's own event count.
    const m = await client.metrics();
    const events = m.get('posko_events');
    if (events !== ctx.totalSent) throw new Error(`gateway reports ${events} events, bench sent ${ctx.totalSent}`);
  } catch (e) {
    failure = (e as Error).message;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    try { dataDirBytes = dirBytes(dataDir); } catch { /* gone */ }
    stopping = true;
    stop = await stopGateway(gw);
    if (!flags['keep-data']) rmSync(dataDir, { recursive: true, force: true });
  }

  // Report
  process.stdout.write('\n' + table(results) + '\n');
  if (results.length > 0) {
    process.stdout.write([
      '',
      'where the time goes (gw = the gateway process, from its /metrics; CPU % of one core, all threads)',
      '  gw max stall ms      longest block of the gateway\'s main event loop in the phase: nothing is answered meanwhile',
      '  best second scans/s  most scans committed in one second of the phase',
      '  folded               events the gateway\'s periodic fold (Automerge ledger, every 3 s) reported done during the phase',
      '  unfolded at end      events committed but not yet folded when the phase ended (healthz pendingFold);',
      '  catch-up s           then the seconds the gateway took to fold them (the bench waits),',
      '  ms CPU/event         and the gateway CPU it used per such event (shown for 1,000+ events)',
      '',
    ].join('\n'));
    process.stdout.write(whereTimeGoes(results) + '\n');
    const open = results.find((r) => r.name === 'open');
    const b = results.find((r) => r.name === 'batch');
    if (open?.sendLagMs) process.stdout.write(`\nopen loop send lag (bench late vs timetable): p99 ${fmt(open.sendLagMs.p99)} ms, max ${fmt(open.sendLagMs.max)} ms\n`);
    if (open?.timeline) process.stdout.write(`open loop max latency per second (ms): ${open.timeline.map((t) => fmt(t.max, 0)).join(' ')}\n`);
    if (b?.timeline) process.stdout.write(`batches: scans committed per second: ${b.timeline.map((t) => t.scans).join(' ')}\n`);
    const events = results.reduce((a, r) => a + r.scans, 0) + CFG.warmupSingles + CFG.warmupBatches * CFG.batchSize;
    if (!Number.isNaN(dataDirBytes)) process.stdout.write(`data dir: ${fmt(dataDirBytes / 2 ** 20, 1)} MB for ${events} events (${fmt(dataDirBytes / events, 0)} bytes/event, before the gateway's stop)\n`);
  }
  const batch = results.find((r) => r.name === 'batch');
  const open = results.find((r) => r.name === 'open');
  const targets = {
    batchThroughput: { target: `>= ${TARGETS.batchScansPerS} scans/s`, measured: batch?.scansPerS ?? null, pass: batch ? batch.scansPerS >= TARGETS.batchScansPerS : false },
    openP99: { target: `p99 <= ${TARGETS.openP99Ms} ms at ${CFG.openRate} scans/s`, measured: open?.latencyMs.p99 ?? null, pass: open ? open.latencyMs.p99 <= TARGETS.openP99Ms : false },
  };
  process.stdout.write('\ntargets\n');
  process.stdout.write(`  batch throughput  ${targets.batchThroughput.target.padEnd(32)} ${fmt(targets.batchThroughput.measured, 0).padStart(8)} scans/s  ${targets.batchThroughput.pass ? 'PASS' : 'FAIL'}\n`);
  process.stdout.write(`  latency           ${targets.openP99.target.padEnd(32)} ${fmt(targets.openP99.measured, 1).padStart(8)} ms       ${targets.openP99.pass ? 'PASS' : 'FAIL'}\n`);
  if (QUICK) process.stdout.write('  (--quick: small counts, indicative only)\n');

  const totalErrors = results.reduce((a, r) => a + r.errors, 0);
  for (const r of results) for (const s of r.errorSamples) process.stderr.write(`bench: ${r.name}: ${s}\n`);
  if (failure) process.stderr.write(`bench: ${failure}\n`);
  if (stop && (stop.exitCode !== 0 || stop.signal)) process.stderr.write(`bench: gateway stop: exit code ${stop.exitCode}, signal ${stop.signal}\n`);
  for (const t of foldTrouble) process.stdout.write(`warning: ${t}\n`);
  const gwErr = gw.stderr().trim();
  if (gwErr) process.stdout.write(`\ngateway stderr (last lines; --log-level warn):\n${gwErr.split('\n').slice(-15).map((l) => '  ' + l.slice(0, 300)).join('\n')}\n`);

  const summary = {
    benchmark: 'posko ingest',
    quick: QUICK,
    profiled: flags['cpu-prof'] === true,
    machine,
    config: CFG,
    gateway: {
      port: gw.port, startSeconds: startS, post: health['post'] ?? null, version: health['version'] ?? null,
      stopSeconds: stop ? stop.ms / 1000 : null, stopExitCode: stop?.exitCode ?? null,
      dataDirBytes: Number.isNaN(dataDirBytes) ? null : dataDirBytes, dataDir: flags['keep-data'] ? dataDir : null,
    },
    phases: results,
    targets,
    errors: totalErrors,
    failure: failure ?? null,
    warnings: foldTrouble,
    gatewayStderrTail: gw.stderr().slice(-4000),
    totalSeconds: (performance.now() - tStart) / 1000,
  };
  const outDir = join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const outFile = join(outDir, `ingest${QUICK ? '.quick' : ''}${flags['cpu-prof'] ? '.profiled' : ''}.json`);
  writeFileSync(outFile, JSON.stringify(summary, null, 2) + '\n');
  process.stdout.write(`\nresults: ${outFile} (total ${summary.totalSeconds.toFixed(1)} s)\n`);

  const ok = !failure && totalErrors === 0;
  process.stdout.write(ok ? 'status: every scan answered and committed\n' : `status: FAILED (${totalErrors} request errors${failure ? `; ${failure}` : ''}), exit 1\n`);
  return ok ? 0 : 1;
}

main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`); process.exitCode = 1; },
);
