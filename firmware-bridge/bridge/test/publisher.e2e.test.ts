/**
 * The publisher against a REAL gateway (its embedded MQTT broker on a free port): buffered scans
 * are delivered and recorded exactly once under `DEMO/<device>/seq-<n>`; a restart delivers what
 * was buffered meanwhile; a gateway that is unreachable (a TCP proxy that stops listening) gets
 * the scans once it returns; a connection cut mid-stream (`client.stream.destroy()`) still ends
 * with every scan exactly once; a final rejection leaves the buffer with its error code; a full
 * gateway disk (STORAGE_FULL) keeps the scans buffered and they go through once space returns.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddedEnv, type MqttEnv } from '../../../test/helpers/mqtt.ts';
import { ScanBuffer } from '../buffer.ts';
import { Publisher, type Feedback, type PublisherOptions } from '../publisher.ts';

const GS1 = ']C1' + '0109506000134352' + '\u001d' + '10ABC';

let env: MqttEnv;
const dir = mkdtempSync(join(tmpdir(), 'posko-pub-'));
const publishers: Publisher[] = [];
beforeAll(async () => { env = await embeddedEnv(); });
afterAll(async () => {
  for (const p of publishers) await p.stop();
  await env?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A publisher with test-friendly timings, stopped in afterAll if the test did not. */
function publisher(dev: { id: string; token: string }, buffer: ScanBuffer, extra: Partial<PublisherOptions> = {}): Publisher & { feedback: Feedback[] } {
  const p = new Publisher({ url: env.url, post: 'DEMO', device: dev.id, token: dev.token, buffer, backoffMinMs: 100, backoffMaxMs: 1000, resendAfterMs: 3000, ...extra });
  const feedback: Feedback[] = [];
  p.on('feedback', (f) => feedback.push(f));
  publishers.push(p);
  return Object.assign(p, { feedback });
}

/** Every event the gateway recorded for `device`, by idempotency key. */
async function keyCounts(device: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let after = '0';
  for (;;) {
    const r = await env.g.call('GET', `/api/v1/events?limit=1000&after=${after}`);
    expect(r.status).toBe(200);
    for (const e of r.body.events as { device: string; key: string }[]) if (e.device === device) counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
    if (!r.body.next || r.body.events.length === 0) return counts;
    after = r.body.next;
  }
}

/** Asserts the gateway has exactly these seqs of `device`, each once, and nothing else. */
async function expectExactlyOnce(device: string, seqs: number[]): Promise<void> {
  const counts = await keyCounts(device);
  const want = seqs.map((s) => `DEMO/${device}/seq-${s}`).sort();
  expect([...counts.keys()].sort()).toEqual(want);
  expect([...counts.values()].every((n) => n === 1)).toBe(true);
}

async function until(pred: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function deviceRow(id: string): Promise<{ online: boolean | null; firmware: string | null }> {
  const r = await env.g.call('GET', '/api/v1/devices');
  return (r.body.devices as { id: string; online: boolean | null; firmware: string | null }[]).find((d) => d.id === id)!;
}

/** A TCP proxy in front of the broker that can stop listening (gateway unreachable) and return. */
class Proxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly target: number) {}
  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target, '127.0.0.1');
      for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
        this.sockets.add(a);
        a.on('error', () => b.destroy());
        a.on('close', () => { b.destroy(); this.sockets.delete(a); });
        a.pipe(b);
      }
    });
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', () => r()));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }
  async down(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

describe('publisher against a real gateway', () => {
  let dev: { id: string; token: string };
  let journal: string;
  const allSeqs: number[] = [];
  beforeAll(async () => {
    dev = await env.addDevice('pi-bridge');
    journal = join(dir, `${dev.id}.jsonl`);
  });

  it('delivers scans buffered before it started, each exactly once, and reports its status', async () => {
    const buffer = ScanBuffer.open(journal);
    for (let i = 0; i < 20; i++) allSeqs.push(buffer.append(`PSK1:DEMO:PI-${i}`, { action: 'receive', qty: 1, item: 'BERAS' }).seq);
    allSeqs.push(buffer.append(GS1, { action: 'receive', qty: 5 }).seq);
    const p = publisher(dev, buffer);
    p.start();
    expect(await p.drained(15_000)).toBe(true);
    await expectExactlyOnce(dev.id, allSeqs);
    expect(p.feedback.map((f) => f.status)).toEqual(allSeqs.map(() => 'accepted'));
    expect(p.feedback.find((f) => f.code === GS1)?.parcel?.id).toMatch(/^gtin:09506000134352/);
    await until(async () => (await deviceRow(dev.id)).online === true);
    expect((await deviceRow(dev.id)).firmware).toBe('posko-bridge 0.1.0');
    // Scans arriving while it runs go straight out.
    allSeqs.push(buffer.append('PSK1:DEMO:PI-LIVE', { action: 'receive' }).seq);
    p.kick();
    expect(await p.drained(10_000)).toBe(true);
    await expectExactlyOnce(dev.id, allSeqs);
    await p.stop();
    expect((await deviceRow(dev.id)).online).toBe(false);
    buffer.close();
  });

  it('delivers what was buffered while it was stopped, after a restart on the reopened journal', async () => {
    const offline = ScanBuffer.open(journal);
    expect(offline.pendingCount).toBe(0);
    for (let i = 0; i < 15; i++) allSeqs.push(offline.append(`PSK1:DEMO:PI-OFF-${i}`, { action: 'receive' }).seq);
    offline.close(); // e.g. a reboot
    const buffer = ScanBuffer.open(journal);
    expect(buffer.pendingCount).toBe(15);
    const p = publisher(dev, buffer);
    p.start();
    expect(await p.drained(15_000)).toBe(true);
    await expectExactlyOnce(dev.id, allSeqs);
    await p.stop();
    buffer.close();
  });

  it('keeps exactly-once when its connection is cut mid-stream (client.stream.destroy())', async () => {
    const buffer = ScanBuffer.open(journal);
    for (let i = 0; i < 300; i++) allSeqs.push(buffer.append(`PSK1:DEMO:PI-CUT-${i}`, { action: 'receive', qty: 1 }).seq);
    const p = publisher(dev, buffer, { window: 50 });
    let cuts = 0;
    p.on('feedback', () => {
      if ((p.feedback.length === 40 || p.feedback.length === 160) && p.client) { cuts++; p.client.stream.destroy(); }
    });
    p.start();
    expect(await p.drained(30_000)).toBe(true);
    expect(cuts).toBe(2);
    expect(p.stats.connects).toBeGreaterThanOrEqual(3);
    await expectExactlyOnce(dev.id, allSeqs);
    // Each scan got exactly one final outcome; a resend's second answer was recognised and ignored.
    expect(new Set(p.feedback.map((f) => f.seq)).size).toBe(p.feedback.length);
    expect(p.feedback.every((f) => f.status === 'accepted' || f.status === 'duplicate')).toBe(true);
    await p.stop();
    buffer.close();
  });

  it('buffers while the gateway is unreachable and delivers once it is back', async () => {
    const d = await env.addDevice('pi-bridge-far');
    const proxy = new Proxy(Number(new URL(env.url).port));
    await proxy.up();
    await proxy.down(); // the gateway is not reachable (nothing listens on the port)
    const buffer = ScanBuffer.open(join(dir, `${d.id}.jsonl`));
    const seqs = [buffer.append('PSK1:DEMO:FAR-0', { action: 'receive' }).seq];
    const p = publisher(d, buffer, { url: `mqtt://127.0.0.1:${proxy.port}`, backoffMinMs: 50, backoffMaxMs: 200 });
    const offline: string[] = [];
    p.on('offline', (why) => offline.push(why));
    p.start();
    for (let i = 1; i < 10; i++) { seqs.push(buffer.append(`PSK1:DEMO:FAR-${i}`, { action: 'receive' }).seq); p.kick(); }
    await until(() => offline.length >= 3);
    expect(p.connected).toBe(false);
    expect(buffer.pendingCount).toBe(10);
    expect((await keyCounts(d.id)).size).toBe(0);
    await proxy.up(); // the gateway is back, same address
    expect(await p.drained(15_000)).toBe(true);
    expect(offline.every((w) => w === 'unreachable')).toBe(true);
    await expectExactlyOnce(d.id, seqs);
    // …and again: the link drops while connected, scans made meanwhile follow when it returns.
    await proxy.down();
    await until(() => !p.connected);
    for (let i = 10; i < 15; i++) { seqs.push(buffer.append(`PSK1:DEMO:FAR-${i}`, { action: 'receive' }).seq); p.kick(); }
    await new Promise((r) => setTimeout(r, 300));
    expect(buffer.pendingCount).toBe(5);
    await proxy.up();
    expect(await p.drained(15_000)).toBe(true);
    await expectExactlyOnce(d.id, seqs);
    await p.stop();
    await proxy.down();
    buffer.close();
  });

  it('removes a scan the gateway rejects for good, with the error code in the feedback and the journal', async () => {
    const d = await env.addDevice('pi-bridge-bad');
    const path = join(dir, `${d.id}.jsonl`);
    const buffer = ScanBuffer.open(path);
    const bad = buffer.append('(01)09506000134353', { action: 'receive' }).seq; // wrong check digit
    const good = buffer.append('PSK1:DEMO:GOOD-1', { action: 'receive' }).seq;
    const p = publisher(d, buffer);
    p.start();
    expect(await p.drained(10_000)).toBe(true);
    expect(p.feedback.find((f) => f.seq === bad)).toMatchObject({ status: 'rejected', error: { code: 'GS1_CHECK_DIGIT' } });
    expect(p.feedback.find((f) => f.seq === good)).toMatchObject({ status: 'accepted' });
    await expectExactlyOnce(d.id, [good]);
    await p.stop();
    buffer.close();
    const reopened = ScanBuffer.open(path);
    expect(reopened.pendingCount).toBe(0);
    reopened.close();
  });

  it('keeps scans rejected with STORAGE_FULL and delivers them once the gateway has space again', async () => {
    const d = await env.addDevice('pi-bridge-full');
    const buffer = ScanBuffer.open(join(dir, `${d.id}.jsonl`));
    const db = env.g.gw.store.db;
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`); // the "disk" is full
    const seqs: number[] = [];
    const p = publisher(d, buffer, { backoffMinMs: 50, backoffMaxMs: 400 });
    p.start();
    try {
      // Batches of scans with long fields, until the gateway runs out of space.
      for (let batch = 0; batch < 100 && p.stats.retry === 0; batch++) {
        for (let i = 0; i < 10; i++) seqs.push(buffer.append(`PSK1:DEMO:FULL-${batch}-${i}`, { action: 'receive', qty: 1, item: 'BERAS', org: 'o'.repeat(64), operator: 'p'.repeat(64) }).seq);
        p.kick();
        await until(() => p.stats.retry > 0 || buffer.pendingCount === 0);
      }
      expect(p.feedback.some((f) => f.status === 'retry' && f.error?.code === 'STORAGE_FULL')).toBe(true);
      const stuck = buffer.pendingCount;
      expect(stuck).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 500)); // it keeps retrying, and keeps them
      expect(buffer.pendingCount).toBe(stuck);
    } finally {
      db.pragma('max_page_count = 1073741823'); // space returns
    }
    expect(await p.drained(20_000)).toBe(true);
    await expectExactlyOnce(d.id, seqs);
    await p.stop();
    buffer.close();
  });
});
