/**
 * Group commit: submissions that arrive while the event loop is busy (concurrent HTTP requests,
 * MQTT publishes) are recorded together in one transaction on the next turn, so a burst of single
 * scans costs one fsync instead of one each. Every submission still resolves only after the
 * commit that holds it.
 */
import type { ScanInput } from '../domain/events.ts';
import type { Ingest, IngestContext, ScanResult } from './ingest.ts';

interface Pending {
  scans: readonly ScanInput[];
  ctx: IngestContext;
  resolve: (r: ScanResult[]) => void;
  reject: (e: unknown) => void;
}

/** Queues submissions and commits them together. */
export class CommitQueue {
  private queue: Pending[] = [];
  private queued = 0;
  private scheduled = false;

  /** @param maxScans a group is committed early when it reaches this many scans */
  constructor(private readonly ingest: Ingest, private readonly maxScans = 2000) {}

  /** Records scans; resolves with their results once committed (or rejects with the storage error). */
  submit(scans: readonly ScanInput[], ctx: IngestContext): Promise<ScanResult[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ scans, ctx, resolve, reject });
      this.queued += scans.length;
      if (this.queued >= this.maxScans) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits everything queued now. */
  flush(): void {
    this.scheduled = false;
    const group = this.queue;
    if (group.length === 0) return;
    this.queue = [];
    this.queued = 0;
    let results: ScanResult[][];
    try {
      results = this.ingest.ingestGroups(group);
    } catch (e) {
      for (const p of group) p.reject(e);
      return;
    }
    group.forEach((p, i) => p.resolve(results[i]!));
  }
}
