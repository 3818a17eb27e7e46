/**
 * The bridge's offline buffer: an append-only journal file, one JSON object per line.
 *
 *   {"t":"scan","seq":41,"code":"]C1…","action":"receive","at":"2026-11-29T08:15:00+08:00"}
 *   {"t":"ack","seq":41,"status":"accepted"}
 *   {"t":"seq","next":42}                     (first line after a compaction)
 *
 * - A scan is appended and fdatasync'ed before `append` returns, so it is durable before it is
 *   published. Acks are appended without a sync: losing one only means the scan is sent again,
 *   and the gateway answers "duplicate".
 * - `seq` is the device's idempotency counter and must never repeat. On open the journal is
 *   read: the next seq is one past the highest seq seen anywhere (scans, acks, the compaction
 *   header, even a torn or corrupt line). A torn final line (power cut mid-write) is ignored and
 *   cut off so new lines start clean.
 * - `pending()` is the scans without an ack, in seq order.
 * - Compaction: when acked records outnumber pending ones (and there are at least
 *   `compactMinDead`), the journal is rewritten with only the seq header and the pending scans:
 *   temp file, fsync, rename over the journal, fsync the directory. A crash at any point leaves
 *   either the old or the new journal whole.
 * - At `capacity` pending scans, `append` throws `BufferFullError`: new scans are refused rather
 *   than overwriting unacknowledged ones.
 *
 * One process owns a journal at a time (the bridge service); it is not a shared database.
 */
import { closeSync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { silentLogger, type BridgeLogger } from './log.ts';

/** Optional fields of a scan, as in the device protocol's scan payload. */
export interface ScanFields {
  action?: string;
  qty?: number;
  unit?: string;
  item?: string;
  to?: string;
  org?: string;
  operator?: string;
  /** The device's clock (ISO 8601 with offset), only when it is trustworthy. */
  at?: string;
}

/** A scan in the buffer. */
export interface BufferedScan extends ScanFields {
  seq: number;
  code: string;
}

/** Final outcomes recorded for a scan. */
export type AckStatus = 'accepted' | 'duplicate' | 'rejected';

/** Thrown by `append` when `capacity` scans are pending: the scan is refused, nothing written. */
export class BufferFullError extends Error {
  readonly code = 'BUFFER_FULL';
  constructor(readonly capacity: number) {
    super(`offline buffer full: ${capacity} scans wait for the gateway; scan refused`);
    this.name = 'BufferFullError';
  }
}

/** Buffer settings. */
export interface ScanBufferOptions {
  /** Most pending scans; beyond, `append` throws `BufferFullError`. Default 100,000. */
  capacity?: number;
  /** The first seq of a new journal. Default 1 (the bridge's CLI uses the clock, see main.ts). */
  firstSeq?: number;
  /** Compact only once at least this many dead lines accumulated. Default 1000. */
  compactMinDead?: number;
  log?: BridgeLogger;
}

/** What `open` found in an existing journal. */
export interface RecoveryStats {
  lines: number;
  pending: number;
  /** Bytes of a torn final line that were cut off. */
  tornBytes: number;
  /** Unreadable lines in the middle (kept until the next compaction). */
  corruptLines: number;
}

const FIELD_KEYS = ['action', 'qty', 'unit', 'item', 'to', 'org', 'operator', 'at'] as const;

function isSeq(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** Highest `"seq":N` / `"next":N` mentioned in unreadable text (conservative seq recovery). */
function seqsMentioned(text: string): number {
  let max = -1;
  for (const m of text.matchAll(/"(seq|next)"\s*:\s*(\d{1,16})/g)) {
    const n = Number(m[2]);
    const v = m[1] === 'next' ? n - 1 : n;
    if (Number.isSafeInteger(v) && v > max) max = v;
  }
  return max;
}

/** The durable offline buffer of one device. */
export class ScanBuffer {
  private fd: number;
  private size = 0;
  private next = 0;
  private readonly live = new Map<number, BufferedScan>();
  private dead = 0;
  private needsNewline = false;
  private closed = false;
  private readonly log: BridgeLogger;
  readonly capacity: number;
  private readonly compactMinDead: number;
  /** What was found when the journal was opened. */
  readonly recovery: RecoveryStats;

  private constructor(readonly path: string, opts: ScanBufferOptions) {
    this.log = opts.log ?? silentLogger;
    this.capacity = opts.capacity ?? 100_000;
    this.compactMinDead = opts.compactMinDead ?? 1000;
    mkdirSync(dirname(path), { recursive: true });
    rmSync(`${path}.tmp`, { force: true }); // a compaction that did not finish: the journal is intact
    this.recovery = existsSync(path) ? this.recover() : { lines: 0, pending: 0, tornBytes: 0, corruptLines: 0 };
    this.fd = openSync(path, 'a');
    if (this.recovery.lines === 0 && this.next === 0) {
      // A new (or empty) journal: start at firstSeq and record it, so the counter survives even
      // when every scan has been compacted away.
      this.next = Math.max(0, Math.floor(opts.firstSeq ?? 1));
      this.writeLine(JSON.stringify({ t: 'seq', next: this.next }), true);
      this.fsyncDir();
    }
    this.maybeCompact();
  }

  /** Opens (or creates) the journal at `path` and recovers its state. */
  static open(path: string, opts: ScanBufferOptions = {}): ScanBuffer {
    return new ScanBuffer(path, opts);
  }

  /** The seq the next scan will get. */
  get nextSeq(): number {
    return this.next;
  }

  /** How many scans wait for their ack. */
  get pendingCount(): number {
    return this.live.size;
  }

  /** Lines in the journal that are no longer needed (acked scans and their acks). */
  get deadLines(): number {
    return this.dead;
  }

  /** The scans without an ack, in seq order. */
  pending(): BufferedScan[] {
    return [...this.live.values()];
  }

  /** Iterates the pending scans in seq order without copying (stop early as you like). */
  pendingIter(): IterableIterator<BufferedScan> {
    return this.live.values();
  }

  /** The pending scan with this seq. */
  get(seq: number): BufferedScan | undefined {
    return this.live.get(seq);
  }

  /**
   * Appends a scan with the next seq and syncs it to disk before returning it. Throws
   * `BufferFullError` when `capacity` scans are pending; rethrows write errors (disk full), in
   * which case nothing was recorded (the seq is skipped, never reused).
   */
  append(code: string, fields: ScanFields = {}): BufferedScan {
    this.assertOpen();
    if (this.live.size >= this.capacity) throw new BufferFullError(this.capacity);
    const seq = this.next++;
    const scan: BufferedScan = { seq, code };
    for (const k of FIELD_KEYS) if (fields[k] !== undefined) (scan as unknown as Record<string, unknown>)[k] = fields[k];
    this.writeLine(JSON.stringify({ t: 'scan', ...scan }), true);
    this.live.set(seq, scan);
    return scan;
  }

  /**
   * Records the gateway's final answer for a pending scan, which leaves `pending()`. Returns false
   * (and writes nothing) when the seq is not pending.
   */
  ack(seq: number, status: AckStatus, error?: string): boolean {
    this.assertOpen();
    if (!this.live.has(seq)) return false;
    const rec: Record<string, unknown> = { t: 'ack', seq, status };
    if (error) rec['error'] = error;
    this.writeLine(JSON.stringify(rec), false);
    this.live.delete(seq);
    this.dead += 2;
    this.maybeCompact();
    return true;
  }

  /** Rewrites the journal with only the seq header and the pending scans (crash-safe). */
  compact(): void {
    this.assertOpen();
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w');
    let size = 0;
    try {
      let chunk = JSON.stringify({ t: 'seq', next: this.next }) + '\n';
      for (const s of this.live.values()) {
        chunk += JSON.stringify({ t: 'scan', ...s }) + '\n';
        if (chunk.length > 1 << 20) { size += this.writeAll(fd, chunk); chunk = ''; }
      }
      if (chunk) size += this.writeAll(fd, chunk);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    closeSync(this.fd);
    renameSync(tmp, this.path);
    this.fsyncDir();
    this.fd = openSync(this.path, 'a');
    this.size = size;
    this.dead = 0;
    this.needsNewline = false;
    this.log.debug('buffer compacted', { pending: this.live.size, bytes: size });
  }

  /** Closes the journal. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { fsyncSync(this.fd); } catch { /* best effort: scans were synced when appended */ }
    closeSync(this.fd);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the buffer is closed');
  }

  private maybeCompact(): void {
    if (this.dead >= this.compactMinDead && this.dead > this.live.size) this.compact();
  }

  private writeAll(fd: number, text: string): number {
    const b = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
    return b.length;
  }

  /** Appends one line; on failure cuts the file back so no torn line stays in the middle. */
  private writeLine(json: string, sync: boolean): void {
    const text = (this.needsNewline ? '\n' : '') + json + '\n';
    const before = this.size;
    try {
      this.size += this.writeAll(this.fd, text);
      this.needsNewline = false;
      if (sync) fdatasyncSync(this.fd);
    } catch (e) {
      try {
        ftruncateSync(this.fd, before);
        this.size = before;
      } catch {
        this.needsNewline = true; // could not cut: start the next line on a fresh one
      }
      throw e;
    }
  }

  private fsyncDir(): void {
    try {
      const d = openSync(dirname(this.path), 'r');
      try { fsyncSync(d); } finally { closeSync(d); }
    } catch { /* some filesystems refuse fsync on directories */ }
  }

  /** Reads the journal: pending scans, next seq; cuts off a torn tail. */
  private recover(): RecoveryStats {
    const data = readFileSync(this.path);
    const stats: RecoveryStats = { lines: 0, pending: 0, tornBytes: 0, corruptLines: 0 };
    let maxSeq = -1;
    let nextHeader = 0;
    let pos = 0;
    let goodEnd = 0; // end of the last line that parsed
    let corruptSinceGood = 0;
    while (pos < data.length) {
      const nl = data.indexOf(0x0a, pos);
      if (nl < 0) break; // torn final line: no newline
      const line = data.subarray(pos, nl).toString('utf8');
      pos = nl + 1;
      if (line.trim() === '') { goodEnd = pos; continue; }
      stats.lines++;
      let rec: Record<string, unknown> | undefined;
      try {
        const v: unknown = JSON.parse(line);
        if (v && typeof v === 'object' && !Array.isArray(v)) rec = v as Record<string, unknown>;
      } catch { /* corrupt */ }
      if (!rec) {
        corruptSinceGood++;
        maxSeq = Math.max(maxSeq, seqsMentioned(line));
        continue;
      }
      stats.corruptLines += corruptSinceGood;
      corruptSinceGood = 0;
      goodEnd = pos;
      if (rec['t'] === 'scan' && isSeq(rec['seq']) && typeof rec['code'] === 'string') {
        const seq = rec['seq'];
        maxSeq = Math.max(maxSeq, seq);
        if (!this.live.has(seq)) {
          const scan: BufferedScan = { seq, code: rec['code'] };
          for (const k of FIELD_KEYS) if (rec[k] !== undefined) (scan as unknown as Record<string, unknown>)[k] = rec[k];
          this.live.set(seq, scan);
        }
      } else if (rec['t'] === 'ack' && isSeq(rec['seq'])) {
        maxSeq = Math.max(maxSeq, rec['seq']);
        if (this.live.delete(rec['seq'])) this.dead += 2;
        else this.dead += 1;
      } else if (rec['t'] === 'seq' && isSeq(rec['next'])) {
        nextHeader = Math.max(nextHeader, rec['next']);
      } else {
        stats.corruptLines++;
        maxSeq = Math.max(maxSeq, seqsMentioned(line));
      }
    }
    // A torn tail (and unreadable lines right before it) was never fully written: cut it off.
    const tail = data.subarray(goodEnd);
    if (tail.length > 0) {
      maxSeq = Math.max(maxSeq, seqsMentioned(tail.toString('utf8')));
      stats.tornBytes = tail.length;
      const fd = openSync(this.path, 'r+');
      try { ftruncateSync(fd, goodEnd); fsyncSync(fd); } finally { closeSync(fd); }
      this.log.warn('buffer: torn journal tail cut off (power cut during a write?)', { path: this.path, bytes: tail.length });
    }
    this.size = goodEnd;
    // Keep the live map in seq order (it is, unless the journal was edited by hand).
    const sorted = [...this.live.values()].sort((a, b) => a.seq - b.seq);
    this.live.clear();
    for (const s of sorted) this.live.set(s.seq, s);
    this.next = Math.max(nextHeader, maxSeq + 1);
    stats.pending = this.live.size;
    if (stats.corruptLines) this.log.warn('buffer: unreadable journal lines skipped', { path: this.path, lines: stats.corruptLines });
    return stats;
  }
}
