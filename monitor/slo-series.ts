// An SLO's history for one series, for the dashboard's burn-rate and error-budget charts: the
// stored metrics replayed through the alerting code itself (sloObservations, BurnRateEvaluator),
// so every burn rate and firing flag is the one the alerts computed. Column-oriented: one array
// per quantity, aligned on `t`, as chart libraries take them.
import { formatDurationMs, TidemarkError, type MonitorPlan, type SloPlan } from '../definitions/index.js';
import type { OfflineExecutor } from '../offline/index.js';
import { BurnRateEvaluator, errorBudget, ruleId, type SeriesEvaluation } from './burn-rate.js';
import { ALL_SLICE } from './drift-sql.js';
import { queryMetrics, storedSlices } from './metrics-store.js';
import { checkSliceName, findFeature, findSlo, unknownSlice } from './plan-lookup.js';
import { sloObservations } from './run.js';

const DRIFT_INDICATORS = new Set(['drift', 'psi', 'ks']);

/** Most stored evaluations one series replays. */
const MAX_REPLAY_ROWS = 100_000;

export interface SloRuleSeries {
  severity: 'page' | 'ticket';
  long: string;
  short: string;
  threshold: number;
  /** Burn rates over the long and short windows at each t; null where the series had no observation (nothing was evaluated). */
  longBurn: (number | null)[];
  shortBurn: (number | null)[];
  /** Whether the rule fires after the evaluation at t (unchanged where there was no observation). */
  firing: boolean[];
}

export interface SloSeries {
  monitor: string;
  version: string;
  slo: { name: string; indicator: string; objective: number; window: string; feature: string | null; min: number | null; max: number | null };
  /** The series' labels, as the alerts carry them. */
  labels: Record<string, string>;
  /** The error-budget period: the policy's longest window. */
  budgetPeriod: string;
  /** Evaluation times (epoch ms), ascending. */
  t: number[];
  /** The indicator's value at t (PSI, KS, AUC, freshness ms...). */
  indicator: (number | null)[];
  /** The observation at t: good and bad counts; null where none (no decision, too few labels). */
  good: (number | null)[];
  bad: (number | null)[];
  rules: SloRuleSeries[];
  /** Error budget left over the rolling budget period: 1 - (bad fraction / (1 - objective)); negative when overspent. */
  budget: (number | null)[];
  /**
   * Burn-down within fixed budget periods (phase + k x period on the evaluation grid, so a period
   * ends on an evaluation): 1 - bad so far / the bad observations the period allows ((1 - objective)
   * x evaluations per period); `ideal` spends the budget linearly, reaching 0 at the period's end.
   */
  periodBudget: number[];
  ideal: number[];
}

export interface SloSeriesQuery {
  feature?: string;
  slice?: string;
  fromMs?: number;
  toMs?: number;
}

/** The series of one SLO: `labels` picks it (drift SLOs: feature and slice; label SLOs: slice; freshness: none). */
export async function sloSeries(executor: OfflineExecutor, plan: MonitorPlan, sloName: string, q: SloSeriesQuery = {}): Promise<SloSeries> {
  const slo = findSlo(plan, sloName);
  const { metric, labels, feature } = seriesOf(plan, slo, q);
  // The replay starts at the first stored evaluation (so the firing flags carry their whole
  // history) unless `from` is given: then one budget period earlier, which fills every window.
  const periodMs = Math.max(...slo.policy.map((r) => r.longWindowMs));
  const fromReplay = q.fromMs === undefined ? undefined : q.fromMs - periodMs;
  const rows = (
    await queryMetrics(executor, {
      monitor: plan.name,
      version: plan.version,
      metric,
      feature,
      slice: labels.slice,
      windowMs: slo.indicator === 'freshness' ? undefined : slo.windowMs,
      fromMs: fromReplay,
      toMs: q.toMs,
      limit: MAX_REPLAY_ROWS,
    })
  ).reverse();
  if (rows.length === 0 && labels.slice !== undefined) {
    const slices = await storedSlices(executor, { monitor: plan.name, version: plan.version, metric, feature });
    if (!slices.includes(labels.slice)) unknownSlice(plan, labels.slice, slices);
  }
  const evaluator = new BurnRateEvaluator({ objective: slo.objective, policy: slo.policy, name: slo.name });
  const ids = slo.policy.map(ruleId);
  const out: SloSeries = {
    monitor: plan.name,
    version: plan.version,
    slo: { name: slo.name, indicator: slo.indicator, objective: slo.objective, window: formatDurationMs(slo.windowMs), feature: slo.feature, min: slo.min, max: slo.max },
    labels,
    budgetPeriod: formatDurationMs(periodMs),
    t: [],
    indicator: [],
    good: [],
    bad: [],
    rules: slo.policy.map((r) => ({ severity: r.severity, long: formatDurationMs(r.longWindowMs), short: formatDurationMs(r.shortWindowMs), threshold: r.burnRate, longBurn: [], shortBurn: [], firing: [] })),
    budget: [],
    periodBudget: [],
    ideal: [],
  };
  const longest = slo.policy.findIndex((r) => r.longWindowMs === periodMs);
  const allowedBad = errorBudget(slo.objective) * (periodMs / plan.intervalMs);
  const firing = slo.policy.map(() => false);
  let period: number | null = null;
  let badInPeriod = 0;
  const seriesKey = JSON.stringify(labels);
  for (const r of rows) {
    const T = Date.parse(r.window_end);
    const observation = sloObservations(slo, T, [{ ...r, detail: JSON.stringify(r.detail) }], plan.labels?.minLabelled ?? 0)[0]?.observation ?? null;
    const evaluation: SeriesEvaluation | null = observation ? evaluator.observe(seriesKey, observation) : null;
    // Periods count from the monitor's evaluation phase: period k holds evaluations in (phase + kP, phase + (k + 1)P].
    const k = Math.floor((T - plan.phaseMs - 1) / periodMs);
    if (k !== period) {
      period = k;
      badInPeriod = 0;
    }
    badInPeriod += observation?.bad ?? 0;
    if (q.fromMs !== undefined && T < q.fromMs) continue;
    out.t.push(T);
    out.indicator.push(slo.indicator === 'ks' ? r.ks : r.value);
    out.good.push(observation?.good ?? null);
    out.bad.push(observation?.bad ?? null);
    const byId = new Map(evaluation?.severities.flatMap((s) => s.rules).map((e) => [e.id, e]) ?? []);
    out.rules.forEach((series, i) => {
      const e = byId.get(ids[i]!);
      if (e) firing[i] = e.firing;
      series.longBurn.push(e ? e.long.burnRate : null);
      series.shortBurn.push(e ? e.short.burnRate : null);
      series.firing.push(firing[i]!);
    });
    const longBurn = out.rules[longest]!.longBurn.at(-1)!;
    out.budget.push(longBurn === null ? null : 1 - longBurn);
    out.periodBudget.push(1 - badInPeriod / allowedBad);
    out.ideal.push(1 - (T - (plan.phaseMs + k * periodMs)) / periodMs);
  }
  return out;
}

/** Which stored metric an SLO reads and the labels of the series asked for. */
function seriesOf(plan: MonitorPlan, slo: SloPlan, q: SloSeriesQuery): { metric: string; labels: Record<string, string>; feature: string | undefined } {
  if (slo.indicator === 'freshness') return { metric: 'freshness', labels: {}, feature: undefined };
  const slice = q.slice ?? ALL_SLICE;
  checkSliceName(plan, slice);
  if (slo.indicator === 'skew') {
    // Skew series are per logged view feature (view:feature), not per feature of the monitor.
    const name = q.feature ?? slo.feature;
    if (name === null) throw new TidemarkError('TM_MONITOR_UNKNOWN_FEATURE', `SLO ${slo.name} covers every logged feature of views ${plan.skew?.views.join(', ')}: name one with feature=<view>:<feature>`, { field: 'feature' });
    if (slo.feature !== null && name !== slo.feature) throw new TidemarkError('TM_MONITOR_UNKNOWN_FEATURE', `SLO ${slo.name} judges feature ${slo.feature}, not ${name}`, { field: 'feature', validFeatures: [slo.feature] });
    return { metric: 'skew', labels: { feature: name, slice }, feature: name };
  }
  if (!DRIFT_INDICATORS.has(slo.indicator)) return { metric: slo.indicator, labels: { slice }, feature: '' };
  const name = q.feature ?? slo.feature;
  if (name === null) {
    throw new TidemarkError('TM_MONITOR_UNKNOWN_FEATURE', `SLO ${slo.name} covers every feature of monitor ${plan.name}: name one with feature=`, { field: 'feature', validFeatures: plan.features.map((f) => f.name) });
  }
  const feature = findFeature(plan, name).name;
  if (slo.feature !== null && feature !== slo.feature) {
    throw new TidemarkError('TM_MONITOR_UNKNOWN_FEATURE', `SLO ${slo.name} judges feature ${slo.feature}, not ${feature}`, { field: 'feature', validFeatures: [slo.feature] });
  }
  return { metric: 'drift', labels: { feature, slice }, feature };
}
