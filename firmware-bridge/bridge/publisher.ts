/**
 * Publishes the offline buffer's scans to the gateway over MQTT, the device side of
 * firmware-bridge/PROTOCOL.md:
 *
 * - Connects as the device (username: device id, password: token), client id `posko-<device>`,
 *   clean session off (acks published while the bridge was away are delivered when it returns),
 *   keep-alive 30 s, last will `{"online":false}` retained QoS 1 on its status topic. On connect it
 *   subscribes to its ack topic, then publishes a retained online status (`fw`, `buffered`).
 * - Sends pending scans in seq order at QoS 1, at most `window` unacknowledged at a time.
 * - A scan leaves the buffer only when the gateway's ack message with its seq arrives
 *   (`accepted`, `duplicate`, or a final `rejected`), never on PUBACK alone. `rejected` with
 *   STORAGE_FULL / STORAGE_UNAVAILABLE keeps the scan and retries it later.
 * - Unacknowledged scans are sent again (same seq) after `resendAfterMs` (10 s) and after every
 *   reconnect; the gateway dedups by (device, seq), so a resend never records twice.
 * - Reconnects with back-off: 1 s doubling to 60 s, with jitter (each delay is drawn from its
 *   upper half). The back-off resets only after a connection proved useful (a final ack) or lived
 *   30 s, so a gateway that drops every connection (disk full) is not hammered.
 * - Emits `feedback` for each outcome (for beeps and lights) and logs it.
 */
import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import { deviceTopics, type DeviceAck } from '../../src/domain/device-protocol.ts';
import type { BufferedScan, ScanBuffer } from './buffer.ts';
import { printable, silentLogger, type BridgeLogger } from './log.ts';

/** The firmware string reported in the status. */
export const BRIDGE_FW = 'posko-bridge 0.1.0';

/** Rejections that are not final: the gateway could not store the scan; try again later. */
export const RETRYABLE_ERRORS: ReadonlySet<string> = new Set(['STORAGE_FULL', 'STORAGE_UNAVAILABLE']);

/** What happened to one scan, for the operator (beep, light, log). */
export interface Feedback {
  seq: number;
  code: string;
  /** `retry`: rejected for lack of storage, kept and sent again later. */
  status: 'accepted' | 'duplicate' | 'rejected' | 'retry';
  event?: string;
  error?: { code: string; message: string };
  parcel?: DeviceAck['parcel'];
}

/** Publisher settings. */
export interface PublisherOptions {
  /** `mqtt://host:1883` or `mqtts://…`. */
  url: string;
  post: string;
  device: string;
  token: string;
  buffer: ScanBuffer;
  /** Firmware string for the status. Default `posko-bridge <version>`. */
  fw?: string;
  /** Default `posko-<device>` (stable, so the broker keeps the session). */
  clientId?: string;
  /** Most scans sent and not yet acknowledged. Default 50. */
  window?: number;
  /** Resend a scan with no ack after this long. Default 10,000 ms. */
  resendAfterMs?: number;
  /** First reconnect delay. Default 1000 ms. */
  backoffMinMs?: number;
  /** Longest reconnect delay. Default 60,000 ms. */
  backoffMaxMs?: number;
  /** Republish the status this often. Default 300,000 ms. */
  statusIntervalMs?: number;
  /** Default 10,000 ms. */
  connectTimeoutMs?: number;
  /** MQTT keep-alive in seconds. Default 30. */
  keepalive?: number;
  log?: BridgeLogger;
  /** Jitter source, for tests. Default Math.random. */
  random?: () => number;
}

/**
 * The reconnect delay after `attempt` failed attempts: `minMs` doubling per attempt, capped at
 * `maxMs`, drawn from the upper half of that step with `r` ∈ [0, 1) (jitter, so devices that lost
 * the gateway together do not all come back in the same instant).
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, r: number): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(base / 2 + (r * base) / 2);
}

interface InFlight {
  sentAt: number;
  sends: number;
}

type PublisherEvents = {
  feedback: [Feedback];
  connect: [];
  offline: [string];
};

/** Sends a device's buffered scans to the gateway and records the acks. */
export class Publisher extends EventEmitter<PublisherEvents> {
  private mqttClient: MqttClient | undefined;
  private ready = false;
  private stopped = true;
  private attempt = 0;
  private connectedAt = 0;
  private usefulConnection = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private tickTimer: ReturnType<typeof setInterval> | undefined;
  private statusTimer: ReturnType<typeof setInterval> | undefined;
  private readonly inflight = new Map<number, InFlight>();
  private readonly topics: { scan: string; ack: string; status: string };
  private readonly log: BridgeLogger;
  private readonly window: number;
  private readonly resendAfterMs: number;
  /** Counters, for the status and tests. */
  readonly stats = { sent: 0, resent: 0, accepted: 0, duplicate: 0, rejected: 0, retry: 0, connects: 0 };

  constructor(private readonly opts: PublisherOptions) {
    super();
    this.topics = deviceTopics(opts.post, opts.device);
    this.log = opts.log ?? silentLogger;
    this.window = Math.max(1, opts.window ?? 50);
    this.resendAfterMs = opts.resendAfterMs ?? 10_000;
  }

  /** The current MQTT connection (tests cut it with `client.stream.destroy()`). */
  get client(): MqttClient | undefined {
    return this.mqttClient;
  }

  /** True while connected and subscribed to the ack topic. */
  get connected(): boolean {
    return this.ready;
  }

  /** Scans sent and waiting for their ack. */
  get inFlight(): number {
    return this.inflight.size;
  }

  /** Connects and starts sending; reconnects by itself until `stop`. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const tick = Math.max(10, Math.min(1000, Math.floor(this.resendAfterMs / 2)));
    this.tickTimer = setInterval(() => this.resendDue(), tick);
    this.statusTimer = setInterval(() => { if (this.ready) this.publishStatus(); }, this.opts.statusIntervalMs ?? 300_000);
    this.connect();
  }

  /** New scans were appended to the buffer: send them if the window allows. */
  kick(): void {
    this.pump();
  }

  /** Resolves once nothing is in flight (or the connection is down), or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    return this.waitUntil(() => this.inflight.size === 0 || !this.ready, timeoutMs);
  }

  /** Resolves once the buffer has no pending scans, or after `timeoutMs` (false). */
  async drained(timeoutMs: number): Promise<boolean> {
    return this.waitUntil(() => this.opts.buffer.pendingCount === 0, timeoutMs);
  }

  /** Publishes the offline status, disconnects and stops reconnecting. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [this.tickTimer, this.statusTimer]) if (t) clearInterval(t);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.tickTimer = this.statusTimer = this.reconnectTimer = undefined;
    const c = this.mqttClient;
    this.mqttClient = undefined;
    const wasReady = this.ready;
    this.ready = false;
    this.inflight.clear();
    if (!c) return;
    if (wasReady && c.connected) {
      // A clean DISCONNECT suppresses the last will: say goodbye ourselves.
      const bye = c.publishAsync(this.topics.status, JSON.stringify({ online: false }), { qos: 1, retain: true }).catch(() => undefined);
      await Promise.race([bye, new Promise((r) => setTimeout(r, 2000))]);
      await Promise.race([c.endAsync().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    }
    c.end(true);
  }

  private async waitUntil(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  private connect(): void {
    if (this.stopped) return;
    const o = this.opts;
    const c = mqtt.connect(o.url, {
      clientId: o.clientId ?? `posko-${o.device}`,
      username: o.device,
      password: o.token,
      clean: false,
      keepalive: o.keepalive ?? 30,
      protocolVersion: 4,
      reconnectPeriod: 0, // our own back-off, below
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      will: { topic: this.topics.status, payload: Buffer.from(JSON.stringify({ online: false })), qos: 1, retain: true },
    });
    this.mqttClient = c;
    c.on('connect', () => this.onConnect(c));
    c.on('message', (topic, payload) => { if (c === this.mqttClient) this.onMessage(topic, payload); });
    c.on('error', (e) => {
      const code = (e as { code?: unknown }).code;
      if (code === 4 || code === 5) this.log.error('gateway refused the device credentials (check --device and --token)', { url: o.url, device: o.device });
      else this.log.debug('mqtt error', { error: e.message });
    });
    c.on('close', () => this.onClose(c));
  }

  private onConnect(c: MqttClient): void {
    if (c !== this.mqttClient) return;
    this.stats.connects++;
    this.connectedAt = Date.now();
    this.usefulConnection = false;
    this.inflight.clear(); // whatever was in flight on the last connection is sent again
    c.subscribe(this.topics.ack, { qos: 1 }, (err, granted) => {
      if (c !== this.mqttClient) return;
      if (err || !granted || granted.some((g) => g.qos === 128)) {
        this.log.error('gateway refused the ack subscription; reconnecting later', { topic: this.topics.ack, error: err?.message });
        c.end(true);
        return;
      }
      this.ready = true;
      this.log.info('connected to the gateway', { url: this.opts.url, device: this.opts.device, buffered: this.opts.buffer.pendingCount });
      this.publishStatus();
      this.emit('connect');
      this.pump();
    });
  }

  private onClose(c: MqttClient): void {
    if (c !== this.mqttClient) return;
    const wasReady = this.ready;
    this.ready = false;
    this.inflight.clear();
    this.mqttClient = undefined;
    c.end(true);
    if (this.usefulConnection || (this.connectedAt && Date.now() - this.connectedAt > 30_000)) this.attempt = 0;
    this.connectedAt = 0;
    if (this.stopped) return;
    const delay = this.nextDelay();
    if (wasReady) this.log.warn('connection to the gateway lost; scans stay buffered', { buffered: this.opts.buffer.pendingCount, retryMs: delay });
    else this.log.info('gateway not reachable; retrying', { url: this.opts.url, retryMs: delay, buffered: this.opts.buffer.pendingCount });
    this.emit('offline', wasReady ? 'lost' : 'unreachable');
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = undefined; this.connect(); }, delay);
  }

  private nextDelay(): number {
    return backoffDelay(this.attempt++, this.opts.backoffMinMs ?? 1000, this.opts.backoffMaxMs ?? 60_000, (this.opts.random ?? Math.random)());
  }

  private publishStatus(): void {
    const c = this.mqttClient;
    if (!c || !this.ready) return;
    const status = { online: true, fw: this.opts.fw ?? BRIDGE_FW, buffered: this.opts.buffer.pendingCount };
    c.publish(this.topics.status, JSON.stringify(status), { qos: 1, retain: true }, (err) => {
      if (err) this.log.debug('status not published', { error: err.message });
    });
  }

  /** Sends pending scans in seq order while the window has room. */
  private pump(): void {
    if (!this.ready) return;
    for (const s of this.opts.buffer.pendingIter()) {
      if (this.inflight.size >= this.window) break;
      if (this.inflight.has(s.seq)) continue;
      this.send(s, false);
    }
  }

  private send(s: BufferedScan, resend: boolean): void {
    const c = this.mqttClient;
    if (!c || !this.ready) return;
    const prev = this.inflight.get(s.seq);
    this.inflight.set(s.seq, { sentAt: Date.now(), sends: (prev?.sends ?? 0) + 1 });
    if (resend) this.stats.resent++; else this.stats.sent++;
    c.publish(this.topics.scan, JSON.stringify(s), { qos: 1 }, (err) => {
      if (err) this.log.debug('scan publish not acknowledged by the broker', { seq: s.seq, error: err.message });
    });
  }

  /** Sends again, oldest first, every scan whose ack is overdue. */
  private resendDue(): void {
    if (!this.ready) return;
    const now = Date.now();
    const due = [...this.inflight.entries()].filter(([, f]) => now - f.sentAt >= this.resendAfterMs).map(([seq]) => seq).sort((a, b) => a - b);
    if (due.length === 0) return;
    this.log.info('no ack in time: resending', { scans: due.length, first: due[0] });
    for (const seq of due) {
      const s = this.opts.buffer.get(seq);
      if (s) this.send(s, true);
      else this.inflight.delete(seq);
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic !== this.topics.ack) return;
    let ack: Partial<DeviceAck>;
    try {
      ack = JSON.parse(payload.toString('utf8')) as Partial<DeviceAck>;
    } catch {
      this.log.warn('unreadable ack from the gateway', { payload: payload.toString('utf8').slice(0, 200) });
      return;
    }
    const seq = ack.seq;
    if (typeof seq !== 'number') {
      this.log.info('ack without seq (not one of ours)', { status: ack.status, error: ack.error?.code });
      return;
    }
    const scan = this.opts.buffer.get(seq);
    if (!scan) {
      this.log.debug('ack for a scan no longer pending (a resend\'s answer)', { seq, status: ack.status });
      return;
    }
    const fb: Feedback = { seq, code: scan.code, status: 'accepted' };
    if (ack.event) fb.event = ack.event;
    if (ack.parcel) fb.parcel = ack.parcel;
    if (ack.error) fb.error = ack.error;
    try {
      if (ack.status === 'accepted' || ack.status === 'duplicate') {
        this.opts.buffer.ack(seq, ack.status);
        fb.status = ack.status;
      } else if (ack.status === 'rejected') {
        const code = ack.error?.code ?? 'UNKNOWN';
        if (RETRYABLE_ERRORS.has(code)) {
          // Kept: the resend timer (or the next reconnect) sends it again.
          this.inflight.set(seq, { sentAt: Date.now(), sends: this.inflight.get(seq)?.sends ?? 1 });
          fb.status = 'retry';
        } else {
          this.opts.buffer.ack(seq, 'rejected', code);
          fb.status = 'rejected';
        }
      } else {
        this.log.warn('ack with an unknown status', { seq, status: ack.status });
        return;
      }
    } catch (e) {
      this.log.error('could not record the ack in the buffer; the scan will be sent again', { seq, error: (e as Error).message });
      return;
    }
    if (fb.status !== 'retry') {
      this.inflight.delete(seq);
      this.usefulConnection = true;
    }
    this.stats[fb.status]++;
    this.logFeedback(fb);
    this.emit('feedback', fb);
    this.pump();
  }

  private logFeedback(fb: Feedback): void {
    const data = { seq: fb.seq, code: printable(fb.code), ...(fb.parcel ? { parcel: fb.parcel.id, parcelStatus: fb.parcel.status } : {}), ...(fb.error ? { error: fb.error.code, message: fb.error.message } : {}) };
    if (fb.status === 'accepted') this.log.info('scan accepted', data);
    else if (fb.status === 'duplicate') this.log.info('scan already recorded (duplicate)', data);
    else if (fb.status === 'retry') this.log.warn('gateway could not store the scan; it stays buffered and is retried', data);
    else this.log.warn('scan rejected by the gateway', data);
  }
}
