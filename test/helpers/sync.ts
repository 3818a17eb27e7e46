/**
 * Test helpers for sync between in-process gateways: enrol two gateways with each other, carry
 * messages straight into a peer's `serve`, and record what a transport carried.
 */
import { serve, type Transport } from '../../src/sync/session.ts';
import type { PublicIdentity } from '../../src/sync/identity.ts';
import type { TestGateway } from './gateway.ts';

/** The public half of a test gateway's identity. */
export function publicOf(g: TestGateway): PublicIdentity {
  const { id, role, publicKey } = g.gw.identity;
  return { id, role, publicKey };
}

/** A transport that hands each message to `to`'s `serve` in-process (no HTTP). */
export function direct(to: TestGateway): Transport {
  return { label: `direct:${to.gw.identity.id}`, exchange: async (m) => serve(to.gw.sync, m) };
}

/** Enrols each gateway at the other, as an operator would with `posko enroll`. */
export function introduce(a: TestGateway, b: TestGateway): void {
  a.gw.sync.enroll(publicOf(b));
  b.gw.sync.enroll(publicOf(a));
}

/** A transport that records every message sent and every answer received (copies). */
export interface Recording extends Transport {
  sent: Buffer[];
  received: Buffer[];
}

/** Wraps a transport to record what it carries. */
export function recording(inner: Transport): Recording {
  const sent: Buffer[] = [];
  const received: Buffer[] = [];
  return {
    label: `recording:${inner.label}`,
    sent,
    received,
    async exchange(m) {
      sent.push(Buffer.from(m));
      const answer = await inner.exchange(m);
      received.push(Buffer.from(answer));
      return answer;
    },
  };
}
