import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { migrate, MIGRATIONS } from '../../src/store/migrations.ts';
import { openDb } from '../../src/store/db.ts';
import { cleanup, tempDir } from '../helpers/gateway.ts';

describe('migrations', () => {
  it('apply in order from an empty database, once', () => {
    const dir = tempDir();
    try {
      const db = new Database(`${dir}/m.db`);
      expect(migrate(db)).toEqual(MIGRATIONS.map((m) => m.version));
      expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.at(-1)!.version);
      expect(migrate(db)).toEqual([]);
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
      expect(tables).toEqual(expect.arrayContaining(['devices', 'doc_chunks', 'docs', 'events', 'meta', 'parcels', 'stock']));
      db.close();
    } finally { cleanup(dir); }
  });

  it('are numbered strictly upwards', () => {
    MIGRATIONS.forEach((m, i) => expect(m.version).toBe(i + 1));
  });

  it('open the database in WAL mode with full fsync', () => {
    const dir = tempDir();
    try {
      const db = openDb(dir);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2);
      db.close();
    } finally { cleanup(dir); }
  });
});

