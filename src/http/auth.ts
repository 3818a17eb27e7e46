/**
 * Bearer-token authentication for `/api`: the admin token (from config or generated on first
 * start) or a device token (hash looked up on every request, so a revocation by the CLI takes
 * effect at once).
 */
import type { MiddlewareHandler } from 'hono';
import { PoskoError } from '../domain/errors.ts';
import { asDeviceId, type DeviceId } from '../domain/ids.ts';
import { safeEqual } from '../store/devices.ts';
import type { Store } from '../store/store.ts';

/** Who is calling. */
export type Principal = { kind: 'admin' } | { kind: 'device'; device: DeviceId };

/** Hono context variables set by the auth middleware. */
export type AuthEnv = { Variables: { principal: Principal } };

/** Requires a valid bearer token and sets `principal`. */
export function bearerAuth(store: Store, adminToken: string): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (!header) throw new PoskoError('UNAUTHENTICATED', 'missing Authorization: Bearer <token> header');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new PoskoError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <token>"');
    const token = m[1]!;
    if (safeEqual(token, adminToken)) c.set('principal', { kind: 'admin' });
    else {
      const device = token.length <= 256 ? store.devices.byToken(token) : undefined;
      if (!device) throw new PoskoError('UNAUTHENTICATED', 'unknown or revoked token');
      c.set('principal', { kind: 'device', device: asDeviceId(device.id) });
    }
    await next();
  };
}

/** Refuses the request unless the caller is the admin. */
export function requireAdmin(p: Principal): void {
  if (p.kind !== 'admin') throw new PoskoError('FORBIDDEN', 'this needs the admin token');
}
