// The Redis store's packed tiles and key names, without a server: every tile round-trips exactly,
// packed text compares bytewise as compareCodePoints compares strings (what the Lua merge relies
// on), bucket counts pack to one form whatever their insertion order (what the Lua merge writes),
// and entity keys map one-to-one onto UTF-8-safe key text.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareCodePoints, type BucketCounts, type Scalar, type Tile } from '../../definitions/index.js';
import { decodeTile, encodeTile, redisKeyText } from '../../online/redis.js';

/** Any JS string: arbitrary UTF-16 code units, lone surrogates included. */
const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)), maxLength: 12 });
const anyDouble = fc.oneof(fc.double(), fc.constantFrom(Number.NaN, -0, 0, Number.MIN_VALUE, -Number.MAX_VALUE, 2 ** 53 + 2, 0.1));
const anyValue: fc.Arbitrary<Scalar> = fc.oneof(fc.constant(null), fc.boolean(), anyDouble, anyText);
/** approx_percentile's bucket counts: any bucket index of a double, counts up to 2^53. */
const anyBucketCounts: fc.Arbitrary<BucketCounts> = fc
  .uniqueArray(fc.tuple(fc.integer({ min: -131_008, max: 131_008 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), { minLength: 1, maxLength: 8, selector: ([bucket]) => bucket })
  .map((pairs) => new Map(pairs));

const anyTile: fc.Arbitrary<Tile> = fc.record({
  minTs: anyDouble,
  maxTs: anyDouble,
  nums: fc.array(anyDouble, { maxLength: 12 }),
  vals: fc.array(fc.oneof(anyValue, anyBucketCounts), { maxLength: 4 }),
});

/** The packed bytes of a text value, after its tag and length. */
function textBytes(text: string): Buffer {
  return encodeTile({ minTs: 0, maxTs: 0, nums: [], vals: [text] }).subarray(16 + 5);
}

describe('Redis packed tiles', () => {
  it('round-trip every tile exactly (NaN, -0, any double, any text)', () => {
    fc.assert(
      fc.property(anyTile, (tile) => {
        expect(decodeTile(encodeTile(tile), tile.nums.length, tile.vals.length)).toEqual(tile);
      }),
      { numRuns: 500 },
    );
  });

  it('order packed text bytewise exactly as compareCodePoints orders the strings', () => {
    fc.assert(
      fc.property(anyText, anyText, (a, b) => {
        expect(Math.sign(Buffer.compare(textBytes(a), textBytes(b)))).toBe(compareCodePoints(a, b));
      }),
      { numRuns: 2000 },
    );
    for (const [a, b] of [
      ['\uFFFF', '\u{1F600}'],
      ['\uD7FF', '\uE000'],
      ['a', 'a\0'],
      ['\uDC00', '\uD800'],
    ] as const) {
      expect(Math.sign(Buffer.compare(textBytes(a), textBytes(b))), `${escape(a)} vs ${escape(b)}`).toBe(compareCodePoints(a, b));
    }
  });

  it('pack bucket counts in ascending bucket order, whatever order they were counted in', () => {
    fc.assert(
      fc.property(anyBucketCounts, (counts) => {
        const reversed = new Map([...counts].reverse());
        const packed = encodeTile({ minTs: 0, maxTs: 0, nums: [], vals: [counts] });
        expect(encodeTile({ minTs: 0, maxTs: 0, nums: [], vals: [reversed] })).toEqual(packed);
        const buckets = Array.from({ length: counts.size }, (_, i) => packed.readInt32LE(16 + 5 + 12 * i));
        expect(buckets).toEqual([...counts.keys()].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });

  it('refuse a corrupt tile rather than misread it', () => {
    const packed = encodeTile({ minTs: 1, maxTs: 2, nums: [3], vals: ['x'] });
    expect(() => decodeTile(packed, 2, 1)).toThrow(/corrupt packed tile/);
    expect(() => decodeTile(Buffer.concat([packed, Buffer.from([0])]), 1, 1)).toThrow(/corrupt packed tile/);
  });
});

describe('Redis key text of entity keys', () => {
  it('is one-to-one and survives UTF-8, lone surrogates included', () => {
    fc.assert(
      fc.property(anyText, anyText, (a, b) => {
        const ka = redisKeyText(a);
        expect(Buffer.from(ka, 'utf8').toString('utf8')).toBe(ka);
        if (a !== b) expect(ka).not.toBe(redisKeyText(b));
      }),
      { numRuns: 2000 },
    );
    expect(redisKeyText('SFO')).toBe('SFO');
    expect(redisKeyText('["SFO","LAX"]')).toBe('["SFO","LAX"]');
    expect(redisKeyText('\uD800')).toBe('\0d800');
    expect(redisKeyText('\0d800')).not.toBe(redisKeyText('\uD800'));
  });
});
