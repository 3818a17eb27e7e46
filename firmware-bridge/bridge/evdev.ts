/**
 * USB keyboard-wedge scanners on Linux: reads `/dev/input/eventN`, decodes the binary
 * `struct input_event` stream and turns key presses into characters with a US keymap.
 *
 * - Event layout: `struct timeval` (two longs) + u16 type + u16 code + s32 value: 24 bytes for a
 *   64-bit process, 16 bytes for a 32-bit one (Raspberry Pi OS armhf, even on a 64-bit kernel, as
 *   the kernel answers a 32-bit process in its own layout). Reads may split events anywhere.
 * - EV_KEY value 1 (press) produces characters; 2 (auto-repeat) is ignored; 0 (release) matters
 *   only for modifiers (Shift, Ctrl, Alt). Caps Lock toggles letter case.
 * - KEY_ENTER / KEY_KPENTER end a scan.
 * - GS (ASCII 29, GS1's FNC1) cannot be typed on a keyboard, so scanners are programmed to send a
 *   substitute: Ctrl+] (any Ctrl+key gives its ASCII control character, as on a terminal), a
 *   function key (F8 by default), or Alt+numpad (Alt+0029).
 * - SYN_DROPPED (the kernel's queue overflowed) discards the scan in progress.
 *
 * Exclusive access: a scanner is also a keyboard, so without EVIOCGRAB its codes would be typed
 * into the console login or the desktop too. Node has no ioctl; `evgrab.c` (next to this file) is a
 * tiny helper that opens the device, grabs it and copies the raw events to stdout. `openEvdev`
 * spawns it when it is built, and otherwise reads the device directly; `EvdevSource` logs which.
 */
import { spawn, execFile } from 'node:child_process';
import { accessSync, constants, createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { silentLogger, type BridgeLogger } from './log.ts';

// Event types and codes from <linux/input-event-codes.h>.
export const EV_SYN = 0x00;
export const EV_KEY = 0x01;
export const EV_MSC = 0x04;
export const SYN_REPORT = 0;
export const SYN_DROPPED = 3;
export const MSC_SCAN = 4;

/** Key codes used by scanners (from <linux/input-event-codes.h>). */
export const KEY = {
  ESC: 1, '1': 2, '2': 3, '3': 4, '4': 5, '5': 6, '6': 7, '7': 8, '8': 9, '9': 10, '0': 11,
  MINUS: 12, EQUAL: 13, BACKSPACE: 14, TAB: 15,
  Q: 16, W: 17, E: 18, R: 19, T: 20, Y: 21, U: 22, I: 23, O: 24, P: 25,
  LEFTBRACE: 26, RIGHTBRACE: 27, ENTER: 28, LEFTCTRL: 29,
  A: 30, S: 31, D: 32, F: 33, G: 34, H: 35, J: 36, K: 37, L: 38,
  SEMICOLON: 39, APOSTROPHE: 40, GRAVE: 41, LEFTSHIFT: 42, BACKSLASH: 43,
  Z: 44, X: 45, C: 46, V: 47, B: 48, N: 49, M: 50,
  COMMA: 51, DOT: 52, SLASH: 53, RIGHTSHIFT: 54, KPASTERISK: 55, LEFTALT: 56, SPACE: 57, CAPSLOCK: 58,
  F1: 59, F2: 60, F3: 61, F4: 62, F5: 63, F6: 64, F7: 65, F8: 66, F9: 67, F10: 68,
  NUMLOCK: 69, SCROLLLOCK: 70,
  KP7: 71, KP8: 72, KP9: 73, KPMINUS: 74, KP4: 75, KP5: 76, KP6: 77, KPPLUS: 78, KP1: 79, KP2: 80, KP3: 81, KP0: 82, KPDOT: 83,
  '102ND': 86, F11: 87, F12: 88,
  KPENTER: 96, RIGHTCTRL: 97, KPSLASH: 98, RIGHTALT: 100,
  F13: 183, F14: 184, F15: 185, F16: 186, F17: 187, F18: 188, F19: 189, F20: 190, F21: 191, F22: 192, F23: 193, F24: 194,
} as const;

/** The function keys by name (F1…F24), for configuration. */
export function functionKey(name: string): number | undefined {
  const m = /^F([1-9]|1[0-9]|2[0-4])$/i.exec(name.trim());
  if (!m) return undefined;
  return (KEY as Record<string, number>)[`F${m[1]}`];
}

/** US layout: key code → [unshifted, shifted]. */
const US_KEYMAP: ReadonlyMap<number, readonly [string, string]> = new Map<number, readonly [string, string]>([
  [KEY['1'], ['1', '!']], [KEY['2'], ['2', '@']], [KEY['3'], ['3', '#']], [KEY['4'], ['4', '$']], [KEY['5'], ['5', '%']],
  [KEY['6'], ['6', '^']], [KEY['7'], ['7', '&']], [KEY['8'], ['8', '*']], [KEY['9'], ['9', '(']], [KEY['0'], ['0', ')']],
  [KEY.MINUS, ['-', '_']], [KEY.EQUAL, ['=', '+']], [KEY.TAB, ['\t', '\t']],
  [KEY.LEFTBRACE, ['[', '{']], [KEY.RIGHTBRACE, [']', '}']], [KEY.SEMICOLON, [';', ':']], [KEY.APOSTROPHE, ["'", '"']],
  [KEY.GRAVE, ['`', '~']], [KEY.BACKSLASH, ['\\', '|']], [KEY['102ND'], ['\\', '|']],
  [KEY.COMMA, [',', '<']], [KEY.DOT, ['.', '>']], [KEY.SLASH, ['/', '?']], [KEY.SPACE, [' ', ' ']],
  ...[...'QWERTYUIOPASDFGHJKLZXCVBNM'].map((c) => [(KEY as Record<string, number>)[c]!, [c.toLowerCase(), c]] as [number, readonly [string, string]]),
]);

/** Keypad keys (NumLock on, as scanners assume) → character. */
const KEYPAD: ReadonlyMap<number, string> = new Map([
  [KEY.KP0, '0'], [KEY.KP1, '1'], [KEY.KP2, '2'], [KEY.KP3, '3'], [KEY.KP4, '4'], [KEY.KP5, '5'], [KEY.KP6, '6'], [KEY.KP7, '7'], [KEY.KP8, '8'], [KEY.KP9, '9'],
  [KEY.KPDOT, '.'], [KEY.KPSLASH, '/'], [KEY.KPASTERISK, '*'], [KEY.KPMINUS, '-'], [KEY.KPPLUS, '+'],
]);

const LETTER_KEYS = new Set([...'QWERTYUIOPASDFGHJKLZXCVBNM'].map((c) => (KEY as Record<string, number>)[c]!));

/** The bytes of one `struct input_event` for this process: 24 on 64-bit, 16 on 32-bit. */
export function nativeEventSize(arch: string = process.arch): 16 | 24 {
  return arch === 'arm' || arch === 'ia32' || arch === 'mips' || arch === 'mipsel' || arch === 'ppc' ? 16 : 24;
}

/** One decoded input event. */
export interface InputEvent {
  sec: number;
  usec: number;
  type: number;
  code: number;
  value: number;
}

/** Reads one event at `offset` of `buf` (which must hold `size` bytes from there). */
export function readInputEvent(buf: Buffer, offset: number, size: 16 | 24): InputEvent {
  if (size === 24) {
    return {
      sec: Number(buf.readBigInt64LE(offset)), usec: Number(buf.readBigInt64LE(offset + 8)),
      type: buf.readUInt16LE(offset + 16), code: buf.readUInt16LE(offset + 18), value: buf.readInt32LE(offset + 20),
    };
  }
  return {
    sec: buf.readInt32LE(offset), usec: buf.readInt32LE(offset + 4),
    type: buf.readUInt16LE(offset + 8), code: buf.readUInt16LE(offset + 10), value: buf.readInt32LE(offset + 12),
  };
}

/** Writes events in the kernel's layout (the inverse of `readInputEvent`: tests, replay tools). */
export function encodeInputEvents(events: InputEvent[], size: 16 | 24 = nativeEventSize()): Buffer {
  const out = Buffer.alloc(events.length * size);
  events.forEach((e, i) => {
    const o = i * size;
    if (size === 24) {
      out.writeBigInt64LE(BigInt(e.sec), o); out.writeBigInt64LE(BigInt(e.usec), o + 8);
      out.writeUInt16LE(e.type, o + 16); out.writeUInt16LE(e.code, o + 18); out.writeInt32LE(e.value, o + 20);
    } else {
      out.writeInt32LE(e.sec, o); out.writeInt32LE(e.usec, o + 4);
      out.writeUInt16LE(e.type, o + 8); out.writeUInt16LE(e.code, o + 10); out.writeInt32LE(e.value, o + 12);
    }
  });
  return out;
}

/** Where decoded key presses go. */
export interface KeySink {
  /** Printable characters and control characters (GS, RS, EOT…). */
  char(ch: string): void;
  /** Enter / keypad Enter: the scan's terminator. */
  enter(): void;
  /** The kernel dropped events (SYN_DROPPED): the scan in progress is incomplete. */
  dropped?(): void;
}

/** How GS and other control characters arrive from the scanner. */
export interface EvdevDecodeOptions {
  /** Bytes per event: 24 (64-bit process) or 16 (32-bit). Default: this process's. */
  eventSize?: 16 | 24;
  /** Ctrl+key → its ASCII control character (Ctrl+] → GS, Ctrl+^ → RS, Ctrl+D → EOT). Default true. */
  ctrlChars?: boolean;
  /** A key that stands for GS (FNC1); null for none. Default KEY_F8. */
  gsKey?: number | null;
  /** Alt held + keypad digits → the character with that decimal code (Alt+0029 → GS). Default true. */
  altNumpad?: boolean;
  /** Called with key codes that produce nothing (unmapped keys), for debugging a scanner's setup. */
  onUnmapped?: (code: number) => void;
}

/**
 * Decodes a raw input-event byte stream into characters. Feed it chunks as they are read; events
 * split across chunks are reassembled.
 */
export class EvdevDecoder {
  private rest: Buffer = Buffer.alloc(0);
  private shiftL = false;
  private shiftR = false;
  private ctrlL = false;
  private ctrlR = false;
  private altL = false;
  private altR = false;
  private capsLock = false;
  private altCode = '';
  private dropping = false;
  readonly eventSize: 16 | 24;
  private readonly ctrlChars: boolean;
  private readonly gsKey: number | null;
  private readonly altNumpad: boolean;

  constructor(private readonly sink: KeySink, private readonly opts: EvdevDecodeOptions = {}) {
    this.eventSize = opts.eventSize ?? nativeEventSize();
    this.ctrlChars = opts.ctrlChars ?? true;
    this.gsKey = opts.gsKey === undefined ? KEY.F8 : opts.gsKey;
    this.altNumpad = opts.altNumpad ?? true;
  }

  /** Feeds raw bytes as read from the device (any chunking). */
  push(chunk: Buffer): void {
    const data = this.rest.length ? Buffer.concat([this.rest, chunk]) : chunk;
    const size = this.eventSize;
    const whole = data.length - (data.length % size);
    for (let o = 0; o < whole; o += size) this.event(readInputEvent(data, o, size));
    this.rest = whole < data.length ? Buffer.from(data.subarray(whole)) : Buffer.alloc(0);
  }

  /** Forgets modifier state and partial bytes (after the device was reopened). */
  reset(): void {
    this.rest = Buffer.alloc(0);
    this.shiftL = this.shiftR = this.ctrlL = this.ctrlR = this.altL = this.altR = false;
    this.capsLock = false;
    this.altCode = '';
    this.dropping = false;
  }

  /** Bytes of an incomplete event waiting for the next chunk. */
  get pendingBytes(): number {
    return this.rest.length;
  }

  /** Handles one decoded event. */
  event(e: InputEvent): void {
    if (e.type === EV_SYN) {
      if (e.code === SYN_DROPPED) {
        // Events were lost: ignore everything up to the next SYN_REPORT and forget what we knew.
        this.dropping = true;
        this.shiftL = this.shiftR = this.ctrlL = this.ctrlR = this.altL = this.altR = false;
        this.altCode = '';
        this.sink.dropped?.();
      } else if (e.code === SYN_REPORT) {
        this.dropping = false;
      }
      return;
    }
    if (this.dropping || e.type !== EV_KEY) return;
    const down = e.value === 1;
    const up = e.value === 0;
    switch (e.code) {
      case KEY.LEFTSHIFT: if (!down && !up) return; this.shiftL = down; return;
      case KEY.RIGHTSHIFT: if (!down && !up) return; this.shiftR = down; return;
      case KEY.LEFTCTRL: if (!down && !up) return; this.ctrlL = down; return;
      case KEY.RIGHTCTRL: if (!down && !up) return; this.ctrlR = down; return;
      case KEY.LEFTALT:
      case KEY.RIGHTALT: {
        if (!down && !up) return;
        if (e.code === KEY.LEFTALT) this.altL = down; else this.altR = down;
        if (up && !this.altL && !this.altR) this.finishAltCode();
        return;
      }
    }
    if (!down) return; // releases of ordinary keys, and auto-repeat
    this.press(e.code);
  }

  private press(code: number): void {
    const ctrl = this.ctrlL || this.ctrlR;
    const alt = this.altL || this.altR;
    const shift = this.shiftL || this.shiftR;
    if (code === KEY.CAPSLOCK) { this.capsLock = !this.capsLock; return; }
    if (code === KEY.ENTER || code === KEY.KPENTER) { this.sink.enter(); return; }
    if (this.gsKey !== null && code === this.gsKey) { this.sink.char('\u001d'); return; }
    const kp = KEYPAD.get(code);
    if (kp !== undefined) {
      if (alt && this.altNumpad && /[0-9]/.test(kp)) { this.altCode += kp; return; }
      this.sink.char(kp);
      return;
    }
    const pair = US_KEYMAP.get(code);
    if (!pair) { this.opts.onUnmapped?.(code); return; }
    const upper = LETTER_KEYS.has(code) ? shift !== this.capsLock : shift;
    const ch = upper ? pair[1] : pair[0];
    if (ctrl) {
      if (!this.ctrlChars) { this.opts.onUnmapped?.(code); return; }
      const c = ch.charCodeAt(0);
      // As on a terminal: Ctrl with @ A-Z [ \ ] ^ _ (either case) gives 0x00-0x1f.
      if (c >= 0x40 && c <= 0x7e && c !== 0x60 && c !== 0x7e) this.sink.char(String.fromCharCode(c & 0x1f));
      else if (ch === '6') this.sink.char('\u001e'); // Ctrl+6 = Ctrl+^ on a US keyboard
      else if (ch === '-') this.sink.char('\u001f'); // Ctrl+- = Ctrl+_
      else this.opts.onUnmapped?.(code);
      return;
    }
    if (alt && this.altNumpad) { this.opts.onUnmapped?.(code); return; } // Alt+letter: a shortcut, not text
    this.sink.char(ch);
  }

  private finishAltCode(): void {
    const digits = this.altCode;
    this.altCode = '';
    if (!digits) return;
    const n = Number.parseInt(digits, 10) % 256;
    this.sink.char(String.fromCharCode(n));
  }
}

// ---------------------------------------------------------------------------------------------
// Reading a device: through the evgrab helper (exclusive) or directly.

/** Exit codes of evgrab.c. */
export const EVGRAB_EXIT = { OK: 0, USAGE: 2, OPEN: 3, GRAB: 4, READ: 5, WRITE: 6 } as const;

/** The helper's C source, next to this module. */
export const EVGRAB_SOURCE = fileURLToPath(new URL('./evgrab.c', import.meta.url));

/** Where the bridge looks for the compiled helper by default (next to the source). */
export const EVGRAB_DEFAULT_BINARY = fileURLToPath(new URL('./evgrab', import.meta.url));

/**
 * Compiles evgrab.c with the C compiler `cc` into `out`; resolves with the compiler's warnings
 * (empty when clean), rejects with its errors.
 */
export function compileEvgrab(out: string, cc = 'cc'): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cc, ['-O2', '-Wall', '-Wextra', '-o', out, EVGRAB_SOURCE], (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cc} failed: ${stderr || err.message}`));
      else resolve(stderr);
    });
  });
}

/** True when `path` is an executable file. */
export function isExecutable(path: string): boolean {
  try { accessSync(path, constants.X_OK); return true; } catch { return false; }
}

/** An opened input device: its raw event bytes, and how it is held. */
export interface OpenedEvdev {
  /** `grab`: exclusive through evgrab; `direct`: plain read (keys also reach the console). */
  mode: 'grab' | 'direct';
  /** Why it is not grabbed (direct mode): the helper is missing, or the grab was refused. */
  fallback?: 'no-helper' | 'grab-refused';
  /** The helper's explanation when the grab was refused. */
  reason?: string;
  /** The raw `struct input_event` bytes. */
  stream: Readable;
  /** Resolves with a reason once the device stops delivering (unplugged, helper exited…). */
  closed: Promise<string>;
  /** Releases the device (ends the grab). */
  close(): void;
}

/**
 * Opens an input device for reading, exclusively when possible: spawns the evgrab helper (which
 * opens it and issues EVIOCGRAB) and resolves once the grab holds. Falls back to reading the
 * device directly when the helper is not built or the grab is refused (`fallback` says which).
 * Rejects when the device cannot be opened at all (missing, no permission).
 */
export function openEvdev(path: string, opts: { grabHelper?: string; highWaterMark?: number; log?: BridgeLogger } = {}): Promise<OpenedEvdev> {
  const log = opts.log ?? silentLogger;
  const helper = opts.grabHelper ?? EVGRAB_DEFAULT_BINARY;
  if (!isExecutable(helper)) return openDirect(path, opts.highWaterMark, 'no-helper');
  return new Promise<OpenedEvdev>((resolve, reject) => {
    const child = spawn(helper, [path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let settled = false;
    let stderr = '';
    let lastError = '';
    const closed = new Promise<string>((r) => child.once('close', (code, signal) => r(lastError || `evgrab exited (${code ?? signal})`)));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      let nl: number;
      while ((nl = stderr.indexOf('\n')) >= 0) {
        const line = stderr.slice(0, nl);
        stderr = stderr.slice(nl + 1);
        if (!line) continue;
        if (line.startsWith('evgrab: grabbed')) {
          if (!settled) {
            settled = true;
            resolve({ mode: 'grab', stream: child.stdout!, closed, close: () => { child.kill('SIGTERM'); } });
          }
        } else {
          lastError = line;
          log.debug('evgrab', { message: line }); // callers report it (rejection, fallback reason, closed)
        }
      }
    });
    child.once('error', (e) => {
      // Could not even start the helper (wrong architecture…): read directly.
      if (settled) return;
      settled = true;
      log.warn('evgrab could not run', { error: e.message });
      openDirect(path, opts.highWaterMark, 'grab-refused', e.message).then(resolve, reject);
    });
    child.once('close', (code) => { // after stderr was read to the end: lastError is complete
      if (settled) return;
      settled = true;
      if (code === EVGRAB_EXIT.GRAB) openDirect(path, opts.highWaterMark, 'grab-refused', lastError).then(resolve, reject);
      else reject(new Error(lastError || `evgrab exited with ${code}`));
    });
  });
}

function openDirect(path: string, highWaterMark = 24 * 64, fallback: 'no-helper' | 'grab-refused', reason?: string): Promise<OpenedEvdev> {
  return new Promise<OpenedEvdev>((resolve, reject) => {
    const stream = createReadStream(path, { highWaterMark });
    stream.on('error', () => {}); // reported through `closed` (or the rejection below)
    const closed = new Promise<string>((r) => {
      stream.once('error', (e) => r(e.message));
      stream.once('end', () => r('end of file'));
    });
    stream.once('error', reject); // before 'open': cannot open
    stream.once('open', () => {
      stream.off('error', reject);
      resolve({ mode: 'direct', fallback, ...(reason ? { reason } : {}), stream, closed, close: () => { stream.destroy(); } });
    });
  });
}

/** Settings of an evdev source. */
export interface EvdevSourceOptions extends EvdevDecodeOptions {
  /** The event device, e.g. `/dev/input/by-id/usb-…-event-kbd`. */
  path: string;
  /** The evgrab helper; default: `evgrab` next to this module. Missing → direct reading. */
  grabHelper?: string;
  /** Delay before reopening a device that went away (unplugged). Default 2000 ms. */
  reopenMs?: number;
  log?: BridgeLogger;
}

/**
 * Reads a keyboard-wedge scanner through `openEvdev` (exclusive when the helper is built) and
 * feeds the decoder; reopens the device when it goes away, until `stop`.
 */
export class EvdevSource {
  private readonly decoder: EvdevDecoder;
  private readonly log: BridgeLogger;
  private device: OpenedEvdev | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = true;
  private generation = 0;
  private warnedNoHelper = false;
  private outage = false;
  /** How the device is read now: 'grab' (exclusive), 'direct', or undefined (closed). */
  mode: 'grab' | 'direct' | undefined;

  constructor(private readonly opts: EvdevSourceOptions, sink: KeySink) {
    this.log = opts.log ?? silentLogger;
    this.decoder = new EvdevDecoder(sink, opts);
  }

  /** Opens the device (and keeps reopening it until `stop`). */
  start(): void {
    this.stopped = false;
    this.open();
  }

  /** Closes the device and stops reopening it. */
  stop(): void {
    this.stopped = true;
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.device?.close();
    this.device = undefined;
    this.mode = undefined;
  }

  private open(): void {
    if (this.stopped) return;
    const gen = ++this.generation;
    const path = this.opts.path;
    openEvdev(path, { highWaterMark: this.decoder.eventSize * 64, log: this.log, ...(this.opts.grabHelper ? { grabHelper: this.opts.grabHelper } : {}) }).then(
      (dev) => {
        if (gen !== this.generation) { dev.close(); return; }
        this.device = dev;
        this.mode = dev.mode;
        this.outage = false;
        this.decoder.reset();
        if (dev.mode === 'grab') this.log.info('scanner grabbed (exclusive access)', { device: path });
        else if (dev.fallback === 'grab-refused') this.log.warn('EVIOCGRAB failed: reading the scanner without exclusive access (its codes are also typed into the console)', { device: path, reason: dev.reason });
        else if (!this.warnedNoHelper) {
          this.warnedNoHelper = true;
          this.log.warn('evgrab helper not built: reading the scanner without exclusive access (its codes are also typed into the console); build it with `cc -O2 -o firmware-bridge/bridge/evgrab firmware-bridge/bridge/evgrab.c`', { device: path, helper: this.opts.grabHelper ?? EVGRAB_DEFAULT_BINARY });
        } else this.log.info('scanner opened (not grabbed)', { device: path });
        dev.stream.on('data', (b: Buffer) => this.decoder.push(b));
        void dev.closed.then((why) => {
          if (gen !== this.generation) return;
          this.device = undefined;
          this.reopenLater(why);
        });
      },
      (e: unknown) => { if (gen === this.generation) this.reopenLater((e as Error).message); },
    );
  }

  private reopenLater(why: string): void {
    this.mode = undefined;
    if (this.stopped || this.timer) return;
    const ms = this.opts.reopenMs ?? 2000;
    // Warn once per outage (an unplugged scanner would otherwise fill the journal), then debug.
    if (!this.outage) {
      this.outage = true;
      this.log.warn('scanner unavailable; retrying', { device: this.opts.path, why, retryMs: ms });
    } else this.log.debug('scanner still unavailable', { device: this.opts.path, why });
    this.timer = setTimeout(() => { this.timer = undefined; this.open(); }, ms);
  }
}
