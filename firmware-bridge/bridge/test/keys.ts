/**
 * Builds the input-event stream a USB keyboard-wedge scanner really produces when it "types" a
 * code: for each key, EV_MSC/MSC_SCAN with the HID usage, EV_KEY press, SYN_REPORT, then the
 * same for the release; Shift (or Ctrl, Alt) pressed around the keys that need it; timestamps a
 * few milliseconds apart. Used to record realistic byte streams for the decoder tests.
 */
import { EV_KEY, EV_MSC, EV_SYN, KEY, MSC_SCAN, SYN_REPORT, encodeInputEvents, type InputEvent } from '../evdev.ts';

const K = KEY as Record<string, number>;

/** HID keyboard usages (page 7) of the keys used here, for the MSC_SCAN events. */
const HID: Record<number, number> = {
  [KEY.ENTER]: 0x28, [KEY.ESC]: 0x29, [KEY.TAB]: 0x2b, [KEY.SPACE]: 0x2c, [KEY.MINUS]: 0x2d, [KEY.EQUAL]: 0x2e,
  [KEY.LEFTBRACE]: 0x2f, [KEY.RIGHTBRACE]: 0x30, [KEY.BACKSLASH]: 0x31, [KEY.SEMICOLON]: 0x33, [KEY.APOSTROPHE]: 0x34,
  [KEY.GRAVE]: 0x35, [KEY.COMMA]: 0x36, [KEY.DOT]: 0x37, [KEY.SLASH]: 0x38, [KEY.CAPSLOCK]: 0x39,
  [KEY.LEFTCTRL]: 0xe0, [KEY.LEFTSHIFT]: 0xe1, [KEY.LEFTALT]: 0xe2, [KEY.RIGHTCTRL]: 0xe4, [KEY.RIGHTSHIFT]: 0xe5, [KEY.RIGHTALT]: 0xe6,
  [KEY.KPENTER]: 0x58,
};
[...'abcdefghijklmnopqrstuvwxyz'].forEach((c, i) => { HID[K[c.toUpperCase()]!] = 0x04 + i; });
[...'1234567890'].forEach((c, i) => { HID[K[c]!] = 0x1e + i; });
for (let f = 1; f <= 12; f++) HID[K[`F${f}`]!] = 0x3a + f - 1;
[KEY.KP1, KEY.KP2, KEY.KP3, KEY.KP4, KEY.KP5, KEY.KP6, KEY.KP7, KEY.KP8, KEY.KP9, KEY.KP0].forEach((k, i) => { HID[k] = 0x59 + i; });

/** US layout, reversed: character → key and whether Shift is needed. */
const US: Record<string, [number, boolean]> = {};
const pairs: [number, string, string][] = [
  [KEY['1'], '1', '!'], [KEY['2'], '2', '@'], [KEY['3'], '3', '#'], [KEY['4'], '4', '$'], [KEY['5'], '5', '%'],
  [KEY['6'], '6', '^'], [KEY['7'], '7', '&'], [KEY['8'], '8', '*'], [KEY['9'], '9', '('], [KEY['0'], '0', ')'],
  [KEY.MINUS, '-', '_'], [KEY.EQUAL, '=', '+'], [KEY.LEFTBRACE, '[', '{'], [KEY.RIGHTBRACE, ']', '}'],
  [KEY.SEMICOLON, ';', ':'], [KEY.APOSTROPHE, "'", '"'], [KEY.GRAVE, '`', '~'], [KEY.BACKSLASH, '\\', '|'],
  [KEY.COMMA, ',', '<'], [KEY.DOT, '.', '>'], [KEY.SLASH, '/', '?'], [KEY.SPACE, ' ', ' '],
];
for (const [k, lo, hi] of pairs) { US[lo] = [k, false]; if (hi !== lo) US[hi] = [k, true]; }
for (const c of 'abcdefghijklmnopqrstuvwxyz') { US[c] = [K[c.toUpperCase()]!, false]; US[c.toUpperCase()] = [K[c.toUpperCase()]!, true]; }

/** How the scanner was programmed to send GS (FNC1). */
export type GsMode = 'ctrl' | 'f8' | 'alt';

/** Options of the simulated scanner. */
export interface TypeOptions {
  gs?: GsMode;
  shiftKey?: 'left' | 'right';
  /** Microseconds between reports. Default 2000 (2 ms, a typical wedge scanner). */
  stepUs?: number;
  /** Terminator key after the code: Enter, keypad Enter, or none. */
  enter?: 'enter' | 'kpenter' | 'none';
  /** Insert an auto-repeat event (value 2) after this many keys, as a stuck key would. */
  repeatAfter?: number;
}

/** The events a wedge scanner emits typing `text`. */
export function typeEvents(text: string, opts: TypeOptions = {}): InputEvent[] {
  const events: InputEvent[] = [];
  let t = 1_732_868_100 * 1_000_000 + 123_456; // µs
  const step = opts.stepUs ?? 2000;
  const shiftKey = opts.shiftKey === 'right' ? KEY.RIGHTSHIFT : KEY.LEFTSHIFT;
  const emit = (code: number, value: number) => {
    const sec = Math.floor(t / 1e6), usec = t % 1e6;
    if (value !== 2) events.push({ sec, usec, type: EV_MSC, code: MSC_SCAN, value: 0x70000 + (HID[code] ?? 0) });
    events.push({ sec, usec, type: EV_KEY, code, value });
    events.push({ sec, usec, type: EV_SYN, code: SYN_REPORT, value: 0 });
    t += step;
  };
  const tap = (code: number) => { emit(code, 1); emit(code, 0); };
  const withMod = (mod: number, fn: () => void) => { emit(mod, 1); fn(); emit(mod, 0); };
  let keys = 0;
  for (const ch of text) {
    if (ch === '\u001d') {
      if ((opts.gs ?? 'ctrl') === 'ctrl') withMod(KEY.LEFTCTRL, () => tap(KEY.RIGHTBRACE));
      else if (opts.gs === 'f8') tap(KEY.F8);
      else withMod(KEY.LEFTALT, () => { for (const d of '0029') tap(d === '0' ? KEY.KP0 : d === '2' ? KEY.KP2 : KEY.KP9); });
    } else {
      const m = US[ch];
      if (!m) throw new Error(`no US key for ${JSON.stringify(ch)}`);
      const [code, shift] = m;
      if (shift) withMod(shiftKey, () => tap(code)); else tap(code);
    }
    if (++keys === opts.repeatAfter) emit(US[ch]?.[0] ?? KEY.A, 2);
  }
  if ((opts.enter ?? 'enter') === 'enter') tap(KEY.ENTER);
  else if (opts.enter === 'kpenter') tap(KEY.KPENTER);
  return events;
}

/** The byte stream of `typeEvents`, as read from /dev/input/eventN. */
export function typeBytes(text: string, opts: TypeOptions & { eventSize?: 16 | 24 } = {}): Buffer {
  return encodeInputEvents(typeEvents(text, opts), opts.eventSize ?? 24);
}

/** Splits `buf` into chunks of the given sizes (cycled), like reads returning odd amounts. */
export function chunked(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let o = 0, i = 0;
  while (o < buf.length) {
    const n = sizes[i++ % sizes.length]!;
    out.push(buf.subarray(o, o + n));
    o += n;
  }
  return out;
}
