/**
 * The post directory, `shared/posts`: every enrolled gateway with its role and public key (and a
 * sync URL where it has one), written by HQ and carried by sync to every post, so that posts can
 * verify each other and sync directly. Pure: no I/O.
 */
import * as A from '@automerge/automerge';
import { POST_ID_RE } from '../domain/ids.ts';
import { isPublicKey, type PublicIdentity, type Role } from './identity.ts';

export const DIRECTORY_DOC = 'shared/posts';

interface DirectoryEntryDoc {
  role: A.ImmutableString;
  publicKey: A.ImmutableString;
  url?: A.ImmutableString;
  revoked?: boolean;
}

/** The directory document's shape. */
export interface DirectoryDoc {
  posts: Record<string, DirectoryEntryDoc>;
}

/** One gateway in the directory. */
export interface DirectoryEntry extends PublicIdentity {
  url: string | null;
  revoked: boolean;
}

/** The directory's first change, the same bytes wherever it is made (see `manifestRoot`). */
export function directoryRoot(hqPrefix: string): A.Doc<DirectoryDoc> {
  return A.change(A.init<DirectoryDoc>({ actor: (hqPrefix + '0'.repeat(16)) as A.ActorId }), { message: 'post directory', time: 0 }, (d) => {
    d.posts = {};
  });
}

/** Adds or replaces a gateway in the directory (or marks it revoked), in one change. */
export function enrollInDirectory(doc: A.Doc<DirectoryDoc>, e: DirectoryEntry): A.Doc<DirectoryDoc> {
  return A.change(doc, { message: `enroll ${e.id}` }, (d) => {
    d.posts ??= {};
    const entry: DirectoryEntryDoc = { role: new A.ImmutableString(e.role), publicKey: new A.ImmutableString(e.publicKey) };
    if (e.url) entry.url = new A.ImmutableString(e.url);
    if (e.revoked) entry.revoked = true;
    d.posts[e.id] = entry;
  });
}

/**
 * The valid entries of a directory document. A document from outside may hold anything: an entry
 * with a bad id, role or key is reported in `invalid` and never returned.
 */
export function directoryEntries(doc: A.Doc<DirectoryDoc>): { entries: DirectoryEntry[]; invalid: string[] } {
  const entries: DirectoryEntry[] = [];
  const invalid: string[] = [];
  const posts = (doc as { posts?: unknown }).posts;
  if (posts === undefined) return { entries, invalid };
  if (posts === null || typeof posts !== 'object') return { entries, invalid: ['posts is not a map'] };
  const str = (v: unknown) => (A.isImmutableString(v) ? v.toString() : typeof v === 'string' ? v : undefined);
  for (const [id, raw] of Object.entries(posts as Record<string, unknown>)) {
    const x = (raw ?? {}) as Record<string, unknown>;
    const role = str(x.role);
    const publicKey = str(x.publicKey);
    const url = x.url === undefined ? null : str(x.url);
    if (!POST_ID_RE.test(id) || (role !== 'post' && role !== 'hq') || !publicKey || !isPublicKey(publicKey) || url === undefined
      || (url !== null && !/^(https?|mqtts?):\/\/\S{1,500}$/.test(url))) {
      invalid.push(id);
      continue;
    }
    entries.push({ id, role: role as Role, publicKey, url, revoked: x.revoked === true });
  }
  return { entries, invalid };
}
