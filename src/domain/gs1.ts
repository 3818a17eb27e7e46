/**
 * GS1 element-string parsing for posko's scan intake: turns what a scanner sends for a GS1
 * symbol (GS1-128, GS1 DataMatrix, GS1 QR, GS1 DataBar, DotCode) into a map of Application
 * Identifier (AI) -> value, validated against the GS1 Barcode Syntax Dictionary
 * (`gs1-ai-table.json`). Three textual forms are understood:
 *
 * - element strings: `01095060001343521725123110ABC` with ASCII 29 (GS) as the FNC1 separator
 *   after variable-length values (a leading GS, i.e. FNC1 in first position, is accepted);
 * - bracketed human-readable text: `(01)09506000134352(17)251231(10)ABC` (a literal `(` inside a
 *   value may be escaped as `\(`);
 * - GS1 Digital Link URIs: `https://id.example.org/01/09506000134352/10/ABC?17=251231`.
 *
 * Validation follows the dictionary: AI lookup (longest known AI of 2-4 digits), fixed and
 * variable lengths, per-component character sets (N digits, X = CSET 82, Y = CSET 39,
 * Z = CSET 64) and the reference "linters" (check digits, dates, times, ...). Violations throw
 * a PoskoError with one of the stable GS1_* codes and `details: { ai, value, ... }`; broken
 * association rules (`req=` requisites, `ex=` mutual exclusions) are reported as warnings, not
 * errors, because GS1 evaluates them over all the barcodes on an item, not one symbol.
 *
 * Pure: no I/O and no wall clock. The two-digit-year century window (GS1 General
 * Specifications 7.12: YY maps into referenceYear-49 .. referenceYear+50) needs a reference
 * year; callers pass the gateway's HLC-derived UTC year as `opts.referenceYear`, and
 * DEFAULT_REFERENCE_YEAR (2026) applies when they do not.
 *
 * Linters implemented: csum, csumalpha, iban, yymmd0, yymmdd, yyyymmdd, hhmi, hh, mi, ss,
 * zero, nonzero, yesno, winding, iso5218, hyphen, pieceoftotal, posinseqslash, nozeroprefix,
 * hasnondigit, pcenc, importeridx, latitude, longitude. Not checked (they need external code
 * lists or a GS1 Company Prefix database): gcppos1, gcppos2, key, iso3166, iso3166999,
 * iso3166alpha2, iso3166list, iso4217, packagetype, mediatype, couponcode, couponposoffer.
 */

import table from './gs1-ai-table.json' with { type: 'json' };
import { PoskoError, type ErrorCode } from './errors.ts';
import {
  gs1CheckDigit,
  hasValidCheckCharacterPair,
  hasValidGs1CheckDigit,
  hasValidIbanChecksum,
} from './check-digit.ts';

/** The reference year used for the YYMMDD century window when the caller passes none. */
export const DEFAULT_REFERENCE_YEAR = 2026;

/** ASCII 29, Group Separator: how scanners transmit FNC1 used as a field separator. */
export const GS = '\x1d';

/** Options shared by all GS1 parsing entry points. */
export interface Gs1Options {
  /**
   * The year YYMMDD dates are interpreted against (GS1 century window: referenceYear-49 ..
   * referenceYear+50). Pass the gateway's HLC-derived UTC year; defaults to 2026.
   */
  referenceYear?: number;
}

/** A non-fatal finding, e.g. a broken requisite or exclusion rule. */
export interface Gs1Warning {
  code: string;
  message: string;
}

/** The result of parsing GS1 data: AI -> raw value (in order of appearance) and warnings. */
export interface Gs1Data {
  ais: Record<string, string>;
  warnings: Gs1Warning[];
}

/** One component of an AI's data field, e.g. `N13,csum` or `[X..17]`. */
export interface AiComponent {
  /** N: digits; X: GS1 CSET 82; Y: GS1 CSET 39; Z: GS1 CSET 64 (URI-safe base64). */
  readonly charset: 'N' | 'X' | 'Y' | 'Z';
  readonly min: number;
  readonly max: number;
  /** Optional final component (`[...]` in the dictionary). */
  readonly optional: boolean;
  readonly linters: readonly string[];
}

/** One AI as described by the GS1 Syntax Dictionary (ranges are expanded to single AIs). */
export interface AiDefinition {
  readonly ai: string;
  readonly title: string;
  /** False for the predefined-length AIs that are never followed by an FNC1 separator. */
  readonly fnc1Required: boolean;
  /** Whether the AI may appear as a data attribute (query parameter) of a Digital Link URI. */
  readonly dlAttr: boolean;
  readonly components: readonly AiComponent[];
  readonly minLength: number;
  readonly maxLength: number;
  /** Total length when every component is mandatory and fixed-length; otherwise undefined. */
  readonly fixedLength: number | undefined;
  /** Each clause must be met; a clause is met by any alternative; an alternative lists AI patterns that must all be present (`n` = any digit). */
  readonly requisites: readonly (readonly (readonly string[])[])[];
  /** AI patterns (`n` = any digit) that must not appear together with this AI. */
  readonly exclusions: readonly string[];
  /** For Digital Link primary keys: the permitted ordered qualifier sequences; otherwise undefined. */
  readonly dlQualifiers: readonly (readonly string[])[] | undefined;
}

// ---------------------------------------------------------------------------------------------
// The AI table
// ---------------------------------------------------------------------------------------------

const COMPONENT_RE = /^(\[)?([NXYZ])(\d*)(?:\.\.(\d+))?(\])?$/;

function parseSpec(ai: string, spec: string): AiComponent[] {
  return spec
    .trim()
    .split(/\s+/)
    .map((token) => {
      const [typePart = '', ...linters] = token.split(',');
      const m = COMPONENT_RE.exec(typePart);
      if (!m || (m[3] === '' && m[4] === undefined)) {
        throw new Error(`gs1-ai-table.json: cannot read spec '${spec}' of AI ${ai}`);
      }
      const variable = m[4] !== undefined;
      const min = variable ? (m[3] ? Number(m[3]) : 1) : Number(m[3]);
      const max = variable ? Number(m[4]) : min;
      return {
        charset: m[2] as AiComponent['charset'],
        min,
        max,
        optional: m[1] === '[',
        linters,
      };
    });
}

function expandAiRange(ai: string): string[] {
  const m = /^(\d+)-(\d+)$/.exec(ai);
  if (!m) return [ai];
  const [, from = '', to = ''] = m;
  const out: string[] = [];
  for (let n = Number(from); n <= Number(to); n++) out.push(String(n).padStart(from.length, '0'));
  return out;
}

function buildTable(): ReadonlyMap<string, AiDefinition> {
  const map = new Map<string, AiDefinition>();
  for (const entry of table.entries) {
    const components = parseSpec(entry.ai, entry.spec);
    const requisites: string[][][] = [];
    const exclusions: string[] = [];
    let dlQualifiers: string[][] | undefined;
    for (const attr of entry.attrs.split(/\s+/).filter(Boolean)) {
      if (attr.startsWith('req=')) requisites.push(attr.slice(4).split(',').map((alt) => alt.split('+')));
      else if (attr.startsWith('ex=')) exclusions.push(...attr.slice(3).split(','));
      else if (attr === 'dlpkey') dlQualifiers = [[]];
      else if (attr.startsWith('dlpkey=')) dlQualifiers = attr.slice(7).split('|').map((seq) => seq.split(','));
    }
    const minLength = components.reduce((n, c) => n + (c.optional ? 0 : c.min), 0);
    const maxLength = components.reduce((n, c) => n + c.max, 0);
    const fixed = components.every((c) => !c.optional && c.min === c.max);
    for (const ai of expandAiRange(entry.ai)) {
      map.set(ai, {
        ai,
        title: entry.title,
        fnc1Required: !entry.fnc1_not_required,
        dlAttr: entry.dl_attr,
        components,
        minLength,
        maxLength,
        fixedLength: fixed ? maxLength : undefined,
        requisites,
        exclusions,
        dlQualifiers,
      });
    }
  }
  return map;
}

const AI_TABLE = buildTable();

/** The dictionary entry for exactly this AI (e.g. '01', '3103', '8006'), or undefined. */
export function lookupAi(ai: string): AiDefinition | undefined {
  return AI_TABLE.get(ai);
}

/**
 * The longest known AI (4, 3 or 2 digits) at `pos` of `data`, or undefined when none matches.
 * GS1 AIs are prefix-free, so at most one length can match.
 */
export function matchAiAt(data: string, pos = 0): AiDefinition | undefined {
  for (const len of [4, 3, 2]) {
    const candidate = data.slice(pos, pos + len);
    if (candidate.length !== len || !/^\d+$/.test(candidate)) continue;
    const def = AI_TABLE.get(candidate);
    if (def) return def;
  }
  return undefined;
}

/**
 * True for AIs that identify something on their own: the GS1 Digital Link primary keys (SSCC,
 * GTIN, GLN, GRAI, GIAI, ...) and (02), the GTIN of contained trade items.
 */
export function isGs1KeyAi(ai: string): boolean {
  return ai === '02' || lookupAi(ai)?.dlQualifiers !== undefined;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

function label(def: AiDefinition): string {
  return def.title ? `AI (${def.ai}) ${def.title}` : `AI (${def.ai})`;
}

function gs1Error(
  code: ErrorCode,
  def: AiDefinition,
  value: string,
  reason: string,
  extra?: Record<string, unknown>,
): PoskoError {
  return new PoskoError(code, `${label(def)}: ${reason}`, { ai: def.ai, value, ...extra });
}

function unknownAiError(ai: string, value: string, where: string): PoskoError {
  return new PoskoError(
    'GS1_UNKNOWN_AI',
    `Unknown GS1 Application Identifier '${ai}' ${where}`,
    { ai, value },
  );
}

function emptyValueError(def: AiDefinition): PoskoError {
  return gs1Error('GS1_EMPTY_VALUE', def, '', 'the value is empty');
}

function badLengthError(def: AiDefinition, value: string): PoskoError {
  const expected =
    def.minLength === def.maxLength
      ? `exactly ${def.maxLength}`
      : `${def.minLength} to ${def.maxLength}`;
  return gs1Error(
    'GS1_BAD_LENGTH',
    def,
    value,
    `value '${value}' has ${value.length} character${value.length === 1 ? '' : 's'}; expected ${expected}`,
    { min: def.minLength, max: def.maxLength, length: value.length },
  );
}

// ---------------------------------------------------------------------------------------------
// Character sets
// ---------------------------------------------------------------------------------------------

const CSET82_RE = /^[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]$/;
const CSET39_RE = /^[#\-/0-9A-Z]$/;
const CSET64_RE = /^[A-Za-z0-9\-_]$/;

const CHARSET_NAME: Record<AiComponent['charset'], string> = {
  N: 'digits only',
  X: 'GS1 character set 82',
  Y: 'GS1 character set 39',
  Z: 'GS1 character set 64',
};

function showChar(ch: string): string {
  const code = ch.charCodeAt(0);
  return code < 32 || code === 127 ? `\\x${code.toString(16).padStart(2, '0')}` : ch;
}

/** Position (within `text`) of the first character outside the component's set, or -1. */
function firstBadChar(charset: AiComponent['charset'], text: string): number {
  if (charset === 'Z') {
    // CSET 64 with optional '=' padding (at most two, total length a multiple of 3).
    const body = text.replace(/=+$/, '');
    const pads = text.length - body.length;
    for (let i = 0; i < body.length; i++) if (!CSET64_RE.test(body.charAt(i))) return i;
    if (pads > 2 || (pads > 0 && text.length % 3 !== 0)) return body.length;
    return -1;
  }
  const re = charset === 'N' ? /^[0-9]$/ : charset === 'X' ? CSET82_RE : CSET39_RE;
  for (let i = 0; i < text.length; i++) if (!re.test(text.charAt(i))) return i;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * The reference year to use for `opts`: `opts.referenceYear` when given (must be an integer
 * 100..9999, else PoskoError VALIDATION), otherwise DEFAULT_REFERENCE_YEAR.
 */
export function resolveReferenceYear(opts: Gs1Options | undefined): number {
  const y = opts?.referenceYear;
  if (y === undefined) return DEFAULT_REFERENCE_YEAR;
  if (!Number.isInteger(y) || y < 100 || y > 9999) {
    throw new PoskoError('VALIDATION', `referenceYear must be an integer year, got ${String(y)}`, {
      referenceYear: y,
    });
  }
  return y;
}

/**
 * The four-digit year for a two-digit GS1 year, per GS1 General Specifications 7.12: the
 * result lies in referenceYear-49 .. referenceYear+50.
 */
export function resolveCentury(yy: number, referenceYear: number): number {
  const cy = referenceYear % 100;
  const century = referenceYear - cy;
  const diff = yy - cy;
  if (diff >= 51) return century - 100 + yy;
  if (diff <= -50) return century + 100 + yy;
  return century + yy;
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** Validates year/month/day; returns the ISO date or a reason string. Day 00 = last day when allowed. */
function checkDate(
  year: number,
  month: number,
  day: number,
  allowDayZero: boolean,
): { iso: string } | { reason: string } {
  if (month < 1 || month > 12) return { reason: `month ${pad2(month)} does not exist` };
  const last = daysInMonth(year, month);
  if (day === 0) {
    if (!allowDayZero) return { reason: 'day 00 is not allowed here' };
    return { iso: `${year}-${pad2(month)}-${pad2(last)}` };
  }
  if (day > last) return { reason: `day ${pad2(day)} does not exist in ${year}-${pad2(month)}` };
  return { iso: `${year}-${pad2(month)}-${pad2(day)}` };
}

function decodeYymmdd(text: string, allowDayZero: boolean, referenceYear: number) {
  if (!/^\d{6}$/.test(text)) return { reason: 'a date must be 6 digits YYMMDD' };
  const year = resolveCentury(Number(text.slice(0, 2)), referenceYear);
  return checkDate(year, Number(text.slice(2, 4)), Number(text.slice(4, 6)), allowDayZero);
}

/**
 * Converts a GS1 YYMMDD date (day 00 allowed, meaning the last day of the month) to an ISO
 * `YYYY-MM-DD` string using the century window around `opts.referenceYear`. Throws
 * GS1_INVALID_DATE (reported against `ai`, default '17') when the date does not exist.
 */
export function gs1DateToIso(yymmdd: string, opts?: Gs1Options, ai = '17'): string {
  const result = decodeYymmdd(yymmdd, true, resolveReferenceYear(opts));
  if ('iso' in result) return result.iso;
  const def = lookupAi(ai);
  const reason = `'${yymmdd}' is not a valid date (YYMMDD): ${result.reason}`;
  throw def
    ? gs1Error('GS1_INVALID_DATE', def, yymmdd, reason)
    : new PoskoError('GS1_INVALID_DATE', reason, { ai, value: yymmdd });
}

// ---------------------------------------------------------------------------------------------
// Linters
// ---------------------------------------------------------------------------------------------

interface LintFailure {
  code: ErrorCode;
  reason: string;
}

function fail(code: ErrorCode, reason: string): LintFailure {
  return { code, reason };
}

function lintTime(text: string, parts: readonly ('hh' | 'mi' | 'ss')[]): LintFailure | undefined {
  if (!new RegExp(`^\\d{${parts.length * 2}}$`).test(text)) {
    return fail('GS1_INVALID_DATE', `'${text}' is not a valid time`);
  }
  for (let i = 0; i < parts.length; i++) {
    const n = Number(text.slice(i * 2, i * 2 + 2));
    const limit = parts[i] === 'hh' ? 23 : 59;
    if (n > limit) {
      const what = parts[i] === 'hh' ? 'hour' : parts[i] === 'mi' ? 'minute' : 'second';
      return fail('GS1_INVALID_DATE', `'${text}' is not a valid time: ${what} ${pad2(n)} does not exist`);
    }
  }
  return undefined;
}

/** Runs one dictionary linter on one component; returns the failure or undefined. */
function runLinter(name: string, text: string, referenceYear: number): LintFailure | undefined {
  switch (name) {
    case 'csum': {
      if (hasValidGs1CheckDigit(text)) return undefined;
      const expected = /^\d{2,}$/.test(text) ? String(gs1CheckDigit(text.slice(0, -1))) : '?';
      return fail(
        'GS1_CHECK_DIGIT',
        `check digit of '${text}' is wrong: expected ${expected}, got ${text.slice(-1)}`,
      );
    }
    case 'csumalpha':
      return hasValidCheckCharacterPair(text)
        ? undefined
        : fail('GS1_CHECK_DIGIT', `check character pair of '${text}' is wrong`);
    case 'iban':
      if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$/.test(text)) {
        return fail('GS1_INVALID_CHARACTER', `'${text}' is not an IBAN (country, 2 check digits, account)`);
      }
      return hasValidIbanChecksum(text) ? undefined : fail('GS1_CHECK_DIGIT', `IBAN check digits of '${text}' are wrong`);
    case 'yymmd0':
    case 'yymmdd': {
      const r = decodeYymmdd(text, name === 'yymmd0', referenceYear);
      return 'iso' in r ? undefined : fail('GS1_INVALID_DATE', `'${text}' is not a valid date (YYMMDD): ${r.reason}`);
    }
    case 'yyyymmdd': {
      if (!/^\d{8}$/.test(text)) return fail('GS1_INVALID_DATE', `'${text}' is not a valid date (YYYYMMDD)`);
      const r = checkDate(Number(text.slice(0, 4)), Number(text.slice(4, 6)), Number(text.slice(6, 8)), false);
      return 'iso' in r ? undefined : fail('GS1_INVALID_DATE', `'${text}' is not a valid date (YYYYMMDD): ${r.reason}`);
    }
    case 'hhmi':
    case 'hhmm':
      return lintTime(text, ['hh', 'mi']);
    case 'hh':
      return lintTime(text, ['hh']);
    case 'mi':
      return lintTime(text, ['mi']);
    case 'ss':
      return lintTime(text, ['ss']);
    case 'zero':
      return text === '0' ? undefined : fail('GS1_INVALID_CHARACTER', `'${text}' must be 0`);
    case 'nonzero':
      return /^0+$/.test(text) ? fail('GS1_INVALID_CHARACTER', `'${text}' must not be zero`) : undefined;
    case 'yesno':
      return text === '0' || text === '1' ? undefined : fail('GS1_INVALID_CHARACTER', `'${text}' must be 0 or 1`);
    case 'winding':
      return ['0', '1', '9'].includes(text) ? undefined : fail('GS1_INVALID_CHARACTER', `'${text}' must be 0, 1 or 9`);
    case 'iso5218':
      return ['0', '1', '2', '9'].includes(text)
        ? undefined
        : fail('GS1_INVALID_CHARACTER', `'${text}' must be 0, 1, 2 or 9 (ISO 5218)`);
    case 'hyphen':
      return /^-+$/.test(text) ? undefined : fail('GS1_INVALID_CHARACTER', `'${text}' must be a hyphen`);
    case 'pieceoftotal': {
      const half = text.length / 2;
      const piece = text.slice(0, half);
      const total = text.slice(half);
      if (!/^\d+$/.test(text) || text.length % 2 !== 0) {
        return fail('GS1_INVALID_CHARACTER', `'${text}' is not a piece number followed by a total`);
      }
      if (/^0+$/.test(piece) || /^0+$/.test(total) || piece > total) {
        return fail('GS1_INVALID_CHARACTER', `piece ${piece} of ${total} is not possible`);
      }
      return undefined;
    }
    case 'posinseqslash': {
      const m = /^([1-9]\d*)\/([1-9]\d*)$/.exec(text);
      if (!m) return fail('GS1_INVALID_CHARACTER', `'${text}' is not a position in the form <pos>/<end>`);
      return Number(m[1]) > Number(m[2])
        ? fail('GS1_INVALID_CHARACTER', `position ${m[1]} exceeds end ${m[2]}`)
        : undefined;
    }
    case 'nozeroprefix':
      return text.length > 1 && text.startsWith('0')
        ? fail('GS1_INVALID_CHARACTER', `'${text}' must not start with 0`)
        : undefined;
    case 'hasnondigit':
      return /[^0-9]/.test(text) ? undefined : fail('GS1_INVALID_CHARACTER', `'${text}' must contain a non-digit`);
    case 'pcenc':
      return /%(?![0-9A-Fa-f]{2})/.test(text)
        ? fail('GS1_INVALID_CHARACTER', `'${text}' has a '%' that is not followed by two hex digits`)
        : undefined;
    case 'importeridx':
      return /^[-0-9A-Z_a-z]$/.test(text) ? undefined : fail('GS1_INVALID_CHARACTER', `'${text}' is not an importer index`);
    case 'latitude':
      return Number(text) <= 1800000000 ? undefined : fail('GS1_INVALID_CHARACTER', `latitude '${text}' is out of range`);
    case 'longitude':
      return Number(text) <= 3600000000 ? undefined : fail('GS1_INVALID_CHARACTER', `longitude '${text}' is out of range`);
    default:
      // gcppos1/2, key, iso3166*, iso4217, packagetype, mediatype, couponcode, couponposoffer,
      // and any linter a future dictionary release adds: not checked (see module header).
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

function validateWithDef(def: AiDefinition, value: string, referenceYear: number): void {
  if (value === '') throw emptyValueError(def);
  if (value.length < def.minLength || value.length > def.maxLength) throw badLengthError(def, value);

  // Split the value into its components (variable-length ones come last in the dictionary).
  let pos = 0;
  for (const comp of def.components) {
    const remaining = value.length - pos;
    if (remaining === 0 && comp.optional) break;
    if (remaining < comp.min) throw badLengthError(def, value);
    const take = Math.min(remaining, comp.max);
    const text = value.slice(pos, pos + take);

    const bad = firstBadChar(comp.charset, text);
    if (bad >= 0) {
      const ch = text.charAt(bad);
      throw gs1Error(
        'GS1_INVALID_CHARACTER',
        def,
        value,
        `character '${showChar(ch)}' at position ${pos + bad + 1} of '${value}' is not allowed (${CHARSET_NAME[comp.charset]})`,
        { position: pos + bad, character: ch },
      );
    }
    for (const linter of comp.linters) {
      const failure = runLinter(linter, text, referenceYear);
      if (failure) throw gs1Error(failure.code, def, value, failure.reason);
    }
    pos += take;
  }
  if (pos !== value.length) throw badLengthError(def, value);
}

/**
 * Validates one AI value against the dictionary: length, character set of each component and
 * the component linters. Throws PoskoError (GS1_UNKNOWN_AI, GS1_EMPTY_VALUE, GS1_BAD_LENGTH,
 * GS1_INVALID_CHARACTER, GS1_CHECK_DIGIT, GS1_INVALID_DATE) with `details.ai` and `details.value`.
 */
export function validateAiValue(ai: string, value: string, opts?: Gs1Options): void {
  const def = lookupAi(ai);
  if (!def) throw unknownAiError(ai, value, 'in the GS1 Syntax Dictionary');
  validateWithDef(def, value, resolveReferenceYear(opts));
}

// ---------------------------------------------------------------------------------------------
// Associations: requisites and exclusions
// ---------------------------------------------------------------------------------------------

function patternMatches(pattern: string, ai: string): boolean {
  if (pattern.length !== ai.length) return false;
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern.charAt(i);
    const c = ai.charAt(i);
    if (p === 'n' ? !/\d/.test(c) : p !== c) return false;
  }
  return true;
}

function describeClause(clause: readonly (readonly string[])[]): string {
  const alts = clause.map((alt) => alt.map((a) => `(${a})`).join(' with '));
  return alts.length === 1 ? (alts[0] ?? '') : `one of ${alts.join(', ')}`;
}

/**
 * Checks the dictionary's association rules over a set of AIs: every `req=` clause of each AI
 * must be met by some present AI (warning GS1_REQUISITE), and no two present AIs may exclude
 * each other via `ex=` (warning GS1_EXCLUSION, reported once per pair). Unknown AIs are ignored.
 */
export function checkAiAssociations(ais: Iterable<string>): Gs1Warning[] {
  const present = [...new Set(ais)];
  const warnings: Gs1Warning[] = [];
  const seenPairs = new Set<string>();
  for (const ai of present) {
    const def = lookupAi(ai);
    if (!def) continue;
    for (const clause of def.requisites) {
      const met = clause.some((alt) => alt.every((p) => present.some((a) => patternMatches(p, a))));
      if (!met) {
        warnings.push({
          code: 'GS1_REQUISITE',
          message: `${label(def)} requires ${describeClause(clause)} in the same scan`,
        });
      }
    }
    for (const pattern of def.exclusions) {
      for (const other of present) {
        if (other === ai || !patternMatches(pattern, other)) continue;
        const [first, second] = [ai, other].sort();
        const key = `${first}|${second}`;
        if (seenPairs.has(key)) continue;
        seenPairs.add(key);
        warnings.push({
          code: 'GS1_EXCLUSION',
          message: `AIs (${first}) and (${second}) must not be used together`,
        });
      }
    }
  }
  return warnings;
}

/** Builds the AI map (rejecting conflicting duplicates) and appends the association warnings. */
function assemble(pairs: readonly (readonly [string, string])[], warnings: Gs1Warning[] = []): Gs1Data {
  const ais: Record<string, string> = {};
  for (const [ai, value] of pairs) {
    const previous = ais[ai];
    if (previous !== undefined && previous !== value) {
      // Not one of the GS1_* format errors: each value is well-formed, the data contradicts itself.
      throw new PoskoError(
        'VALIDATION',
        `AI (${ai}) appears twice with different values: '${previous}' and '${value}'`,
        { ai, value, previous },
      );
    }
    ais[ai] = value;
  }
  return { ais, warnings: [...warnings, ...checkAiAssociations(Object.keys(ais))] };
}

// ---------------------------------------------------------------------------------------------
// Element strings (FNC1 / GS separated)
// ---------------------------------------------------------------------------------------------

/**
 * Parses a GS1 element string as scanners transmit it (symbology identifier already removed):
 * AI and value pairs concatenated, with GS (ASCII 29) ending each variable-length value that is
 * not last. A leading GS (FNC1 in first position) and stray GS characters between element
 * strings are ignored. Values of fixed-length AIs are taken by length, so a missing GS after a
 * fixed-length AI that formally requires one is tolerated. Throws PoskoError on invalid data.
 */
export function parseElementString(data: string, opts?: Gs1Options): Gs1Data {
  const referenceYear = resolveReferenceYear(opts);
  const pairs: [string, string][] = [];
  let pos = 0;
  while (pos < data.length) {
    if (data.charAt(pos) === GS) {
      pos++;
      continue;
    }
    const def = matchAiAt(data, pos);
    if (!def) {
      const gsAt = data.indexOf(GS, pos);
      const rest = data.slice(pos, gsAt < 0 ? undefined : gsAt);
      throw unknownAiError(rest.slice(0, 4), rest, `at position ${pos + 1} of the element string`);
    }
    const start = pos + def.ai.length;
    let value: string;
    if (def.fixedLength !== undefined) {
      value = data.slice(start, start + def.fixedLength);
      const gsAt = value.indexOf(GS);
      if (gsAt >= 0) value = value.slice(0, gsAt);
      if (value === '') throw emptyValueError(def);
      if (value.length < def.fixedLength) throw badLengthError(def, value);
      pos = start + value.length;
    } else {
      const gsAt = data.indexOf(GS, start);
      const end = gsAt < 0 ? data.length : gsAt;
      value = data.slice(start, end);
      pos = end;
    }
    validateWithDef(def, value, referenceYear);
    pairs.push([def.ai, value]);
  }
  if (pairs.length === 0) {
    throw new PoskoError('VALIDATION', 'GS1 data holds no element strings', { value: data });
  }
  return assemble(pairs);
}

// ---------------------------------------------------------------------------------------------
// Bracketed human-readable form
// ---------------------------------------------------------------------------------------------

const BRACKET_AI_RE = /^\((\d{2,4})\)/;

/** True when `text` starts like bracketed GS1 text with a known first AI, e.g. `(01)...`. */
export function looksBracketed(text: string): boolean {
  const m = BRACKET_AI_RE.exec(text);
  return m !== null && lookupAi(m[1] ?? '') !== undefined;
}

/**
 * Parses bracketed GS1 text: `(01)09506000134352(17)251231(10)ABC`. Every `(` followed by 2-4
 * digits and `)` starts a new AI; write `\(` for a literal parenthesis inside a value. Each
 * value must satisfy its AI's format exactly. Throws PoskoError on invalid data.
 */
export function parseBracketed(text: string, opts?: Gs1Options): Gs1Data {
  const referenceYear = resolveReferenceYear(opts);
  const pairs: [string, string][] = [];
  let pos = 0;
  if (!BRACKET_AI_RE.test(text)) {
    throw new PoskoError('VALIDATION', `bracketed GS1 text must start with an AI in parentheses`, {
      value: text,
    });
  }
  while (pos < text.length) {
    const m = BRACKET_AI_RE.exec(text.slice(pos));
    const ai = m?.[1] ?? '';
    pos += m?.[0].length ?? 0;
    let value = '';
    while (pos < text.length) {
      if (text.startsWith('\\(', pos)) {
        value += '(';
        pos += 2;
        continue;
      }
      if (text.charAt(pos) === '(' && BRACKET_AI_RE.test(text.slice(pos))) break;
      value += text.charAt(pos);
      pos++;
    }
    const def = lookupAi(ai);
    if (!def) throw unknownAiError(ai, value, 'in bracketed GS1 text');
    validateWithDef(def, value, referenceYear);
    pairs.push([def.ai, value]);
  }
  return assemble(pairs);
}

// ---------------------------------------------------------------------------------------------
// GS1 Digital Link URIs
// ---------------------------------------------------------------------------------------------

/** Deprecated but still printed convenience names for path AIs (GS1 Digital Link 1.1). */
const DL_ALPHA_AIS: Readonly<Record<string, string>> = {
  cpid: '8010',
  cpsn: '8011',
  cpv: '22',
  gcn: '255',
  gdti: '253',
  giai: '8004',
  ginc: '401',
  gln: '414',
  glnx: '254',
  gmn: '8013',
  grai: '8003',
  gsin: '402',
  gsrn: '8018',
  gsrnp: '8017',
  gtin: '01',
  itip: '8006',
  lot: '10',
  party: '417',
  refno: '8020',
  ser: '21',
  srin: '8019',
  sscc: '00',
};

const URI_RE = /^(https?):\/\/([^/?#]+)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/i;

function dlPathAi(segment: string): AiDefinition | undefined {
  if (/^\d{2,4}$/.test(segment)) return lookupAi(segment);
  const alias = DL_ALPHA_AIS[segment];
  return alias === undefined ? undefined : lookupAi(alias);
}

function uriDecode(def: AiDefinition, raw: string, query: boolean): string {
  let value: string;
  try {
    value = decodeURIComponent(query ? raw.replace(/\+/g, ' ') : raw);
  } catch {
    throw gs1Error('GS1_INVALID_CHARACTER', def, raw, `'${raw}' has malformed percent-encoding`);
  }
  // GTIN-8/12/13 written without the leading zeros of a GTIN-14.
  if (def.ai === '01' && /^(\d{8}|\d{12}|\d{13})$/.test(value)) value = value.padStart(14, '0');
  return value;
}

function isSubsequence(seq: readonly string[], of: readonly string[]): boolean {
  let i = 0;
  for (const item of of) if (i < seq.length && seq[i] === item) i++;
  return i === seq.length;
}

/** True when `text` is an http(s) URI (whether or not it is a GS1 Digital Link). */
export function isHttpUri(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

/**
 * Parses a GS1 Digital Link URI: the primary key and its key qualifiers as `/AI/value` pairs at
 * the end of the path (any path before them is the resolver's stem; convenience names such as
 * `/gtin/` are accepted), data attributes as numeric query parameters (`?17=251231`; other
 * parameters and the fragment are ignored). Values are percent-decoded (`+` is a space in the
 * query); an (01) of 8, 12 or 13 digits is zero-padded to a GTIN-14.
 *
 * Returns undefined when the text is not an http(s) URI with a GS1 primary key in its path
 * (i.e. an ordinary URL). Throws PoskoError when it is a Digital Link with invalid data.
 * Qualifiers out of the dictionary's order and query AIs that are not valid data attributes
 * produce the warnings GS1_DL_KEY_QUALIFIER and GS1_DL_ATTRIBUTE.
 */
export function parseDigitalLink(uri: string, opts?: Gs1Options): Gs1Data | undefined {
  const m = URI_RE.exec(uri);
  if (!m) return undefined;
  const referenceYear = resolveReferenceYear(opts);
  const segments = (m[3] ?? '').split('/').slice(1);
  if (segments.length > 0 && segments[segments.length - 1] === '') segments.pop(); // trailing slash

  // Walk /AI/value pairs back from the end of the path until the primary key.
  let root = -1;
  for (let i = segments.length - 2; i >= 0; i -= 2) {
    const def = dlPathAi(segments[i] ?? '');
    if (!def) break;
    if (def.dlQualifiers !== undefined) {
      root = i;
      break;
    }
  }
  if (root < 0) return undefined;

  const pairs: [string, string][] = [];
  const warnings: Gs1Warning[] = [];
  const pathAis: string[] = [];
  for (let i = root; i + 1 < segments.length; i += 2) {
    const def = dlPathAi(segments[i] ?? '');
    if (!def) throw unknownAiError(segments[i] ?? '', segments[i + 1] ?? '', 'in the Digital Link path');
    const value = uriDecode(def, segments[i + 1] ?? '', false);
    validateWithDef(def, value, referenceYear);
    pairs.push([def.ai, value]);
    pathAis.push(def.ai);
  }

  const [primary = '', ...qualifiers] = pathAis;
  const allowed = lookupAi(primary)?.dlQualifiers ?? [[]];
  if (qualifiers.length > 0 && !allowed.some((seq) => isSubsequence(qualifiers, seq))) {
    warnings.push({
      code: 'GS1_DL_KEY_QUALIFIER',
      message: `Digital Link path qualifiers ${qualifiers.map((q) => `(${q})`).join(', ')} are not a valid sequence for primary key (${primary})`,
    });
  }

  for (const param of (m[4] ?? '').split('&')) {
    const eq = param.indexOf('=');
    if (eq < 0) continue; // singleton parameter: not an AI
    const key = param.slice(0, eq);
    if (!/^\d+$/.test(key)) continue; // non-AI parameter (e.g. utm_source): ignored
    const rawValue = param.slice(eq + 1);
    const def = lookupAi(key);
    if (!def) throw unknownAiError(key, rawValue, 'in the Digital Link query string');
    if (rawValue === '') throw emptyValueError(def);
    const value = uriDecode(def, rawValue, true);
    validateWithDef(def, value, referenceYear);
    if (!def.dlAttr) {
      warnings.push({
        code: 'GS1_DL_ATTRIBUTE',
        message: `${label(def)} is not a valid Digital Link data attribute in the query string`,
      });
    }
    pairs.push([def.ai, value]);
  }
  return assemble(pairs, warnings);
}
