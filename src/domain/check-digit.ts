/**
 * Check-digit arithmetic for GS1 keys, shared by the GS1 element-string parser (AIs with the
 * `csum`, `csumalpha` and `iban` linters) and the EAN/UPC parser. Pure: no I/O, no clock.
 *
 * - GS1 mod-10 (GS1 General Specifications 7.9.1): weights 3,1,3,1... from the right of the
 *   digits that precede the check digit; used by GTIN-8/12/13/14, SSCC, GLN, GDTI, GRAI, ...
 * - GS1 alphanumeric check character pair (GS1 General Specifications 7.9.5): used by GMN.
 * - ISO 7064 mod 97-10 as used by IBAN (AI 8007).
 */

const DIGITS_RE = /^[0-9]+$/;

/**
 * Computes the GS1 mod-10 check digit for `body` (a string of digits WITHOUT its check digit).
 * Throws a RangeError when `body` is empty or holds a non-digit: this is a programming error,
 * callers validate their input first.
 */
export function gs1CheckDigit(body: string): number {
  if (!DIGITS_RE.test(body)) throw new RangeError(`gs1CheckDigit: not a digit string: '${body}'`);
  let sum = 0;
  // The digit immediately left of the check digit has weight 3, then 1, 3, 1, ...
  for (let i = body.length - 1, weight = 3; i >= 0; i--, weight = weight === 3 ? 1 : 3) {
    sum += (body.charCodeAt(i) - 48) * weight;
  }
  return (10 - (sum % 10)) % 10;
}

/**
 * True when `digits` (at least two digits, the last being the check digit) carries a correct
 * GS1 mod-10 check digit. False for anything that is not a digit string of length >= 2.
 */
export function hasValidGs1CheckDigit(digits: string): boolean {
  if (digits.length < 2 || !DIGITS_RE.test(digits)) return false;
  return gs1CheckDigit(digits.slice(0, -1)) === digits.charCodeAt(digits.length - 1) - 48;
}

/** GS1 AI encodable character set 82, in the order that gives each character its value. */
const CSET82 = '!"%&\'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
/** GS1 character set 32, the alphabet of the alphanumeric check character pair. */
const CSET32 = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ';
/** The first primes, used right to left as weights for the check character pair. */
const PRIMES = [
  2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
  103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197, 199,
  211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281, 283, 293, 307, 311, 313, 317,
  331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397, 401, 409, 419, 421, 431, 433, 439, 443,
  449, 457, 461, 463, 467, 479, 487, 491, 499, 503, 509,
];

/**
 * Computes the GS1 alphanumeric check character pair for `body` (CSET 82 characters, without the
 * pair). Returns undefined when `body` holds a character outside CSET 82 or is longer than the
 * 97 characters the prime table covers.
 */
export function gs1CheckCharacterPair(body: string): string | undefined {
  if (body.length > PRIMES.length) return undefined;
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    const value = CSET82.indexOf(body.charAt(i));
    const weight = PRIMES[body.length - 1 - i];
    if (value < 0 || weight === undefined) return undefined;
    sum += value * weight;
  }
  sum %= 1021;
  return CSET32.charAt(sum >> 5) + CSET32.charAt(sum & 31);
}

/** True when the last two characters of `value` are its correct GS1 check character pair. */
export function hasValidCheckCharacterPair(value: string): boolean {
  if (value.length < 2) return false;
  const pair = gs1CheckCharacterPair(value.slice(0, -2));
  return pair !== undefined && pair === value.slice(-2);
}

/**
 * True when `iban` (upper-case letters and digits, no spaces) passes the ISO 7064 mod 97-10
 * check used by IBAN: move the first four characters to the end, map A..Z to 10..35, and the
 * resulting number mod 97 must be 1.
 */
export function hasValidIbanChecksum(iban: string): boolean {
  if (!/^[A-Z]{2}[0-9]{2}[A-Z0-9]+$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? code - 55 : code - 48;
    remainder = (remainder * (value >= 10 ? 100 : 10) + value) % 97;
  }
  return remainder === 1;
}
