// Population stability index (docs/semantics.md, "Drift and quality metrics"): numpy-compatible
// quantile edges, left-closed bins, bin counts, and PSI over numeric bins or categories.
// Pure functions over plain numbers; counts may be any non-negative numbers (they are
// usually integers summed in ClickHouse).
import { compareCodePoints, TidemarkError } from '../definitions/index.js';

/** The fraction an empty bin is given in PSI, so that ln(c / r) stays finite (SEMANTICS). */
export const PSI_EMPTY_FRACTION = 0.0001;

/** The probabilities of the 9 inner decile edges. k / 10, not 0.1 * k: the same doubles numpy gets. */
export const DECILE_PROBABILITIES: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => k / 10);

function badInput(message: string, details: Record<string, unknown> = {}): TidemarkError {
  return new TidemarkError('TM_MONITOR_BAD_INPUT', message, details);
}

/**
 * Quantiles of an ascending sample, exactly as numpy's default `np.quantile(x, p)` (method
 * 'linear', R type 7): position (n - 1) * p, linear interpolation between the neighbours with
 * numpy's own rounding (`b - (b - a) * (1 - t)` when t >= 0.5), so that edges equal numpy's bit
 * for bit and a value equal to an edge falls in the same bin on both sides.
 */
export function quantileEdges(sorted: ArrayLike<number>, probabilities: readonly number[]): number[] {
  const n = sorted.length;
  if (n === 0) throw badInput('quantiles of an empty sample');
  for (let i = 0; i < n; i++) {
    const v = sorted[i]!;
    if (Number.isNaN(v)) throw badInput('sample contains NaN', { index: i });
    if (i > 0 && v < sorted[i - 1]!) throw badInput('sample is not sorted ascending', { index: i });
  }
  return probabilities.map((p) => {
    if (!(p >= 0 && p <= 1)) throw badInput('quantile probability outside [0, 1]', { probability: p });
    const position = (n - 1) * p;
    if (position >= n - 1) return sorted[n - 1]!;
    const lo = Math.floor(position);
    const t = position - lo;
    const a = sorted[lo]!;
    const b = sorted[lo + 1]!;
    const diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
  });
}

/** The 9 inner edges of the reference's deciles (10 bins, outer bins open-ended). */
export function decileEdges(sorted: ArrayLike<number>): number[] {
  return quantileEdges(sorted, DECILE_PROBABILITIES);
}

/**
 * The bin of x: bins are left-closed `[e_{i-1}, e_i)` with open-ended outer bins, so the index is
 * the number of edges <= x (0 .. edges.length). Equal edges (ties in the reference) make empty
 * bins `[e, e)`; a value equal to them goes past all of them.
 */
export function binIndex(edges: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (edges[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Counts of values per bin (edges.length + 1 bins). NaN has no bin and is refused. */
export function binCounts(edges: ArrayLike<number>, values: ArrayLike<number>): Float64Array {
  for (let i = 1; i < edges.length; i++) {
    if (!(edges[i]! >= edges[i - 1]!)) throw badInput('bin edges must be ascending and not NaN', { index: i });
  }
  const counts = new Float64Array(edges.length + 1);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) throw badInput('value is NaN', { index: i });
    counts[binIndex(edges, v)]! += 1;
  }
  return counts;
}

/** Sum of counts, refusing negative or non-finite ones (a count is never either). */
export function totalCount(counts: ArrayLike<number>, what = 'counts'): number {
  let total = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (!(c >= 0 && c < Infinity)) throw badInput(`${what} must be finite and >= 0`, { index: i, count: c });
    total += c;
  }
  return total;
}

/**
 * PSI over bins: `sum((c_i - r_i) * ln(c_i / r_i))` where r_i, c_i are the reference's and the
 * current sample's fractions per bin and an empty fraction counts as 0.0001. Unitless, >= 0.
 * An empty sample on either side has no distribution to compare: the result is NaN (callers
 * decide what "no data" means; nothing here throws for it).
 */
export function psi(refCounts: ArrayLike<number>, curCounts: ArrayLike<number>): number {
  if (refCounts.length !== curCounts.length) {
    throw badInput('reference and current counts have different numbers of bins', { ref: refCounts.length, cur: curCounts.length });
  }
  const nRef = totalCount(refCounts, 'reference counts');
  const nCur = totalCount(curCounts, 'current counts');
  if (nRef === 0 || nCur === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < refCounts.length; i++) sum += psiTerm(binFraction(curCounts[i]!, nCur), binFraction(refCounts[i]!, nRef));
  return sum;
}

/**
 * Each bin's term of `psi(refCounts, curCounts)`, the same terms in the same order: their sum in
 * index order is that PSI bit for bit. All NaN when either side is empty (psi is NaN then).
 */
export function psiContributions(refCounts: ArrayLike<number>, curCounts: ArrayLike<number>): number[] {
  if (refCounts.length !== curCounts.length) {
    throw badInput('reference and current counts have different numbers of bins', { ref: refCounts.length, cur: curCounts.length });
  }
  const nRef = totalCount(refCounts, 'reference counts');
  const nCur = totalCount(curCounts, 'current counts');
  return Array.from({ length: refCounts.length }, (_, i) => (nRef === 0 || nCur === 0 ? NaN : psiTerm(binFraction(curCounts[i]!, nCur), binFraction(refCounts[i]!, nRef))));
}

/** A bin's fraction of its sample as PSI uses it: count / total, or 0.0001 when empty. */
export function binFraction(count: number, total: number): number {
  return count === 0 ? PSI_EMPTY_FRACTION : count / total;
}

/** One bin's PSI term from the current and reference fractions. */
export function psiTerm(cur: number, ref: number): number {
  return (cur - ref) * Math.log(cur / ref);
}

/** Categorical bins: bin 0 holds every category the reference never saw, bins 1.. the reference's. */
export interface CategoricalBins {
  /** categories[i] is the category of bin i + 1, in code-point order. */
  categories: string[];
  ref: Float64Array;
  cur: Float64Array;
}

/**
 * One bin per reference category plus one (bin 0) for categories unseen in the reference
 * (SEMANTICS). Bin 0 of `ref` is 0 by construction; a reference category with count 0 is
 * treated as unseen (it was not seen).
 */
export function categoricalBins(refCounts: ReadonlyMap<string, number>, curCounts: ReadonlyMap<string, number>): CategoricalBins {
  const categories = [...refCounts.entries()].filter(([, c]) => c !== 0).map(([k]) => k);
  categories.sort(compareCodePoints);
  const index = new Map(categories.map((k, i) => [k, i + 1]));
  const ref = new Float64Array(categories.length + 1);
  const cur = new Float64Array(categories.length + 1);
  for (const [k, c] of refCounts) if (c !== 0) ref[index.get(k)!] = c;
  for (const [k, c] of curCounts) cur[index.get(k) ?? 0]! += c;
  totalCount(ref, 'reference counts');
  totalCount(cur, 'current counts');
  return { categories, ref, cur };
}

/** PSI of a categorical feature over `categoricalBins`; NaN when either side is empty. */
export function categoricalPsi(refCounts: ReadonlyMap<string, number>, curCounts: ReadonlyMap<string, number>): number {
  const bins = categoricalBins(refCounts, curCounts);
  return psi(bins.ref, bins.cur);
}
