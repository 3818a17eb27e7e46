/**
 * Password and ACL files for an external Mosquitto, written from the device registry: each device
 * logs in with its id and token and may publish only to its own scan and status topics and read
 * only its own ack topic; the gateway's own account reads every device topic of its post and writes
 * the acks. Mosquitto reads them at start and on SIGHUP (`systemctl reload mosquitto`).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mosquittoHash, newToken } from '../store/devices.ts';
import type { Store } from '../store/store.ts';

/** Where the files go: `<dataDir>/mosquitto/`. */
export function mosquittoDir(dataDir: string): string {
  return join(dataDir, 'mosquitto');
}

/** The gateway's own broker account, created on first use and kept in the database. */
export function gatewayBrokerAccount(store: Store, post: string): { username: string; password: string; hash: string } {
  const username = `posko-gateway-${post}`;
  const password = store.meta.getOrInit('mqtt.gateway.password', newToken);
  const hash = store.meta.getOrInit('mqtt.gateway.hash', () => mosquittoHash(password));
  return { username, password, hash };
}

/** The password file's text. */
export function passwordFile(store: Store, post: string): string {
  const gw = gatewayBrokerAccount(store, post);
  const lines = [`${gw.username}:${gw.hash}`, ...store.devices.mosquittoHashes().map((d) => `${d.id}:${d.hash}`)];
  return lines.join('\n') + '\n';
}

/** The ACL file's text. */
export function aclFile(post: string): string {
  return [
    '# Written by posko: do not edit (posko devices add/revoke rewrites it).',
    `user posko-gateway-${post}`,
    `topic read posko/${post}/scan/+`,
    `topic read posko/${post}/status/+`,
    `topic write posko/${post}/ack/+`,
    '# Sync bundles: to any peer from this post, and to this post from any peer (the bridge to HQ',
    '# carries them on; each bundle is signed and encrypted for its recipient).',
    `topic write posko/sync/+/${post}`,
    `topic read posko/sync/${post}/+`,
    '',
    '# Every device: only its own topics (%u is its username, the device id).',
    `pattern write posko/${post}/scan/%u`,
    `pattern readwrite posko/${post}/status/%u`,
    `pattern read posko/${post}/ack/%u`,
    '',
  ].join('\n');
}

/** Writes `passwd` and `acl` atomically (write, then rename). Returns their paths. */
export function writeMosquittoFiles(store: Store, post: string, dir = mosquittoDir(store.dataDir)): { passwd: string; acl: string } {
  mkdirSync(dir, { recursive: true });
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`; // concurrent writers never share one
    writeFileSync(tmp, text, { mode: 0o640 });
    renameSync(tmp, path);
    return path;
  };
  return { passwd: write('passwd', passwordFile(store, post)), acl: write('acl', aclFile(post)) };
}
