/**
 * Worker-thread entry that prepares folds of the journal into ledger documents, so Automerge's CPU
 * work runs on the second core. It only reads (its own SQLite connection; WAL readers never block
 * the writer): each plan goes to the main thread, the one writer, which commits it in a short
 * transaction and says whether it was stored.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { asPostId } from '../domain/ids.ts';
import { Store } from '../store/store.ts';
import { LedgerFolder, type FoldPlan } from './fold.ts';

/** What the main thread sends. */
export type ToFoldWorker = { type: 'fold' } | { type: 'settled'; ok: boolean } | { type: 'stop' };
/** What the worker sends. */
export type FromFoldWorker =
  | { type: 'plan'; plan: FoldPlan }
  | { type: 'folded'; n: number }
  | { type: 'error'; message: string }
  | { type: 'stopped' };
/** Start-up data. */
export interface FoldWorkerData { dataDir: string; post: string }

const port = parentPort!;
lowerThreadPriority();

/**
 * Folding is background work: run this thread at a lower CPU priority (nice 10) so that, on a
 * busy 2-core machine, the main thread answering scanners is scheduled first. Linux lets
 * setpriority() address one thread by its kernel id, read from /proc/thread-self.
 */
function lowerThreadPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
  } catch {
    /* not Linux, or not allowed: fold at normal priority */
  }
}
const data = workerData as FoldWorkerData;
const store = Store.open(data.dataDir);
const folder = new LedgerFolder(store, asPostId(data.post), store.actorId());
const send = (m: FromFoldWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

let settle: ((ok: boolean) => void) | undefined;
let stopping = false;
let running: Promise<unknown> = Promise.resolve();

async function foldAll(): Promise<number> {
  let total = 0;
  let refused = 0;
  while (!stopping && refused < 3) {
    const plan = folder.prepare();
    if (!plan) break;
    const ok = await new Promise<boolean>((resolve) => {
      settle = resolve;
      send({ type: 'plan', plan });
    });
    settle = undefined;
    folder.settle(ok);
    if (ok) total += plan.count;
    else refused++;
  }
  if (!stopping) store.db.pragma('wal_checkpoint(PASSIVE)');
  return total;
}

port.on('message', (m: ToFoldWorker) => {
  if (m.type === 'settled') {
    settle?.(m.ok);
    return;
  }
  if (m.type === 'stop') {
    // A plan in flight is abandoned (the main thread stops committing); then close cleanly.
    stopping = true;
    settle?.(false);
    void running.finally(() => {
      folder.forget();
      store.close();
      send({ type: 'stopped' });
      port.close();
    });
    return;
  }
  if (stopping) return;
  running = foldAll().then(
    (n) => send({ type: 'folded', n }),
    (e: unknown) => send({ type: 'error', message: (e as Error).message }),
  );
});
