// approx_percentile's pieces without services: the bucket of every edge 2^E (1 + j/64) is the bucket
// it opens and the double just below is in the bucket before; representatives sit inside their
// bucket within 2^-7 relative error; buckets are monotone in value; the nearest-rank rule; and the
// compiler's rules for the quantile, the field and the window.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { summarizeRegistry } from '../../api/index.js';
import { bucketOf, bucketValue, quantileRank } from '../../definitions/aggregations/percentile.js';
import { compile, compileOrThrow, entity, eventTime, featureView, source } from '../../definitions/index.js';
import { EventDecoder } from '../../ingest/index.js';
import { bucketEdge, nextDown, SPECIAL_VALUES } from '../support/bucket-edges.js';

/** The index of bucket (E, j) as docs/semantics.md defines it: 1 + e*64 + j with e = E + 1023. */
const indexOf = (E: number, j: number): number => 1 + (E + 1023) * 64 + j;

describe('approx_percentile buckets', () => {
  it('every edge opens its bucket and the double below it is in the bucket before, for both signs', () => {
    for (let E = -1022; E <= 1023; E++) {
      for (let j = 0; j < 64; j++) {
        const edge = bucketEdge(E, j);
        const index = indexOf(E, j);
        // below the smallest normal edge lie the subnormals: bucket 0
        const before = E === -1022 && j === 0 ? 0 : index - 1;
        if (bucketOf(edge) !== index || bucketOf(-edge) !== -index || bucketOf(nextDown(edge)) !== before || bucketOf(-nextDown(edge)) !== -before) {
          expect.fail(`2^${E} (1 + ${j}/64): buckets ${[edge, -edge, nextDown(edge), -nextDown(edge)].map(bucketOf).join(', ')}, expected ${[index, -index, before, -before].join(', ')}`);
        }
      }
    }
  });

  it('puts zeros and subnormals in bucket 0, whose value is 0', () => {
    for (const x of [0, -0, Number.MIN_VALUE, -Number.MIN_VALUE, nextDown(2 ** -1022), -nextDown(2 ** -1022)]) expect(bucketOf(x), String(x)).toBe(0);
    expect(Object.is(bucketValue(0), 0)).toBe(true);
    expect(bucketOf(2 ** -1022)).toBe(65);
    expect(bucketOf(Number.MAX_VALUE)).toBe(indexOf(1023, 63));
  });

  it('represents each bucket by its midpoint 2^E (1 + (2j+1)/128), which lies inside it', () => {
    for (const [E, j] of [[0, 0], [0, 63], [-1022, 0], [1023, 63], [3, 17], [-40, 5]] as const) {
      expect(bucketValue(indexOf(E, j))).toBe(2 ** E * (1 + (2 * j + 1) / 128));
      expect(bucketValue(-indexOf(E, j))).toBe(-(2 ** E) * (1 + (2 * j + 1) / 128));
    }
    for (let index = 65; index <= indexOf(1023, 63); index++) {
      if (bucketOf(bucketValue(index)) !== index || bucketOf(bucketValue(-index)) !== -index) expect.fail(`bucket ${index}: its value ${bucketValue(index)} lies in bucket ${bucketOf(bucketValue(index))}`);
    }
  });

  it('keeps the relative error within 2^-7 for any normal double, and reaches it at a power of two', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
        const value = bucketValue(bucketOf(x));
        if (Math.abs(x) < 2 ** -1022) expect(value).toBe(0);
        else expect(Math.abs(x - value) / Math.abs(x)).toBeLessThanOrEqual(2 ** -7);
      }),
      { numRuns: 20_000 },
    );
    expect(Math.abs(1 - bucketValue(bucketOf(1)))).toBe(2 ** -7);
  });

  it('orders buckets as it orders values', () => {
    const anyValue = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(...SPECIAL_VALUES));
    fc.assert(
      fc.property(anyValue, anyValue, (x, y) => {
        if (x < y) expect(bucketOf(x)).toBeLessThanOrEqual(bucketOf(y));
      }),
      { numRuns: 20_000 },
    );
  });

  it('refuses a value that is not finite, which a numeric field never lets through', () => {
    for (const x of [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN]) expect(() => bucketOf(x)).toThrow(/not finite/);
    // z.number() (and z.coerce.number()) reject non-finite numbers: such an event is a bad event
    const readings = source({ name: 'r', topic: 'r', schema: z.object({ ts: eventTime(), k: z.string(), x: z.number().nullable(), y: z.coerce.number() }), eventTimeField: 'ts' });
    const compiled = compileOrThrow([featureView({ name: 'v', source: readings, entity: entity({ name: 'e', joinKeys: ['k'] }), features: { p: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: 0.5 } } })]);
    const decoder = new EventDecoder(compiled, 'r', () => 0);
    expect(decoder.decodeValue({ ts: 0, k: 'a', x: 1, y: '2' }).ok).toBe(true);
    for (const bad of [{ x: Number.POSITIVE_INFINITY, y: 1 }, { x: Number.NaN, y: 1 }, { x: 1, y: 'Infinity' }, { x: 1, y: '1e400' }]) {
      const result = decoder.decodeValue({ ts: 0, k: 'a', ...bad });
      expect(result.ok ? null : result.bad.code, JSON.stringify(bad)).toBe('TM_EVENT_SCHEMA');
    }
  });

  it('takes the nearest rank: r = max(0, ceil(q*n) - 1)', () => {
    expect([0, 0.25, 0.5, 0.75, 1].map((q) => quantileRank(q, 4))).toEqual([0, 0, 1, 2, 3]);
    expect([0, 0.5, 0.9, 0.99, 1].map((q) => quantileRank(q, 1))).toEqual([0, 0, 0, 0, 0]);
    expect(quantileRank(0.9, 10)).toBe(8);
    expect(quantileRank(0.99, 1000)).toBe(989);
    expect(quantileRank(0.5, 5)).toBe(2);
  });
});

describe('approx_percentile: compile rules', () => {
  const readings = source({ name: 'readings', topic: 'readings', schema: z.object({ ts: eventTime(), k: z.string(), x: z.number().nullable(), s: z.string() }), eventTimeField: 'ts' });
  const thing = entity({ name: 'thing', joinKeys: ['k'] });
  const errorsOf = (features: Record<string, unknown>): [string, string | undefined, string][] => {
    const result = compile([featureView({ name: 'bad', source: readings, entity: thing, features: features as never })]);
    return result.ok ? [] : result.errors.map((e) => [e.code, e.feature, e.message]);
  };

  it('needs a quantile from 0 to 1, a numeric field and a window, each a coded error naming the view and feature', () => {
    const errors = errorsOf({
      no_quantile: { agg: 'approx_percentile', field: 'x', window: '1h' },
      below: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: -0.1 },
      above: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: 1.5 },
      not_a_number: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: Number.NaN },
      infinite: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: Number.POSITIVE_INFINITY },
      text: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: '0.5' },
      on_text: { agg: 'approx_percentile', field: 's', window: '1h', quantile: 0.5 },
      no_window: { agg: 'approx_percentile', field: 'x', quantile: 0.5 },
      on_sum: { agg: 'sum', field: 'x', window: '1h', quantile: 0.5 },
    });
    expect(errors.map(([code, feature]) => [code, feature])).toEqual([
      ['TM_DEF_BAD_QUANTILE', 'no_quantile'],
      ['TM_DEF_BAD_QUANTILE', 'below'],
      ['TM_DEF_BAD_QUANTILE', 'above'],
      ['TM_DEF_BAD_QUANTILE', 'not_a_number'],
      ['TM_DEF_BAD_QUANTILE', 'infinite'],
      ['TM_DEF_BAD_QUANTILE', 'text'],
      ['TM_DEF_NON_NUMERIC_FIELD', 'on_text'],
      ['TM_DEF_BAD_FEATURE', 'no_window'],
      ['TM_DEF_BAD_FEATURE', 'on_sum'],
    ]);
    expect(errors.map(([, , message]) => message)).toEqual(
      expect.arrayContaining(['approx_percentile needs a quantile', 'approx_percentile quantile 1.5 is not a number from 0 to 1', 'approx_percentile quantile NaN is not a number from 0 to 1', 'approx_percentile quantile "0.5" is not a number from 0 to 1', 'quantile applies only to approx_percentile']),
    );
  });

  it('keeps the quantile in the plan of its feature only, so registries without it hash as before', () => {
    const { registry } = compileOrThrow([
      featureView({
        name: 'ok',
        source: readings,
        entity: thing,
        features: { p0: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: 0 }, p1: { agg: 'approx_percentile', field: 'x', window: '1h', quantile: 1 }, n: { agg: 'count', window: '1h' } },
      }),
    ]);
    const [p0, p1, n] = registry.views[0]!.features;
    expect([p0!.quantile, p1!.quantile]).toEqual([0, 1]);
    expect(n).not.toHaveProperty('quantile');
    // no numeric slot, one value slot for the bucket counts
    expect(registry.views[0]!.groups[0]).toMatchObject({ width: 1, valueWidth: 2 });
    // `tidemark validate` tells a p0 from a p100
    expect(summarizeRegistry(registry).filter((l) => l.includes('approx_percentile'))).toEqual([
      '    p0: approx_percentile(x, quantile 0) window 1h = 12 x 5m tiles',
      '    p1: approx_percentile(x, quantile 1) window 1h = 12 x 5m tiles',
    ]);
  });
});
