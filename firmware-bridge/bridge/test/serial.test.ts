/**
 * Serial scanners: recorded byte streams (GS1 codes with GS, CRLF terminators, a UTF-8 QR code)
 * split across chunks at the worst places, through the decoder and the assembler; the port
 * wrapper with serialport's mock binding; and a real pseudo-terminal pair (socat) opened by
 * serialport's native binding, as a USB-serial adapter would be.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPortMock } from 'serialport';
import { afterAll, describe, expect, it } from 'vitest';
import { ScanAssembler } from '../assembler.ts';
import { SerialDecoder, SerialSource } from '../serial.ts';

const SCAN1 = ']C1' + '0109506000134352' + '\u001d' + '10ABC';
const SCAN2 = ']d2' + '0109506000134352' + '21SN0001' + '\u001d' + '3025';
const SCAN3 = ']Q1' + 'PSK1:DEMO:Gudang-Ü-é';
/** What the scanner sent on the wire: three scans, CRLF after each. */
const RECORDED = Buffer.from(`${SCAN1}\r\n${SCAN2}\r\n${SCAN3}\r\n`, 'utf8');

/** Cuts the recording at the nastiest places: right after GS, between CR and LF, inside "Ü". */
function nastyChunks(): Buffer[] {
  const cuts = new Set<number>([1, 3]);
  const gs = RECORDED.indexOf(0x1d);
  cuts.add(gs); cuts.add(gs + 1);
  const cr = RECORDED.indexOf(0x0d);
  cuts.add(cr + 1); // CR | LF
  const u = RECORDED.indexOf(Buffer.from('Ü', 'utf8'));
  cuts.add(u + 1); // inside the two bytes of Ü
  const e = RECORDED.indexOf(Buffer.from('é', 'utf8'));
  cuts.add(e + 1);
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) { out.push(RECORDED.subarray(prev, c)); prev = c; }
  out.push(RECORDED.subarray(prev));
  return out;
}

function pipeline(encoding: 'utf8' | 'latin1' = 'utf8') {
  const scans: string[] = [];
  const asm = new ScanAssembler((c) => scans.push(c), { scheduler: { setTimeout: () => 0, clearTimeout: () => {} } });
  const dec = new SerialDecoder((t) => asm.push(t), encoding);
  return { scans, dec };
}

async function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('serial byte streams', () => {
  it('decodes a recorded stream split across chunks at GS, between CR and LF, and inside a UTF-8 character', () => {
    const { scans, dec } = pipeline();
    const chunks = nastyChunks();
    expect(chunks.length).toBeGreaterThan(6);
    for (const c of chunks) dec.push(c);
    expect(scans).toEqual([SCAN1, SCAN2, SCAN3]);
  });

  it('decodes it byte by byte, too', () => {
    const { scans, dec } = pipeline();
    for (const b of RECORDED) dec.push(Buffer.from([b]));
    expect(scans).toEqual([SCAN1, SCAN2, SCAN3]);
  });

  it('reads 8-bit scanners as Latin-1 when configured', () => {
    const { scans, dec } = pipeline('latin1');
    dec.push(Buffer.from([0x41, 0x42, 0xc4, 0x1d, 0x31, 0x0d, 0x0a]));
    expect(scans).toEqual(['ABÄ\u001d1']);
  });
});

describe('serial source', () => {
  it('reads a port (serialport mock binding) and reopens it when it closes', async () => {
    SerialPortMock.binding.createPort('/dev/ttyMOCK0', { echo: false, record: false });
    const ports: SerialPortMock[] = [];
    const scans: string[] = [];
    const asm = new ScanAssembler((c) => scans.push(c));
    const src = new SerialSource({
      path: '/dev/ttyMOCK0', reopenMs: 20,
      openPort: (o) => { const p = new SerialPortMock({ path: o.path, baudRate: o.baudRate }); ports.push(p); return p; },
    }, (t) => asm.push(t));
    src.start();
    await until(() => src.isOpen);
    expect(ports[0]!.baudRate).toBe(9600);
    for (const c of nastyChunks()) ports[0]!.port!.emitData(c);
    await until(() => scans.length === 3);
    expect(scans).toEqual([SCAN1, SCAN2, SCAN3]);
    // The adapter is pulled out: the source opens the port again by itself.
    await new Promise<void>((r) => ports[0]!.close(() => r()));
    await until(() => ports.length === 2 && src.isOpen);
    ports[1]!.port!.emitData(Buffer.from('PSK1:DEMO:AFTER\r\n'));
    await until(() => scans.length === 4);
    expect(scans[3]).toBe('PSK1:DEMO:AFTER');
    await src.stop();
    SerialPortMock.binding.reset();
  });

  const hasSocat = spawnSync('socat', ['-V']).status === 0;
  const dir = mkdtempSync(join(tmpdir(), 'posko-serial-'));
  let socat: ChildProcess | undefined;
  afterAll(() => { socat?.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); });

  it.skipIf(!hasSocat)('reads a real tty (socat pty pair) through serialport\'s native binding at 9600 baud', async () => {
    const dev = join(dir, 'ttyScanner');
    const host = join(dir, 'ttyHost');
    socat = spawn('socat', [`pty,raw,echo=0,link=${dev}`, `pty,raw,echo=0,link=${host}`], { stdio: 'ignore' });
    await until(() => existsSync(dev) && existsSync(host));
    const scans: string[] = [];
    const asm = new ScanAssembler((c) => scans.push(c));
    const src = new SerialSource({ path: dev, baudRate: 9600 }, (t) => asm.push(t));
    src.start();
    await until(() => src.isOpen);
    const fd = openSync(host, 'w');
    try {
      for (const c of nastyChunks()) {
        writeSync(fd, c);
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally { closeSync(fd); }
    await until(() => scans.length === 3);
    expect(scans).toEqual([SCAN1, SCAN2, SCAN3]);
    await src.stop();
  });
});
