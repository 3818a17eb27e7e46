/**
 * Which documents exist, who may write each, and in which order they travel. Pure: no I/O.
 *
 *   ledger/<post>/<day>/<n>   a post's events (only that post writes)
 *   post/<post>               the post's manifest (only that post writes)
 *   requests/<post>           needs raised by a post (the post and HQ write)
 *   shared/<name>             catalog, post directory (HQ writes)
 */
import { createHash } from 'node:crypto';
import { POST_ID_RE } from '../domain/ids.ts';

/** Heads of every document, by id. */
export type DocHeads = Map<string, string[]>;

const DOC_ID_RE = /^(ledger\/[A-Z0-9][A-Z0-9-]{0,15}\/\d{4}-\d{2}-\d{2}\/\d{4}|post\/[A-Z0-9][A-Z0-9-]{0,15}|requests\/[A-Z0-9][A-Z0-9-]{0,15}|shared\/[a-z][a-z0-9-]{0,31})$/;
const HEAD_RE = /^[0-9a-f]{64}$/;

/** True for a well-formed document id. */
export function isDocId(id: string): boolean {
  return DOC_ID_RE.test(id);
}

/** True for a well-formed change hash. */
export function isHead(h: unknown): h is string {
  return typeof h === 'string' && HEAD_RE.test(h);
}

/** Who may write a document: the owning post, and HQ where it co-writes. */
export function writersOf(docId: string): { post?: string; hq: boolean } {
  const [kind, post] = docId.split('/');
  switch (kind) {
    case 'ledger':
    case 'post':
      return { post, hq: false };
    case 'requests':
      return { post, hq: true };
    default:
      return { hq: true };
  }
}

/** The post a ledger document belongs to, or undefined for other documents. */
export function ledgerPost(docId: string): string | undefined {
  const m = /^ledger\/([^/]+)\//.exec(docId);
  return m?.[1] && POST_ID_RE.test(m[1]) ? m[1] : undefined;
}

/**
 * Sort key for sending: requests first, then manifests and shared documents, then ledgers by day,
 * newest first (today's ledger before old history), newest segment first within a day.
 */
export function priorityOf(docId: string): string {
  const [kind, , day, n] = docId.split('/');
  switch (kind) {
    case 'requests': return `0 ${docId}`;
    case 'shared': return `1 ${docId}`;
    case 'post': return `2 ${docId}`;
    default: {
      // Invert day and segment so that the newest sort first.
      const inv = (s: string | undefined) => [...(s ?? '')].map((c) => (/\d/.test(c) ? String(9 - Number(c)) : c)).join('');
      return `3 ${inv(day)} ${inv(n)} ${docId}`;
    }
  }
}

/** Orders document ids by `priorityOf`. */
export function byPriority(ids: Iterable<string>): string[] {
  return [...ids].map((id) => [priorityOf(id), id] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, id]) => id);
}

/** True when two head sets are the same set. */
export function sameHeads(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  const s = new Set(x);
  return y.every((h) => s.has(h));
}

/**
 * A digest of a whole replica state (every document and its heads): equal digests mean equal
 * states. 16 bytes, hex. Documents with no heads do not count (an empty document is no document).
 */
export function digestOf(state: DocHeads): string {
  const h = createHash('sha256');
  for (const id of [...state.keys()].sort()) {
    const heads = state.get(id)!;
    if (heads.length === 0) continue;
    h.update(id).update('\0').update([...heads].sort().join(',')).update('\n');
  }
  return h.digest().subarray(0, 16).toString('hex');
}
