/**
 * Convergence, as a property: whatever happens between gateways — scans, retries and voids through
 * the real HTTP API, syncs (in-process or through the HTTP client and route) over a link that
 * loses, duplicates, breaks and corrupts messages, restarts, restores from backup, partitions,
 * clocks that disagree and days that roll over — once every pair has had one clean
 * exchange, all gateways hold the same documents and show the same events, parcels and stock,
 * and those views are what a rebuild from the documents gives.
 *
 * The seed is fixed (20261129) unless FC_SEED is set; FC_SEED=random explores. Replay a failure with FC_SEED=<seed> (and FC_PATH=<path> to skip the search); FC_RUNS sets the
 * number of runs (default 20), FC_TIME_MS the time after which no new run starts (default 45 s).
 */
import fc from 'fast-check';
import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/log.ts';
import { backupTo, restoreFrom } from '../../src/store/backup.ts';
import { rebuildViews } from '../../src/store/rebuild.ts';
import { digestOf } from '../../src/sync/documents.ts';
import { serve, syncWith, DEFAULT_LIMITS, type SyncLimits, type SyncReport, type Transport } from '../../src/sync/session.ts';
import { HttpTransport } from '../../src/transport/http-sync.ts';
import { ADMIN_TOKEN, tempDir, testConfig } from '../helpers/gateway.ts';
import { LossyTransport, inProcessFetch, type Fault } from '../helpers/lossy-transport.ts';

// ---------------------------------------------------------------- codes

/** GS1 mod-10 check digit of a digit string (weights 3,1,3,… from the right). */
function gs1Check(body: string): string {
  let sum = 0;
  for (let i = body.length - 1, w = 3; i >= 0; i--, w = 4 - w) sum += (body.charCodeAt(i) - 48) * w;
  return String((10 - (sum % 10)) % 10);
}

/** An SSCC element string: AI (00), extension 0, company prefix 0614141, 9-digit serial, check. */
function sscc(serial: number): string {
  const body = '0' + '0614141' + String(serial).padStart(9, '0');
  return '00' + body + gs1Check(body);
}

const GTIN = '0950600013435' + gs1Check('0950600013435');

/** The shared pool: unit parcels (SSCC, posko labels) and one bulk line (GTIN + batch). */
const CODE_POOL = [
  sscc(1), sscc(2), sscc(3), sscc(4),
  'PSK1:P1:A1', 'PSK1:HQ:B2',
  `(01)${GTIN}(10)LOT1`,
] as const;

// ---------------------------------------------------------------- gateways

interface Node {
  id: string;
  role: 'hq' | 'post';
  dir: string;
  gw: Gateway;
  /** This gateway's physical clock: the shared world clock plus its own skew. */
  now: () => number;
  syncMessageBytes: string;
  /** Where its backups go. */
  backupDir: string;
  hasBackup: boolean;
  /** Restores so far: a batch sent before the last restore may be lost, so its retry may create. */
  epoch: number;
  /** Scan batches sent, for idempotent retries. */
  batches: { scans: unknown[]; epoch: number }[];
}

const open: Node[] = [];

function startGateway(n: Pick<Node, 'id' | 'role' | 'dir' | 'now' | 'syncMessageBytes'>): Gateway {
  return new Gateway(testConfig(n.dir, { postId: n.id, role: n.role, syncMessageBytes: n.syncMessageBytes }), { log: createLogger('silent'), now: n.now });
}

async function closeAll(nodes: Node[]): Promise<void> {
  for (const n of nodes.splice(0)) {
    try { await n.gw.stop(); } catch { /* already stopped */ }
    rmSync(n.dir, { recursive: true, force: true });
    rmSync(n.backupDir, { recursive: true, force: true });
  }
}

afterEach(async () => { await closeAll(open); });

/** Calls a gateway's API in-process as admin; JSON in, JSON out. */
async function call(n: Node, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await n.gw.app.request(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed };
}

function introduce(a: Node, b: Node): void {
  a.gw.sync.enroll({ id: b.gw.identity.id, role: b.gw.identity.role, publicKey: b.gw.identity.publicKey });
  b.gw.sync.enroll({ id: a.gw.identity.id, role: a.gw.identity.role, publicKey: a.gw.identity.publicKey });
}

// ---------------------------------------------------------------- in-process HTTP

const byHost = new Map<string, Node>();
const hostOf = (id: string) => `${id.toLowerCase()}.posko.test`;

beforeAll(() => {
  vi.stubGlobal('fetch', inProcessFetch((host) => byHost.get(host)?.gw.app));
});
afterAll(() => { vi.unstubAllGlobals(); });

/** The peer's `POST /sync/v1`, through the real HTTP client and route (its limits are its config). */
function httpTo(n: Node): Transport {
  return new HttpTransport(`http://${hostOf(n.id)}`);
}

/** The peer's replica directly, preparing first (fold, manifest) as the HTTP route does. */
function directTo(n: Node, limits: SyncLimits): Transport {
  return {
    label: `direct:${n.id}`,
    exchange: async (m) => {
      n.gw.prepareSync();
      return serve(n.gw.sync, m, limits);
    },
  };
}

// ---------------------------------------------------------------- views

type Json = Record<string, unknown>;

async function allEvents(n: Node): Promise<Json[]> {
  const out: Json[] = [];
  let after = '0';
  for (;;) {
    const r = await call(n, 'GET', `/api/v1/events?after=${after}&limit=1000`);
    expect(r.status).toBe(200);
    const page = r.body.events as Json[];
    for (const { cursor: _cursor, ...e } of page) out.push(e);
    if (page.length === 0 || r.body.next === null) break;
    after = r.body.next as string;
  }
  return out.sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

async function allParcels(n: Node): Promise<Json[]> {
  const out: Json[] = [];
  let next: string | null = null;
  do {
    const r = await call(n, 'GET', `/api/v1/parcels?limit=2${next ? `&after=${next}` : ''}`);
    expect(r.status).toBe(200);
    out.push(...(r.body.parcels as Json[]));
    next = r.body.next as string | null;
  } while (next);
  return out.sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

async function allStock(n: Node): Promise<Json[]> {
  const r = await call(n, 'GET', '/api/v1/stock');
  expect(r.status).toBe(200);
  const key = (s: Json) => `${s.post}\0${s.item}\0${s.org ?? ''}`;
  return (r.body.stock as Json[]).sort((a, b) => key(a).localeCompare(key(b)));
}

async function views(n: Node): Promise<{ events: Json[]; parcels: Json[]; stock: Json[] }> {
  return { events: await allEvents(n), parcels: await allParcels(n), stock: await allStock(n) };
}

/** A replica's documents as sorted [id, sorted heads] (empty documents left out). */
function documents(n: Node): [string, string[]][] {
  return [...n.gw.sync.state().entries()].filter(([, h]) => h.length > 0).map(([id, h]) => [id, [...h].sort()] as [string, string[]]).sort((a, b) => a[0].localeCompare(b[0]));
}

// ---------------------------------------------------------------- the schedule

const ACTIONS = ['receive', 'receive', 'dispatch', 'checkpoint', 'distribute', 'count', 'return'] as const;

interface ScanSpec { action: (typeof ACTIONS)[number]; code: number; qty: number | undefined; item: string | undefined; org: string | undefined; to: number }

type Step =
  | { t: 'scan'; g: number; scans: ScanSpec[]; fold: boolean }
  | { t: 'void'; g: number; pick: number; own: boolean }
  | { t: 'retry'; g: number; pick: number }
  | { t: 'sync'; a: number; b: number; faults: Fault[]; limit: number; http: boolean }
  | { t: 'restart'; g: number }
  | { t: 'backup'; g: number }
  | { t: 'restore'; g: number }
  | { t: 'partition'; pairs: [number, number][] }
  | { t: 'heal' }
  | { t: 'tick'; minutes: number };

const scanArb: fc.Arbitrary<ScanSpec> = fc.record({
  action: fc.constantFrom(...ACTIONS),
  code: fc.nat({ max: CODE_POOL.length - 1 }),
  qty: fc.option(fc.constantFrom(1, 2, 5, 10, 0.5, 2.5), { nil: undefined }),
  item: fc.option(fc.constantFrom('BERAS', 'HYGKIT'), { nil: undefined }),
  org: fc.option(fc.constantFrom('BPBD', 'PMI'), { nil: undefined }),
  to: fc.nat({ max: 5 }),
});

const faultArb: fc.Arbitrary<Fault> = fc.oneof(
  { weight: 8, arbitrary: fc.constant<Fault>('ok') },
  { weight: 3, arbitrary: fc.constantFrom<Fault>('dropRequest', 'dropResponse', 'dupFirst', 'dupSecond', 'throw', 'corruptRequest', 'corruptResponse') },
);

const g = fc.nat({ max: 4 });

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('scan' as const), g, scans: fc.array(scanArb, { minLength: 1, maxLength: 4 }), fold: fc.constantFrom(true, true, true, false) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('void' as const), g, pick: fc.nat(), own: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('retry' as const), g, pick: fc.nat() }) },
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('sync' as const), a: g, b: g, faults: fc.array(faultArb, { maxLength: 8 }),
      limit: fc.constantFrom(1, 2_000, 20_000, DEFAULT_LIMITS.maxMessageBytes), http: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const), g }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('backup' as const), g }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restore' as const), g }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('partition' as const), pairs: fc.array(fc.tuple(g, g), { minLength: 1, maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('heal' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('tick' as const), minutes: fc.integer({ min: 1, max: 30 * 60 }) }) },
);

interface Scenario {
  posts: number;
  /** Clock skew of each gateway, minutes. */
  skews: number[];
  /** The HTTP sync route's message limit per gateway (its config). */
  serverBytes: string;
  steps: Step[];
  finalLimit: number;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  posts: fc.integer({ min: 1, max: 4 }),
  skews: fc.array(fc.integer({ min: -120, max: 120 }), { minLength: 5, maxLength: 5 }),
  serverBytes: fc.constantFrom('16384', '20000', String(DEFAULT_LIMITS.maxMessageBytes)),
  // size 'max': fast-check's default size keeps arrays short (a handful of steps).
  steps: fc.array(stepArb, { minLength: 1, maxLength: 40, size: 'max' }),
  finalLimit: fc.constantFrom(20_000, DEFAULT_LIMITS.maxMessageBytes),
});

/** 2025-03-01 22:00 UTC: the day rolls over early in most runs. */
const START = Date.UTC(2025, 2, 1, 22, 0, 0);

/** Faults that cannot fail an exchange on their own: duplicates (a replay is answered, then retried once). */
function onlyDuplicates(applied: readonly Fault[]): boolean {
  for (let i = 0; i < applied.length; i++) {
    const f = applied[i];
    if (f !== 'ok' && f !== 'dupFirst' && f !== 'dupSecond') return false;
    // The retry after a replay is one more message: a second dupSecond in a row can fail it.
    if (f === 'dupSecond' && applied[i + 1] === 'dupSecond') return false;
  }
  return true;
}

/** What the runs exercised, for the summary line (a property that never hits a case tests nothing). */
const stats = { gateways: 0, events: 0, voids: 0, syncs: 0, failed: 0, multiRound: 0, http: 0, restarts: 0, restores: 0, days: 0 };

/** Runs one scenario and checks convergence. */
async function runScenario(s: Scenario): Promise<void> {
  const nodes: Node[] = [];
  const world = { t: START };
  try {
    const ids = ['HQ', ...Array.from({ length: s.posts }, (_, i) => `P${i + 1}`)];
    for (const [i, id] of ids.entries()) {
      const skew = s.skews[i]! * 60_000;
      const base = { id, role: (id === 'HQ' ? 'hq' : 'post') as Node['role'], dir: tempDir('posko-conv-'), now: () => world.t + skew, syncMessageBytes: s.serverBytes };
      const node: Node = { ...base, gw: startGateway(base), backupDir: tempDir('posko-conv-backup-'), hasBackup: false, epoch: 0, batches: [] };
      nodes.push(node);
      open.push(node);
      byHost.set(hostOf(id), node);
    }
    for (const [i, a] of nodes.entries()) for (const b of nodes.slice(i + 1)) introduce(a, b);
    const N = nodes.length;
    const at = (i: number) => nodes[i % N]!;
    const blocked = new Set<string>();
    const pairKey = (a: Node, b: Node) => [a.id, b.id].sort().join('|');
    let scanNo = 0;

    for (const step of s.steps) {
      world.t += 37_000;
      switch (step.t) {
        case 'scan': {
          const n = at(step.g);
          const scans = step.scans.map((x) => {
            const to = x.to >= N ? 'SITE-X' : at(x.to).id;
            return {
              id: `s-${++scanNo}`, code: CODE_POOL[x.code], action: x.action,
              ...(x.qty !== undefined ? { qty: x.qty, unit: 'kg' } : {}), ...(x.item ? { item: x.item } : {}), ...(x.org ? { org: x.org } : {}),
              ...(x.action === 'dispatch' ? { to } : {}),
            };
          });
          const r = await call(n, 'POST', '/api/v1/scans', { scans });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          expect(r.body.created, JSON.stringify(r.body)).toBe(scans.length);
          n.batches.push({ scans, epoch: n.epoch });
          if (step.fold) n.gw.foldNow();
          break;
        }
        case 'void': {
          const n = at(step.g);
          // In (hlc, post) order: unique and the same in every replay (event ids are random).
          const known = (await allEvents(n)).filter((e) => e.kind !== 'void' && (!step.own || e.post === n.id))
            .sort((x, y) => `${x.hlc} ${x.post}`.localeCompare(`${y.hlc} ${y.post}`));
          if (known.length === 0) break;
          const target = known[step.pick % known.length]!;
          const scans = [{ id: `v-${++scanNo}`, action: 'void', voids: target.id, reason: 'salah scan' }];
          const r = await call(n, 'POST', '/api/v1/scans', { scans });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          expect(r.body.created, JSON.stringify(r.body)).toBe(1);
          n.batches.push({ scans, epoch: n.epoch });
          n.gw.foldNow();
          break;
        }
        case 'retry': {
          const n = at(step.g);
          if (n.batches.length === 0) break;
          const { scans, epoch } = n.batches[step.pick % n.batches.length]!;
          const r = await call(n, 'POST', '/api/v1/scans', { scans });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          // A retry counts once; after a restore the scan may be gone (then it is recorded again).
          if (epoch === n.epoch) expect(r.body.duplicates, JSON.stringify(r.body)).toBe(scans.length);
          else expect(r.body.rejected, JSON.stringify(r.body)).toBe(0);
          n.gw.foldNow();
          break;
        }
        case 'sync': {
          const a = at(step.a);
          const b = step.b % N === step.a % N ? at(step.a + 1) : at(step.b);
          const limits = { maxMessageBytes: step.limit, maxRounds: 200 };
          const inner = step.http ? httpTo(b) : directTo(b, limits);
          const cut = blocked.has(pairKey(a, b));
          const transport = new LossyTransport(inner, step.faults, () => cut);
          a.gw.prepareSync();
          let report: SyncReport | undefined;
          let error: unknown;
          try {
            report = await syncWith(a.gw.sync, a.gw.sync.enrolled(b.id)!, transport, limits);
          } catch (e) {
            error = e;
          }
          stats.syncs++;
          if (step.http) stats.http++;
          if (error) stats.failed++;
          if (report && report.roundTrips > 1) stats.multiRound++;
          if (report) {
            expect(report.refusedByPeer).toEqual([]);
            expect(report.refusedHere).toEqual([]);
          }
          if (!cut && onlyDuplicates(transport.applied)) {
            // Duplicated messages alone never fail an exchange (a replay is answered, then retried).
            const why = error ? `${(error as Error).name} ${(error as { code?: string }).code ?? ''}: ${(error as Error).message}` : '';
            expect(error === undefined ? 'no error' : why, `${a.id}→${b.id} over ${transport.label}, faults ${transport.applied.join(',')}`).toBe('no error');
            expect(report?.complete).toBe(true);
          }
          break;
        }
        case 'restart': {
          const n = at(step.g);
          await n.gw.stop();
          n.gw = startGateway(n);
          stats.restarts++;
          break;
        }
        case 'backup': {
          const n = at(step.g);
          n.gw.foldNow();
          await backupTo(n.gw.store, n.id, n.backupDir, { now: new Date(world.t) });
          n.hasBackup = true;
          break;
        }
        case 'restore': {
          // The SD card died: the newest backup replaces the database.
          const n = at(step.g);
          if (!n.hasBackup) break;
          await n.gw.stop();
          restoreFrom(n.backupDir, n.dir);
          n.gw = startGateway(n);
          n.epoch++;
          stats.restores++;
          break;
        }
        case 'partition':
          for (const [x, y] of step.pairs) if (x % N !== y % N) blocked.add(pairKey(at(x), at(y)));
          break;
        case 'heal':
          blocked.clear();
          break;
        case 'tick':
          world.t += step.minutes * 60_000;
          break;
      }
    }

    // Every pair, one clean exchange, until a whole pass changes nothing.
    const limits = { maxMessageBytes: s.finalLimit, maxRounds: 500 };
    for (const n of nodes) n.gw.prepareSync();
    let passes = 0;
    for (;;) {
      passes++;
      // One pass brings everything to everyone (the first gateway collects, the others then fetch
      // from it); the second must change nothing.
      expect(passes, 'clean passes until nothing changes').toBeLessThanOrEqual(2);
      const before = JSON.stringify(nodes.map(documents));
      for (const a of nodes) {
        for (const b of nodes) {
          if (a === b) continue;
          const r = await syncWith(a.gw.sync, a.gw.sync.enrolled(b.id)!, directTo(b, limits), limits);
          expect(r.complete, `${a.id}→${b.id} completes`).toBe(true);
          expect(r.refusedByPeer).toEqual([]);
          expect(r.refusedHere).toEqual([]);
        }
      }
      if (JSON.stringify(nodes.map(documents)) === before) break;
    }
    // Settled: what each gateway believes its peers have is now right (a pass that changed nothing
    // may still have re-sent what a peer had got through a third gateway), so nothing changed
    // costs one round trip and no chunks.
    for (const a of nodes) {
      for (const b of nodes) {
        if (a === b) continue;
        const r = await syncWith(a.gw.sync, a.gw.sync.enrolled(b.id)!, directTo(b, limits), limits);
        expect({ from: a.id, to: b.id, complete: r.complete, roundTrips: r.roundTrips, chunks: r.chunksSent + r.chunksReceived }, 'a settled exchange')
          .toEqual({ from: a.id, to: b.id, complete: true, roundTrips: 1, chunks: 0 });
      }
    }

    // The same documents everywhere.
    const docs0 = documents(nodes[0]!);
    for (const n of nodes) {
      expect(documents(n), `${n.id}'s documents`).toEqual(docs0);
      expect(digestOf(n.gw.sync.state())).toBe(digestOf(nodes[0]!.gw.sync.state()));
      expect(n.gw.sync.refusals(), `${n.id} refused nothing`).toEqual([]);
    }
    // The same views everywhere.
    const v0 = await views(nodes[0]!);
    stats.gateways += N;
    stats.events += v0.events.length;
    stats.voids += v0.events.filter((e) => e.kind === 'void').length;
    stats.days += new Set(docs0.filter(([id]) => id.startsWith('ledger/')).map(([id]) => id.split('/')[2])).size;
    for (const n of nodes.slice(1)) {
      const v = await views(n);
      expect(v.events.map((e) => e.id), `${n.id}'s event ids`).toEqual(v0.events.map((e) => e.id));
      expect(v.events, `${n.id}'s events`).toEqual(v0.events);
      expect(v.parcels, `${n.id}'s parcels`).toEqual(v0.parcels);
      expect(v.stock, `${n.id}'s stock`).toEqual(v0.stock);
    }
    // And they are what the documents say: a rebuild changes nothing.
    for (const n of nodes) {
      rebuildViews(n.gw.store);
      const v = await views(n);
      expect(v.events, `${n.id}'s events after a rebuild`).toEqual(v0.events);
      expect(v.parcels, `${n.id}'s parcels after a rebuild`).toEqual(v0.parcels);
      expect(v.stock, `${n.id}'s stock after a rebuild`).toEqual(v0.stock);
    }
  } finally {
    for (const n of nodes) {
      byHost.delete(hostOf(n.id));
      const i = open.indexOf(n);
      if (i >= 0) open.splice(i, 1);
    }
    await closeAll(nodes);
  }
}

describe('sync convergence (property)', () => {
  it('gateways converge after faults, restarts and partitions, to what a rebuild gives', async () => {
    // A fixed seed by default, so that CI is repeatable; FC_SEED=random explores (every failure
    // prints its replay line).
    const seed = process.env.FC_SEED === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.FC_SEED ?? 20261129);
    const path = process.env.FC_PATH;
    const numRuns = process.env.FC_RUNS ? Number(process.env.FC_RUNS) : 20;
    const timeLimit = process.env.FC_TIME_MS ? Number(process.env.FC_TIME_MS) : 45_000;
    const started = performance.now();
    const details = await fc.check(fc.asyncProperty(scenarioArb, runScenario), {
      seed, numRuns, ...(path ? { path } : {}),
      // Bounded whatever the machine's load: fewer runs rather than a slow suite. Shrinking replays
      // whole scenarios, so a failure found late is reported with what shrinking reached by then.
      interruptAfterTimeLimit: timeLimit, markInterruptAsFailure: false,
    });
    console.info(`convergence property: ${details.numRuns} runs${details.interrupted ? ' (time limit reached)' : ''}, seed ${seed}, ${Math.round(performance.now() - started)} ms; ${JSON.stringify(stats)}`);
    if (details.failed) {
      const report = await fc.asyncDefaultReportMessage(details);
      throw new Error(`convergence property failed: replay with FC_SEED=${seed} FC_PATH=${details.counterexamplePath}\n${report}`, { cause: details.errorInstance });
    }
  }, (process.env.FC_TIME_MS ? Number(process.env.FC_TIME_MS) : 45_000) + 60_000);
});

// ---------------------------------------------------------------- reproductions of what the property found

describe('sync convergence: shrunk reproductions', () => {
  /** Gateways for one test, on a shared settable clock; enrolled with each other. */
  function gateways(ids: string[], startAt: number): { nodes: Node[]; clock: { t: number } } {
    const clock = { t: startAt };
    const nodes = ids.map((id) => {
      const base = { id, role: (id === 'HQ' ? 'hq' : 'post') as Node['role'], dir: tempDir('posko-conv-'), now: () => clock.t, syncMessageBytes: String(DEFAULT_LIMITS.maxMessageBytes) };
      const node: Node = { ...base, gw: startGateway(base), backupDir: tempDir('posko-conv-backup-'), hasBackup: false, epoch: 0, batches: [] };
      open.push(node);
      byHost.set(hostOf(id), node);
      return node;
    });
    for (const [i, a] of nodes.entries()) for (const b of nodes.slice(i + 1)) introduce(a, b);
    return { nodes, clock };
  }

  async function scan(n: Node, s: Record<string, unknown>): Promise<string> {
    const r = await call(n, 'POST', '/api/v1/scans', { scans: [s] });
    expect(r.body.created, JSON.stringify(r.body)).toBe(1);
    n.gw.foldNow();
    return r.body.results[0].event.id as string;
  }

  async function syncDirect(a: Node, b: Node): Promise<SyncReport> {
    a.gw.prepareSync();
    return syncWith(a.gw.sync, a.gw.sync.enrolled(b.id)!, directTo(b, DEFAULT_LIMITS));
  }

  it('a post restored from an old backup and a void at HQ settle in one pass of exchanges', async () => {
    const { nodes: [hq, p1] } = gateways(['HQ', 'P1'], Date.UTC(2025, 2, 1, 10, 0, 0));
    await backupTo(p1!.gw.store, 'P1', p1!.backupDir);
    const x = await scan(p1!, { code: sscc(1), action: 'receive' });
    await syncDirect(p1!, hq!);
    await p1!.gw.stop();
    restoreFrom(p1!.backupDir, p1!.dir);
    p1!.gw = startGateway(p1!);
    await call(hq!, 'POST', '/api/v1/scans', { scans: [{ action: 'void', voids: x, reason: 'salah pindai' }] });
    hq!.gw.foldNow();
    for (const n of [hq!, p1!]) n.gw.prepareSync();
    const once = async () => {
      const before = JSON.stringify([documents(hq!), documents(p1!)]);
      for (const [a, b] of [[hq!, p1!], [p1!, hq!]] as const) {
        const r = await syncWith(a.gw.sync, a.gw.sync.enrolled(b.id)!, directTo(b, DEFAULT_LIMITS));
        expect(r.complete).toBe(true);
      }
      return JSON.stringify([documents(hq!), documents(p1!)]) !== before;
    };
    expect(await once()).toBe(true);
    const second = JSON.stringify([documents(hq!), documents(p1!)]);
    expect(await once(), `the second pass changed documents; after the first: ${second}`).toBe(false);
  });

  it('a void merged before the event it cancels still cancels it (the void is in a later day\'s ledger)', async () => {
    const { nodes: [hq, p1], clock } = gateways(['HQ', 'P1'], Date.UTC(2025, 2, 1, 23, 59, 0));
    const x = await scan(p1!, { code: sscc(1), action: 'receive', qty: 5, unit: 'kg', item: 'BERAS' });
    clock.t += 2 * 60_000; // past midnight: the void goes into ledger/P1/2025-03-02, sent before 2025-03-01
    await scan(p1!, { action: 'void', voids: x, reason: 'salah scan' });
    expect((await allParcels(p1!))).toEqual([]);

    const r = await syncDirect(p1!, hq!);
    expect(r.complete).toBe(true);
    expect((await allEvents(hq!)).map((e) => e.id).sort()).toEqual((await allEvents(p1!)).map((e) => e.id).sort());
    expect(await allParcels(hq!), 'HQ shows the voided receive as in store').toEqual([]);
    expect(await allStock(hq!)).toEqual([]);
  });

  it('a void merged before the event it cancels still cancels it (voided at HQ, relayed to another post)', async () => {
    const { nodes: [hq, p1, p2] } = gateways(['HQ', 'P1', 'P2'], Date.UTC(2025, 2, 1, 10, 0, 0));
    const x = await scan(p1!, { code: sscc(2), action: 'receive', qty: 5, unit: 'kg', item: 'BERAS' });
    await syncDirect(p1!, hq!);
    await scan(hq!, { action: 'void', voids: x, reason: 'salah scan' });
    expect(await allParcels(hq!)).toEqual([]);

    // P2 gets ledger/HQ/… (the void) and ledger/P1/… (the receive) in one reply, in that order.
    const r = await syncDirect(p2!, hq!);
    expect(r.complete).toBe(true);
    expect(await allParcels(p2!), 'P2 shows the voided receive as in store').toEqual([]);
    expect(await allStock(p2!)).toEqual([]);
  });

  it('a peer restored from backup gets what it lost in the same exchange, with no chunk refused as incomplete', async () => {
    const { nodes: [hq, p1] } = gateways(['HQ', 'P1'], Date.UTC(2025, 2, 1, 10, 0, 0));
    await scan(p1!, { code: sscc(1), action: 'receive', qty: 1, unit: 'kg' });
    await syncDirect(p1!, hq!);
    await backupTo(hq!.gw.store, 'HQ', hq!.backupDir);
    await scan(p1!, { code: sscc(2), action: 'receive', qty: 2, unit: 'kg' });
    await syncDirect(p1!, hq!); // P1 now knows HQ has its ledger up to the second scan
    // HQ's disk dies; its backup comes back without the second scan.
    await hq!.gw.stop();
    restoreFrom(hq!.backupDir, hq!.dir);
    hq!.gw = startGateway(hq!);
    await scan(p1!, { code: sscc(3), action: 'receive', qty: 3, unit: 'kg' });

    // P1 sends its ledger from where it believes HQ is: the third scan's change, whose parent HQ
    // lost. HQ's acks tell P1 where HQ really is; the exchange is complete only once HQ has it all.
    const r = await syncDirect(p1!, hq!);
    expect(r.complete).toBe(true);
    expect((await allEvents(hq!)).map((e) => e.id)).toEqual((await allEvents(p1!)).map((e) => e.id));
    expect(r.refusedByPeer, 'a restore is not damage').toEqual([]);
    expect(hq!.gw.sync.refusals()).toEqual([]);
  });

  it('after a post is restored from backup, HQ can still pass its ledger on to other posts', async () => {
    const { nodes: [hq, p1, p2] } = gateways(['HQ', 'P1', 'P2'], Date.UTC(2025, 2, 1, 10, 0, 0));
    await backupTo(p2!.gw.store, 'P2', p2!.backupDir);
    await scan(p2!, { code: sscc(1), action: 'receive', qty: 1, unit: 'kg' });
    await syncDirect(p2!, hq!); // HQ has P2's ledger as P2 signed it then
    // P2's SD card dies; the backup comes back without that scan. P2 scans on (a new Automerge
    // actor: its ledger forks from what HQ has), then syncs with HQ both ways.
    await p2!.gw.stop();
    restoreFrom(p2!.backupDir, p2!.dir);
    p2!.gw = startGateway(p2!);
    const later = await scan(p2!, { code: sscc(2), action: 'receive', qty: 2, unit: 'kg' });
    await syncDirect(p2!, hq!);
    await syncDirect(hq!, p2!);
    expect(documents(hq!)).toEqual(documents(p2!));

    // HQ relays P2's documents to P1: every change must be covered by a signature of P2 it passes on.
    const first = await syncDirect(p1!, hq!);
    const again = await syncDirect(p1!, hq!);
    expect([...first.refusedHere, ...again.refusedHere], 'P1 refuses P2\'s documents from HQ').toEqual([]);
    expect((await allEvents(p1!)).map((e) => e.id)).toContain(later);
  });

  it('a scan retried after a restore from backup, though it had reached HQ, does not block the post\'s ledger', async () => {
    const { nodes: [hq, p1] } = gateways(['HQ', 'P1'], Date.UTC(2025, 2, 1, 10, 0, 0));
    await backupTo(p1!.gw.store, 'P1', p1!.backupDir);
    const k1 = { id: 'k1', code: sscc(1), action: 'receive', qty: 5, unit: 'kg' };
    await scan(p1!, k1); // recorded; its acknowledgement is lost on the way to the scanner
    expect((await syncDirect(p1!, hq!)).refusedByPeer).toEqual([]);
    // P1's SD card dies; last night's backup comes back, without k1. The scanner retries k1.
    await p1!.gw.stop();
    restoreFrom(p1!.backupDir, p1!.dir);
    p1!.gw = startGateway(p1!);
    await scan(p1!, k1);
    const k2 = await scan(p1!, { id: 'k2', code: sscc(2), action: 'receive', qty: 1, unit: 'kg' });

    const there = await syncDirect(p1!, hq!);
    const back = await syncDirect(hq!, p1!);
    expect([...there.refusedByPeer, ...there.refusedHere, ...back.refusedByPeer, ...back.refusedHere], 'refusals').toEqual([]);
    expect((await allEvents(hq!)).map((e) => e.id), 'the later scan k2 reaches HQ').toContain(k2);
    expect((await allEvents(hq!)).map((e) => e.id)).toEqual((await allEvents(p1!)).map((e) => e.id));
    expect(documents(hq!)).toEqual(documents(p1!));
  });

  it('over HTTP, a replayed message is refused with SYNC_REPLAYED and its lastSeen, and the exchange goes on', async () => {
    const { nodes: [hq, p1] } = gateways(['HQ', 'P1'], Date.UTC(2025, 2, 1, 10, 0, 0));
    await scan(p1!, { code: sscc(3), action: 'receive', qty: 5, unit: 'kg' });
    p1!.gw.prepareSync();

    // A clean exchange through the real HTTP client and route, keeping its first message.
    let first: Uint8Array | undefined;
    const recording: Transport = { label: 'recording', exchange: async (m) => { first ??= m; return httpTo(hq!).exchange(m); } };
    expect((await syncWith(p1!.gw.sync, p1!.gw.sync.enrolled('HQ')!, recording)).complete).toBe(true);
    // That message again: a replay, refused with the code and lastSeen the client needs to move on.
    const err = await httpTo(hq!).exchange(first!).then(() => undefined, (e: unknown) => e as { code?: string; details?: Record<string, unknown> });
    expect({ code: err?.code, lastSeen: typeof err?.details?.lastSeen }).toEqual({ code: 'SYNC_REPLAYED', lastSeen: 'number' });

    // So a duplicated request (the second answer is the replay refusal) does not fail the exchange.
    const transport = new LossyTransport(httpTo(hq!), ['dupSecond']);
    const report = await syncWith(p1!.gw.sync, p1!.gw.sync.enrolled('HQ')!, transport);
    expect(report.complete).toBe(true);
  });
});
