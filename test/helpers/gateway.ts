/**
 * Test helpers: a real gateway on a real temp SQLite file, called in-process through
 * `app.request()` (no port), or listening on port 0 when a real socket is needed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/log.ts';

/** A fresh temp directory; removed by `cleanup`. */
export function tempDir(prefix = 'posko-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** A config for tests: temp data dir, port 0, known admin token, quiet logs. */
export function testConfig(dataDir: string, overrides: Partial<Record<keyof Config, string>> = {}): Config {
  return loadConfig({}, { dataDir, httpPort: '0', httpHost: '127.0.0.1', adminToken: ADMIN_TOKEN, logLevel: 'silent', foldIntervalMs: '3600000', mqttPort: '0', mqttHost: '127.0.0.1', ...overrides });
}

/** A gateway under test, with helpers to call it. */
export interface TestGateway {
  gw: Gateway;
  dir: string;
  /** Calls the app in-process; JSON bodies are stringified; the admin token is sent unless `token: null`. */
  call(method: string, path: string, opts?: { body?: unknown; raw?: string; token?: string | null; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

/** Opens a gateway on a temp directory (or `dir`). */
export function openTestGateway(opts: { dir?: string; config?: Partial<Record<keyof Config, string>>; now?: () => number } = {}): TestGateway {
  const dir = opts.dir ?? tempDir();
  const gw = new Gateway(testConfig(dir, opts.config), { log: createLogger('silent'), ...(opts.now ? { now: opts.now } : {}) });
  return {
    gw,
    dir,
    async call(method, path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      const token = o.token === undefined ? ADMIN_TOKEN : o.token;
      if (token !== null) headers['authorization'] = `Bearer ${token}`;
      let body: string | undefined;
      if (o.raw !== undefined) body = o.raw;
      else if (o.body !== undefined) { body = JSON.stringify(o.body); headers['content-type'] = 'application/json'; }
      const res = await gw.app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown = text;
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async close() {
      await gw.stop();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Valid GS1 examples (check digits verified by hand against GS1's published examples). */
export const CODES = {
  sscc: '00106141412345678908',
  ssccAim: ']C100106141412345678908',
  gtinExpiryBatch: ']C10109506000134352172512311' + '0ABC123',
  gtinSerial: '(01)09506000134352(21)SN0001',
  ean13: '4006381333931',
} as const;

/** Removes a directory, ignoring errors. */
export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
