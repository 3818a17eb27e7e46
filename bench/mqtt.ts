/**
 * MQTT ingest benchmark: how many device scans per second the gateway's embedded MQTT broker
 * commits, and how fast a scanner gets its PUBACK and its ack message at a steady field rate.
 *
 * What it does
 *   - Registers 20 devices with the CLI (`node --import tsx src/main.ts devices add node-<i> --json
 *     --data-dir <tmp>`, four at a time; see registerDevices), then starts a real gateway as a
 *     child process on that data dir with `--http-port 0 --mqtt-port 0 --mqtt-host 127.0.0.1`, a
 *     random admin token and `--log-level warn`. The ports come from the start-up banner ("MQTT
 *     broker for devices on port N", then "listening on http://…:PORT"); waits for GET /healthz
 *     (mqtt.mode = embedded, on that port).
 *   - 20 mqtt.js connections, one per device, as firmware-bridge/PROTOCOL.md says: username = the
 *     device id, password = its token, MQTT 3.1.1, clean session = false, keep-alive 30 s, a
 *     retained last will and an "online" status on connect, QoS 1 subscription to the device's own
 *     ack topic. Scans are JSON `{seq, code, action:'receive', qty:1, item}` published at QoS 1 to
 *     posko/<post>/scan/<device>; codes are GS1 SSCCs with a correct check digit (`]C100<sscc>`),
 *     each one new, so every scan must create exactly one event. `seq` counts per device and is
 *     never reused across phases.
 *   - The embedded broker sends the PUBACK only after the scan is committed to SQLite
 *     (synchronous=FULL), and publishes the ack message (`{seq, status:'accepted', event}`) on
 *     posko/<post>/ack/<device> just before. So PUBACK latency is commit latency as a device sees
 *     it: MQTT over loopback, aedes, validation, the group-commit queue and the fsync.
 *   - Phases:
 *       warmup  25 scans per device (JIT, connections); verified, not reported.
 *       d  throughput  every device publishes with at most 20 scans in flight (a bounded window
 *                      like a device's offline buffer, so mqtt.js never just buffers), closed loop,
 *                      until at least 20,000 scans AND at least 10 s (a safety cap of 150,000
 *                      scans, reached only above 15,000 scans/s, keeps the fold's catch-up within
 *                      the time budget; --quick caps at 10,000). scans/s counts PUBACKs, from the
 *                      first send to the last PUBACK; the PUBACKs per second are printed, because
 *                      the gateway folds every 3 s and a window without a fold would read high.
 *                      Latency here is from the actual send (it includes waiting in the window).
 *       e  open loop   a steady 200 scans/s in total on a fixed timetable, round-robin over the 20
 *                      devices (10/s each), for 15 s: a send never waits for an earlier answer, and
 *                      latency (PUBACK and ack message) is measured from the *scheduled* send time,
 *                      so a stalled gateway or a late sender is charged in full.
 *     After the warm-up and after each phase the bench waits until the gateway's background fold
 *     has caught up (healthz pendingFold = 0), as bench/ingest.ts does; the backlog and the time
 *     and CPU it took are reported.
 *   - Checks (any failure exits 1): every publish gets its PUBACK (no progress for 30 s is a
 *     timeout), no connection drops, every scan gets exactly one ack message with status accepted;
 *     after each phase the new events are paged from GET /api/v1/events and matched one-for-one
 *     with the (device, seq) keys sent and with the event ids in the acks; the gateway's
 *     posko_mqtt_messages_total{kind="scan",result="created"} grows by exactly the scans sent; at
 *     the end posko_events equals all scans sent.
 *   - Gateway-side facts come from its /metrics before and after each phase (process CPU, events
 *     folded, longest event-loop stall). The bench samples how busy all CPUs were during each phase
 *     and subtracts the gateway's and its own CPU to estimate other work on the (shared) machine.
 *
 * Output: a table on stdout, the targets with PASS/FAIL (>= 2,000 scans/s; p99 publish-to-PUBACK
 * <= 25 ms at 200 scans/s), and all numbers as JSON in bench/results/mqtt.json (mqtt.quick.json
 * with --quick, mqtt.profiled.json with --cpu-prof).
 *
 * Usage: npx tsx bench/mqtt.ts [--quick] [--keep-data] [--cpu-prof]   (about 1.5 min on 2 cores)
 *   --quick      small counts (about 40 s end to end, most of it registering the devices)
 *   --keep-data  keep the temp data directory (its path is printed)
 *   --cpu-prof   run the gateway under `node --cpu-prof` (profiles land in bench/results/)
 * Exit: 0 when it ran (even if a target is missed: this is a measurement, not a test); 1 when the
 *       gateway failed to start, a device could not be registered or connect, a publish failed or
 *       timed out, an ack was missing or wrong, the event counts do not match, or the whole run
 *       took more than 5 minutes.
 *
 * The gateway process, /metrics, percentiles, the fold wait and report helpers are shared with
 * bench/ingest.ts through bench/harness.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  busyPercent, childEnv, Client, COMPANY_PREFIX, cpuTimes, dirBytes, drainFold, Errors, fmt, foldTrouble, gs1CheckDigit,
  ITEMS, otherCpuBusy, percentiles, ROOT, sleep, startGateway, stopGateway, waitHealthy, type Gateway, type Percentiles,
} from './harness.ts';
import mqtt, { type MqttClient } from 'mqtt';

// ---------------------------------------------------------------------------------------------
// Settings

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: { quick: { type: 'boolean' }, 'keep-data': { type: 'boolean' }, 'cpu-prof': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
});
if (flags.help) {
  process.stdout.write('usage: tsx bench/mqtt.ts [--quick] [--keep-data] [--cpu-prof]\n');
  process.exit(0);
}
const QUICK = flags.quick === true;

const CFG = {
  devices: 20,
  window: 20, // phase d: scans in flight per device
  throughputScans: QUICK ? 2_000 : 20_000, // at least this many…
  throughputMinSeconds: QUICK ? 3 : 10, // …and for at least this long (several folds, every 3 s)
  throughputMaxScans: QUICK ? 10_000 : 150_000, // safety cap: the fold must catch up afterwards
  openRate: 200, // scans per second, all devices together
  openSeconds: QUICK ? 3 : 15,
  warmupPerDevice: 25,
  warmupWindow: 5,
};
const TARGETS = { scansPerS: 2_000, openP99Ms: 25 };
const START_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 10_000;
const NO_PROGRESS_TIMEOUT_MS = 30_000; // no PUBACK for this long: the phase failed
const ACK_TIMEOUT_MS = 15_000; // after the last PUBACK, every ack message must be in by then
/** The whole run, devices and fold waits included; past it the bench gives up (exit 1). */
const RUN_TIMEOUT_MS = 300_000;

// ---------------------------------------------------------------------------------------------
// Scans: GS1 SSCCs with a correct check digit, one new parcel per scan


let serial = 0;

/** The next scan payload of a device: a new SSCC received, qty 1. */
function scanPayload(seq: number): string {
  const n = serial++;
  const body = `${n % 10}${COMPANY_PREFIX}${String(Math.floor(n / 10)).padStart(9, '0')}`;
  return JSON.stringify({ seq, code: `]C100${body}${gs1CheckDigit(body)}`, action: 'receive', qty: 1, item: ITEMS[n % ITEMS.length] });
}

// ---------------------------------------------------------------------------------------------
// HTTP (health, metrics, events)


const M = {
  cpu: (m: Map<string, number>) => m.get('posko_process_cpu_seconds_total') ?? NaN,
  folded: (m: Map<string, number>) => m.get('posko_folded_events_total') ?? 0,
  events: (m: Map<string, number>) => m.get('posko_events') ?? NaN,
  mqttCreated: (m: Map<string, number>) => m.get('posko_mqtt_messages_total{kind="scan",result="created"}') ?? 0,
  loopMaxMs: (m: Map<string, number>) => { const v = m.get('posko_nodejs_eventloop_lag_max_seconds'); return v === undefined ? null : v * 1000; },
  rssMB: (m: Map<string, number>) => { const v = m.get('posko_process_resident_memory_bytes'); return v === undefined ? null : v / 2 ** 20; },
};


// ---------------------------------------------------------------------------------------------
// Devices (CLI) and the gateway process

/** Child processes started by the bench (CLI runs, the gateway), killed if the bench gives up. */
const children = new Set<ChildProcess>();


interface Cred { id: string; token: string; mqttUsername: string; mqttPassword: string; topics: { scan: string; ack: string; status: string } }

/** `posko devices add <name> --json --data-dir <dir>`, as an operator would. */
function addDevice(dataDir: string, name: string): Promise<Cred> {
  return new Promise((resolveCred, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'devices', 'add', name, '--json', '--data-dir', dataDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
    children.add(child);
    child.once('exit', () => children.delete(child));
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { err += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`devices add ${name}: exit ${code} ${sig ?? ''}\n${err}${out}`));
      try { resolveCred(JSON.parse(out) as Cred); } catch (e) { reject(new Error(`devices add ${name}: not JSON: ${(e as Error).message}: ${out.slice(0, 300)}`)); }
    });
  });
}

/**
 * Registers `n` devices: the first alone (it creates the database), the rest four at a time
 * (each CLI run is mostly Node and tsx starting up, about 1.3 s). `devices add` rewrites the
 * Mosquitto files through one fixed temp file, so two runs finishing together can fail at the
 * rename after the device was stored; such a device is registered again (it gets the id
 * node-<i>-2; the orphan never connects).
 */
async function registerDevices(dataDir: string, n: number, parallel = 4): Promise<{ creds: Cred[]; retries: string[] }> {
  const creds: Cred[] = new Array<Cred>(n);
  const retries: string[] = [];
  const one = async (i: number) => {
    try {
      creds[i] = await addDevice(dataDir, `node-${i}`);
    } catch (e) {
      retries.push(`node-${i}: ${(e as Error).message.split('\n').slice(0, 2).join(' ')}`);
      creds[i] = await addDevice(dataDir, `node-${i}`);
    }
  };
  await one(0);
  let next = 1;
  let failed: unknown;
  // Every worker finishes its CLI run before a failure is reported (the data dir is removed then).
  await Promise.all(Array.from({ length: parallel }, async () => {
    for (let i = next++; i < n && failed === undefined; i = next++) {
      try { await one(i); } catch (e) { failed ??= e; }
    }
  }));
  if (failed !== undefined) throw failed;
  return { creds, retries };
}








// ---------------------------------------------------------------------------------------------
// Device connections

/** One scan sent: when it was due (open loop: scheduled; closed loop: sent), its PUBACK and ack. */
interface Rec { dev: number; seq: number; at: number; sent: number; puback: number; ack: number; event?: string }

/** Problems any device saw (connection drops, unexpected acks); a phase fails on any. */
const deviceErrors = new Errors();

class Device {
  readonly bySeq = new Map<number, Rec>();
  nextSeq = 1;
  closing = false;
  constructor(readonly index: number, readonly cred: Cred, readonly client: MqttClient) {
    client.on('message', (topic, payload) => this.onAck(topic, payload));
    client.on('error', (e) => deviceErrors.add(`${cred.id}: ${e.message}`));
    client.on('close', () => { if (!this.closing) deviceErrors.add(`${cred.id}: connection closed by the gateway`); });
  }

  static async connect(index: number, cred: Cred, port: number): Promise<Device> {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      username: cred.mqttUsername, password: cred.mqttPassword, clientId: `posko-bench-${cred.id}`, protocolVersion: 4,
      clean: false, keepalive: 30, reconnectPeriod: 0, connectTimeout: CONNECT_TIMEOUT_MS,
      will: { topic: cred.topics.status, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    const d = new Device(index, cred, client);
    const granted = await client.subscribeAsync(cred.topics.ack, { qos: 1 });
    if (granted[0]?.qos !== 1) throw new Error(`${cred.id}: subscription to ${cred.topics.ack} refused (${JSON.stringify(granted)})`);
    await client.publishAsync(cred.topics.status, JSON.stringify({ online: true, fw: 'posko-bench', buffered: 0 }), { qos: 1, retain: true });
    return d;
  }

  /** Publishes one scan at QoS 1; `onPuback` runs when the PUBACK (or an error) comes back. */
  publish(rec: Rec, payload: string, onPuback: (err?: Error) => void): void {
    this.bySeq.set(rec.seq, rec);
    rec.sent = performance.now();
    this.client.publish(this.cred.topics.scan, payload, { qos: 1 }, (err) => {
      rec.puback = performance.now();
      onPuback(err ?? undefined);
    });
  }

  private onAck(topic: string, payload: Buffer): void {
    const now = performance.now();
    let a: { seq?: number | null; status?: string; event?: string; error?: { code: string } };
    try { a = JSON.parse(payload.toString('utf8')) as typeof a; } catch { deviceErrors.add(`${this.cred.id}: ack is not JSON on ${topic}`); return; }
    const rec = typeof a.seq === 'number' ? this.bySeq.get(a.seq) : undefined;
    if (!rec) { deviceErrors.add(`${this.cred.id}: ack for a scan not sent in this phase: ${payload.toString('utf8').slice(0, 200)}`); return; }
    if (rec.ack) { deviceErrors.add(`${this.cred.id}: second ack for seq ${a.seq}`); return; }
    rec.ack = now;
    rec.event = a.event;
    if (a.status !== 'accepted') deviceErrors.add(`${this.cred.id}: seq ${a.seq} ${a.status} ${a.error?.code ?? ''}`);
  }

  /**
   * Disconnects. `force` (after a failure) drops scans still in flight; without it mqtt.js waits
   * for them, which never ends on a dead connection, hence the time limit.
   */
  async close(force: boolean): Promise<void> {
    this.closing = true;
    await Promise.race([this.client.endAsync(force), sleep(5_000)]);
  }
}

/** Polls `state()` until `done`; fails when `progress` stays the same too long or a device broke. */
async function waitFor(what: string, state: () => { done: boolean; progress: number }, stallMs: number, errors: Errors): Promise<boolean> {
  let last = state().progress;
  let lastChange = performance.now();
  for (;;) {
    const s = state();
    if (s.done) return true;
    if (deviceErrors.count > 0) { errors.add(`${what}: ${deviceErrors.samples.join('; ')}`); return false; }
    if (s.progress !== last) { last = s.progress; lastChange = performance.now(); }
    if (performance.now() - lastChange > stallMs) { errors.add(`${what}: no progress for ${stallMs / 1000} s`); return false; }
    await sleep(5);
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers






// ---------------------------------------------------------------------------------------------
// The benchmark

interface Ctx {
  client: Client;
  devices: Device[];
  post: string;
  /** Journal cursor: events after it were not yet verified. */
  cursor: string;
  totalSent: number;
}

/** Closed loop: every device keeps up to `window` scans in flight until `enough()`. */
async function closedLoop(ctx: Ctx, window: number, enough: (sent: number, elapsedMs: number) => boolean, errors: Errors): Promise<{ recs: Rec[]; t0: number; end: number }> {
  const recs: Rec[] = [];
  const inflight = ctx.devices.map(() => 0);
  let acked = 0;
  let end = 0;
  const t0 = performance.now();
  const pump = (d: Device) => {
    while (inflight[d.index]! < window && !enough(recs.length, performance.now() - t0)) {
      const seq = d.nextSeq++;
      const payload = scanPayload(seq);
      const rec: Rec = { dev: d.index, seq, at: 0, sent: 0, puback: 0, ack: 0 };
      recs.push(rec);
      inflight[d.index]!++;
      d.publish(rec, payload, (err) => {
        inflight[d.index]!--;
        acked++;
        end = rec.puback;
        if (err) errors.add(`${d.cred.id} seq ${seq}: ${err.message}`);
        pump(d);
      });
      rec.at = rec.sent;
    }
  };
  for (const d of ctx.devices) pump(d);
  await waitFor('PUBACKs', () => ({ done: acked === recs.length && enough(recs.length, performance.now() - t0), progress: acked }), NO_PROGRESS_TIMEOUT_MS, errors);
  return { recs, t0, end };
}

/** Open loop: scan k is due at t0 + k/rate, on device k mod n, whatever happened to earlier ones. */
async function openLoop(ctx: Ctx, rate: number, count: number, errors: Errors): Promise<{ recs: Rec[]; t0: number; end: number; lag: number[] }> {
  const n = ctx.devices.length;
  const recs: Rec[] = [];
  const payloads: string[] = [];
  for (let k = 0; k < count; k++) {
    const d = ctx.devices[k % n]!;
    const seq = d.nextSeq++;
    recs.push({ dev: d.index, seq, at: 0, sent: 0, puback: 0, ack: 0 });
    payloads.push(scanPayload(seq));
  }
  const lag = new Array<number>(count);
  const intervalMs = 1000 / rate;
  let acked = 0;
  let end = 0;
  const t0 = performance.now() + 20;
  let i = 0;
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      while (i < count && t0 + i * intervalMs <= now) {
        const k = i++;
        const rec = recs[k]!;
        rec.at = t0 + k * intervalMs;
        ctx.devices[rec.dev]!.publish(rec, payloads[k]!, (err) => {
          acked++;
          end = rec.puback;
          if (err) errors.add(`${ctx.devices[rec.dev]!.cred.id} seq ${rec.seq}: ${err.message}`);
        });
        lag[k] = rec.sent - rec.at;
      }
      if (i >= count) { done(); return; }
      setTimeout(tick, Math.max(0, t0 + i * intervalMs - performance.now()));
    };
    setTimeout(tick, Math.max(0, t0 - performance.now()));
  });
  await waitFor('PUBACKs', () => ({ done: acked === count, progress: acked }), NO_PROGRESS_TIMEOUT_MS, errors);
  return { recs, t0, end, lag };
}

/** Waits for the ack message of every scan, then forgets the phase's scans on the devices. */
async function collectAcks(ctx: Ctx, recs: Rec[], errors: Errors): Promise<void> {
  if (errors.count === 0) {
    let missing = recs.length;
    await waitFor('ack messages', () => { missing = recs.reduce((a, r) => a + (r.ack ? 0 : 1), 0); return { done: missing === 0, progress: -missing }; }, ACK_TIMEOUT_MS, errors);
    if (missing > 0) errors.add(`${missing} of ${recs.length} scans got no ack message`);
  }
  if (deviceErrors.count > 0) errors.add(`device: ${deviceErrors.samples.join('; ')}`);
  for (const d of ctx.devices) d.bySeq.clear();
}

/** Pages the events written since the last check; matches them with the (device, seq) keys and ack event ids. */
async function verifyCommitted(ctx: Ctx, recs: Rec[]): Promise<{ ok: boolean; problem?: string }> {
  const expected = new Map(recs.map((r) => [`${ctx.post}/${ctx.devices[r.dev]!.cred.id}/seq-${r.seq}`, r]));
  const n = expected.size;
  let seen = 0;
  let stray = 0;
  let wrongId = 0;
  for (;;) {
    const page = await ctx.client.getJson<{ events: { id: string; key: string }[]; next: string | null }>(`/api/v1/events?after=${ctx.cursor}&limit=1000`);
    for (const e of page.events) {
      seen++;
      const r = expected.get(e.key);
      if (!r) { stray++; continue; }
      expected.delete(e.key);
      if (r.event !== e.id) wrongId++;
    }
    if (page.next) ctx.cursor = page.next;
    if (page.events.length < 1000) break;
  }
  if (expected.size === 0 && stray === 0 && wrongId === 0 && seen === n) return { ok: true };
  return { ok: false, problem: `sent ${n}, new events ${seen}, missing ${expected.size}, unexpected ${stray}, ack event id differs ${wrongId}` };
}

interface PhaseResult {
  name: string;
  label: string;
  scans: number;
  devices: number;
  window: number | null;
  targetRate: number | null;
  seconds: number;
  /** PUBACKs per second, first send to last PUBACK. */
  scansPerS: number;
  /** Publish to PUBACK, ms (phase e: from the scheduled send time; phase d: from the send). */
  pubackMs: Percentiles;
  /** Publish to the ack message on the device's ack topic, ms (same origin). */
  ackMs: Percentiles;
  /** Phase e: how late sends left compared to the timetable (bench-side), ms. */
  sendLagMs?: Percentiles;
  /** Per second (of the timetable in phase e, of PUBACK time in phase d): PUBACKs, latency p50/max. */
  timeline: { second: number; scans: number; p50: number; max: number }[];
  errors: number;
  errorSamples: string[];
  committedVerified: boolean;
  gateway: {
    cpuSeconds: number;
    cpuPercentOfOneCore: number;
    drain: { pendingAtEnd: number; seconds: number; cpuSeconds: number; cpuMsPerEvent: number | null };
    /** Longest event-loop stall during the phase (prom-client, reset per scrape). */
    eventLoopMaxMs: number | null;
    foldedEvents: number;
    mqttScansCreated: number;
    rssMB: number | null;
  };
  bench: { cpuSeconds: number; cpuPercentOfOneCore: number };
  /** All CPUs of the machine during the phase, % busy; minus the gateway and the bench: other work. */
  machine: { busyPercent: number; otherPercent: number };
}

async function runPhase(ctx: Ctx, spec: { name: string; label: string; mode: 'closed' | 'open' }): Promise<PhaseResult> {
  const errors = new Errors();
  const m0 = await ctx.client.metrics();
  const c0 = process.cpuUsage();
  const k0 = cpuTimes();
  let run: { recs: Rec[]; t0: number; end: number; lag?: number[] };
  let seconds: number;
  if (spec.mode === 'closed') {
    run = await closedLoop(ctx, CFG.window, (sent, ms) => sent >= CFG.throughputMaxScans || (sent >= CFG.throughputScans && ms >= CFG.throughputMinSeconds * 1000), errors);
    seconds = (run.end - run.t0) / 1000;
  } else {
    const count = CFG.openRate * CFG.openSeconds;
    run = await openLoop(ctx, CFG.openRate, count, errors);
    seconds = Math.max(count / CFG.openRate, (run.end - run.t0) / 1000);
  }
  const c1 = process.cpuUsage(c0);
  const k1 = cpuTimes();
  const m1 = await ctx.client.metrics();
  await collectAcks(ctx, run.recs, errors);
  // Let the fold catch up (so the next phase starts level) and measure what that takes.
  const pendingAtEnd = (await ctx.client.getJson<{ pendingFold?: number }>('/healthz', false)).pendingFold ?? 0;
  const drainS = await drainFold(ctx.client);
  const m2 = await ctx.client.metrics();
  const drainCpu = M.cpu(m2) - M.cpu(m1);
  const { recs } = run;
  ctx.totalSent += recs.length;
  const verified = await verifyCommitted(ctx, recs);
  if (!verified.ok) errors.add(`commit check: ${verified.problem}`);
  const created = M.mqttCreated(m2) - M.mqttCreated(m0);
  if (created !== recs.length) errors.add(`gateway counted ${created} MQTT scans created (posko_mqtt_messages_total), bench sent ${recs.length}`);

  const gwCpu = M.cpu(m1) - M.cpu(m0);
  const benchCpu = (c1.user + c1.system) / 1e6;
  const wall = (k1.all - k0.all) / os.cpus().length / 1000; // seconds the CPU sample spans
  const busy = busyPercent(k0, k1);
  const pub = recs.map((r) => r.puback - r.at);
  const ack = recs.filter((r) => r.ack).map((r) => r.ack - r.at);
  // Phase e by the timetable (scans due in that second); phase d by PUBACK time.
  const timeline: PhaseResult['timeline'] = [];
  const secondOf = spec.mode === 'open' ? (r: Rec) => Math.floor((r.at - run.t0) / 1000) : (r: Rec) => Math.floor((r.puback - run.t0) / 1000);
  for (const r of recs) {
    const s = Math.max(0, secondOf(r));
    while (timeline.length <= s) timeline.push({ second: timeline.length, scans: 0, p50: NaN, max: NaN });
    timeline[s]!.scans++;
  }
  const bySecond = timeline.map(() => [] as number[]);
  for (const r of recs) bySecond[Math.max(0, secondOf(r))]!.push(r.puback - r.at);
  bySecond.forEach((l, s) => { const p = percentiles(l); timeline[s]!.p50 = p.p50; timeline[s]!.max = p.max; });
  return {
    name: spec.name,
    label: spec.label,
    scans: recs.length,
    devices: ctx.devices.length,
    window: spec.mode === 'closed' ? CFG.window : null,
    targetRate: spec.mode === 'open' ? CFG.openRate : null,
    seconds,
    scansPerS: recs.length / seconds,
    pubackMs: percentiles(pub),
    ackMs: percentiles(ack),
    ...(run.lag ? { sendLagMs: percentiles(run.lag) } : {}),
    timeline,
    errors: errors.count,
    errorSamples: errors.samples,
    committedVerified: verified.ok,
    gateway: {
      cpuSeconds: gwCpu,
      cpuPercentOfOneCore: (100 * gwCpu) / wall,
      drain: { pendingAtEnd, seconds: drainS, cpuSeconds: drainCpu, cpuMsPerEvent: pendingAtEnd >= 1000 ? (1000 * drainCpu) / pendingAtEnd : null },
      eventLoopMaxMs: M.loopMaxMs(m1),
      foldedEvents: M.folded(m1) - M.folded(m0),
      mqttScansCreated: created,
      rssMB: M.rssMB(m1),
    },
    bench: { cpuSeconds: benchCpu, cpuPercentOfOneCore: (100 * benchCpu) / wall },
    machine: { busyPercent: busy, otherPercent: Math.max(0, busy - (100 * (gwCpu + benchCpu)) / (wall * os.cpus().length)) },
  };
}

// ---------------------------------------------------------------------------------------------
// Report


function grid(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

function table(results: PhaseResult[]): string {
  return grid(
    ['phase', 'scans', 'devices', 'load', 'seconds', 'scans/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'ack p50', 'ack p99', 'ack max', 'errors'],
    results.map((r) => [
      r.label, String(r.scans), String(r.devices), r.window !== null ? `${r.window} in flight` : `${r.targetRate}/s`,
      fmt(r.seconds, 2), fmt(r.scansPerS, 0), fmt(r.pubackMs.p50), fmt(r.pubackMs.p90), fmt(r.pubackMs.p99), fmt(r.pubackMs.max),
      fmt(r.ackMs.p50), fmt(r.ackMs.p99), fmt(r.ackMs.max), String(r.errors),
    ]),
  );
}

function whereTimeGoes(results: PhaseResult[]): string {
  return grid(
    ['phase', 'gw CPU %', 'gw max stall ms', 'best second scans/s', 'folded', 'unfolded at end', 'catch-up s', 'ms CPU/event', 'bench CPU %', 'CPUs busy %', 'other work %'],
    results.map((r) => [
      r.label, fmt(r.gateway.cpuPercentOfOneCore, 0), fmt(r.gateway.eventLoopMaxMs, 0),
      r.name === 'open' ? '-' : String(Math.max(...r.timeline.map((t) => t.scans))),
      String(r.gateway.foldedEvents), String(r.gateway.drain.pendingAtEnd), fmt(r.gateway.drain.seconds, 1), fmt(r.gateway.drain.cpuMsPerEvent, 2),
      fmt(r.bench.cpuPercentOfOneCore, 0), fmt(r.machine.busyPercent, 0), fmt(r.machine.otherPercent, 0),
    ]),
  );
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
  process.stdout.write(`posko MQTT ingest benchmark${QUICK ? ' (--quick)' : ''}: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}; CPUs ${fmt(machine.busyPercentAtStart, 0)}% busy before start\n`);
  if (machine.busyPercentAtStart > 20) {
    process.stdout.write(`warning: other processes were using ${fmt(machine.busyPercentAtStart, 0)}% of the CPUs just before the run; the numbers will be low and noisy\n`);
  }

  const dataDir = mkdtempSync(join(os.tmpdir(), 'posko-bench-mqtt-'));
  const token = randomBytes(24).toString('hex');
  const tStart = performance.now();
  let creds: Cred[] = [];
  let registerRetries: string[] = [];
  let gw: Gateway;
  let devicesS = 0;
  try {
    ({ creds, retries: registerRetries } = await registerDevices(dataDir, CFG.devices));
    devicesS = (performance.now() - tStart) / 1000;
    for (const r of registerRetries) process.stdout.write(`note: devices add failed once and was repeated: ${r}\n`);
    gw = await startGateway(dataDir, token, { cpuProf: flags['cpu-prof'] === true, requireMqtt: true, onChild: (c) => { children.add(c); c.once('exit', () => children.delete(c)); } });
  } catch (e) {
    process.stderr.write(`bench: ${devicesS === 0 ? 'registering the devices' : 'starting the gateway'} failed: ${(e as Error).message}\n`);
    rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
    return 1;
  }
  const startS = (performance.now() - tStart) / 1000 - devicesS;
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
  const devices: Device[] = [];
  let failure: string | undefined;
  let stop: Awaited<ReturnType<typeof stopGateway>> | undefined;
  let health: Record<string, unknown> = {};
  let dataDirBytes = NaN;
  try {
    health = await waitHealthy(client, START_TIMEOUT_MS);
    const mq = health['mqtt'] as { mode?: string; port?: number } | undefined;
    if (mq?.mode !== 'embedded' || mq.port !== gw.mqttPort) throw new Error(`healthz mqtt is ${JSON.stringify(mq)}, expected the embedded broker on ${gw.mqttPort}`);
    const post = String(health['post']);
    for (const c of creds) if (c.topics.scan !== `posko/${post}/scan/${c.id}`) throw new Error(`device ${c.id} was registered for topics ${c.topics.scan}, the gateway serves post ${post}`);
    process.stdout.write(`${CFG.devices} devices registered in ${devicesS.toFixed(1)} s; gateway pid ${gw.child.pid} on HTTP ${gw.port}, MQTT ${gw.mqttPort}, ready in ${startS.toFixed(1)} s; data ${dataDir}\n`);
    devices.push(...(await Promise.all(creds.map((c, i) => Device.connect(i, c, gw!.mqttPort!)))));
    process.stdout.write(`${devices.length} device connections up\n\n`);
    const ctx: Ctx = { client, devices, post, cursor: '0', totalSent: 0 };

    // Warm-up: JIT both sides, SQLite page cache, aedes. Verified, not reported.
    {
      const errors = new Errors();
      const target = CFG.warmupPerDevice * CFG.devices;
      const { recs } = await closedLoop(ctx, CFG.warmupWindow, (sent) => sent >= target, errors);
      await collectAcks(ctx, recs, errors);
      ctx.totalSent += recs.length;
      const v = await verifyCommitted(ctx, recs);
      if (errors.count > 0 || !v.ok) throw new Error(`warm-up failed: ${[...errors.samples, v.problem ?? ''].join('; ')}`);
      await drainFold(client);
    }

    const phases = [
      { name: 'throughput', label: 'd  throughput QoS 1', mode: 'closed' as const, say: `throughput (${CFG.devices} devices x ${CFG.window} in flight, ${CFG.throughputScans}+ scans, at least ${CFG.throughputMinSeconds} s)` },
      { name: 'open', label: `e  open loop ${CFG.openRate}/s`, mode: 'open' as const, say: `open loop (${CFG.openRate} scans/s over ${CFG.devices} devices for ${CFG.openSeconds} s)` },
    ];
    for (const p of phases) {
      process.stdout.write(`running ${p.say}…\n`);
      const r = await runPhase(ctx, p);
      results.push(r);
      if (earlyExit) throw new Error('the gateway exited during the benchmark');
      if (r.errors > 0) throw new Error(`phase ${p.name} failed: ${r.errorSamples.join('; ')}`);
    }

    // Cross-check the total with the gateway's own event count.
    const m = await client.metrics();
    if (M.events(m) !== ctx.totalSent) throw new Error(`gateway reports ${M.events(m)} events, bench sent ${ctx.totalSent}`);
  } catch (e) {
    failure = (e as Error).message;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await Promise.all(devices.map((d) => d.close(failure !== undefined).catch(() => undefined)));
    try { dataDirBytes = dirBytes(dataDir); } catch { /* gone */ }
    stopping = true;
    stop = await stopGateway(gw);
    if (failure && stop.signal === 'SIGKILL' && stop.ms < 19_000) failure = `the gateway was killed (SIGKILL) during the run: ${failure}`;
    if (!flags['keep-data']) rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
  }

  // Report
  process.stdout.write('\n' + table(results) + '\n');
  if (results.length > 0) {
    process.stdout.write([
      '',
      'p50…max: publish to PUBACK (d: from the send, with up to 20 scans in flight per device; e: from the scheduled send time)',
      'ack p50…max: publish to the ack message on posko/<post>/ack/<device>, same origin',
      '',
      'where the time goes (gw = the gateway process, from its /metrics; CPU % of one core, all threads)',
      '  gw max stall ms      longest block of the gateway\'s main event loop in the phase: no PUBACK goes out meanwhile',
      '  best second scans/s  most PUBACKs in one second of the phase',
      '  folded               events the gateway\'s periodic fold (Automerge ledger, every 3 s) reported done during the phase',
      '  unfolded at end      events committed but not yet folded when the phase ended (healthz pendingFold);',
      '  catch-up s           then the seconds the gateway took to fold them (the bench waits),',
      '  ms CPU/event         and the gateway CPU it used per such event (shown for 1,000+ events)',
      '  CPUs busy %          all CPUs of the machine during the phase; other work % = that minus the gateway and the bench',
      '',
    ].join('\n'));
    process.stdout.write(whereTimeGoes(results) + '\n');
    const d = results.find((r) => r.name === 'throughput');
    const open = results.find((r) => r.name === 'open');
    if (d) process.stdout.write(`\nthroughput: PUBACKs per second: ${d.timeline.map((t) => t.scans).join(' ')}\n`);
    if (open?.sendLagMs) process.stdout.write(`open loop send lag (bench late vs timetable): p99 ${fmt(open.sendLagMs.p99)} ms, max ${fmt(open.sendLagMs.max)} ms\n`);
    if (open) process.stdout.write(`open loop max PUBACK latency per second (ms): ${open.timeline.map((t) => fmt(t.max, 0)).join(' ')}\n`);
    const events = results.reduce((a, r) => a + r.scans, 0) + CFG.warmupPerDevice * CFG.devices;
    if (!Number.isNaN(dataDirBytes)) process.stdout.write(`data dir: ${fmt(dataDirBytes / 2 ** 20, 1)} MB for ${events} events (${fmt(dataDirBytes / events, 0)} bytes/event, before the gateway's stop)\n`);
  }
  const d = results.find((r) => r.name === 'throughput');
  const open = results.find((r) => r.name === 'open');
  const targets = {
    throughput: { target: `>= ${TARGETS.scansPerS} scans/s`, measured: d?.scansPerS ?? null, pass: d ? d.scansPerS >= TARGETS.scansPerS : false },
    openP99: { target: `p99 <= ${TARGETS.openP99Ms} ms at ${CFG.openRate} scans/s`, measured: open?.pubackMs.p99 ?? null, pass: open ? open.pubackMs.p99 <= TARGETS.openP99Ms : false },
  };
  process.stdout.write('\ntargets\n');
  process.stdout.write(`  QoS 1 throughput  ${targets.throughput.target.padEnd(32)} ${fmt(targets.throughput.measured, 0).padStart(8)} scans/s  ${targets.throughput.pass ? 'PASS' : 'FAIL'}\n`);
  process.stdout.write(`  PUBACK latency    ${targets.openP99.target.padEnd(32)} ${fmt(targets.openP99.measured, 1).padStart(8)} ms       ${targets.openP99.pass ? 'PASS' : 'FAIL'}\n`);
  if (QUICK) process.stdout.write('  (--quick: small counts, indicative only)\n');

  const totalErrors = results.reduce((a, r) => a + r.errors, 0);
  for (const r of results) for (const s of r.errorSamples) process.stderr.write(`bench: ${r.name}: ${s}\n`);
  if (failure) process.stderr.write(`bench: ${failure}\n`);
  if (stop && (stop.exitCode !== 0 || stop.signal)) process.stderr.write(`bench: gateway stop: exit code ${stop.exitCode}, signal ${stop.signal}\n`);
  for (const t of foldTrouble) process.stdout.write(`warning: ${t}\n`);
  const gwErr = gw.stderr().trim();
  if (gwErr) process.stdout.write(`\ngateway stderr (last lines; --log-level warn):\n${gwErr.split('\n').slice(-15).map((l) => '  ' + l.slice(0, 300)).join('\n')}\n`);

  const summary = {
    benchmark: 'posko MQTT ingest',
    quick: QUICK,
    profiled: flags['cpu-prof'] === true,
    machine,
    config: CFG,
    gateway: {
      port: gw.port, mqttPort: gw.mqttPort, devicesSeconds: devicesS, deviceRegisterRetries: registerRetries, startSeconds: startS, post: health['post'] ?? null, version: health['version'] ?? null,
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
  const outFile = join(outDir, `mqtt${QUICK ? '.quick' : ''}${flags['cpu-prof'] ? '.profiled' : ''}.json`);
  writeFileSync(outFile, JSON.stringify(summary, null, 2) + '\n');
  process.stdout.write(`\nresults: ${outFile} (total ${summary.totalSeconds.toFixed(1)} s)\n`);

  const ok = !failure && totalErrors === 0;
  process.stdout.write(ok ? 'status: every scan PUBACKed, acked and committed exactly once\n' : `status: FAILED (${totalErrors} errors${failure ? `; ${failure}` : ''}), exit 1\n`);
  return ok ? 0 : 1;
}

// A step that waits for something that can no longer happen must not end the run quietly with
// exit 0 (Node exits when nothing is left to wait for): this timer keeps it alive and fails it.
const watchdog = setTimeout(() => {
  process.stderr.write(`bench: no result after ${RUN_TIMEOUT_MS / 1000} s; giving up\n`);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  process.exit(1);
}, RUN_TIMEOUT_MS);
main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`); process.exitCode = 1; },
).finally(() => clearTimeout(watchdog));
