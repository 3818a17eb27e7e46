/**
 * Where a gateway keeps its private keys: `<dataDir>/identity.json`, mode 0600, created on first
 * start with the gateway's id and role. Kept outside the database on purpose: restoring a backup
 * must not change who a gateway is, and the database can be copied for analysis without its keys.
 * A data directory belongs to one gateway: opening it under another id or role is refused (its
 * events, documents and peers are that gateway's).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PoskoError } from '../domain/errors.ts';
import { identityFrom, newSecrets, type Identity, type IdentitySecrets, type Role } from '../sync/identity.ts';

interface IdentityFile extends IdentitySecrets {
  version: 1;
  id?: string;
  role?: Role;
}

export function identityPath(dataDir: string): string {
  return join(dataDir, 'identity.json');
}

/** The gateway's identity, created (and written) when there is none. */
export function loadIdentity(dataDir: string, id: string, role: Role): { identity: Identity; created: boolean } {
  const path = identityPath(dataDir);
  let created = false;
  if (!existsSync(path)) {
    try {
      writeFileSync(path, JSON.stringify({ version: 1, id, role, ...newSecrets() } satisfies IdentityFile) + '\n', { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  let file: IdentityFile;
  try {
    file = JSON.parse(readFileSync(path, 'utf8')) as IdentityFile;
  } catch (e) {
    throw new PoskoError('STORAGE_UNAVAILABLE', `${path} is not a readable posko identity: ${(e as Error).message}`);
  }
  if ((file.id !== undefined && file.id !== id) || (file.role !== undefined && file.role !== role)) {
    throw new PoskoError('VALIDATION', `the data directory ${dataDir} belongs to ${file.role ?? role} ${file.id ?? id}: use --post-id ${file.id ?? id} --role ${file.role ?? role} (or another --data-dir)`);
  }
  if (file.id === undefined || file.role === undefined) writeFileSync(path, JSON.stringify({ ...file, id, role }) + '\n', { mode: 0o600 });
  try {
    return { identity: identityFrom(id, role, file), created };
  } catch (e) {
    throw new PoskoError('STORAGE_UNAVAILABLE', `${path} is not a readable posko identity: ${(e as Error).message}`);
  }
}
