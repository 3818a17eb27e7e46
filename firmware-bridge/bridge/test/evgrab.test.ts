/**
 * The evgrab helper (EVIOCGRAB in C) and the evdev source around it: compiles with `cc` (skipped
 * without one), fails cleanly with distinct exit codes on a missing device and on a file that is
 * not an input device, and the source falls back to direct reading when the grab is impossible
 * or the helper is not built. A real grab needs a /dev/input device, which CI does not have.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScanAssembler } from '../assembler.ts';
import { EVGRAB_EXIT, EvdevSource, compileEvgrab, isExecutable, openEvdev } from '../evdev.ts';
import type { BridgeLogger } from '../log.ts';
import { typeBytes } from './keys.ts';

const hasCc = spawnSync('cc', ['--version']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'posko-evgrab-'));
const helper = join(dir, 'evgrab');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function memoryLog(): BridgeLogger & { lines: { level: string; msg: string; data?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; data?: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, data?: Record<string, unknown>) => { lines.push({ level, msg, ...(data ? { data } : {}) }); };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Reads `path` through an EvdevSource until a scan arrives. */
async function scanThrough(path: string, grabHelper: string, log: BridgeLogger): Promise<{ scans: string[]; source: EvdevSource }> {
  const scans: string[] = [];
  const asm = new ScanAssembler((c) => scans.push(c));
  const source = new EvdevSource({ path, grabHelper, log, reopenMs: 60_000, eventSize: 24 }, { char: (c) => asm.push(c), enter: () => asm.terminate() });
  source.start();
  const deadline = Date.now() + 5000;
  while (scans.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  source.stop();
  return { scans, source };
}

describe.skipIf(!hasCc)('evgrab helper (C)', () => {
  let warnings = '';
  beforeAll(async () => { warnings = await compileEvgrab(helper); });

  it('compiles without warnings (-Wall -Wextra) into an executable', () => {
    expect(warnings).toBe('');
    expect(isExecutable(helper)).toBe(true);
  });

  it('fails cleanly on a device that does not exist', () => {
    const r = spawnSync(helper, ['/dev/input/event-does-not-exist'], { encoding: 'utf8' });
    expect(r.status).toBe(EVGRAB_EXIT.OPEN);
    expect(r.stderr).toMatch(/evgrab: cannot open \/dev\/input\/event-does-not-exist: No such file or directory/);
    expect(r.stdout).toBe('');
  });

  it('fails cleanly when EVIOCGRAB is refused (not an input device)', () => {
    const r = spawnSync(helper, ['/dev/null'], { encoding: 'utf8' });
    expect(r.status).toBe(EVGRAB_EXIT.GRAB);
    expect(r.stderr).toMatch(/EVIOCGRAB on \/dev\/null failed/);
  });

  it('prints its usage without an argument', () => {
    const r = spawnSync(helper, [], { encoding: 'utf8' });
    expect(r.status).toBe(EVGRAB_EXIT.USAGE);
    expect(r.stderr).toMatch(/usage: evgrab/);
  });

  it('openEvdev rejects a missing device with the helper\'s message, and falls back when the grab is refused', async () => {
    await expect(openEvdev('/dev/input/event-does-not-exist', { grabHelper: helper })).rejects.toThrow(/cannot open \/dev\/input\/event-does-not-exist: No such file/);
    const dev = await openEvdev('/dev/null', { grabHelper: helper });
    expect(dev).toMatchObject({ mode: 'direct', fallback: 'grab-refused', reason: 'evgrab: EVIOCGRAB on /dev/null failed: Inappropriate ioctl for device' });
    dev.stream.resume();
    expect(await dev.closed).toBe('end of file');
    dev.close();
  });

  it('the source falls back to direct reading (with a warning) when the grab is refused', async () => {
    const rec = join(dir, 'recorded-events.bin');
    writeFileSync(rec, typeBytes(']C1' + '0109506000134352' + '\u001d' + '10ABC'));
    const log = memoryLog();
    const { scans } = await scanThrough(rec, helper, log);
    expect(scans).toEqual([']C10109506000134352\u001d10ABC']);
    const warning = log.lines.find((l) => l.level === 'warn' && /EVIOCGRAB failed/.test(l.msg));
    expect(String(warning?.data?.['reason'])).toMatch(/EVIOCGRAB on .* failed: Inappropriate ioctl for device/);
  });
});

describe('evdev source without the helper', () => {
  it('openEvdev reads directly when the helper is missing, and rejects a missing device', async () => {
    const dev = await openEvdev('/dev/null', { grabHelper: join(dir, 'no-such-helper') });
    expect(dev).toMatchObject({ mode: 'direct', fallback: 'no-helper' });
    dev.close();
    await expect(openEvdev(join(dir, 'event-gone'), { grabHelper: join(dir, 'no-such-helper') })).rejects.toThrow(/ENOENT/);
  });

  it('reads the device directly and warns that it is not grabbed', async () => {
    const rec = join(dir, 'recorded-plain.bin');
    writeFileSync(rec, typeBytes('PSK1:DEMO:PLAIN-1'));
    const log = memoryLog();
    const { scans } = await scanThrough(rec, join(dir, 'no-such-helper'), log);
    expect(scans).toEqual(['PSK1:DEMO:PLAIN-1']);
    expect(log.lines.some((l) => l.level === 'warn' && /not built/.test(l.msg))).toBe(true);
  });

  it('keeps retrying a device that is not there (unplugged scanner)', async () => {
    const log = memoryLog();
    const source = new EvdevSource({ path: join(dir, 'event-gone'), grabHelper: join(dir, 'no-such-helper'), log, reopenMs: 30 }, { char: () => {}, enter: () => {} });
    source.start();
    await new Promise((r) => setTimeout(r, 200));
    source.stop();
    // One warning per outage, then quieter retries.
    expect(log.lines.filter((l) => l.msg === 'scanner unavailable; retrying')).toHaveLength(1);
    expect(log.lines.filter((l) => l.level === 'debug' && l.msg === 'scanner still unavailable').length).toBeGreaterThanOrEqual(2);
    expect(source.mode).toBeUndefined();
  });
});
