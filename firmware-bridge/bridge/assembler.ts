/**
 * Assembles characters from a scanner (decoded key presses or serial bytes) into whole scans.
 *
 * A scan ends at a terminator (CR or LF, so CRLF and LFCR end it once; or Enter from evdev), or
 * when the scanner falls silent for longer than the inter-character gap (50 ms by default: a
 * scanner types a whole code within tens of milliseconds, a person takes 100 ms or more per key).
 * A scan ended by the gap alone must be at least `minGapLength` characters long; shorter bursts are
 * stray key presses (someone typing on the scanner's keyboard interface) and are dropped. A scan
 * longer than `maxLength` (512, the gateway's limit) is dropped whole with a warning.
 *
 * The code is kept exactly as read: AIM symbology identifiers (`]C1`…), GS (FNC1) and other
 * control characters stay in; the gateway parses them. Timers come from an injectable scheduler
 * so tests are deterministic.
 */
import { printable, silentLogger, type BridgeLogger } from './log.ts';

/** The timer functions the assembler needs; the default uses the global timers. */
export interface Scheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real timers. */
export const realScheduler: Scheduler = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** Why a scan ended. */
export type ScanEnd = 'terminator' | 'gap' | 'flush';

/** Assembler settings. */
export interface AssemblerOptions {
  /** Silence (ms) after which the characters so far form a scan. Default 50. */
  gapMs?: number;
  /** Longest code accepted; longer ones are dropped with a warning. Default 512. */
  maxLength?: number;
  /** Shortest code accepted when the gap (not a terminator) ended it. Default 4. */
  minGapLength?: number;
  /** Characters that end a scan. Default CR and LF. */
  terminators?: string[];
  scheduler?: Scheduler;
  log?: BridgeLogger;
  /** Called for every dropped scan (too long, stray keys), for tests and counters. */
  onDrop?: (reason: 'too-long' | 'stray', text: string) => void;
}

/** Turns a character stream into scans; `onScan` gets each code exactly as read. */
export class ScanAssembler {
  private buf = '';
  private overflow = false;
  private timer: unknown = undefined;
  private readonly gapMs: number;
  private readonly maxLength: number;
  private readonly minGapLength: number;
  private readonly terminators: Set<string>;
  private readonly scheduler: Scheduler;
  private readonly log: BridgeLogger;

  constructor(private readonly onScan: (code: string, end: ScanEnd) => void, private readonly opts: AssemblerOptions = {}) {
    this.gapMs = opts.gapMs ?? 50;
    this.maxLength = opts.maxLength ?? 512;
    this.minGapLength = opts.minGapLength ?? 4;
    this.terminators = new Set(opts.terminators ?? ['\r', '\n']);
    this.scheduler = opts.scheduler ?? realScheduler;
    this.log = opts.log ?? silentLogger;
  }

  /** Characters as they arrive (one or many). Terminators inside end the scan there. */
  push(text: string): void {
    for (const ch of text) {
      if (this.terminators.has(ch)) { this.end('terminator'); continue; }
      if (ch === '\u0000') continue; // NUL: padding from some serial scanners, never part of a code
      if (this.overflow) continue;
      if (this.buf.length + ch.length > this.maxLength) {
        this.overflow = true;
        continue;
      }
      this.buf += ch;
    }
    this.arm();
  }

  /** A terminator that is not a character (Enter from evdev). */
  terminate(): void {
    this.end('terminator');
  }

  /** Ends the current scan now (shutdown): treated like a gap. */
  flush(): void {
    this.end('flush');
  }

  /** Discards the current scan (input was lost, e.g. the kernel dropped events). */
  abort(): void {
    if (this.buf || this.overflow) this.log.warn('partial scan discarded: input was lost', { partial: printable(this.buf) });
    this.reset();
  }

  /** True while characters are waiting for a terminator or the gap. */
  get busy(): boolean {
    return this.buf.length > 0 || this.overflow;
  }

  private arm(): void {
    this.disarm();
    if (!this.busy) return;
    this.timer = this.scheduler.setTimeout(() => { this.timer = undefined; this.end('gap'); }, this.gapMs);
  }

  private disarm(): void {
    if (this.timer !== undefined) this.scheduler.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private reset(): void {
    this.disarm();
    this.buf = '';
    this.overflow = false;
  }

  private end(how: ScanEnd): void {
    const code = this.buf;
    const overflow = this.overflow;
    this.reset();
    if (overflow) {
      this.log.warn('scan dropped: longer than the limit', { maxLength: this.maxLength, start: printable(code.slice(0, 40)) });
      this.opts.onDrop?.('too-long', code);
      return;
    }
    if (code.length === 0) return; // CRLF's second half, or Enter on its own
    if (how !== 'terminator' && code.length < this.minGapLength) {
      this.log.info('stray keys dropped (too short for a scan)', { text: printable(code), minLength: this.minGapLength });
      this.opts.onDrop?.('stray', code);
      return;
    }
    this.onScan(code, how);
  }
}
