/**
 * Sync through an MQTT broker: one-way bundles on `posko/sync/<to>/<from>` at QoS 1, so a broker
 * (and a Mosquitto bridge from a post to HQ) stores and forwards them while a link is down. A
 * peer reached this way has a URL `mqtt://host:port` (or mqtts://, user:password@ allowed): the
 * broker both sides use. Each gateway keeps a persistent session (clean=false) subscribed to its
 * own topic; a bundle is merged before its PUBACK, and the merge is idempotent, so a redelivery
 * changes nothing. After merging, the receiver answers with the heads it now has (and whatever
 * the sender lacks), which is how the sender learns what arrived.
 */
import { createHash } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { PoskoError, isPoskoError } from '../domain/errors.ts';
import type { Logger } from '../log.ts';
import { exportBundles, importBundle, type SyncReport } from '../sync/session.ts';
import type { PeerRow, SyncStore } from '../store/sync-store.ts';
import { sameHeads } from '../sync/documents.ts';

/** The topic a bundle for `to` from `from` travels on. */
export function syncTopic(to: string, from: string): string {
  return `posko/sync/${to}/${from}`;
}

export interface MqttSyncDeps {
  sync: SyncStore;
  log: Logger;
  /** Most chunk bytes per MQTT message. */
  maxMessageBytes: number;
  /** Credentials when the URL carries none (the gateway's broker account). */
  account: () => { username: string; password: string };
  /** A bundle with the same content is not published again within this time (awaiting its answer). */
  resendMs?: number;
  now?: () => number;
}

/** The MQTT side of sync: one client per broker URL. */
export class MqttSync {
  private readonly clients = new Map<string, Promise<MqttClient>>();
  private readonly lastSent = new Map<string, { digest: string; at: number }>();
  private readonly now: () => number;

  constructor(private readonly deps: MqttSyncDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** True for a peer reached through a broker. */
  static handles(url: string | null): boolean {
    return url !== null && /^mqtts?:\/\//.test(url);
  }

  /** Connects (once per broker) with a persistent session subscribed to this gateway's topic. */
  private client(url: string): Promise<MqttClient> {
    const existing = this.clients.get(url);
    if (existing) return existing;
    const { sync, log } = this.deps;
    const me = sync.me.id;
    const parsed = new URL(url);
    const account = parsed.username ? { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) } : this.deps.account();
    parsed.username = '';
    parsed.password = '';
    const pending = new Promise<MqttClient>((resolve, reject) => {
      const client = mqtt.connect(parsed.toString(), {
        clientId: `posko-sync-${me}`, clean: false, reconnectPeriod: 5_000, connectTimeout: 15_000, protocolVersion: 4, ...account,
      });
      client.handleMessage = (packet, done) => {
        const from = packet.topic.split('/')[3] ?? '?';
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        try {
          this.receive(url, from, payload);
          done();
        } catch (e) {
          // Storage trouble: no PUBACK; the broker redelivers after a reconnect.
          log.error('sync bundle not stored; reconnecting so the broker redelivers', { from, error: (e as Error).message });
          client.stream.destroy();
        }
      };
      client.once('connect', () => {
        client.subscribe(syncTopic(me, '+'), { qos: 1 }, (err) => {
          if (err) reject(new PoskoError('SYNC_UNREACHABLE', `cannot subscribe on ${parsed.host}: ${err.message}`));
          else resolve(client);
        });
      });
      client.on('connect', () => log.info('sync broker connected', { broker: parsed.host }));
      client.on('error', (e) => log.debug('sync broker error', { broker: parsed.host, error: e.message }));
    });
    this.clients.set(url, pending);
    // A first connection that fails is forgotten, so the next attempt starts over.
    pending.catch(() => this.clients.delete(url));
    return pending;
  }

  /** Merges a bundle from `from`; refusals are logged (and kept by the store), never thrown. */
  private receive(url: string, from: string, payload: Buffer): void {
    const { sync, log } = this.deps;
    let r;
    try {
      r = importBundle(sync, payload);
    } catch (e) {
      if (isPoskoError(e) && e.status < 500) {
        log.warn('sync bundle refused', { from, code: e.code, error: e.message });
        return;
      }
      throw e;
    }
    sync.heard(r.from);
    if (r.events > 0 || r.refused.length > 0) log.info('sync bundle merged', { from: r.from, changed: r.changed, events: r.events, refused: r.refused.length });
    // Answer: the heads of what arrived (so the sender stops resending) and what it lacks.
    const peer = sync.peer(r.from);
    // Every document that came is announced, applied or not (a chunk built on something this
    // replica lost is not applied: the sender must learn what it has here).
    if (peer && peer.status === 'enrolled' && (r.chunks > 0 || sync.pendingFor(r.from) > 0)) {
      void this.publish(url, peer, r.docs).catch((e: unknown) => log.debug('sync answer not sent', { to: r.from, error: (e as Error).message }));
    }
  }

  /**
   * Publishes what `peer` lacks, and the heads of `announce` (documents that just arrived from
   * it: that is its acknowledgement). Content already published and not yet answered is not
   * published again within `resendMs`.
   */
  private async publish(url: string, peer: PeerRow, announce: readonly string[]): Promise<{ chunks: number; bytes: number }> {
    const { sync } = this.deps;
    const state = sync.state();
    const known = sync.known(peer.id);
    const lacking = [...state].filter(([d, h]) => h.length > 0 && !sameHeads(h, known.get(d))).sort(([a], [b]) => (a < b ? -1 : 1));
    if (lacking.length === 0 && announce.length === 0) return { chunks: 0, bytes: 0 };
    const digest = createHash('sha256').update(JSON.stringify(lacking)).digest('hex');
    const last = this.lastSent.get(peer.id);
    if (announce.length === 0 && last?.digest === digest && this.now() - last.at < (this.deps.resendMs ?? 5 * 60_000)) return { chunks: 0, bytes: 0 };
    const recipient = { id: peer.id, role: peer.role, publicKey: peer.public_key };
    const { bundles, chunks } = exportBundles(sync, [recipient], { forPeer: peer.id, maxBytes: this.deps.maxMessageBytes, haveDocs: announce });
    const client = await this.client(url);
    let bytes = 0;
    for (const b of bundles) {
      await client.publishAsync(syncTopic(peer.id, sync.me.id), b, { qos: 1 });
      bytes += b.length;
    }
    sync.spend(peer.id, bytes, 0);
    if (lacking.length > 0) this.lastSent.set(peer.id, { digest, at: this.now() });
    return { chunks, bytes };
  }

  /** One round for a peer: make sure we listen, and publish what it lacks (handed to the broker). */
  async push(peer: PeerRow): Promise<SyncReport> {
    if (!peer.url || !MqttSync.handles(peer.url)) throw new PoskoError('VALIDATION', `${peer.id} is not reached through MQTT`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PoskoError('SYNC_UNREACHABLE', `the broker ${new URL(peer.url!).host} did not answer`)), 20_000);
    });
    try {
      await Promise.race([this.client(peer.url), timeout]);
      const sent = await Promise.race([this.publish(peer.url, peer, []), timeout]);
      return {
        peer: peer.id, complete: true, roundTrips: 0, bytesSent: sent.bytes, bytesReceived: 0, chunksSent: sent.chunks,
        chunksReceived: 0, events: 0, refusedByPeer: [], refusedHere: [], budgetExhausted: false,
      };
    } finally {
      clearTimeout(timer);
    }
  }

  async stop(): Promise<void> {
    const clients = [...this.clients.values()];
    this.clients.clear();
    for (const c of clients) {
      try { await (await c).endAsync(); } catch { /* never connected */ }
    }
  }
}
