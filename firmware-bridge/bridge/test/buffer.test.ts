/**
 * The offline buffer's durability: seq continues after a reopen and after a torn final line (a
 * power cut mid-write), pending is exact, compaction keeps every pending scan and the seq, the
 * capacity limit refuses with a distinct error, and a process killed with SIGKILL while appending
 * loses nothing that `append` had returned.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BufferFullError, ScanBuffer } from '../buffer.ts';

const dir = mkdtempSync(join(tmpdir(), 'posko-buffer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(dir, `dev-${++n}`, 'journal.jsonl');
const lines = (p: string) => readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('offline buffer', () => {
  it('gives increasing seqs, writes one JSON line per record, and recovers pending and seq on reopen', () => {
    const p = fresh();
    const b = ScanBuffer.open(p, { firstSeq: 1 });
    const s1 = b.append(']C10109506000134352\u001d10ABC', { action: 'receive', at: '2026-11-29T08:15:00.000+08:00' });
    const s2 = b.append('PSK1:DEMO:B2', { action: 'receive', qty: 3, item: 'BERAS' });
    const s3 = b.append('PSK1:DEMO:B3');
    expect([s1.seq, s2.seq, s3.seq]).toEqual([1, 2, 3]);
    expect(b.ack(2, 'accepted')).toBe(true);
    expect(b.ack(2, 'accepted')).toBe(false); // not pending any more: nothing written
    expect(b.ack(99, 'accepted')).toBe(false);
    expect(b.ack(3, 'rejected', 'GS1_CHECK_DIGIT')).toBe(true);
    b.close();
    expect(lines(p)).toEqual([
      { t: 'seq', next: 1 },
      { t: 'scan', seq: 1, code: ']C10109506000134352\u001d10ABC', action: 'receive', at: '2026-11-29T08:15:00.000+08:00' },
      { t: 'scan', seq: 2, code: 'PSK1:DEMO:B2', action: 'receive', qty: 3, item: 'BERAS' },
      { t: 'scan', seq: 3, code: 'PSK1:DEMO:B3' },
      { t: 'ack', seq: 2, status: 'accepted' },
      { t: 'ack', seq: 3, status: 'rejected', error: 'GS1_CHECK_DIGIT' },
    ]);
    const again = ScanBuffer.open(p, { firstSeq: 1000 }); // firstSeq only applies to a new journal
    expect(again.nextSeq).toBe(4);
    expect(again.pending()).toEqual([{ seq: 1, code: ']C10109506000134352\u001d10ABC', action: 'receive', at: '2026-11-29T08:15:00.000+08:00' }]);
    expect(again.append('PSK1:DEMO:B4').seq).toBe(4);
    again.close();
  });

  it('starts a new journal at firstSeq', () => {
    const b = ScanBuffer.open(fresh(), { firstSeq: 1_764_000_000_000 });
    expect(b.append('X1').seq).toBe(1_764_000_000_000);
    b.close();
  });

  it('ignores a torn last line (power cut mid-write), cuts it off, and never reuses its seq', () => {
    const p = fresh();
    const b = ScanBuffer.open(p);
    for (let i = 1; i <= 5; i++) b.append(`PSK1:DEMO:T${i}`);
    b.ack(1, 'accepted');
    b.ack(2, 'duplicate');
    b.close();
    const good = readFileSync(p, 'utf8');
    appendFileSync(p, '{"t":"scan","seq":6,"code":"PSK1:DEM'); // the write of seq 6 was cut
    const r = ScanBuffer.open(p);
    expect(r.recovery.tornBytes).toBeGreaterThan(0);
    expect(r.pending().map((s) => s.seq)).toEqual([3, 4, 5]);
    expect(r.nextSeq).toBe(7); // 6 may have been half-written: skipped, never reused
    expect(readFileSync(p, 'utf8')).toBe(good); // the torn tail is gone
    expect(r.append('PSK1:DEMO:T7').seq).toBe(7);
    r.close();
    // The journal is clean again: every line parses.
    expect(lines(p).map((l) => l['seq'] ?? l['next'])).toEqual([1, 1, 2, 3, 4, 5, 1, 2, 7]);
    const r2 = ScanBuffer.open(p);
    expect(r2.recovery.tornBytes).toBe(0);
    expect(r2.nextSeq).toBe(8);
    r2.close();
  });

  it('ignores torn tails without a seq, zero-filled blocks, and unreadable lines in the middle', () => {
    const p = fresh();
    const b = ScanBuffer.open(p);
    b.append('A-1'); b.append('A-2');
    b.close();
    appendFileSync(p, 'garbage that is not json\n');
    appendFileSync(p, '{"t":"scan","seq":3,"code":"A-3"}\n');
    appendFileSync(p, Buffer.alloc(4096)); // ext4 after a power cut: the block is allocated, the data is not
    const r = ScanBuffer.open(p);
    expect(r.recovery.corruptLines).toBe(1);
    expect(r.recovery.tornBytes).toBe(4096);
    expect(r.pending().map((s) => s.code)).toEqual(['A-1', 'A-2', 'A-3']);
    expect(r.nextSeq).toBe(4);
    r.close();
    const p2 = fresh();
    const b2 = ScanBuffer.open(p2);
    b2.append('B-1');
    b2.close();
    appendFileSync(p2, '{"t":"sc');
    const r2 = ScanBuffer.open(p2);
    expect(r2.nextSeq).toBe(2);
    expect(r2.pendingCount).toBe(1);
    r2.close();
  });

  it('compacts when acked records dominate, keeping every pending scan and the seq', () => {
    const p = fresh();
    const b = ScanBuffer.open(p, { compactMinDead: 20 });
    for (let i = 1; i <= 30; i++) b.append(`PSK1:DEMO:C${i}`, { action: 'receive' });
    for (let i = 1; i <= 9; i++) b.ack(i, 'accepted'); // 18 dead lines: not yet
    expect(lines(p)).toHaveLength(1 + 30 + 9);
    b.ack(10, 'accepted'); // 20 dead lines, 20 pending: not dominating yet
    expect(lines(p)).toHaveLength(1 + 30 + 10);
    b.ack(11, 'accepted'); // 22 dead > 19 pending: rewrite
    expect(lines(p)).toEqual([{ t: 'seq', next: 31 }, ...Array.from({ length: 19 }, (_, k) => ({ t: 'scan', seq: 12 + k, code: `PSK1:DEMO:C${12 + k}`, action: 'receive' }))]);
    expect(b.deadLines).toBe(0);
    expect(existsSync(`${p}.tmp`)).toBe(false);
    // Appends go on after the rewrite.
    expect(b.append('PSK1:DEMO:C31').seq).toBe(31);
    for (let i = 12; i <= 31; i++) b.ack(i, 'accepted');
    b.close();
    // Everything acked and compacted away: the header alone keeps the seq.
    expect(lines(p)).toEqual([{ t: 'seq', next: 32 }]);
    const r = ScanBuffer.open(p);
    expect(r.pendingCount).toBe(0);
    expect(r.nextSeq).toBe(32);
    r.close();
  });

  it('survives a compaction that crashed before the rename (stale temp file)', () => {
    const p = fresh();
    const b = ScanBuffer.open(p);
    b.append('D-1'); b.append('D-2');
    b.close();
    writeFileSync(`${p}.tmp`, '{"t":"seq","next":1}\n{"t":"scan","seq":1,"co');
    const r = ScanBuffer.open(p);
    expect(existsSync(`${p}.tmp`)).toBe(false);
    expect(r.pending().map((s) => s.code)).toEqual(['D-1', 'D-2']);
    r.close();
  });

  it('refuses new scans with BUFFER_FULL at capacity, writing nothing, and accepts again after an ack', () => {
    const p = fresh();
    const b = ScanBuffer.open(p, { capacity: 3 });
    b.append('F-1'); b.append('F-2'); b.append('F-3');
    const before = readFileSync(p, 'utf8');
    let err: unknown;
    try { b.append('F-4'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(BufferFullError);
    expect((err as BufferFullError).code).toBe('BUFFER_FULL');
    expect(readFileSync(p, 'utf8')).toBe(before);
    expect(b.pendingCount).toBe(3);
    b.ack(1, 'accepted');
    expect(b.append('F-4').seq).toBe(4);
    b.close();
  });

  it('loses nothing append returned when the process is killed (SIGKILL) mid-stream', async () => {
    const p = fresh();
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, 'fixtures/append-loop.ts'), p], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const target = 300 + Math.floor(Math.random() * 300);
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`child too slow: ${out.length} ${err}`)), 20_000);
      const check = () => { if ((out.match(/^scan /gm) ?? []).length >= target) { clearTimeout(timer); child.kill('SIGKILL'); res(); } };
      child.stdout!.on('data', check);
      child.once('exit', () => { clearTimeout(timer); res(); });
    });
    await new Promise((r) => child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r));
    const scans = [...out.matchAll(/^scan (\d+)$/gm)].map((m) => Number(m[1]));
    const acked = new Set([...out.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1])));
    expect(scans.length).toBeGreaterThanOrEqual(target);
    expect(new Set(scans).size).toBe(scans.length);
    const r = ScanBuffer.open(p);
    const pending = new Set(r.pending().map((s) => s.seq));
    // Every scan append returned is either still pending or was acked (an unsynced ack may be lost: then it is pending again).
    for (const s of scans) if (!acked.has(s)) expect(pending.has(s)).toBe(true);
    expect(r.nextSeq).toBeGreaterThan(Math.max(...scans));
    expect(r.append('AFTER-KILL').seq).toBe(r.nextSeq - 1);
    r.close();
  });
});
