/**
 * `/api/v1/sync`: this gateway's identity, its peers and their sync status, recent refusals, and
 * "sync with this peer now". Admin only.
 */
import { Hono } from 'hono';
import { isPoskoError } from '../domain/errors.ts';
import type { PeerSync } from '../transport/peer-sync.ts';
import type { SyncStore } from '../store/sync-store.ts';
import { requireAdmin, type AuthEnv } from './auth.ts';

export interface SyncApiDeps {
  peers: PeerSync;
  syncStore: SyncStore;
  identity: { id: string; role: string; publicKey: string; fingerprint: string };
}

export function syncApiRoutes(deps: SyncApiDeps): Hono<AuthEnv> {
  const api = new Hono<AuthEnv>();
  api.use('*', async (c, next) => {
    requireAdmin(c.get('principal'));
    await next();
  });
  api.get('/', (c) => c.json({ identity: deps.identity, peers: deps.peers.status(), refusals: deps.syncStore.refusals(20) }));
  api.get('/peers', (c) => c.json({ peers: deps.peers.status() }));
  api.post('/peers/:id', async (c) => {
    const id = c.req.param('id');
    try {
      const report = await deps.peers.syncPeer(id);
      return c.json({ ok: true, report });
    } catch (e) {
      if (isPoskoError(e) && (e.code === 'NOT_FOUND' || e.code === 'VALIDATION')) throw e;
      const err = isPoskoError(e) ? e.toJSON() : { code: 'SYNC_PEER_ERROR', message: String(e) };
      return c.json({ ok: false, error: err }, 502);
    }
  });
  return api;
}
