// The distribution behind one stored drift result, for the dashboard's reference-vs-current chart:
// the reference's bins from the profile, the current window's counts kept with the result
// (detail.cur_bins), fractions as PSI takes them and each bin's PSI term (psi.ts's own terms, so
// they sum to the stored PSI). Read only: nothing is recounted.
import { formatDurationMs, TidemarkError, type MonitorPlan } from '../definitions/index.js';
import type { OfflineExecutor } from '../offline/index.js';
import { decileCounts } from './drift.js';
import { queryMetrics, storedSlices, type MetricRecord } from './metrics-store.js';
import { checkSliceName, findFeature, unknownSlice } from './plan-lookup.js';
import { profileKey, type MonitorProfile } from './profile.js';
import { binFraction, psiContributions } from './psi.js';

/** Counts per bin, each as the fraction PSI uses (an empty bin 0.0001), and the bin's PSI term. */
export interface BinnedComparison {
  ref: number[];
  cur: number[];
  refFraction: number[];
  curFraction: number[];
  /** Per bin: (cur - ref) * ln(cur / ref) over the fractions; the sum is the PSI. */
  contribution: number[];
}

interface DistributionBase {
  monitor: string;
  version: string;
  feature: string;
  slice: string;
  window: string;
  windowMs: number;
  windowEnd: string;
  psi: number | null;
  ks: number | null;
  ksErrorBound: number | null;
  pValue: number | null;
  qValue: number | null;
  psiPValue: number | null;
  ksPValue: number | null;
  drift: boolean | null;
  note: string | null;
  nRef: number;
  nCur: number;
}

export interface NumericDistribution extends DistributionBase {
  kind: 'numeric';
  /** The 10 decile bins PSI compares (null without a reference): `edges` are the 9 inner edges, bins left-closed, outer bins open. */
  deciles: (BinnedComparison & { edges: number[] }) | null;
  /** The reference's 100 fine bins (99 percentile edges) for a finer view; the current window keeps deciles only. */
  fine: { edges: number[]; ref: number[] } | null;
}

export interface CategoricalDistribution extends DistributionBase {
  kind: 'categorical';
  /** Bin 0: categories unseen in the reference; bin i + 1: reference category i (most frequent first). Null without a reference. */
  bins: (BinnedComparison & { categories: string[] }) | null;
  /** Current rows in categories the reference never saw, and the most frequent of them. */
  unseen: { total: number; top: { category: string; count: number }[] } | null;
}

export type DriftDistribution = NumericDistribution | CategoricalDistribution;

export interface DistributionQuery {
  feature: string;
  slice: string;
  windowMs: number;
  /** The evaluation at or before this window end; none: the latest. */
  windowEndMs?: number;
}

/** The reference's 9 decile edges: every tenth of the profile's 99 fine edges. */
export function decileEdgesOfFine(fineEdges: readonly number[]): number[] {
  return fineEdges.filter((_, i) => (i + 1) % 10 === 0);
}

function compare(ref: ArrayLike<number>, cur: readonly number[]): BinnedComparison {
  const nRef = Array.from(ref).reduce((s, c) => s + c, 0);
  const nCur = cur.reduce((s, c) => s + c, 0);
  return {
    ref: Array.from(ref),
    cur: [...cur],
    refFraction: Array.from(ref, (c) => binFraction(c, nRef)),
    curFraction: cur.map((c) => binFraction(c, nCur)),
    contribution: psiContributions(ref, cur),
  };
}

/** The stored drift result of (feature, slice, window) at the evaluation at or before windowEndMs (default latest), with its bins. */
export async function driftDistribution(executor: OfflineExecutor, profile: MonitorProfile, plan: MonitorPlan, q: DistributionQuery): Promise<DriftDistribution> {
  const feature = findFeature(plan, q.feature);
  checkSliceName(plan, q.slice);
  const [row] = await queryMetrics(executor, { monitor: plan.name, version: plan.version, metric: 'drift', feature: feature.name, slice: q.slice, windowMs: q.windowMs, toMs: q.windowEndMs, limit: 1 });
  if (!row) await noEvaluation(executor, plan, q);
  const r = row!;
  const detail = r.detail as { kind?: string; note?: string; psi_p_value?: number | null; ks_p_value?: number | null; cur_bins?: number[]; unseen_top?: { category: string; count: number }[] };
  const base: DistributionBase = {
    monitor: plan.name,
    version: plan.version,
    feature: feature.name,
    slice: q.slice,
    window: formatDurationMs(q.windowMs),
    windowMs: q.windowMs,
    windowEnd: r.window_end,
    psi: r.value,
    ks: r.ks,
    ksErrorBound: r.ks_error_bound,
    pValue: r.p_value,
    qValue: r.q_value,
    psiPValue: detail.psi_p_value ?? null,
    ksPValue: detail.ks_p_value ?? null,
    drift: r.drift,
    note: detail.note ?? null,
    nRef: Number(r.n_ref),
    nCur: Number(r.n_cur),
  };
  const ref = profile.get(profileKey(feature.name, q.slice));
  // Rows written before the current bins were kept have none: the reference alone can still be shown.
  const cur = detail.cur_bins ?? null;
  if (feature.kind === 'numeric') {
    const deciles = ref && cur ? { edges: decileEdgesOfFine(ref.edges), ...compare(decileCounts(ref.counts), cur) } : null;
    return { ...base, kind: 'numeric', deciles, fine: ref ? { edges: [...ref.edges], ref: Array.from(ref.counts) } : null };
  }
  const bins = ref && cur ? { categories: [...ref.categories], ...compare(ref.counts, cur) } : null;
  return { ...base, kind: 'categorical', bins, unseen: cur ? { total: cur[0] ?? 0, top: detail.unseen_top ?? [] } : null };
}

/** Why there is no stored result: an unknown slice (listing the stored ones) or no evaluation at that time. */
async function noEvaluation(executor: OfflineExecutor, plan: MonitorPlan, q: DistributionQuery): Promise<never> {
  const slices = await storedSlices(executor, { monitor: plan.name, version: plan.version, metric: 'drift', feature: q.feature });
  if (!slices.includes(q.slice)) unknownSlice(plan, q.slice, slices);
  const [first] = await queryMetrics(executor, { monitor: plan.name, version: plan.version, metric: 'drift', feature: q.feature, slice: q.slice, windowMs: q.windowMs, limit: 1 });
  throw new TidemarkError('TM_MONITOR_NO_EVALUATION', `monitor ${plan.name} has no evaluation of ${q.feature} (${q.slice}, ${formatDurationMs(q.windowMs)}) at or before ${q.windowEndMs === undefined ? 'now' : new Date(q.windowEndMs).toISOString()}`, {
    field: 'at',
    monitor: plan.name,
    latest: first?.window_end ?? null,
  });
}
