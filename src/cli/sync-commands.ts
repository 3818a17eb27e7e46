/**
 * The CLI's sync commands: identity, enroll, peers, sync, bundle export|import. Each opens the
 * store beside a running gateway (SQLite in WAL mode serialises the writers), does one thing and
 * returns the exit code.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import QRCode from 'qrcode';
import type { Config } from '../config/config.ts';
import { PoskoError, isPoskoError } from '../domain/errors.ts';
import { asPostId, POST_ID_RE } from '../domain/ids.ts';
import { LedgerFolder } from '../ingest/fold.ts';
import { loadIdentity } from '../store/identity-file.ts';
import { Store } from '../store/store.ts';
import { SyncStore } from '../store/sync-store.ts';
import { actorPrefix, fingerprint, isPublicKey, type Identity, type Role } from '../sync/identity.ts';
import { exportBundle, importBundle, DEFAULT_LIMITS, type Progress } from '../sync/session.ts';
import { PeerSync } from '../transport/peer-sync.ts';
import { createLogger } from '../log.ts';

/** Options of the sync commands. */
export interface SyncCliOptions {
  json: boolean;
  url?: string | undefined;
  budgetMb?: string | undefined;
  approve?: boolean | undefined;
  for?: string | undefined;
  qr?: boolean | undefined;
  peerRole?: string | undefined;
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : s + '\n');

function openSync(config: Config): { store: Store; sync: SyncStore; identity: Identity; fold: () => number } {
  const store = Store.open(config.dataDir);
  const { identity } = loadIdentity(config.dataDir, config.postId, config.role);
  const actor = store.ensureActorPrefix(actorPrefix(identity.publicKey));
  const sync = new SyncStore(store, identity);
  return {
    store, sync, identity,
    fold: () => {
      const n = new LedgerFolder(store, asPostId(config.postId), actor).foldAll();
      sync.refreshManifest();
      return n;
    },
  };
}

/** A progress line on stderr (a terminal only), for long work. */
function progressBar(json: boolean): Progress {
  return (p) => {
    if (json || !process.stderr.isTTY) return;
    const pct = p.total > 0 ? Math.floor((100 * p.done) / p.total) : 100;
    process.stderr.write(`\r${p.stage} ${String(pct).padStart(3)}%  ${p.done}/${p.total}  ${(p.bytes / 1024).toFixed(0)} KiB   `);
  };
}

async function guarded(f: () => Promise<number> | number): Promise<number> {
  try {
    return await f();
  } catch (e) {
    if (isPoskoError(e)) {
      err(`posko: ${e.code}: ${e.message}`);
      return e.code === 'NOT_FOUND' ? 1 : e.status >= 500 ? 1 : 2;
    }
    throw e;
  }
}

/** `posko identity [--json] [--qr]`: who this gateway is. */
export async function identityCommand(config: Config, opts: SyncCliOptions): Promise<number> {
  return guarded(async () => {
    const { store, identity } = openSync(config);
    store.close();
    const pub = { id: identity.id, role: identity.role, publicKey: identity.publicKey, fingerprint: fingerprint(identity.publicKey) };
    if (opts.json) { out(JSON.stringify(pub)); return 0; }
    out(`${pub.role} ${pub.id}`);
    out(`public key:  ${pub.publicKey}`);
    out(`fingerprint: ${pub.fingerprint}`);
    out(`enroll it at HQ with:  posko enroll ${pub.id} ${pub.publicKey}${pub.role === 'hq' ? ' --peer-role hq' : ''} --url http://<this-gateway>:8080`);
    if (opts.qr) out(await QRCode.toString(`posko:${pub.id}:${pub.role}:${pub.publicKey}`, { type: 'terminal', small: true }));
    return 0;
  });
}

/** `posko enroll <id> <public-key> [--peer-role hq] [--url U] [--budget-mb N]` or `posko enroll <id> --approve`. */
export async function enrollCommand(args: string[], config: Config, opts: SyncCliOptions): Promise<number> {
  const [id, key] = args;
  if (!id || (!key && !opts.approve)) {
    err('usage: posko enroll <id> <public-key> [--peer-role post|hq] [--url <url>] [--budget-mb <n>]\n       posko enroll <id> --approve   (a pending request)');
    return 2;
  }
  return guarded(() => {
    if (!POST_ID_RE.test(id)) throw new PoskoError('VALIDATION', `${id} is not a post id (1-16 of A-Z, 0-9 and -)`);
    if (opts.url !== undefined && !/^(https?|mqtts?):\/\/\S+$/.test(opts.url)) throw new PoskoError('VALIDATION', '--url must be an http(s):// URL (the peer gateway) or mqtt(s):// (a broker both use)');
    const budget = opts.budgetMb === undefined ? undefined : Math.round(Number(opts.budgetMb) * 1024 * 1024);
    if (budget !== undefined && (!Number.isFinite(budget) || budget < 0)) throw new PoskoError('VALIDATION', '--budget-mb must be a number of megabytes');
    const role: Role = opts.peerRole === 'hq' ? 'hq' : 'post';
    if (opts.peerRole !== undefined && opts.peerRole !== 'hq' && opts.peerRole !== 'post') throw new PoskoError('VALIDATION', '--peer-role is post or hq');
    const { store, sync } = openSync(config);
    try {
      let row;
      if (opts.approve) row = sync.approve(id);
      else {
        if (!isPublicKey(key!)) throw new PoskoError('VALIDATION', 'that is not a posko public key (posko identity prints it: pk1. and 86 characters)');
        row = sync.enroll({ id, role, publicKey: key!, url: opts.url ?? null, budgetBytes: budget ?? null });
      }
      if (opts.url !== undefined || budget !== undefined) sync.configure(id, { ...(opts.url !== undefined ? { url: opts.url } : {}), ...(budget !== undefined ? { budgetBytes: budget } : {}) });
      row = sync.peer(id)!;
      const fp = fingerprint(row.public_key);
      if (opts.json) out(JSON.stringify({ id: row.id, role: row.role, status: row.status, url: row.url, fingerprint: fp }));
      else {
        out(`${row.role} ${row.id} enrolled; fingerprint ${fp} (compare it with \`posko identity\` there)`);
        if (config.role === 'hq') out('the post directory carries it to every post at their next sync');
      }
      return 0;
    } finally {
      store.close();
    }
  });
}

/** `posko peers [--json]`: every peer and its sync status. */
export async function peersCommand(config: Config, opts: SyncCliOptions): Promise<number> {
  return guarded(() => {
    const { store, sync } = openSync(config);
    try {
      const status = new PeerSync({ sync, log: createLogger('silent'), intervalMs: config.syncIntervalMs, limits: DEFAULT_LIMITS, beforeSync: () => undefined, fingerprint }).status();
      if (opts.json) { out(JSON.stringify(status)); return 0; }
      if (status.length === 0) { out('no peers yet: posko enroll <id> <public-key> --url <url>'); return 0; }
      for (const p of status) {
        out(`${p.id.padEnd(16)} ${p.role.padEnd(4)} ${p.status.padEnd(8)} ${p.url ?? '(no address)'}`);
        out(`  last success ${p.lastSuccessAt ?? 'never'}; last heard ${p.lastHeardAt ?? 'never'}; sent ${p.bytesSent} B, received ${p.bytesReceived} B; ${p.pendingDocs} documents to send`
          + (p.lastError ? `; last error: ${p.lastError}` : '') + (p.budgetBytesPerDay !== null ? `; budget left today ${p.budgetLeftToday} B` : ''));
      }
      const refusals = sync.refusals(5);
      if (refusals.length > 0) {
        out('recent refusals:');
        for (const r of refusals) out(`  ${r.at} from ${r.peer}: ${r.doc_id} ${r.code}: ${r.message}`);
      }
      return 0;
    } finally {
      store.close();
    }
  });
}

/** `posko sync <peer-id|url>`: one complete exchange now; exit 0 only when it completed. */
export async function syncCommand(args: string[], config: Config, opts: SyncCliOptions): Promise<number> {
  const target = args[0];
  if (!target) { err('usage: posko sync <peer-id|peer-url>'); return 2; }
  return guarded(async () => {
    const { store, sync, fold } = openSync(config);
    try {
      const row = sync.peers().find((p) => p.id === target || p.url === target || p.url === target.replace(/\/$/, ''));
      if (!row) throw new PoskoError('NOT_FOUND', `no enrolled peer ${target} (posko peers lists them)`);
      if (row.status !== 'enrolled') throw new PoskoError('VALIDATION', `${row.id} is ${row.status}, not enrolled`);
      const peerSync = new PeerSync({
        sync, log: createLogger('silent'), intervalMs: config.syncIntervalMs, fingerprint,
        limits: { maxMessageBytes: config.syncMessageBytes, maxRounds: 500 }, beforeSync: () => { fold(); },
      });
      const report = await peerSync.syncPeer(row.id, progressBar(opts.json));
      if (!opts.json && process.stderr.isTTY) process.stderr.write('\n');
      if (opts.json) out(JSON.stringify(report));
      else {
        out(`${report.complete ? 'synced' : 'partly synced'} with ${row.id}: ${report.roundTrips} round trips, sent ${report.bytesSent} B, received ${report.bytesReceived} B, ${report.events} new events`);
        for (const r of report.refusedByPeer) out(`  refused by ${row.id}: ${r.doc} ${r.code}: ${r.message}`);
        for (const r of report.refusedHere) out(`  refused here: ${r.doc} ${r.code}: ${r.message}`);
        if (report.budgetExhausted) out('  the byte budget for today is spent; the rest waits for the next window');
      }
      return report.complete ? 0 : 1;
    } finally {
      store.close();
    }
  });
}

/** `posko bundle export [--for <peer>] <file>` and `posko bundle import <file>`. */
export async function bundleCommand(sub: string | undefined, args: string[], config: Config, opts: SyncCliOptions): Promise<number> {
  const file = args[0];
  if ((sub !== 'export' && sub !== 'import') || !file) {
    err('usage: posko bundle export [--for <peer>] <file>\n       posko bundle import <file>');
    return 2;
  }
  return guarded(() => {
    const { store, sync, fold } = openSync(config);
    try {
      if (sub === 'export') {
        fold();
        let recipients;
        if (opts.for) {
          const peer = sync.enrolled(opts.for);
          if (!peer) throw new PoskoError('NOT_FOUND', `${opts.for} is not an enrolled peer`);
          recipients = [peer];
        } else {
          // For every enrolled gateway: whoever carries the stick on, only they can read it.
          recipients = sync.peers().filter((p) => p.status === 'enrolled').map((p) => ({ id: p.id, role: p.role, publicKey: p.public_key }));
          if (recipients.length === 0) throw new PoskoError('VALIDATION', 'no enrolled peers to write a bundle for (posko enroll first)');
        }
        const bundle = exportBundle(sync, recipients, opts.for ?? null, progressBar(opts.json));
        writeFileSync(`${file}.partial`, bundle.bytes);
        renameSync(`${file}.partial`, file);
        const r = { file, bytes: bundle.bytes.length, chunks: bundle.chunks, for: recipients.map((p) => p.id) };
        if (opts.json) out(JSON.stringify(r));
        else out(`\nbundle written: ${file} (${bundle.chunks} documents, ${(bundle.bytes.length / 1024).toFixed(1)} KiB), readable by ${r.for.join(', ')}`);
        return 0;
      }
      let bytes: Buffer;
      try { bytes = readFileSync(file); } catch (e) { throw new PoskoError('NOT_FOUND', `cannot read ${file}: ${(e as Error).message}`); }
      const r = importBundle(sync, bytes, progressBar(opts.json));
      if (opts.json) out(JSON.stringify(r));
      else {
        out(`\nbundle from ${r.from}: ${r.chunks} documents, ${r.changed} changed, ${r.events} new events`);
        for (const x of r.refused) out(`  refused: ${x.doc} ${x.code}: ${x.message}`);
      }
      return r.refused.length > 0 ? 1 : 0;
    } finally {
      store.close();
    }
  });
}
