/**
 * The CLI's commands, one function each. `start` runs until SIGINT/SIGTERM; the others open the
 * store, do one thing, close it, and return the exit code.
 */
import { parseBarcode } from '../domain/barcode.ts';
import { isPoskoError } from '../domain/errors.ts';
import { asPostId } from '../domain/ids.ts';
import type { Config } from '../config/config.ts';
import { Gateway } from '../gateway.ts';
import { notifySystemd } from '../systemd.ts';
import { LedgerFolder } from '../ingest/fold.ts';
import { createLogger } from '../log.ts';
import { backupTo, restoreFrom } from '../store/backup.ts';
import { rebuildViews } from '../store/rebuild.ts';
import { Store } from '../store/store.ts';
import { deviceTopics } from '../domain/device-protocol.ts';
import { writeMosquittoFiles } from '../transport/mosquitto-files.ts';
import { bundleCommand, enrollCommand, identityCommand, peersCommand, syncCommand, type SyncCliOptions } from './sync-commands.ts';

/** Output options. */
export interface CliOptions extends SyncCliOptions { json: boolean; action?: string | undefined }

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : s + '\n');

/** Runs the command named by `args`; resolves with the exit code (-1: keep running). */
export async function runCommand(args: string[], config: Config, opts: CliOptions): Promise<number> {
  const [cmd, sub, ...rest] = args;
  switch (cmd) {
    case 'start': return start(config);
    case 'devices': return devices(sub, rest, config, opts);
    case 'barcode': return barcode(sub, rest);
    case 'rebuild': return rebuild(config, opts);
    case 'backup': return backup(sub, config, opts);
    case 'restore': return restore(sub, config, opts);
    case 'mosquitto-files': return mosquittoFiles(config, opts);
    case 'identity': return identityCommand(config, opts);
    case 'enroll': return enrollCommand([sub, ...rest].filter((x): x is string => x !== undefined), config, opts);
    case 'peers': return peersCommand(config, opts);
    case 'sync': return syncCommand([sub, ...rest].filter((x): x is string => x !== undefined), config, opts);
    case 'bundle': return bundleCommand(sub, rest, config, opts);
    default:
      err(`posko: unknown command "${cmd}"; see posko --help`);
      return 2;
  }
}

async function start(config: Config): Promise<number> {
  const log = createLogger(config.logLevel);
  const gw = new Gateway(config, { log });
  const port = await gw.start();
  const host = config.httpHost === '0.0.0.0' ? '127.0.0.1' : config.httpHost;
  const url = `http://${host}:${port}`;
  // One write, the URL last: whoever waits for the "listening on" line has the token too.
  const lines = [''];
  if (gw.adminTokenCreated) {
    lines.push(`admin token (shown once; kept in ${config.dataDir}/admin-token):`, `  ${gw.adminToken}`);
    lines.push(`try: curl -H "Authorization: Bearer ${gw.adminToken}" ${url}/api/v1/stock`);
  } else if (!config.adminToken) {
    lines.push(`admin token: in ${config.dataDir}/admin-token`);
  }
  const m = gw.mqtt;
  lines.push(m.mode === 'embedded' ? `MQTT broker for devices on port ${m.port}` : m.mode === 'external' ? `MQTT: connected to ${m.url}` : `MQTT off: ${m.reason}`);
  lines.push(`posko ${config.role} ${config.postId} listening on ${url}  (data: ${config.dataDir})`);
  out(lines.join('\n'));
  const stopNotifying = notifySystemd(process.env, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stopNotifying();
    log.info('stopping', { signal });
    const force = setTimeout(() => { log.error('stop timed out'); process.exit(1); }, 10_000);
    force.unref();
    gw.stop().then(() => process.exit(0), (e: unknown) => { log.error('stop failed', { error: String(e) }); process.exit(1); });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  return -1;
}

function withStore<T>(config: Config, f: (s: Store) => T): T {
  const store = Store.open(config.dataDir);
  try { return f(store); } finally { store.close(); }
}

function devices(sub: string | undefined, rest: string[], config: Config, opts: CliOptions): number {
  try {
    return withStore(config, (store) => {
      switch (sub) {
        case 'add': {
          const name = rest.join(' ');
          if (!name) { err('usage: posko devices add <name>'); return 2; }
          const { device, token } = store.devices.add(name, { defaultAction: opts.action });
          const files = writeMosquittoFiles(store, config.postId);
          const topics = deviceTopics(config.postId, device.id);
          if (opts.json) out(JSON.stringify({ ...device, token, mqttUsername: device.id, mqttPassword: token, topics }));
          else {
            out(`device ${device.id} added (bare barcodes mean "${device.defaultAction}"). Its token, shown once, keep it on the device:`);
            out(`  ${token}`);
            out(`HTTP: Authorization: Bearer <token>.  MQTT: username ${device.id}, password <token>;`);
            out(`  publish scans to ${topics.scan}, read acks on ${topics.ack}, status on ${topics.status}`);
            out(`external Mosquitto files updated: ${files.passwd}, ${files.acl} (reload Mosquitto to apply)`);
          }
          return 0;
        }
        case 'list': {
          const list = store.devices.list();
          if (opts.json) out(JSON.stringify(list));
          else if (list.length === 0) out('no devices yet: posko devices add <name>');
          else for (const d of list) out(`${d.id.padEnd(24)} ${d.revokedAt ? 'REVOKED ' + d.revokedAt : 'active'}  ${d.name}  (added ${d.createdAt})`);
          return 0;
        }
        case 'revoke': {
          const id = rest[0];
          if (!id) { err('usage: posko devices revoke <id>'); return 2; }
          const d = store.devices.revoke(id);
          writeMosquittoFiles(store, config.postId);
          if (opts.json) out(JSON.stringify(d));
          else out(`device ${d.id} revoked at ${d.revokedAt}`);
          return 0;
        }
        default:
          err('usage: posko devices add|list|revoke');
          return 2;
      }
    });
  } catch (e) {
    if (isPoskoError(e)) { err(`posko: ${e.code}: ${e.message}`); return e.code === 'NOT_FOUND' ? 1 : 2; }
    throw e;
  }
}

function barcode(sub: string | undefined, rest: string[]): number {
  if (sub !== 'parse' || rest.length === 0) { err('usage: posko barcode parse <code>'); return 2; }
  try {
    out(JSON.stringify(parseBarcode(rest.join(' ')), null, 2));
    return 0;
  } catch (e) {
    if (isPoskoError(e)) { out(JSON.stringify({ error: e.toJSON() }, null, 2)); return 2; }
    throw e;
  }
}

function rebuild(config: Config, opts: CliOptions): number {
  return withStore(config, (store) => {
    const folded = new LedgerFolder(store, asPostId(config.postId), store.actorId()).foldAll();
    const r = rebuildViews(store, (done, total) => { if (!opts.json && process.stderr.isTTY) process.stderr.write(`\rdocuments ${done}/${total}`); });
    if (opts.json) out(JSON.stringify({ folded, ...r }));
    else out(`\nrebuilt from ${r.docs} documents: ${r.events} events, ${r.parcels} parcels (folded ${folded} pending first)`);
    return 0;
  });
}

async function backup(dir: string | undefined, config: Config, opts: CliOptions): Promise<number> {
  if (!dir) { err('usage: posko backup <dir>'); return 2; }
  const store = Store.open(config.dataDir);
  try {
    const r = await backupTo(store, config.postId, dir, { onProgress: (pct) => { if (!opts.json && process.stderr.isTTY) process.stderr.write(`\rbackup ${pct}%`); } });
    if (opts.json) out(JSON.stringify(r));
    else out(`\nbackup written: ${r.file} (${Math.round(r.bytes / 1024)} KiB)`);
    return 0;
  } catch (e) {
    if (isPoskoError(e)) { err(`posko: ${e.code}: ${e.message}`); return 1; }
    throw e;
  } finally {
    store.close();
  }
}

function restore(path: string | undefined, config: Config, opts: CliOptions): number {
  if (!path) { err('usage: posko restore <backup file or dir>'); return 2; }
  try {
    const r = restoreFrom(path, config.dataDir);
    if (opts.json) out(JSON.stringify(r));
    else out(`restored ${r.file} into ${config.dataDir} (${r.events} events); the previous database is kept as posko.db.before-restore`);
    return 0;
  } catch (e) {
    if (isPoskoError(e)) { err(`posko: ${e.code}: ${e.message}`); return 1; }
    throw e;
  }
}

function mosquittoFiles(config: Config, opts: CliOptions): number {
  return withStore(config, (store) => {
    const files = writeMosquittoFiles(store, config.postId);
    if (opts.json) out(JSON.stringify(files));
    else out(`Mosquitto files written: ${files.passwd}, ${files.acl}`);
    return 0;
  });
}
