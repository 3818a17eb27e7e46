/**
 * Runs folding in the background: every interval it asks a worker thread to fold what is pending
 * (the worker is started on the first tick, so short-lived gateways in tests never pay for it).
 * The worker prepares plans; this thread, the database's one writer, commits each in a short
 * transaction, so ingest never waits on a lock held by another thread. One fold at a time; a
 * failure is logged and retried on the next tick; on stop the worker closes its connection.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Store } from '../store/store.ts';
import { commitFold } from './fold.ts';
import type { FoldWorkerData, FromFoldWorker, ToFoldWorker } from './fold-worker.ts';

/** Background folding through a worker thread. */
export class FoldRunner {
  private worker: Worker | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private crashes = 0;
  private stopped = false;
  private waiters: ((m: FromFoldWorker) => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly data: FoldWorkerData,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Starts the periodic folding. */
  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    // A worker that keeps crashing is restarted with backoff, not in a tight loop.
    const delay = this.crashes === 0 ? this.intervalMs : Math.min(60_000, this.intervalMs * 2 ** this.crashes);
    this.timer = setTimeout(() => this.tick(), delay);
    this.timer.unref();
  }

  private spawn(): Worker {
    // The worker runs TypeScript too: its boot file registers tsx in that thread first.
    const w = new Worker(new URL('./fold-worker.boot.mjs', import.meta.url), { workerData: this.data });
    w.on('message', (m: FromFoldWorker) => {
      if (m.type === 'plan') {
        let ok = false;
        try {
          ok = commitFold(this.store, m.plan);
          if (ok) this.metrics.folded.inc(m.plan.count); // counted with the commit, not later
        } catch (e) {
          this.metrics.foldErrors.inc();
          this.log.warn('fold commit failed; will retry', { error: (e as Error).message });
        }
        w.postMessage({ type: 'settled', ok } satisfies ToFoldWorker);
        return;
      }
      if (m.type === 'folded') this.crashes = 0;
      if (m.type === 'error') {
        this.metrics.foldErrors.inc();
        this.log.warn('fold failed; will retry', { error: m.message });
      }
      this.waiters.shift()?.(m);
    });
    w.on('error', (e) => {
      this.crashes++;
      this.metrics.foldErrors.inc();
      this.log.error('fold worker crashed; restarting on the next tick', { error: e.message });
    });
    w.on('exit', () => {
      if (this.worker === w) this.worker = undefined;
      for (const f of this.waiters.splice(0)) f({ type: 'error', message: 'fold worker exited' });
    });
    w.unref();
    return w;
  }

  private request(m: ToFoldWorker): Promise<FromFoldWorker> {
    this.worker ??= this.spawn();
    const reply = new Promise<FromFoldWorker>((resolve) => this.waiters.push(resolve));
    this.worker.postMessage(m);
    return reply;
  }

  private async tick(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      await this.request({ type: 'fold' });
    } finally {
      this.busy = false;
      this.schedule();
    }
  }

  /** Stops folding: lets a running fold finish, closes the worker's connection. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const w = this.worker;
    if (!w) return;
    const done = this.request({ type: 'stop' });
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
    await Promise.race([done.then(() => undefined), timeout]);
    await w.terminate();
  }
}
