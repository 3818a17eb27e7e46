/**
 * The MQTT ingest contract: what a device sees, whichever broker sits between it and the gateway.
 * Run against the embedded broker and a real Mosquitto (mqtt-ingest.test.ts).
 */
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODES } from '../helpers/gateway.ts';
import { connectDevice, type MqttEnv } from '../helpers/mqtt.ts';

const dbState = (env: MqttEnv) => env.g.gw.store.db.prepare(
  "SELECT (SELECT count(*) FROM events) AS events, (SELECT group_concat(id) FROM parcels) AS parcels, (SELECT group_concat(on_hand) FROM stock) AS stock",
).get();

/** Registers the contract tests for one environment factory. */
export function mqttIngestContract(name: string, make: () => Promise<MqttEnv>, opts: { skip?: boolean } = {}): void {
  describe.skipIf(opts.skip)(`MQTT ingest contract: ${name}`, () => {
    let env: MqttEnv;
    let dev: { id: string; token: string };
    beforeAll(async () => {
      env = await make();
      dev = await env.addDevice('gudang-1');
    });
    afterAll(async () => { await env?.close(); });

    it('records a JSON scan before acking it, and a retry of the same seq counts once', async () => {
      const d = await connectDevice(env.url, dev.id, dev.token);
      try {
        const ack = await d.scan({ seq: 1, code: CODES.ssccAim, action: 'receive', qty: 25, item: 'BERAS', org: 'PMI' }, 1);
        expect(ack).toMatchObject({ seq: 1, status: 'accepted', parcel: { id: 'sscc:106141412345678908', status: 'in_store', qty: 25, location: 'DEMO', item: 'BERAS' } });
        const r = await env.g.call('GET', `/api/v1/parcels/${encodeURIComponent('sscc:106141412345678908')}`);
        expect(r.body.history).toHaveLength(1);
        expect(r.body.history[0]).toMatchObject({ id: ack.event, device: dev.id, key: `DEMO/${dev.id}/seq-1` });
        const again = await d.scan({ seq: 1, code: CODES.ssccAim, action: 'receive', qty: 25, item: 'BERAS', org: 'PMI' }, 1);
        expect(again).toMatchObject({ seq: 1, status: 'duplicate', event: ack.event });
        expect((await env.g.call('GET', '/api/v1/stock')).body.stock).toEqual([expect.objectContaining({ item: 'BERAS', org: 'PMI', onHand: 25 })]);
      } finally { await d.close(); }
    });

    it('takes a bare barcode as the device\'s default action', async () => {
      const cp = await env.addDevice('checkpoint-jembatan', 'checkpoint');
      const d = await connectDevice(env.url, cp.id, cp.token);
      try {
        const ack = await d.scan(CODES.ssccAim + '\r\n');
        expect(ack).toMatchObject({ seq: null, status: 'accepted', parcel: { id: 'sscc:106141412345678908' } });
        const ev = (await env.g.call('GET', '/api/v1/events?limit=1000')).body.events.find((e: any) => e.id === ack.event);
        expect(ev).toMatchObject({ kind: 'checkpoint', device: cp.id });
      } finally { await d.close(); }
    });

    it.each([
      ['not JSON', '{"seq": 5, "code": ', 'BAD_JSON', null],
      ['wrong types', JSON.stringify({ seq: 6, code: 123, action: 'receive' }), 'VALIDATION', 6],
      ['negative seq', JSON.stringify({ seq: -1, code: 'X', action: 'receive' }), 'VALIDATION', -1],
      ['unknown field', JSON.stringify({ seq: 7, code: 'X', action: 'receive', hack: true }), 'VALIDATION', 7],
      ['unknown action', JSON.stringify({ seq: 8, code: 'X', action: 'steal' }), 'VALIDATION', 8],
      ['dispatch without destination', JSON.stringify({ seq: 9, code: 'X', action: 'dispatch' }), 'VALIDATION', 9],
      ['bad GS1 check digit', JSON.stringify({ seq: 10, code: '(01)09506000134353', action: 'receive' }), 'GS1_CHECK_DIGIT', 10],
      ['bad EAN check digit', '4006381333932', 'EAN_CHECK_DIGIT', null],
      ['empty barcode', '   ', 'VALIDATION', null],
      ['oversized payload', 'A'.repeat(20_000), 'PAYLOAD_TOO_LARGE', null],
    ])('rejects %s with an ack carrying the error, and changes nothing', async (_label, payload, code, seq) => {
      const d = await connectDevice(env.url, dev.id, dev.token);
      try {
        const before = dbState(env);
        const ack = await d.scan(payload as string);
        expect(ack).toMatchObject({ status: 'rejected', seq, error: { code } });
        expect(ack.error.message.length).toBeGreaterThan(5);
        expect(dbState(env)).toEqual(before);
        // The connection survives bad input: the next good scan goes through.
        const ok = await d.scan({ seq: 1000 + Math.floor(Math.random() * 1e6), code: 'PSK1:DEMO:OK', action: 'receive' });
        expect(ok.status).toBe('accepted');
      } finally { await d.close(); }
    });

    it('refuses a wrong password and an unknown device', async () => {
      await expect(mqtt.connectAsync(env.url, { username: dev.id, password: 'wrong-password', reconnectPeriod: 0, connectTimeout: 3000 })).rejects.toThrow();
      await expect(mqtt.connectAsync(env.url, { username: 'nobody', password: dev.token, reconnectPeriod: 0, connectTimeout: 3000 })).rejects.toThrow();
    });

    it('does not let a device publish as another device or read its acks', async () => {
      const other = await env.addDevice('gudang-2');
      const spy = await connectDevice(env.url, dev.id, dev.token);
      const victim = await connectDevice(env.url, other.id, other.token);
      try {
        const stolen: string[] = [];
        spy.client.on('message', (t) => stolen.push(t));
        // Brokers refuse differently (SUBACK 128, a dropped connection, a silently dropped message):
        // what matters is that nothing is recorded and nothing is read.
        const settle = (p: Promise<unknown>) => Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
        await settle(spy.client.subscribeAsync(`posko/DEMO/ack/${other.id}`, { qos: 1 }));
        const before = dbState(env);
        await settle(spy.client.publishAsync(`posko/DEMO/scan/${other.id}`, JSON.stringify({ seq: 1, code: 'PSK1:DEMO:FORGED', action: 'receive' }), { qos: 1 }));
        await new Promise((r) => setTimeout(r, 300));
        expect(dbState(env)).toEqual(before);
        const own = await victim.scan({ seq: 1, code: 'PSK1:DEMO:REAL', action: 'receive' }, 1);
        expect(own.status).toBe('accepted');
        await new Promise((r) => setTimeout(r, 300));
        expect(stolen.filter((t) => t.endsWith(other.id))).toEqual([]);
      } finally { spy.client.end(true); await victim.close(); }
    });

    it('shows device status, battery and firmware, and offline from the last will', async () => {
      const st = await env.addDevice('hp-relawan-3');
      const statusTopic = `posko/DEMO/status/${st.id}`;
      const client = await mqtt.connectAsync(env.url, {
        username: st.id, password: st.token, reconnectPeriod: 0,
        will: { topic: statusTopic, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
      });
      await client.publishAsync(statusTopic, JSON.stringify({ online: true, fw: 'posko-node 1.2.0', battery: 81, rssi: -67 }), { qos: 1, retain: true });
      const d = await connectDevice(env.url, st.id, st.token);
      await d.scan({ seq: 1, code: 'PSK1:DEMO:ST1', action: 'receive' }, 1);
      await d.close();
      const wait = async (pred: (x: any) => boolean) => {
        for (let i = 0; i < 50; i++) {
          const x = (await env.g.call('GET', '/api/v1/devices')).body.devices.find((y: any) => y.id === st.id);
          if (pred(x)) return x;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error('device status never arrived');
      };
      const online = await wait((x) => x.online === true);
      expect(online).toMatchObject({ firmware: 'posko-node 1.2.0', battery: 81, scansToday: 1 });
      expect(online.lastScanAt).not.toBeNull();
      client.stream.destroy(); // a power cut: no DISCONNECT, so the broker publishes the will
      const offline = await wait((x) => x.online === false);
      expect(offline.battery).toBe(81);
    });
  });
}
