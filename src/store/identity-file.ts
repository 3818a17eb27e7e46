/**
 * Where a gateway keeps its private keys: `<dataDir>/identity.json`, mode 0600, created on first
 * start. Kept outside the database on purpose: restoring a backup must not change who a gateway
 * is, and the database can be copied for analysis without its keys.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PoskoError } from '../domain/errors.ts';
import { identityFrom, newSecrets, type Identity, type IdentitySecrets, type Role } from '../sync/identity.ts';

export function identityPath(dataDir: string): string {
  return join(dataDir, 'identity.json');
}

/** The gateway's identity, created (and written) when there is none. */
export function loadIdentity(dataDir: string, id: string, role: Role): { identity: Identity; created: boolean } {
  const path = identityPath(dataDir);
  let created = false;
  if (!existsSync(path)) {
    try {
      writeFileSync(path, JSON.stringify({ version: 1, ...newSecrets() }) + '\n', { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  let secrets: IdentitySecrets;
  try {
    secrets = JSON.parse(readFileSync(path, 'utf8')) as IdentitySecrets;
    return { identity: identityFrom(id, role, secrets), created };
  } catch (e) {
    throw new PoskoError('STORAGE_UNAVAILABLE', `${path} is not a readable posko identity: ${(e as Error).message}`);
  }
}
