/**
 * Test transports for sync: a lossy wrapper that injects one scripted fault per message (lost
 * request, lost answer, duplicated request, a throw mid-exchange, a flipped byte either way), and
 * an in-process `fetch` that routes `HttpTransport` requests to gateways' Hono apps without a
 * socket, so the real HTTP client and `POST /sync/v1` route are exercised.
 */
import { PoskoError } from '../../src/domain/errors.ts';
import type { Transport } from '../../src/sync/session.ts';

/** What happens to one message. */
export type Fault =
  | 'ok'
  /** Lost on the way: the peer never sees it. */
  | 'dropRequest'
  /** The peer processes it; its answer is lost. */
  | 'dropResponse'
  /** Delivered twice; the client gets the first answer (the second, a replay refusal, is lost). */
  | 'dupFirst'
  /** Delivered twice; the client gets the second answer (a replay refusal), or the first error. */
  | 'dupSecond'
  /** The connection breaks with a non-Posko error before anything is delivered. */
  | 'throw'
  /** One byte of the request is flipped on the way. */
  | 'corruptRequest'
  /** One byte of the answer is flipped on the way back. */
  | 'corruptResponse';

export const FAULTS: readonly Fault[] = ['ok', 'dropRequest', 'dropResponse', 'dupFirst', 'dupSecond', 'throw', 'corruptRequest', 'corruptResponse'];

/** A copy of `b` with one byte flipped at `at` (mod length). */
export function flipByte(b: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(b);
  const i = at % out.length;
  if (out.length > 0) out[i] = out[i]! ^ 0x5a;
  return out;
}

/**
 * Applies `faults[i]` to the i-th message (then 'ok'). `blocked()` true: a partition, every
 * message fails as unreachable. `applied` records what was done, in order.
 */
export class LossyTransport implements Transport {
  readonly label: string;
  readonly applied: Fault[] = [];
  private n = 0;

  constructor(
    private readonly inner: Transport,
    private readonly faults: readonly Fault[],
    private readonly blocked: () => boolean = () => false,
  ) {
    this.label = `lossy:${inner.label}`;
  }

  async exchange(message: Uint8Array): Promise<Uint8Array> {
    if (this.blocked()) throw new PoskoError('SYNC_UNREACHABLE', `${this.inner.label}: partitioned`);
    const i = this.n++;
    const fault = this.faults[i] ?? 'ok';
    this.applied.push(fault);
    switch (fault) {
      case 'ok':
        return this.inner.exchange(message);
      case 'dropRequest':
        throw new PoskoError('SYNC_UNREACHABLE', `${this.inner.label}: request lost`);
      case 'dropResponse':
        await this.inner.exchange(message).catch(() => undefined);
        throw new PoskoError('SYNC_UNREACHABLE', `${this.inner.label}: answer lost`);
      case 'dupFirst': {
        const first = await settle(this.inner.exchange(message));
        await this.inner.exchange(message).catch(() => undefined);
        if (!first.ok) throw first.error;
        return first.value;
      }
      case 'dupSecond': {
        await this.inner.exchange(message);
        return this.inner.exchange(message);
      }
      case 'throw':
        throw new Error(`${this.inner.label}: socket hang up`);
      case 'corruptRequest':
        return this.inner.exchange(flipByte(message, 7919 * (i + 1)));
      case 'corruptResponse':
        return flipByte(await this.inner.exchange(message), 104_729 * (i + 1));
    }
  }
}

async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Something with a Hono-style `fetch` (a Gateway's `app`). */
export interface FetchApp {
  fetch(request: Request): Response | Promise<Response>;
}

/**
 * A `fetch` that sends each request to the app registered for its host name (looked up at call
 * time, so a restarted gateway is reached through its new app). An unknown host fails the way
 * undici does: a TypeError with a cause code.
 */
export function inProcessFetch(route: (host: string) => FetchApp | undefined): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const app = route(url.hostname);
    if (!app) throw new TypeError('fetch failed', { cause: { code: 'ENOTFOUND' } });
    return app.fetch(new Request(url, init));
  }) as typeof fetch;
}
