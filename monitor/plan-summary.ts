// A monitor plan as JSON for the dashboard (GET /monitor/plans): what it watches, how it slices,
// its windows and drift rule, its labels and its SLOs with their burn-rate rules. Durations are
// written as in the definitions (`1h`, `7d`), times as ISO-8601 UTC.
import { formatDurationMs, type CompiledDefinitions, type MonitorPlan } from '../definitions/index.js';
import { bandLabels } from './drift-sql.js';

export interface MonitorSummary {
  name: string;
  source: string;
  version: string;
  features: {
    name: string;
    kind: 'numeric' | 'categorical';
    from: 'field' | 'view';
    field: string | null;
    view: string | null;
    feature: string | null;
    /** View features: the view feature's aggregation and window (null: not a view feature, or no window). */
    agg: string | null;
    window: string | null;
  }[];
  /** bands: the numeric band edges, and `bandLabels` the slice values they give; null when sliced by value. */
  slices: { name: string; field: string; bands: number[] | null; bandLabels: string[] | null }[];
  reference: { from: string; to: string };
  interval: string;
  windows: string[];
  drift: { mode: 'calibrated' | 'fixed'; fdr: number; psiFloor: number; minSamples: number };
  labels: { predictions: string; labels: string; kind: 'binary' | 'regression'; threshold: number; labelDelay: string; minLabelled: number; predictionId: string; labelId: string; score: string; label: string; model?: string | null } | null;
  slos: {
    name: string;
    indicator: string;
    objective: number;
    feature: string | null;
    min: number | null;
    max: number | null;
    window: string;
    policy: { severity: 'page' | 'ticket'; long: string; short: string; burnRate: number }[];
  }[];
}

export function describeMonitor(plan: MonitorPlan, compiled: CompiledDefinitions): MonitorSummary {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    name: plan.name,
    source: plan.source,
    version: plan.version,
    features: plan.features.map((f) => {
      const viewFeature = f.view === null ? undefined : compiled.registry.views.find((v) => v.name === f.view)?.features.find((x) => x.name === f.feature);
      return {
        name: f.name,
        kind: f.kind,
        from: f.from,
        field: f.field,
        view: f.view,
        feature: f.feature,
        agg: viewFeature?.agg ?? null,
        window: viewFeature?.windowMs ? formatDurationMs(viewFeature.windowMs) : null,
      };
    }),
    slices: plan.slices.map((s) => ({ name: s.name, field: s.field, bands: s.bands, bandLabels: s.bands === null ? null : bandLabels(s.bands) })),
    reference: { from: iso(plan.reference.fromMs), to: iso(plan.reference.toMs) },
    interval: formatDurationMs(plan.intervalMs),
    windows: plan.windowsMs.map(formatDurationMs),
    drift: { ...plan.drift },
    labels: plan.labels && {
      predictions: plan.labels.predictions,
      labels: plan.labels.labels,
      kind: plan.labels.kind,
      threshold: plan.labels.threshold,
      labelDelay: formatDurationMs(plan.labels.labelDelayMs),
      minLabelled: plan.labels.minLabelled,
      predictionId: plan.labels.predictionIdField,
      labelId: plan.labels.labelIdField,
      score: plan.labels.scoreField,
      label: plan.labels.labelField,
      // Logged predictions (predictions: feature_log): the model they are filtered on, null for every model.
      ...(plan.labels.fromLog ? { model: plan.labels.fromLog.model } : {}),
    },
    slos: plan.slos.map((s) => ({
      name: s.name,
      indicator: s.indicator,
      objective: s.objective,
      feature: s.feature,
      min: s.min,
      max: s.max,
      window: formatDurationMs(s.windowMs),
      policy: s.policy.map((r) => ({ severity: r.severity, long: formatDurationMs(r.longWindowMs), short: formatDurationMs(r.shortWindowMs), burnRate: r.burnRate })),
    })),
  };
}
