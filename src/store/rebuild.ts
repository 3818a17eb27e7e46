/**
 * Rebuilds the views (events, parcels, stock) from the Automerge documents alone, in one
 * transaction: what the documents hold is the truth, the views are derived. Run it after the
 * journal has been folded, or events not yet in a document would be lost.
 */
import * as A from '@automerge/automerge';
import { compareEvents } from '../domain/parcel-state.ts';
import type { ParcelId } from '../domain/ids.ts';
import { ledgerEvents, type LedgerDoc } from '../sync/ledger.ts';
import { META_FOLD_SEQ } from './meta.ts';
import type { Store } from './store.ts';

/** Replaces the views with what the ledger documents hold. Returns counts. Durable on return. */
export function rebuildViews(store: Store, onProgress?: (done: number, total: number) => void): { docs: number; events: number; parcels: number } {
  const docs = store.docs.list('ledger/');
  return store.db.transaction(() => {
    store.views.clear();
    const events = [];
    let done = 0;
    for (const info of docs) {
      const doc = store.docs.load<LedgerDoc>(info.id);
      if (doc) {
        events.push(...ledgerEvents(doc));
        A.free(doc);
      }
      onProgress?.(++done, docs.length);
    }
    events.sort(compareEvents);
    const parcels = new Set<ParcelId>();
    // One scan counts once: of events sharing an idempotency key (a retry after a restore from
    // backup), the first in causal order, as a merge decides.
    const keys = new Set<string>();
    for (const e of events) {
      if (keys.has(e.key)) continue;
      keys.add(e.key);
      store.views.insertEvent(e);
      parcels.add(e.parcel);
    }
    // Every event now comes from a document: none is left to fold.
    store.db.exec('UPDATE events SET merged = 1');
    store.views.refreshParcels(parcels);
    const maxSeq = (store.db.prepare('SELECT coalesce(max(seq), 0) AS s FROM events').get() as { s: number }).s;
    store.meta.set(META_FOLD_SEQ, String(maxSeq));
    return { docs: docs.length, events: keys.size, parcels: parcels.size };
  }).immediate();
}
