// fast-check arbitraries of feature views over a small test schema, shared by the fuzz tests of
// the in-memory store and of the store suite: small windows and hops whose least common multiple
// is 100 ms, so tile edges are everywhere.
import fc from 'fast-check';
import type { Duration, FeatureSpec } from '../../definitions/index.js';

export type Spec = FeatureSpec<{ ts: number; k: string; n: number; x: number | null; s: string | null }>;

/** Hops whose least common multiple is 100, so every multiple of 100 is an edge of every tile. */
export const HOPS = [1, 2, 4, 5, 10, 20, 25, 50] as const;
export const WINDOWS = [10, 20, 25, 30, 40, 50, 60, 75, 100] as const;
export const ms = (n: number): Duration => `${n}ms`;

/** approx_percentile's quantiles: the usual ones, the ends, and any in between. */
export const quantileArb = fc.oneof(fc.constantFrom(0, 0.5, 0.9, 0.99, 1), fc.double({ min: 0, max: 1, noNaN: true }));

export const windowHop = fc
  .constantFrom(...WINDOWS)
  .chain((w) => fc.constantFrom(...HOPS.filter((h) => w % h === 0)).map((h) => ({ window: ms(w), hop: ms(h) })));

export const userFeatures: fc.Arbitrary<Record<string, Spec>> = fc
  .record({
    n: windowHop,
    n_x: windowHop,
    sum: windowHop,
    mean: windowHop,
    min: windowHop,
    max: windowHop,
    var: windowHop,
    sd: windowHop,
    last_x_w: windowHop,
    last_s_w: windowHop,
    first_x_w: windowHop,
    first_s_w: windowHop,
    p_x: windowHop,
    p_x_quantile: quantileArb,
    latest_s_hop: fc.constantFrom(...HOPS),
    latest_x_ttl: fc.integer({ min: 1, max: 80 }),
    latest_x_ttl_hop: fc.constantFrom(...HOPS),
  })
  .map((r) => ({
    n: { agg: 'count', ...r.n },
    n_x: { agg: 'count', field: 'x', ...r.n_x },
    sum: { agg: 'sum', field: 'x', ...r.sum },
    mean: { agg: 'mean', field: 'x', ...r.mean },
    min: { agg: 'min', field: 'x', ...r.min },
    max: { agg: 'max', field: 'x', ...r.max },
    var: { agg: 'var', field: 'x', ...r.var },
    sd: { agg: 'stddev', field: 'x', ...r.sd },
    last_x_w: { agg: 'last', field: 'x', ...r.last_x_w },
    last_s_w: { agg: 'last', field: 's', ...r.last_s_w },
    first_x_w: { agg: 'first', field: 'x', ...r.first_x_w },
    first_s_w: { agg: 'first', field: 's', ...r.first_s_w },
    p_x: { agg: 'approx_percentile', field: 'x', quantile: r.p_x_quantile, ...r.p_x },
    latest_s: { agg: 'last', field: 's', hop: ms(r.latest_s_hop) },
    latest_x_default_hop: { agg: 'last', field: 'x' },
    latest_x_ttl: { agg: 'last', field: 'x', ttl: ms(r.latest_x_ttl), hop: ms(r.latest_x_ttl_hop) },
  }));

export const pairFeatures: fc.Arbitrary<Record<string, Spec>> = fc.record({ n: windowHop, mean: windowHop, last: windowHop }).map((r) => ({
  n: { agg: 'count', ...r.n },
  mean: { agg: 'mean', field: 'x', ...r.mean },
  last: { agg: 'last', field: 's', ...r.last },
  latest: { agg: 'last', field: 'x', hop: '10ms' },
}));

