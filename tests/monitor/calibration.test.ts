// Calibration: chi2.sf and Benjamini-Hochberg against their oracles (fixtures from
// scripts/monitor-fixtures.py), the seeded samplers against their exact distributions, and
// the point of it all: under no drift the PSI p-values alarm at most alpha of the time
// (alpha = 0.05 and 0.01), for current samples of 10 to 5000 rows against references of 100
// to 1e6, numeric and categorical, where the plain chi2 approximation alarms most of the time.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  benjaminiHochberg,
  categoricalPsiTest,
  categoricalPsiTestCounts,
  chiSquaredSf,
  decideDrift,
  driftDecision,
  driftTestPValue,
  logFactorial,
  logGamma,
  psiNullTest,
  psiPValue,
  SeededRandom,
} from '../../monitor/calibration.js';
import { binCounts, binIndex, categoricalPsi, DECILE_PROBABILITIES, decileEdges, psi } from '../../monitor/psi.js';

type Num = number | 'NaN' | 'Infinity' | '-Infinity';
const num = (v: Num): number => (typeof v === 'number' ? v : Number(v));
const read = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../fixtures/monitor/${name}`, import.meta.url), 'utf8')) as T;
const badInput = expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' });

describe('chiSquaredSf', () => {
  const fixture = read<{ chi2_sf: { x: number; k: number; sf: Num; exact: Num }[]; versions: Record<string, string>; mpmath: string }>('chi2.json');

  it(`is within 1e-12 relative of the exact value (mpmath ${fixture.mpmath}) and 2e-12 of scipy ${fixture.versions.scipy} chi2.sf`, () => {
    // scipy's own error reaches 1.08e-12 (k = 10000, x = 15000), hence 2e-12 against it.
    for (const { x, k, sf, exact } of fixture.chi2_sf) {
      const actual = chiSquaredSf(x, k);
      for (const [expected, tolerance] of [
        [num(exact), 1e-12],
        [num(sf), 2e-12],
      ] as const) {
        if (expected < 1e-300) expect(actual, `x=${x} k=${k}`).toBeLessThan(1e-290);
        else expect(Math.abs(actual - expected) / expected, `x=${x} k=${k}: ${actual} vs ${expected}`).toBeLessThanOrEqual(tolerance);
      }
    }
  });

  it('edges: x <= 0 is 1, infinity is 0, bad k is NaN', () => {
    expect(chiSquaredSf(0, 3)).toBe(1);
    expect(chiSquaredSf(-1, 3)).toBe(1);
    expect(chiSquaredSf(Infinity, 3)).toBe(0);
    expect(chiSquaredSf(1, 0)).toBeNaN();
    expect(chiSquaredSf(NaN, 2)).toBeNaN();
    expect(chiSquaredSf(2, 2)).toBeCloseTo(Math.exp(-1), 14); // k = 2: e^(-x/2)
  });

  it('logGamma and logFactorial', () => {
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 14);
    expect(logGamma(1)).toBeCloseTo(0, 14);
    expect(logFactorial(10)).toBeCloseTo(Math.log(3628800), 13);
    expect(logFactorial(2000)).toBeCloseTo(logGamma(2001), 9);
    expect(logFactorial(1023)).toBeCloseTo(logGamma(1024), 9);
  });
});

describe('benjaminiHochberg', () => {
  const { cases } = read<{ cases: { pValues: Num[]; q: number; rejected: boolean[]; adjusted: Num[] }[] }>('bh.json');

  it('matches the step-up procedure computed by hand in the fixture script', () => {
    for (const c of cases) {
      const r = benjaminiHochberg(c.pValues.map(num), c.q);
      expect(r.rejected).toEqual(c.rejected);
      r.adjusted.forEach((a, i) => expect(Math.abs(a - num(c.adjusted[i]!))).toBeLessThanOrEqual(1e-15));
    }
  });

  it('a worked example; refuses NaN and out-of-range p-values', () => {
    // sorted .01 .02 .03 .2 with q = .1, N = 4: thresholds .025 .05 .075 .1 -> the first three
    expect(benjaminiHochberg([0.2, 0.03, 0.01, 0.02], 0.1).rejected).toEqual([false, true, true, true]);
    expect(benjaminiHochberg([], 0.05)).toEqual({ rejected: [], adjusted: [] });
    expect(() => benjaminiHochberg([0.1, NaN], 0.05)).toThrow(badInput);
    expect(() => benjaminiHochberg([1.5], 0.05)).toThrow(badInput);
    expect(() => benjaminiHochberg([0.5], 0)).toThrow(badInput);
  });
});

describe('seeded samplers follow their distributions', () => {
  /** Pearson goodness-of-fit p-value of observed counts against expected ones (cells >= 5 pooled). */
  function goodnessOfFit(observed: number[], expected: number[]): number {
    let stat = 0;
    let cells = 0;
    let o = 0;
    let e = 0;
    for (let i = 0; i < observed.length; i++) {
      o += observed[i]!;
      e += expected[i]!;
      if (e >= 5 || i === observed.length - 1) {
        stat += ((o - e) * (o - e)) / e;
        cells++;
        o = 0;
        e = 0;
      }
    }
    return chiSquaredSf(stat, cells - 1);
  }

  it('binomial (inversion and BTRS) and hypergeometric (inversion and from the mode) by chi-squared goodness of fit', () => {
    const rng = new SeededRandom(2024);
    const draws = 20000;
    const binomialCases: [number, number][] = [
      [20, 0.3],
      [1000, 0.004],
      [400, 0.2],
      [5000, 0.73],
    ];
    for (const [n, p] of binomialCases) {
      const counts = new Array<number>(n + 1).fill(0);
      for (let i = 0; i < draws; i++) counts[rng.binomial(n, p)]!++;
      const pmf = counts.map((_, k) => draws * Math.exp(logFactorial(n) - logFactorial(k) - logFactorial(n - k) + k * Math.log(p) + (n - k) * Math.log1p(-p)));
      expect(goodnessOfFit(counts, pmf), `binomial(${n}, ${p})`).toBeGreaterThan(1e-3);
    }
    const hyperCases: [number, number, number][] = [
      [10, 30, 100],
      [50, 600, 1000],
      [3000, 2000, 10000],
      [80, 950, 1000],
    ];
    for (const [d, s, N] of hyperCases) {
      const counts = new Array<number>(Math.min(d, s) + 1).fill(0);
      for (let i = 0; i < draws; i++) counts[rng.hypergeometric(d, s, N)]!++;
      const lnChoose = (a: number, b: number): number => (b < 0 || b > a ? -Infinity : logFactorial(a) - logFactorial(b) - logFactorial(a - b));
      const pmf = counts.map((_, x) => draws * Math.exp(lnChoose(s, x) + lnChoose(N - s, d - x) - lnChoose(N, d)));
      expect(goodnessOfFit(counts, pmf), `hypergeometric(${d}, ${s}, ${N})`).toBeGreaterThan(1e-3);
    }
  });

  it('gamma: the empirical CDF follows the regularised incomplete gamma (KS distance)', () => {
    const rng = new SeededRandom(7);
    for (const shape of [0.4, 1, 3.5, 120, 1e5]) {
      const xs = Float64Array.from({ length: 5000 }, () => rng.gamma(shape)).sort();
      let d = 0;
      xs.forEach((x, i) => {
        const cdf = 1 - chiSquaredSf(2 * x, 2 * shape);
        d = Math.max(d, Math.abs(cdf - i / xs.length), Math.abs(cdf - (i + 1) / xs.length));
      });
      expect(d, `gamma(${shape})`).toBeLessThan(1.63 / Math.sqrt(xs.length)); // KS critical value at 1%
    }
  });
});

// ---------------------------------------------------------------------------------------------
// False alarms under no drift

const ALPHAS = [0.05, 0.01] as const;
/** Allowed excess of an observed alarm rate over alpha: 3 binomial standard deviations. */
const slack = (alpha: number, trials: number): number => 3 * Math.sqrt((alpha * (1 - alpha)) / trials);

interface Tally {
  trials: number;
  alarms: Record<(typeof ALPHAS)[number], number>;
  plainChi2Alarms05: number;
}

function tally(): Tally {
  return { trials: 0, alarms: { 0.05: 0, 0.01: 0 }, plainChi2Alarms05: 0 };
}

function record(t: Tally, p: number): void {
  t.trials++;
  for (const a of ALPHAS) if (p <= a) t.alarms[a]++;
}

/**
 * Reference and current decile counts of a continuous feature under no drift. Small references
 * are drawn value by value and binned as the monitor does; for large ones (where that is slow)
 * only what matters is drawn: the reference's counts per decile bin are fixed by its size, and
 * the bins' true masses are spacings of uniform order statistics (gamma spacings).
 */
function numericNoDrift(rng: SeededRandom, m: number, n: number): { ref: Float64Array; cur: Float64Array } {
  if (m <= 1000) {
    const refValues = Float64Array.from({ length: m }, () => rng.uniform()).sort();
    const edges = decileEdges(refValues);
    return { ref: binCounts(edges, refValues), cur: binCounts(edges, Float64Array.from({ length: n }, () => rng.uniform())) };
  }
  const positions = DECILE_PROBABILITIES.map((p) => (m - 1) * p);
  const below = positions.map((pos) => Math.floor(pos));
  const ranks = [...new Set(below.flatMap((k) => [k + 1, k + 2]))].sort((a, b) => a - b); // 1-based
  const orderStatistic = new Map<number, number>();
  let previous = 0;
  let sum = 0;
  const spacings = ranks.map((r) => {
    const g = rng.gamma(r - previous);
    previous = r;
    return g;
  });
  const total = spacings.reduce((a, b) => a + b, 0) + rng.gamma(m + 1 - previous);
  ranks.forEach((r, i) => orderStatistic.set(r, (sum += spacings[i]!) / total));
  const edges = below.map((k, i) => {
    const a = orderStatistic.get(k + 1)!;
    return a + (orderStatistic.get(k + 2)! - a) * (positions[i]! - k);
  });
  // reference values below each edge: k + 1 when the edge lies above x_(k), else k
  const cumulative = below.map((k, i) => (positions[i]! > k ? k + 1 : k));
  const ref = Float64Array.from({ length: 10 }, (_, i) => (i === 9 ? m : cumulative[i]!) - (i === 0 ? 0 : cumulative[i - 1]!));
  const cur = new Float64Array(10);
  for (let i = 0; i < n; i++) cur[binIndex(edges, rng.uniform())]!++;
  return { ref, cur };
}

function expectCalibrated(name: string, tallies: Map<string, Tally>): void {
  const pooled = tally();
  for (const [config, t] of tallies) {
    for (const a of ALPHAS) {
      expect(t.alarms[a] / t.trials, `${name} ${config} alpha ${a}`).toBeLessThanOrEqual(a + slack(a, t.trials));
      pooled.alarms[a] += t.alarms[a];
    }
    pooled.trials += t.trials;
  }
  for (const a of ALPHAS) {
    const rate = pooled.alarms[a] / pooled.trials;
    expect(rate, `${name} pooled, alpha ${a}`).toBeLessThanOrEqual(a + slack(a, pooled.trials));
    // and not vacuously: the tests are not far more conservative than they need to be
    expect(rate, `${name} pooled, alpha ${a}`).toBeGreaterThan(a / 2);
  }
}

function summary(tallies: Map<string, Tally>): string {
  return [...tallies]
    .map(([c, t]) => `${c}: ${(t.alarms[0.05] / t.trials).toFixed(3)}/${(t.alarms[0.01] / t.trials).toFixed(3)} (plain chi2 ${(t.plainChi2Alarms05 / t.trials).toFixed(2)})`)
    .join('\n  ');
}

describe('PSI p-values under no drift alarm at most alpha of the time', () => {
  const CURRENT_SIZES = [10, 25, 50, 200, 5000];
  const REFERENCE_SIZES = [100, 1000, 10000, 1000000];

  it('numeric: decile PSI of a continuous feature, every size pair', () => {
    const rng = new SeededRandom(20261122);
    const trials = 500;
    const tallies = new Map<string, Tally>();
    let calls = 0;
    let pValueMs = 0;
    for (const m of REFERENCE_SIZES) {
      for (const n of CURRENT_SIZES) {
        const t = tally();
        for (let s = 0; s < trials; s++) {
          const { ref, cur } = numericNoDrift(rng, m, n);
          const value = psi(ref, cur);
          const start = performance.now();
          const p = psiPValue(value, ref, n);
          pValueMs += performance.now() - start;
          calls++;
          record(t, p);
          if (chiSquaredSf(value / (1 / n + 1 / m), 9) <= 0.05) t.plainChi2Alarms05++;
        }
        tallies.set(`m=${m} n=${n}`, t);
      }
    }
    console.log(`numeric PSI false-alarm rates at alpha .05/.01:\n  ${summary(tallies)}\n  psiPValue: ${((pValueMs / calls) * 1000).toFixed(0)} us per call on average`);
    expectCalibrated('numeric', tallies);
    // what the calibration buys: the plain (1/n + 1/m) chi2(9) approximation at 10 rows
    expect(tallies.get('m=1000000 n=10')!.plainChi2Alarms05 / trials).toBeGreaterThan(0.5);
  });

  it('numeric with ties: integer data with a tied minimum (empty first bin, empty inner bins)', () => {
    const rng = new SeededRandom(99);
    const tallies = new Map<string, Tally>();
    // P(0) = 0.3, then 1..6 uniformly: a tied minimum leaves bin 0 of the reference empty
    const draw = (): number => (rng.uniform() < 0.3 ? 0 : 1 + Math.floor(rng.uniform() * 6));
    for (const [m, n] of [
      [100, 25],
      [1000, 200],
      [1000, 10],
    ] as const) {
      const t = tally();
      for (let s = 0; s < 500; s++) {
        const refValues = Float64Array.from({ length: m }, draw).sort();
        const edges = decileEdges(refValues);
        const ref = binCounts(edges, refValues);
        const cur = binCounts(edges, Float64Array.from({ length: n }, draw));
        record(t, psiPValue(psi(ref, cur), ref, n));
      }
      tallies.set(`m=${m} n=${n}`, t);
    }
    console.log(`numeric tied PSI false-alarm rates:\n  ${summary(tallies)}`);
    for (const [config, t] of tallies) for (const a of ALPHAS) expect(t.alarms[a] / t.trials, `${config} ${a}`).toBeLessThanOrEqual(a + slack(a, t.trials));
  });

  it('categorical: PSI with an unseen bin, a 30-category Zipf, by permutation', () => {
    const rng = new SeededRandom(4242);
    const weights = Array.from({ length: 30 }, (_, k) => 1 / (k + 1) ** 1.2);
    const total = weights.reduce((a, b) => a + b, 0);
    const p = weights.map((w) => w / total);
    const multinomial = (size: number): number[] => {
      let remaining = size;
      let mass = 1;
      return p.map((pk, k) => {
        const x = k === p.length - 1 ? remaining : rng.binomial(remaining, Math.min(1, pk / mass));
        remaining -= x;
        mass -= pk;
        return x;
      });
    };
    const trials = 300;
    const tallies = new Map<string, Tally>();
    let calls = 0;
    let ms = 0;
    for (const m of [100, 10000, 1000000]) {
      for (const n of [10, 50, 200, 5000]) {
        const t = tally();
        for (let s = 0; s < trials; s++) {
          const ref = multinomial(m);
          const cur = multinomial(n);
          const start = performance.now();
          const r = categoricalPsiTestCounts(ref, cur);
          ms += performance.now() - start;
          calls++;
          record(t, r.pValue);
        }
        tallies.set(`m=${m} n=${n}`, t);
      }
    }
    console.log(`categorical PSI false-alarm rates:\n  ${summary(tallies)}\n  categoricalPsiTest: ${((ms / calls) * 1000).toFixed(0)} us per call on average`);
    expectCalibrated('categorical', tallies);
  });
});

describe('PSI p-values with drift, and their mechanics', () => {
  it('numeric: a shifted current sample gets a small p-value on both paths', () => {
    const ref = new Float64Array(10).fill(10000);
    // chi2 path: 5000 rows, 1.2x the rows in the top two deciles
    const cur = Float64Array.from([450, 450, 450, 450, 450, 450, 450, 450, 600, 600].map((c) => (c * 5000) / 4800));
    const big = psiNullTest(psi(ref, cur), ref, cur.reduce((a, b) => a + b, 0));
    expect(big.method).toBe('chi2');
    expect(big.pValue).toBeLessThan(1e-6);
    // Monte Carlo path: 50 rows all in the top half; the floor is 1 / (maxReplicates + 1)
    const small = psiNullTest(psi(ref, [0, 0, 0, 0, 0, 10, 10, 10, 10, 10]), ref, 50);
    expect(small.method).toBe('monte-carlo');
    expect(small.pValue).toBe(1 / 2001);
    expect(small.replicates).toBe(2000);
  });

  it('is deterministic, stops early far from significance, and is NaN without data', () => {
    const ref = [10, 10, 10, 10, 10, 10, 10, 10, 10, 10];
    const value = psi(ref, [3, 2, 1, 0, 1, 1, 0, 0, 1, 1]);
    const a = psiNullTest(value, ref, 10);
    expect(psiNullTest(value, ref, 10)).toEqual(a);
    expect(a.replicates).toBeLessThan(200);
    expect(psiNullTest(value, ref, 10, { seed: 1 }).pValue).not.toBe(a.pValue);
    expect(psiPValue(NaN, ref, 10)).toBeNaN();
    expect(psiPValue(0, ref, 0)).toBeNaN();
    expect(psiPValue(0, [0, 0], 5)).toBeNaN();
    expect(() => psiPValue(0.1, ref, 2.5)).toThrow(badInput);
  });

  it('categorical: the Map form equals categoricalPsi, unseen categories drive small p-values', () => {
    const ref = new Map([
      ['AA', 500],
      ['UA', 300],
      ['DL', 200],
    ]);
    const same = new Map([
      ['AA', 52],
      ['UA', 29],
      ['DL', 19],
    ]);
    const r = categoricalPsiTest(ref, same);
    expect(r.psi).toBeCloseTo(categoricalPsi(ref, same), 12);
    expect(r.pValue).toBeGreaterThan(0.2);
    const withNew = new Map([...same, ['WN', 30]]);
    const drifted = categoricalPsiTest(ref, withNew);
    expect(drifted.psi).toBeCloseTo(categoricalPsi(ref, withNew), 12);
    expect(drifted.pValue).toBeLessThan(0.001);
    expect(categoricalPsiTest(ref, new Map()).pValue).toBeNaN();
    expect(() => categoricalPsiTestCounts([1.5], [1])).toThrow(badInput);
  });
});

describe('drift decisions', () => {
  const numeric = (psiValue: number, pPsi: number, pKs: number) => ({ kind: 'numeric' as const, psi: psiValue, psiPValue: pPsi, ksPValue: pKs });
  const categorical = (psiValue: number, pPsi: number) => ({ kind: 'categorical' as const, psi: psiValue, psiPValue: pPsi });

  it('calibrated p-value: Bonferroni of PSI and KS for numeric, PSI alone for categorical', () => {
    expect(driftTestPValue(numeric(0.05, 0.3, 0.01))).toBeCloseTo(0.02, 15);
    expect(driftTestPValue(numeric(0.05, 0.7, 0.9))).toBe(1);
    expect(driftTestPValue(categorical(0.05, 0.3))).toBe(0.3);
  });

  it('fixed mode: PSI >= 0.1 or KS p <= 0.05, each test on its own', () => {
    const d = decideDrift([numeric(0.1, 0.5, 0.5), numeric(0.05, 0.5, 0.05), numeric(0.05, 0.001, 0.06), categorical(0.2, 0.5), categorical(NaN, NaN)], { mode: 'fixed' });
    expect(d.map((x) => x.drift)).toEqual([true, true, false, true, null]);
    expect(driftDecision(numeric(0.05, 0.5, 0.05))).toEqual({ fixedDrift: true, pValue: 0.1 });
    expect(driftDecision(categorical(0.09, 0.001), { psi: 0.08 })).toEqual({ fixedDrift: true, pValue: 0.001 });
  });

  it('calibrated mode: BH over the runnable tests, then the PSI floor', () => {
    const tests = [
      numeric(0.5, 1e-9, 1e-9), // strong, large effect: alarms
      numeric(0.01, 1e-9, 1e-9), // significant but below the 0.02 floor: no alarm
      categorical(0.3, 0.04), // 0.04 alone, BH over 4 runnable tests: 0.04 * 4 / 3 > 0.05
      categorical(NaN, NaN), // no data: no decision, not counted by BH
      numeric(0.03, 0.6, 0.7),
    ];
    const d = decideDrift(tests, { mode: 'calibrated' });
    expect(d.map((x) => x.drift)).toEqual([true, false, false, null, false]);
    expect(d[3]!.qValue).toBeNull();
    expect(d[0]!.qValue).toBeCloseTo(2e-9 * 4 / 2, 20);
    expect(decideDrift(tests, { mode: 'calibrated', fdr: 0.2 }).map((x) => x.drift)).toEqual([true, false, true, null, false]);
  });
});
