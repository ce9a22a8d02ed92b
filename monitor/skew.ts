// Training/serving skew: the values serving answered (the feature log) next to what the offline
// path computes for the same key at the logged read time (the point-in-time dataset engine, with
// the logged reads as its spine). Per view, feature and slice: the match rate with the tolerances
// of docs/semantics.md (valuesAgree: exact for counts, mins, maxes, lasts, firsts and percentiles;
// 1e-9 relative for sums and means; 1e-6 for variance and stddev), the mismatch count, SMAPE, the
// largest absolute difference and a sample of mismatching (key, time, online, offline) rows.
// `compareLoggedValues` is the pure core; `evaluateSkew` reads the offline store.
import { aggregationSpec, TidemarkError, valuesAgree, type Aggregation, type MonitorSlicePlan, type Registry, type Scalar, type ViewPlan } from '../definitions/index.js';
import { loggedValuePairs, type LoggedValuePair, type OfflineExecutor, type ShardSet } from '../offline/index.js';
import { ALL_SLICE, bandLabels } from './drift-sql.js';

/** Mismatching rows kept per (view, feature, slice); the counts cover them all. */
export const SKEW_SAMPLE_ROWS = 20;

export interface SkewMismatch {
  requestId: string;
  /** Join key -> canonical value. */
  key: Record<string, string>;
  readMs: number;
  online: Scalar;
  offline: Scalar;
}

export interface FeatureSkew {
  view: string;
  feature: string;
  agg: Aggregation;
  /** `all`, or `<join key>=<value>` when sliced. */
  slice: string;
  /** Relative tolerance of valuesAgree for this aggregation (0: exact). */
  tolerance: number;
  compared: number;
  /** Values that agree within the tolerance, over compared; null when nothing was compared. */
  exactMatchRate: number | null;
  mismatches: number;
  /** Mean of |online - offline| / ((|online| + |offline|) / 2) over pairs of numbers (a pair of zeros counts 0); from 0 to 2; null without such pairs. */
  smape: number | null;
  /** Largest |online - offline| over pairs of numbers; null without such pairs. */
  maxAbsDiff: number | null;
  /** The first SKEW_SAMPLE_ROWS mismatches in read-time order. */
  sample: SkewMismatch[];
}

export interface SkewOptions {
  /** Slice by the value of this join key as well as over all rows. */
  sliceBy?: string;
  /**
   * The monitor's slices, as drift slices view features: a slice applies to a view whose key fields
   * include its field, and names a value `<slice name>=<value>` (bands: its band label) of the key.
   */
  slices?: readonly MonitorSlicePlan[];
  sampleRows?: number;
}

/** Per view: the monitor slices that apply to it, with the index of the join key holding each. */
function viewSlices(view: ViewPlan, slices: readonly MonitorSlicePlan[]): { slice: MonitorSlicePlan; keyIndex: number; labels: string[] | null }[] {
  return slices.flatMap((slice) => {
    const keyIndex = view.keyFields.indexOf(slice.field);
    return keyIndex < 0 ? [] : [{ slice, keyIndex, labels: slice.bands === null ? null : bandLabels(slice.bands) }];
  });
}

/** A key's slice label, as drift-sql's sliceExpr writes it for the same value. */
function sliceLabel(s: { slice: MonitorSlicePlan; labels: string[] | null }, value: string | undefined): string {
  if (value === undefined) return `${s.slice.name}=(null)`;
  if (s.labels === null) return `${s.slice.name}=${value}`;
  const x = Number(value);
  const band = s.slice.bands!.findIndex((b) => x < b);
  return `${s.slice.name}=${s.labels[band < 0 ? s.labels.length - 1 : band]}`;
}

/** Compare logged values with their offline values; one result per (view, feature, slice), slices `all` first. */
export function compareLoggedValues(pairs: readonly LoggedValuePair[], registry: Registry, opts: SkewOptions = {}): FeatureSkew[] {
  const sampleRows = opts.sampleRows ?? SKEW_SAMPLE_ROWS;
  const results = new Map<string, FeatureSkew & { smapeSum: number; smapeN: number }>();
  const slicesOfView = new Map<string, ReturnType<typeof viewSlices>>();
  for (const p of pairs) {
    const view = registry.views.find((v) => v.name === p.view);
    const plan = view?.features.find((f) => f.name === p.feature);
    if (!view || !plan) continue;
    const key = Object.fromEntries(view.joinKeys.map((k, i) => [k, p.key[i]!]));
    const slices = [ALL_SLICE];
    if (opts.sliceBy !== undefined && opts.sliceBy in key) slices.push(`${opts.sliceBy}=${key[opts.sliceBy]}`);
    if (opts.slices !== undefined) {
      let applying = slicesOfView.get(view.name);
      if (!applying) slicesOfView.set(view.name, (applying = viewSlices(view, opts.slices)));
      for (const s of applying) slices.push(sliceLabel(s, p.key[s.keyIndex]));
    }
    const agree = valuesAgree(plan.agg, p.online, p.offline);
    for (const slice of slices) {
      const id = `${p.view}\u0000${p.feature}\u0000${slice}`;
      let r = results.get(id);
      if (!r) {
        r = { view: p.view, feature: p.feature, agg: plan.agg, slice, tolerance: aggregationSpec(plan.agg).tolerance, compared: 0, exactMatchRate: null, mismatches: 0, smape: null, maxAbsDiff: null, sample: [], smapeSum: 0, smapeN: 0 };
        results.set(id, r);
      }
      r.compared++;
      if (!agree) {
        r.mismatches++;
        if (r.sample.length < sampleRows) r.sample.push({ requestId: p.requestId, key, readMs: p.readMs, online: p.online, offline: p.offline });
      }
      if (typeof p.online === 'number' && typeof p.offline === 'number') {
        const diff = Math.abs(p.online - p.offline);
        r.maxAbsDiff = Math.max(r.maxAbsDiff ?? 0, diff);
        const scale = (Math.abs(p.online) + Math.abs(p.offline)) / 2;
        r.smapeSum += scale === 0 ? 0 : diff / scale;
        r.smapeN++;
      }
    }
  }
  return [...results.values()]
    .map(({ smapeSum, smapeN, ...r }) => ({ ...r, exactMatchRate: r.compared === 0 ? null : (r.compared - r.mismatches) / r.compared, smape: smapeN === 0 ? null : smapeSum / smapeN }))
    .sort((a, b) => a.view.localeCompare(b.view) || a.feature.localeCompare(b.feature) || (a.slice === ALL_SLICE ? -1 : b.slice === ALL_SLICE ? 1 : a.slice.localeCompare(b.slice)));
}

export interface SkewEvaluationOptions extends SkewOptions {
  /** Views to check (default: every view with logged reads). */
  views?: readonly string[];
  /** Logged reads with fromMs <= read time < toMs. */
  fromMs?: number;
  toMs?: number;
  /**
   * A sharded store (`executor` is then its home shard, which holds the feature log): each logged
   * read's offline values are computed on the shard of its key, as a dataset's rows are.
   */
  shards?: ShardSet | null;
}

/**
 * The skew of the logged reads: for each view, the offline point-in-time value of every logged
 * feature at the logged read time and key, compared with the value served.
 */
export async function evaluateSkew(executor: OfflineExecutor, registry: Registry, opts: SkewEvaluationOptions = {}): Promise<FeatureSkew[]> {
  const names = opts.views ?? registry.views.map((v) => v.name);
  const results: FeatureSkew[] = [];
  for (const name of names) {
    const view = registry.views.find((v) => v.name === name);
    if (!view) throw new TidemarkError('TM_MONITOR_BAD_REQUEST', `skew: no view named ${JSON.stringify(name)}; valid views: ${registry.views.map((v) => v.name).join(', ')}`, { field: 'views', validViews: registry.views.map((v) => v.name) });
    const pairs = await loggedValuePairs(executor, registry, view, { ...(opts.fromMs !== undefined ? { fromMs: opts.fromMs } : {}), ...(opts.toMs !== undefined ? { toMs: opts.toMs } : {}), shards: opts.shards ?? null });
    results.push(...compareLoggedValues(pairs, registry, opts));
  }
  return results;
}
