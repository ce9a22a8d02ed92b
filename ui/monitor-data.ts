// What the monitor pages read from the offline store, in bounded amounts: the drift rows of one
// evaluation, a bounded history per (feature, slice), the reference profile's bins, the alerts.
// Never raw events: every number here is an aggregate the monitor already stored.
import type { MonitorPlan } from '../definitions/index.js';
import { decileCounts, decileEdgesOfFine, METRICS_TABLE, type DriftDistribution, OfflineAlertStateStore, queryMetrics, type AlertState, type FeatureSliceProfile, type MetricRecord } from '../monitor/index.js';
import type { OfflineExecutor } from '../offline/index.js';

/** The latest evaluations shown in sparklines and histories (older ones stay in the API). */
export const HISTORY_EVALUATIONS = 30;

export interface DriftRow extends MetricRecord {
  endMs: number;
}

function withEnd(rows: MetricRecord[]): DriftRow[] {
  return rows.map((r) => ({ ...r, endMs: Date.parse(r.window_end) }));
}

/** The newest evaluation time of the monitor's drift rows (of one window), or null before any. */
export async function latestDriftEnd(executor: OfflineExecutor, monitor: string, windowMs: number): Promise<number | null> {
  const [row] = await queryMetrics(executor, { monitor, metric: 'drift', windowMs, limit: 1 });
  return row ? Date.parse(row.window_end) : null;
}

/** Every drift row of one evaluation and window. */
export async function driftRowsAt(executor: OfflineExecutor, monitor: string, windowMs: number, endMs: number): Promise<DriftRow[]> {
  return withEnd(await queryMetrics(executor, { monitor, metric: 'drift', windowMs, fromMs: endMs, toMs: endMs, limit: 100_000 }));
}

/** A drift history point: enough for a sparkline. */
export interface HistoryPoint {
  endMs: number;
  value: number | null;
  drift: boolean | null;
}

/**
 * The last HISTORY_EVALUATIONS drift values up to endMs of the given (feature, slice) pairs (the
 * rows a page shows, not every series), oldest first, keyed by `feature\0slice`.
 */
export async function driftHistory(executor: OfflineExecutor, plan: MonitorPlan, windowMs: number, endMs: number, pairs: readonly { feature: string; slice: string }[]): Promise<Map<string, HistoryPoint[]>> {
  const out = new Map<string, HistoryPoint[]>();
  if (pairs.length === 0) return out;
  const wanted = new Set(pairs.map((p) => `${p.feature}\u0000${p.slice}`));
  const rows = await executor.rows<{ feature: string; slice: string; end_ms: number; value: number | null; drift: boolean | null }>(
    `SELECT feature, slice, toUnixTimestamp64Milli(window_end) AS end_ms, value, drift FROM ${METRICS_TABLE} FINAL
     WHERE monitor = {monitor:String} AND metric = 'drift' AND window_ms = {windowMs:UInt64} AND has({features:Array(String)}, feature) AND has({slices:Array(String)}, slice)
       AND window_end > fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND window_end <= fromUnixTimestamp64Milli({to:Int64}, 'UTC')
     ORDER BY window_end`,
    { monitor: plan.name, windowMs, features: [...new Set(pairs.map((p) => p.feature))], slices: [...new Set(pairs.map((p) => p.slice))], from: endMs - HISTORY_EVALUATIONS * plan.intervalMs, to: endMs },
  );
  for (const r of rows) {
    const k = `${r.feature}\u0000${r.slice}`;
    if (!wanted.has(k)) continue;
    const point = { endMs: Number(r.end_ms), value: r.value, drift: r.drift };
    const list = out.get(k);
    if (list) list.push(point);
    else out.set(k, [point]);
  }
  return out;
}

export interface ReferenceBins {
  /** Reference counts in the PSI bins (10 deciles, or 1 + categories with bin 0 unseen). */
  counts: number[];
  /** Bin labels: decile ranges or category names. */
  labels: string[];
}

/** The reference profile of the given (feature, slice) pairs as PSI bins, keyed by `feature\0slice` (read only: never built here). */
export async function referenceBins(executor: OfflineExecutor, plan: MonitorPlan, pairs: readonly { feature: string; slice: string }[]): Promise<Map<string, ReferenceBins>> {
  const out = new Map<string, ReferenceBins>();
  if (pairs.length === 0) return out;
  const rows = await executor.rows<Pick<FeatureSliceProfile, 'feature' | 'slice' | 'kind' | 'edges' | 'categories'> & { counts: number[] }>(
    `SELECT feature, slice, kind, edges, categories, counts FROM tm_monitor_profiles
     WHERE monitor = {monitor:String} AND version = {version:String} AND has({features:Array(String)}, feature) AND has({slices:Array(String)}, slice)`,
    { monitor: plan.name, version: plan.version, features: [...new Set(pairs.map((p) => p.feature))], slices: [...new Set(pairs.map((p) => p.slice))] },
  );
  for (const p of rows) out.set(`${p.feature}\u0000${p.slice}`, binsOf(p));
  return out;
}

/** A stored evaluation's distribution as the page draws it: both sides on the reference's bins, and each bin's PSI term. */
export interface DistributionBins extends ReferenceBins {
  current: number[];
  contributions: number[];
}

export function distributionBins(d: DriftDistribution): DistributionBins | null {
  if (d.kind === 'numeric') {
    if (!d.deciles) return null;
    const e = d.deciles.edges;
    return { counts: d.deciles.ref, current: d.deciles.cur, contributions: d.deciles.contribution, labels: d.deciles.ref.map((_, i) => decileLabel(e, i)) };
  }
  if (!d.bins) return null;
  return { counts: d.bins.ref, current: d.bins.cur, contributions: d.bins.contribution, labels: ['(unseen)', ...d.bins.categories] };
}

function decileLabel(edges: readonly number[], i: number): string {
  return i === 0 ? `<${fmt(edges[0]!)}` : i === edges.length ? `>=${fmt(edges[edges.length - 1]!)}` : `[${fmt(edges[i - 1]!)},${fmt(edges[i]!)})`;
}

function binsOf(p: Pick<FeatureSliceProfile, 'kind' | 'edges' | 'categories'> & { counts: ArrayLike<number> }): ReferenceBins {
  if (p.kind === 'categorical') return { counts: Array.from(p.counts), labels: ['(unseen)', ...p.categories] };
  const deciles = [...decileCounts(p.counts)];
  const edges = decileEdgesOfFine(p.edges);
  return { counts: deciles, labels: deciles.map((_, i) => decileLabel(edges, i)) };
}

function fmt(x: number): string {
  return String(Number(x.toPrecision(3)));
}

/** Current counts in the PSI bins as the evaluation stored them (detail.cur_bins), or null for rows without. */
export function currentBins(row: MetricRecord): number[] | null {
  const bins = (row.detail as { cur_bins?: unknown }).cur_bins;
  return Array.isArray(bins) ? (bins as number[]) : null;
}

export interface AlertsSnapshot {
  alerts: AlertState[];
  pendingNotifications: number;
}

export async function loadAlerts(executor: OfflineExecutor): Promise<AlertsSnapshot> {
  const snapshot = await (await OfflineAlertStateStore.open(executor)).load();
  const alerts = snapshot.alerts.sort((a, b) => (a.status === b.status ? b.startsAtMs - a.startsAtMs : a.status === 'firing' ? -1 : 1));
  const pending = snapshot.notifications.filter((n) => n.deliveredAtMs === null && n.supersededBy === null).length;
  return { alerts, pendingNotifications: pending };
}

/** The decision of a drift row in words. */
export function decisionText(r: Pick<MetricRecord, 'drift' | 'detail'>): string {
  return r.drift === null ? `no decision (${String((r.detail as { note?: string }).note ?? 'none').replace(/_/g, ' ')})` : r.drift ? 'drift' : 'no drift';
}
