/**
 * The post manifest, `post/<post>`: a post's profile and the list of its ledger segments with
 * their heads, event counts and whether they are sealed (a past day, or full: never written
 * again). Only the post writes it; it travels with the ledgers, so HQ can tell whether it holds
 * everything a post had when it last synced. Pure: no I/O.
 */
import * as A from '@automerge/automerge';

export function manifestId(post: string): string {
  return `post/${post}`;
}

/** One ledger segment as the manifest lists it. */
export interface ManifestLedger {
  events: number;
  heads: string[];
  sealed: boolean;
}

/** The manifest's shape. */
export interface ManifestDoc {
  post: A.ImmutableString;
  role: A.ImmutableString;
  /** Segment id → what it holds. */
  ledgers: Record<string, { events: number; heads: A.ImmutableString; sealed: boolean }>;
}

/**
 * A manifest's first change, the same bytes wherever and whenever it is made (fixed actor under
 * the owner's prefix, time 0): a post restored from a backup without its manifest makes the very
 * same first change again, so its manifest never forks into two roots that would hide each
 * other's `ledgers` map.
 */
export function manifestRoot(ownerPrefix: string, post: string, role: string): A.Doc<ManifestDoc> {
  return A.change(A.init<ManifestDoc>({ actor: (ownerPrefix + '0'.repeat(16)) as A.ActorId }), { message: `manifest ${post}`, time: 0 }, (d) => {
    d.post = new A.ImmutableString(post);
    d.role = new A.ImmutableString(role);
    d.ledgers = {};
  });
}

/**
 * Brings a manifest up to date with the ledgers (one change, only for what differs); returns the
 * same document when nothing changed.
 */
export function updateManifest(doc: A.Doc<ManifestDoc>, post: string, role: string, ledgers: ReadonlyMap<string, ManifestLedger>): A.Doc<ManifestDoc> {
  const stale = [...ledgers].filter(([id, l]) => {
    const cur = doc.ledgers?.[id];
    return !cur || cur.events !== l.events || cur.sealed !== l.sealed || cur.heads.toString() !== [...l.heads].sort().join(',');
  });
  if (stale.length === 0 && doc.post !== undefined) return doc;
  return A.change(doc, { message: `manifest ${post}` }, (d) => {
    if (d.post === undefined) {
      d.post = new A.ImmutableString(post);
      d.role = new A.ImmutableString(role);
      d.ledgers = {};
    }
    for (const [id, l] of stale) d.ledgers[id] = { events: l.events, heads: new A.ImmutableString([...l.heads].sort().join(',')), sealed: l.sealed };
  });
}

/** The ledgers a manifest lists (invalid entries skipped). */
export function manifestLedgers(doc: A.Doc<ManifestDoc>): Map<string, ManifestLedger> {
  const out = new Map<string, ManifestLedger>();
  const ledgers = (doc as { ledgers?: unknown }).ledgers;
  if (ledgers === null || typeof ledgers !== 'object') return out;
  for (const [id, raw] of Object.entries(ledgers as Record<string, unknown>)) {
    const x = raw as { events?: unknown; heads?: unknown; sealed?: unknown } | null;
    if (!x || typeof x.events !== 'number' || !A.isImmutableString(x.heads) || typeof x.sealed !== 'boolean') continue;
    out.set(id, { events: x.events, heads: x.heads.toString().split(',').filter(Boolean), sealed: x.sealed });
  }
  return out;
}
