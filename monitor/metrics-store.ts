// The monitor's metrics time series in the offline store: every evaluation writes one row per
// (metric, feature, slice, window), so history survives restarts, can be plotted, and tells a
// restarted monitor where to resume. Read back with filters by the API.
import { dateTime64MsText, tabSeparatedRows, type OfflineExecutor } from '../offline/index.js';

export const METRICS_TABLE = 'tm_monitor_metrics';

/** One row: a drift statistic, a label metric, a label count or freshness at one window end. */
export interface MetricRow {
  monitor: string;
  version: string;
  /** drift (value = PSI), auc, log_loss, ..., freshness (value = ms), labels (value = labelled predictions). */
  metric: string;
  /** Empty for metrics that are not about one feature. */
  feature: string;
  slice: string;
  window_ms: number;
  window_end: number;
  value: number | null;
  n_ref: number;
  n_cur: number;
  ks: number | null;
  ks_error_bound: number | null;
  p_value: number | null;
  q_value: number | null;
  drift: boolean | null;
  /** Free-form JSON: PSI/KS p-values, unmatched label counts, a note. */
  detail: string;
}

export async function ensureMetricsTable(executor: OfflineExecutor): Promise<void> {
  await executor.command(
    `CREATE TABLE IF NOT EXISTS ${METRICS_TABLE} (monitor String, version String, metric LowCardinality(String), feature String, slice String, window_ms UInt64, window_end DateTime64(3, 'UTC'), ` +
      `value Nullable(Float64), n_ref UInt64, n_cur UInt64, ks Nullable(Float64), ks_error_bound Nullable(Float64), p_value Nullable(Float64), q_value Nullable(Float64), drift Nullable(Bool), detail String, evaluated_at DateTime64(3, 'UTC')) ` +
      `ENGINE = ReplacingMergeTree(evaluated_at) ORDER BY (monitor, metric, feature, slice, window_ms, window_end)`,
  );
}

/**
 * Merge the metrics table's parts into one. Every read of it uses FINAL (ReplacingMergeTree), whose
 * cost grows with the parts to merge at read time: after a replay wrote one part per evaluation,
 * a dashboard page read took 60-150 ms of FINAL on the flights' 160k rows, 2-9 ms once compacted.
 */
export async function compactMetrics(executor: OfflineExecutor): Promise<void> {
  await executor.command(`OPTIMIZE TABLE ${METRICS_TABLE} FINAL`);
}

const METRIC_COLUMNS = ['monitor', 'version', 'metric', 'feature', 'slice', 'window_ms', 'window_end', 'value', 'n_ref', 'n_cur', 'ks', 'ks_error_bound', 'p_value', 'q_value', 'drift', 'detail', 'evaluated_at'] as const;
/** Rows per INSERT: bounded text whatever an evaluation's size. */
const METRIC_ROWS_PER_INSERT = 50_000;

/** Write one evaluation's rows (as TabSeparated text: tabSeparatedRows). */
export async function writeMetrics(executor: OfflineExecutor, rows: readonly MetricRow[]): Promise<void> {
  const evaluatedAt = dateTime64MsText(Date.now());
  for (let i = 0; i < rows.length; i += METRIC_ROWS_PER_INSERT) {
    const chunk = rows.slice(i, i + METRIC_ROWS_PER_INSERT).map((r) => ({ ...r, window_end: dateTime64MsText(r.window_end), evaluated_at: evaluatedAt }));
    await executor.insertTabSeparated(METRICS_TABLE, METRIC_COLUMNS, Buffer.from(tabSeparatedRows(chunk, METRIC_COLUMNS), 'utf8'));
  }
}

/** The latest window end already evaluated for this monitor version (to resume after a restart), or null. */
export async function lastEvaluatedMs(executor: OfflineExecutor, monitor: string, version: string): Promise<number | null> {
  const rows = await executor.rows<{ t: number | null }>(
    `SELECT if(count() = 0, NULL, toUnixTimestamp64Milli(max(window_end))) AS t FROM ${METRICS_TABLE} WHERE monitor = {monitor:String} AND version = {version:String}`,
    { monitor, version },
  );
  return rows[0]?.t ?? null;
}

export interface MetricQuery {
  monitor?: string;
  /** A monitor plan version (its results only: another version has other bins). */
  version?: string;
  metric?: string;
  feature?: string;
  slice?: string;
  windowMs?: number;
  fromMs?: number;
  toMs?: number;
  /** Only rows the drift decision flagged. */
  driftOnly?: boolean;
  limit?: number;
}

export interface MetricRecord extends Omit<MetricRow, 'window_end' | 'detail'> {
  window_end: string;
  detail: Record<string, unknown>;
}

/** Rows matching the filters, newest window first (FINAL: a re-evaluated window shows once). */
export async function queryMetrics(executor: OfflineExecutor, q: MetricQuery): Promise<MetricRecord[]> {
  const where: string[] = [];
  const params: Record<string, unknown> = { limit: Math.min(q.limit ?? 1000, 100_000) };
  const eq = (column: string, name: string, type: string, value: unknown): void => {
    if (value === undefined) return;
    where.push(`${column} = {${name}:${type}}`);
    params[name] = value;
  };
  eq('monitor', 'monitor', 'String', q.monitor);
  eq('version', 'version', 'String', q.version);
  eq('metric', 'metric', 'String', q.metric);
  eq('feature', 'feature', 'String', q.feature);
  eq('slice', 'slice', 'String', q.slice);
  eq('window_ms', 'windowMs', 'UInt64', q.windowMs);
  if (q.fromMs !== undefined) {
    where.push(`window_end >= fromUnixTimestamp64Milli({fromMs:Int64}, 'UTC')`);
    params.fromMs = q.fromMs;
  }
  if (q.toMs !== undefined) {
    where.push(`window_end <= fromUnixTimestamp64Milli({toMs:Int64}, 'UTC')`);
    params.toMs = q.toMs;
  }
  if (q.driftOnly) where.push('drift = true');
  const rows = await executor.rows<Omit<MetricRecord, 'detail' | 'window_end'> & { end_ms: number; detail: string }>(
    `SELECT monitor, version, metric, feature, slice, window_ms, toUnixTimestamp64Milli(window_end) AS end_ms, value, n_ref, n_cur, ks, ks_error_bound, p_value, q_value, drift, detail ` +
      `FROM ${METRICS_TABLE} FINAL ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY window_end DESC, metric, feature, slice LIMIT {limit:UInt32}`,
    params,
  );
  return rows.map(({ end_ms, ...r }) => ({ ...r, window_end: new Date(end_ms).toISOString(), detail: r.detail ? (JSON.parse(r.detail) as Record<string, unknown>) : {} }));
}

/** The slices with stored results of one metric (and feature) of a monitor version, sorted (for "valid choices" in errors). */
export async function storedSlices(executor: OfflineExecutor, q: { monitor: string; version: string; metric: string; feature?: string }): Promise<string[]> {
  const rows = await executor.rows<{ slice: string }>(
    `SELECT DISTINCT slice FROM ${METRICS_TABLE} WHERE monitor = {monitor:String} AND version = {version:String} AND metric = {metric:String}${q.feature === undefined ? '' : ' AND feature = {feature:String}'} ORDER BY slice LIMIT 1000`,
    q,
  );
  return rows.map((r) => r.slice);
}
