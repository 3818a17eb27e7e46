import { describe, expect, it } from 'vitest';
import { compareHlc, decodeHlc, encodeHlc, hlcDay, HybridClock } from '../../src/domain/hlc.ts';

describe('hybrid logical clock', () => {
  it('follows a sane physical clock', () => {
    let t = 1_000;
    const c = new HybridClock(() => t);
    expect(c.now()).toEqual({ wall: 1000, counter: 0 });
    t = 2_000;
    expect(c.now()).toEqual({ wall: 2000, counter: 0 });
  });

  it('never runs backwards when the physical clock jumps back (power cut, no RTC)', () => {
    let t = Date.UTC(2026, 10, 29);
    const c = new HybridClock(() => t);
    const before = c.now();
    t = Date.UTC(1970, 0, 1); // the Pi woke up in 1970
    const a = c.now();
    const b = c.now();
    expect(compareHlc(a, before)).toBeGreaterThan(0);
    expect(compareHlc(b, a)).toBeGreaterThan(0);
    expect(a.wall).toBe(before.wall);
  });

  it('restarts from the newest stored timestamp', () => {
    const stored = { wall: Date.UTC(2026, 10, 29, 12), counter: 7 };
    const c = new HybridClock(() => Date.UTC(2026, 0, 1), stored);
    expect(compareHlc(c.now(), stored)).toBeGreaterThan(0);
  });

  it('adopts a peer timestamp ahead of it, but not one absurdly far in the future', () => {
    const t = Date.UTC(2026, 10, 29);
    const c = new HybridClock(() => t, undefined, 3600_000);
    c.observe({ wall: t + 60_000, counter: 3 });
    expect(c.now()).toEqual({ wall: t + 60_000, counter: 4 });
    c.observe({ wall: Date.UTC(2040, 0, 1), counter: 0 });
    expect(c.now().wall).toBe(t + 60_000);
  });

  it('encodes to strings whose lexical order is the clock order', () => {
    const xs = [{ wall: 5, counter: 0 }, { wall: 5, counter: 35 }, { wall: 5, counter: 36 }, { wall: 6, counter: 0 }, { wall: 1e13, counter: 1 }];
    const enc = xs.map(encodeHlc);
    expect([...enc].sort()).toEqual(enc);
    for (const x of xs) expect(decodeHlc(encodeHlc(x))).toEqual(x);
    expect(decodeHlc('nonsense')).toBeUndefined();
    expect(hlcDay({ wall: Date.UTC(2026, 10, 29, 23, 59), counter: 0 })).toBe('2026-11-29');
  });
});
