/**
 * Backups of a post's database to another disk (a USB stick: an SD card dies sooner or later).
 * `backup` uses SQLite's online backup API, so it is consistent while the gateway keeps
 * ingesting; `restore` checks a backup's integrity before it replaces a data directory, and
 * refuses while a gateway runs on that directory.
 */
import Database from 'better-sqlite3';
import { randomBytes, randomInt } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { PoskoError } from '../domain/errors.ts';
import { dbPath } from './db.ts';
import { META_SEGMENT_BASE } from './meta.ts';
import type { Store } from './store.ts';

const NAME_RE = /^posko-[A-Z0-9-]+-\d{8}T\d{6}Z\.db$/;

/** The pid file a running gateway keeps in its data directory. */
export function pidPath(dataDir: string): string {
  return join(dataDir, 'posko.pid');
}

/** The pid of a gateway running on `dataDir`, if one is. */
export function runningGateway(dataDir: string): number | undefined {
  const path = pidPath(dataDir);
  if (!existsSync(path)) return undefined;
  const pid = Number(readFileSync(path, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined; // a stale file from a killed gateway
  }
}

/**
 * Copies the database into `dir` as `posko-<post>-<UTC time>.db` while it stays in use, checks the
 * copy, and keeps the newest `keep` backups of this post there. Returns the file and its size.
 * The admin token is not copied: a lost USB stick must not open the gateway.
 */
export async function backupTo(store: Store, post: string, dir: string, opts: { keep?: number; now?: Date; onProgress?: (pct: number) => void } = {}): Promise<{ file: string; bytes: number }> {
  mkdirSync(dir, { recursive: true });
  const stamp = (opts.now ?? new Date()).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const file = join(dir, `posko-${post}-${stamp}.db`);
  const tmp = `${file}.partial`;
  await store.db.backup(tmp, {
    progress: ({ totalPages, remainingPages }) => {
      opts.onProgress?.(totalPages ? Math.round(((totalPages - remainingPages) / totalPages) * 100) : 100);
      return 512;
    },
  });
  // A single self-contained file: no WAL beside it on the stick.
  const copy = new Database(tmp);
  copy.pragma('journal_mode = DELETE');
  copy.close();
  checkIntegrity(tmp);
  renameSync(tmp, file);
  const keep = opts.keep ?? 7;
  // Names sort by wall time, which a Pi without RTC may have reset: never prune the file just made.
  const others = readdirSync(dir).filter((f) => NAME_RE.test(f) && f.startsWith(`posko-${post}-`) && f !== basename(file)).sort();
  for (const old of others.slice(0, Math.max(0, others.length - (keep - 1)))) rmSync(join(dir, old), { force: true });
  return { file, bytes: statSync(file).size };
}

/** The newest backup file in `dir` (or `path` itself when it is a file). */
export function newestBackup(path: string): string {
  if (!existsSync(path)) throw new PoskoError('NOT_FOUND', `no backup at ${path}`);
  if (statSync(path).isFile()) return path;
  const files = readdirSync(path).filter((f) => NAME_RE.test(f)).sort();
  const newest = files[files.length - 1];
  if (!newest) throw new PoskoError('NOT_FOUND', `no posko backups in ${path}`);
  return join(path, newest);
}

/**
 * Replaces the database in `dataDir` with a backup, after checking the backup. The database it
 * replaces is kept beside it as `posko.db.before-restore`. Refuses while a gateway runs there.
 */
export function restoreFrom(path: string, dataDir: string): { file: string; events: number } {
  const pid = runningGateway(dataDir);
  if (pid) throw new PoskoError('CONFLICT', `a gateway (pid ${pid}) is running on ${dataDir}: stop it first`);
  const file = newestBackup(path);
  const events = checkIntegrity(file);
  mkdirSync(dataDir, { recursive: true });
  const target = dbPath(dataDir);
  if (existsSync(target)) {
    // Fold the old WAL into the old file, then keep it aside.
    const old = new Database(target);
    old.pragma('wal_checkpoint(TRUNCATE)');
    old.close();
    renameSync(target, `${target}.before-restore`);
  }
  for (const ext of ['-wal', '-shm']) rmSync(`${target}${ext}`, { force: true });
  copyFileSync(file, `${target}.partial`);
  // A restored post writes with a new Automerge actor id: changes it made after the backup may
  // already be at HQ under the old one, and reusing (actor, seq) pairs would collide with them.
  // The identity prefix (the first 32 hex digits) stays: peers check it.
  const restored = new Database(`${target}.partial`);
  const old = restored.prepare("SELECT value FROM meta WHERE key = 'actor'").get() as { value: string } | undefined;
  const prefix = old && old.value.length === 48 ? old.value.slice(0, 32) : randomBytes(16).toString('hex');
  const setMeta = restored.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  setMeta.run('actor', prefix + randomBytes(8).toString('hex'));
  // New ledger segments from a fresh random number on: never a segment written before (meta.ts).
  setMeta.run(META_SEGMENT_BASE, String(1000 + randomInt(8000)));
  restored.close();
  renameSync(`${target}.partial`, target);
  return { file: basename(file), events };
}

/** Opens a database file read-only and checks it; returns its event count. */
function checkIntegrity(file: string): number {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    const ok = db.pragma('integrity_check', { simple: true });
    if (ok !== 'ok') throw new PoskoError('VALIDATION', `${basename(file)} is damaged: ${String(ok)}`);
    return (db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  } catch (e) {
    if (e instanceof PoskoError) throw e;
    throw new PoskoError('VALIDATION', `${basename(file)} is not a posko database: ${(e as Error).message}`);
  } finally {
    db?.close();
  }
}
