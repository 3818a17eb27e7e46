/**
 * Scans and status reports from devices over MQTT, whatever the broker: validates the payload,
 * records the scan through the group-commit queue and builds the ack. Bad input never throws: it
 * becomes a rejected ack with the same error codes as HTTP. Only a storage failure asks the
 * transport to withhold the MQTT acknowledgement, so the device sends the scan again later.
 */
import { DeviceScanSchema, DeviceStatusSchema, MAX_DEVICE_PAYLOAD, type DeviceAck } from '../domain/device-protocol.ts';
import { isPoskoError, PoskoError } from '../domain/errors.ts';
import { ScanInputSchema, type ScanInput } from '../domain/events.ts';
import { asDeviceId } from '../domain/ids.ts';
import type { Logger } from '../log.ts';
import type { Store } from '../store/store.ts';
import type { CommitQueue } from './commit-queue.ts';
import type { ScanResult } from './ingest.ts';

/** The outcome of one scan message. */
export interface ScanOutcome {
  ack: DeviceAck;
  /** True when nothing could be stored (disk full…): do not acknowledge the MQTT message. */
  retry: boolean;
}

function rejectedAck(seq: number | null, e: PoskoError): DeviceAck {
  return { seq, status: 'rejected', error: { code: e.code, message: e.message } };
}

/** Handles device messages for one gateway. */
export class DeviceMessages {
  constructor(
    private readonly store: Store,
    private readonly commits: CommitQueue,
    private readonly log: Logger,
    private readonly count: (kind: 'scan' | 'status', result: string) => void = () => {},
  ) {}

  /** Records a scan message from `device`; resolves after the commit with the ack to send. */
  async scan(deviceId: string, payload: Buffer): Promise<ScanOutcome> {
    const device = this.store.devices.get(deviceId);
    if (!device || device.revokedAt) {
      this.count('scan', 'rejected');
      return { ack: rejectedAck(null, new PoskoError('UNAUTHENTICATED', `unknown or revoked device ${deviceId}`)), retry: false };
    }
    let scan: ScanInput;
    let seq: number | null = null;
    try {
      ({ scan, seq } = this.toScan(payload, device.defaultAction));
    } catch (e) {
      if (!isPoskoError(e)) throw e;
      this.count('scan', 'rejected');
      this.log.info('device scan rejected', { device: deviceId, code: e.code, message: e.message });
      return { ack: rejectedAck((e as { seq?: number | null }).seq ?? null, e), retry: false };
    }
    let result: ScanResult;
    try {
      [result] = (await this.commits.submit([scan], { device: asDeviceId(deviceId) })) as [ScanResult];
    } catch (e) {
      if (isPoskoError(e) && e.status === 503) {
        this.count('scan', 'retry');
        return { ack: rejectedAck(seq, e), retry: true };
      }
      throw e;
    }
    this.count('scan', result.status);
    if (result.status === 'rejected') return { ack: { seq, status: 'rejected', error: { code: result.error.code, message: result.error.message } }, retry: false };
    const p = result.parcel;
    const ack: DeviceAck = { seq, status: result.status === 'created' ? 'accepted' : 'duplicate', event: result.event.id };
    if (p) ack.parcel = { id: p.id, status: p.status, qty: p.qty, location: p.location, item: p.item };
    return { ack, retry: false };
  }

  /** Records a status report or last will. Bad reports are logged and counted, never thrown. */
  status(deviceId: string, payload: Buffer): void {
    try {
      if (payload.byteLength > MAX_DEVICE_PAYLOAD) throw new PoskoError('PAYLOAD_TOO_LARGE', 'status too large');
      let raw: unknown;
      try { raw = JSON.parse(payload.toString('utf8')); } catch { throw new PoskoError('BAD_JSON', 'status is not JSON'); }
      const r = DeviceStatusSchema.safeParse(raw);
      if (!r.success) throw new PoskoError('VALIDATION', `invalid status: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      const { online, fw, battery, ...extra } = r.data;
      this.store.devices.setStatus(deviceId, { online, firmware: fw, battery, extra });
      this.count('status', 'accepted');
    } catch (e) {
      if (!isPoskoError(e)) throw e;
      this.count('status', 'rejected');
      this.log.info('device status rejected', { device: deviceId, code: e.code, message: e.message });
    }
  }

  /** A payload as a scan: JSON `{ seq, code, … }`, or a bare barcode (the device's default action). */
  private toScan(payload: Buffer, defaultAction: ScanInput['action']): { scan: ScanInput; seq: number | null } {
    if (payload.byteLength > MAX_DEVICE_PAYLOAD) throw new PoskoError('PAYLOAD_TOO_LARGE', `a scan message holds at most ${MAX_DEVICE_PAYLOAD} bytes`);
    const text = payload.toString('utf8');
    if (text.trimStart().startsWith('{')) {
      let raw: unknown;
      try { raw = JSON.parse(text); } catch (e) { throw new PoskoError('BAD_JSON', `the scan is not valid JSON: ${(e as Error).message}`); }
      const seqGuess = typeof (raw as { seq?: unknown }).seq === 'number' ? (raw as { seq: number }).seq : null;
      const r = DeviceScanSchema.safeParse(raw);
      if (!r.success) {
        const e = new PoskoError('VALIDATION', `invalid scan: ${r.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ')}`);
        throw Object.assign(e, { seq: seqGuess });
      }
      const { seq, ...rest } = r.data;
      return { scan: asScan({ ...rest, action: rest.action ?? defaultAction, id: `seq-${seq}` }, seq), seq };
    }
    const code = text.trim();
    if (code.length === 0) throw new PoskoError('VALIDATION', 'the scan is empty');
    if (code.length > 512) throw new PoskoError('VALIDATION', 'a barcode has at most 512 characters');
    return { scan: asScan({ code, action: defaultAction }, null), seq: null };
  }
}

/** Checks the scan against the same rules as HTTP scans (a dispatch needs a destination…). */
function asScan(candidate: unknown, seq: number | null): ScanInput {
  const r = ScanInputSchema.safeParse(candidate);
  if (r.success) return r.data;
  const e = new PoskoError('VALIDATION', `invalid scan: ${r.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ')}`);
  throw Object.assign(e, { seq });
}
