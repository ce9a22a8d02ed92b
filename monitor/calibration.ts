// Calibrated drift decisions (docs/semantics.md, "Drift and quality metrics"): the p-value of a PSI
// under no drift at the observed sample sizes, the chi-squared tail it rests on for large
// samples, Benjamini-Hochberg across all the tests of one evaluation, and the decision rules of
// both modes (fixed thresholds; calibrated p-values + FDR + effect-size floor).
//
// Why not just (1/n + 1/m) chi2(B - 1): an empty current bin counts as 0.0001 and adds about
// 0.1 ln(1000) = 0.69 to a decile PSI, so with 10 current rows (three or four empty deciles
// on average) that approximation alarms at alpha 0.05 more than 80% of the time.
//
// Numeric PSI (decile bins). Under no drift the current sample comes from the distribution the
// reference was drawn from. For a continuous feature the null is then distribution-free: the
// reference's counts per bin are fixed by its size, and the bins' true masses are spacings of
// uniform order statistics, i.e. Dirichlet(reference counts). So: bin masses q ~ Dirichlet
// (reference counts), current counts ~ Multinomial(n, q), PSI against the fixed reference
// fractions. That carries the reference's own noise (the 1/m) and, unlike plugging in the
// reference fractions, the extra chance of empty current bins when the reference is small.
// With ties the Dirichlet is the posterior of the bin masses given the reference.
//
// Categorical PSI. The unseen bin makes the null depend on the category tail, which a small
// reference cannot pin down; a plug-in model alarms several times too often. Under no drift
// the two samples are one exchangeable sample split in two, so the exact null is the
// permutation distribution (the current counts a multivariate hypergeometric draw from the
// pooled counts, the unseen bin recomputed per draw). It needs the current counts per category.
//
// Both, large samples (every reference bin expects >= 200 values in the smaller sample): the
// chi2 approximation with a second-order (Bartlett-type) mean correction, analytic, so tails
// are resolved far below any Monte Carlo floor. Otherwise seeded Monte Carlo, stopped once 10
// replicates reach the observed PSI (Besag and Clifford's sequential p-value, valid like the
// fixed-size one): a test far from significance costs a few dozen replicates. The smallest
// Monte Carlo p-value is 1 / (maxReplicates + 1); numeric tests also carry the KS p-value,
// which has no such floor.
import { compareCodePoints, TidemarkError } from '../definitions/index.js';
import { binFraction, PSI_EMPTY_FRACTION, psiTerm, totalCount } from './psi.js';

function badInput(message: string, details: Record<string, unknown> = {}): TidemarkError {
  return new TidemarkError('TM_MONITOR_BAD_INPUT', message, details);
}

// ---------------------------------------------------------------------------------------------
// Special functions

const LN_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);
const DBL_EPSILON = 2.220446049250313e-16;

/** lnGamma(x) - [(x - 1/2) ln x - x + ln sqrt(2 pi)] for x >= 10 (Stirling's series). */
function stirlingCorrection(x: number): number {
  const r = 1 / x;
  const r2 = r * r;
  return r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 * (1 / 1188 - r2 * (691 / 360360 - r2 / 156))))));
}

/** ln Gamma(x) for x > 0, absolute error about 1e-15 (shifted up to x >= 10, then Stirling). */
export function logGamma(x: number): number {
  if (!(x > 0)) return NaN;
  let shift = 0;
  let product = 1;
  while (x < 10) {
    product *= x;
    x += 1;
    shift += 1;
  }
  const base = (x - 0.5) * Math.log(x) - x + LN_SQRT_2PI + stirlingCorrection(x);
  return shift === 0 ? base : base - Math.log(product);
}

const LN_FACTORIAL_TABLE_SIZE = 1024;
// Filled at load (1024 lnGammas, a few microseconds) so that the lookup below is small enough
// for V8 to inline into the samplers, which ask for it several times per draw.
const lnFactorialTable = new Float64Array(LN_FACTORIAL_TABLE_SIZE);
for (let i = 1; i < LN_FACTORIAL_TABLE_SIZE; i++) lnFactorialTable[i] = logGamma(i + 1);

/** Stirling values of ln(k!) up to this k are kept once computed (16 MB when all are): the samplers ask for the same few thousand again and again. */
const LN_FACTORIAL_CACHE_SIZE = 1 << 21;
// 0 marks a value not yet computed (ln(k!) > 0 for every k here): a zeroed array needs no fill,
// and the OS maps its pages only as they are used.
let lnFactorialCache: Float64Array | null = null;

/** ln(k!) for a whole k >= 0: a table below 1024, Stirling above. */
export function logFactorial(k: number): number {
  return k < LN_FACTORIAL_TABLE_SIZE ? lnFactorialTable[k]! : logFactorialLarge(k);
}

function logFactorialLarge(k: number): number {
  if (k >= LN_FACTORIAL_CACHE_SIZE) return logFactorialStirling(k);
  lnFactorialCache ??= new Float64Array(LN_FACTORIAL_CACHE_SIZE);
  let v = lnFactorialCache[k]!;
  if (v === 0) lnFactorialCache[k] = v = logFactorialStirling(k);
  return v;
}

function logFactorialStirling(k: number): number {
  const x = k + 1;
  return (x - 0.5) * Math.log(x) - x + LN_SQRT_2PI + stirlingCorrection(x);
}

/** z^a e^-z / Gamma(a), the prefactor of both incomplete gamma expansions, without cancellation. */
function gammaPrefactor(a: number, z: number): number {
  if (a < 10) return Math.exp(a * Math.log(z) - z - logGamma(a));
  // a ln z - z - lnGamma(a) = -a (d - ln(1 + d)) + ln sqrt(a / 2 pi) - mu(a), d = (z - a) / a
  const d = (z - a) / a;
  return Math.sqrt(a / (2 * Math.PI)) * Math.exp(-a * (d - Math.log1p(d)) - stirlingCorrection(a));
}

/** Regularised upper incomplete gamma Q(a, z) = Gamma(a, z) / Gamma(a). */
export function gammaQ(a: number, z: number): number {
  if (Number.isNaN(a) || Number.isNaN(z) || !(a > 0)) return NaN;
  if (z <= 0) return 1;
  if (z === Infinity) return 0;
  const prefactor = gammaPrefactor(a, z);
  if (z < a + 1) {
    // P(a, z) by its power series; Q = 1 - P (here P is at most about one half).
    let ap = a;
    let del = 1 / a;
    let sum = del;
    for (let i = 0; i < 100000; i++) {
      ap += 1;
      del *= z / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * DBL_EPSILON) break;
    }
    return 1 - sum * prefactor;
  }
  // Q(a, z) by Legendre's continued fraction (modified Lentz).
  const tiny = 1e-300;
  let b = z + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 100000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < DBL_EPSILON) break;
  }
  return prefactor * h;
}

/** P(X >= x) for X ~ chi-squared with k degrees of freedom (k > 0, not necessarily whole). */
export function chiSquaredSf(x: number, k: number): number {
  return gammaQ(k / 2, x / 2);
}

// ---------------------------------------------------------------------------------------------
// Seeded random numbers: xoshiro128** seeded by splitmix32; samplers on top.

/** A small deterministic generator; the same seed gives the same stream on every platform. */
export class SeededRandom {
  // The state as int32 (small integers to V8, not boxed doubles); every operation on it is a
  // 32-bit one, so the stream is the same as with the uint32 values.
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  // The polar method's second normal; a flag beside a number field rather than `number | null`,
  // which would box every value stored.
  private hasSpareNormal = false;
  private spareNormal = 0;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) | 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1; // never the all-zero state
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform in the open interval (0, 1), 53 random bits. */
  uniform(): number {
    // Two steps of nextUint32, written out: this is the innermost call of every sampler.
    let a = this.a;
    let b = this.b;
    let c = this.c;
    let d = this.d;
    const b1 = Math.imul(b, 5);
    const hi = Math.imul((b1 << 7) | (b1 >>> 25), 9) >>> 5;
    let t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
    const b2 = Math.imul(b, 5);
    const lo = Math.imul((b2 << 7) | (b2 >>> 25), 9) >>> 6;
    t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = (d << 11) | (d >>> 21);
    return (hi * 67108864 + lo + 0.5) * 1.1102230246251565e-16; // / 2^53, exactly
  }

  /** Standard normal (Marsaglia's polar method). */
  normal(): number {
    if (this.hasSpareNormal) {
      this.hasSpareNormal = false;
      return this.spareNormal;
    }
    for (;;) {
      const u = 2 * this.uniform() - 1;
      const v = 2 * this.uniform() - 1;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const f = Math.sqrt((-2 * Math.log(s)) / s);
      this.spareNormal = v * f;
      this.hasSpareNormal = true;
      return u * f;
    }
  }

  /** Gamma(shape, 1) by Marsaglia and Tsang; shape < 1 by boosting to shape + 1. */
  gamma(shape: number): number {
    if (shape < 1) return this.gamma(shape + 1) * this.uniform() ** (1 / shape);
    const d = shape - 1 / 3;
    return this.gammaOf(d, 1 / Math.sqrt(9 * d));
  }

  /** `gamma(shape)` for shape >= 1 from its constants d = shape - 1/3, c = 1 / sqrt(9 d), which a caller drawing the same shape many times computes once. */
  gammaOf(d: number, c: number): number {
    for (;;) {
      const x = this.normal();
      let v = 1 + c * x;
      if (v <= 0) continue;
      v = v * v * v;
      const u = this.uniform();
      const x2 = x * x;
      if (u < 1 - 0.0331 * x2 * x2) return d * v;
      if (Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /** Binomial(n, p): inversion when n * min(p, 1 - p) < 10, else Hormann's BTRS. */
  binomial(n: number, p: number): number {
    if (n <= 0 || p <= 0) return 0;
    if (p >= 1) return n;
    // By symmetry for p > 1/2 (0 < 1 - p < 1/2 then); not a recursive call, which V8 would not inline.
    if (p > 0.5) return n - this.binomialAtMostHalf(n, 1 - p);
    return this.binomialAtMostHalf(n, p);
  }

  private binomialAtMostHalf(n: number, p: number): number {
    return n * p < 10 ? this.binomialInversion(n, p) : this.binomialBtrs(n, p);
  }

  private binomialInversion(n: number, p: number): number {
    const q = 1 - p;
    const s = p / q;
    const a = (n + 1) * s;
    const r0 = Math.exp(n * Math.log1p(-p));
    for (;;) {
      let r = r0;
      let u = this.uniform();
      let x = 0;
      while (u > r) {
        u -= r;
        x += 1;
        if (x > n) break;
        r *= a / x - s;
      }
      if (x <= n) return x;
    }
  }

  /** Transformed rejection with squeeze (Hormann 1993, "The generation of binomial random variates"); p <= 1/2, np >= 10. */
  private binomialBtrs(n: number, p: number): number {
    const spq = Math.sqrt(n * p * (1 - p));
    const b = 1.15 + 2.53 * spq;
    const a = -0.0873 + 0.0248 * b + 0.01 * p;
    const c = n * p + 0.5;
    const vr = 0.92 - 4.2 / b;
    const alpha = (2.83 + 5.1 / b) * spq;
    const m = Math.floor((n + 1) * p);
    // Needed only past the squeeze, which accepts most draws: computed on first use (the same values).
    let lpq = NaN;
    let h = NaN;
    for (;;) {
      const u = this.uniform() - 0.5;
      let v = this.uniform();
      const us = 0.5 - Math.abs(u);
      const k = Math.floor(((2 * a) / us + b) * u + c);
      if (k < 0 || k > n) continue;
      if (us >= 0.07 && v <= vr) return k;
      if (Number.isNaN(h)) {
        lpq = Math.log(p / (1 - p));
        h = logFactorial(m) + logFactorial(n - m);
      }
      v = Math.log((v * alpha) / (a / (us * us) + b));
      if (v <= h - logFactorial(k) - logFactorial(n - k) + (k - m) * lpq) return k;
    }
  }

  /**
   * Hypergeometric: marked items among `draws` drawn without replacement from `population`
   * items of which `marked` are marked. Small means by inversion from 0, larger by a search
   * outward from the mode (expected steps ~ its standard deviation).
   */
  hypergeometric(draws: number, marked: number, population: number): number {
    if (draws <= 0 || marked <= 0) return 0;
    if (marked >= population) return draws;
    if (draws >= population) return marked;
    if (2 * marked > population) return draws - this.hypergeometric(draws, population - marked, population);
    if (2 * draws > population) return marked - this.hypergeometric(population - draws, marked, population);
    return this.hypergeometricCore(draws, marked, population, logFactorial(marked), logFactorial(population - marked), logFactorial(population));
  }

  /**
   * `hypergeometric(draws, urn.marked, urn.population)`, the same value from the same random
   * numbers, with what depends only on the urn computed once (`hypergeometricUrn`): categoryDraws
   * draws from the same urns in every replicate, only the number drawn changes.
   */
  hypergeometricFrom(draws: number, urn: HypergeometricUrn): number {
    const s = urn.marked;
    const N = urn.population;
    if (draws <= 0 || s <= 0) return 0;
    if (s >= N) return draws;
    if (draws >= N) return s;
    // As hypergeometric's symmetries: marked > N / 2 by the unmarked (urn.flipped), then draws > N / 2 by the items left.
    const small = urn.small;
    const x = 2 * draws > N ? small - this.hypergeometricCore(N - draws, small, N, urn.lnS, urn.lnNS, urn.lnN) : this.hypergeometricCore(draws, small, N, urn.lnS, urn.lnNS, urn.lnN);
    return urn.flipped ? draws - x : x;
  }

  /** 0 < d, s <= N / 2: inversion for small means, else from the mode; lnS, lnNS, lnN are ln s!, ln (N - s)!, ln N!. */
  private hypergeometricCore(d: number, s: number, N: number, lnS: number, lnNS: number, lnN: number): number {
    return (d * s) / N < 16 ? this.hypergeometricInversion(d, s, N, lnNS, lnN) : this.hypergeometricFromMode(d, s, N, lnS, lnNS, lnN);
  }

  // p(x + 1) / p(x) = (s - x)(d - x) / ((x + 1)(N - s - d + x + 1)); written out inline below
  // (closures here cost V8 ten times the sampling).
  private hypergeometricInversion(d: number, s: number, N: number, lnNS: number, lnN: number): number {
    const max = Math.min(s, d);
    const big = Math.max(s, d);
    // P(0) = prod_{i < min(s, d)} (N - max(s, d) - i) / (N - i)
    let p0 = 1;
    if (max <= 64) for (let i = 0; i < max; i++) p0 *= (N - big - i) / (N - i);
    else p0 = Math.exp(lnNS + logFactorial(N - d) - logFactorial(N - s - d) - lnN);
    for (;;) {
      let u = this.uniform();
      let p = p0;
      let x = 0;
      while (u > p && x < max) {
        u -= p;
        p *= ((s - x) * (d - x)) / ((x + 1) * (N - s - d + x + 1));
        x++;
      }
      if (u <= p) return x;
    }
  }

  private hypergeometricFromMode(d: number, s: number, N: number, lnS: number, lnNS: number, lnN: number): number {
    const max = Math.min(s, d);
    const min = Math.max(0, d - (N - s));
    const mode = Math.floor(((d + 1) * (s + 1)) / (N + 2));
    // ln p(mode) = ln C(s, mode) + ln C(N - s, d - mode) - ln C(N, d)
    const lnPMode =
      lnS - logFactorial(mode) - logFactorial(s - mode) +
      (lnNS - logFactorial(d - mode) - logFactorial(N - s - d + mode)) -
      (lnN - logFactorial(d) - logFactorial(N - d));
    const pMode = Math.exp(lnPMode);
    for (;;) {
      let u = this.uniform();
      if (u <= pMode) return mode;
      u -= pMode;
      let lo = mode;
      let hi = mode;
      let pLo = pMode;
      let pHi = pMode;
      while (lo > min || hi < max) {
        if (hi < max) {
          pHi *= ((s - hi) * (d - hi)) / ((hi + 1) * (N - s - d + hi + 1));
          hi++;
          if (u <= pHi) return hi;
          u -= pHi;
        }
        if (lo > min) {
          pLo *= (lo * (N - s - d + lo)) / ((s - lo + 1) * (d - lo + 1)); // p(lo - 1) / p(lo)
          lo--;
          if (u <= pLo) return lo;
          u -= pLo;
        }
      }
      // the probabilities summed to just under 1 (rounding): draw again
    }
  }
}

/** What every hypergeometric draw from `marked` of `population` items shares (`SeededRandom.hypergeometricFrom`). */
export interface HypergeometricUrn {
  marked: number;
  population: number;
  /** marked > population / 2: draws are made of the unmarked items, then subtracted from the number drawn. */
  flipped: boolean;
  /** The side drawn: marked, or population - marked when flipped. */
  small: number;
  /** ln(small!), ln((population - small)!), ln(population!); NaN when the urn needs no draws (marked <= 0 or >= population). */
  lnS: number;
  lnNS: number;
  lnN: number;
}

export function hypergeometricUrn(marked: number, population: number): HypergeometricUrn {
  const flipped = 2 * marked > population;
  const small = flipped ? population - marked : marked;
  const drawn = marked > 0 && marked < population;
  return {
    marked,
    population,
    flipped,
    small,
    lnS: drawn ? logFactorial(small) : NaN,
    lnNS: drawn ? logFactorial(population - small) : NaN,
    lnN: drawn ? logFactorial(population) : NaN,
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A 32-bit hash of numbers (their IEEE bits), to seed the Monte Carlo from its inputs. */
function hashNumbers(seed: number, values: ArrayLike<number>): number {
  const f = new Float64Array(1);
  const u = new Uint32Array(f.buffer);
  let h = (seed ^ 0x811c9dc5) >>> 0;
  const mix = (w: number): void => {
    h = Math.imul(h ^ w, 0x01000193) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
  };
  for (let i = 0; i < values.length; i++) {
    f[0] = values[i]!;
    mix(u[0]!);
    mix(u[1]!);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// PSI p-values under no drift

export interface MonteCarloOptions {
  /** Mixed with a hash of the inputs into the Monte Carlo seed. Default 0. */
  seed?: number;
  /** Monte Carlo budget; the smallest p-value it can give is 1 / (maxReplicates + 1). Default 2000. */
  maxReplicates?: number;
  /** Stop once this many replicates reach the observed PSI (Besag-Clifford). Default 10. */
  minExceedances?: number;
}

export interface PsiNullTest {
  /** The PSI the p-value is for. */
  psi: number;
  /** P(PSI >= observed) under no drift at these sizes; NaN when either sample is empty or psi is NaN. */
  pValue: number;
  method: 'chi2' | 'monte-carlo' | 'none';
  /** Monte Carlo replicates drawn (0 for chi2). */
  replicates: number;
}

/** Numeric Monte Carlo: PSI terms are cached per (bin, count) for current samples below this size, */
const PSI_TERM_CACHE_MAX_N = 1 << 16;
/** from this replicate on. */
const PSI_TERM_CACHE_AFTER = 50;
/** Categorical permutation replicates cache their PSI terms (as numeric ones) when the pooled sample has at most this many items (8 MB). */
const CATEGORY_TERM_CACHE_MAX = 1 << 20;

/** Smallest expected count per bin (in the smaller sample) for the chi2 approximation. */
export const PSI_CHI2_MIN_EXPECTED = 200;
const DEFAULT_MAX_REPLICATES = 2000;
const DEFAULT_MIN_EXCEEDANCES = 10;
/** Above this many expected values in the open bins, the chi2 mixture gives way to Monte Carlo. */
const MAX_OPEN_EXPECTED = 20;

function monteCarloSettings(options: MonteCarloOptions): { maxReplicates: number; minExceedances: number } {
  const maxReplicates = options.maxReplicates ?? DEFAULT_MAX_REPLICATES;
  const minExceedances = options.minExceedances ?? DEFAULT_MIN_EXCEEDANCES;
  if (!(Number.isInteger(maxReplicates) && maxReplicates >= 1 && Number.isInteger(minExceedances) && minExceedances >= 1)) {
    throw badInput('maxReplicates and minExceedances must be whole numbers >= 1', { maxReplicates, minExceedances });
  }
  return { maxReplicates, minExceedances };
}

/**
 * Besag and Clifford's sequential Monte Carlo p-value: draw null replicates until
 * `minExceedances` of them reach the observed statistic (p = h / replicates) or the budget is
 * spent (p = (exceedances + 1) / (budget + 1)). Valid like the fixed-size p-value, and a test
 * far from significance stops after a few dozen replicates.
 */
function sequentialMonteCarlo(
  observed: number,
  replicate: () => number,
  { maxReplicates, minExceedances }: { maxReplicates: number; minExceedances: number },
): PsiNullTest {
  // Replicates equal to the observed PSI in exact arithmetic count as reaching it.
  const threshold = observed - 1e-12 * observed - 1e-15;
  let exceedances = 0;
  for (let rep = 1; rep <= maxReplicates; rep++) {
    if (replicate() >= threshold && ++exceedances >= minExceedances) {
      return { psi: observed, pValue: exceedances / rep, method: 'monte-carlo', replicates: rep };
    }
  }
  return { psi: observed, pValue: (exceedances + 1) / (maxReplicates + 1), method: 'monte-carlo', replicates: maxReplicates };
}

/** A generator seeded from every input: the same inputs give the same p-value, and tests that
 *  share a reference do not share one Monte Carlo sample (whose own error would then push all
 *  of them the same way instead of averaging out). */
function seededFrom(seed: number | undefined, ...parts: ArrayLike<number>[]): SeededRandom {
  return new SeededRandom(parts.reduce((h, values) => hashNumbers(h, values), seed ?? 0));
}

export interface PsiNullOptions extends MonteCarloOptions {
  /**
   * 'numeric' (default): decile bins, see `psiNullTest`.
   * 'categorical': bins laid out as `categoricalBins` (bin 0 = every category the reference
   * never saw), with only the current sample's size known. The same Dirichlet model, the unseen
   * bin weighted max(1, f1) (f1: categories seen once; Good-Turing puts the unseen mass at about
   * f1 / m). An approximation: it holds when the reference has few categories seen once and
   * alarms too often otherwise (2 to 3 times at alpha 0.05 with a 100-row reference of a
   * 30-category Zipf). Prefer `categoricalPsiTest`, exact at every size, which needs the current
   * counts per category, unseen ones kept apart.
   */
  kind?: 'numeric' | 'categorical';
}

/**
 * The p-value of a numeric PSI under no drift, from the reference's counts per decile bin and
 * the current sample's size (bins as for `psi`). Null model (see the header): bin masses
 * q ~ Dirichlet(reference counts), current counts ~ Multinomial(n, q), PSI against the fixed
 * reference fractions. Exact for continuous features (distribution-free); with ties, the
 * Dirichlet is the posterior of the bin masses given the reference. A reference-empty outer bin
 * (a tied minimum: no reference value below it) can still receive values, with weight 1 (the
 * chance of falling below m values being 1/(m + 1)); an empty inner bin is `[e, e)` between
 * equal edges and never receives any.
 * Cost (10 bins, one core): ~2 us on the chi2 path; Monte Carlo ~1.4 us per replicate, so
 * ~80-100 us for a test without drift (~60 replicates) and ~3 ms (all 2000) for an extreme PSI.
 */
export function psiNullTest(psiObserved: number, refCounts: ArrayLike<number>, curCount: number, options: PsiNullOptions = {}): PsiNullTest {
  const m = totalCount(refCounts, 'reference counts');
  const n = curCount;
  if (!(Number.isInteger(n) && n >= 0)) throw badInput('current sample size must be a whole number >= 0', { curCount });
  if (psiObserved < 0) throw badInput('PSI must be >= 0', { psi: psiObserved });
  if (m === 0 || n === 0 || Number.isNaN(psiObserved)) return { psi: psiObserved, pValue: NaN, method: 'none', replicates: 0 };
  const kind = options.kind ?? 'numeric';
  if (kind !== 'numeric' && kind !== 'categorical') throw badInput('unknown PSI kind', { kind });
  const bins = refCounts.length;
  const weights = new Float64Array(bins);
  let seenOnce = 0;
  for (let i = 0; i < bins; i++) if (refCounts[i] === 1) seenOnce++;
  let openWeight = 0;
  for (let i = 0; i < bins; i++) {
    const r = refCounts[i]!;
    if (r > 0) weights[i] = r;
    else if (kind === 'numeric' ? i === 0 || i === bins - 1 : i === 0) openWeight += weights[i] = kind === 'numeric' ? 1 : Math.max(1, seenOnce);
  }
  const chi2 = chi2Approximation(psiObserved, refCounts, m, n, openWeight / (m + openWeight));
  if (chi2 !== null) return { psi: psiObserved, pValue: chi2, method: 'chi2', replicates: 0 };
  const settings = monteCarloSettings(options);
  const rng = seededFrom(options.seed, refCounts, [n, psiObserved, kind === 'numeric' ? 0 : 1]);
  const refFractions = Float64Array.from(refCounts, (r) => binFraction(r, m));
  const active = [...weights.keys()].filter((i) => weights[i]! > 0);
  // Bins that can never receive a value contribute psiTerm(0.0001, r) to every replicate.
  let closedSum = 0;
  for (let i = 0; i < bins; i++) if (!(weights[i]! > 0)) closedSum += psiTerm(PSI_EMPTY_FRACTION, refFractions[i]!);
  const q = new Float64Array(active.length);
  // Marsaglia-Tsang's constants of each bin's gamma shape (weights below 1 never occur: counts are whole).
  const gammaD = Float64Array.from(active, (i) => weights[i]! - 1 / 3);
  const gammaC = gammaD.map((d) => 1 / Math.sqrt(9 * d));
  const activeFractions = Float64Array.from(active, (i) => refFractions[i]!);
  const bins1 = active.length - 1;
  const wholeShapes = active.every((i) => weights[i]! >= 1);
  // Each bin's PSI term of a count x, kept once computed (the same values; a test that runs its
  // whole budget meets most counts many times). Filled lazily, only for current sizes this small.
  // Allocated on first use: tests far from significance stop after a few dozen replicates, before
  // the cache is used, and need not fill it.
  let terms: Float64Array | null = null;
  let replicates = 0;
  return sequentialMonteCarlo(
    psiObserved,
    () => {
      // Tests far from significance stop after a few dozen replicates: no cache for them.
      let cache: Float64Array | null = null;
      if (++replicates > PSI_TERM_CACHE_AFTER && n < PSI_TERM_CACHE_MAX_N) cache = terms ??= new Float64Array(active.length * (n + 1)).fill(NaN);
      let qTotal = 0;
      for (let j = 0; j <= bins1; j++) qTotal += q[j] = wholeShapes ? rng.gammaOf(gammaD[j]!, gammaC[j]!) : rng.gamma(weights[active[j]!]!);
      let remaining = n;
      let qRemaining = qTotal;
      let statistic = closedSum;
      for (let j = 0; j <= bins1; j++) {
        let x = remaining;
        if (j < bins1) {
          x = remaining === 0 ? 0 : rng.binomial(remaining, Math.min(1, q[j]! / qRemaining));
          remaining -= x;
          qRemaining -= q[j]!;
        }
        if (cache === null) statistic += psiTerm(binFraction(x, n), activeFractions[j]!);
        else {
          const at = j * (n + 1) + x;
          let term = cache[at]!;
          if (Number.isNaN(term)) cache[at] = term = psiTerm(binFraction(x, n), activeFractions[j]!);
          statistic += term;
        }
      }
      return statistic;
    },
    settings,
  );
}

/** The p-value alone (see `psiNullTest`). */
export function psiPValue(psiObserved: number, refCounts: ArrayLike<number>, curCount: number, options: PsiNullOptions = {}): number {
  return psiNullTest(psiObserved, refCounts, curCount, options).pValue;
}

/**
 * Categorical PSI and its p-value under no drift, from counts per category. Under no drift the
 * two samples are one exchangeable sample split in two, so the null is the permutation
 * distribution: the current sample's counts are a multivariate hypergeometric draw from the
 * pooled counts, and each replicate recomputes which categories its reference saw (the unseen
 * bin). Exact at every size, long tails and small references included; a plug-in model of the
 * reference's categories is not (it alarms several times too often when the reference has
 * many categories seen once). Chi2 when every category is large, as for numeric PSI.
 * Cost per replicate ~ min(categories, 2 min(n, m) log(categories)) steps: ~0.05-0.4 ms per
 * test without drift for 15-30 categories, 1-7 ms for 300-1000 categories and 1000+ rows.
 */
export function categoricalPsiTest(
  refCounts: ReadonlyMap<string, number>,
  curCounts: ReadonlyMap<string, number>,
  options: MonteCarloOptions = {},
): PsiNullTest {
  const categories = [...new Set([...refCounts.keys(), ...curCounts.keys()])].sort(compareCodePoints);
  return categoricalPsiTestCounts(
    categories.map((k) => refCounts.get(k) ?? 0),
    categories.map((k) => curCounts.get(k) ?? 0),
    options,
  );
}

/** `categoricalPsiTest` over aligned counts per category (categories the reference never saw have ref count 0). */
export function categoricalPsiTestCounts(refCounts: ArrayLike<number>, curCounts: ArrayLike<number>, options: MonteCarloOptions = {}): PsiNullTest {
  if (refCounts.length !== curCounts.length) {
    throw badInput('reference and current counts have different numbers of categories', { ref: refCounts.length, cur: curCounts.length });
  }
  const m = totalCount(refCounts, 'reference counts');
  const n = totalCount(curCounts, 'current counts');
  const observed = categoryPsi(refCounts, curCounts, m, n);
  if (m === 0 || n === 0) return { psi: NaN, pValue: NaN, method: 'none', replicates: 0 };
  let seenOnce = 0;
  let unseen = 0;
  const seen: number[] = [];
  for (let i = 0; i < refCounts.length; i++) {
    if (refCounts[i] === 1) seenOnce++;
    if (refCounts[i]! > 0) seen.push(refCounts[i]!);
    else unseen += curCounts[i]!;
  }
  if (unseen === 0) {
    // Large samples: chi2 over the reference's categories; the unseen bin's mass is about
    // f1 / m (Good-Turing), f1 = categories seen once.
    const openWeight = Math.max(1, seenOnce);
    const chi2 = chi2Approximation(observed, seen, m, n, openWeight / (m + openWeight));
    if (chi2 !== null) return { psi: observed, pValue: chi2, method: 'chi2', replicates: 0 };
  }
  const settings = monteCarloSettings(options);
  const rng = seededFrom(options.seed, refCounts, curCounts);
  for (let i = 0; i < refCounts.length; i++) {
    if (!Number.isInteger(refCounts[i]!) || !Number.isInteger(curCounts[i]!)) throw badInput('category counts must be whole numbers', { index: i });
  }
  // Largest categories first: the hypergeometric draws of the long tail then start from few items.
  const pooled = Float64Array.from(refCounts, (r, i) => r + curCounts[i]!)
    .filter((t) => t > 0)
    .sort()
    .reverse();
  const replicate = 2 * Math.min(n, m) <= pooled.length ? itemDraws(pooled, m, n, rng) : categoryDraws(pooled, m, n, rng);
  return sequentialMonteCarlo(observed, replicate, settings);
}

/**
 * A permutation replicate by per-category hypergeometric draws of the smaller side: cost ~ the
 * number of categories.
 */
function categoryDraws(pooled: Float64Array, m: number, n: number, rng: SeededRandom): () => number {
  const K = pooled.length;
  const drawCur = n <= m;
  // Category j is drawn from the same population (the items of categories j..) in every
  // replicate; only the number drawn varies.
  const urns: HypergeometricUrn[] = [];
  // termAt[j] + c: category j's PSI term with c current items, in `terms` (c = 0 .. pooled[j]).
  const termAt = new Float64Array(K);
  let population = m + n;
  for (let j = 0; j < K; j++) {
    urns.push(hypergeometricUrn(pooled[j]!, population));
    population -= pooled[j]!;
    if (j + 1 < K) termAt[j + 1] = termAt[j]! + pooled[j]! + 1;
  }
  const termsSize = m + n + K;
  // The PSI terms kept once computed, as psiNullTest's: the same values; allocated for tests past
  // PSI_TERM_CACHE_AFTER replicates. 0 marks a term not yet computed (a term that is 0 is
  // computed again, to the same 0).
  let terms: Float64Array | null = null;
  let replicates = 0;
  // categoryPsi(ref, cur, m, n) of the drawn counts, its terms summed in the same order as they are drawn.
  return () => {
    let cache: Float64Array | null = null;
    if (++replicates > PSI_TERM_CACHE_AFTER && termsSize <= CATEGORY_TERM_CACHE_MAX) cache = terms ??= new Float64Array(termsSize);
    let draws = drawCur ? n : m;
    let sum = 0;
    let unseen = 0;
    for (let j = 0; j < K; j++) {
      const x = draws === 0 ? 0 : j === K - 1 ? draws : rng.hypergeometricFrom(draws, urns[j]!);
      draws -= x;
      const cur = drawCur ? x : pooled[j]! - x;
      const ref = pooled[j]! - cur;
      if (!(ref > 0)) unseen += cur;
      else if (cache === null) sum += psiTerm(binFraction(cur, n), ref / m);
      else {
        const at = termAt[j]! + cur;
        let term = cache[at]!;
        if (term === 0) cache[at] = term = psiTerm(binFraction(cur, n), ref / m);
        sum += term;
      }
    }
    return sum + psiTerm(binFraction(unseen, n), PSI_EMPTY_FRACTION);
  };
}

/**
 * A permutation replicate by drawing the smaller side's items one at a time (a Fenwick tree
 * over the pooled counts, undone after each replicate) and updating the PSI only where the
 * draws fell: cost ~ min(n, m) log(categories), for many categories and a small sample.
 */
function itemDraws(pooled: Float64Array, m: number, n: number, rng: SeededRandom): () => number {
  const K = pooled.length;
  const tree = new Float64Array(K + 1);
  const add = (j: number, delta: number): void => {
    for (let i = j + 1; i <= K; i += i & -i) tree[i]! += delta;
  };
  pooled.forEach((t, j) => add(j, t));
  let topBit = 1;
  while (topBit * 2 <= K) topBit *= 2;
  /** The category of the u-th remaining item (0-based). */
  const find = (u: number): number => {
    let pos = 0;
    for (let step = topBit; step > 0; step >>= 1) {
      if (pos + step <= K && tree[pos + step]! <= u) {
        pos += step;
        u -= tree[pos]!;
      }
    }
    return pos;
  };
  const drawCur = n <= m;
  const d = drawCur ? n : m;
  const total = m + n;
  const drawn = new Float64Array(K);
  const touched = new Int32Array(d);
  // Drawing the current sample, an untouched category keeps all its items in the reference.
  const untouchedTerm = Float64Array.from(pooled, (t) => psiTerm(PSI_EMPTY_FRACTION, t / m));
  const untouchedSum = untouchedTerm.reduce((a, b) => a + b, 0);
  return () => {
    let nTouched = 0;
    for (let t = 0; t < d; t++) {
      const j = find(Math.floor(rng.uniform() * (total - t)));
      add(j, -1);
      if (drawn[j] === 0) touched[nTouched++] = j;
      drawn[j]! += 1;
    }
    let statistic = drawCur ? untouchedSum : 0;
    let unseen = drawCur ? 0 : total;
    for (let i = 0; i < nTouched; i++) {
      const j = touched[i]!;
      const t = pooled[j]!;
      const cur = drawCur ? drawn[j]! : t - drawn[j]!;
      const ref = t - cur;
      if (drawCur) statistic -= untouchedTerm[j]!;
      else unseen -= t;
      if (ref > 0) statistic += psiTerm(binFraction(cur, n), ref / m);
      else unseen += cur;
      add(j, drawn[j]!);
      drawn[j] = 0;
    }
    return statistic + psiTerm(binFraction(unseen, n), PSI_EMPTY_FRACTION);
  };
}

/** PSI over aligned category counts: categories with reference count 0 share the unseen bin. */
function categoryPsi(refCounts: ArrayLike<number>, curCounts: ArrayLike<number>, m: number, n: number): number {
  if (m === 0 || n === 0) return NaN;
  let sum = 0;
  let unseen = 0;
  for (let i = 0; i < refCounts.length; i++) {
    if (refCounts[i]! > 0) sum += psiTerm(binFraction(curCounts[i]!, n), refCounts[i]! / m);
    else unseen += curCounts[i]!;
  }
  return sum + psiTerm(binFraction(unseen, n), PSI_EMPTY_FRACTION);
}

/**
 * Large samples: PSI / scale is close to chi2(df), scale = 1/n + 1/m, df = reference bins - 1,
 * once its mean is corrected to second order. Writing r = p(1 + a), c = p(1 + b) per bin and
 * expanding the logarithms, E[(c - r) ln(c / r)] = p (Var a + Var b) - p (k3(a) + k3(b)) / 2
 * + p (Var a^2 + Var b^2) + ..., which for multinomial fractions sums to
 * df * scale + (1/n^2 + 1/m^2) sum (1 - p_i) / (2 p_i); we divide by that mean instead of
 * df * scale. The bins the reference left empty but values can reach ("open", total mass
 * openMass) get K ~ Binomial(n, openMass) values, which add g(K) = (K/n - 0.0001) ln(K / (n 0.0001)):
 * the p-value mixes over K. (Several open bins are treated as one: splitting K among them only
 * lowers g, which is superadditive, so the mixture errs on the safe side.)
 * null when the samples are too small for it (an expected count below PSI_CHI2_MIN_EXPECTED in
 * some reference bin, or more than MAX_OPEN_EXPECTED values expected in the open bins).
 */
function chi2Approximation(psiObserved: number, refCounts: ArrayLike<number>, m: number, n: number, openMass: number): number | null {
  let df = -1;
  let inverseFractions = 0;
  let minFraction = Infinity;
  for (let i = 0; i < refCounts.length; i++) {
    const r = refCounts[i]!;
    if (!(r > 0)) continue;
    df++;
    inverseFractions += (1 - r / m) / (2 * (r / m));
    minFraction = Math.min(minFraction, r / m);
  }
  if (Math.min(n, m) * minFraction < PSI_CHI2_MIN_EXPECTED || n * openMass > MAX_OPEN_EXPECTED) return null;
  const tail = (x: number, nRest: number): number => {
    if (x <= 0) return 1;
    if (df === 0 || nRest === 0) return 0;
    const mean = df * (1 / nRest + 1 / m) + (1 / (nRest * nRest) + 1 / (m * m)) * inverseFractions;
    return chiSquaredSf((df * x) / mean, df);
  };
  // Binomial(n, openMass) weights in logs; n * openMass <= MAX_OPEN_EXPECTED keeps this short.
  let p = 0;
  let cumulative = 0;
  let logWeight = n * Math.log1p(-openMass);
  const logRatio = Math.log(openMass / (1 - openMass));
  for (let k = 0; k <= n; k++) {
    if (k > 0) logWeight += Math.log((n - k + 1) / k) + logRatio;
    const w = Math.exp(logWeight);
    p += w * tail(psiObserved - (k === 0 ? 0 : psiTerm(k / n, PSI_EMPTY_FRACTION)), n - k);
    cumulative += w;
    if (cumulative >= 1 - 1e-15 || (k > n * openMass && w < 1e-17)) break;
  }
  // The weight left out lies further in the tail: count it as alarms (conservative).
  return Math.min(1, p + Math.max(0, 1 - cumulative));
}

// ---------------------------------------------------------------------------------------------
// Multiple testing and decisions

export interface BenjaminiHochberg {
  /** rejected[i]: hypothesis i is rejected at false discovery rate q. */
  rejected: boolean[];
  /** BH-adjusted p-values (q-values): min over j >= rank of p_(j) * N / j, capped at 1. */
  adjusted: number[];
}

/**
 * Benjamini-Hochberg step-up: with p-values sorted ascending, reject the k smallest where k is
 * the largest rank with p_(k) <= k q / N. Controls the false discovery rate at q for independent
 * (or positively dependent) tests. Every p-value must be in [0, 1]: leave out tests that could
 * not be run rather than passing NaN.
 */
export function benjaminiHochberg(pValues: readonly number[], q: number): BenjaminiHochberg {
  if (!(q > 0 && q <= 1)) throw badInput('false discovery rate q must be in (0, 1]', { q });
  const N = pValues.length;
  pValues.forEach((p, i) => {
    if (!(p >= 0 && p <= 1)) throw badInput('p-values must be in [0, 1]', { index: i, pValue: p });
  });
  const order = pValues.map((_, i) => i).sort((a, b) => pValues[a]! - pValues[b]! || a - b);
  let k = 0;
  for (let rank = N; rank >= 1; rank--) {
    if (pValues[order[rank - 1]!]! <= (rank * q) / N) {
      k = rank;
      break;
    }
  }
  const rejected = new Array<boolean>(N).fill(false);
  const adjusted = new Array<number>(N).fill(1);
  let running = 1;
  for (let rank = N; rank >= 1; rank--) {
    const i = order[rank - 1]!;
    running = Math.min(running, (pValues[i]! * N) / rank);
    adjusted[i] = running;
    if (rank <= k) rejected[i] = true;
  }
  return { rejected, adjusted };
}

/** Statistics of one (feature, slice, window) test. */
export interface DriftTestStatistics {
  kind: 'numeric' | 'categorical';
  /** NaN when either side had no rows. */
  psi: number;
  /** `psiPValue` of that PSI. */
  psiPValue: number;
  /** KS p-value (numeric only). */
  ksPValue?: number | null;
}

/** Evidently's defaults: PSI >= 0.1, or (numeric) KS p-value <= 0.05. */
export const FIXED_DRIFT_THRESHOLDS = { psi: 0.1, ksPValue: 0.05 } as const;
/** Calibrated defaults: Benjamini-Hochberg at 5% FDR; a PSI below 0.02 never alarms. */
export const CALIBRATED_DRIFT_DEFAULTS = { fdr: 0.05, psiFloor: 0.02 } as const;

/**
 * The p-value of one test in calibrated mode. Numeric: the PSI and KS tests, Bonferroni-combined,
 * min(1, 2 min(pPsi, pKs)) (valid whatever their dependence; no more than twice the better one).
 * Categorical: the PSI test's. NaN when the test could not be run.
 */
export function driftTestPValue(t: DriftTestStatistics): number {
  if (t.kind === 'categorical' || t.ksPValue === undefined || t.ksPValue === null) return t.psiPValue;
  return Math.min(1, 2 * Math.min(t.psiPValue, t.ksPValue));
}

/**
 * One test on its own: the fixed-mode decision (PSI >= 0.1, or numeric KS p-value <= 0.05;
 * null without data) and the p-value it brings to calibrated mode (`driftTestPValue`), which
 * is decided only together with the other tests of the evaluation (`decideDrift`).
 */
export function driftDecision(
  t: DriftTestStatistics,
  thresholds: { psi?: number; ksPValue?: number } = {},
): { fixedDrift: boolean | null; pValue: number } {
  if (Number.isNaN(t.psi)) return { fixedDrift: null, pValue: NaN };
  const ks = t.kind === 'numeric' && t.ksPValue !== undefined && t.ksPValue !== null && t.ksPValue <= (thresholds.ksPValue ?? FIXED_DRIFT_THRESHOLDS.ksPValue);
  return { fixedDrift: t.psi >= (thresholds.psi ?? FIXED_DRIFT_THRESHOLDS.psi) || ks, pValue: driftTestPValue(t) };
}

export interface DriftDecision {
  /** null: no decision (no data on one side). */
  drift: boolean | null;
  /** The test's p-value (`driftTestPValue`; NaN without data). */
  pValue: number;
  /** Its BH-adjusted value among the tests decided together (calibrated mode), else null. */
  qValue: number | null;
}

export type DriftDecisionOptions =
  | { mode: 'fixed'; psiThreshold?: number; ksPValueThreshold?: number }
  | { mode: 'calibrated'; fdr?: number; psiFloor?: number };

/**
 * Decide every test of one evaluation together. Fixed: each test on its own thresholds.
 * Calibrated: p-values from `driftTestPValue`, Benjamini-Hochberg across all the tests that
 * could be run, then the effect-size floor (a rejected test with PSI below it does not alarm).
 */
export function decideDrift(tests: readonly DriftTestStatistics[], options: DriftDecisionOptions): DriftDecision[] {
  if (options.mode === 'fixed') {
    const thresholds = { psi: options.psiThreshold, ksPValue: options.ksPValueThreshold };
    return tests.map((t) => {
      const one = driftDecision(t, thresholds);
      return { drift: one.fixedDrift, pValue: one.pValue, qValue: null };
    });
  }
  const fdr = options.fdr ?? CALIBRATED_DRIFT_DEFAULTS.fdr;
  const psiFloor = options.psiFloor ?? CALIBRATED_DRIFT_DEFAULTS.psiFloor;
  const pValues = tests.map(driftTestPValue);
  const runnable = tests.map((_, i) => i).filter((i) => !Number.isNaN(pValues[i]!) && !Number.isNaN(tests[i]!.psi));
  const bh = benjaminiHochberg(
    runnable.map((i) => pValues[i]!),
    fdr,
  );
  const decisions: DriftDecision[] = tests.map((_, i) => ({ drift: null, pValue: pValues[i]!, qValue: null }));
  runnable.forEach((i, j) => {
    decisions[i] = { drift: bh.rejected[j]! && tests[i]!.psi >= psiFloor, pValue: pValues[i]!, qValue: bh.adjusted[j]! };
  });
  return decisions;
}
