/**
 * Ingest: from a validated scan to a durable event. Parse the code, dedupe by idempotency key,
 * then one SQLite transaction records the events and updates the views; only after it commits
 * are results returned (and so acknowledged). A batch commits as one transaction: 100 scans cost
 * about one fsync.
 */
import { gs1ReferenceYear, parseBarcode, type ParsedCode } from '../domain/barcode.ts';
import { PoskoError, isPoskoError } from '../domain/errors.ts';
import { eventFingerprint, idempotencyKey, scanFingerprint, type PoskoEvent, type ScanInput } from '../domain/events.ts';
import { encodeHlc, type HybridClock } from '../domain/hlc.ts';
import { asDeviceId, asEventId, type DeviceId, type PostId } from '../domain/ids.ts';
import { parcelIdentity } from '../domain/parcel-state.ts';
import { storageError } from '../store/db.ts';
import { parcelJson, type ParcelJson } from '../store/queries.ts';
import type { Store } from '../store/store.ts';

/** What happened to one scan. */
export type ScanResult =
  | { status: 'created' | 'duplicate'; event: PoskoEvent; parsed: ParsedCode | null; parcel: ParcelJson | null }
  | { status: 'rejected'; error: { code: string; message: string; details?: Record<string, unknown> } };

/** Who sent the scans. */
export interface IngestContext {
  /** The device, when authenticated as one (its id overrides the scan's `device` field). */
  device: DeviceId | null;
}

/** Dependencies of the ingest pipeline. */
export interface IngestDeps {
  store: Store;
  clock: HybridClock;
  post: PostId;
  /** A fresh globally unique id (crypto.randomUUID in production). */
  newId: () => string;
  /** Called after each commit with the number of new events. */
  onCommit?: (created: number) => void;
}

interface Prepared {
  scan: ScanInput;
  key: string;
  device: DeviceId | null;
  parsed: ParsedCode | null;
}

/** The ingest pipeline of one gateway. */
export class Ingest {
  constructor(private readonly deps: IngestDeps) {}

  /**
   * Records scans. Returns one result per scan, in order. Every 'created' or 'duplicate' result is
   * durable (committed with synchronous=FULL) before this returns. A scan whose code or reference
   * is invalid is 'rejected' and changes nothing; the others still commit. Throws STORAGE_FULL or
   * STORAGE_UNAVAILABLE when nothing could be committed.
   */
  ingest(scans: readonly ScanInput[], ctx: IngestContext): ScanResult[] {
    return this.ingestGroups([{ scans, ctx }])[0]!;
  }

  /**
   * Records several submissions (each with its own sender) in one transaction: group commit, one
   * fsync for all. Returns the results per submission, in order. Same guarantees as `ingest`.
   */
  ingestGroups(groups: readonly { scans: readonly ScanInput[]; ctx: IngestContext }[]): ScanResult[][] {
    const { store, clock, post } = this.deps;
    const referenceYear = gs1ReferenceYear(clock);
    const prepared: (Prepared | ScanResult)[] = [];
    for (const { scans, ctx } of groups) {
      for (const scan of scans) {
        try {
          const device = ctx.device ?? (scan.device ? asDeviceId(scan.device) : null);
          const parsed = scan.code === undefined ? null : parseBarcode(scan.code, { referenceYear });
          const key = idempotencyKey(post, device, scan.id ?? this.deps.newId());
          prepared.push({ scan, key, device, parsed });
        } catch (e) {
          prepared.push(rejected(e));
        }
      }
    }

    const run = store.db.transaction((): ScanResult[] => {
      const inserted: PoskoEvent[] = [];
      const out: (ScanResult | { pending: PoskoEvent; parsed: ParsedCode | null; created: boolean })[] = [];
      for (const p of prepared) {
        if ('status' in p) { out.push(p); continue; }
        const existing = store.views.eventByKey(p.key);
        if (existing) {
          if (eventFingerprint(existing) !== scanFingerprint(p.scan)) {
            out.push(rejected(new PoskoError('IDEMPOTENCY_CONFLICT', `id ${p.scan.id} was already used for a different scan`, { event: existing.id })));
          } else out.push({ pending: existing, parsed: p.parsed, created: false });
          continue;
        }
        let parcel;
        if (p.scan.action === 'void') {
          const target = store.views.eventById(p.scan.voids!);
          if (!target) { out.push(rejected(new PoskoError('NOT_FOUND', `no event ${p.scan.voids} to void`))); continue; }
          if (target.kind === 'void') { out.push(rejected(new PoskoError('CONFLICT', 'a void cannot be voided; record the scan again instead'))); continue; }
          parcel = target.parcel;
        } else {
          parcel = parcelIdentity(p.parsed!).id;
        }
        const ais = p.parsed?.ais ?? {};
        const event: PoskoEvent = {
          id: asEventId(this.deps.newId()), kind: p.scan.action, key: p.key, post, device: p.device,
          operator: p.scan.operator ?? null, code: p.scan.code ?? '',
          parsed: p.parsed ? { kind: p.parsed.kind, ais: p.parsed.ais } : null, parcel,
          item: p.scan.item ?? null, qty: p.scan.qty ?? null, unit: p.scan.unit ?? null, org: p.scan.org ?? null,
          dest: p.scan.to ?? null, batch: ais['10'] ?? null, expiry: p.parsed?.expiry ?? null,
          deviceAt: p.scan.at ?? null, hlc: encodeHlc(clock.now()), voids: p.scan.voids ? asEventId(p.scan.voids) : null,
          reason: p.scan.reason ?? null,
        };
        store.views.insertEvent(event);
        inserted.push(event);
        out.push({ pending: event, parsed: p.parsed, created: true });
      }
      const parcels = store.views.applyEvents(inserted);
      // Devices heard from: in this transaction, so it costs no fsync of its own.
      const scanned = new Set(inserted.map((e) => e.device));
      for (const device of new Set(groups.map((g) => g.ctx.device))) if (device) store.devices.touch(device, scanned.has(device));
      return out.map((o) => {
        if ('status' in o) return o;
        const row = parcels.has(o.pending.parcel) ? parcels.get(o.pending.parcel) : store.views.parcel(o.pending.parcel);
        return { status: o.created ? 'created' : 'duplicate', event: o.pending, parsed: o.parsed, parcel: row ? parcelJson(row) : null };
      });
    });

    let results: ScanResult[];
    try {
      results = run.immediate();
    } catch (e) {
      throw storageError(e);
    }
    const created = results.filter((r) => r.status === 'created').length;
    if (created > 0) this.deps.onCommit?.(created);
    const out: ScanResult[][] = [];
    let i = 0;
    for (const g of groups) {
      out.push(results.slice(i, i + g.scans.length));
      i += g.scans.length;
    }
    return out;
  }
}

function rejected(e: unknown): ScanResult {
  if (isPoskoError(e)) return { status: 'rejected', error: e.toJSON() };
  throw e;
}
