/**
 * The scan assembler with a fake clock: terminators (CR, LF, CRLF, Enter), the inter-character
 * gap ending a scan without terminator, stray keys from a person typing, the length limit.
 */
import { describe, expect, it } from 'vitest';
import { ScanAssembler, type AssemblerOptions, type ScanEnd, type Scheduler } from '../assembler.ts';

/** A deterministic scheduler: time moves only when the test says so. */
class FakeScheduler implements Scheduler {
  now = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
  }
  get pending(): number {
    return this.timers.size;
  }
}

function setup(opts: AssemblerOptions = {}) {
  const clock = new FakeScheduler();
  const scans: [string, ScanEnd][] = [];
  const drops: [string, string][] = [];
  const asm = new ScanAssembler((c, end) => scans.push([c, end]), { scheduler: clock, onDrop: (r, t) => drops.push([r, t]), ...opts });
  /** Types `text` one character every `stepMs`. */
  const type = (text: string, stepMs = 2) => { for (const ch of text) { asm.push(ch); clock.advance(stepMs); } };
  return { clock, scans, drops, asm, type };
}

describe('scan assembler', () => {
  it('ends scans at CR, LF and CRLF, once each, and keeps GS and the AIM prefix', () => {
    const { scans, type, clock } = setup();
    type(']C10109506000134352\u001d10ABC\r\n');
    type('4006381333931\n');
    type('PSK1:DEMO:A1\r');
    type('PSK1:DEMO:A2\n\r');
    clock.advance(1000);
    expect(scans).toEqual([[']C10109506000134352\u001d10ABC', 'terminator'], ['4006381333931', 'terminator'], ['PSK1:DEMO:A1', 'terminator'], ['PSK1:DEMO:A2', 'terminator']]);
  });

  it('handles a whole chunk with several scans at once, and Enter from evdev', () => {
    const { scans, asm } = setup();
    asm.push('AAAA\r\nBBBB\r\nCC');
    asm.terminate();
    asm.terminate(); // a second Enter: nothing
    expect(scans.map((s) => s[0])).toEqual(['AAAA', 'BBBB', 'CC']);
  });

  it('ends a scan without terminator after the gap (default 50 ms), not before', () => {
    const { scans, type, clock } = setup();
    type('0109506000134352', 10); // 10 ms between characters: still one scan
    expect(scans).toEqual([]);
    clock.advance(39); // 10 + 39 = 49 ms of silence
    expect(scans).toEqual([]);
    clock.advance(1); // 50 ms
    expect(scans).toEqual([['0109506000134352', 'gap']]);
    type('SECOND-CODE', 3);
    clock.advance(100);
    expect(scans.map((s) => s[0])).toEqual(['0109506000134352', 'SECOND-CODE']);
  });

  it('splits two codes separated by a gap longer than the timeout', () => {
    const { scans, type, clock } = setup({ gapMs: 30 });
    type('FIRST-CODE', 5);
    clock.advance(40);
    type('SECOND-CODE\r', 5);
    expect(scans).toEqual([['FIRST-CODE', 'gap'], ['SECOND-CODE', 'terminator']]);
  });

  it('drops what a person types on the scanner interface (keys far apart)', () => {
    const { scans, drops, type, clock } = setup();
    type('abc\r', 180); // a human: 180 ms per key
    type('hello', 120);
    clock.advance(500);
    expect(scans).toEqual([]);
    expect(drops.map((d) => d[1])).toEqual(['a', 'b', 'c', 'h', 'e', 'l', 'l', 'o']);
    // …while a short code with a terminator, typed at scanner speed, is a scan.
    type('A1\r');
    expect(scans).toEqual([['A1', 'terminator']]);
  });

  it('drops codes longer than 512 characters with a warning, and recovers for the next one', () => {
    const warnings: string[] = [];
    const { scans, drops, asm, clock } = setup({ log: { debug() {}, info() {}, warn: (m) => warnings.push(m), error() {} } });
    asm.push('X'.repeat(512) + '\r');
    asm.push('Y'.repeat(513) + '\r');
    asm.push('Z'.repeat(600));
    clock.advance(100); // too long, ended by the gap
    asm.push('OK-AFTER\r');
    expect(scans.map((s) => s[0].length)).toEqual([512, 8]);
    expect(drops.map((d) => d[0])).toEqual(['too-long', 'too-long']);
    expect(warnings.filter((w) => /longer than the limit/.test(w))).toHaveLength(2);
  });

  it('flushes the scan in progress on shutdown, and abort discards it', () => {
    const { scans, asm, clock } = setup();
    asm.push('PARTIAL-1');
    asm.flush();
    asm.push('PARTIAL-2');
    asm.abort();
    clock.advance(100);
    expect(scans).toEqual([['PARTIAL-1', 'flush']]);
    expect(asm.busy).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it('ignores NUL padding and accepts custom terminators', () => {
    const { scans, asm } = setup({ terminators: ['\t', '\u0003'] });
    asm.push('\u0000CODE-1\tCODE\u0000-2\u0003');
    expect(scans.map((s) => s[0])).toEqual(['CODE-1', 'CODE-2']);
  });
});
