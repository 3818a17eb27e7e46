/**
 * What the sync benchmark's two processes share (bench/sync.ts and its child bench/sync-child.ts):
 * real gateways opened in-process on a data dir (nothing listens), realistic per-post scan streams,
 * enrolment, a direct transport, and child-process plumbing. Importing it runs nothing.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.ts';
import type { ScanInput } from '../src/domain/events.ts';
import { Gateway } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { serve, type Transport } from '../src/sync/session.ts';
import { childEnv, COMPANY_PREFIX, gs1CheckDigit, ITEMS, prng, ROOT } from './harness.ts';

/** The admin token of every bench gateway (they never listen; the API is called in-process). */
export const ADMIN_TOKEN = 'x'.repeat(20);
export const HQ_ID = 'KKR-HQ';
/** Events per fold while preparing posts: a post folds every few seconds, a few hundred to 2,000 events each. */
export const FOLD_EVERY = 1000;

/** A real gateway on `dataDir`, not listening: ingest, fold, sync and the app are all usable. */
export function openGateway(dataDir: string, postId: string, role: 'post' | 'hq'): Gateway {
  const config = loadConfig({}, {
    dataDir, postId, role, httpPort: '0', httpHost: '127.0.0.1', logLevel: 'silent', foldIntervalMs: '3600000',
    mqttPort: '0', mqttHost: '127.0.0.1', adminToken: ADMIN_TOKEN,
  });
  return new Gateway(config, { log: createLogger('silent') });
}

/** Enrolls each gateway at the other (what `posko enroll` does on both sides). */
export function introduce(a: Gateway, b: Gateway): void {
  a.sync.enroll({ id: b.identity.id, role: b.identity.role, publicKey: b.identity.publicKey });
  b.sync.enroll({ id: a.identity.id, role: a.identity.role, publicKey: a.identity.publicKey });
}

/** A transport that hands each message straight to the peer's `serve` (no network, no HTTP). */
export function direct(to: Gateway): Transport {
  return { label: `direct:${to.identity.id}`, exchange: async (m) => serve(to.sync, m) };
}

/** The id of generated post `i` (0-based): KKR-P01, KKR-P02, … */
export function postId(i: number): string {
  return `KKR-P${String(i + 1).padStart(2, '0')}`;
}

const ORGS = ['BPBD', 'Dinsos', 'PMI', 'BNPB', 'TNI', 'Polri', 'Baznas', 'ACT'] as const;
const UNIT: Record<string, string> = { BERAS: 'kg', MIE: 'dus', AIRGELAS: 'dus', HYGKIT: 'paket', FAMKIT: 'paket' };
const EAN13: Record<string, string> = Object.fromEntries(
  ITEMS.map((item, i) => {
    const body = `${COMPANY_PREFIX}${String(10_001 + i).padStart(5, '0')}`;
    return [item, body + gs1CheckDigit(body)];
  }),
);

/** A GS1 SSCC (18 digits, valid check digit) unique per (post index, serial). */
export function sscc(postIndex: number, serial: number): string {
  const body = `${serial % 10}${COMPANY_PREFIX}${String(postIndex).padStart(2, '0')}${String(Math.floor(serial / 10)).padStart(7, '0')}`;
  return body + gs1CheckDigit(body);
}

interface Held { code: string; item: string; org: string }

/**
 * One post's scans: SSCC-labelled parcels received (item, qty, unit, org), later dispatched to the
 * next post or distributed; ~10% EAN-13 bulk lines with a quantity; and, when `incoming` is given,
 * receipts of the parcels the previous post dispatched here (so HQ sees parcels cross posts).
 * About half receipts, a quarter dispatches, a fifth distributions. Deterministic for a given post
 * index. (The upstream parcels are those of the previous post's own stream, which its incoming
 * receipts shift a little: a few receipts here match no dispatch there, as in the field.)
 */
export class ScanStream {
  private readonly rnd: () => number;
  private serial = 0;
  private seq = 0;
  private readonly inStore: Held[] = [];
  private readonly incoming: Held[];
  /** Every parcel this stream dispatched, by destination. */
  readonly dispatched: Held[] = [];

  constructor(
    private readonly postIndex: number,
    private readonly post: string,
    private readonly nextPost: string,
    incoming: Held[] = [],
    private readonly incomingShare = 0.12,
  ) {
    this.rnd = prng(0x5eed + postIndex * 7919);
    this.incoming = [...incoming];
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!;
  }

  next(): ScanInput {
    const id = `${this.post}-${++this.seq}`;
    if (this.incoming.length > 0 && this.rnd() < this.incomingShare) {
      const p = this.incoming.shift()!;
      this.inStore.push(p);
      return { code: `]C100${p.code}`, action: 'receive', id, item: p.item, org: p.org, unit: UNIT[p.item]! };
    }
    const r = this.rnd();
    if (r < 0.1) {
      const item = this.pick(ITEMS);
      const receive = this.rnd() < 0.6;
      return {
        code: EAN13[item]!, action: receive ? 'receive' : 'distribute', id, item, unit: UNIT[item]!, qty: 5 + Math.floor(this.rnd() * 46),
        ...(receive ? { org: this.pick(ORGS) } : {}),
      };
    }
    if (this.inStore.length < 50 || r < 0.55) {
      const item = this.pick(ITEMS);
      const held = { code: sscc(this.postIndex, this.serial++), item, org: this.pick(ORGS) };
      this.inStore.push(held);
      return { code: `]C100${held.code}`, action: 'receive', id, item, org: held.org, unit: UNIT[item]!, qty: 1 + Math.floor(this.rnd() * 20) };
    }
    const k = Math.floor(this.rnd() * this.inStore.length);
    const held = this.inStore[k]!;
    this.inStore[k] = this.inStore[this.inStore.length - 1]!;
    this.inStore.pop();
    if (this.rnd() < 0.6) {
      this.dispatched.push(held);
      return { code: `]C100${held.code}`, action: 'dispatch', id, to: this.nextPost };
    }
    return { code: `]C100${held.code}`, action: 'distribute', id };
  }

  take(n: number): ScanInput[] {
    return Array.from({ length: n }, () => this.next());
  }
}

/**
 * The scans of post `i` of a ring of `posts` (each dispatches to the next): its own stream, with
 * receipts of what the previous post dispatched to it mixed in.
 */
export function ringScans(i: number, posts: number, n: number): ScanInput[] {
  const prev = (i - 1 + posts) % posts;
  const upstream = new ScanStream(prev, postId(prev), postId(i));
  upstream.take(n);
  return new ScanStream(i, postId(i), postId((i + 1) % posts), posts > 1 ? upstream.dispatched : []).take(n);
}

/** Ingests scans through the real path in batches of 100; throws if any is not created. */
export function ingestAll(gw: Gateway, scans: readonly ScanInput[], batch = 100): void {
  for (let k = 0; k < scans.length; k += batch) {
    const part = scans.slice(k, k + batch);
    const results = gw.ingest.ingest(part, { device: null });
    const bad = results.find((r) => r.status !== 'created');
    if (bad) throw new Error(`scan not created: ${JSON.stringify(bad).slice(0, 400)}`);
  }
}

/** The events in a gateway's views. */
export function eventCount(gw: Gateway): number {
  return gw.store.queries.count('events');
}

/** Runs `bench/sync-child.ts <args>` under node (optionally with --cpu-prof); stderr lines go to `onLine`. */
export function runChild(
  args: string[],
  opts: { cpuProfDir?: string; onStderr?: (line: string) => void; onStdoutLine?: (line: string) => void } = {},
): Promise<{ code: number | null; signal: string | null; stdout: string; seconds: number }> {
  const prof = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const t0 = performance.now();
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(ROOT, 'bench', 'sync-child.ts'), ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(),
  });
  let out = '';
  let outLine = '';
  let errLine = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    outLine += s;
    const lines = outLine.split('\n');
    outLine = lines.pop()!;
    for (const l of lines) opts.onStdoutLine?.(l);
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    errLine += s;
    const lines = errLine.split('\n');
    errLine = lines.pop()!;
    for (const l of lines) (opts.onStderr ?? ((x: string) => process.stderr.write(x + '\n')))(l);
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (errLine) (opts.onStderr ?? ((x: string) => process.stderr.write(x + '\n')))(errLine);
      if (outLine) opts.onStdoutLine?.(outLine);
      resolve({ code, signal, stdout: out, seconds: (performance.now() - t0) / 1000 });
    });
  });
}
