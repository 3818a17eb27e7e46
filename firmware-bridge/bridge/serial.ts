/**
 * Serial scanners (RS-232 through a USB adapter, or USB "COM port emulation" / CDC-ACM): bytes
 * from the port become characters for the assembler.
 *
 * Byte handling (`SerialDecoder`) is separate from the port (`SerialSource`), so tests feed
 * recorded byte streams split anywhere. Bytes are UTF-8 by default (a multi-byte character split
 * across reads is reassembled), or Latin-1 for scanners that send 8-bit code pages. GS (0x1d) and
 * other control characters pass through untouched; CR and LF end a scan in the assembler.
 * The port is reopened when it goes away (adapter unplugged).
 */
import { StringDecoder } from 'node:string_decoder';
import { SerialPort } from 'serialport';
import { silentLogger, type BridgeLogger } from './log.ts';

/** Decodes serial bytes into text, keeping split multi-byte characters for the next chunk. */
export class SerialDecoder {
  private decoder: StringDecoder;

  constructor(private readonly onText: (text: string) => void, private readonly encoding: 'utf8' | 'latin1' = 'utf8') {
    this.decoder = new StringDecoder(encoding);
  }

  /** Feeds bytes as read from the port. */
  push(chunk: Buffer): void {
    const text = this.decoder.write(chunk);
    if (text) this.onText(text);
  }

  /** Drops a partial character (after the port was reopened). */
  reset(): void {
    this.decoder = new StringDecoder(this.encoding);
  }
}

/** The subset of a serial port the source uses (SerialPort, SerialPortMock, or a test double). */
export interface PortLike {
  on(event: 'open', fn: () => void): unknown;
  on(event: 'data', fn: (b: Buffer) => void): unknown;
  on(event: 'error', fn: (e: Error) => void): unknown;
  on(event: 'close', fn: () => void): unknown;
  readonly isOpen: boolean;
  close(cb?: (err: Error | null) => void): void;
}

/** Settings of a serial source. */
export interface SerialSourceOptions {
  /** e.g. `/dev/ttyUSB0`, `/dev/ttyACM0`, or a stable `/dev/serial/by-id/…` link. */
  path: string;
  /** Default 9600 (8N1), the usual factory setting of serial scanners. */
  baudRate?: number;
  encoding?: 'utf8' | 'latin1';
  /** Delay before reopening a port that went away. Default 2000 ms. */
  reopenMs?: number;
  log?: BridgeLogger;
  /** Opens the port; default `new SerialPort(…)`. Tests pass a mock or a pseudo-terminal. */
  openPort?: (o: { path: string; baudRate: number }) => PortLike;
}

/** Reads a serial scanner and hands text to `onText`; reopens the port until `stop`. */
export class SerialSource {
  private readonly decoder: SerialDecoder;
  private readonly log: BridgeLogger;
  private port: PortLike | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = true;
  private outage = false;
  /** True while the port is open. */
  isOpen = false;

  constructor(private readonly opts: SerialSourceOptions, onText: (text: string) => void) {
    this.log = opts.log ?? silentLogger;
    this.decoder = new SerialDecoder(onText, opts.encoding ?? 'utf8');
  }

  /** Opens the port (and keeps reopening it until `stop`). */
  start(): void {
    this.stopped = false;
    this.open();
  }

  /** Closes the port and stops reopening it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const port = this.port;
    this.port = undefined;
    this.isOpen = false;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
  }

  private open(): void {
    if (this.stopped) return;
    this.decoder.reset();
    const baudRate = this.opts.baudRate ?? 9600;
    const make = this.opts.openPort ?? ((o) => new SerialPort({ path: o.path, baudRate: o.baudRate, dataBits: 8, parity: 'none', stopBits: 1 }));
    let port: PortLike;
    try {
      port = make({ path: this.opts.path, baudRate });
    } catch (e) {
      this.reopenLater((e as Error).message);
      return;
    }
    this.port = port;
    port.on('open', () => { this.isOpen = true; this.outage = false; this.log.info('serial scanner opened', { port: this.opts.path, baudRate }); });
    port.on('data', (b: Buffer) => this.decoder.push(b));
    port.on('error', (e: Error) => {
      if (this.port !== port) return;
      if (!port.isOpen) { this.port = undefined; this.reopenLater(e.message); } // failed to open
      else this.log.warn('serial port error', { port: this.opts.path, error: e.message });
    });
    port.on('close', () => {
      if (this.port !== port) return;
      this.port = undefined;
      this.reopenLater('port closed');
    });
  }

  private reopenLater(why: string): void {
    this.isOpen = false;
    if (this.stopped || this.timer) return;
    const ms = this.opts.reopenMs ?? 2000;
    // Warn once per outage (an unplugged adapter would otherwise fill the journal), then debug.
    if (!this.outage) {
      this.outage = true;
      this.log.warn('serial scanner unavailable; retrying', { port: this.opts.path, why, retryMs: ms });
    } else this.log.debug('serial scanner still unavailable', { port: this.opts.path, why });
    this.timer = setTimeout(() => { this.timer = undefined; this.open(); }, ms);
  }
}
