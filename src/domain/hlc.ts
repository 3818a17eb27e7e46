/**
 * Hybrid logical clock (Kulkarni et al.): a timestamp that follows wall time when the clock is sane
 * and never runs backwards when it is not (a Raspberry Pi has no RTC and wakes up in 1970 or in the
 * past after a power cut). Events are ordered by HLC, never by device or wall time. Pure: the
 * physical clock is passed in.
 */

/** A decoded HLC timestamp: milliseconds of (logical) wall time and a counter within that ms. */
export interface Hlc {
  readonly wall: number;
  readonly counter: number;
}

const WALL_DIGITS = 15;
const COUNTER_DIGITS = 6;
const MAX_COUNTER = 36 ** COUNTER_DIGITS - 1;

/**
 * Encodes an HLC as a fixed-width string whose lexical order is the HLC order:
 * `000001767225600000-00002a` (wall ms in decimal, counter in base 36).
 */
export function encodeHlc(h: Hlc): string {
  return `${String(h.wall).padStart(WALL_DIGITS, '0')}-${h.counter.toString(36).padStart(COUNTER_DIGITS, '0')}`;
}

const HLC_RE = /^(\d{15})-([0-9a-z]{6})$/;

/** Decodes an encoded HLC; returns undefined when the string is not one. */
export function decodeHlc(s: string): Hlc | undefined {
  const m = HLC_RE.exec(s);
  if (!m) return undefined;
  return { wall: Number(m[1]), counter: parseInt(m[2]!, 36) };
}

/** Compares two HLCs: negative, zero or positive. */
export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wall - b.wall || a.counter - b.counter;
}

/** The UTC day (`YYYY-MM-DD`) an HLC falls on: ledger documents are partitioned by it. */
export function hlcDay(h: Hlc): string {
  return new Date(h.wall).toISOString().slice(0, 10);
}

/**
 * A hybrid logical clock. `now()` issues a timestamp greater than every timestamp issued or
 * observed before; `observe()` folds in a timestamp seen from elsewhere (a peer, a stored event).
 */
export class HybridClock {
  private last: Hlc;

  /**
   * @param physicalNow the physical clock in ms (injected; `Date.now` in production)
   * @param start the greatest HLC known, e.g. the newest stored event, so a restart never goes back
   * @param maxForwardDriftMs a remote timestamp further ahead of our physical clock than this is
   *   not adopted (a peer with a clock in 2040 must not drag us there); it is still ordered after.
   */
  constructor(
    private readonly physicalNow: () => number,
    start: Hlc = { wall: 0, counter: 0 },
    private readonly maxForwardDriftMs = 24 * 3600 * 1000,
  ) {
    this.last = start;
  }

  /** The later of the physical clock and the latest timestamp: "now" as best this clock knows. */
  currentWall(): number {
    return Math.max(this.physicalNow(), this.last.wall);
  }

  /** The latest timestamp issued or observed. */
  peek(): Hlc {
    return this.last;
  }

  /** Issues a new timestamp for a local event. */
  now(): Hlc {
    const pt = this.physicalNow();
    if (pt > this.last.wall) this.last = { wall: pt, counter: 0 };
    else this.last = this.bump(this.last);
    return this.last;
  }

  /** Folds in a timestamp observed from a peer or from storage. */
  observe(remote: Hlc): void {
    const pt = this.physicalNow();
    if (remote.wall > pt + this.maxForwardDriftMs && remote.wall > this.last.wall) return;
    if (compareHlc(remote, this.last) > 0) this.last = remote;
  }

  private bump(h: Hlc): Hlc {
    return h.counter >= MAX_COUNTER ? { wall: h.wall + 1, counter: 0 } : { wall: h.wall, counter: h.counter + 1 };
  }
}
