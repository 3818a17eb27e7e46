/**
 * Sync benchmark: what posko's chunk-based sync costs on the wire, and how fast HQ merges a district.
 *
 * What it does (real `Gateway` instances on temp data dirs, in-process, not listening; events go in
 * through the real ingest path, `gw.ingest.ingest(scans)`, and the real fold, `gw.foldNow()`; scans
 * are realistic and deterministic: GS1 SSCCs with valid check digits, item/qty/unit/org, parcels
 * received, dispatched to the next post or distributed, ~10% EAN-13 bulk lines, see sync-lib.ts):
 *
 *   0  prepare   the posts of step 4 (and the post of step 3): each a data dir built by ingest and
 *                fold (every 1,000 events), two child processes in parallel. Kept in
 *                bench/results/cache/ under a key hashed from the sources that shape the data
 *                (src/{domain,ingest,store,sync}, the generator, the Automerge version), so later
 *                runs reuse them; the preparation time is reported separately (and that of the run
 *                that made a reused cache).
 *   1  incremental  a post and a fresh HQ, 2,500 events synced (the peer is up to date; a second
 *                sync checks nothing is left), then 100, 1,000 and 10,000 new events, each folded
 *                once and synced with `syncWith` over a direct transport (`serve` of the HQ's
 *                replica); plus 1,000 events folded every 100 (ten fold cycles, as a post that
 *                stays offline a while folds them). Wire bytes = bytesSent + bytesReceived of the
 *                post's report: whole sealed messages (header, signature, encryption, brotli).
 *                Compared with (a) the brotli (quality 11) of the JSON of the same events as
 *                GET /api/v1/events returns them (all pages as one array: the smallest JSON can
 *                be); target <= 1.3x; and (b) plain per-document Automerge sync of the same ledger
 *                documents: every ledger document of the post, as it was before and after,
 *                with a fresh `initSyncState` on both sides (a new session), the post generating
 *                first and both alternating until neither has a message; raw message bytes (and,
 *                for fairness, the sum of each message brotli-compressed on its own), messages,
 *                and round trips (messages / 2 of the longest document; documents in parallel).
 *   2  nothing changed  a post with 1,000 ledger documents (one event each, 1,000 distinct days,
 *                written with createLedger/appendToLedger under the post's actor), synced once;
 *                then a second sync: round trips (target 1) and bytes (target <= 1 KB).
 *   3  fresh peer  a brand-new HQ syncs with a prepared post: bytes that reach HQ, against the
 *                post's saved document sizes (snapshots + chunks) and the brotli JSON of its events.
 *   4  HQ merge  50 posts x 20,000 events (--quick: 10 x 5,000). The parent makes a fresh HQ data
 *                dir with the posts enrolled and exports one bundle per post for it (exportBundle,
 *                everything); a CHILD process (node --import tsx bench/sync-child.ts merge) opens
 *                the HQ gateway and imports every bundle (importBundle), so its RSS is only HQ's.
 *                Wall time (gateway open through the last import), events/s, peak RSS
 *                (getrusage maxRSS, and process.memoryUsage().rss sampled after every chunk);
 *                targets <= 60 s and <= 600 MB; HQ's events view must hold every event.
 *
 * Output: tables on stdout with the targets and PASS/FAIL; progress on stderr; every number in
 * bench/results/sync.json (sync.quick.json with --quick, sync.profiled.json with --cpu-prof).
 *
 * Usage: npm run bench:sync [-- --quick] [-- --cpu-prof] [-- --no-cache] [-- --keep-data]
 *   --quick      smaller counts (incremental 100 and 1,000; HQ 10 x 5,000)
 *   --cpu-prof   run the merge child under `node --cpu-prof` (profile in bench/results/sync-prof-*),
 *                and print its top functions by self and total time
 *   --no-cache   rebuild the prepared posts even if a matching cache exists
 *   --keep-data  keep the temp data dirs (path printed)
 *   --only a,b   run only some steps: incremental, nothing, fresh, merge (results in sync.only-….json;
 *                the targets of steps not run show "not run")
 * Exit: 0 when it ran (even if a target is missed: this is a measurement, not a test); 1 when a
 * sync was incomplete or refused something, or any event count is wrong.
 */
import * as A from '@automerge/automerge';
import { createHash, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { brotliCompressSync, constants as zlib } from 'node:zlib';
import type { PoskoEvent } from '../src/domain/events.ts';
import { encodeHlc, hlcDay } from '../src/domain/hlc.ts';
import type { EventId, ParcelId, PostId } from '../src/domain/ids.ts';
import type { Gateway } from '../src/gateway.ts';
import { segmentId } from '../src/ingest/fold.ts';
import { appendToLedger, createLedger, hourOf } from '../src/sync/ledger.ts';
import { exportBundle, syncWith, type SyncReport } from '../src/sync/session.ts';
import { busyPercent, cpuTimes, fmt, otherCpuBusy, ROOT } from './harness.ts';
import { ADMIN_TOKEN, direct, eventCount, FOLD_EVERY, HQ_ID, ingestAll, introduce, openGateway, postId, runChild, ScanStream, sscc } from './sync-lib.ts';

// ---------------------------------------------------------------------------------------------
// Settings

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: 'boolean' }, 'cpu-prof': { type: 'boolean' }, 'no-cache': { type: 'boolean' }, 'keep-data': { type: 'boolean' }, only: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help) {
  process.stdout.write('usage: tsx bench/sync.ts [--quick] [--cpu-prof] [--no-cache] [--keep-data] [--only incremental,nothing,fresh,merge]\n');
  process.exit(0);
}
const STEPS = ['incremental', 'nothing', 'fresh', 'merge'] as const;
const ONLY = new Set(flags.only ? flags.only.split(',').map((x) => x.trim()) : STEPS);
for (const x of ONLY) if (!(STEPS as readonly string[]).includes(x)) throw new Error(`--only: unknown step ${x} (steps: ${STEPS.join(', ')})`);
const QUICK = flags.quick === true;
const PROFILE = flags['cpu-prof'] === true;

const CFG = {
  /** Events the incremental post has (and HQ has merged) before the measured rounds. */
  incrementalBase: 2_500,
  /** Measured incremental rounds: new events, folded every `foldEvery`. */
  incremental: (QUICK ? [[100, 100], [1_000, 1_000]] : [[100, 100], [1_000, 1_000], [10_000, 10_000], [1_000, 100]]).map(([events, foldEvery]) => ({ events: events!, foldEvery: foldEvery! })),
  nothingDocs: 1_000,
  hqPosts: QUICK ? 10 : 50,
  eventsPerPost: QUICK ? 5_000 : 20_000,
  prepareWorkers: Math.max(1, Math.min(2, os.cpus().length)),
  prepareFoldEvery: FOLD_EVERY,
};
const TARGETS = { incrementalRatio: 1.3, nothingRoundTrips: 1, nothingBytes: 1024, hqSeconds: 60, hqRssMB: 600 };
const MB = 2 ** 20;

function note(s: string): void {
  process.stderr.write(`${s}\n`);
}

function brotli11(data: Uint8Array): number {
  return brotliCompressSync(data, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: data.length } }).length;
}

/** Problems that make the run invalid (exit 1). */
const problems: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) {
    problems.push(what);
    note(`PROBLEM: ${what}`);
  }
}

function checkReport(r: SyncReport, what: string): void {
  check(r.complete, `${what}: the sync did not complete`);
  check(r.refusedByPeer.length === 0 && r.refusedHere.length === 0, `${what}: refusals ${JSON.stringify([...r.refusedByPeer, ...r.refusedHere].slice(0, 3))}`);
}

// ---------------------------------------------------------------------------------------------
// Helpers over gateways

async function syncToHq(post: Gateway, hq: Gateway): Promise<{ report: SyncReport; ms: number }> {
  const t = performance.now();
  const report = await syncWith(post.sync, post.sync.enrolled(hq.identity.id)!, direct(hq));
  return { report, ms: performance.now() - t };
}

const wire = (r: SyncReport) => r.bytesSent + r.bytesReceived;

function maxSeq(gw: Gateway): number {
  return (gw.store.db.prepare('SELECT coalesce(max(seq), 0) AS n FROM events').get() as { n: number }).n;
}

/** The events after journal position `after`, as GET /api/v1/events returns them (every page), as one JSON array. */
async function eventsJson(gw: Gateway, after: number): Promise<{ json: Buffer; count: number }> {
  const all: unknown[] = [];
  let cursor = String(after);
  for (;;) {
    const res = await gw.app.request(`/api/v1/events?after=${cursor}&limit=1000`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    if (res.status !== 200) throw new Error(`GET /api/v1/events: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
    const page = (await res.json()) as { events: unknown[]; next: string | null };
    all.push(...page.events);
    if (page.events.length < 1000 || !page.next) break;
    cursor = page.next;
  }
  return { json: Buffer.from(JSON.stringify(all)), count: all.length };
}

/** Every ledger document of a gateway, saved (a copy as of now), with its heads. */
function savedLedgers(gw: Gateway): Map<string, { bytes: Uint8Array; heads: string[] }> {
  const out = new Map<string, { bytes: Uint8Array; heads: string[] }>();
  for (const d of gw.store.docs.list('ledger/')) {
    const doc = gw.store.docs.load<unknown>(d.id)!;
    out.set(d.id, { bytes: A.save(doc), heads: d.heads });
    A.free(doc);
  }
  return out;
}

interface NaiveResult { docs: number; changedDocs: number; /** Automerge changes the post has that the peer lacks. */ changes: number; messages: number; bytes: number; brotliBytes: number; roundTrips: number; ms: number; changedOnly: { messages: number; bytes: number } }

/**
 * Plain per-document Automerge sync from `after` (the post) to `before` (its peer), a fresh sync
 * state on both sides, the post first, alternating until neither side has a message.
 */
function naiveSync(before: Map<string, { bytes: Uint8Array; heads: string[] }>, after: Map<string, { bytes: Uint8Array; heads: string[] }>): NaiveResult {
  const t0 = performance.now();
  const res: NaiveResult = { docs: after.size, changedDocs: 0, changes: 0, messages: 0, bytes: 0, brotliBytes: 0, roundTrips: 0, ms: 0, changedOnly: { messages: 0, bytes: 0 } };
  for (const [id, a] of after) {
    const b = before.get(id);
    const changed = !b || b.heads.join() !== a.heads.join();
    if (changed) res.changedDocs++;
    let post = A.load<unknown>(a.bytes);
    let peer = b ? A.load<unknown>(b.bytes) : A.init<unknown>();
    res.changes += A.getChangesMetaSince(post, A.getHeads(peer)).length;
    let sPost = A.initSyncState();
    let sPeer = A.initSyncState();
    let messages = 0;
    let bytes = 0;
    const count = (m: Uint8Array) => {
      messages++;
      bytes += m.length;
      res.brotliBytes += brotli11(m);
    };
    for (let round = 0; round < 100; round++) {
      let m: Uint8Array | null;
      let moved = false;
      [sPost, m] = A.generateSyncMessage(post, sPost);
      if (m) { count(m); [peer, sPeer] = A.receiveSyncMessage(peer, sPeer, m); moved = true; }
      [sPeer, m] = A.generateSyncMessage(peer, sPeer);
      if (m) { count(m); [post, sPost] = A.receiveSyncMessage(post, sPost, m); moved = true; }
      if (!moved) break;
    }
    check(A.getHeads(peer).sort().join() === A.getHeads(post).sort().join(), `naive sync of ${id} did not converge`);
    res.messages += messages;
    res.bytes += bytes;
    if (changed) { res.changedOnly.messages += messages; res.changedOnly.bytes += bytes; }
    res.roundTrips = Math.max(res.roundTrips, messages / 2);
    A.free(post);
    A.free(peer);
  }
  res.ms = performance.now() - t0;
  return res;
}

function docBytes(gw: Gateway): { docs: number; bytes: number } {
  const list = gw.store.docs.list();
  return { docs: list.length, bytes: list.reduce((n, d) => n + d.snapshotBytes + d.chunkBytes, 0) };
}

async function close(...gws: Gateway[]): Promise<void> {
  for (const g of gws) await g.stop();
}

// ---------------------------------------------------------------------------------------------
// 0  prepared posts (cached)

interface PrepareResult {
  cacheDir: string;
  reused: boolean;
  /** Wall seconds of the preparation (of the run that made the cache, when reused). */
  seconds: number;
  posts: { post: string; events: number; docs: number; docBytes: number; dirBytes: number; ingestSeconds: number; foldSeconds: number; seconds: number; rssMB: number }[];
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else if (/\.(ts|mjs|sql)$/.test(f)) out.push(p);
  }
  return out;
}

/** A key over everything that shapes the prepared data: a change to any of it rebuilds the cache. */
function cacheKey(): string {
  const h = createHash('sha256');
  const files = [
    ...['domain', 'ingest', 'store', 'sync'].flatMap((d) => filesUnder(join(ROOT, 'src', d))),
    join(ROOT, 'bench', 'sync-lib.ts'), join(ROOT, 'bench', 'sync-child.ts'),
  ];
  for (const f of files) h.update(relative(ROOT, f)).update('\0').update(readFileSync(f)).update('\0');
  const am = JSON.parse(readFileSync(join(ROOT, 'node_modules', '@automerge', 'automerge', 'package.json'), 'utf8')) as { version: string };
  h.update(`automerge ${am.version} posts ${CFG.hqPosts} events ${CFG.eventsPerPost} fold ${CFG.prepareFoldEvery}`);
  return h.digest('hex').slice(0, 12);
}

async function preparePosts(): Promise<PrepareResult> {
  const cacheRoot = join(ROOT, 'bench', 'results', 'cache');
  const prefix = `sync-${CFG.hqPosts}x${CFG.eventsPerPost}-`;
  const cacheDir = join(cacheRoot, prefix + cacheKey());
  const manifest = join(cacheDir, 'manifest.json');
  if (existsSync(manifest) && !flags['no-cache']) {
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as Omit<PrepareResult, 'reused' | 'cacheDir'>;
    note(`0  prepared posts: reusing ${relative(ROOT, cacheDir)} (made in ${fmt(m.seconds, 1)} s; --no-cache rebuilds)`);
    return { ...m, cacheDir, reused: true };
  }
  mkdirSync(cacheRoot, { recursive: true });
  // Caches of this size made from other sources are stale: remove them.
  for (const d of readdirSync(cacheRoot)) if (d.startsWith(prefix) && join(cacheRoot, d) !== cacheDir) rmSync(join(cacheRoot, d), { recursive: true, force: true });
  if (flags['no-cache']) rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  note(`0  preparing ${CFG.hqPosts} posts x ${CFG.eventsPerPost} events (ingest, fold every ${CFG.prepareFoldEvery}) in ${CFG.prepareWorkers} child processes -> ${relative(ROOT, cacheDir)}`);
  const t0 = performance.now();
  const posts: PrepareResult['posts'] = [];
  const workers = Array.from({ length: CFG.prepareWorkers }, (_, w) => {
    const mine = Array.from({ length: CFG.hqPosts }, (_, i) => i).filter((i) => i % CFG.prepareWorkers === w);
    return runChild(['prepare', cacheDir, String(CFG.eventsPerPost), String(CFG.hqPosts), mine.join(',')], {
      onStderr: (l) => note(`  [prepare ${w}] ${l}`),
      onStdoutLine: (l) => {
        if (!l.trim()) return;
        const r = JSON.parse(l) as PrepareResult['posts'][number];
        posts.push(r);
        const elapsed = (performance.now() - t0) / 1000;
        note(`  prepared ${r.post} (${posts.length}/${CFG.hqPosts}): ${r.events} events, ingest ${fmt(r.ingestSeconds, 1)} s, fold ${fmt(r.foldSeconds, 1)} s, ${r.docs} docs ${fmt(r.docBytes / 1024, 0)} KB; ${fmt(elapsed, 0)} s elapsed`);
      },
    });
  });
  const results = await Promise.all(workers);
  for (const [w, r] of results.entries()) if (r.code !== 0) throw new Error(`prepare worker ${w} failed (exit ${r.code}, signal ${r.signal})`);
  const have = CFG.hqPosts === readdirSync(cacheDir).filter((d) => /^KKR-P\d+$/.test(d)).length;
  if (!have) throw new Error('prepare: some posts are missing');
  const seconds = (performance.now() - t0) / 1000;
  posts.sort((a, b) => (a.post < b.post ? -1 : 1));
  // A resumed preparation reports only the posts made now.
  writeFileSync(manifest, JSON.stringify({ seconds, posts, createdAt: new Date().toISOString() }, null, 2) + '\n');
  return { cacheDir, reused: false, seconds, posts };
}

// ---------------------------------------------------------------------------------------------
// 1  incremental sync

interface IncrementalRow {
  events: number;
  foldEvery: number;
  /** `foldNow()` calls (each folds up to 2,000 events per Automerge change). */
  folds: number;
  posko: { bytes: number; bytesSent: number; bytesReceived: number; roundTrips: number; chunks: number; ms: number };
  brotliJson: { jsonBytes: number; bytes: number };
  ratio: number;
  naive: NaiveResult;
  naiveRatio: number;
  pass: boolean;
}

async function incremental(work: string): Promise<{ rows: IncrementalRow[]; initial: { bytes: number; roundTrips: number; ms: number }; steady: { bytes: number; roundTrips: number } }> {
  const post = openGateway(join(work, 'inc-post'), 'KKR-INC', 'post');
  const hq = openGateway(join(work, 'inc-hq'), HQ_ID, 'hq');
  try {
    introduce(post, hq);
    const stream = new ScanStream(60, 'KKR-INC', postId(0));
    ingestAll(post, stream.take(CFG.incrementalBase));
    post.foldNow();
    const first = await syncToHq(post, hq);
    checkReport(first.report, 'incremental: initial sync');
    const steady = await syncToHq(post, hq);
    checkReport(steady.report, 'incremental: steady sync');
    check(steady.report.roundTrips === 1, `incremental: after the initial sync a second one took ${steady.report.roundTrips} round trips`);
    check(eventCount(hq) === CFG.incrementalBase, `incremental: HQ has ${eventCount(hq)} events after the initial sync, expected ${CFG.incrementalBase}`);
    note(`1  incremental: base ${CFG.incrementalBase} events synced (${wire(first.report)} B, ${first.report.roundTrips} round trips); steady ${wire(steady.report)} B`);
    const rows: IncrementalRow[] = [];
    for (const c of CFG.incremental) {
      const cursor = maxSeq(post);
      const before = savedLedgers(post);
      const hqBefore = eventCount(hq);
      let folds = 0;
      for (let k = 0; k < c.events; k += c.foldEvery) {
        ingestAll(post, stream.take(Math.min(c.foldEvery, c.events - k)));
        post.foldNow();
        folds++;
      }
      const after = savedLedgers(post);
      const s = await syncToHq(post, hq);
      checkReport(s.report, `incremental ${c.events}`);
      check(eventCount(hq) - hqBefore === c.events, `incremental ${c.events}: HQ gained ${eventCount(hq) - hqBefore} events`);
      const { json, count } = await eventsJson(post, cursor);
      check(count === c.events, `incremental ${c.events}: GET /api/v1/events returned ${count} events`);
      note(`   ${c.events} new events (fold every ${c.foldEvery}): posko ${wire(s.report)} B; compressing ${json.length} B of JSON (brotli 11)…`);
      const br = brotli11(json);
      const naive = naiveSync(before, after);
      const ratio = wire(s.report) / br;
      rows.push({
        events: c.events, foldEvery: c.foldEvery, folds,
        posko: { bytes: wire(s.report), bytesSent: s.report.bytesSent, bytesReceived: s.report.bytesReceived, roundTrips: s.report.roundTrips, chunks: s.report.chunksSent, ms: s.ms },
        brotliJson: { jsonBytes: json.length, bytes: br }, ratio, naive, naiveRatio: naive.bytes / br, pass: ratio <= TARGETS.incrementalRatio,
      });
    }
    return {
      rows,
      initial: { bytes: wire(first.report), roundTrips: first.report.roundTrips, ms: first.ms },
      steady: { bytes: wire(steady.report), roundTrips: steady.report.roundTrips },
    };
  } finally {
    await close(post, hq);
  }
}

// ---------------------------------------------------------------------------------------------
// 2  nothing changed, 1,000 documents

/** Writes `n` one-event ledger documents (days from 2023-01-01 on) straight into the post's store. */
function writeLedgerDocs(gw: Gateway, n: number): void {
  const post = gw.config.postId;
  const actor = gw.store.actorId();
  const base = Date.UTC(2023, 0, 1);
  gw.store.db.transaction(() => {
    for (let d = 0; d < n; d++) {
      const wall = base + d * 86_400_000 + 9 * 3_600_000;
      const day = hlcDay({ wall, counter: 0 });
      const code = sscc(70, d);
      const e: PoskoEvent = {
        id: randomUUID() as EventId, kind: 'receive', key: `${post}/api/docs-${d}`, post: post as PostId, device: null, operator: null,
        code: `]C100${code}`, parsed: { kind: 'gs1', ais: { '00': code } }, parcel: `sscc:${code}` as ParcelId, item: 'BERAS', qty: 10,
        unit: 'kg', org: 'BPBD', dest: null, batch: null, expiry: null, deviceAt: null, hlc: encodeHlc({ wall, counter: 0 }), voids: null, reason: null,
      };
      const doc = appendToLedger(createLedger(actor, post, day), [e], () => hourOf(wall));
      gw.store.docs.put(segmentId(post, day, 0), { chunk: new Uint8Array(0), snapshot: A.save(doc), heads: A.getHeads(doc), events: 1 });
      A.free(doc);
    }
  }).immediate();
}

interface NothingResult { docs: number; hqDocs: number; first: { bytes: number; roundTrips: number; ms: number }; second: { bytes: number; bytesSent: number; bytesReceived: number; roundTrips: number; ms: number }; pass: { roundTrips: boolean; bytes: boolean } }

async function nothingChanged(work: string): Promise<NothingResult> {
  const post = openGateway(join(work, 'noop-post'), 'KKR-NOOP', 'post');
  const hq = openGateway(join(work, 'noop-hq'), HQ_ID, 'hq');
  try {
    introduce(post, hq);
    writeLedgerDocs(post, CFG.nothingDocs);
    const first = await syncToHq(post, hq);
    checkReport(first.report, 'nothing changed: first sync');
    check(eventCount(hq) === CFG.nothingDocs, `nothing changed: HQ has ${eventCount(hq)} events, expected ${CFG.nothingDocs}`);
    const second = await syncToHq(post, hq);
    checkReport(second.report, 'nothing changed: second sync');
    const r = second.report;
    const docs = post.store.docs.list().length;
    note(`2  nothing changed: ${docs} documents; first sync ${wire(first.report)} B in ${fmt(first.ms / 1000, 1)} s; second ${wire(r)} B, ${r.roundTrips} round trip(s), ${fmt(second.ms, 1)} ms`);
    return {
      docs, hqDocs: hq.store.docs.list().length,
      first: { bytes: wire(first.report), roundTrips: first.report.roundTrips, ms: first.ms },
      second: { bytes: wire(r), bytesSent: r.bytesSent, bytesReceived: r.bytesReceived, roundTrips: r.roundTrips, ms: second.ms },
      pass: { roundTrips: r.roundTrips <= TARGETS.nothingRoundTrips, bytes: wire(r) <= TARGETS.nothingBytes },
    };
  } finally {
    await close(post, hq);
  }
}

// ---------------------------------------------------------------------------------------------
// 3  fresh peer

interface FreshResult { events: number; docs: number; savedDocBytes: number; toHq: number; total: number; roundTrips: number; ms: number; brotliJson: { jsonBytes: number; bytes: number; ms: number }; vsSaved: number; vsBrotli: number }

async function freshPeer(work: string, cacheDir: string): Promise<FreshResult> {
  const dir = join(work, 'fresh-post');
  cpSync(join(cacheDir, postId(0)), dir, { recursive: true });
  const post = openGateway(dir, postId(0), 'post');
  const hq = openGateway(join(work, 'fresh-hq'), HQ_ID, 'hq');
  try {
    introduce(post, hq);
    const saved = docBytes(post);
    const events = eventCount(post);
    const s = await syncToHq(post, hq);
    checkReport(s.report, 'fresh peer');
    check(eventCount(hq) === events, `fresh peer: HQ has ${eventCount(hq)} events, the post ${events}`);
    note(`3  fresh peer: ${events} events, ${saved.docs} documents (${saved.bytes} B saved): ${s.report.bytesSent} B to HQ in ${fmt(s.ms / 1000, 2)} s; compressing the JSON…`);
    const t = performance.now();
    const { json, count } = await eventsJson(post, 0);
    check(count === events, `fresh peer: GET /api/v1/events returned ${count} events`);
    const br = brotli11(json);
    return {
      events, docs: saved.docs, savedDocBytes: saved.bytes, toHq: s.report.bytesSent, total: wire(s.report), roundTrips: s.report.roundTrips, ms: s.ms,
      brotliJson: { jsonBytes: json.length, bytes: br, ms: performance.now() - t }, vsSaved: s.report.bytesSent / saved.bytes, vsBrotli: s.report.bytesSent / br,
    };
  } finally {
    await close(post, hq);
  }
}

// ---------------------------------------------------------------------------------------------
// 4  HQ merges every post (in a child process)

interface MergeChild {
  bundles: number; bundleBytes: number; events: number; viewEvents: number; expected: number; parcels: number; docs: number; refused: number;
  openSeconds: number; mergeSeconds: number; stopSeconds: number; wallSeconds: number; eventsPerSecond: number;
  rss: { baseMB: number; sampledPeakMB: number; sampledPeakAt: string; atPeak: { heapUsedMB: number; externalMB: number; arrayBuffersMB: number }; maxRssMB: number };
  cpu: { userSeconds: number; systemSeconds: number };
  hqDirBytes: number;
  perPost: { file: string; bytes: number; chunks: number; events: number; ms: number; rssMB: number }[];
}

interface MergeResult {
  posts: number; eventsPerPost: number; expected: number; exportSeconds: number; childSeconds: number; child: MergeChild; profile: string | null;
  /** Percent of all CPUs other processes used while the child merged. */
  otherWorkPercent: number;
  pass: { seconds: boolean; rss: boolean; count: boolean } }

async function hqMerge(work: string, cacheDir: string): Promise<MergeResult> {
  const hqDir = join(work, 'merge-hq');
  const bundleDir = join(work, 'bundles');
  mkdirSync(bundleDir, { recursive: true });
  const expected = CFG.hqPosts * CFG.eventsPerPost;
  note(`4  HQ merge: exporting ${CFG.hqPosts} bundles for a fresh HQ…`);
  const t0 = performance.now();
  const hq = openGateway(hqDir, HQ_ID, 'hq');
  const to = { id: hq.identity.id, role: hq.identity.role, publicKey: hq.identity.publicKey };
  for (let i = 0; i < CFG.hqPosts; i++) {
    const p = openGateway(join(cacheDir, postId(i)), postId(i), 'post');
    try {
      hq.sync.enroll({ id: p.identity.id, role: p.identity.role, publicKey: p.identity.publicKey });
      const b = exportBundle(p.sync, [to], null);
      writeFileSync(join(bundleDir, `${postId(i)}.bundle`), b.bytes);
    } finally {
      await p.stop();
    }
  }
  await hq.stop();
  const exportSeconds = (performance.now() - t0) / 1000;
  note(`   bundles exported in ${fmt(exportSeconds, 1)} s; merging in a child process${PROFILE ? ' (--cpu-prof)' : ''}…`);
  const profDir = PROFILE ? join(ROOT, 'bench', 'results', `sync-prof-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
  if (profDir) mkdirSync(profDir, { recursive: true });
  const cpu0 = cpuTimes();
  const r = await runChild(['merge', hqDir, bundleDir, String(expected)], { ...(profDir ? { cpuProfDir: profDir } : {}), onStderr: (l) => note(l) });
  const busy = busyPercent(cpu0, cpuTimes());
  if (r.code !== 0) throw new Error(`merge child failed (exit ${r.code}, signal ${r.signal})`);
  const lines = r.stdout.trim().split('\n');
  const child = JSON.parse(lines[lines.length - 1]!) as MergeChild;
  // What other processes took of the machine meanwhile (all CPUs busy, less the child's own share).
  const childShare = (100 * (child.cpu.userSeconds + child.cpu.systemSeconds)) / r.seconds / os.cpus().length;
  const otherWorkPercent = Math.max(0, busy - childShare);
  if (otherWorkPercent > 15) note(`   warning: other processes used ${fmt(otherWorkPercent, 0)}% of the CPUs during the merge; its timing is pessimistic`);
  check(child.viewEvents === expected, `HQ merge: HQ's events view holds ${child.viewEvents}, expected ${expected}`);
  check(child.refused === 0, `HQ merge: ${child.refused} chunks refused`);
  let profile: string | null = null;
  if (profDir) {
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(profDir, f));
    profile = files.sort((a, b) => statSync(b).size - statSync(a).size)[0] ?? null;
  }
  return {
    posts: CFG.hqPosts, eventsPerPost: CFG.eventsPerPost, expected, exportSeconds, childSeconds: r.seconds, child, profile, otherWorkPercent,
    pass: { seconds: child.wallSeconds <= TARGETS.hqSeconds, rss: child.rss.maxRssMB <= TARGETS.hqRssMB, count: child.viewEvents === expected },
  };
}

// ---------------------------------------------------------------------------------------------
// CPU profile summary

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }

/** Top functions of a .cpuprofile by self time and by total time (a function counted once per stack). */
function summariseProfile(file: string, top = 15): { self: { fn: string; ms: number; pct: number }[]; total: { fn: string; ms: number; pct: number }[] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: ProfileNode) => {
    const f = n.callFrame;
    const url = f.url.replace(/^file:\/\//, '').replace(ROOT + '/', '');
    return `${f.functionName || '(anonymous)'} ${url ? `${url}:${f.lineNumber + 1}` : ''}`.trim();
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  p.samples.forEach((id, k) => {
    const dt = (p.timeDeltas[k + 1] ?? 0) / 1000;
    all += dt;
    const n = byId.get(id)!;
    self.set(name(n), (self.get(name(n)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const nm = name(byId.get(cur)!);
      if (seen.has(nm)) continue;
      seen.add(nm);
      total.set(nm, (total.get(nm) ?? 0) + dt);
    }
  });
  const rank = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([fn, ms]) => ({ fn, ms, pct: (100 * ms) / all }));
  return { self: rank(self), total: rank(new Map([...total].filter(([fn]) => !/^\((root|program|idle)\)/.test(fn)))) };
}

// ---------------------------------------------------------------------------------------------
// Report

/** The commit measured and the uncommitted changes under src/ (the numbers are of the working tree). */
function sourceState(): { commit: string | null; changedSrc: string[] } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const changedSrc = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
    return { commit, changedSrc };
  } catch {
    return { commit: null, changedSrc: [] };
  }
}

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

const kb = (b: number) => fmt(b / 1024, 1);
const pf = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
/** PASS/FAIL, or "not run" for a step left out with --only. */
const verdict = (measured: unknown, ok: boolean) => (measured === null || measured === undefined ? 'not run' : pf(ok));

async function main(): Promise<number> {
  const cpus = os.cpus();
  const machine = {
    cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', totalMemMB: Math.round(os.totalmem() / MB),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`, node: process.version, date: new Date().toISOString(),
    busyPercentAtStart: await otherCpuBusy(1000),
  };
  const source = sourceState();
  process.stdout.write(`posko sync benchmark${QUICK ? ' (--quick)' : ''}: ${machine.cpus} x ${machine.cpuModel}, node ${machine.node}; CPUs ${fmt(machine.busyPercentAtStart, 0)}% busy before start\n`);
  if (machine.busyPercentAtStart > 20) process.stdout.write(`warning: other processes were using ${fmt(machine.busyPercentAtStart, 0)}% of the CPUs; timings will be low and noisy\n`);
  const tStart = performance.now();
  const work = mkdtempSync(join(os.tmpdir(), 'posko-sync-bench-'));
  let failure: string | undefined;
  let prep: PrepareResult | undefined;
  let inc: Awaited<ReturnType<typeof incremental>> | undefined;
  let nothing: NothingResult | undefined;
  let fresh: FreshResult | undefined;
  let merge: MergeResult | undefined;
  const stepSeconds: Record<string, number> = {};
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try { return await f(); } finally { stepSeconds[name] = (performance.now() - t) / 1000; }
  };
  try {
    if (ONLY.has('fresh') || ONLY.has('merge')) prep = await step('prepare', preparePosts);
    if (ONLY.has('incremental')) inc = await step('incremental', () => incremental(work));
    if (ONLY.has('nothing')) nothing = await step('nothingChanged', () => nothingChanged(work));
    if (ONLY.has('fresh')) fresh = await step('freshPeer', () => freshPeer(work, prep!.cacheDir));
    if (ONLY.has('merge')) merge = await step('hqMerge', () => hqMerge(work, prep!.cacheDir));
  } catch (e) {
    failure = (e as Error).stack ?? String(e);
  } finally {
    if (flags['keep-data']) process.stdout.write(`data kept in ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }

  const out: string[] = [''];
  if (inc) {
    out.push(`1  incremental sync (post -> HQ over a direct transport; HQ already had ${CFG.incrementalBase} events; initial sync ${kb(inc.initial.bytes)} KB, then ${inc.steady.bytes} B / ${inc.steady.roundTrips} round trip)`);
    out.push(table(
      ['new events', 'changes', 'posko KB', 'RT', 'brotli JSON KB', 'posko/JSON', 'naive KB', 'naive br KB', 'msgs', 'RT', 'naive/JSON', 'target', ''],
      inc.rows.map((r) => [
        `${r.events}${r.foldEvery < r.events ? ` (fold/${r.foldEvery})` : ''}`, String(r.naive.changes), kb(r.posko.bytes), String(r.posko.roundTrips), kb(r.brotliJson.bytes), `${fmt(r.ratio, 2)}x`,
        kb(r.naive.bytes), kb(r.naive.brotliBytes), String(r.naive.messages), fmt(r.naive.roundTrips, 1), `${fmt(r.naiveRatio, 2)}x`, `<= ${TARGETS.incrementalRatio}x`, pf(r.pass),
      ]),
    ));
    out.push('   posko KB: whole sealed messages both ways; naive: plain Automerge sync of the post\'s ledger documents (fresh sync states), raw message');
    out.push('   bytes (naive br: each message brotli-11 on its own), messages and round trips (messages/2 of the longest document); JSON: GET /api/v1/events, one array');
    out.push(`   naive detail: ${inc.rows.map((r) => `${r.events}: ${r.naive.docs} docs (${r.naive.changedDocs} changed: ${kb(r.naive.changedOnly.bytes)} KB in ${r.naive.changedOnly.messages} msgs)`).join('; ')}`);
    out.push('');
  }
  if (nothing) {
    out.push(`2  nothing changed (${nothing.docs} documents at the post, ${nothing.hqDocs} at HQ; the first sync moved ${kb(nothing.first.bytes)} KB in ${fmt(nothing.first.ms / 1000, 1)} s)`);
    out.push(table(['sync', 'round trips', 'bytes', 'sent', 'received', 'ms', 'target', ''], [
      ['second', String(nothing.second.roundTrips), String(nothing.second.bytes), String(nothing.second.bytesSent), String(nothing.second.bytesReceived), fmt(nothing.second.ms, 1),
        `${TARGETS.nothingRoundTrips} RT, <= ${TARGETS.nothingBytes} B`, pf(nothing.pass.roundTrips && nothing.pass.bytes)],
    ]));
    out.push('');
  }
  if (fresh) {
    out.push(`3  fresh peer (a brand-new HQ syncs a post with ${fresh.events} events in ${fresh.docs} documents)`);
    out.push(table(['to HQ KB', 'total KB', 'RT', 'seconds', 'saved docs KB', 'vs saved', 'brotli JSON KB', 'vs JSON', 'JSON KB'], [[
      kb(fresh.toHq), kb(fresh.total), String(fresh.roundTrips), fmt(fresh.ms / 1000, 2), kb(fresh.savedDocBytes), `${fmt(fresh.vsSaved, 2)}x`,
      kb(fresh.brotliJson.bytes), `${fmt(fresh.vsBrotli, 2)}x`, kb(fresh.brotliJson.jsonBytes),
    ]]));
    out.push('');
  }
  if (merge) {
    const c = merge.child;
    out.push(`4  HQ merges ${merge.posts} posts x ${merge.eventsPerPost} events (one bundle per post, imported in a fresh child process; posts prepared ${prep?.reused ? 'by an earlier run' : 'now'} in ${fmt(prep?.seconds, 0)} s; bundles exported in ${fmt(merge.exportSeconds, 1)} s)`);
    out.push(table(['events', 'bundles MB', 'open s', 'merge s', 'wall s', 'events/s', 'maxRSS MB', 'sampled peak MB', 'base MB', 'HQ events', 'parcels', 'HQ dir MB', 'stop s'], [[
      String(c.events), fmt(c.bundleBytes / MB, 1), fmt(c.openSeconds, 2), fmt(c.mergeSeconds, 1), fmt(c.wallSeconds, 1), fmt(c.eventsPerSecond, 0),
      fmt(c.rss.maxRssMB, 0), fmt(c.rss.sampledPeakMB, 0), fmt(c.rss.baseMB, 0), String(c.viewEvents), String(c.parcels), fmt(c.hqDirBytes / MB, 0), fmt(c.stopSeconds, 1),
    ]]));
    const ms = c.perPost.map((p) => p.ms);
    out.push(`   per bundle: ${fmt(Math.min(...ms) / 1000, 2)}-${fmt(Math.max(...ms) / 1000, 2)} s (first ${fmt(ms[0]! / 1000, 2)} s, last ${fmt(ms[ms.length - 1]! / 1000, 2)} s); RSS after each: ${c.perPost.map((p) => fmt(p.rssMB, 0)).join(' ')}`);
    out.push(`   at the sampled peak (${c.rss.sampledPeakAt}): JS heap ${fmt(c.rss.atPeak.heapUsedMB, 0)} MB, external ${fmt(c.rss.atPeak.externalMB, 0)} MB (array buffers ${fmt(c.rss.atPeak.arrayBuffersMB, 0)} MB, incl. the Automerge WebAssembly memory)`);
    out.push(`   child CPU: user ${fmt(c.cpu.userSeconds, 1)} s, system ${fmt(c.cpu.systemSeconds, 1)} s; child process ${fmt(merge.childSeconds, 1)} s including node/tsx start-up and stop; other processes used ${fmt(merge.otherWorkPercent, 0)}% of the CPUs meanwhile`);
    out.push('');
  }
  if (prep) {
    const ps = prep.posts;
    const sum = (f: (p: PrepareResult['posts'][number]) => number) => ps.reduce((n, p) => n + f(p), 0);
    out.push(`0  preparation: ${prep.reused ? 'reused cache' : 'built now'}: ${fmt(prep.seconds, 1)} s wall for ${CFG.hqPosts} x ${CFG.eventsPerPost} events in ${CFG.prepareWorkers} processes`
      + (ps.length ? `; per post ingest ${fmt(sum((p) => p.ingestSeconds) / ps.length, 2)} s, fold ${fmt(sum((p) => p.foldSeconds) / ps.length, 2)} s (${fmt((1000 * sum((p) => p.foldSeconds)) / sum((p) => p.events), 3)} ms/event), ${fmt(sum((p) => p.docBytes) / ps.length / 1024, 0)} KB of documents, data dir ${fmt(sum((p) => p.dirBytes) / ps.length / MB, 1)} MB` : ''));
    out.push('');
  }
  const targets = {
    incremental: inc?.rows.map((r) => ({ events: r.events, foldEvery: r.foldEvery, target: `<= ${TARGETS.incrementalRatio}x brotli JSON`, measured: r.ratio, pass: r.pass })) ?? [],
    nothingChangedRoundTrips: { target: `${TARGETS.nothingRoundTrips}`, measured: nothing?.second.roundTrips ?? null, pass: nothing?.pass.roundTrips ?? false },
    nothingChangedBytes: { target: `<= ${TARGETS.nothingBytes} B`, measured: nothing?.second.bytes ?? null, pass: nothing?.pass.bytes ?? false },
    hqMergeSeconds: { target: `<= ${TARGETS.hqSeconds} s`, measured: merge?.child.wallSeconds ?? null, pass: merge?.pass.seconds ?? false },
    hqMergeRss: { target: `<= ${TARGETS.hqRssMB} MB`, measured: merge?.child.rss.maxRssMB ?? null, pass: merge?.pass.rss ?? false },
    hqMergeCount: { target: `${CFG.hqPosts * CFG.eventsPerPost} events at HQ`, measured: merge?.child.viewEvents ?? null, pass: merge?.pass.count ?? false },
  };
  out.push(`targets${QUICK ? ' (--quick: HQ is 10 x 5,000, not 50 x 20,000: indicative only)' : ''}`);
  out.push(table(['target', 'goal', 'measured', ''], [
    ...targets.incremental.map((t) => [`incremental ${t.events}${t.foldEvery < t.events ? ` (fold/${t.foldEvery})` : ''} events`, t.target, `${fmt(t.measured, 2)}x`, pf(t.pass)]),
    ['nothing changed, 1,000 docs', '1 round trip', String(targets.nothingChangedRoundTrips.measured ?? '-'), verdict(targets.nothingChangedRoundTrips.measured, targets.nothingChangedRoundTrips.pass)],
    ['nothing changed, 1,000 docs', targets.nothingChangedBytes.target, `${targets.nothingChangedBytes.measured ?? '-'} B`, verdict(targets.nothingChangedBytes.measured, targets.nothingChangedBytes.pass)],
    [`HQ merge ${CFG.hqPosts} x ${CFG.eventsPerPost}`, targets.hqMergeSeconds.target, `${fmt(targets.hqMergeSeconds.measured, 1)} s`, verdict(targets.hqMergeSeconds.measured, targets.hqMergeSeconds.pass)],
    [`HQ merge ${CFG.hqPosts} x ${CFG.eventsPerPost}`, targets.hqMergeRss.target, `${fmt(targets.hqMergeRss.measured, 0)} MB`, verdict(targets.hqMergeRss.measured, targets.hqMergeRss.pass)],
    [`HQ merge ${CFG.hqPosts} x ${CFG.eventsPerPost}`, targets.hqMergeCount.target, String(targets.hqMergeCount.measured ?? '-'), verdict(targets.hqMergeCount.measured, targets.hqMergeCount.pass)],
  ]));
  let profileSummary: ReturnType<typeof summariseProfile> | null = null;
  if (merge?.profile) {
    profileSummary = summariseProfile(merge.profile);
    out.push('', `merge child CPU profile: ${relative(ROOT, merge.profile)}`, 'top self time:');
    for (const f of profileSummary.self) out.push(`  ${fmt(f.pct, 1).padStart(5)}%  ${fmt(f.ms / 1000, 2).padStart(6)} s  ${f.fn}`);
    out.push('top total time:');
    for (const f of profileSummary.total) out.push(`  ${fmt(f.pct, 1).padStart(5)}%  ${fmt(f.ms / 1000, 2).padStart(6)} s  ${f.fn}`);
  }
  process.stdout.write(out.join('\n') + '\n');

  const summary = {
    benchmark: 'posko sync', quick: QUICK, profiled: PROFILE, machine, source, config: CFG, targets,
    prepare: prep ?? null, incremental: inc ?? null, nothingChanged: nothing ?? null, freshPeer: fresh ?? null, hqMerge: merge ?? null,
    profileSummary, stepSeconds, problems, failure: failure ?? null, totalSeconds: (performance.now() - tStart) / 1000,
  };
  const outDir = join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const partial = flags.only ? `.only-${[...ONLY].sort().join('-')}` : '';
  const outFile = join(outDir, `sync${QUICK ? '.quick' : ''}${partial}${PROFILE ? '.profiled' : ''}.json`);
  writeFileSync(outFile, JSON.stringify(summary, null, 2) + '\n');
  process.stdout.write(`\nresults: ${outFile} (total ${fmt(summary.totalSeconds, 1)} s: ${Object.entries(stepSeconds).map(([k, v]) => `${k} ${fmt(v, 1)} s`).join(', ')})\n`);
  if (failure) process.stderr.write(`bench: ${failure}\n`);
  const ok = !failure && problems.length === 0;
  process.stdout.write(ok ? 'status: every sync complete, every count right\n' : `status: FAILED (${[...problems, failure ? 'an error stopped the run' : ''].filter(Boolean).join('; ')}), exit 1\n`);
  return ok ? 0 : 1;
}

main().then(
  (code) => { process.exitCode = code; },
  (e: unknown) => { process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`); process.exitCode = 1; },
);
