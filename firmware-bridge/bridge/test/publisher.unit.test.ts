/**
 * Publisher behaviour the real gateway cannot be made to show on demand, against a bare MQTT
 * broker (aedes) scripted as a gateway: the CONNECT it sends (credentials, clean session off,
 * keep-alive 30, last will), the retained status, the bounded in-flight window, payloads that
 * pass the gateway's schema, resending after the ack timeout, acks that never come, unknown acks,
 * and the back-off schedule.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { DeviceScanSchema, deviceTopics } from '../../../src/domain/device-protocol.ts';
import { ScanBuffer } from '../buffer.ts';
import { Publisher, backoffDelay } from '../publisher.ts';

const dir = mkdtempSync(join(tmpdir(), 'posko-pubunit-'));
const T = deviceTopics('DEMO', 'dev-1');

interface Received { seq: number; payload: unknown }

/** An aedes broker playing the gateway: records scans, acks them as `answer` decides. */
async function fakeGateway(answer: (seq: number, nth: number) => object | null) {
  const broker = await Aedes.createBroker();
  const connects: any[] = [];
  const received: Received[] = [];
  const counts = new Map<number, number>();
  const held: number[] = [];
  broker.preConnect = (_c, packet, done) => { connects.push(packet); done(null, true); };
  broker.authenticate = (_c, u, p, done) => done(null, u === 'dev-1' && p?.toString() === 'tok-0123456789');
  const ack = (msg: object) => broker.publish({ cmd: 'publish', topic: T.ack, payload: Buffer.from(JSON.stringify(msg)), qos: 1, retain: false, dup: false }, () => {});
  broker.authorizePublish = (_c, packet, done) => {
    done(null);
    if (packet.topic !== T.scan) return;
    const payload = JSON.parse(packet.payload.toString());
    const seq = payload.seq as number;
    const nth = (counts.get(seq) ?? 0) + 1;
    counts.set(seq, nth);
    received.push({ seq, payload });
    const a = answer(seq, nth);
    if (a) setImmediate(() => ack(a)); else held.push(seq);
  };
  const server: Server = createServer(broker.handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url, connects, received, counts, held, ack,
    /** Acks every held scan now. */
    release() { for (const seq of held.splice(0)) ack({ seq, status: 'accepted' }); },
    async close() {
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

let n = 0;
function setup(url: string, extra: Partial<ConstructorParameters<typeof Publisher>[0]> = {}) {
  const buffer = ScanBuffer.open(join(dir, `j-${++n}.jsonl`));
  const p = new Publisher({ url, post: 'DEMO', device: 'dev-1', token: 'tok-0123456789', buffer, backoffMinMs: 50, backoffMaxMs: 200, ...extra });
  cleanups.push(() => buffer.close(), () => p.stop());
  return { buffer, p };
}

async function until(pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('publisher protocol details', () => {
  it('connects as the protocol says and publishes a retained online status; the will says offline', async () => {
    const gw = await fakeGateway((seq) => ({ seq, status: 'accepted' }));
    cleanups.push(() => gw.close());
    const watcher = await mqtt.connectAsync(gw.url, { username: 'dev-1', password: 'tok-0123456789', reconnectPeriod: 0 });
    cleanups.push(() => { watcher.end(true); });
    const statuses: { retain: boolean; body: any }[] = [];
    watcher.on('message', (_t, payload, packet) => statuses.push({ retain: packet.retain, body: JSON.parse(payload.toString()) }));
    await watcher.subscribeAsync(T.status, { qos: 1 });
    const { buffer, p } = setup(gw.url);
    buffer.append('PSK1:DEMO:S1', { action: 'receive' });
    buffer.append('PSK1:DEMO:S2');
    p.start();
    await until(() => statuses.length >= 1);
    expect(statuses[0]!.body).toEqual({ online: true, fw: 'posko-bridge 0.1.0', buffered: 2 });
    const c = gw.connects.find((k) => k.clientId === 'posko-dev-1');
    expect(c).toMatchObject({ clientId: 'posko-dev-1', username: 'dev-1', clean: false, keepalive: 30, protocolVersion: 4 });
    expect(c.password.toString()).toBe('tok-0123456789');
    expect(c.will).toMatchObject({ topic: T.status, qos: 1, retain: true });
    expect(JSON.parse(c.will.payload.toString())).toEqual({ online: false });
    await until(() => buffer.pendingCount === 0);
    // The connection vanishes (power cut): the broker publishes the will.
    p.client!.stream.destroy();
    await until(() => statuses.some((s) => s.body.online === false));
    // It comes back by itself and says so.
    await until(() => statuses.filter((s) => s.body.online === true).length >= 2);
    expect(statuses.at(-1)!.body).toEqual({ online: true, fw: 'posko-bridge 0.1.0', buffered: 0 });
  });

  it('sends payloads the gateway accepts, in seq order, never more than the window unacknowledged', async () => {
    const gw = await fakeGateway(() => null); // the gateway holds every ack
    cleanups.push(() => gw.close());
    const { buffer, p } = setup(gw.url, { window: 5, resendAfterMs: 60_000 });
    for (let i = 0; i < 12; i++) buffer.append(`]C1PSK1:DEMO:W${i}\u001d`, { action: 'receive', qty: 2, item: 'BERAS', at: '2026-11-29T08:15:00.000+08:00' });
    p.start();
    await until(() => gw.received.length === 5);
    await new Promise((r) => setTimeout(r, 150));
    expect(gw.received.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]); // the window is full: nothing more
    expect(p.inFlight).toBe(5);
    for (const r of gw.received) expect(DeviceScanSchema.safeParse(r.payload).success).toBe(true);
    expect(gw.received[0]!.payload).toEqual({ seq: 1, code: ']C1PSK1:DEMO:W0\u001d', action: 'receive', qty: 2, item: 'BERAS', at: '2026-11-29T08:15:00.000+08:00' });
    gw.release();
    await until(() => gw.received.length === 10);
    gw.release();
    await until(() => gw.received.length === 12);
    gw.release();
    await until(() => buffer.pendingCount === 0);
    expect(gw.received.map((r) => r.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  });

  it('resends a scan whose ack did not come within the timeout, same seq, oldest first', async () => {
    // The first copy of each scan gets no ack (lost on the way); the second is acked.
    const gw = await fakeGateway((seq, nth) => (nth >= 2 ? { seq, status: nth === 2 ? 'accepted' : 'duplicate' } : null));
    cleanups.push(() => gw.close());
    const { buffer, p } = setup(gw.url, { resendAfterMs: 200 });
    for (let i = 0; i < 3; i++) buffer.append(`PSK1:DEMO:R${i}`);
    const t0 = Date.now();
    p.start();
    await until(() => buffer.pendingCount === 0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(gw.received.map((r) => r.seq)).toEqual([1, 2, 3, 1, 2, 3]);
    expect(p.stats).toMatchObject({ sent: 3, resent: 3, accepted: 3 });
  });

  it('keeps a scan while the gateway only answers STORAGE_UNAVAILABLE, and ignores acks that are not its own', async () => {
    let storageBack = false;
    const gw = await fakeGateway((seq) => (storageBack ? { seq, status: 'duplicate', event: 'e1' } : { seq, status: 'rejected', error: { code: 'STORAGE_UNAVAILABLE', message: 'database locked' } }));
    cleanups.push(() => gw.close());
    const { buffer, p } = setup(gw.url, { resendAfterMs: 100 });
    const statuses: string[] = [];
    p.on('feedback', (f) => statuses.push(f.status));
    buffer.append('PSK1:DEMO:U1');
    p.start();
    await until(() => (gw.counts.get(1) ?? 0) >= 3);
    expect(buffer.pendingCount).toBe(1);
    expect(statuses.every((s) => s === 'retry')).toBe(true);
    gw.ack({ seq: null, status: 'accepted' }); // a bare barcode's ack: not ours
    gw.ack({ seq: 999, status: 'accepted' }); // a seq we do not have
    storageBack = true;
    await until(() => buffer.pendingCount === 0);
    expect(statuses.at(-1)).toBe('duplicate');
  });

  it('backs off 1 s, 2 s, 4 s … up to 60 s, with jitter in the upper half', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffDelay(a, 1000, 60_000, 0.999999))).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
    expect([0, 1, 2, 6, 50].map((a) => backoffDelay(a, 1000, 60_000, 0))).toEqual([500, 1000, 2000, 30000, 30000]);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, 1000, 60_000, Math.random());
      expect(d).toBeGreaterThanOrEqual(4000);
      expect(d).toBeLessThanOrEqual(8000);
    }
  });

  it('retries an unreachable gateway with growing delays', async () => {
    const gw = await fakeGateway(() => null);
    const url = gw.url;
    await gw.close(); // nothing listens there any more
    const { p } = setup(url, { backoffMinMs: 40, backoffMaxMs: 160, random: () => 0.999999 });
    const times: number[] = [];
    p.on('offline', () => times.push(Date.now()));
    p.start();
    await until(() => times.length >= 5);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    // 40, 80, 160, 160 ms (plus connect time): growing, then capped.
    expect(gaps[0]!).toBeGreaterThanOrEqual(35);
    expect(gaps[1]!).toBeGreaterThanOrEqual(75);
    expect(gaps[2]!).toBeGreaterThanOrEqual(155);
    expect(gaps[3]!).toBeGreaterThanOrEqual(155);
    expect(gaps[3]!).toBeLessThan(1000);
  });
});

process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
