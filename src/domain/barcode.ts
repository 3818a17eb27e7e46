/**
 * The one entry point for every scanned code that reaches posko: `parseBarcode` recognises what
 * a scanner (camera, keyboard-wedge or serial) sent and returns a ParsedCode of kind
 *
 * - 'gs1'    GS1 element strings (with AIM symbology identifier ]C1 ]d2 ]Q3 ]e0 ]J1, with GS
 *            separators, bracketed `(01)...` text, a GS1 Digital Link URI, or a bare digit
 *            string that parses completely as a valid AI sequence holding a GS1 key such as
 *            (00), (01) or (02));
 * - 'ean' / 'upc'  EAN-13, EAN-8, UPC-A (12 digits) and bare GTIN-14 (ITF-14), check digit
 *            verified, the GTIN-14 under AI '01';
 * - 'label'  the post's own QR label `PSK1:<post>:<serial>`;
 * - 'opaque' anything else, accepted as is (non-GS1 URLs, free text, internal numbers).
 *
 * Normalising is deliberately small: leading whitespace and trailing whitespace / CR / LF / GS
 * (what keyboard-wedge scanners append) are removed; nothing else is stripped or rewritten, and
 * `raw` always keeps the code exactly as received. Control characters are only meaningful as
 * the GS separator of GS1 data (plus the ISO/IEC 15434 format-05 envelope, which is unwrapped);
 * anywhere else in GS1 data they are rejected, in opaque codes they are kept.
 *
 * Pure: no I/O, no wall clock. Two-digit years are resolved against `opts.referenceYear`
 * (pass the gateway's HLC-derived UTC year; default 2026).
 */

import { PoskoError } from './errors.ts';
import { hasValidGs1CheckDigit, gs1CheckDigit } from './check-digit.ts';
import {
  DEFAULT_REFERENCE_YEAR,
  GS,
  gs1DateToIso,
  isGs1KeyAi,
  isHttpUri,
  looksBracketed,
  parseBracketed,
  parseDigitalLink,
  parseElementString,
  resolveReferenceYear,
  type Gs1Data,
  type Gs1Options,
} from './gs1.ts';

/** What kind of code a scan turned out to be. */
export type BarcodeKind = 'gs1' | 'ean' | 'upc' | 'label' | 'opaque';

/** A non-fatal finding about a scan, e.g. a GS1 requisite or exclusion rule that is broken. */
export interface BarcodeWarning {
  code: 'GS1_REQUISITE' | 'GS1_EXCLUSION' | string;
  message: string;
}

/** A scanned code, recognised and (for GS1 and EAN/UPC) validated. */
export interface ParsedCode {
  kind: BarcodeKind;
  /** The code as received (before normalising). */
  raw: string;
  /** AIM symbology identifier when present, e.g. ']C1'. */
  symbology?: string;
  /** GS1 AI -> raw value string, leading zeros kept; EAN/UPC put their GTIN-14 under '01'. Empty for label/opaque. */
  ais: Record<string, string>;
  /** ISO date 'YYYY-MM-DD' from (17); day 00 means the last day of the month. */
  expiry?: string;
  /** From (00). */
  sscc?: string;
  /** From (01), else (02). */
  gtin?: string;
  /** From (21). */
  serial?: string;
  /** From (10). */
  batch?: string;
  /** From (37). */
  count?: number;
  /** From (30). */
  quantity?: number;
  /** The post's own label. */
  label?: { post: string; serial: string };
  warnings: BarcodeWarning[];
}

/** Options for parseBarcode. */
export type ParseBarcodeOptions = Gs1Options;

/** AIM symbology identifiers whose data is always a GS1 element string. */
const GS1_SYMBOLOGIES = new Set([']C1', ']d2', ']Q3', ']e0', ']J1']);

const AIM_RE = /^\][A-Za-z][0-9A-Za-z]/;
const LABEL_RE = /^PSK1:([A-Z0-9-]{1,16}):([A-Z0-9-]{1,32})$/i;
const POST_RE = /^[A-Z0-9-]{1,16}$/;
const SERIAL_RE = /^[A-Z0-9-]{1,32}$/;
/** ISO/IEC 15434 envelope, format 05 (GS1 data): `[)>` RS `05` GS ... RS EOT. */
const ISO15434_05_RE = /^\[\)>\x1e05\x1d([\s\S]*?)\x1e?\x04?$/;

/**
 * Builds the payload of the post's own QR label: `PSK1:<POST>:<SERIAL>`. Post is 1-16 and
 * serial 1-32 characters of A-Z, 0-9 and '-' (lower case is accepted and upper-cased). Throws
 * PoskoError('VALIDATION') otherwise.
 */
export function labelPayload(post: string, serial: string): string {
  const p = post.trim().toUpperCase();
  const s = serial.trim().toUpperCase();
  if (!POST_RE.test(p)) {
    throw new PoskoError('VALIDATION', `label post must be 1-16 characters A-Z, 0-9 or '-', got '${post}'`, {
      post,
    });
  }
  if (!SERIAL_RE.test(s)) {
    throw new PoskoError('VALIDATION', `label serial must be 1-32 characters A-Z, 0-9 or '-', got '${serial}'`, {
      serial,
    });
  }
  return `PSK1:${p}:${s}`;
}

/**
 * Recognises and validates one scanned code. Throws PoskoError on invalid GS1 data (GS1_* codes),
 * a wrong EAN/UPC/GTIN-14 check digit (EAN_CHECK_DIGIT), an empty code, a malformed `PSK1:` label,
 * or a GS1 AI repeated with different values (all three VALIDATION).
 *
 * Decision order after normalising: AIM identifier (GS1 ones force GS1 parsing, others are
 * recorded and their data dispatched as below) -> ISO/IEC 15434 format 05 -> contains GS ->
 * bracketed `(AI)` with a known first AI -> `PSK1:` label -> http(s) URI (GS1 Digital Link if a
 * primary key is in the path, else opaque) -> all digits: exactly 8/12/13/14 digits are
 * EAN-8/UPC-A/EAN-13/GTIN-14, other lengths are GS1 only if they parse completely and hold a
 * GS1 key AI (else opaque) -> opaque.
 */
export function parseBarcode(code: string, opts?: ParseBarcodeOptions): ParsedCode {
  if (typeof code !== 'string') {
    throw new PoskoError('VALIDATION', 'code must be a string', { code });
  }
  resolveReferenceYear(opts); // reject a bad option here, not silently in the bare-digit fallback
  const raw = code;
  let text = code.replace(/^\s+/, '').replace(/[\s\x1d]+$/, '');
  if (text === '') throw new PoskoError('VALIDATION', 'code is empty');

  let symbology: string | undefined;
  if (AIM_RE.test(text)) {
    symbology = text.slice(0, 3);
    text = text.slice(3);
    if (text.replace(/\x1d/g, '') === '') {
      throw new PoskoError('VALIDATION', 'code is empty', { symbology });
    }
    if (GS1_SYMBOLOGIES.has(symbology)) {
      const data = looksBracketed(text) ? parseBracketed(text, opts) : parseElementString(text, opts);
      return fromGs1(raw, symbology, data, opts);
    }
  }

  const envelope = ISO15434_05_RE.exec(text);
  if (envelope) return fromGs1(raw, symbology, parseElementString(envelope[1] ?? '', opts), opts);

  if (text.includes(GS)) {
    if (text.replace(/\x1d/g, '') === '') throw new PoskoError('VALIDATION', 'code is empty');
    return fromGs1(raw, symbology, parseElementString(text, opts), opts);
  }

  if (looksBracketed(text)) return fromGs1(raw, symbology, parseBracketed(text, opts), opts);

  if (/^PSK1:/i.test(text)) return fromLabel(raw, symbology, text);

  if (isHttpUri(text)) {
    const dl = parseDigitalLink(text, opts);
    return dl ? fromGs1(raw, symbology, dl, opts) : opaque(raw, symbology);
  }

  // Digits from a scanner that named a non-EAN symbology (]C0 Code 128, ]A0 Code 39, ]Q1 QR…)
  // are that symbology's data, not an EAN: keep them opaque rather than check them as one.
  if (/^\d+$/.test(text) && (symbology === undefined || /^\][EI]/.test(symbology))) {
    if ([8, 12, 13, 14].includes(text.length)) return fromEan(raw, symbology, text);
    // Keyboard-wedge GS1 (no symbology identifier, GS separators often lost): GS1 only when the
    // digits parse completely and carry a GS1 key, so that plain numbers (IDs, phone numbers,
    // "987654" = AI 98 internal data) stay opaque instead of being rejected or misread.
    let data: Gs1Data;
    try {
      data = parseElementString(text, opts);
    } catch {
      return opaque(raw, symbology);
    }
    return Object.keys(data.ais).some(isGs1KeyAi) ? fromGs1(raw, symbology, data, opts) : opaque(raw, symbology);
  }

  return opaque(raw, symbology);
}

function base(kind: BarcodeKind, raw: string, symbology: string | undefined): ParsedCode {
  const out: ParsedCode = { kind, raw, ais: {}, warnings: [] };
  if (symbology !== undefined) out.symbology = symbology;
  return out;
}

function opaque(raw: string, symbology: string | undefined): ParsedCode {
  return base('opaque', raw, symbology);
}

function fromLabel(raw: string, symbology: string | undefined, text: string): ParsedCode {
  const m = LABEL_RE.exec(text);
  if (!m) {
    throw new PoskoError(
      'VALIDATION',
      `malformed posko label '${text}': expected PSK1:<post>:<serial> with post 1-16 and serial 1-32 characters A-Z, 0-9 or '-'`,
      { value: text },
    );
  }
  const out = base('label', raw, symbology);
  out.label = { post: (m[1] ?? '').toUpperCase(), serial: (m[2] ?? '').toUpperCase() };
  return out;
}

function fromEan(raw: string, symbology: string | undefined, digits: string): ParsedCode {
  const name =
    digits.length === 8 ? 'EAN-8' : digits.length === 12 ? 'UPC-A' : digits.length === 13 ? 'EAN-13' : 'GTIN-14';
  if (!hasValidGs1CheckDigit(digits)) {
    const expected = gs1CheckDigit(digits.slice(0, -1));
    throw new PoskoError(
      'EAN_CHECK_DIGIT',
      `${name} '${digits}' has a wrong check digit: expected ${expected}, got ${digits.slice(-1)}`,
      { value: digits, symbology: name, expected },
    );
  }
  const out = base(digits.length === 12 ? 'upc' : 'ean', raw, symbology);
  const gtin = digits.padStart(14, '0');
  out.ais = { '01': gtin };
  out.gtin = gtin;
  return out;
}

function fromGs1(raw: string, symbology: string | undefined, data: Gs1Data, opts: Gs1Options | undefined): ParsedCode {
  const out = base('gs1', raw, symbology);
  out.ais = data.ais;
  out.warnings = data.warnings;
  const { ais } = data;
  if (ais['17'] !== undefined) out.expiry = gs1DateToIso(ais['17'], opts, '17');
  if (ais['00'] !== undefined) out.sscc = ais['00'];
  const gtin = ais['01'] ?? ais['02'];
  if (gtin !== undefined) out.gtin = gtin;
  if (ais['21'] !== undefined) out.serial = ais['21'];
  if (ais['10'] !== undefined) out.batch = ais['10'];
  if (ais['37'] !== undefined) out.count = Number(ais['37']);
  if (ais['30'] !== undefined) out.quantity = Number(ais['30']);
  return out;
}

/**
 * The reference year for GS1's two-digit-year window: the year of the gateway's clock (its HLC,
 * which never runs backwards), but never earlier than the default: a Pi that woke up in 1970 after
 * a power cut must not read expiry "25" as 1925.
 */
export function gs1ReferenceYear(clock: { currentWall(): number }): number {
  return Math.max(new Date(clock.currentWall()).getUTCFullYear(), DEFAULT_REFERENCE_YEAR);
}
