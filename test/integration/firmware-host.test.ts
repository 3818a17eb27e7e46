/**
 * The reference firmware's portable C++ core (firmware-bridge/firmware/src) on the host: compiles
 * the host test program with g++ (AddressSanitizer + UBSan when available), runs it, and checks
 * that what the firmware sends is what the gateway accepts and that the firmware understands
 * what the gateway answers:
 *  - `--emit-payloads`: the scan payloads the firmware builds, parsed with the gateway's own
 *    DeviceScanSchema (and `--emit-status` with DeviceStatusSchema);
 *  - `--parse-ack`: acks built in TS exactly as the gateway's DeviceAck type, parsed by the
 *    firmware, plus malformed ones;
 *  - a round trip through a real gateway over MQTT (the embedded broker), publishing the
 *    firmware's payloads at QoS 0 as PubSubClient does, and feeding the gateway's raw acks back.
 * The Arduino sketch (posko_node.ino) is not built here (no ESP32 toolchain on this machine); it is
 * only type-checked against the core's API with stub Arduino declarations.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeviceScanSchema, DeviceStatusSchema, MAX_DEVICE_PAYLOAD, deviceTopics, type DeviceAck,
} from '../../src/domain/device-protocol.ts';
import { embeddedEnv, type MqttEnv } from '../helpers/mqtt.ts';

const FIRMWARE = resolve(import.meta.dirname, '../../firmware-bridge/firmware');
const BASE_FLAGS = ['-std=c++17', '-Wall', '-Wextra', '-Werror', '-O1'];
// -fno-sanitize-recover: UBSan aborts (non-zero exit) instead of printing and carrying on.
const SANITIZE = ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer'];
const RUN_ENV = { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' };

function hasGpp(): boolean {
  const r = spawnSync('g++', ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}
const GPP = hasGpp();
if (!GPP) console.warn('firmware host tests SKIPPED: g++ not found on PATH (they need a C++17 compiler)');

/** True when g++ can build and run a sanitized program here (libasan/libubsan present, no ptrace limits). */
function sanitizersWork(dir: string): boolean {
  const src = join(dir, 'probe.cpp');
  const bin = join(dir, 'probe');
  writeFileSync(src, '#include <vector>\nint main() { std::vector<int> v(2); return v[0]; }\n');
  const c = spawnSync('g++', [...BASE_FLAGS, ...SANITIZE, src, '-o', bin], { encoding: 'utf8' });
  if (c.status !== 0) return false;
  const r = spawnSync(bin, [], { encoding: 'utf8', env: RUN_ENV, timeout: 30_000 });
  return r.status === 0;
}

/** The codes of the `--emit-payloads` lines, in order (see emitPayloads() in host_tests.cpp). */
const allBytes = Array.from({ length: 255 }, (_, i) => i + 1).filter((b) => b !== 0x0d && b !== 0x0a);
const EXPECTED = [
  { seq: 0, code: ']C101095060001343521725123110ABC123\u001d21SN0001', action: 'receive' },
  { seq: 1, code: 'say "hi" \\ back/slash', action: 'receive' },
  { seq: 2, code: 'CTL\u0000\u0001\b\t\n\f\r\u001f\u007f', action: 'count' },
  { seq: 3, code: 'Beras é € 📦', action: 'distribute' },
  { seq: 4, code: 'café', action: undefined },
  { seq: 1042, code: ']C100106141412345678908', action: 'checkpoint' },
  { seq: Number.MAX_SAFE_INTEGER, code: '\u001d'.repeat(512), action: 'expire' },
  { seq: 7, code: 'Z'.repeat(512), action: 'damage' },
  { seq: 8, code: 'PSK1:DEMO:1', action: 'loss' },
  { seq: 9, code: 'PSK1:DEMO:2', action: 'return' },
  // Bytes that are not well-formed UTF-8 are sent as Latin-1: byte 0xE9 becomes U+00E9 (é).
  { seq: 10, code: String.fromCharCode(...allBytes), action: undefined },
  { seq: 11, code: 'PSK1:DEMO:3', action: 'dispatch' },
] as const;

/** What the firmware should conclude from an ack (PROTOCOL.md, "Delivery, buffering and retry"). */
function expectedParse(ack: DeviceAck) {
  const code = ack.error?.code ?? null;
  const retry = ack.status === 'rejected' && (code === 'STORAGE_FULL' || code === 'STORAGE_UNAVAILABLE');
  const signal = ack.status === 'rejected' ? (retry ? 'retrying' : 'rejected') : ack.status;
  return { ok: true, seq: ack.seq, status: ack.status, errorCode: code, remove: ack.seq !== null && !retry, signal };
}

describe.skipIf(!GPP)(`firmware portable core on the host (g++)${GPP ? '' : ' — SKIPPED: g++ not found on PATH'}`, () => {
  let dir = '';
  let bin = '';
  let sanitized = false;
  const run = (args: string[], input?: string) => {
    const r = spawnSync(bin, args, { encoding: 'utf8', input, env: RUN_ENV, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    if (r.error) throw r.error;
    return r;
  };
  const parseAcks = (lines: string[]) => {
    const r = run(['--parse-ack'], lines.join('\n') + '\n');
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'posko-fw-'));
    bin = join(dir, 'host_tests');
    sanitized = sanitizersWork(dir);
    const sources = readdirSync(join(FIRMWARE, 'src')).filter((f) => f.endsWith('.cpp')).map((f) => join(FIRMWARE, 'src', f));
    const args = [...BASE_FLAGS, ...(sanitized ? SANITIZE : []), '-I', join(FIRMWARE, 'src'), join(FIRMWARE, 'test', 'host_tests.cpp'), ...sources, '-o', bin];
    const c = spawnSync('g++', args, { encoding: 'utf8', timeout: 240_000 });
    if (c.status !== 0) throw new Error(`g++ ${args.join(' ')}\nfailed (${c.status ?? c.signal}):\n${c.stderr}`);
  }, 300_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('passes every host test (ring buffer, power cuts, JSON, acks, UART, retry timing), warning-free', () => {
    const r = run([]);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout);
    expect({ status: r.status, signal: r.signal, summary: summary?.[0], stderr: r.stderr.slice(-4000) })
      .toEqual({ status: 0, signal: null, summary: expect.stringMatching(/^\d+ passed, 0 failed$/), stderr: '' });
    expect(Number(summary![1])).toBeGreaterThanOrEqual(25);
    if (!sanitized) console.warn('firmware host tests ran WITHOUT AddressSanitizer/UBSan (not available here)');
  }, 120_000);

  it('type-checks the ESP32 sketch against the core\'s API (stub Arduino declarations; not an ESP32 build)', () => {
    // Catches drift between posko_node.ino and src/ (a renamed method, a changed signature). The
    // stubs in test/arduino_stubs declare only what the sketch uses; the real build needs the
    // ESP32 toolchain (README.md), which this machine does not have.
    const args = ['-std=gnu++17', '-Wall', '-Wextra', '-Werror', '-fsyntax-only', '-x', 'c++', '-include', 'Arduino.h',
      '-I', join(FIRMWARE, 'test', 'arduino_stubs'), '-I', join(FIRMWARE, 'src'), '-I', join(FIRMWARE, 'posko_node'),
      join(FIRMWARE, 'posko_node', 'posko_node.ino')];
    const c = spawnSync('g++', args, { encoding: 'utf8', timeout: 60_000 });
    expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
  });

  it('builds scan payloads the gateway accepts (DeviceScanSchema), with the exact codes', () => {
    const r = run(['--emit-payloads']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(EXPECTED.length);
    lines.forEach((line, i) => {
      expect(Buffer.byteLength(line, 'utf8')).toBeLessThanOrEqual(MAX_DEVICE_PAYLOAD);
      const raw: unknown = JSON.parse(line);
      const parsed = DeviceScanSchema.safeParse(raw);
      expect(parsed.success ? 'ok' : parsed.error.message, line.slice(0, 200)).toBe('ok');
      const want = EXPECTED[i]!;
      expect(raw).toEqual(want.action === undefined ? { seq: want.seq, code: want.code } : { ...want });
    });
  });

  it('builds status payloads and a last will the gateway accepts (DeviceStatusSchema)', () => {
    const r = run(['--emit-status']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    for (const s of lines) expect(DeviceStatusSchema.safeParse(s).success).toBe(true);
    expect(lines[0]).toEqual({ online: true, fw: 'posko-node 1.0.0', battery: 81, rssi: -67, buffered: 3 });
    expect(lines.at(-1)).toEqual({ online: false });
  });

  it('uses the gateway\'s topics', () => {
    for (const [post, device] of [['DEMO', 'dev-1'], ['KKR-KBG', 'Gudang_pintu.1']] as const) {
      const r = run(['--topics', post, device]);
      expect(r.status).toBe(0);
      const t = deviceTopics(post, device);
      expect(r.stdout.trimEnd().split('\n')).toEqual([t.scan, t.ack, t.status]);
    }
    expect(run(['--topics', 'DEMO', 'a/b']).status).not.toBe(0);
  });

  it('parses the acks the gateway sends (DeviceAck) and decides keep / remove / feedback', () => {
    const parcel = { id: 'sscc:106141412345678908', status: 'in_store', qty: 25, location: 'KKR-KBG', item: 'BERAS' };
    const acks: DeviceAck[] = [
      { seq: 1042, status: 'accepted', event: randomUUID(), parcel },
      { seq: 1043, status: 'duplicate', event: randomUUID(), parcel: { ...parcel, qty: 2.5, location: null, item: null } },
      { seq: 1044, status: 'rejected', error: { code: 'GS1_CHECK_DIGIT', message: 'AI (01): check digit … expected "2", got \\ "3"\n' } },
      { seq: 1045, status: 'rejected', error: { code: 'STORAGE_FULL', message: 'the disk is full' } },
      { seq: 1046, status: 'rejected', error: { code: 'STORAGE_UNAVAILABLE', message: 'database locked' } },
      { seq: 1047, status: 'rejected', error: { code: 'VALIDATION', message: 'invalid scan: to: a dispatch needs a destination (to)' } },
      { seq: null, status: 'rejected', error: { code: 'BAD_JSON', message: 'the scan is not valid JSON: Unexpected end of JSON input' } },
      { seq: null, status: 'accepted', event: randomUUID() },
      { seq: 0, status: 'accepted', event: randomUUID(), parcel: { id: 'code:Beras é 📦', status: 'in_store', qty: 1e6, location: 'DEMO', item: 'Beras 📦 é' } },
      { seq: Number.MAX_SAFE_INTEGER, status: 'duplicate', event: randomUUID() },
    ];
    const got = parseAcks(acks.map((a) => JSON.stringify(a)));
    expect(got).toEqual(acks.map(expectedParse));
    // Pretty-printed with other key orders: the same.
    const reordered = acks.map((a) => JSON.stringify(Object.fromEntries(Object.entries(a).reverse()), null, 1).replace(/\n/g, ' '));
    expect(parseAcks(reordered)).toEqual(acks.map(expectedParse));
  });

  it('refuses malformed acks gracefully', () => {
    const good = JSON.stringify({ seq: 5, status: 'accepted', event: randomUUID() } satisfies DeviceAck);
    const cases: [string, string][] = [
      ['', 'syntax'],
      ['not json', 'syntax'],
      [good.slice(0, -1), 'syntax'],
      [good.slice(0, 12), 'syntax'],
      [good + 'x', 'syntax'],
      ['[1,2]', 'not-object'],
      ['{"seq":1}', 'missing-status'],
      ['{"seq":1,"status":"ok"}', 'bad-status'],
      ['{"seq":-1,"status":"accepted"}', 'bad-seq'],
      ['{"seq":1.5,"status":"accepted"}', 'bad-seq'],
      ['{"seq":"1","status":"accepted"}', 'bad-seq'],
      [`{"seq":${Number.MAX_SAFE_INTEGER + 1},"status":"accepted"}`, 'bad-seq'],
      [`{"seq":1,"status":"accepted","x":${'['.repeat(40)}${']'.repeat(40)}}`, 'too-deep'],
      [`{"seq":1,"status":"accepted","pad":"${'p'.repeat(20_000)}"}`, 'too-large'],
    ];
    expect(parseAcks(cases.map(([json]) => json))).toEqual(cases.map(([, error]) => ({ ok: false, error })));
  });

  describe('round trip through a real gateway over MQTT (embedded broker)', () => {
    let env: MqttEnv;
    let client: mqtt.MqttClient;
    let topics: ReturnType<typeof deviceTopics>;
    const raw: string[] = [];
    beforeAll(async () => {
      env = await embeddedEnv();
      const dev = await env.addDevice('fw-node', 'receive');
      topics = deviceTopics('DEMO', dev.id);
      // As the sketch connects: client id posko-<device>, persistent session, last will retained.
      client = await mqtt.connectAsync(env.url, {
        username: dev.id, password: dev.token, clientId: `posko-${dev.id}`, clean: false, keepalive: 30,
        reconnectPeriod: 0, connectTimeout: 5000, will: { topic: topics.status, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
      });
      client.on('message', (_t, payload) => raw.push(payload.toString('utf8')));
      await client.subscribeAsync(topics.ack, { qos: 1 });
    }, 60_000);
    afterAll(async () => {
      await client?.endAsync();
      await env?.close();
    });

    const waitForAcks = async (n: number) => {
      const deadline = Date.now() + 15_000;
      while (raw.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(raw.length).toBe(n);
    };

    it('records the firmware\'s scans, and the firmware understands every ack', async () => {
      const lines = run(['--emit-payloads']).stdout.trimEnd().split('\n');
      const status = run(['--emit-status']).stdout.split('\n')[0]!;
      await client.publishAsync(topics.status, status, { qos: 0, retain: true });
      // PubSubClient publishes at QoS 0: the gateway's ack, not a PUBACK, is the commitment.
      for (const line of lines) await client.publishAsync(topics.scan, line, { qos: 0 });
      await waitForAcks(lines.length);
      // And a resend of the first one (same seq), as after a lost ack.
      await client.publishAsync(topics.scan, lines[0]!, { qos: 0 });
      await waitForAcks(lines.length + 1);

      const acks = raw.map((a) => JSON.parse(a) as DeviceAck);
      const bySeq = new Map(acks.slice(0, lines.length).map((a) => [a.seq, a]));
      expect(bySeq.size).toBe(lines.length);
      for (const want of EXPECTED) {
        const ack = bySeq.get(want.seq)!;
        expect(ack, `seq ${want.seq}`).toBeDefined();
        // Never refused for being malformed: the payload itself is always right.
        expect(['BAD_JSON', 'PAYLOAD_TOO_LARGE'], `seq ${want.seq}: ${JSON.stringify(ack)}`).not.toContain(ack.error?.code);
        if (want.action === 'dispatch') expect(ack).toMatchObject({ status: 'rejected', error: { code: 'VALIDATION' } });
      }
      // Plain codes are recorded (others may be refused for their content, e.g. a code of FNC1s
      // only, which is what they would get over HTTP too).
      for (const seq of [0, 1, 2, 3, 4, 1042, 7, 8, 9]) expect(bySeq.get(seq), JSON.stringify(bySeq.get(seq))).toMatchObject({ status: 'accepted' });
      expect(acks.at(-1)).toMatchObject({ seq: 0, status: 'duplicate', event: bySeq.get(0)!.event });
      // The gateway recorded exactly the code the firmware read: GS, quotes, control characters,
      // UTF-8 and Latin-1 survive the escaping.
      const events = (await env.g.call('GET', '/api/v1/events?limit=1000')).body.events as { id: string; code: string; device: string }[];
      for (const want of EXPECTED) {
        const ack = bySeq.get(want.seq)!;
        if (ack.status !== 'accepted') continue;
        expect(events.find((e) => e.id === ack.event), `seq ${want.seq}`).toMatchObject({ code: want.code, device: expect.any(String) });
      }

      // The firmware's parser on the gateway's exact bytes.
      expect(parseAcks(raw)).toEqual(acks.map(expectedParse));
    }, 60_000);
  });
});
