/**
 * Unit tests for the GS1 element-string parser (src/domain/gs1.ts) and the check-digit helpers
 * (src/domain/check-digit.ts). Expected values are independent literals: published GS1 /
 * Wikipedia examples (GTIN 09506000134352, SSCC 106141412345678908, GLN 0614141123452, ...) and
 * the GS1 Syntax Engine's own linter test vectors — never computed with the code under test.
 */

import { describe, expect, it } from 'vitest';
import { errorOf } from '../helpers/errors.ts';
import {
  gs1CheckCharacterPair,
  gs1CheckDigit,
  hasValidCheckCharacterPair,
  hasValidGs1CheckDigit,
  hasValidIbanChecksum,
} from '../../src/domain/check-digit.ts';
import {
  DEFAULT_REFERENCE_YEAR,
  checkAiAssociations,
  gs1DateToIso,
  isGs1KeyAi,
  lookupAi,
  matchAiAt,
  parseBracketed,
  parseDigitalLink,
  parseElementString,
  resolveCentury,
  validateAiValue,
} from '../../src/domain/gs1.ts';

const GS = '\x1d';


describe('check-digit helpers', () => {
  it.each([
    ['0950600013435', 2],
    ['10614141234567890', 8],
    ['400638133393', 1],
    ['590123412345', 7],
    ['9638507', 4],
    ['03600029145', 2],
    ['061414112345', 2],
    ['1001234567890', 2],
  ])('gs1CheckDigit(%s) = %i', (body, digit) => {
    expect(gs1CheckDigit(body)).toBe(digit);
  });

  it.each([
    ['09506000134352', true],
    ['106141412345678908', true],
    ['4006381333931', true],
    ['96385074', true],
    ['036000291452', true],
    ['09506000134353', false],
    ['106141412345678907', false],
    ['4006381333932', false],
    ['0950600013435A', false],
    ['5', false],
    ['', false],
  ])('hasValidGs1CheckDigit(%s) = %s', (digits, ok) => {
    expect(hasValidGs1CheckDigit(digits)).toBe(ok);
  });

  it('rejects non-digit input to gs1CheckDigit as a programming error', () => {
    expect(() => gs1CheckDigit('12a')).toThrow(RangeError);
    expect(() => gs1CheckDigit('')).toThrow(RangeError);
  });

  it.each([
    ['1987654Ad4X4bL5ttr2310c2K', true],
    ['12345678901234567890123NT', true],
    ['12345_abcdefghijklmN3', true],
    ['7907665Bm8v2AB', true],
    ['00000!HV', true],
    ['22', true],
    ['1987654Ad4X4bL5ttr2310cXK', false],
    ['1987654Ad4X4bL5ttr2310c2X', false],
    ['33', false],
    ['2', false],
  ])('hasValidCheckCharacterPair(%s) = %s', (value, ok) => {
    expect(hasValidCheckCharacterPair(value)).toBe(ok);
  });

  it('computes the check character pair', () => {
    expect(gs1CheckCharacterPair('1987654Ad4X4bL5ttr2310c')).toBe('2K');
    expect(gs1CheckCharacterPair('')).toBe('22');
    expect(gs1CheckCharacterPair('a b')).toBeUndefined();
  });

  it.each([
    ['GB82WEST12345698765432', true],
    ['DE89370400440532013000', true],
    ['GB83WEST12345698765432', false],
    ['DE88370400440532013000', false],
    ['gb82WEST12345698765432', false],
  ])('hasValidIbanChecksum(%s) = %s', (iban, ok) => {
    expect(hasValidIbanChecksum(iban)).toBe(ok);
  });
});

describe('AI table', () => {
  it('expands ranges and knows fixed/variable AIs', () => {
    expect(lookupAi('3103')?.fixedLength).toBe(6);
    expect(lookupAi('3100')?.title).toBe('NET WEIGHT (kg)');
    expect(lookupAi('3105')).toBeDefined();
    expect(lookupAi('3106')).toBeUndefined();
    expect(lookupAi('95')?.maxLength).toBe(90);
    expect(lookupAi('01')).toMatchObject({ fixedLength: 14, fnc1Required: false, minLength: 14 });
    expect(lookupAi('10')).toMatchObject({ fixedLength: undefined, fnc1Required: true, minLength: 1, maxLength: 20 });
    expect(lookupAi('253')).toMatchObject({ fixedLength: undefined, minLength: 13, maxLength: 30 });
    expect(lookupAi('4330')?.components).toEqual([
      { charset: 'N', min: 6, max: 6, optional: false, linters: [] },
      { charset: 'X', min: 1, max: 1, optional: true, linters: ['hyphen'] },
    ]);
  });

  it('matches the longest known AI at a position', () => {
    expect(matchAiAt('3103000500')?.ai).toBe('3103');
    expect(matchAiAt('4221234')?.ai).toBe('422');
    expect(matchAiAt('0109506000134352')?.ai).toBe('01');
    expect(matchAiAt('xx8006', 2)?.ai).toBe('8006');
    expect(matchAiAt('2345')).toBeUndefined();
    expect(matchAiAt('1')).toBeUndefined();
  });

  it('knows which AIs are GS1 keys', () => {
    for (const ai of ['00', '01', '02', '253', '414', '8003', '8006', '8013']) expect(isGs1KeyAi(ai)).toBe(true);
    for (const ai of ['10', '17', '21', '37', '90', '3103']) expect(isGs1KeyAi(ai)).toBe(false);
  });
});

describe('century window and dates', () => {
  it('uses 2026 as the default reference year', () => {
    expect(DEFAULT_REFERENCE_YEAR).toBe(2026);
  });

  it.each([
    // referenceYear 2026: window 1977 .. 2076
    [76, 2026, 2076],
    [77, 2026, 1977],
    [0, 2026, 2000],
    [99, 2026, 1999],
    [26, 2026, 2026],
    // referenceYear 2060: window 2011 .. 2110 (forward into the next century)
    [10, 2060, 2110],
    [11, 2060, 2011],
    [0, 2060, 2100],
    // referenceYear 2000: window 1951 .. 2050
    [50, 2000, 2050],
    [51, 2000, 1951],
    // referenceYear 1990: window 1941 .. 2040
    [40, 1990, 2040],
    [41, 1990, 1941],
  ])('YY %i with reference year %i -> %i', (yy, ref, year) => {
    expect(resolveCentury(yy, ref)).toBe(year);
  });

  it.each([
    ['251231', undefined, '2025-12-31'],
    ['240200', undefined, '2024-02-29'], // day 00 in February of a leap year
    ['250200', undefined, '2025-02-28'], // day 00 in February of a common year
    ['000200', undefined, '2000-02-29'], // 2000 is a leap year
    ['000200', 2070, '2100-02-28'], // 2100 is not
    ['250400', undefined, '2025-04-30'],
    ['251200', undefined, '2025-12-31'],
    ['240229', undefined, '2024-02-29'],
    ['770101', undefined, '1977-01-01'],
    ['760101', undefined, '2076-01-01'],
    ['100101', 2060, '2110-01-01'],
    ['110101', 2060, '2011-01-01'],
  ])('gs1DateToIso(%s, ref %s) = %s', (yymmdd, ref, iso) => {
    expect(gs1DateToIso(yymmdd, ref === undefined ? undefined : { referenceYear: ref })).toBe(iso);
  });

  it.each([
    ['251301', undefined], // month 13
    ['250001', undefined], // month 00
    ['251332', undefined], // month 13, day 32
    ['250229', undefined], // 29 Feb in a common year
    ['240230', undefined], // 30 Feb in a leap year
    ['250431', undefined], // 31 April
    ['000229', 2070], // 2100-02-29 does not exist
    ['12345', undefined],
  ])('gs1DateToIso(%s, ref %s) throws GS1_INVALID_DATE', (yymmdd, ref) => {
    const e = errorOf(() => gs1DateToIso(yymmdd, ref === undefined ? undefined : { referenceYear: ref }));
    expect(e.code).toBe('GS1_INVALID_DATE');
    expect(e.details).toMatchObject({ ai: '17', value: yymmdd });
  });

  it('accepts 2000-02-29 with the default reference year', () => {
    expect(gs1DateToIso('000229')).toBe('2000-02-29');
  });

  it('rejects a reference year that is not a year', () => {
    expect(errorOf(() => gs1DateToIso('251231', { referenceYear: 20.5 })).code).toBe('VALIDATION');
    expect(errorOf(() => parseElementString('17251231', { referenceYear: Number.NaN })).code).toBe('VALIDATION');
  });
});

describe('validateAiValue', () => {
  it.each([
    ['00', '106141412345678908'],
    ['01', '09506000134352'],
    ['10', 'ABC-123/x.y'],
    ['10', '!"%&\'()*+,-./:;<=>?_'],
    ['10', 'ABCXYZabcxyz01234567'],
    ['17', '250200'],
    ['21', '12345678901234567890'],
    ['30', '12345678'],
    ['37', '1'],
    ['3103', '000500'],
    ['414', '0614141123452'],
    ['253', '0614141123452'], // optional serial component absent
    ['253', '0614141123452ABC123'], // optional serial component present
    ['421', '36012345'], // N3 country + X..9 postal code
    ['422', '360'],
    ['4330', '001234'],
    ['4330', '001234-'], // optional hyphen component
    ['7003', '2512311430'], // N6 date + N4 time
    ['7007', '250101'],
    ['7007', '250101250131'], // optional second date
    ['7250', '20240229'],
    ['8001', '01230045601011'], // N4 N5 N3 N1 N1, nonzero and winding
    ['8003', '00614141123452XYZ'], // zero + GRAI + optional serial
    ['8006', '095060001343520102'], // ITIP: GTIN + piece 01 of 02
    ['8007', 'GB82WEST12345698765432'],
    ['8008', '25123114'], // date + hour, optional minutes/seconds absent
    ['8008', '2512311430'],
    ['8010', 'ABC#-/123'],
    ['8011', '123'],
    ['8013', '1987654Ad4X4bL5ttr2310c2K'],
    ['8030', 'AZaz09-_'],
    ['8030', 'ab='],
    ['8030', '1=='],
    ['7258', '2/3'],
    ['4321', '1'],
    ['4309', '18000000000000000000'],
    ['4300', 'ACME%20Ltd'],
  ])('accepts (%s) %s', (ai, value) => {
    expect(() => validateAiValue(ai, value)).not.toThrow();
  });

  it.each([
    // GS1_CHECK_DIGIT
    ['01', '09506000134353', 'GS1_CHECK_DIGIT'],
    ['00', '106141412345678907', 'GS1_CHECK_DIGIT'],
    ['414', '0614141123453', 'GS1_CHECK_DIGIT'],
    ['8006', '095060001343530102', 'GS1_CHECK_DIGIT'],
    ['8013', '1987654Ad4X4bL5ttr2310cXK', 'GS1_CHECK_DIGIT'],
    ['8007', 'GB83WEST12345698765432', 'GS1_CHECK_DIGIT'],
    // GS1_INVALID_DATE
    ['17', '251332', 'GS1_INVALID_DATE'],
    ['17', '251301', 'GS1_INVALID_DATE'],
    ['11', '250230', 'GS1_INVALID_DATE'],
    ['7006', '250100', 'GS1_INVALID_DATE'], // yymmdd: day 00 not allowed
    ['7003', '2512312430', 'GS1_INVALID_DATE'], // hour 24
    ['7003', '2512311260', 'GS1_INVALID_DATE'], // minute 60
    ['7250', '20230229', 'GS1_INVALID_DATE'],
    ['8008', '2512312500', 'GS1_INVALID_DATE'],
    // GS1_BAD_LENGTH
    ['01', '0950600013435', 'GS1_BAD_LENGTH'],
    ['00', '1061414123456789080', 'GS1_BAD_LENGTH'],
    ['10', '123456789012345678901', 'GS1_BAD_LENGTH'],
    ['30', '123456789', 'GS1_BAD_LENGTH'],
    ['421', '36', 'GS1_BAD_LENGTH'],
    ['7003', '25123114', 'GS1_BAD_LENGTH'],
    ['4330', '001234-X', 'GS1_BAD_LENGTH'],
    // GS1_INVALID_CHARACTER
    ['10', 'AB C', 'GS1_INVALID_CHARACTER'],
    ['10', 'ABC#', 'GS1_INVALID_CHARACTER'],
    ['21', 'é', 'GS1_INVALID_CHARACTER'],
    ['01', '0950600013435A', 'GS1_INVALID_CHARACTER'],
    ['37', '1O', 'GS1_INVALID_CHARACTER'],
    ['8010', 'abc', 'GS1_INVALID_CHARACTER'], // CSET 39 has no lower case
    ['8030', 'a+b', 'GS1_INVALID_CHARACTER'], // CSET 64 has no '+'
    ['8030', 'ab==', 'GS1_INVALID_CHARACTER'], // bad base64 padding
    ['4330', '001234+', 'GS1_INVALID_CHARACTER'], // hyphen linter
    ['8003', '10614141123452', 'GS1_INVALID_CHARACTER'], // zero linter
    ['8001', '00000045601011', 'GS1_INVALID_CHARACTER'], // nonzero linter
    ['8001', '01230045601021', 'GS1_INVALID_CHARACTER'], // winding linter
    ['8006', '095060001343520302', 'GS1_INVALID_CHARACTER'], // piece 3 of 2
    ['4321', '2', 'GS1_INVALID_CHARACTER'], // yesno
    ['7258', '3/2', 'GS1_INVALID_CHARACTER'],
    ['8011', '0123', 'GS1_INVALID_CHARACTER'],
    ['4300', 'ACME%2GLtd', 'GS1_INVALID_CHARACTER'],
    ['4309', '18000000010000000000', 'GS1_INVALID_CHARACTER'], // latitude > 90 degrees
    ['8007', 'GB82 WEST', 'GS1_INVALID_CHARACTER'],
    // GS1_EMPTY_VALUE
    ['10', '', 'GS1_EMPTY_VALUE'],
    ['01', '', 'GS1_EMPTY_VALUE'],
    // GS1_UNKNOWN_AI
    ['23', '1', 'GS1_UNKNOWN_AI'],
    ['3106', '000500', 'GS1_UNKNOWN_AI'],
  ])('rejects (%s) %j with %s', (ai, value, code) => {
    const e = errorOf(() => validateAiValue(ai, value));
    expect(e.code).toBe(code);
    expect(e.details).toMatchObject({ ai, value });
    expect(e.message.length).toBeGreaterThan(10);
  });

  it('names the AI and the problem in its messages', () => {
    expect(errorOf(() => validateAiValue('01', '09506000134353')).message).toBe(
      "AI (01) GTIN: check digit of '09506000134353' is wrong: expected 2, got 3",
    );
    expect(errorOf(() => validateAiValue('17', '251332')).message).toBe(
      "AI (17) USE BY or EXPIRY: '251332' is not a valid date (YYMMDD): month 13 does not exist",
    );
    expect(errorOf(() => validateAiValue('00', '1234')).message).toBe(
      "AI (00) SSCC: value '1234' has 4 characters; expected exactly 18",
    );
    expect(errorOf(() => validateAiValue('10', 'AB C')).message).toBe(
      "AI (10) BATCH/LOT: character ' ' at position 3 of 'AB C' is not allowed (GS1 character set 82)",
    );
    expect(errorOf(() => validateAiValue('10', '')).message).toBe('AI (10) BATCH/LOT: the value is empty');
    expect(errorOf(() => validateAiValue('23', 'x')).message).toContain("'23'");
  });

  it('uses the reference year for leap-day checks', () => {
    expect(() => validateAiValue('17', '000229')).not.toThrow();
    expect(errorOf(() => validateAiValue('17', '000229', { referenceYear: 2070 })).code).toBe('GS1_INVALID_DATE');
  });
});

describe('parseElementString', () => {
  it.each([
    ['01095060001343521725123110ABC', { '01': '09506000134352', '17': '251231', '10': 'ABC' }],
    [`${GS}01095060001343521725123110ABC`, { '01': '09506000134352', '17': '251231', '10': 'ABC' }],
    // variable-length followed by GS, then more data
    [`010950600013435210ABC123${GS}17251231`, { '01': '09506000134352', '10': 'ABC123', '17': '251231' }],
    // variable-length at end of data
    ['010950600013435217251231' + '10ABC123', { '01': '09506000134352', '17': '251231', '10': 'ABC123' }],
    // a GS after a fixed-length AI is tolerated, so are a trailing and a doubled GS
    [`0109506000134352${GS}17251231${GS}${GS}21XYZ${GS}`, { '01': '09506000134352', '17': '251231', '21': 'XYZ' }],
    // fixed-length AI that formally needs FNC1 (422) without GS
    ['01095060001343524223603103000500', { '01': '09506000134352', '422': '360', '3103': '000500' }],
    ['00106141412345678908', { '00': '106141412345678908' }],
    // 4-digit AIs and multi-component AIs
    [`8006095060001343520102${GS}10LOT1`, { '8006': '095060001343520102', '10': 'LOT1' }],
    [`01095060001343527003251231143010X`, { '01': '09506000134352', '7003': '2512311430', '10': 'X' }],
  ])('parses %j', (data, ais) => {
    expect(parseElementString(data).ais).toEqual(ais);
  });

  it('lets a variable-length value run to the end of data when the GS is missing', () => {
    // (10) swallows what would have been (17): GS1 data without its separators is ambiguous.
    expect(parseElementString('010950600013435210ABC17251231').ais).toEqual({
      '01': '09506000134352',
      '10': 'ABC17251231',
    });
  });

  it.each([
    ['0109506000134353', 'GS1_CHECK_DIGIT', { ai: '01', value: '09506000134353' }],
    ['00106141412345678907', 'GS1_CHECK_DIGIT', { ai: '00', value: '106141412345678907' }],
    ['010950600013435217251332', 'GS1_INVALID_DATE', { ai: '17', value: '251332' }],
    ['010950600013435217250230', 'GS1_INVALID_DATE', { ai: '17', value: '250230' }],
    ['01095060001343522345', 'GS1_UNKNOWN_AI', { ai: '2345' }],
    [`0109506000134352${GS}2399`, 'GS1_UNKNOWN_AI', { ai: '2399' }],
    ['01095060001343', 'GS1_BAD_LENGTH', { ai: '01', value: '095060001343' }],
    [`0109506000${GS}10A`, 'GS1_BAD_LENGTH', { ai: '01', value: '09506000' }],
    ['0109506000134352101234567890123456789012', 'GS1_BAD_LENGTH', { ai: '10' }],
    ['010950600013435210AB CD', 'GS1_INVALID_CHARACTER', { ai: '10', value: 'AB CD' }],
    ['010950600013435210AB\x04', 'GS1_INVALID_CHARACTER', { ai: '10', value: 'AB\x04' }],
    [`010950600013435210${GS}17251231`, 'GS1_EMPTY_VALUE', { ai: '10', value: '' }],
    ['010950600013435221', 'GS1_EMPTY_VALUE', { ai: '21', value: '' }],
    ['01', 'GS1_EMPTY_VALUE', { ai: '01', value: '' }],
  ] as const)('rejects %j with %s', (data, code, details) => {
    const e = errorOf(() => parseElementString(data));
    expect(e.code).toBe(code);
    expect(e.details).toMatchObject(details);
  });

  it('rejects the same AI with different values, tolerates exact repeats', () => {
    const e = errorOf(() => parseElementString(`10ABC${GS}10ABD`));
    expect(e.code).toBe('VALIDATION');
    expect(e.details).toMatchObject({ ai: '10', value: 'ABD', previous: 'ABC' });
    expect(parseElementString(`0109506000134352${GS}0109506000134352`).ais).toEqual({ '01': '09506000134352' });
  });

  it('rejects data made only of separators', () => {
    expect(errorOf(() => parseElementString(GS)).code).toBe('VALIDATION');
  });
});

describe('parseBracketed', () => {
  it.each([
    ['(01)09506000134352(17)251231(10)ABC', { '01': '09506000134352', '17': '251231', '10': 'ABC' }],
    ['(00)106141412345678908', { '00': '106141412345678908' }],
    ['(01)09506000134352(3103)000500(10)A(B)', { '01': '09506000134352', '3103': '000500', '10': 'A(B)' }],
    ['(01)09506000134352(10)A\\(12)B', { '01': '09506000134352', '10': 'A(12)B' }],
    ['(8006)095060001343520102(10)L', { '8006': '095060001343520102', '10': 'L' }],
  ])('parses %s', (text, ais) => {
    expect(parseBracketed(text).ais).toEqual(ais);
  });

  it.each([
    ['(01)09506000134353', 'GS1_CHECK_DIGIT', '01'],
    ['(01)09506000134352(17)251301', 'GS1_INVALID_DATE', '17'],
    ['(01)09506000134352(999)ABC', 'GS1_UNKNOWN_AI', '999'],
    ['(01)0950600013435', 'GS1_BAD_LENGTH', '01'],
    ['(01)095060001343520', 'GS1_BAD_LENGTH', '01'],
    ['(01)09506000134352(10)AB C', 'GS1_INVALID_CHARACTER', '10'],
    ['(10)(01)09506000134352', 'GS1_EMPTY_VALUE', '10'],
  ])('rejects %s with %s', (text, code, ai) => {
    const e = errorOf(() => parseBracketed(text));
    expect(e.code).toBe(code);
    expect(e.details).toMatchObject({ ai });
  });
});

describe('parseDigitalLink', () => {
  it.each([
    [
      'https://id.example.org/01/09506000134352/10/ABC123?17=251231',
      { '01': '09506000134352', '10': 'ABC123', '17': '251231' },
    ],
    ['https://id.gs1.org/00/106141412345678908', { '00': '106141412345678908' }],
    ['HTTP://ID.EXAMPLE.ORG/01/09506000134352', { '01': '09506000134352' }],
    // resolver stem before the primary key, trailing slash, fragment, non-AI parameters
    [
      'https://brand.example/products/item/01/09506000134352/21/S%2F1/?utm_source=qr&flag&17=250200#top',
      { '01': '09506000134352', '21': 'S/1', '17': '250200' },
    ],
    // convenience names
    ['https://example.com/gtin/09506000134352/lot/ABC/ser/42', { '01': '09506000134352', '10': 'ABC', '21': '42' }],
    ['https://example.com/sscc/106141412345678908', { '00': '106141412345678908' }],
    // percent-decoding in path and query
    ['https://example.com/01/09506000134352/10/AB%2FC%26D?90=x%25y', { '01': '09506000134352', '10': 'AB/C&D', '90': 'x%y' }],
    // GTIN-13 written without the leading zero
    ['https://example.com/01/4006381333931', { '01': '04006381333931' }],
    // 4-digit primary key with qualifiers
    ['https://example.com/8006/095060001343520102/10/L1', { '8006': '095060001343520102', '10': 'L1' }],
    ['https://example.com/414/0614141123452', { '414': '0614141123452' }],
  ])('parses %s', (uri, ais) => {
    const dl = parseDigitalLink(uri);
    expect(dl?.ais).toEqual(ais);
    expect(dl?.warnings).toEqual([]);
  });

  it.each([
    'https://example.com/',
    'https://example.com/about?x=1',
    'https://example.com/2024/10/news', // (10) is not a primary key
    'http://example.com/01',
    'ftp://example.com/01/09506000134352',
    'not a uri',
  ])('returns undefined for the non-GS1 URL %s', (uri) => {
    expect(parseDigitalLink(uri)).toBeUndefined();
  });

  it.each([
    ['https://example.com/01/09506000134353', 'GS1_CHECK_DIGIT', { ai: '01', value: '09506000134353' }],
    ['https://example.com/00/106141412345678907', 'GS1_CHECK_DIGIT', { ai: '00' }],
    ['https://example.com/01/09506000134352?17=251332', 'GS1_INVALID_DATE', { ai: '17', value: '251332' }],
    ['https://example.com/01/09506000134352?9999=1', 'GS1_UNKNOWN_AI', { ai: '9999' }],
    ['https://example.com/01/09506000134352?17=', 'GS1_EMPTY_VALUE', { ai: '17' }],
    ['https://example.com/01/09506000134352?90=A+B', 'GS1_INVALID_CHARACTER', { ai: '90', value: 'A B' }],
    ['https://example.com/01/09506000134352/10/%E0%A4%A', 'GS1_INVALID_CHARACTER', { ai: '10' }],
    ['https://example.com/01/0950600013435212', 'GS1_BAD_LENGTH', { ai: '01' }],
  ] as const)('rejects %s with %s', (uri, code, details) => {
    const e = errorOf(() => parseDigitalLink(uri));
    expect(e.code).toBe(code);
    expect(e.details).toMatchObject(details);
  });

  it('warns about qualifiers out of order and query AIs that are not data attributes', () => {
    const outOfOrder = parseDigitalLink('https://example.com/01/09506000134352/21/S1/10/L1');
    expect(outOfOrder?.ais).toEqual({ '01': '09506000134352', '21': 'S1', '10': 'L1' });
    expect(outOfOrder?.warnings.map((w) => w.code)).toEqual(['GS1_DL_KEY_QUALIFIER']);
    const attr = parseDigitalLink('https://example.com/01/09506000134352?21=S1');
    expect(attr?.warnings.map((w) => w.code)).toEqual(['GS1_DL_ATTRIBUTE']);
  });

  it('rejects a query AI that contradicts the path', () => {
    expect(errorOf(() => parseDigitalLink('https://example.com/01/09506000134352/10/A?10=B')).code).toBe('VALIDATION');
  });
});

describe('checkAiAssociations', () => {
  it('reports each unmet requisite clause of (37) alone', () => {
    const warnings = checkAiAssociations(['37']);
    expect(warnings).toHaveLength(2);
    expect(warnings.every((w) => w.code === 'GS1_REQUISITE')).toBe(true);
    expect(warnings.map((w) => w.message)).toEqual([
      'AI (37) COUNT requires (00) in the same scan',
      'AI (37) COUNT requires one of (02), (8026) in the same scan',
    ]);
  });

  it.each([
    [['00', '02', '37']],
    [['01', '17', '10', '21']],
    [['00']],
    [['01', '3103']],
    [['01', '10', '7004']], // req=01+10
    [['255', '3901']], // 3900-3909 req=255,8020
  ])('finds nothing wrong with %j', (ais) => {
    expect(checkAiAssociations(ais)).toEqual([]);
  });

  it.each([
    [['10'], 'GS1_REQUISITE'],
    [['21'], 'GS1_REQUISITE'],
    [['01', '7004'], 'GS1_REQUISITE'], // 7004 needs (01) with (10)
  ])('warns GS1_REQUISITE for %j', (ais, code) => {
    expect(checkAiAssociations(ais).map((w) => w.code)).toContain(code);
  });

  it('reports each mutual exclusion once, including n-wildcards', () => {
    const warnings = checkAiAssociations(['01', '02', '37']);
    expect(warnings).toHaveLength(3);
    expect(warnings).toEqual(
      expect.arrayContaining([
        { code: 'GS1_EXCLUSION', message: 'AIs (01) and (02) must not be used together' },
        { code: 'GS1_EXCLUSION', message: 'AIs (01) and (37) must not be used together' },
        { code: 'GS1_REQUISITE', message: 'AI (37) COUNT requires (00) in the same scan' },
      ]),
    );
    expect(checkAiAssociations(['01', '3103', '3102'])).toEqual([
      { code: 'GS1_EXCLUSION', message: 'AIs (3102) and (3103) must not be used together' },
    ]);
  });

  it('is applied by the parsers', () => {
    expect(parseElementString('3712').warnings.map((w) => w.code)).toEqual(['GS1_REQUISITE', 'GS1_REQUISITE']);
    expect(parseBracketed('(01)09506000134352(3103)000500(3102)005000').warnings.map((w) => w.code)).toEqual([
      'GS1_EXCLUSION',
    ]);
  });
});
