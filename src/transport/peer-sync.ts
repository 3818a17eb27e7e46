/**
 * Automatic sync: every enrolled peer with an address is probed on a timer; when one answers, the
 * exchange runs to completion (a probe is the opening hello itself, so an unchanged peer costs one
 * small round trip). Failures back off exponentially (up to 10 minutes) so a dead satellite link
 * costs nothing; per-peer status (last success, bytes, pending documents, last error) is kept in
 * SQLite and shown by `GET /api/v1/sync/peers` and `posko peers`.
 */
import { PoskoError, isPoskoError } from '../domain/errors.ts';
import type { Logger } from '../log.ts';
import { syncWith, type Progress, type SyncLimits, type SyncReport, type Transport } from '../sync/session.ts';
import type { PeerRow, SyncStore } from '../store/sync-store.ts';
import { HttpTransport } from './http-sync.ts';
import { MqttSync } from './mqtt-sync.ts';

const MAX_BACKOFF_MS = 10 * 60_000;

/** A peer's sync status, as shown to operators. */
export interface PeerStatus {
  id: string; role: string; status: string; source: string; url: string | null; fingerprint: string;
  lastSuccessAt: string | null; lastHeardAt: string | null; lastAttemptAt: string | null; lastError: string | null; failures: number;
  nextAttemptAt: string | null; bytesSent: number; bytesReceived: number; pendingDocs: number;
  budgetBytesPerDay: number | null; budgetLeftToday: number | null; syncing: boolean;
}

export interface PeerSyncDeps {
  sync: SyncStore;
  log: Logger;
  intervalMs: number;
  limits: SyncLimits;
  /** Runs before each exchange: fold pending events so the peer gets them. */
  beforeSync: () => void;
  fingerprint: (publicKey: string) => string;
  now?: () => number;
  /** The transport to reach a peer (HTTP by default). */
  transportFor?: (peer: PeerRow) => Transport;
  /** Sync through MQTT brokers, for peers whose URL is mqtt:// (absent: such peers are not reached). */
  mqtt?: MqttSync;
  /** Called after every exchange (metrics). */
  onReport?: (r: SyncReport | { peer: string; error: PoskoError }) => void;
}

/** The gateway's automatic sync with its peers. */
export class PeerSync {
  private timer: NodeJS.Timeout | undefined;
  private readonly running = new Map<string, Promise<SyncReport>>();
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly deps: PeerSyncDeps) {
    this.now = deps.now ?? Date.now;
  }

  start(): void {
    this.stopped = false;
    const tick = () => {
      void this.tick().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, Math.min(this.deps.intervalMs, 5_000)).unref();
      });
    };
    this.timer = setTimeout(tick, 200).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([...this.running.values()]);
  }

  /** Syncs with every due peer, one after another. */
  private async tick(): Promise<void> {
    for (const p of this.deps.sync.peers()) {
      if (this.stopped) return;
      if (p.status !== 'enrolled' || !p.url || this.running.has(p.id)) continue;
      const due = p.last_attempt_at === null || this.now() >= p.next_attempt_ms;
      if (!due) continue;
      await this.syncPeer(p.id).catch(() => undefined);
    }
  }

  /** Syncs with one peer now; resolves with the report, rejects with a PoskoError. */
  syncPeer(id: string, progress?: Progress): Promise<SyncReport> {
    const current = this.running.get(id);
    if (current) return current;
    const run = this.run(id, progress).finally(() => this.running.delete(id));
    this.running.set(id, run);
    return run;
  }

  private async run(id: string, progress?: Progress): Promise<SyncReport> {
    const { sync, log } = this.deps;
    const row = sync.peer(id);
    const peer = sync.enrolled(id);
    if (!row || !peer) throw new PoskoError('NOT_FOUND', `${id} is not an enrolled peer`);
    if (!row.url && !this.deps.transportFor) throw new PoskoError('VALIDATION', `no address is known for ${id} (posko enroll ${id} <key> --url ...)`);
    try {
      this.deps.beforeSync();
      let report: SyncReport;
      if (MqttSync.handles(row.url)) {
        if (!this.deps.mqtt) throw new PoskoError('VALIDATION', `${id} is reached through MQTT, which this command does not do; the running gateway does`);
        report = await this.deps.mqtt.push(row);
      } else {
        const transport = this.deps.transportFor?.(row) ?? new HttpTransport(row.url!);
        report = await syncWith(sync, peer, transport, this.deps.limits, progress);
      }
      sync.recordAttempt(id, { ok: true });
      if (report.events > 0 || report.chunksSent > 0 || report.refusedHere.length > 0 || report.refusedByPeer.length > 0) {
        log.info('synced', {
          peer: id, roundTrips: report.roundTrips, sent: report.bytesSent, received: report.bytesReceived, events: report.events,
          refusedHere: report.refusedHere.length, refusedByPeer: report.refusedByPeer.length, complete: report.complete,
        });
      }
      this.deps.onReport?.(report);
      return report;
    } catch (e) {
      const err = isPoskoError(e) ? e : new PoskoError('SYNC_PEER_ERROR', (e as Error).message);
      const failures = (row.failures ?? 0) + 1;
      const backoff = Math.min(MAX_BACKOFF_MS, this.deps.intervalMs * 2 ** Math.min(failures - 1, 10));
      const retryInMs = Math.round(backoff * (0.75 + Math.random() * 0.5));
      sync.recordAttempt(id, { ok: false, error: `${err.code}: ${err.message}`, nextAttemptMs: this.now() + retryInMs });
      log.debug('sync failed', { peer: id, code: err.code, error: err.message, retryInMs });
      this.deps.onReport?.({ peer: id, error: err });
      throw err;
    }
  }

  /** Every peer's status. */
  status(): PeerStatus[] {
    const { sync } = this.deps;
    return sync.peers().map((p) => {
      const left = sync.budgetLeft(p.id);
      return {
        id: p.id, role: p.role, status: p.status, source: p.source, url: p.url, fingerprint: this.deps.fingerprint(p.public_key),
        lastSuccessAt: p.last_success_at, lastHeardAt: p.last_heard_at, lastAttemptAt: p.last_attempt_at, lastError: p.last_error, failures: p.failures,
        nextAttemptAt: p.failures > 0 && p.next_attempt_ms > 0 ? new Date(p.next_attempt_ms).toISOString() : null,
        bytesSent: p.bytes_sent, bytesReceived: p.bytes_received, pendingDocs: p.status === 'enrolled' ? sync.pendingFor(p.id) : 0,
        budgetBytesPerDay: p.budget_bytes, budgetLeftToday: Number.isFinite(left) ? left : null, syncing: this.running.has(p.id),
      };
    });
  }
}
