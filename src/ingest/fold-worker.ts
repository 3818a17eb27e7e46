/**
 * Worker-thread entry that folds the journal into ledger documents, so Automerge's CPU work runs
 * on the second core and never stalls ingest on the main thread. It opens its own connection to
 * the same SQLite file; `LedgerFolder` keeps its write transactions short and safe against other
 * folders.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { asPostId } from '../domain/ids.ts';
import { Store } from '../store/store.ts';
import { LedgerFolder } from './fold.ts';

/** What the main thread sends. */
export type ToFoldWorker = { type: 'fold' } | { type: 'stop' };
/** What the worker answers. */
export type FromFoldWorker = { type: 'folded'; n: number } | { type: 'error'; message: string } | { type: 'stopped' };
/** Start-up data. */
export interface FoldWorkerData { dataDir: string; post: string }

const port = parentPort!;
const data = workerData as FoldWorkerData;
const store = Store.open(data.dataDir);
const folder = new LedgerFolder(store, asPostId(data.post), store.actorId());
const send = (m: FromFoldWorker) => port.postMessage(m);

port.on('message', (m: ToFoldWorker) => {
  if (m.type === 'stop') {
    folder.forget();
    store.close();
    send({ type: 'stopped' });
    port.close();
    return;
  }
  try {
    const n = folder.foldAll();
    store.db.pragma('wal_checkpoint(PASSIVE)');
    send({ type: 'folded', n });
  } catch (e) {
    send({ type: 'error', message: (e as Error).message });
  }
});
