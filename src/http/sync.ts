/**
 * `POST /sync/v1`: a peer gateway's sealed sync message in, the sealed answer out. No bearer
 * token: the message's signature is the authentication (DESIGN.md, Trust), and every refusal is
 * a JSON error with a stable code.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { PoskoError } from '../domain/errors.ts';

/** Largest sync message accepted over HTTP. */
export const MAX_SYNC_BODY = 64 * 1024 * 1024;

export interface SyncRouteDeps {
  /** Answers one sealed message (throws a PoskoError to refuse it). */
  answer: (message: Uint8Array) => Uint8Array | Promise<Uint8Array>;
}

export function syncRoutes(deps: SyncRouteDeps): Hono {
  const app = new Hono();
  app.use('*', bodyLimit({
    maxSize: MAX_SYNC_BODY,
    onError: () => { throw new PoskoError('PAYLOAD_TOO_LARGE', `a sync message is at most ${MAX_SYNC_BODY} bytes`); },
  }));
  app.post('/', async (c) => {
    const type = c.req.header('content-type') ?? '';
    if (!type.startsWith('application/octet-stream')) throw new PoskoError('BAD_REQUEST', 'send the sync message as application/octet-stream');
    const message = new Uint8Array(await c.req.arrayBuffer());
    const out = await deps.answer(message);
    return c.body(out as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/octet-stream' });
  });
  return app;
}
