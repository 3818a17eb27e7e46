/**
 * The one place where errors become HTTP responses: a PoskoError keeps its code and status, a
 * framework HTTP error becomes the matching code, anything else is a logged INTERNAL error whose
 * details never leave the server.
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { PoskoError, isPoskoError } from '../domain/errors.ts';
import type { Logger } from '../log.ts';

/** Converts any thrown value to a PoskoError. */
export function toPoskoError(err: unknown, log: Logger): PoskoError {
  if (isPoskoError(err)) return err;
  if (err instanceof HTTPException) {
    if (err.status === 413) return new PoskoError('PAYLOAD_TOO_LARGE', 'the request body is too large');
    if (err.status === 400) return new PoskoError('BAD_REQUEST', err.message || 'bad request');
    if (err.status === 401) return new PoskoError('UNAUTHENTICATED', err.message || 'authentication required');
    if (err.status === 404) return new PoskoError('NOT_FOUND', err.message || 'not found');
  }
  log.error('unhandled error', { err: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : String(err) });
  return new PoskoError('INTERNAL', 'internal error: it was logged on the gateway');
}

/** The JSON error response for a PoskoError. */
export function errorResponse(c: Context, e: PoskoError): Response {
  const headers: Record<string, string> = {};
  if (e.code === 'UNAUTHENTICATED') headers['WWW-Authenticate'] = 'Bearer realm="posko"';
  if (e.status === 503) headers['Retry-After'] = '5';
  return c.json({ error: e.toJSON() }, e.status as 400, headers);
}
