/**
 * Opens the gateway's SQLite database: WAL (readers never block the writer, and the CLI can work
 * beside a running gateway), synchronous=FULL (a committed scan survives power loss, not only
 * kill -9), a busy timeout for the CLI's concurrent writes, then the migrations.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PoskoError } from '../domain/errors.ts';
import { migrate } from './migrations.ts';

/** The database file inside a data directory. */
export function dbPath(dataDir: string): string {
  return join(dataDir, 'posko.db');
}

/** Opens (creating if needed) and migrates the database in `dataDir`. */
export function openDb(dataDir: string): Database.Database {
  mkdirSync(dataDir, { recursive: true });
  let db: Database.Database;
  try {
    db = new Database(dbPath(dataDir));
  } catch (e) {
    throw new PoskoError('STORAGE_UNAVAILABLE', `cannot open the database in ${dataDir}: ${(e as Error).message}`);
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  // Checkpoints copy the WAL into the database and fsync it: tens of milliseconds that should not
  // land on a scan's commit. The fold worker checkpoints (PASSIVE, beside the writer) after each
  // fold; this larger automatic threshold is only a safety net if it cannot.
  db.pragma('wal_autocheckpoint = 16384');
  // …and after a checkpoint the WAL file is cut back, so a burst does not leave a huge file on the SD card.
  db.pragma('journal_size_limit = 16777216');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}

/** Maps SQLite's storage failures to posko errors; anything else is rethrown as is. */
export function storageError(e: unknown): unknown {
  const code = (e as { code?: string } | null)?.code;
  if (code === 'SQLITE_FULL') return new PoskoError('STORAGE_FULL', 'the disk is full: nothing was recorded; free space and retry');
  if (code === 'SQLITE_IOERR' || code?.startsWith('SQLITE_IOERR') || code === 'SQLITE_READONLY' || code === 'SQLITE_BUSY' || code === 'SQLITE_CANTOPEN') {
    return new PoskoError('STORAGE_UNAVAILABLE', `storage is unavailable (${code}): nothing was recorded; retry`);
  }
  return e;
}
