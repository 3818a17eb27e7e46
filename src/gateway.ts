/**
 * Wires one gateway together and runs its lifecycle: open storage, restore the clock, build
 * ingest, the folder and the HTTP app, listen; on stop, in reverse: stop listening, stop the fold
 * worker, fold what is pending, close the database. Several gateways can run in one process (tests).
 */
import { serve, type ServerType } from '@hono/node-server';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DEFAULT_MQTT_PORT, type Config } from './config/config.ts';
import { gs1ReferenceYear } from './domain/barcode.ts';
import { decodeHlc, HybridClock } from './domain/hlc.ts';
import { asPostId } from './domain/ids.ts';
import { createApp } from './http/app.ts';
import { CommitQueue } from './ingest/commit-queue.ts';
import { DeviceMessages } from './ingest/device-messages.ts';
import { Ingest } from './ingest/ingest.ts';
import { LedgerFolder } from './ingest/fold.ts';
import { FoldRunner } from './ingest/fold-runner.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { newToken } from './store/devices.ts';
import { pidPath } from './store/backup.ts';
import { Store } from './store/store.ts';
import { EmbeddedBroker } from './transport/mqtt-broker.ts';
import { BrokerClient } from './transport/mqtt-client.ts';
import { gatewayBrokerAccount } from './transport/mosquitto-files.ts';
import { PeerSync } from './transport/peer-sync.ts';
import { MqttSync } from './transport/mqtt-sync.ts';
import { loadIdentity } from './store/identity-file.ts';
import { SyncStore } from './store/sync-store.ts';
import { actorPrefix, fingerprint, type Identity } from './sync/identity.ts';
import { serve as serveSync } from './sync/session.ts';

export const VERSION = '0.1.0';

/** Where the generated admin token is kept. */
export function adminTokenPath(dataDir: string): string {
  return join(dataDir, 'admin-token');
}

/**
 * The admin token: from config when set; else the one kept in the data directory; else a new one
 * written there (mode 0600). `created` says whether it was made now (so it is printed once).
 */
export function resolveAdminToken(cfg: Pick<Config, 'adminToken' | 'dataDir'>): { token: string; created: boolean } {
  if (cfg.adminToken) return { token: cfg.adminToken, created: false };
  const path = adminTokenPath(cfg.dataDir);
  if (existsSync(path)) return { token: readFileSync(path, 'utf8').trim(), created: false };
  const token = newToken();
  writeFileSync(path, token + '\n', { mode: 0o600, flag: 'wx' });
  return { token, created: true };
}

/** Injected effects, for tests. */
export interface GatewayOptions {
  now?: () => number;
  log: Logger;
}

/** A running (or ready to run) gateway. */
export class Gateway {
  readonly store: Store;
  readonly clock: HybridClock;
  readonly ingest: Ingest;
  readonly commits: CommitQueue;
  readonly folder: LedgerFolder;
  readonly metrics: Metrics;
  readonly app: ReturnType<typeof createApp>;
  readonly adminToken: string;
  readonly adminTokenCreated: boolean;
  readonly devices: DeviceMessages;
  readonly identity: Identity;
  readonly identityCreated: boolean;
  readonly sync: SyncStore;
  readonly peerSync: PeerSync;
  readonly mqttSync: MqttSync;
  private server: ServerType | undefined;
  private broker: EmbeddedBroker | undefined;
  private brokerClient: BrokerClient | undefined;
  /** The MQTT side as it is: which mode, the bound port, why it is off. */
  mqtt: { mode: 'embedded' | 'external' | 'off'; port?: number; url?: string; reason?: string } = { mode: 'off' };
  private readonly foldRunner: FoldRunner;
  private readonly startedAt: number;

  constructor(readonly config: Config, private readonly opts: GatewayOptions) {
    const now = opts.now ?? Date.now;
    this.startedAt = now();
    this.store = Store.open(config.dataDir);
    const admin = resolveAdminToken(config);
    this.adminToken = admin.token;
    this.adminTokenCreated = admin.created;
    const post = asPostId(config.postId);
    const floor = this.store.views.maxHlc();
    this.clock = new HybridClock(now, (floor && decodeHlc(floor)) || undefined);
    const loaded = loadIdentity(config.dataDir, config.postId, config.role);
    this.identity = loaded.identity;
    this.identityCreated = loaded.created;
    this.folder = new LedgerFolder(this.store, post, this.store.ensureActorPrefix(actorPrefix(this.identity.publicKey)));
    this.metrics = createMetrics({
      pendingFold: () => this.folder.pending(),
      events: () => this.store.queries.count('events'),
      parcels: () => this.store.queries.count('parcels'),
    });
    this.foldRunner = new FoldRunner(this.store, { dataDir: config.dataDir, post: config.postId }, config.foldIntervalMs, opts.log, this.metrics);
    this.ingest = new Ingest({ store: this.store, clock: this.clock, post, newId: randomUUID });
    this.commits = new CommitQueue(this.ingest);
    this.sync = new SyncStore(this.store, this.identity, {
      now,
      onEvents: (events) => {
        for (const e of events) {
          const h = decodeHlc(e.hlc);
          if (h) this.clock.observe(h);
        }
        this.metrics.syncEvents.inc(events.length);
      },
      onRefused: (peer, r) => {
        this.metrics.syncRefused.inc({ code: r.code });
        opts.log.warn('sync: chunk refused', { peer, doc: r.doc, code: r.code, reason: r.message });
      },
    });
    const limits = { maxMessageBytes: config.syncMessageBytes, maxRounds: 500 };
    this.mqttSync = new MqttSync({
      sync: this.sync, log: opts.log, now, maxMessageBytes: Math.min(config.syncMessageBytes, 1024 * 1024),
      account: () => (config.mqttUsername && config.mqttPassword
        ? { username: config.mqttUsername, password: config.mqttPassword }
        : gatewayBrokerAccount(this.store, config.postId)),
    });
    this.peerSync = new PeerSync({
      sync: this.sync, log: opts.log, intervalMs: config.syncIntervalMs, limits, now, fingerprint, mqtt: this.mqttSync,
      beforeSync: () => this.prepareSync(),
      onReport: (r) => this.metrics.syncExchanges.inc({ result: 'error' in r ? r.error.code : r.complete ? 'complete' : 'partial' }),
    });
    this.devices = new DeviceMessages(this.store, this.commits, opts.log, (kind, result) => this.metrics.mqttMessages.inc({ kind, result }));
    this.app = createApp({
      store: this.store, ingest: this.commits, metrics: this.metrics, log: opts.log, post: config.postId,
      role: config.role, version: VERSION, adminToken: this.adminToken, maxBodyBytes: config.maxBodyBytes,
      referenceYear: () => gs1ReferenceYear(this.clock),
      clockWall: () => this.clock.currentWall(),
      sync: {
        answer: (message) => {
          this.prepareSync();
          return serveSync(this.sync, message, limits);
        },
      },
      peers: this.peerSync,
      syncStore: this.sync,
      identity: { id: this.identity.id, role: this.identity.role, publicKey: this.identity.publicKey, fingerprint: fingerprint(this.identity.publicKey) },
      health: () => ({
        pendingFold: this.folder.pending(),
        uptimeS: Math.round((now() - this.startedAt) / 1000),
        mqtt: { ...this.mqtt, ...(this.brokerClient ? { connected: this.brokerClient.isConnected() } : {}) },
      }),
    });
  }

  /** Starts folding and listening. Resolves with the bound port once the server listens. */
  async start(): Promise<number> {
    this.foldRunner.start();
    this.peerSync.start();
    const port = await new Promise<number>((resolve, reject) => {
      const server = serve({ fetch: this.app.fetch, port: this.config.httpPort, hostname: this.config.httpHost }, (info: AddressInfo) => resolve(info.port));
      server.once('error', reject);
      // Scanners keep connections open between scans; idle sockets closed too eagerly race with
      // a client's next request on them.
      const http = server as unknown as { keepAliveTimeout: number; headersTimeout: number };
      http.keepAliveTimeout = 65_000;
      http.headersTimeout = 66_000;
      this.server = server;
    });
    await this.startMqtt();
    writeFileSync(pidPath(this.config.dataDir), `${process.pid}\n`);
    this.opts.log.info('gateway started', { post: this.config.postId, role: this.config.role, port, mqtt: this.mqtt, dataDir: this.config.dataDir });
    return port;
  }

  /**
   * Starts the MQTT side: a client of the external broker when `mqttUrl` is set, else the embedded
   * broker. A busy default port (another broker already runs here) only warns: HTTP still serves.
   */
  private async startMqtt(): Promise<void> {
    const { config } = this;
    const log = this.opts.log;
    const refused = (reason: string) => this.metrics.mqttRefused.inc({ reason });
    if (config.mqttUrl) {
      const account = gatewayBrokerAccount(this.store, config.postId);
      this.brokerClient = new BrokerClient({
        post: config.postId, url: config.mqttUrl, username: config.mqttUsername ?? account.username,
        password: config.mqttPassword ?? account.password, messages: this.devices, log,
      });
      await this.brokerClient.start();
      this.mqtt = { mode: 'external', url: config.mqttUrl.replace(/\/\/[^@/]*@/, '//') };
      return;
    }
    const broker = new EmbeddedBroker({ post: config.postId, store: this.store, messages: this.devices, log, refused });
    try {
      const port = await broker.start(config.mqttHost, config.mqttPort ?? DEFAULT_MQTT_PORT);
      this.broker = broker;
      this.mqtt = { mode: 'embedded', port };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (config.mqttPort !== undefined || code !== 'EADDRINUSE') throw e;
      this.mqtt = { mode: 'off', reason: `port ${DEFAULT_MQTT_PORT} is in use (another MQTT broker?); set --mqtt-port or MQTT_URL` };
      log.warn('embedded MQTT broker not started', { reason: this.mqtt.reason });
    }
  }

  /**
   * Folds pending events now, on this thread (tests, shutdown); a failure is logged and counted.
   * Periodic folding runs in the fold worker.
   */
  foldNow(): number {
    try {
      const n = this.folder.foldAll();
      if (n > 0) this.metrics.folded.inc(n);
      return n;
    } catch (e) {
      this.metrics.foldErrors.inc();
      this.opts.log.warn('fold failed; will retry', { error: (e as Error).message });
      return 0;
    }
  }

  /** Before a sync or an export: fold pending events, and list them in the post manifest. */
  prepareSync(): void {
    // The manifest follows this post's own writes (a fold), not merges: a ledger that comes back
    // from a peer (after a restore) must not start a new round of changes everywhere.
    const folded = this.foldNow();
    if (folded === 0 && this.store.docs.info(`post/${this.config.postId}`)) return;
    try {
      this.sync.refreshManifest();
    } catch (e) {
      this.opts.log.warn('manifest not updated', { error: (e as Error).message });
    }
  }

  /** Stops in reverse order: no new requests, fold what is pending, close the database. */
  async stop(): Promise<void> {
    await this.peerSync.stop();
    await this.mqttSync.stop();
    await this.broker?.stop();
    await this.brokerClient?.stop();
    this.broker = undefined;
    this.brokerClient = undefined;
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
    }
    await this.foldRunner.stop();
    this.foldNow();
    this.folder.forget();
    rmSync(pidPath(this.config.dataDir), { force: true });
    this.store.close();
    this.opts.log.info('gateway stopped', { post: this.config.postId });
  }
}
