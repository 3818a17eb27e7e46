/**
 * A device that got its PUBACK never loses the scan: the real gateway (embedded broker) runs as a
 * child process, devices publish QoS 1 scans, and the gateway is killed with SIGKILL at random
 * moments. Devices resend what was not acknowledged after each restart, as the protocol says. At
 * the end every PUBACKed scan is recorded exactly once.
 */
import { rmSync } from 'node:fs';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../../src/store/store.ts';
import { ADMIN_TOKEN, tempDir } from '../helpers/gateway.ts';
import { kill9, runCli, startChild, stopChild } from '../helpers/child.ts';

const KILLS = Number(process.env.POSKO_MQTT_CRASH_KILLS ?? 8);
const DEVICES = 4;
const dir = tempDir('posko-mqtt-crash-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kill -9 during MQTT ingest', () => {
  it(`keeps every PUBACKed scan exactly once across ${KILLS} kills`, async () => {
    const creds = Array.from({ length: DEVICES }, (_, i) => JSON.parse(runCli(['devices', 'add', `node-${i}`, '--json', '--data-dir', dir]).stdout) as { id: string; token: string });
    const acked = new Set<string>();
    const unacked = creds.map(() => new Set<number>());
    const nextSeq = creds.map(() => 0);
    let resent = 0;
    const args = ['--data-dir', dir, '--admin-token', ADMIN_TOKEN, '--fold-interval-ms', '200'];
    const payload = (i: number, seq: number) => JSON.stringify({ seq, code: `PSK1:DEMO:N${i}-${seq % 300}`, action: seq % 4 === 3 ? 'distribute' : 'receive', qty: 1 });

    for (let round = 0; round <= KILLS; round++) {
      const gw = await startChild(args);
      const url = `mqtt://127.0.0.1:${gw.mqttPort}`;
      let alive = true;
      const devices = creds.map(async (c, i) => {
        let client: mqtt.MqttClient;
        try {
          client = await mqtt.connectAsync(url, { username: c.id, password: c.token, reconnectPeriod: 0, connectTimeout: 3000, clientId: `crash-${c.id}` });
        } catch { return; }
        client.on('error', () => undefined);
        const publish = async (seq: number) => {
          await client.publishAsync(`posko/DEMO/scan/${c.id}`, payload(i, seq), { qos: 1 });
          acked.add(`${c.id}/${seq}`);
          unacked[i]!.delete(seq);
        };
        try {
          for (const seq of [...unacked[i]!]) { await publish(seq); resent++; } // the device's offline buffer
          while (alive && round < KILLS) {
            const seq = nextSeq[i]!++;
            unacked[i]!.add(seq);
            await Promise.race([publish(seq), new Promise((_, rej) => client.once('close', () => rej(new Error('closed'))))]);
          }
        } catch { /* the gateway died: what was not PUBACKed stays buffered */ }
        client.end(true);
      });
      if (round < KILLS) {
        await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
        await kill9(gw);
        alive = false;
        await Promise.all(devices);
      } else {
        await Promise.all(devices);
        expect(await stopChild(gw)).toBe(0);
      }
    }

    expect(unacked.every((u) => u.size === 0)).toBe(true);
    expect(resent).toBeGreaterThan(0); // kills really landed between publish and PUBACK
    const store = Store.open(dir);
    try {
      const rows = store.db.prepare('SELECT key, count(*) AS n FROM events GROUP BY key').all() as { key: string; n: number }[];
      expect(rows.every((r) => r.n === 1)).toBe(true);
      const have = new Set(rows.map((r) => r.key.replace(/^DEMO\//, '').replace('/seq-', '/')));
      const missing = [...acked].filter((k) => !have.has(k));
      expect(missing).toEqual([]);
      expect(acked.size).toBeGreaterThan(KILLS * DEVICES);
    } finally {
      store.close();
    }
  }, 240_000);
});
