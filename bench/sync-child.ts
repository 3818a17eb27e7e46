/**
 * Child processes of the sync benchmark (bench/sync.ts starts them; not meant to be run by hand):
 *
 *   prepare <cacheDir> <eventsPerPost> <posts> <i,j,…>
 *       builds the data dirs of posts i, j, … of a ring of <posts> through the real ingest path
 *       (batches of 100) and the real fold (every FOLD_EVERY events), each in <cacheDir>/<post>.tmp,
 *       renamed to <cacheDir>/<post> once its gateway has stopped. One JSON line per post on stdout.
 *   merge <hqDir> <bundleDir> <expectedEvents>
 *       opens the HQ gateway on <hqDir> (posts already enrolled, nothing merged) in this fresh
 *       process and imports every bundle in <bundleDir>, in name order, the way `posko import`
 *       does; samples RSS while it works; prints one JSON line with the timings on stdout.
 *
 * Progress goes to stderr.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { importBundle } from '../src/sync/session.ts';
import { dirBytes } from './harness.ts';
import { eventCount, FOLD_EVERY, HQ_ID, ingestAll, openGateway, postId, ringScans } from './sync-lib.ts';

const MB = 2 ** 20;

function log(s: string): void {
  process.stderr.write(s + '\n');
}

async function prepare(cacheDir: string, perPost: number, posts: number, indices: number[]): Promise<void> {
  for (const i of indices) {
    const post = postId(i);
    const final = join(cacheDir, post);
    if (existsSync(final)) continue;
    const tmp = `${final}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const t0 = performance.now();
    const scans = ringScans(i, posts, perPost);
    const gw = openGateway(tmp, post, 'post');
    let ingestMs = 0;
    let foldMs = 0;
    for (let k = 0; k < scans.length; k += FOLD_EVERY) {
      let t = performance.now();
      ingestAll(gw, scans.slice(k, k + FOLD_EVERY));
      ingestMs += performance.now() - t;
      t = performance.now();
      gw.foldNow();
      foldMs += performance.now() - t;
    }
    const events = eventCount(gw);
    const docs = gw.store.docs.list();
    if (events !== perPost || docs.reduce((n, d) => n + d.events, 0) !== perPost) {
      throw new Error(`${post}: ${events} events in the views, ${docs.reduce((n, d) => n + d.events, 0)} in the ledger; expected ${perPost}`);
    }
    await gw.stop();
    renameSync(tmp, final);
    const result = {
      post, events, docs: docs.length, docBytes: docs.reduce((n, d) => n + d.snapshotBytes + d.chunkBytes, 0), dirBytes: dirBytes(final),
      ingestSeconds: ingestMs / 1000, foldSeconds: foldMs / 1000, seconds: (performance.now() - t0) / 1000,
      rssMB: process.memoryUsage().rss / MB,
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  }
}

async function merge(hqDir: string, bundleDir: string, expected: number): Promise<void> {
  const baseRss = process.memoryUsage().rss;
  let peakRss = baseRss;
  let peakAt = 'start';
  let peakMem = process.memoryUsage();
  let where = 'open';
  const sample = () => {
    const m = process.memoryUsage();
    if (m.rss > peakRss) { peakRss = m.rss; peakAt = where; peakMem = m; }
  };
  // Imports are synchronous, so the timer only samples between bundles; the progress callback
  // samples after every chunk inside one.
  const timer = setInterval(sample, 20);
  const t0 = performance.now();
  const gw = openGateway(hqDir, HQ_ID, 'hq');
  const openMs = performance.now() - t0;
  const files = readdirSync(bundleDir).filter((f) => f.endsWith('.bundle')).sort();
  const perPost: { file: string; bytes: number; chunks: number; events: number; ms: number; rssMB: number }[] = [];
  let refused = 0;
  let events = 0;
  let bytes = 0;
  const tm = performance.now();
  for (const [k, file] of files.entries()) {
    where = file;
    const t = performance.now();
    const data = readFileSync(join(bundleDir, file));
    const r = importBundle(gw.sync, data, sample);
    sample();
    refused += r.refused.length;
    events += r.events;
    bytes += data.length;
    perPost.push({ file, bytes: data.length, chunks: r.chunks, events: r.events, ms: performance.now() - t, rssMB: process.memoryUsage().rss / MB });
    if (r.refused.length > 0) log(`merge: ${file}: refused ${JSON.stringify(r.refused.slice(0, 3))}`);
    const elapsed = (performance.now() - tm) / 1000;
    log(`  merge ${k + 1}/${files.length} ${file}: ${r.events} events in ${fmtS(performance.now() - t)}; total ${events} events, ${elapsed.toFixed(1)} s, rss ${(process.memoryUsage().rss / MB).toFixed(0)} MB`);
  }
  const mergeMs = performance.now() - tm;
  where = 'counting';
  const viewEvents = eventCount(gw);
  const parcels = gw.store.queries.count('parcels');
  const docs = gw.store.docs.list().length;
  where = 'stop';
  const ts = performance.now();
  await gw.stop();
  const stopMs = performance.now() - ts;
  clearInterval(timer);
  sample();
  const ru = process.resourceUsage();
  process.stdout.write(JSON.stringify({
    bundles: files.length, bundleBytes: bytes, events, viewEvents, expected, parcels, docs, refused,
    openSeconds: openMs / 1000, mergeSeconds: mergeMs / 1000, stopSeconds: stopMs / 1000,
    /** Open through the last import: what "HQ merges" costs. */
    wallSeconds: (openMs + mergeMs) / 1000,
    eventsPerSecond: events / (mergeMs / 1000),
    rss: {
      baseMB: baseRss / MB,
      sampledPeakMB: peakRss / MB,
      sampledPeakAt: peakAt,
      atPeak: { heapUsedMB: peakMem.heapUsed / MB, externalMB: peakMem.external / MB, arrayBuffersMB: peakMem.arrayBuffers / MB },
      /** getrusage ru_maxrss (KiB on Linux): the true peak, including moments between samples. */
      maxRssMB: (ru.maxRSS * 1024) / MB,
    },
    cpu: { userSeconds: ru.userCPUTime / 1e6, systemSeconds: ru.systemCPUTime / 1e6 },
    hqDirBytes: dirBytes(hqDir),
    perPost,
  }) + '\n');
}

function fmtS(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === 'prepare' && args.length === 4) {
    await prepare(args[0]!, Number(args[1]), Number(args[2]), args[3]!.split(',').filter(Boolean).map(Number));
  } else if (mode === 'merge' && args.length === 3) {
    await merge(args[0]!, args[1]!, Number(args[2]));
  } else {
    throw new Error('usage: sync-child.ts prepare <cacheDir> <eventsPerPost> <posts> <i,j,…> | merge <hqDir> <bundleDir> <expectedEvents>');
  }
}

main().then(
  () => { process.exitCode = 0; },
  (e: unknown) => { process.stderr.write(`sync-child: ${(e as Error).stack ?? String(e)}\n`); process.exitCode = 1; },
);
