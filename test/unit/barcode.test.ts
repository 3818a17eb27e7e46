/**
 * Unit tests for parseBarcode / labelPayload (src/domain/barcode.ts): every input form a scanner
 * can send (AIM symbology identifiers, GS separators, brackets, Digital Link URIs, bare wedge
 * digits, EAN/UPC, the post's own labels, opaque codes) and the errors each can raise. Expected
 * values are independent literals (published GS1 / EAN examples), never computed with the code
 * under test.
 */

import { describe, expect, it } from 'vitest';
import { errorOf } from '../helpers/errors.ts';
import { labelPayload, parseBarcode, type ParsedCode } from '../../src/domain/barcode.ts';

const GS = '\x1d';
const GTIN = '09506000134352';
const SSCC = '106141412345678908';


describe('parseBarcode: GS1 with AIM symbology identifiers', () => {
  it.each([
    [`]C101${GTIN}1725123110ABC`, ']C1'],
    [`]d201${GTIN}17251231${GS}10ABC`, ']d2'],
    [`]Q301${GTIN}1725123110ABC`, ']Q3'],
    [`]e001${GTIN}1725123110ABC`, ']e0'],
    [`]J101${GTIN}1725123110ABC`, ']J1'],
    [`]C1${GS}01${GTIN}1725123110ABC`, ']C1'],
    [`]d2(01)${GTIN}(17)251231(10)ABC`, ']d2'],
  ])('parses %j', (code, symbology) => {
    expect(parseBarcode(code)).toEqual<ParsedCode>({
      kind: 'gs1',
      raw: code,
      symbology,
      ais: { '01': GTIN, '17': '251231', '10': 'ABC' },
      gtin: GTIN,
      batch: 'ABC',
      expiry: '2025-12-31',
      warnings: [],
    });
  });

  it('derives every field from a logistics label', () => {
    const code = `]C100${SSCC}02${GTIN}3712${GS}10LOT-7${GS}21SER9${GS}3025`;
    expect(parseBarcode(code)).toEqual<ParsedCode>({
      kind: 'gs1',
      raw: code,
      symbology: ']C1',
      ais: { '00': SSCC, '02': GTIN, '37': '12', '10': 'LOT-7', '21': 'SER9', '30': '25' },
      sscc: SSCC,
      gtin: GTIN,
      count: 12,
      quantity: 25,
      batch: 'LOT-7',
      serial: 'SER9',
      // (21) is a serial of a GTIN in (01); here it sits next to (02): a requisite warning only.
      warnings: [
        { code: 'GS1_REQUISITE', message: 'AI (21) SERIAL requires one of (01), (03), (8006) in the same scan' },
      ],
    });
  });

  it('prefers (01) over (02) for gtin', () => {
    const parsed = parseBarcode(`(01)${GTIN}(02)10012345678902(37)3`);
    expect(parsed.gtin).toBe(GTIN);
  });

  it('keeps leading zeros in values and converts counts to numbers', () => {
    const parsed = parseBarcode(`]C100${SSCC}02${GTIN}37007`);
    expect(parsed.ais['37']).toBe('007');
    expect(parsed.count).toBe(7);
    expect(parsed.warnings).toEqual([]);
  });

  it('treats variable-length data at the end and before GS the same way', () => {
    const atEnd = parseBarcode(`]C101${GTIN}1725123110ABC123`);
    const beforeGs = parseBarcode(`]C101${GTIN}10ABC123${GS}17251231`);
    expect(atEnd.ais).toEqual(beforeGs.ais);
    expect(beforeGs.batch).toBe('ABC123');
    expect(beforeGs.expiry).toBe('2025-12-31');
  });
});

describe('parseBarcode: GS1 without symbology identifier', () => {
  it.each([
    // GS separated with leading FNC1 and the CR/LF keyboard-wedge scanners append
    [`${GS}01${GTIN}10ABC${GS}17251231\r\n`, { '01': GTIN, '10': 'ABC', '17': '251231' }],
    [`01${GTIN}10ABC${GS}17251231`, { '01': GTIN, '10': 'ABC', '17': '251231' }],
    // bracketed human-readable text
    [`(01)${GTIN}(17)251231(10)ABC`, { '01': GTIN, '17': '251231', '10': 'ABC' }],
    [`  (00)${SSCC}  `, { '00': SSCC }],
    // bare keyboard-wedge digit strings
    [`01${GTIN}17251231`, { '01': GTIN, '17': '251231' }],
    [`00${SSCC}`, { '00': SSCC }],
    [`01${GTIN}3103000500`, { '01': GTIN, '3103': '000500' }],
    [`01${GTIN}21123456`, { '01': GTIN, '21': '123456' }],
    // ISO/IEC 15434 format 05 envelope
    [`[)>\x1e05${GS}01${GTIN}10ABC\x1e\x04`, { '01': GTIN, '10': 'ABC' }],
  ])('parses %j', (code, ais) => {
    const parsed = parseBarcode(code);
    expect(parsed.kind).toBe('gs1');
    expect(parsed.raw).toBe(code);
    expect(parsed.symbology).toBeUndefined();
    expect(parsed.ais).toEqual(ais);
  });

  it.each([
    `01${GTIN}172512311`, // stray trailing digit: not a valid AI sequence
    `01${GTIN}17251332`, // invalid date in a bare string: not GS1
    '0109506000134353', // wrong check digit in a bare string: not GS1
    '3710', // parses, but holds no GS1 key
    '987654321', // (98) internal data only
    '123', // too short for anything
    '1234567890', // (12) 345678 is no date
  ])('keeps the bare digit string %s opaque', (code) => {
    expect(parseBarcode(code)).toEqual<ParsedCode>({ kind: 'opaque', raw: code, ais: {}, warnings: [] });
  });
});

describe('parseBarcode: GS1 Digital Link', () => {
  it('parses the primary key and qualifiers from the path and attributes from the query', () => {
    const uri = `https://id.example.org/01/${GTIN}/10/ABC123?17=251231`;
    expect(parseBarcode(uri)).toEqual<ParsedCode>({
      kind: 'gs1',
      raw: uri,
      ais: { '01': GTIN, '10': 'ABC123', '17': '251231' },
      gtin: GTIN,
      batch: 'ABC123',
      expiry: '2025-12-31',
      warnings: [],
    });
  });

  it.each([
    [`https://example.com/gtin/${GTIN}/ser/S%2F1`, { '01': GTIN, '21': 'S/1' }],
    [`https://id.gs1.org/00/${SSCC}?37=5&02=${GTIN}`, { '00': SSCC, '37': '5', '02': GTIN }],
    [`]Q1https://resolver.example/p/01/${GTIN}/21/7?utm=x#frag`, { '01': GTIN, '21': '7' }],
  ])('parses %s', (uri, ais) => {
    expect(parseBarcode(uri).ais).toEqual(ais);
  });

  it('records a non-GS1 AIM identifier in front of a Digital Link', () => {
    expect(parseBarcode(`]Q1https://id.example.org/01/${GTIN}`).symbology).toBe(']Q1');
  });

  it.each(['https://example.com/', 'https://posko.example/scan?id=42', 'http://example.com/2024/10/article'])(
    'keeps the ordinary URL %s opaque',
    (uri) => {
      expect(parseBarcode(uri)).toMatchObject({ kind: 'opaque', raw: uri, ais: {} });
    },
  );

  it.each([
    ['https://id.example.org/01/09506000134353', 'GS1_CHECK_DIGIT'],
    [`https://id.example.org/01/${GTIN}?17=251301`, 'GS1_INVALID_DATE'],
    [`https://id.example.org/01/${GTIN}?17=`, 'GS1_EMPTY_VALUE'],
    [`https://id.example.org/01/${GTIN}?12345=1`, 'GS1_UNKNOWN_AI'],
  ])('rejects %s with %s', (uri, code) => {
    expect(errorOf(() => parseBarcode(uri)).code).toBe(code);
  });
});

describe('parseBarcode: GS1 errors', () => {
  it.each([
    [`]C101095060001343${'53'}`, 'GS1_CHECK_DIGIT', { ai: '01', value: '09506000134353' }],
    [`(00)106141412345678907`, 'GS1_CHECK_DIGIT', { ai: '00', value: '106141412345678907' }],
    [`${GS}01${GTIN}17251332`, 'GS1_INVALID_DATE', { ai: '17', value: '251332' }],
    [`(01)${GTIN}(17)250229`, 'GS1_INVALID_DATE', { ai: '17', value: '250229' }],
    [`]C101${GTIN}2345`, 'GS1_UNKNOWN_AI', { ai: '2345' }],
    [`(01)${GTIN}(999)1`, 'GS1_UNKNOWN_AI', { ai: '999' }],
    [`]d20109506000134`, 'GS1_BAD_LENGTH', { ai: '01', value: '09506000134' }],
    [`(10)123456789012345678901`, 'GS1_BAD_LENGTH', { ai: '10' }],
    [`]C101${GTIN}10AB CD`, 'GS1_INVALID_CHARACTER', { ai: '10', value: 'AB CD' }],
    [`(01)${GTIN}(10)Ünïcode`, 'GS1_INVALID_CHARACTER', { ai: '10' }],
    [`]C101${GTIN}10${GS}17251231`, 'GS1_EMPTY_VALUE', { ai: '10', value: '' }],
    [`]e001${GTIN}21`, 'GS1_EMPTY_VALUE', { ai: '21', value: '' }],
  ] as const)('rejects %j with %s', (code, errorCode, details) => {
    const e = errorOf(() => parseBarcode(code));
    expect(e.code).toBe(errorCode);
    expect(e.status).toBe(422);
    expect(e.details).toMatchObject(details);
  });

  it('rejects one AI with two different values as VALIDATION', () => {
    const e = errorOf(() => parseBarcode(`(01)${GTIN}(10)A(10)B`));
    expect(e.code).toBe('VALIDATION');
    expect(e.details).toMatchObject({ ai: '10' });
  });
});

describe('parseBarcode: dates and the reference year', () => {
  it.each([
    ['240200', undefined, '2024-02-29'], // day 00, February, leap year
    ['250200', undefined, '2025-02-28'], // day 00, February, common year
    ['000200', undefined, '2000-02-29'],
    ['000200', 2070, '2100-02-28'], // 2100 is not a leap year
    ['250900', undefined, '2025-09-30'],
    ['760101', undefined, '2076-01-01'], // +50 years: still this century
    ['770101', undefined, '1977-01-01'], // +51 years: previous century
    ['100101', 2060, '2110-01-01'], // -50 years: next century
    ['110101', 2060, '2011-01-01'],
  ])('(17)%s with reference year %s -> expiry %s', (yymmdd, ref, expiry) => {
    const parsed = parseBarcode(`(01)${GTIN}(17)${yymmdd}`, ref === undefined ? undefined : { referenceYear: ref });
    expect(parsed.expiry).toBe(expiry);
    expect(parsed.ais['17']).toBe(yymmdd);
  });

  it.each([
    ['251301', undefined],
    ['250230', undefined],
    ['000229', 2070],
    ['250132', undefined],
  ])('(17)%s with reference year %s is GS1_INVALID_DATE', (yymmdd, ref) => {
    const e = errorOf(() => parseBarcode(`]C101${GTIN}17${yymmdd}`, ref === undefined ? undefined : { referenceYear: ref }));
    expect(e.code).toBe('GS1_INVALID_DATE');
    expect(e.details).toMatchObject({ ai: '17', value: yymmdd });
  });
});

describe('parseBarcode: requisite and exclusion warnings', () => {
  it('warns, but accepts, (37) alone', () => {
    const parsed = parseBarcode(']C13710');
    expect(parsed.kind).toBe('gs1');
    expect(parsed.count).toBe(10);
    expect(parsed.warnings.length).toBeGreaterThan(0);
    expect(parsed.warnings.every((w) => w.code === 'GS1_REQUISITE')).toBe(true);
    expect(parsed.warnings.map((w) => w.message).join(' ')).toContain('(00)');
  });

  it('warns about (10) without a GTIN', () => {
    expect(parseBarcode('(10)ABC').warnings).toEqual([
      { code: 'GS1_REQUISITE', message: 'AI (10) BATCH/LOT requires one of (01), (02), (03), (8006), (8026) in the same scan' },
    ]);
  });

  it('warns about mutually exclusive AIs', () => {
    const parsed = parseBarcode(`(01)${GTIN}(3103)000500(3102)005000`);
    expect(parsed.warnings).toEqual([
      { code: 'GS1_EXCLUSION', message: 'AIs (3102) and (3103) must not be used together' },
    ]);
  });

  it('has no warnings for a complete logistic unit', () => {
    expect(parseBarcode(`(00)${SSCC}(02)${GTIN}(37)10`).warnings).toEqual([]);
  });
});

describe('parseBarcode: EAN / UPC / GTIN-14', () => {
  it.each([
    ['4006381333931', 'ean', '04006381333931'],
    ['5901234123457', 'ean', '05901234123457'],
    ['96385074', 'ean', '00000096385074'],
    ['73513537', 'ean', '00000073513537'],
    ['036000291452', 'upc', '00036000291452'],
    ['012345678905', 'upc', '00012345678905'],
    ['10012345678902', 'ean', '10012345678902'],
    [GTIN, 'ean', GTIN],
  ])('parses %s as %s', (code, kind, gtin14) => {
    expect(parseBarcode(code)).toEqual<ParsedCode>({
      kind: kind as ParsedCode['kind'],
      raw: code,
      ais: { '01': gtin14 },
      gtin: gtin14,
      warnings: [],
    });
  });

  it.each([
    [']E04006381333931', ']E0', 'ean'],
    [']E496385074', ']E4', 'ean'],
    [']E0036000291452', ']E0', 'upc'],
    ['4006381333931\r\n', undefined, 'ean'],
  ])('accepts %j with symbology %s', (code, symbology, kind) => {
    const parsed = parseBarcode(code);
    expect(parsed.kind).toBe(kind);
    expect(parsed.symbology).toBe(symbology);
    expect(parsed.raw).toBe(code);
  });

  it.each([
    '4006381333932', // EAN-13
    '5901234123458',
    '96385075', // EAN-8
    '73513538',
    '036000291453', // UPC-A
    '012345678900',
    '10012345678903', // GTIN-14
    ']E04006381333930',
    ']E496385070',
  ])('rejects %s with EAN_CHECK_DIGIT (never opaque)', (code) => {
    const e = errorOf(() => parseBarcode(code));
    expect(e.code).toBe('EAN_CHECK_DIGIT');
    expect(e.status).toBe(422);
    expect(e.message).toMatch(/check digit/);
  });

  it('says what was expected', () => {
    const e = errorOf(() => parseBarcode('4006381333932'));
    expect(e.message).toBe("EAN-13 '4006381333932' has a wrong check digit: expected 1, got 2");
    expect(e.details).toMatchObject({ value: '4006381333932', expected: 1 });
  });
});

describe('parseBarcode: post labels', () => {
  it.each([
    ['PSK1:POSKO-01:000123', 'POSKO-01', '000123'],
    ['psk1:posko-01:abc-9', 'POSKO-01', 'ABC-9'],
    ['PSK1:A:B\r\n', 'A', 'B'],
    ['PSK1:0123456789ABCDEF:0123456789ABCDEF0123456789ABCDEF', '0123456789ABCDEF', '0123456789ABCDEF0123456789ABCDEF'],
  ])('parses %j', (code, post, serial) => {
    expect(parseBarcode(code)).toEqual<ParsedCode>({
      kind: 'label',
      raw: code,
      ais: {},
      label: { post, serial },
      warnings: [],
    });
  });

  it('accepts a label behind a plain QR symbology identifier', () => {
    expect(parseBarcode(']Q1PSK1:P1:S1')).toMatchObject({ kind: 'label', symbology: ']Q1', label: { post: 'P1', serial: 'S1' } });
  });

  it.each([
    'PSK1:',
    'PSK1:POST',
    'PSK1:POST:',
    'PSK1::SERIAL',
    'PSK1:POST_1:S', // '_' not allowed
    'PSK1:0123456789ABCDEFG:S', // post longer than 16
    'PSK1:P:0123456789ABCDEF0123456789ABCDEFG', // serial longer than 32
    'PSK1:P:S:extra',
  ])('rejects the malformed label %s with VALIDATION', (code) => {
    expect(errorOf(() => parseBarcode(code)).code).toBe('VALIDATION');
  });

  it('builds label payloads that parse back', () => {
    expect(labelPayload('posko-01', 'abc-9')).toBe('PSK1:POSKO-01:ABC-9');
    expect(labelPayload('P', '1')).toBe('PSK1:P:1');
    const parsed = parseBarcode(labelPayload('kota-3', 'x-42'));
    expect(parsed.label).toEqual({ post: 'KOTA-3', serial: 'X-42' });
  });

  it.each([
    ['', 'S'],
    ['POST 1', 'S'],
    ['0123456789ABCDEFG', 'S'],
    ['P', ''],
    ['P', 'A:B'],
    ['P', '0123456789ABCDEF0123456789ABCDEFG'],
  ])('labelPayload(%j, %j) throws VALIDATION', (post, serial) => {
    expect(errorOf(() => labelPayload(post, serial)).code).toBe('VALIDATION');
  });
});

describe('parseBarcode: opaque codes', () => {
  it.each([
    'hello world',
    'BOX-17/A',
    'ABC\x04DEF',
    '(021) 5551234', // (021) is not a GS1 AI: not bracketed GS1
    'https://example.com/about',
    '12345', // 5 digits, no AI sequence
    '123456789012345678901234567890', // long number that is not GS1
    '{"id":42}',
  ])('accepts %j as opaque', (code) => {
    expect(parseBarcode(code)).toEqual<ParsedCode>({ kind: 'opaque', raw: code, ais: {}, warnings: [] });
  });

  it('keeps the raw text, including what was trimmed, and any symbology identifier', () => {
    expect(parseBarcode('  crate 7\r\n')).toEqual<ParsedCode>({ kind: 'opaque', raw: '  crate 7\r\n', ais: {}, warnings: [] });
    expect(parseBarcode(']C0CRATE-7')).toEqual<ParsedCode>({
      kind: 'opaque',
      raw: ']C0CRATE-7',
      symbology: ']C0',
      ais: {},
      warnings: [],
    });
  });

  it.each(['', '   ', '\r\n', ' \t\r\n', ']C1', ']C1\r\n', GS, `${GS}${GS}\r\n`])(
    'rejects the empty code %j with VALIDATION',
    (code) => {
      const e = errorOf(() => parseBarcode(code));
      expect(e.code).toBe('VALIDATION');
      expect(e.message).toBe('code is empty');
    },
  );

  it('rejects a reference year that is not a year, whatever the code', () => {
    expect(errorOf(() => parseBarcode('hello', { referenceYear: 1.5 })).code).toBe('VALIDATION');
    expect(errorOf(() => parseBarcode(`01${GTIN}17251231`, { referenceYear: Number.NaN })).code).toBe('VALIDATION');
  });

  it('rejects a non-string with VALIDATION', () => {
    expect(errorOf(() => parseBarcode(42 as unknown as string)).code).toBe('VALIDATION');
  });
});

describe('digits under a non-EAN symbology identifier', () => {
  it('keeps Code 128 / Code 39 / plain QR digits opaque instead of checking them as an EAN', () => {
    for (const code of [']C012345670', ']A04006381333932', ']Q1123456789012']) {
      expect(parseBarcode(code).kind).toBe('opaque');
    }
  });
  it('still checks digits under an EAN identifier', () => {
    expect(() => parseBarcode(']E04006381333932')).toThrow(/check digit/i);
    expect(parseBarcode(']E04006381333931').kind).toBe('ean');
  });
});
