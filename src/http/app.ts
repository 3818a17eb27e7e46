/**
 * `createApp(deps)`: the gateway's Hono application, separate from listening on a port so tests
 * call routes in-process. Health and metrics are open; everything under `/api` needs a token.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { PoskoError } from '../domain/errors.ts';
import type { Logger } from '../log.ts';
import { apiRoutes, type ApiDeps } from './api.ts';
import { bearerAuth, type AuthEnv } from './auth.ts';
import { errorResponse, toPoskoError } from './errors.ts';
import { syncRoutes, type SyncRouteDeps } from './sync.ts';
import { syncApiRoutes, type SyncApiDeps } from './sync-api.ts';

/** Everything the HTTP app needs: what the API routes need, and more. */
export interface AppDeps extends ApiDeps, SyncApiDeps {
  log: Logger;
  version: string;
  adminToken: string;
  maxBodyBytes: number;
  /** Extra health facts (pending fold, uptime…). */
  health: () => Record<string, unknown>;
  /** Answers peer gateways' sync messages. */
  sync: SyncRouteDeps;
}

/** Builds the gateway's HTTP application. */
export function createApp(deps: AppDeps): Hono<AuthEnv> {
  const app = new Hono<AuthEnv>();
  const { metrics } = deps;

  app.use('*', async (c, next) => {
    const end = metrics.httpDuration.startTimer();
    await next();
    const route = c.req.routePath || 'unmatched';
    end({ route });
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
  });

  app.onError((err, c) => errorResponse(c, toPoskoError(err, deps.log)));
  app.notFound((c) => errorResponse(c, new PoskoError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`)));

  app.get('/healthz', (c) => c.json({ status: 'ok', post: deps.post, role: deps.role, version: deps.version, ...deps.health() }));

  app.get('/metrics', async (c) => {
    const text = await metrics.registry.metrics();
    return c.text(text, 200, { 'Content-Type': metrics.registry.contentType });
  });

  app.route('/sync/v1', syncRoutes(deps.sync));

  app.use('/api/*', bearerAuth(deps.store, deps.adminToken));
  app.use('/api/*', bodyLimit({
    maxSize: deps.maxBodyBytes,
    onError: () => { throw new PoskoError('PAYLOAD_TOO_LARGE', `the request body is larger than ${deps.maxBodyBytes} bytes`); },
  }));
  app.route('/api/v1/sync', syncApiRoutes(deps));
  app.route('/api/v1', apiRoutes(deps));

  return app;
}
