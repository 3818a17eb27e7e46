/**
 * MQTT test environments: the gateway's embedded broker, or a real Mosquitto (the Debian binary,
 * started here on a free port with the password and ACL files posko writes) with the gateway
 * connected to it as a client. The same contract suite runs against both.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import { writeMosquittoFiles } from '../../src/transport/mosquitto-files.ts';
import { openTestGateway, tempDir, cleanup, type TestGateway } from './gateway.ts';

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One environment: a gateway reachable by devices over MQTT at `url`. */
export interface MqttEnv {
  name: string;
  g: TestGateway;
  url: string;
  /** Registers a device (and makes the broker know it). */
  addDevice(name: string, action?: string): Promise<{ id: string; token: string }>;
  /** Revokes a device (and makes the broker know it). */
  revokeDevice(id: string): Promise<void>;
  close(): Promise<void>;
}

/** The gateway's embedded broker on a free port. */
export async function embeddedEnv(): Promise<MqttEnv> {
  const g = openTestGateway();
  await g.gw.start();
  const port = g.gw.mqtt.port!;
  return {
    name: 'embedded broker', g, url: `mqtt://127.0.0.1:${port}`,
    async addDevice(name, action) { const { device, token } = g.gw.store.devices.add(name, { defaultAction: action }); return { id: device.id, token }; },
    async revokeDevice(id) { g.gw.store.devices.revoke(id); },
    async close() { await g.close(); },
  };
}

/** True when a Mosquitto binary is installed. */
export function hasMosquitto(): boolean {
  return existsSync('/usr/sbin/mosquitto');
}

/** A real Mosquitto with posko's password and ACL files, and the gateway connected to it. */
export async function mosquittoEnv(): Promise<MqttEnv> {
  const dir = tempDir('posko-mosq-');
  const port = await freePort();
  const g = openTestGateway();
  const files = writeMosquittoFiles(g.gw.store, 'DEMO', join(dir, 'mosquitto'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`, 'allow_anonymous false', `password_file ${files.passwd}`, `acl_file ${files.acl}`,
    'persistence false', 'user root', 'max_queued_messages 10000', '',
  ].join('\n'));
  const proc: ChildProcess = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
  await waitForPort(port, proc);
  let ext: TestGateway | undefined;
  const reload = async () => {
    writeMosquittoFiles(ext!.gw.store, 'DEMO', join(dir, 'mosquitto'));
    proc.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
  };
  // The gateway as a client of this broker: reopen it in external mode on the same data.
  await g.gw.stop();
  ext = openTestGateway({ dir: g.dir, config: { mqttUrl: `mqtt://127.0.0.1:${port}` } });
  await ext.gw.start();
  const gw = ext;
  return {
    name: 'Mosquitto', g: gw, url: `mqtt://127.0.0.1:${port}`,
    async addDevice(name, action) { const { device, token } = gw.gw.store.devices.add(name, { defaultAction: action }); await reload(); return { id: device.id, token }; },
    async revokeDevice(id) { gw.gw.store.devices.revoke(id); await reload(); },
    async close() {
      await gw.gw.stop();
      proc.kill('SIGTERM');
      cleanup(dir);
      cleanup(g.dir);
    },
  };
}

/** Waits until something listens on `port`; fails early if `proc` (the server) exits. */
export async function waitForPort(port: number, proc?: ChildProcess, log: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`the server exited ${proc.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}: ${log()}`);
}

/** A device connection: publish scans, collect acks. */
export interface TestDevice {
  client: MqttClient;
  acks: any[];
  /** Publishes at QoS 1 and resolves with the ack for `seq` (or the next ack for a bare code). */
  scan(payload: string | object, seq?: number): Promise<any>;
  close(): Promise<void>;
}

/** Connects as a device and subscribes to its ack topic. */
export async function connectDevice(url: string, id: string, token: string, extra: IClientOptions = {}): Promise<TestDevice> {
  const client = await mqtt.connectAsync(url, { username: id, password: token, clientId: `test-${id}-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 0, connectTimeout: 5000, ...extra });
  const acks: any[] = [];
  const waiters: ((a: any) => boolean)[] = [];
  client.on('message', (_t, payload) => {
    const a = JSON.parse(payload.toString());
    acks.push(a);
    for (let i = 0; i < waiters.length; i++) if (waiters[i]!(a)) { waiters.splice(i, 1); break; }
  });
  await client.subscribeAsync(`posko/DEMO/ack/${id}`, { qos: 1 });
  return {
    client, acks,
    async scan(payload, seq) {
      const wait = new Promise<any>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ack for ${JSON.stringify(payload)}`)), 8000);
        waiters.push((a) => {
          if (seq !== undefined && a.seq !== seq) return false;
          clearTimeout(timer); resolve(a); return true;
        });
      });
      await client.publishAsync(`posko/DEMO/scan/${id}`, typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1 });
      return wait;
    },
    async close() { await client.endAsync(); },
  };
}
