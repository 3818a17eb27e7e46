import { describe, expect, it } from 'vitest';
import type { EventKind, PoskoEvent } from '../../src/domain/events.ts';
import { asEventId, asParcelId, asPostId, type ParcelId } from '../../src/domain/ids.ts';
import { deriveParcel, parcelIdentity, stockContributions } from '../../src/domain/parcel-state.ts';

let n = 0;
function ev(parcel: string, kind: EventKind, post: string, extra: Partial<PoskoEvent> = {}): PoskoEvent {
  n++;
  return {
    id: asEventId(`00000000-0000-4000-8000-${String(n).padStart(12, '0')}`), kind, key: `k${n}`, post: asPostId(post), device: null,
    operator: null, code: 'x', parsed: null, parcel: asParcelId(parcel), item: null, qty: null, unit: null, org: null, dest: null,
    batch: null, expiry: null, deviceAt: null, hlc: `000000000000${String(n).padStart(3, '0')}-000000`, voids: null, reason: null, ...extra,
  };
}

describe('parcel identity', () => {
  it('prefers SSCC, then GTIN+serial, then label, then GTIN, then the raw code', () => {
    expect(parcelIdentity({ kind: 'gs1', raw: '', ais: { '00': '106141412345678908', '01': '09506000134352' } })).toEqual({ id: 'sscc:106141412345678908', unit: true });
    expect(parcelIdentity({ kind: 'gs1', raw: '', ais: { '01': '09506000134352', '21': 'A1' } })).toEqual({ id: 'sgtin:09506000134352:A1', unit: true });
    expect(parcelIdentity({ kind: 'label', raw: '', ais: {}, label: { post: 'KKR-KBG', serial: '42' } })).toEqual({ id: 'label:KKR-KBG:42', unit: true });
    expect(parcelIdentity({ kind: 'gs1', raw: '', ais: { '01': '09506000134352', '10': 'B7' } })).toEqual({ id: 'gtin:09506000134352:B7', unit: false });
    expect(parcelIdentity({ kind: 'ean', raw: '', ais: { '01': '04006381333931' } })).toEqual({ id: 'gtin:04006381333931', unit: false });
    expect(parcelIdentity({ kind: 'opaque', raw: ' ABC-9 ', ais: {} })).toEqual({ id: 'code:ABC-9', unit: true });
  });
});

describe('parcel state', () => {
  const P = asParcelId('sscc:106141412345678908') as ParcelId;

  it('moves a unit parcel from post A through transit to post B and out to beneficiaries', () => {
    const a = ev(P, 'receive', 'A', { qty: 40, item: 'BERAS', org: 'BPBD' });
    const d = ev(P, 'dispatch', 'A', { dest: 'B' });
    let s = deriveParcel(P, [a, d])!;
    expect(s).toMatchObject({ status: 'in_transit', holdings: {}, inTransit: 40, dest: 'B', item: 'BERAS' });
    expect(stockContributions(s)).toEqual([{ post: 'B', item: 'BERAS', org: 'BPBD', onHand: 0, incoming: 40 }]);
    const cp = ev(P, 'checkpoint', 'C');
    const r = ev(P, 'receive', 'B');
    const x = ev(P, 'distribute', 'B');
    s = deriveParcel(P, [x, r, cp, d, a])!; // order of arrival does not matter: HLC order does
    expect(s).toMatchObject({ status: 'distributed', holdings: {}, inTransit: 0, distributed: 40, location: 'B', events: 5 });
  });

  it('treats a GTIN-only line as bulk: quantities add and subtract per post, and can go negative', () => {
    const G = asParcelId('gtin:04006381333931');
    const s = deriveParcel(G, [ev(G, 'receive', 'A', { qty: 10 }), ev(G, 'receive', 'A', { qty: 10 }), ev(G, 'distribute', 'A', { qty: 5 }), ev(G, 'distribute', 'B', { qty: 2 })])!;
    expect(s.holdings).toEqual({ A: 15, B: -2 });
    expect(s.distributed).toBe(7);
  });

  it('takes quantities from GS1 (37) when the scan has none', () => {
    const s = deriveParcel(P, [ev(P, 'receive', 'A', { parsed: { kind: 'gs1', ais: { '00': '106141412345678908', '37': '24' } } })])!;
    expect(s.holdings).toEqual({ A: 24 });
  });

  it('leaves voided events out entirely', () => {
    const r = ev(P, 'receive', 'A', { qty: 5 });
    const wrong = ev(P, 'distribute', 'A');
    const v = ev(P, 'void', 'A', { voids: wrong.id, reason: 'salah scan' });
    expect(deriveParcel(P, [r, wrong, v])).toMatchObject({ status: 'in_store', holdings: { A: 5 }, events: 1 });
    expect(deriveParcel(P, [ev(P, 'void', 'A', { voids: r.id }), r])).toBeUndefined();
  });

  it('records a stock-take as the quantity found', () => {
    const s = deriveParcel(P, [ev(P, 'receive', 'A', { qty: 50 }), ev(P, 'count', 'A', { qty: 47 })])!;
    expect(s.holdings).toEqual({ A: 47 });
  });
});
