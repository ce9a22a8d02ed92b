// Time and keys: ISO-8601 parsing to UTC ms, the eventTime() schema, durations, canonical key values, code-point order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalKeyValue,
  compareCodePoints,
  entityKeyId,
  entityKeyValues,
  eventTime,
  formatDurationMs,
  parseDurationMs,
  parseIsoUtcMs,
} from '../../definitions/index.js';
import { civilMs } from './support.js';

describe('parseIsoUtcMs', () => {
  it('reads Z, lower-case z and explicit offsets', () => {
    const base = civilMs(2001, 1, 1);
    expect(base).toBe(978_307_200_000);
    expect(parseIsoUtcMs('2001-01-01T00:00:00Z')).toBe(base);
    expect(parseIsoUtcMs('2001-01-01T00:00:00z')).toBe(base);
    expect(parseIsoUtcMs('2001-01-01T00:00:00+02:00')).toBe(base - 2 * 3_600_000);
    expect(parseIsoUtcMs('2001-01-01T00:00:00+0200')).toBe(base - 2 * 3_600_000);
    expect(parseIsoUtcMs('2001-01-01T00:00:00+02')).toBe(base - 2 * 3_600_000);
    expect(parseIsoUtcMs('2001-01-01T00:00:00-0530')).toBe(base + 5.5 * 3_600_000);
    expect(parseIsoUtcMs('2001-01-01T00:00:00-05:30')).toBe(base + 5.5 * 3_600_000);
    expect(parseIsoUtcMs('2001-01-01T00:00:00+00:00')).toBe(base);
    expect(parseIsoUtcMs('2001-01-01T00:00:00-00:00')).toBe(base);
  });

  it('reads text without a zone as UTC, never local time', () => {
    const previousTz = process.env['TZ'];
    try {
      // Date reads the zone at call time; a local reading would be off by hours here.
      process.env['TZ'] = 'America/Los_Angeles';
      expect(parseIsoUtcMs('2001-06-15T12:30:00')).toBe(civilMs(2001, 6, 15, 12, 30));
      expect(parseIsoUtcMs('2001-06-15 12:30')).toBe(civilMs(2001, 6, 15, 12, 30));
      expect(parseIsoUtcMs('2001-06-15')).toBe(civilMs(2001, 6, 15));
      process.env['TZ'] = 'Asia/Kolkata';
      expect(parseIsoUtcMs('2001-06-15T12:30:00')).toBe(civilMs(2001, 6, 15, 12, 30));
    } finally {
      if (previousTz === undefined) delete process.env['TZ'];
      else process.env['TZ'] = previousTz;
    }
  });

  it('reads fractions, flooring below a millisecond', () => {
    const base = civilMs(2001, 1, 1, 10, 20, 30);
    expect(parseIsoUtcMs('2001-01-01T10:20:30.5Z')).toBe(base + 500);
    expect(parseIsoUtcMs('2001-01-01T10:20:30.05Z')).toBe(base + 50);
    expect(parseIsoUtcMs('2001-01-01T10:20:30.123Z')).toBe(base + 123);
    expect(parseIsoUtcMs('2001-01-01T10:20:30.1239Z')).toBe(base + 123);
    expect(parseIsoUtcMs('2001-01-01T10:20:30.999999999Z')).toBe(base + 999);
    expect(parseIsoUtcMs('2001-01-01T10:20:30,25Z')).toBe(base + 250);
    expect(parseIsoUtcMs('2001-01-01T10:20Z')).toBe(civilMs(2001, 1, 1, 10, 20));
  });

  it('reads dates before 1970 as negative ms (fractions still floor toward -infinity)', () => {
    expect(parseIsoUtcMs('1970-01-01T00:00:00Z')).toBe(0);
    expect(parseIsoUtcMs('1969-12-31T23:59:59.999Z')).toBe(-1);
    expect(parseIsoUtcMs('1969-12-31T23:59:59.9999Z')).toBe(-1);
    expect(parseIsoUtcMs('1969-12-31T23:59:59Z')).toBe(-1000);
    expect(parseIsoUtcMs('1900-03-01T00:00:00Z')).toBe(civilMs(1900, 3, 1));
    expect(parseIsoUtcMs('1600-02-29T12:00:00Z')).toBe(civilMs(1600, 2, 29, 12));
  });

  it('keeps years below 100 literal, and reads expanded years', () => {
    expect(parseIsoUtcMs('0050-01-01T00:00:00Z')).toBe(civilMs(50, 1, 1));
    expect(parseIsoUtcMs('0001-01-01T00:00:00Z')).toBe(-62_135_596_800_000);
    expect(parseIsoUtcMs('0000-03-01T00:00:00Z')).toBe(civilMs(0, 3, 1));
    expect(parseIsoUtcMs('0099-12-31T23:59:59Z')).toBe(civilMs(99, 12, 31, 23, 59, 59));
    expect(parseIsoUtcMs('+002001-01-01T00:00:00Z')).toBe(civilMs(2001, 1, 1));
    expect(parseIsoUtcMs('-000001-01-01T00:00:00Z')).toBe(civilMs(-1, 1, 1));
  });

  it('rejects invalid dates and times', () => {
    for (const text of [
      '2001-02-30',
      '2001-02-29T00:00:00Z',
      '1900-02-29',
      '2001-04-31T00:00:00Z',
      '2001-13-01',
      '2001-00-10',
      '2001-01-00',
      '2001-01-32',
      '2001-01-01T24:00:00Z',
      '2001-01-01T23:60:00Z',
      '2001-01-01T23:59:60Z',
      '2001-01-01T00:00:00+24:00',
      '2001-01-01T00:00:00+01:60',
      '2001-1-01',
      '01-01-2001',
      '2001-01-01T10',
      'yesterday',
      '',
      '978307200000',
    ]) {
      expect(parseIsoUtcMs(text), text).toBeNull();
    }
    expect(parseIsoUtcMs('2000-02-29')).toBe(civilMs(2000, 2, 29));
  });

  it('agrees with Date.prototype.toISOString on random instants (both signs)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }), (ms) => {
        expect(parseIsoUtcMs(new Date(ms).toISOString())).toBe(ms);
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with civil arithmetic on random dates, times and offsets', () => {
    const pad = (n: number, w = 2) => String(n).padStart(w, '0');
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 9999 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 28 }),
        fc.integer({ min: 0, max: 23 }),
        fc.integer({ min: 0, max: 59 }),
        fc.integer({ min: 0, max: 59 }),
        fc.integer({ min: 0, max: 999 }),
        fc.integer({ min: -14 * 60, max: 14 * 60 }),
        (y, mo, d, h, mi, s, ms, offsetMin) => {
          const sign = offsetMin < 0 ? '-' : '+';
          const abs = Math.abs(offsetMin);
          const text = `${pad(y, 4)}-${pad(mo)}-${pad(d)}T${pad(h)}:${pad(mi)}:${pad(s)}.${pad(ms, 3)}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
          expect(parseIsoUtcMs(text)).toBe(civilMs(y, mo, d, h, mi, s, ms) - offsetMin * 60_000);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('eventTime()', () => {
  const schema = eventTime();

  it('accepts integer epoch ms, including negative', () => {
    expect(schema.parse(978_307_200_000)).toBe(978_307_200_000);
    expect(schema.parse(0)).toBe(0);
    expect(schema.parse(-1)).toBe(-1);
  });

  it('rejects fractional, non-finite and unsafe numbers', () => {
    expect(schema.safeParse(1.5).success).toBe(false);
    expect(schema.safeParse(-0.25).success).toBe(false);
    expect(schema.safeParse(Number.NaN).success).toBe(false);
    expect(schema.safeParse(Number.POSITIVE_INFINITY).success).toBe(false);
    expect(schema.safeParse(2 ** 60).success).toBe(false);
  });

  it('reads ISO-8601 text as UTC and rejects other text', () => {
    expect(schema.parse('2001-01-01T00:00:00Z')).toBe(978_307_200_000);
    expect(schema.parse('2001-01-01T00:00:00')).toBe(978_307_200_000);
    expect(schema.parse('2001-01-01T02:00:00+02:00')).toBe(978_307_200_000);
    expect(schema.parse('1969-12-31T23:59:59.999Z')).toBe(-1);
    const bad = schema.safeParse('2001-02-30');
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toContain('ISO-8601');
    expect(schema.safeParse('not a time').success).toBe(false);
  });

  it('reads a Date and rejects an invalid Date and other types', () => {
    expect(schema.parse(new Date(978_307_200_123))).toBe(978_307_200_123);
    expect(schema.parse(new Date(-5))).toBe(-5);
    expect(schema.safeParse(new Date(Number.NaN)).success).toBe(false);
    expect(schema.safeParse(null).success).toBe(false);
    expect(schema.safeParse(true).success).toBe(false);
    expect(schema.safeParse({ ms: 1 }).success).toBe(false);
  });
});

describe('durations', () => {
  it('parses exact multiples of milliseconds', () => {
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('5m')).toBe(300_000);
    expect(parseDurationMs('1h')).toBe(3_600_000);
    expect(parseDurationMs('1d')).toBe(86_400_000);
    expect(parseDurationMs('7d')).toBe(604_800_000);
    expect(parseDurationMs('90m')).toBe(5_400_000);
  });

  it('rejects text that is not a duration', () => {
    for (const text of ['5x', '5', 'm5', '', '0ms', '0s', '05m', '-5m', '1.5h', ' 5m', '5m ', '5 m', '1w', '1y', '5M', '99999999999999999d']) {
      expect(parseDurationMs(text), text).toBeNull();
    }
  });

  it('formats the shortest text', () => {
    expect(formatDurationMs(3_600_000)).toBe('1h');
    expect(formatDurationMs(86_400_000)).toBe('1d');
    expect(formatDurationMs(604_800_000)).toBe('7d');
    expect(formatDurationMs(5_400_000)).toBe('90m');
    expect(formatDurationMs(90_000)).toBe('90s');
    expect(formatDurationMs(1_500)).toBe('1500ms');
    expect(formatDurationMs(1)).toBe('1ms');
  });

  it('round-trips: parse(format(ms)) == ms', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (ms) => {
        expect(parseDurationMs(formatDurationMs(ms))).toBe(ms);
      }),
      { numRuns: 300 },
    );
  });
});

describe('canonical keys', () => {
  it('writes numbers in their shortest form, -0 as "0"', () => {
    expect(canonicalKeyValue(42)).toBe('42');
    expect(canonicalKeyValue(42.0)).toBe('42');
    expect(canonicalKeyValue(-0)).toBe('0');
    expect(canonicalKeyValue(0)).toBe('0');
    expect(canonicalKeyValue(0.1)).toBe('0.1');
    expect(canonicalKeyValue(0.1 + 0.2)).toBe('0.30000000000000004');
    expect(canonicalKeyValue(-3.5)).toBe('-3.5');
    expect(canonicalKeyValue(12345678901234)).toBe('12345678901234');
    expect(canonicalKeyValue(10n)).toBe('10');
  });

  it('keeps strings, spells booleans, and returns null for missing values', () => {
    expect(canonicalKeyValue('SFO')).toBe('SFO');
    expect(canonicalKeyValue('')).toBe('');
    expect(canonicalKeyValue('42')).toBe(canonicalKeyValue(42));
    expect(canonicalKeyValue(true)).toBe('true');
    expect(canonicalKeyValue(false)).toBe('false');
    expect(canonicalKeyValue(undefined)).toBeNull();
    expect(canonicalKeyValue(null)).toBeNull();
    expect(canonicalKeyValue(Number.NaN)).toBeNull();
    expect(canonicalKeyValue(Number.POSITIVE_INFINITY)).toBeNull();
    expect(canonicalKeyValue({ id: 1 })).toBeNull();
    expect(canonicalKeyValue([1])).toBeNull();
  });

  it('number keys round-trip through their canonical text', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
        const text = canonicalKeyValue(x)!;
        expect(Number(text)).toBe(x === 0 ? 0 : x);
        expect(canonicalKeyValue(Number(text))).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it('entity key ids: one key is the value, several a JSON array; the inverse restores them', () => {
    expect(entityKeyId(['SFO'])).toBe('SFO');
    expect(entityKeyId(['SFO', 'LAX'])).toBe('["SFO","LAX"]');
    expect(entityKeyValues('SFO', 1)).toEqual(['SFO']);
    expect(entityKeyValues('["a","b\\"c"]', 2)).toEqual(['a', 'b"c']);
    fc.assert(
      fc.property(fc.array(fc.string(), { minLength: 1, maxLength: 3 }), (values) => {
        expect(entityKeyValues(entityKeyId(values), values.length)).toEqual(values);
      }),
    );
  });
});

describe('compareCodePoints', () => {
  const byCodePoints = (a: string, b: string): number => {
    const ca = Array.from(a, (c) => c.codePointAt(0)!);
    const cb = Array.from(b, (c) => c.codePointAt(0)!);
    for (let i = 0; i < Math.min(ca.length, cb.length); i++) if (ca[i] !== cb[i]) return ca[i]! < cb[i]! ? -1 : 1;
    return Math.sign(ca.length - cb.length);
  };

  it('orders astral characters after the whole BMP, unlike UTF-16 order', () => {
    expect('\u{1F600}' < '\uFFFF').toBe(true); // code units: D83D < FFFF
    expect(compareCodePoints('\u{1F600}', '\uFFFF')).toBe(1);
    expect(compareCodePoints('\uFFFF', '\u{1F600}')).toBe(-1);
    expect(compareCodePoints('\u{1F600}', '\uE000')).toBe(1);
    expect(compareCodePoints('\u{10000}', '\u{1F600}')).toBe(-1);
    expect(compareCodePoints('a\u{1F600}', 'a\uFFFF')).toBe(1);
  });

  it('orders ASCII, prefixes and equal strings', () => {
    expect(compareCodePoints('a', 'b')).toBe(-1);
    expect(compareCodePoints('b', 'a')).toBe(1);
    expect(compareCodePoints('B', 'a')).toBe(-1);
    expect(compareCodePoints('ab', 'a')).toBe(1);
    expect(compareCodePoints('', 'a')).toBe(-1);
    expect(compareCodePoints('abc', 'abc')).toBe(0);
  });

  it('agrees with code point order on random strings (astral included)', () => {
    const chars = fc.constantFrom('a', 'b', 'z', '\u00e9', '\ud7ff', '\ue000', '\uffff', '\u{10000}', '\u{1F600}', '\u{1F601}', '\u{10FFFF}');
    const text = fc.array(chars, { maxLength: 5 }).map((cs) => cs.join(''));
    fc.assert(
      fc.property(text, text, (a, b) => {
        expect(compareCodePoints(a, b)).toBe(byCodePoints(a, b));
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 6 }), fc.string({ unit: 'grapheme', maxLength: 6 }), (a, b) => {
        expect(compareCodePoints(a, b)).toBe(byCodePoints(a, b));
      }),
      { numRuns: 300 },
    );
  });
});
