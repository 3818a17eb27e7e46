/**
 * Sync over HTTP: the client side of `POST /sync/v1` (a sealed message in, a sealed message
 * out, `application/octet-stream`). Errors come back as JSON with a stable code and become
 * PoskoErrors here, so the protocol can react (a replay answer moves our sequence on).
 */
import { PoskoError, isPoskoError, type ErrorCode } from '../domain/errors.ts';
import type { Transport } from '../sync/session.ts';

export const SYNC_PATH = '/sync/v1';

/** Talks to a peer gateway at `baseUrl` (e.g. http://hq.example:8080). */
export class HttpTransport implements Transport {
  readonly label: string;

  constructor(private readonly baseUrl: string, private readonly timeoutMs = 120_000) {
    this.label = baseUrl;
  }

  async exchange(message: Uint8Array): Promise<Uint8Array> {
    let res: Response;
    try {
      res = await fetch(new URL(SYNC_PATH, this.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: message,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).name;
      throw new PoskoError('SYNC_UNREACHABLE', `${this.baseUrl} did not answer (${cause})`);
    }
    let body: Uint8Array;
    try {
      body = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw new PoskoError('SYNC_UNREACHABLE', `${this.baseUrl} dropped the connection mid-answer (${(e as Error).message})`);
    }
    if (res.ok) return body;
    // Errors are `{ error: { code, message, details } }` (http/errors.ts).
    let err: { code?: string; message?: string; details?: Record<string, unknown> } = {};
    try {
      const parsed = JSON.parse(Buffer.from(body).toString('utf8')) as { error?: typeof err };
      err = parsed.error ?? {};
    } catch { /* not JSON */ }
    const code = (typeof err.code === 'string' && /^[A-Z_]{2,40}$/.test(err.code) ? err.code : 'SYNC_PEER_ERROR') as ErrorCode;
    const e = new PoskoError(code, `${this.baseUrl}: ${err.message ?? `HTTP ${res.status}`}`, err.details);
    throw isPoskoError(e) ? e : new PoskoError('SYNC_PEER_ERROR', String(e));
  }
}
