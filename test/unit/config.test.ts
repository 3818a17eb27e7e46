import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';

describe('config', () => {
  it('has embedded defaults', () => {
    const c = loadConfig({}, {});
    expect(c).toMatchObject({ httpPort: 8080, postId: 'DEMO', role: 'post' });
    expect(c.dataDir.endsWith('/data')).toBe(true);
  });
  it('takes POSKO_* variables, and flags over them', () => {
    const c = loadConfig({ POSKO_HTTP_PORT: '9000', POSKO_POST_ID: 'KKR-KBG', POSKO_ROLE: 'hq' }, { httpPort: '9100' });
    expect(c).toMatchObject({ httpPort: 9100, postId: 'KKR-KBG', role: 'hq' });
  });
  it('names the bad setting, its flag and its variable', () => {
    expect(() => loadConfig({ POSKO_HTTP_PORT: 'eighty' }, {})).toThrow(/httpPort \(--http-port or POSKO_HTTP_PORT\)/);
    expect(() => loadConfig({}, { postId: 'kota bangun' })).toThrow(/postId/);
    expect(() => loadConfig({}, { role: 'boss' })).toThrow(/role/);
    expect(() => loadConfig({ POSKO_ADMIN_TOKEN: 'short' }, {})).toThrow(/adminToken/);
  });
});
