// KS against scipy: ks_2samp's statistic and p-value on regenerated samples (exact and
// asymptotic branches, ties, tiny p-values), the p-value from D alone, kstwo.sf and smirnov
// across their branches (fixtures from scripts/monitor-fixtures.py). And the binned KS: its
// proven bound D_binned <= D <= D_binned + errorBound on random and heavily tied data.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { binCounts, decileEdges, quantileEdges } from '../../monitor/psi.js';
import { binnedKs, kolmogorovTwoSidedSf, ks2samp, ksPValue, smirnovSf, type KsMethod } from '../../monitor/ks.js';

type Num = number | 'NaN' | 'Infinity' | '-Infinity';
const num = (v: Num): number => (typeof v === 'number' ? v : Number(v));

interface KsFixtures {
  versions: Record<string, string>;
  samples: {
    seed: number;
    n1: number;
    n2: number;
    modA: number;
    modB: number;
    offsetB: number;
    results: Partial<Record<KsMethod, { statistic: Num; pValue: Num }>>;
  }[];
  kstwo: { n: number; x: number; sf: Num }[];
  smirnov: { n: number; x: number; sf: Num }[];
  exact: { n1: number; n2: number; d: number; pValue: Num }[];
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/monitor/ks.json', import.meta.url), 'utf8')) as KsFixtures;

/** The fixture script's MINSTD generator: exact in doubles (state * 48271 < 2^47). */
function* minstd(seed: number): Generator<number> {
  let state = seed;
  for (;;) {
    state = (state * 48271) % 2147483647;
    yield state;
  }
}

function samples(f: KsFixtures['samples'][number]): [Float64Array, Float64Array] {
  const g = minstd(f.seed);
  const a = new Float64Array(f.n1);
  const b = new Float64Array(f.n2);
  for (let i = 0; i < f.n1; i++) a[i] = g.next().value! % f.modA;
  for (let i = 0; i < f.n2; i++) b[i] = (g.next().value! % f.modB) + f.offsetB;
  return [a, b];
}

/** p-values: within 1e-6 absolute, and within 1e-6 relative once below 1e-6 (tiny tails). */
function expectPValue(actual: number, expected: number, context: string): void {
  if (Number.isNaN(expected)) {
    expect(actual, context).toBeNaN();
    return;
  }
  expect(Math.abs(actual - expected), context).toBeLessThanOrEqual(1e-6);
  if (expected < 1e-6) expect(Math.abs(actual - expected), context).toBeLessThanOrEqual(1e-6 * expected + 1e-300);
}

describe('ks2samp matches scipy.stats.ks_2samp', () => {
  it(`fixtures come from scipy ${fixtures.versions.scipy}`, () => {
    expect(fixtures.versions.scipy).toMatch(/^\d+\.\d+/);
  });

  for (const f of fixtures.samples) {
    const tag = `n1=${f.n1} n2=${f.n2} mod=${f.modA}/${f.modB} offset=${f.offsetB}`;
    it(tag, () => {
      const [a, b] = samples(f);
      for (const [method, expected] of Object.entries(f.results) as [KsMethod, { statistic: Num; pValue: Num }][]) {
        const r = ks2samp(a, b, { method });
        expect(Math.abs(r.statistic - num(expected.statistic)), `${tag} ${method} statistic`).toBeLessThanOrEqual(1e-12);
        expectPValue(r.pValue, num(expected.pValue), `${tag} ${method} p-value`);
        if (method === 'auto') expect(r.method).toBe(Math.max(f.n1, f.n2) <= 10000 ? 'exact' : 'asymp');
        // Symmetric in the two samples, like scipy's.
        const swapped = ks2samp(b, a, { method });
        expect(Math.abs(swapped.statistic - r.statistic)).toBeLessThanOrEqual(1e-12);
        if (Number.isNaN(r.pValue)) expect(swapped.pValue).toBeNaN();
        else expect(Math.abs(swapped.pValue - r.pValue)).toBeLessThanOrEqual(1e-12);
      }
    });
  }

  it('covers exact, asymptotic, tied and tiny-p cases', () => {
    const autos = fixtures.samples.map((f) => ({ f, p: num(f.results.auto!.pValue) }));
    expect(autos.some(({ f }) => Math.max(f.n1, f.n2) > 10000)).toBe(true);
    expect(autos.some(({ f }) => f.n1 === f.n2 && f.n1 === 10000)).toBe(true);
    expect(autos.some(({ f }) => f.modA < 100)).toBe(true);
    expect(autos.filter(({ p }) => p < 1e-20).length).toBeGreaterThanOrEqual(3);
  });
});

describe('ksPValue from D and the sample sizes', () => {
  it('matches the p-value ks_2samp (method auto) gives on the exact lattice grid', () => {
    for (const f of fixtures.exact) {
      expectPValue(ksPValue(f.d, f.n1, f.n2, 'auto'), num(f.pValue), `n1=${f.n1} n2=${f.n2} d=${f.d}`);
    }
  });

  it('matches kstwo.sf across the branches of the Kolmogorov distribution', () => {
    for (const f of fixtures.kstwo) {
      expectPValue(kolmogorovTwoSidedSf(f.x, f.n), num(f.sf), `kstwo n=${f.n} x=${f.x}`);
    }
  });

  it('matches scipy.special.smirnov', () => {
    for (const f of fixtures.smirnov) {
      expectPValue(smirnovSf(f.n, f.x), num(f.sf), `smirnov n=${f.n} x=${f.x}`);
    }
  });

  it('refuses impossible inputs with a coded error', () => {
    expect(() => ksPValue(1.5, 10, 10)).toThrow(expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' }));
    expect(() => ksPValue(0.5, 0, 10)).toThrow(expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' }));
    expect(() => ks2samp([], [1])).toThrow(expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' }));
    expect(() => ks2samp([NaN], [1])).toThrow(expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' }));
  });
});

describe('binnedKs', () => {
  it('is exact at the edges: a hand-worked case', () => {
    // ref fractions .2 .3 .5, cur .5 .5 0: cumulative .2/.5 .5/1 -> D_b = .5; bound max min(r, c) = .3
    const r = binnedKs([2, 3, 5], [1, 1, 0]);
    expect(r.statistic).toBeCloseTo(0.5, 15);
    expect(r.errorBound).toBeCloseTo(0.3, 15);
    expect(binnedKs([0, 0], [1, 2]).statistic).toBeNaN();
  });

  /** Exact D as scipy defines it (asymptotic mode leaves D unrounded). */
  const exactD = (a: number[], b: number[]): number => ks2samp(a, b, { method: 'asymp' }).statistic;

  const check = (ref: number[], cur: number[], edges: number[]): void => {
    const { statistic, errorBound } = binnedKs(binCounts(edges, ref), binCounts(edges, cur));
    const d = exactD(ref, cur);
    expect(statistic).toBeLessThanOrEqual(d + 1e-12);
    expect(d).toBeLessThanOrEqual(statistic + errorBound + 1e-12);
  };

  it('D_binned <= D <= D_binned + max_i min(r_i, c_i) on continuous data, reference deciles as bins', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 1, maxLength: 80 }),
        fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: 1, maxLength: 80 }),
        (ref, cur) => {
          check(ref, cur, decileEdges(Float64Array.from(ref).sort()));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('holds on heavily tied integers, with duplicate edges and empty bins', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 120 }),
        fc.array(fc.integer({ min: -1, max: 6 }), { minLength: 1, maxLength: 120 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 0, maxLength: 12 }),
        (ref, cur, probabilities) => {
          const sorted = Float64Array.from(ref).sort();
          check(ref, cur, decileEdges(sorted));
          // arbitrary (sorted) probabilities: any left-closed binning, not only deciles
          check(ref, cur, quantileEdges(sorted, [...probabilities].sort((x, y) => x - y)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('the bound is reached: both samples in one bin, the reference below', () => {
    const { statistic, errorBound } = binnedKs(binCounts([0, 10], [1, 2, 3]), binCounts([0, 10], [7, 8, 9]));
    expect(statistic).toBe(0);
    expect(exactD([1, 2, 3], [7, 8, 9])).toBe(statistic + errorBound);
  });
});
