/**
 * The evdev decoder on recorded input-event byte streams: what a wedge scanner emits typing a
 * GS1 code with AIM prefix, Shift for capitals, GS as Ctrl+] / F8 / Alt+0029, Enter, split at
 * odd read boundaries, in the 64-bit and the 32-bit event layout.
 */
import { describe, expect, it } from 'vitest';
import { ScanAssembler } from '../assembler.ts';
import { EV_KEY, EV_SYN, EvdevDecoder, KEY, SYN_DROPPED, SYN_REPORT, encodeInputEvents, functionKey, nativeEventSize, readInputEvent, type EvdevDecodeOptions } from '../evdev.ts';
import { chunked, typeBytes, typeEvents } from './keys.ts';

const GS1 = ']C1' + '0109506000134352' + '\u001d' + '10ABC';

/** Decodes chunks into scans (Enter-terminated), the way the bridge wires it. */
function decode(chunks: Buffer[], opts: EvdevDecodeOptions = {}): { scans: string[]; unmapped: number[]; dropped: number } {
  const scans: string[] = [];
  const unmapped: number[] = [];
  let dropped = 0;
  const asm = new ScanAssembler((c) => scans.push(c), { scheduler: { setTimeout: () => 0, clearTimeout: () => {} } });
  const dec = new EvdevDecoder({ char: (c) => asm.push(c), enter: () => asm.terminate(), dropped: () => { dropped++; asm.abort(); } }, { onUnmapped: (c) => unmapped.push(c), ...opts });
  for (const c of chunks) dec.push(c);
  expect(dec.pendingBytes).toBe(0);
  return { scans, unmapped, dropped };
}

describe('evdev decoding', () => {
  it('reads the kernel layout of struct input_event (64-bit and 32-bit)', () => {
    const e = { sec: 1_732_868_100, usec: 654_321, type: EV_KEY, code: KEY.A, value: 1 };
    const b24 = encodeInputEvents([e], 24);
    expect(b24.length).toBe(24);
    expect([b24.readUInt16LE(16), b24.readUInt16LE(18), b24.readInt32LE(20)]).toEqual([1, 30, 1]);
    expect(readInputEvent(b24, 0, 24)).toEqual(e);
    const b16 = encodeInputEvents([{ ...e, value: -1 }], 16);
    expect(b16.length).toBe(16);
    expect(readInputEvent(b16, 0, 16)).toEqual({ ...e, value: -1 });
    expect(nativeEventSize('x64')).toBe(24);
    expect(nativeEventSize('arm64')).toBe(24);
    expect(nativeEventSize('arm')).toBe(16);
  });

  it('decodes a GS1 scan typed with Shift, Ctrl+] for GS and Enter, split at odd chunk boundaries', () => {
    const bytes = typeBytes(GS1, { gs: 'ctrl' });
    // 3 events per report, 2 reports per key, plus modifiers: a realistic few hundred events.
    expect(bytes.length % 24).toBe(0);
    expect(bytes.length / 24).toBeGreaterThan(150);
    for (const sizes of [[bytes.length], [1], [7], [13, 5, 31], [23, 25], [24], [100, 1, 47], [4096]]) {
      expect(decode(chunked(bytes, sizes)).scans).toEqual([GS1]);
    }
  });

  it('decodes correctly whatever single split point a read lands on', () => {
    const bytes = typeBytes(GS1, { gs: 'ctrl' });
    for (let cut = 1; cut < bytes.length; cut += 5) {
      expect(decode([bytes.subarray(0, cut), bytes.subarray(cut)]).scans).toEqual([GS1]);
    }
  });

  it('decodes the 32-bit (16-byte) layout of Raspberry Pi OS armhf', () => {
    const bytes = typeBytes(GS1, { gs: 'ctrl', eventSize: 16 });
    expect(decode(chunked(bytes, [9, 17, 3]), { eventSize: 16 }).scans).toEqual([GS1]);
  });

  it('takes GS from F8 (configurable) and from Alt+0029 on the keypad', () => {
    expect(decode([typeBytes(GS1, { gs: 'f8' })]).scans).toEqual([GS1]);
    expect(decode([typeBytes(GS1, { gs: 'alt' })]).scans).toEqual([GS1]);
    // Another function key configured: F8 is then an unmapped key, F9 is GS.
    const f9 = typeEvents(GS1, { gs: 'f8' }).map((e) => (e.type === EV_KEY && e.code === KEY.F8 ? { ...e, code: KEY.F9 } : e));
    expect(decode([encodeInputEvents(f9, 24)], { gsKey: functionKey('F9')! }).scans).toEqual([GS1]);
    const off = decode([typeBytes(GS1, { gs: 'f8' })], { gsKey: null });
    expect(off.scans).toEqual([GS1.replace('\u001d', '')]);
    expect(off.unmapped).toEqual([KEY.F8]);
  });

  it('maps the whole US layout with both Shift keys, and keypad Enter terminates', () => {
    const all = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-=[];'`\\,./ !@#$%^&*()_+{}:\"~|<>?";
    expect(decode([typeBytes(all)]).scans).toEqual([all]);
    expect(decode([typeBytes(all, { shiftKey: 'right', enter: 'kpenter' })]).scans).toEqual([all]);
  });

  it('gives Ctrl+key its ASCII control character (RS and EOT of ISO 15434), unless disabled', () => {
    // [)> RS 06 GS ... RS EOT, with RS = Ctrl+^ (Ctrl+Shift+6) and EOT = Ctrl+D.
    const ev = (code: number, value: number) => ({ sec: 0, usec: 0, type: EV_KEY, code, value });
    const tap = (code: number) => [ev(code, 1), ev(code, 0)];
    const events = [
      ev(KEY.LEFTSHIFT, 1), ...tap(KEY['0']), ev(KEY.LEFTSHIFT, 0), // )
      ev(KEY.RIGHTCTRL, 1), ev(KEY.LEFTSHIFT, 1), ...tap(KEY['6']), ev(KEY.LEFTSHIFT, 0), ev(KEY.RIGHTCTRL, 0), // RS
      ...tap(KEY['0']), ...tap(KEY['6']),
      ev(KEY.LEFTCTRL, 1), ...tap(KEY.RIGHTBRACE), ev(KEY.LEFTCTRL, 0), // GS
      ...tap(KEY.A),
      ev(KEY.LEFTCTRL, 1), ...tap(KEY.D), ev(KEY.LEFTCTRL, 0), // EOT
      ...tap(KEY.ENTER),
    ];
    expect(decode([encodeInputEvents(events, 24)]).scans).toEqual([')\u001e06\u001da\u0004']);
    const off = decode([encodeInputEvents(events, 24)], { ctrlChars: false });
    expect(off.scans).toEqual([')06a']);
    expect(off.unmapped).toEqual([KEY['6'], KEY.RIGHTBRACE, KEY.D]);
  });

  it('ignores auto-repeat and releases, follows Caps Lock, and skips non-key events', () => {
    expect(decode([typeBytes('AB12cd', { repeatAfter: 3 })]).scans).toEqual(['AB12cd']);
    const ev = (code: number, value: number) => ({ sec: 0, usec: 0, type: EV_KEY, code, value });
    const caps = [ev(KEY.CAPSLOCK, 1), ev(KEY.CAPSLOCK, 0), ev(KEY.A, 1), ev(KEY.A, 0), ev(KEY.LEFTSHIFT, 1), ev(KEY.B, 1), ev(KEY.B, 0), ev(KEY['1'], 1), ev(KEY['1'], 0), ev(KEY.LEFTSHIFT, 0), ev(KEY.CAPSLOCK, 1), ev(KEY.CAPSLOCK, 0), ev(KEY.C, 1), ev(KEY.ENTER, 1)];
    expect(decode([encodeInputEvents(caps, 24)]).scans).toEqual(['Ab!c']);
  });

  it('discards the scan in progress when the kernel dropped events (SYN_DROPPED)', () => {
    const first = typeEvents('LOST-PART', { enter: 'none' });
    const drop = [{ sec: 0, usec: 0, type: EV_SYN, code: SYN_DROPPED, value: 0 }, { sec: 0, usec: 0, type: EV_KEY, code: KEY.X, value: 1 }, { sec: 0, usec: 0, type: EV_SYN, code: SYN_REPORT, value: 0 }];
    const second = typeEvents('NEXT123');
    const r = decode([encodeInputEvents([...first, ...drop], 24), encodeInputEvents(second, 24)]);
    expect(r.dropped).toBe(1);
    expect(r.scans).toEqual(['NEXT123']);
  });

  it('finds function keys by name', () => {
    expect(functionKey('F8')).toBe(66);
    expect(functionKey('f12')).toBe(88);
    expect(functionKey('F13')).toBe(183);
    expect(functionKey('F25')).toBeUndefined();
    expect(functionKey('ctrl')).toBeUndefined();
  });
});
