/**
 * Sync through MQTT brokers: real Mosquitto processes. HQ and a post each talk only to their own
 * broker; the post's broker bridges posko/# to HQ's broker (as deploy/mosquitto/posko.conf does),
 * so bundles wait in the post's broker while the bridge is down and flow when it comes back.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODES, cleanup, openTestGateway, tempDir, type TestGateway } from '../helpers/gateway.ts';
import { freePort, hasMosquitto, waitForPort } from '../helpers/mqtt.ts';

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function mosquitto(dir: string, name: string, port: number, extra: string[] = []): ChildProcess {
  const conf = join(dir, `${name}.conf`);
  // Persistent sessions (saved on a clean stop), as on a Pi: a session's subscriptions and queued
  // messages outlive a broker restart.
  mkdirSync(join(dir, `${name}-db`), { recursive: true });
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${join(dir, `${name}-db`)}/`,
    'user root', 'message_size_limit 2097152', ...extra, '',
  ].join('\n'));
  return spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
}

describe.skipIf(!hasMosquitto())('sync through MQTT brokers and a Mosquitto bridge', () => {
  const dir = tempDir('posko-mqtt-sync-');
  const procs: ChildProcess[] = [];
  let hqPort = 0;
  let postPort = 0;
  let bridge: ChildProcess | undefined;
  let hqBroker: ChildProcess | undefined;
  let hq: TestGateway;
  let a: TestGateway;

  const startBridge = async () => {
    bridge = mosquitto(dir, 'post', postPort, [
      'connection to-hq', `address 127.0.0.1:${hqPort}`, 'topic posko/# both 1', 'cleansession false',
      'remote_clientid posko-bridge-POST-A', 'restart_timeout 1', 'bridge_protocol_version mqttv311',
    ]);
    procs.push(bridge);
    await waitForPort(postPort, bridge);
  };

  beforeAll(async () => {
    hqPort = await freePort();
    postPort = await freePort();
    hqBroker = mosquitto(dir, 'hq', hqPort);
    procs.push(hqBroker);
    await waitForPort(hqPort, hqBroker);
    await startBridge();
    hq = openTestGateway({ config: { postId: 'HQ', role: 'hq', syncIntervalMs: '300' } });
    a = openTestGateway({ config: { postId: 'POST-A', syncIntervalMs: '300' } });
    hq.gw.sync.enroll({ id: 'POST-A', role: 'post', publicKey: a.gw.identity.publicKey, url: `mqtt://127.0.0.1:${hqPort}` });
    a.gw.sync.enroll({ id: 'HQ', role: 'hq', publicKey: hq.gw.identity.publicKey, url: `mqtt://127.0.0.1:${postPort}` });
    await hq.gw.start();
    await a.gw.start();
  }, 30_000);

  afterAll(async () => {
    await hq?.close();
    await a?.close();
    for (const p of procs) p.kill('SIGKILL');
    cleanup(dir);
  });

  it('carries scans both ways through the bridge', async () => {
    const r = await a.call('POST', '/api/v1/scans', { body: { code: CODES.sscc, action: 'dispatch', to: 'HQ', item: 'BERAS', qty: 25, unit: 'kg' } });
    expect(r.status).toBe(201);
    await until('the dispatch at HQ', async () => ((await hq.call('GET', '/api/v1/events')).body.events.length === 1 ? true : undefined));
    const back = await hq.call('POST', '/api/v1/scans', { body: { code: CODES.sscc, action: 'receive' } });
    expect(back.status).toBe(201);
    await until('HQ\'s receive at the post', async () => ((await a.call('GET', '/api/v1/events')).body.events.length === 2 ? true : undefined));
    const parcel = (await a.call('GET', '/api/v1/parcels')).body.parcels[0];
    expect(parcel.location).toBe('HQ');
    // The post learned (from HQ's answers) that HQ has everything: nothing is pending either way.
    await until('nothing pending', () => (a.gw.sync.pendingFor('HQ') === 0 && hq.gw.sync.pendingFor('POST-A') === 0 ? true : undefined));
  }, 40_000);

  it('keeps bundles in the post\'s broker while the link to HQ is down', async () => {
    // HQ's broker goes away (the satellite link is down): the post's broker keeps what the post
    // publishes, and the bridge forwards it when HQ's broker is back.
    hqBroker!.kill('SIGTERM');
    await new Promise((r) => hqBroker!.once('exit', r));
    const batch = { scans: Array.from({ length: 50 }, (_, i) => ({ code: `PSK1:POST-A:${1000 + i}`, action: 'receive', item: 'AIR', qty: 1, unit: 'dus' })) };
    expect((await a.call('POST', '/api/v1/scans', { body: batch })).body.created).toBe(50);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await hq.call('GET', '/api/v1/events?limit=500')).body.events.length).toBe(2);
    hqBroker = mosquitto(dir, 'hq', hqPort);
    procs.push(hqBroker);
    await waitForPort(hqPort, hqBroker);
    await until('the 50 scans at HQ', async () => ((await hq.call('GET', '/api/v1/events?limit=500')).body.events.length === 52 ? true : undefined), 30_000);
    const status = (await a.call('GET', '/api/v1/sync/peers')).body.peers[0];
    expect(status.id).toBe('HQ');
    expect(status.lastSuccessAt).not.toBeNull();
  }, 60_000);
});
