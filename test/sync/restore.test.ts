/**
 * A post restored from an old backup gets its own lost events back from HQ: they return inside
 * its own ledger documents, are never folded a second time, and a rebuild still works.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { backupTo, restoreFrom } from '../../src/store/backup.ts';
import { rebuildViews } from '../../src/store/rebuild.ts';
import { syncWith } from '../../src/sync/session.ts';
import { cleanup, openTestGateway, tempDir, type TestGateway } from '../helpers/gateway.ts';
import { direct, introduce } from '../helpers/sync.ts';

const open: TestGateway[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((g) => g.close()));
  for (const d of dirs.splice(0)) cleanup(d);
});

const scans = (from: number, n: number) => ({ scans: Array.from({ length: n }, (_, i) => ({ code: `PSK1:POST-A:${from + i}`, action: 'receive', item: 'AIR', qty: 2, unit: 'dus' })) });

describe('restore and recovery through sync', () => {
  it('gets lost events back without folding them twice', async () => {
    const hq = openTestGateway({ config: { postId: 'HQ', role: 'hq' } });
    open.push(hq);
    const dir = tempDir();
    dirs.push(dir);
    let a = openTestGateway({ dir, config: { postId: 'POST-A' } });
    introduce(hq, a);
    expect((await a.call('POST', '/api/v1/scans', { body: scans(0, 10) })).body.created).toBe(10);
    const backups = tempDir();
    dirs.push(backups);
    await backupTo(a.gw.store, 'POST-A', backups);
    expect((await a.call('POST', '/api/v1/scans', { body: scans(100, 15) })).body.created).toBe(15);
    a.gw.foldNow();
    expect((await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq))).complete).toBe(true);
    await a.close();

    // The SD card dies; the post is restored from the backup with 10 of its 25 events.
    restoreFrom(backups, dir);
    a = openTestGateway({ dir, config: { postId: 'POST-A' } });
    open.push(a);
    expect(a.gw.store.queries.count('events')).toBe(10);
    const report = await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq));
    expect(report.complete).toBe(true);
    expect(report.events).toBe(15);
    expect(a.gw.store.queries.count('events')).toBe(25);
    expect(a.gw.folder.pending()).toBe(0);
    // New scans after the restore fold into the ledger; every event is in exactly one document.
    expect((await a.call('POST', '/api/v1/scans', { body: scans(200, 5) })).body.created).toBe(5);
    a.gw.foldNow();
    const inDocs = a.gw.store.docs.list('ledger/POST-A/').reduce((n, d) => n + d.events, 0);
    expect(inDocs).toBe(30);
    const rebuilt = rebuildViews(a.gw.store);
    expect(rebuilt.events).toBe(30);
    // And HQ gets the new ones; both sides agree.
    expect((await syncWith(a.gw.sync, a.gw.sync.enrolled('HQ')!, direct(hq))).complete).toBe(true);
    expect(hq.gw.store.queries.count('events')).toBe(30);
  });
});
