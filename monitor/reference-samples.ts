// The numeric reference profile computed in Node from the reference's samples (the same samples as
// the evaluation counts: event fields from numericSamplesSql, view features windowed in Node), instead
// of sampling the reference twice in ClickHouse (numericProfileSql's quantiles, then binCountsSql's
// counts). The edges repeat ClickHouse's quantilesExactInclusive operation by operation, so
// they are the same doubles; the counts are the fine bins of the same values (as NumericBinCounter).
// Memory: the reference's samples, once (ClickHouse's exact quantiles hold them too).
import type { MonitorPlan } from '../definitions/index.js';
import { FINE_BIN_PROBABILITIES, FINE_BINS } from './drift-sql.js';
import { NumericBinCounter } from './numeric-bins.js';

/** The levels as numericProfileSql writes them (two decimals), parsed as ClickHouse parses them. */
const LEVELS = FINE_BIN_PROBABILITIES.map((p) => Number(p.toFixed(2)));

/** One numeric (feature, slice) of the reference: its row count, fine edges and counts per fine bin. */
export interface ReferenceSeries {
  feature: string;
  slice: string;
  n: number;
  edges: number[];
  counts: number[];
}

/** Collects every sample of the reference per series (the counter's series), then profiles them. */
export class ReferenceSamples extends NumericBinCounter {
  private values: Float64Array[] = [];
  private sizes: number[] = [];

  constructor(plan: MonitorPlan) {
    super(plan, () => null);
  }

  protected override tally(_bucket: number, id: number, v: number, c: number): void {
    const values = this.room(id, c);
    const size = this.sizes[id]!;
    values.fill(v, size, size + c);
    this.sizes[id] = size + c;
  }

  /** A windowed view feature's samples (the reference is one bucket): copied into each series at once, not tallied one by one. */
  override countSeries(series: Int32Array, _ts: Float64Array, xs: Float64Array, count: number): void {
    for (let s = 0; s < series.length; s++) {
      const id = series[s]!;
      const values = this.room(id, count);
      const size = this.sizes[id]!;
      values.set(xs.subarray(0, count), size);
      this.sizes[id] = size + count;
    }
  }

  /** Series id's values, with room for `more` after its size. */
  private room(id: number, more: number): Float64Array {
    let values = this.values[id];
    const size = this.sizes[id] ?? 0;
    if (!values || size + more > values.length) {
      const grown = new Float64Array(Math.max(1024, (size + more) * 2));
      if (values) grown.set(values.subarray(0, size));
      this.values[id] = values = grown;
      this.sizes[id] = size;
    }
    return values;
  }

  /** Every series with samples: n (NaN included, as count()), the edges (NaN left out, as the quantiles do) and the counts. */
  series(): ReferenceSeries[] {
    const out: ReferenceSeries[] = [];
    this.keys.forEach((key, id) => {
      const size = this.sizes[id] ?? 0;
      if (size === 0) return;
      // Ascending, NaN last (typed-array sort): the quantiles read the values before the NaN.
      const all = this.values[id]!.subarray(0, size).sort();
      let numbers = size;
      while (numbers > 0 && Number.isNaN(all[numbers - 1])) numbers--;
      const sorted = all.subarray(0, numbers);
      const edges = LEVELS.map((level) => quantileExactInclusive(sorted, level));
      // Bin = the number of edges <= v (NaN: bin 0), walking values and edges up together.
      const counts = new Array<number>(FINE_BINS).fill(0);
      counts[0] = size - numbers;
      let bin = 0;
      for (let i = 0; i < numbers; i++) {
        const v = sorted[i]!;
        while (bin < edges.length && edges[bin]! <= v) bin++;
        counts[bin]! += 1;
      }
      const [feature, slice] = key.split('\u0000') as [string, string];
      out.push({ feature, slice, n: size, edges, counts });
    });
    return out;
  }
}

/**
 * ClickHouse's QuantileExactInclusive.getFloat over ascending values: h = level * (size - 1) + 1,
 * n = trunc(h); the max past the end, the min before the start, else a + (h - n) * (b - a) with a
 * and b the n-th and (n+1)-th smallest. NaN when there are no values.
 */
export function quantileExactInclusive(sorted: Float64Array, level: number): number {
  const size = sorted.length;
  if (size === 0) return Number.NaN;
  const h = level * (size - 1) + 1;
  const n = Math.trunc(h);
  if (n >= size) return sorted[size - 1]!;
  if (n < 1) return sorted[0]!;
  const a = sorted[n - 1]!;
  return a + (h - n) * (sorted[n]! - a);
}
