// Drift rows reshaped for the dashboard's heatmap and sparklines: one entry per series (feature,
// slice, window) and one column per window end, each statistic a series x time matrix. The same
// numbers as the row format, without repeating names and times on every cell.
import type { MetricRecord } from './metrics-store.js';

export interface DriftColumns {
  /** Window ends (ISO-8601 UTC), oldest first: the matrices' columns. */
  window_end: string[];
  /** The series, one per matrix row: feature[i], slice[i], window_ms[i] name row i. */
  feature: string[];
  slice: string[];
  window_ms: number[];
  /** [series][window end]; null where that series has no row at that time. */
  psi: (number | null)[][];
  ks: (number | null)[][];
  p_value: (number | null)[][];
  q_value: (number | null)[][];
  drift: (boolean | null)[][];
  n_ref: (number | null)[][];
  n_cur: (number | null)[][];
  /** Why there is no decision (no_reference, too_few_rows), else null. */
  note: (string | null)[][];
}

/** Series sorted by feature, slice, window; times ascending. */
export function driftColumns(rows: readonly MetricRecord[]): DriftColumns {
  const times = [...new Set(rows.map((r) => r.window_end))].sort();
  const column = new Map(times.map((t, i) => [t, i]));
  const keyOf = (r: MetricRecord): string => JSON.stringify([r.feature, r.slice, Number(r.window_ms)]);
  const series = [...new Map(rows.map((r) => [keyOf(r), r])).values()].sort(
    (a, b) => (a.feature < b.feature ? -1 : a.feature > b.feature ? 1 : 0) || (a.slice < b.slice ? -1 : a.slice > b.slice ? 1 : 0) || Number(a.window_ms) - Number(b.window_ms),
  );
  const row = new Map(series.map((s, i) => [keyOf(s), i]));
  const matrix = <T>(): (T | null)[][] => series.map(() => new Array<T | null>(times.length).fill(null));
  const out: DriftColumns = {
    window_end: times,
    feature: series.map((s) => s.feature),
    slice: series.map((s) => s.slice),
    window_ms: series.map((s) => Number(s.window_ms)),
    psi: matrix(),
    ks: matrix(),
    p_value: matrix(),
    q_value: matrix(),
    drift: matrix(),
    n_ref: matrix(),
    n_cur: matrix(),
    note: matrix(),
  };
  for (const r of rows) {
    const i = row.get(keyOf(r))!;
    const j = column.get(r.window_end)!;
    out.psi[i]![j] = r.value;
    out.ks[i]![j] = r.ks;
    out.p_value[i]![j] = r.p_value;
    out.q_value[i]![j] = r.q_value;
    out.drift[i]![j] = r.drift;
    out.n_ref[i]![j] = Number(r.n_ref);
    out.n_cur[i]![j] = Number(r.n_cur);
    out.note[i]![j] = typeof r.detail.note === 'string' ? r.detail.note : null;
  }
  return out;
}
