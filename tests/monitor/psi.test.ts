// PSI: numpy's quantiles bit for bit (fixtures from scripts/monitor-fixtures.py), left-closed
// bins with ties, and PSI against the SEMANTICS formula worked out by hand on small cases.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  binCounts,
  binIndex,
  categoricalBins,
  categoricalPsi,
  DECILE_PROBABILITIES,
  decileEdges,
  psi,
  quantileEdges,
} from '../../monitor/psi.js';

type Num = number | 'NaN' | 'Infinity' | '-Infinity';
const num = (v: Num): number => (typeof v === 'number' ? v : Number(v));
const fixtures = JSON.parse(readFileSync(new URL('../fixtures/monitor/quantiles.json', import.meta.url), 'utf8')) as {
  versions: Record<string, string>;
  probabilities: number[];
  cases: { sorted: Num[]; quantiles: Num[] }[];
};

const badInput = expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' });

describe('quantileEdges', () => {
  it(`equals np.quantile (numpy ${fixtures.versions.numpy}) exactly, ties and mass at the minimum included`, () => {
    for (const c of fixtures.cases) {
      expect(quantileEdges(c.sorted.map(num), fixtures.probabilities)).toEqual(c.quantiles.map(num));
    }
  });

  it('deciles are the 9 inner edges at k/10', () => {
    expect(DECILE_PROBABILITIES).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
    // 11 values 0..10: position 10 p is an integer, the edges are the values themselves.
    expect(decileEdges([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // 2 values: position p, edges interpolate.
    expect(decileEdges([0, 10])).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => (k < 5 ? 10 * (k / 10) : 10 - 10 * (1 - k / 10))));
  });

  it('refuses an empty, unsorted or NaN sample', () => {
    expect(() => quantileEdges([], [0.5])).toThrow(badInput);
    expect(() => quantileEdges([2, 1], [0.5])).toThrow(badInput);
    expect(() => quantileEdges([1, NaN], [0.5])).toThrow(badInput);
    expect(() => quantileEdges([1, 2], [1.5])).toThrow(badInput);
  });
});

describe('bins', () => {
  it('are left-closed with open outer bins: index = number of edges <= x', () => {
    const edges = [1, 2, 2, 2, 5];
    expect(binIndex(edges, 0.5)).toBe(0);
    expect(binIndex(edges, 1)).toBe(1); // [1, 2)
    expect(binIndex(edges, 1.999)).toBe(1);
    expect(binIndex(edges, 2)).toBe(4); // past the empty bins [2, 2)
    expect(binIndex(edges, 4.9)).toBe(4);
    expect(binIndex(edges, 5)).toBe(5);
    expect(binIndex(edges, Infinity)).toBe(5);
    expect(binIndex(edges, -Infinity)).toBe(0);
    expect([...binCounts(edges, [0, 1, 2, 2, 3, 7, 1.5])]).toEqual([1, 2, 0, 0, 3, 1]);
  });

  it('tied reference deciles leave empty bins, and its own values fill the rest', () => {
    const ref = [0, 0, 0, 0, 0, 0, 0, 1, 2, 3]; // 70% zeros
    const edges = decileEdges(ref);
    const counts = binCounts(edges, ref);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(10);
    expect(counts[0]).toBe(0); // nothing below the tied minimum
    expect([...counts].filter((c) => c === 0).length).toBeGreaterThan(5);
  });

  it('refuse NaN values and unsorted edges', () => {
    expect(() => binCounts([1, 2], [NaN])).toThrow(badInput);
    expect(() => binCounts([2, 1], [1])).toThrow(badInput);
  });
});

describe('psi', () => {
  it('is sum((c - r) ln(c / r)) over bin fractions, by hand', () => {
    // ref 50/50, cur 80/20: (0.8-0.5) ln(0.8/0.5) + (0.2-0.5) ln(0.2/0.5)
    expect(psi([5, 5], [8, 2])).toBeCloseTo(0.3 * Math.log(1.6) + -0.3 * Math.log(0.4), 15);
    // equal fractions: 0, whatever the sizes
    expect(psi([10, 20, 30], [1, 2, 3])).toBe(0);
    // ref .25 .25 .5, cur .5 .5 0 -> the empty current bin counts as 0.0001
    const expected = (0.5 - 0.25) * Math.log(0.5 / 0.25) * 2 + (0.0001 - 0.5) * Math.log(0.0001 / 0.5);
    expect(psi([1, 1, 2], [3, 3, 0])).toBeCloseTo(expected, 14);
    expect(expected).toBeCloseTo(0.3466 + 4.2577, 3); // 4.26 of it from the empty bin
    // an empty reference bin, likewise
    expect(psi([0, 4], [1, 3])).toBeCloseTo((0.25 - 0.0001) * Math.log(0.25 / 0.0001) + (0.75 - 1) * Math.log(0.75), 14);
    // both empty: no contribution
    expect(psi([0, 4, 6], [0, 2, 3])).toBe(0);
    // symmetric in its arguments (a divergence)
    expect(psi([8, 2], [5, 5])).toBeCloseTo(psi([5, 5], [8, 2]), 15);
  });

  it('is NaN for an empty sample, and refuses mismatched or negative counts', () => {
    expect(psi([0, 0], [1, 2])).toBeNaN();
    expect(psi([1, 2], [0, 0])).toBeNaN();
    expect(() => psi([1, 2], [1, 2, 3])).toThrow(badInput);
    expect(() => psi([1, -2], [1, 2])).toThrow(badInput);
    expect(() => psi([1, NaN], [1, 2])).toThrow(badInput);
  });
});

describe('categorical PSI', () => {
  it('one bin per reference category plus one for the unseen ones, by hand', () => {
    const ref = new Map([
      ['ORD', 6],
      ['ATL', 4],
    ]);
    const cur = new Map([
      ['ATL', 5],
      ['SFO', 3],
      ['BOS', 2],
    ]);
    const bins = categoricalBins(ref, cur);
    expect(bins.categories).toEqual(['ATL', 'ORD']);
    expect([...bins.ref]).toEqual([0, 4, 6]);
    expect([...bins.cur]).toEqual([5, 5, 0]); // SFO and BOS share the unseen bin 0
    const expected =
      (0.5 - 0.0001) * Math.log(0.5 / 0.0001) + // unseen
      (0.5 - 0.4) * Math.log(0.5 / 0.4) + // ATL
      (0.0001 - 0.6) * Math.log(0.0001 / 0.6); // ORD, empty now
    expect(categoricalPsi(ref, cur)).toBeCloseTo(expected, 14);
    expect(categoricalPsi(ref, new Map([['ORD', 3], ['ATL', 2]]))).toBeCloseTo(0, 15);
    expect(categoricalPsi(ref, new Map())).toBeNaN();
  });
});
