// Monitor definitions: what the drift monitor watches (fields of a source and features of its
// views), per which slices, against which reference, how often, and the SLOs that page on-call.
// `monitor(...)` is typed like the rest of the DSL; `compileMonitor` checks it again at run time.
import type { z } from 'zod';
import { AGGREGATION_SPECS } from './aggregations/index.js';
import { NAME_RE, type AnyObjectSchema, type SourceDefinition } from './dsl.js';
import type { Duration } from './duration.js';
import { formatDurationMs } from './duration.js';
import type { ErrorCode } from './errors.js';
import type { SourcePlan, ViewPlan } from './compile.js';

type Fields<T> = keyof T & string;

/** Label metrics a binary classifier's scores give (scikit-learn's definitions). */
export const BINARY_LABEL_METRICS = ['auc', 'log_loss', 'brier', 'precision', 'recall', 'f1', 'accuracy'] as const;
/** Label metrics of a regression model. */
export const REGRESSION_LABEL_METRICS = ['mae', 'rmse'] as const;
export type LabelMetric = (typeof BINARY_LABEL_METRICS)[number] | (typeof REGRESSION_LABEL_METRICS)[number];
/**
 * What an SLO can watch: a drift statistic, the drift decision, a label metric, freshness, or skew
 * (the share of logged served values that equal the offline point-in-time value, per view feature).
 */
export const SLO_INDICATORS = ['psi', 'ks', 'drift', 'freshness', 'skew', ...BINARY_LABEL_METRICS, ...REGRESSION_LABEL_METRICS] as const;
export type SloIndicator = (typeof SLO_INDICATORS)[number];

/** A slice: one event field's value (`origin`), or a numeric field cut into bands. */
export interface SliceSpec<T> {
  field: Fields<T>;
  /** Upper-exclusive band edges for a numeric field: [500, 1000] gives <500, 500-1000, >=1000. */
  bands?: readonly number[];
}

/** The `predictions` of label metrics taken from the feature log (tm_prediction_log: POST /feature-log/predictions). */
export const FEATURE_LOG_PREDICTIONS = 'feature_log';

/** What label metrics of either kind of predictions share: the labels source, the kind, the threshold, the delay. */
interface LabelSpecCommon<L extends AnyObjectSchema> {
  labels: SourceDefinition<L>;
  label: Fields<z.output<L>>;
  /** binary: score is a probability, label 0/1 (or boolean); regression: score and label are numbers. */
  kind: 'binary' | 'regression';
  /** Decision threshold of precision, recall, F1 and accuracy (score >= threshold is positive); default 0.5. */
  threshold?: number;
  /** How long after its prediction a label may arrive; windows are evaluated this much later. */
  labelDelay: Duration;
  /** SLOs judge a label metric only where at least this many predictions got labels; default 200. */
  minLabelled?: number;
}

/** Predictions and their delayed labels, both sources whose events land in the offline store. */
export interface SourceLabelSpec<P extends AnyObjectSchema, L extends AnyObjectSchema> extends LabelSpecCommon<L> {
  predictions: SourceDefinition<P>;
  /** Field of a prediction that its label carries too. */
  predictionId: Fields<z.output<P>>;
  labelId: Fields<z.output<L>>;
  score: Fields<z.output<P>>;
}

/**
 * Predictions logged with the feature log (`POST /feature-log/predictions`: request id, score,
 * model), joined to labels that carry the request id. Slices read the join keys of the logged read
 * with that request id.
 */
export interface LoggedLabelSpec<L extends AnyObjectSchema> extends LabelSpecCommon<L> {
  predictions: typeof FEATURE_LOG_PREDICTIONS;
  /** Only the predictions logged with this model name (default: every logged prediction). */
  model?: string;
  /** Field of a label holding the request id of the read its prediction was made from. */
  labelId: Fields<z.output<L>>;
}

export type LabelSpec<P extends AnyObjectSchema, L extends AnyObjectSchema> = SourceLabelSpec<P, L> | LoggedLabelSpec<L>;

/** One SLO: an indicator judged good or bad per evaluation and slice, and its objective. */
export interface SloSpec {
  indicator: SloIndicator;
  /** For psi, ks and drift: the watched feature (default: every feature of the monitor); for skew, a `view:feature` of the source's views (default: every logged one). */
  feature?: string;
  /** Bad when the value exceeds max (psi, ks, log_loss, brier, mae, rmse, freshness as a duration). */
  max?: number | Duration;
  /** Bad when the value falls below min (auc, precision, recall, f1, accuracy, skew's match rate). */
  min?: number;
  /** Fraction of good evaluations promised, e.g. 0.99. */
  objective: number;
  /** Evaluation window whose values the SLO judges; default the monitor's first window. */
  window?: Duration;
  /** Burn-rate rules; default the SRE Workbook's (page 1h&5m > 14.4, page 6h&30m > 6, ticket 3d&6h > 1). */
  policy?: readonly BurnRateRuleSpec[];
}

export interface BurnRateRuleSpec {
  severity: 'page' | 'ticket';
  long: Duration;
  short: Duration;
  burnRate: number;
}

export interface DriftSpec {
  /** calibrated (default): thresholds from each statistic's no-drift distribution, BH, effect floor. fixed: PSI >= 0.1 or KS p <= 0.05. */
  mode?: 'calibrated' | 'fixed';
  /** False discovery rate across features x slices of one evaluation (calibrated); default 0.01. */
  fdr?: number;
  /** PSI under this never alarms (calibrated); default 0.02. */
  psiFloor?: number;
  /** Fewer current rows than this in a slice: no decision; default 10. */
  minSamples?: number;
}

export interface MonitorDefinition<S extends AnyObjectSchema = AnyObjectSchema> {
  readonly kind: 'monitor';
  readonly name: string;
  readonly source: SourceDefinition<S>;
  /** Fields of the source, and view features as `view:feature` (sampled at each tile close). */
  readonly features: readonly (Fields<z.output<S>> | `${string}:${string}`)[];
  readonly slices?: Readonly<Record<string, SliceSpec<z.output<S>>>>;
  /** Reference sample: a time range of the offline store ([from, to), ISO-8601 UTC). */
  readonly reference: { from: string; to: string };
  /** How often to evaluate, counted from the reference's end; default 1h. */
  readonly interval?: Duration;
  /** Current windows, each a multiple of the interval; default [interval]. */
  readonly windows?: readonly Duration[];
  readonly drift?: DriftSpec;
  readonly labels?: LabelSpec<AnyObjectSchema, AnyObjectSchema>;
  readonly slos?: Readonly<Record<string, SloSpec>>;
  readonly description?: string;
}

/** A drift and quality monitor over one source. */
export function monitor<S extends AnyObjectSchema, P extends AnyObjectSchema, L extends AnyObjectSchema>(def: {
  name: string;
  source: SourceDefinition<S>;
  features: readonly (Fields<z.output<S>> | `${string}:${string}`)[];
  slices?: Record<string, SliceSpec<z.output<S>>>;
  reference: { from: string; to: string };
  interval?: Duration;
  windows?: readonly Duration[];
  drift?: DriftSpec;
  labels?: LabelSpec<P, L>;
  slos?: Record<string, SloSpec>;
  description?: string;
}): MonitorDefinition<S> {
  return { kind: 'monitor', ...def, labels: def.labels as LabelSpec<AnyObjectSchema, AnyObjectSchema> | undefined };
}

// ---- compiled plan -------------------------------------------------------------------------------

export interface MonitorFeaturePlan {
  /** As written: `delay` or `origin_delays:delay_mean_1d`. */
  name: string;
  /** field: an event field per event; view: a view feature sampled at the close of each tile its key had events in. */
  from: 'field' | 'view';
  field: string | null;
  view: string | null;
  feature: string | null;
  kind: 'numeric' | 'categorical';
}

export interface MonitorSlicePlan {
  name: string;
  field: string;
  bands: number[] | null;
}

export interface BurnRateRulePlan {
  severity: 'page' | 'ticket';
  longWindowMs: number;
  shortWindowMs: number;
  burnRate: number;
}

export interface SloPlan {
  name: string;
  indicator: SloIndicator;
  /** null: every feature (psi, ks, drift) or not a feature indicator. */
  feature: string | null;
  max: number | null;
  min: number | null;
  objective: number;
  windowMs: number;
  policy: BurnRateRulePlan[];
}

export interface LabelPlan {
  /** The predictions source, or FEATURE_LOG_PREDICTIONS (then `fromLog` is set). */
  predictions: string;
  labels: string;
  predictionIdField: string;
  labelIdField: string;
  scoreField: string;
  labelField: string;
  kind: 'binary' | 'regression';
  threshold: number;
  labelDelayMs: number;
  minLabelled: number;
  /**
   * Present when the predictions are the feature log's (tm_prediction_log, joined by request id;
   * predictionIdField is request_id and scoreField score); model null: every model's.
   */
  fromLog?: {
    model: string | null;
    /** Per slice field: where a logged read holds it (the first entity row's value of joinKey, in a read of view); the first candidate read wins. */
    sliceKeys: Record<string, { view: string; joinKey: string }[]>;
  };
}

export interface MonitorPlan {
  name: string;
  source: string;
  features: MonitorFeaturePlan[];
  slices: MonitorSlicePlan[];
  reference: { fromMs: number; toMs: number };
  intervalMs: number;
  /** Evaluations happen at phaseMs + k * intervalMs: every interval after the reference ends. */
  phaseMs: number;
  windowsMs: number[];
  drift: { mode: 'calibrated' | 'fixed'; fdr: number; psiFloor: number; minSamples: number };
  labels: LabelPlan | null;
  slos: SloPlan[];
  /** Present when an SLO watches skew: the views of the source whose logged reads each evaluation compares with the offline path. */
  skew?: { views: string[] };
  /** Hash of this plan and of the views it reads: profiles and metrics are stored under it. */
  version: string;
}

export const DEFAULT_BURN_RATE_RULES: readonly BurnRateRulePlan[] = [
  { severity: 'page', longWindowMs: 3_600_000, shortWindowMs: 300_000, burnRate: 14.4 },
  { severity: 'page', longWindowMs: 6 * 3_600_000, shortWindowMs: 1_800_000, burnRate: 6 },
  { severity: 'ticket', longWindowMs: 3 * 86_400_000, shortWindowMs: 6 * 3_600_000, burnRate: 1 },
];

const MAX_SLICES_WINDOWS = 8;
const HIGHER_IS_BETTER: ReadonlySet<SloIndicator> = new Set(['auc', 'precision', 'recall', 'f1', 'accuracy', 'skew']);

type ErrFn = (code: ErrorCode, definition: string, message: string, hint: string, feature?: string) => void;
type DurationFn = (text: unknown, definition: string, what: string, feature?: string) => number | null;

/** Compile one monitor against the compiled sources and views; errors go to `err`. */
export function compileMonitor(
  m: MonitorDefinition,
  sources: readonly SourcePlan[],
  views: readonly ViewPlan[],
  err: ErrFn,
  duration: DurationFn,
  hash: (value: unknown) => string,
): MonitorPlan {
  const where = `monitor ${m.name}`;
  const source = sources.find((s) => s.name === m.source?.name);
  if (!source) err('TM_DEF_BAD_MONITOR', where, `source ${String(m.source?.name)} is not among the definitions`, 'export the source from the definitions module');
  const fields = source?.fields ?? {};
  const fieldList = Object.keys(fields).join(', ');

  // Slices first: view features may only be sliced by their own key fields.
  const slices: MonitorSlicePlan[] = [];
  for (const [name, spec] of Object.entries(m.slices ?? {})) {
    if (!NAME_RE.test(name) || name === 'all') err('TM_DEF_BAD_NAME', where, `slice name "${name}" is not allowed`, 'use letters, digits and underscores; "all" is the unsliced series');
    const field = String(spec.field);
    const info = fields[field];
    if (source && !info) err('TM_DEF_UNKNOWN_FIELD', where, `slice ${name} reads field "${field}", which is not in the schema of source ${source.name}`, `use one of: ${fieldList}`);
    let bands: number[] | null = null;
    if (spec.bands !== undefined) {
      bands = [...spec.bands];
      const sorted = bands.every((b, i) => Number.isFinite(b) && (i === 0 || b > bands![i - 1]!));
      if (bands.length === 0 || !sorted) err('TM_DEF_BAD_MONITOR', where, `slice ${name}: bands must be finite, strictly increasing numbers`, 'e.g. bands: [500, 1000, 2000]');
      if (info && info.kind !== 'number') err('TM_DEF_NON_NUMERIC_FIELD', where, `slice ${name}: bands need a numeric field, but "${field}" is ${info.kind}`, 'drop bands to slice by value');
    } else if (info && info.kind !== 'string' && info.kind !== 'number' && info.kind !== 'boolean') {
      err('TM_DEF_BAD_MONITOR', where, `slice ${name}: field "${field}" is ${info.kind}; slices need text, number or boolean values`, 'slice by a text field or give numeric bands');
    }
    slices.push({ name, field, bands });
  }
  if (slices.length > MAX_SLICES_WINDOWS) err('TM_DEF_BAD_MONITOR', where, `${slices.length} slice definitions (at most ${MAX_SLICES_WINDOWS})`, 'split the monitor');

  const features: MonitorFeaturePlan[] = [];
  const featureNames = [...(m.features ?? [])].map(String);
  if (featureNames.length === 0) err('TM_DEF_BAD_MONITOR', where, 'a monitor needs at least one feature', "add features: ['delay', 'origin_delays:delay_mean_1d']");
  for (const name of featureNames) {
    if (features.some((f) => f.name === name)) {
      err('TM_DEF_DUPLICATE_NAME', where, `feature ${name} is listed twice`, 'list each feature once', name);
      continue;
    }
    const colon = name.indexOf(':');
    if (colon < 0) {
      const info = fields[name];
      if (!info) {
        if (source) err('TM_DEF_UNKNOWN_FIELD', where, `"${name}" is not a field of source ${source.name}`, `use one of: ${fieldList}, or view:feature`, name);
        continue;
      }
      if (name === source?.eventTimeField || (info.kind !== 'number' && info.kind !== 'string' && info.kind !== 'boolean')) {
        err('TM_DEF_BAD_MONITOR', where, `field "${name}" is ${name === source?.eventTimeField ? 'the event time' : info.kind}; drift needs numbers or categories`, 'watch a numeric or text field', name);
        continue;
      }
      features.push({ name, from: 'field', field: name, view: null, feature: null, kind: info.kind === 'number' ? 'numeric' : 'categorical' });
      continue;
    }
    const viewName = name.slice(0, colon);
    const featureName = name.slice(colon + 1);
    const view = views.find((v) => v.name === viewName);
    const feature = view?.features.find((f) => f.name === featureName);
    if (!view || !feature) {
      const known = views.filter((v) => v.source === source?.name).flatMap((v) => v.features.map((f) => `${v.name}:${f.name}`));
      err('TM_DEF_BAD_FEATURE', where, `${name} is not a feature of a view`, `use one of: ${known.join(', ') || '(no views of this source)'}`, name);
      continue;
    }
    if (view.source !== source?.name) {
      err('TM_DEF_BAD_MONITOR', where, `${name} aggregates source ${view.source}, not ${source?.name}`, `watch it in a monitor of source ${view.source}`, name);
      continue;
    }
    if (feature.windowMs === null) {
      err('TM_DEF_BAD_MONITOR', where, `${name} is a latest value without a window; its value at a tile close is not defined by tiles alone`, 'watch the event field itself instead', name);
      continue;
    }
    if (feature.valueKind !== 'number' && feature.agg !== 'count') {
      err('TM_DEF_BAD_MONITOR', where, `${name} is not numeric`, 'watch numeric features', name);
      continue;
    }
    // Feature samples are computed from offline tiles; a windowed last or first is picked by an
    // ASOF join instead, which the sampler does not do.
    if (AGGREGATION_SPECS[feature.agg].sql.parts === null) {
      err('TM_DEF_BAD_MONITOR', where, `${name} is a windowed ${feature.agg}, whose samples the monitor cannot compute from tiles`, `watch the event field${feature.field ? ` "${feature.field}"` : ''} itself instead`, name);
      continue;
    }
    for (const slice of slices) {
      if (slice.bands !== null || !view.keyFields.includes(slice.field)) {
        err('TM_DEF_SLICE_NOT_KEY', where, `slice ${slice.name} (${slice.field}${slice.bands ? ' bands' : ''}) is not a key field of view ${view.name}, so its value is not a function of the feature's key`, `slice view features by their key fields (${view.keyFields.join(', ')}), or watch ${name} in a monitor without slice ${slice.name}`, name);
      }
    }
    features.push({ name, from: 'view', field: null, view: view.name, feature: feature.name, kind: 'numeric' });
  }

  const fromMs = Date.parse(m.reference?.from ?? '');
  const toMs = Date.parse(m.reference?.to ?? '');
  if (!Number.isFinite(fromMs) || !Number.isFinite(toMs) || toMs <= fromMs) {
    err('TM_DEF_BAD_MONITOR', where, `reference ${JSON.stringify(m.reference)} is not a time range`, "give reference: { from: '2001-01-01T00:00:00Z', to: '2001-02-01T00:00:00Z' } with from < to");
  }

  const intervalMs = m.interval === undefined ? 3_600_000 : (duration(m.interval, where, 'interval') ?? 3_600_000);
  const windowsMs = (m.windows ?? [formatDurationMs(intervalMs)]).map((w) => duration(w, where, 'window') ?? intervalMs);
  for (const w of windowsMs) {
    if (w % intervalMs !== 0) err('TM_DEF_HOP_NOT_DIVIDING', where, `window ${formatDurationMs(w)} is not a multiple of the interval ${formatDurationMs(intervalMs)}`, 'make every window a whole number of intervals');
  }
  if (new Set(windowsMs).size !== windowsMs.length || windowsMs.length > MAX_SLICES_WINDOWS) err('TM_DEF_BAD_MONITOR', where, 'windows must be distinct (at most 8)', 'list each window once');

  const mode = m.drift?.mode ?? 'calibrated';
  if (mode !== 'calibrated' && mode !== 'fixed') err('TM_DEF_BAD_MONITOR', where, `drift mode ${JSON.stringify(mode)}`, 'use calibrated or fixed');
  const fdr = m.drift?.fdr ?? 0.01;
  const psiFloor = m.drift?.psiFloor ?? 0.02;
  const minSamples = m.drift?.minSamples ?? 10;
  if (!(fdr > 0 && fdr < 1)) err('TM_DEF_BAD_MONITOR', where, `drift.fdr ${fdr} is not in (0, 1)`, 'e.g. fdr: 0.01');
  if (!(psiFloor >= 0)) err('TM_DEF_BAD_MONITOR', where, `drift.psiFloor ${psiFloor} is negative`, 'e.g. psiFloor: 0.02');
  if (!Number.isInteger(minSamples) || minSamples < 1) err('TM_DEF_BAD_MONITOR', where, `drift.minSamples ${minSamples} is not a positive integer`, 'e.g. minSamples: 10');

  const labels = m.labels ? compileLabels(m.labels, slices, sources, views.filter((v) => v.source === source?.name), where, err, duration) : null;

  const slos: SloPlan[] = [];
  for (const [name, spec] of Object.entries(m.slos ?? {})) {
    const at = `${where}, slo ${name}`;
    if (!NAME_RE.test(name)) err('TM_DEF_BAD_NAME', at, 'SLO names hold letters, digits and underscores', 'rename it');
    if (!SLO_INDICATORS.includes(spec.indicator)) {
      err('TM_DEF_BAD_MONITOR', at, `unknown indicator ${JSON.stringify(spec.indicator)}`, `use one of: ${SLO_INDICATORS.join(', ')}`);
      continue;
    }
    const isLabel = (BINARY_LABEL_METRICS as readonly string[]).includes(spec.indicator) || (REGRESSION_LABEL_METRICS as readonly string[]).includes(spec.indicator);
    if (isLabel && !labels) err('TM_DEF_BAD_MONITOR', at, `${spec.indicator} needs labels`, 'add labels: { predictions, labels, ... } to the monitor');
    if (isLabel && labels) {
      const fits = labels.kind === 'binary' ? (BINARY_LABEL_METRICS as readonly string[]) : (REGRESSION_LABEL_METRICS as readonly string[]);
      if (!fits.includes(spec.indicator)) err('TM_DEF_BAD_MONITOR', at, `${spec.indicator} is not a ${labels.kind} metric`, `use one of: ${fits.join(', ')}`);
    }
    const feature = spec.feature ?? null;
    if (spec.indicator === 'skew') {
      const logged = views.filter((v) => v.source === source?.name).flatMap((v) => v.features.map((f) => `${v.name}:${f.name}`));
      if (feature !== null && !logged.includes(feature)) err('TM_DEF_BAD_MONITOR', at, `skew feature ${feature} is not a feature of a view of source ${source?.name}`, `use one of: ${logged.join(', ')}`);
    } else if (feature !== null && !featureNames.includes(feature)) err('TM_DEF_BAD_MONITOR', at, `feature ${feature} is not watched by this monitor`, `use one of: ${featureNames.join(', ')}`);
    if (feature !== null && !['psi', 'ks', 'drift', 'skew'].includes(spec.indicator)) err('TM_DEF_BAD_MONITOR', at, `${spec.indicator} takes no feature`, 'drop feature');
    let max: number | null = null;
    if (spec.max !== undefined) max = typeof spec.max === 'string' ? duration(spec.max, at, 'max') : spec.max;
    if (spec.indicator === 'freshness' && typeof spec.max !== 'string') err('TM_DEF_BAD_MONITOR', at, 'freshness needs max as a duration', "e.g. max: '60s'");
    const min = spec.min ?? null;
    if (spec.indicator === 'drift') {
      if (max !== null || min !== null) err('TM_DEF_BAD_MONITOR', at, 'drift is bad when the drift decision says so; it takes no min or max', 'drop min/max, or use psi/ks with max');
    } else if (HIGHER_IS_BETTER.has(spec.indicator) ? min === null || max !== null : max === null || min !== null) {
      err('TM_DEF_BAD_MONITOR', at, `${spec.indicator} needs ${HIGHER_IS_BETTER.has(spec.indicator) ? 'min' : 'max'} (and only that)`, HIGHER_IS_BETTER.has(spec.indicator) ? 'e.g. min: 0.7' : 'e.g. max: 0.2');
    }
    if (!(spec.objective > 0 && spec.objective < 1)) err('TM_DEF_BAD_MONITOR', at, `objective ${spec.objective} is not in (0, 1)`, 'e.g. objective: 0.99');
    const windowMs = spec.window === undefined ? windowsMs[0]! : (duration(spec.window, at, 'window') ?? windowsMs[0]!);
    if (!windowsMs.includes(windowMs)) err('TM_DEF_BAD_MONITOR', at, `window ${formatDurationMs(windowMs)} is not one of the monitor's windows`, `use one of: ${windowsMs.map(formatDurationMs).join(', ')}`);
    const policy = spec.policy === undefined
      ? DEFAULT_BURN_RATE_RULES.map((r) => ({ ...r }))
      : spec.policy.map((r) => {
          const rule = { severity: r.severity, longWindowMs: duration(r.long, at, 'policy long window') ?? 0, shortWindowMs: duration(r.short, at, 'policy short window') ?? 0, burnRate: r.burnRate };
          if (rule.severity !== 'page' && rule.severity !== 'ticket') err('TM_DEF_BAD_MONITOR', at, `severity ${JSON.stringify(rule.severity)}`, 'use page or ticket');
          if (!(rule.burnRate > 0) || rule.shortWindowMs >= rule.longWindowMs) err('TM_DEF_BAD_MONITOR', at, 'a burn-rate rule needs burnRate > 0 and short < long', "e.g. { severity: 'page', long: '1h', short: '5m', burnRate: 14.4 }");
          return rule;
        });
    for (const rule of policy) {
      if (rule.shortWindowMs < intervalMs) err('TM_DEF_BAD_MONITOR', at, `burn-rate short window ${formatDurationMs(rule.shortWindowMs)} is shorter than the evaluation interval ${formatDurationMs(intervalMs)}, so it would often hold no evaluation`, `evaluate more often or give a policy whose windows are at least ${formatDurationMs(intervalMs)}`);
    }
    slos.push({ name, indicator: spec.indicator, feature, max, min, objective: spec.objective, windowMs, policy });
  }

  const plan: Omit<MonitorPlan, 'version'> = {
    name: m.name,
    source: source?.name ?? '',
    features,
    slices,
    reference: { fromMs, toMs },
    intervalMs,
    phaseMs: Number.isFinite(toMs) ? ((toMs % intervalMs) + intervalMs) % intervalMs : 0,
    windowsMs,
    drift: { mode, fdr, psiFloor, minSamples },
    labels,
    slos,
  };
  // Only monitors with a skew SLO carry the key, so the versions of the others stay as they were.
  if (slos.some((s) => s.indicator === 'skew')) plan.skew = { views: views.filter((v) => v.source === source?.name).map((v) => v.name) };
  const readViews = views.filter((v) => features.some((f) => f.view === v.name) || plan.skew?.views.includes(v.name));
  return { ...plan, version: hash({ plan, views: readViews }) };
}

function compileLabels(
  spec: LabelSpec<AnyObjectSchema, AnyObjectSchema>,
  slices: readonly MonitorSlicePlan[],
  sources: readonly SourcePlan[],
  sourceViews: readonly ViewPlan[],
  where: string,
  err: ErrFn,
  duration: DurationFn,
): LabelPlan {
  const at = `${where}, labels`;
  const fromLog = spec.predictions === FEATURE_LOG_PREDICTIONS;
  const predictions = fromLog ? undefined : sources.find((s) => s.name === (spec as SourceLabelSpec<AnyObjectSchema, AnyObjectSchema>).predictions?.name);
  const labels = sources.find((s) => s.name === spec.labels?.name);
  if (!fromLog && !predictions) err('TM_DEF_BAD_MONITOR', at, `predictions source ${String((spec.predictions as { name?: unknown } | undefined)?.name ?? spec.predictions)} is not among the definitions`, `export it from the definitions module, or use predictions: '${FEATURE_LOG_PREDICTIONS}' for the feature log's`);
  if (!labels) err('TM_DEF_BAD_MONITOR', at, `labels source ${String(spec.labels?.name)} is not among the definitions`, 'export it from the definitions module');
  const need = (src: SourcePlan | undefined, field: string, what: string, kinds: readonly string[]): void => {
    if (!src) return;
    const info = src.fields[field];
    if (!info) err('TM_DEF_UNKNOWN_FIELD', at, `${what} "${field}" is not a field of source ${src.name}`, `use one of: ${Object.keys(src.fields).join(', ')}`);
    else if (!kinds.includes(info.kind)) err('TM_DEF_BAD_MONITOR', at, `${what} "${field}" is ${info.kind}`, `it must be ${kinds.join(' or ')}`);
  };
  need(labels, String(spec.labelId), 'labelId', ['string', 'number']);
  need(labels, String(spec.label), 'label', spec.kind === 'binary' ? ['number', 'boolean'] : ['number']);
  let logPlan: LabelPlan['fromLog'];
  if (fromLog) {
    const model = (spec as LoggedLabelSpec<AnyObjectSchema>).model;
    if (model !== undefined && (typeof model !== 'string' || model.length === 0)) err('TM_DEF_BAD_MONITOR', at, `model ${JSON.stringify(model)} is not a model name`, "e.g. model: 'delay_model'");
    // A logged prediction is sliced by its read's join key that the slice's field is the key of,
    // in a view of the monitor's source (as view features are); every such view is a candidate.
    const sliceKeys: Record<string, { view: string; joinKey: string }[]> = {};
    for (const slice of slices) {
      const candidates = sourceViews.flatMap((v) => v.joinKeys.flatMap((k, i) => (v.keyFields[i] === slice.field ? [{ view: v.name, joinKey: k }] : [])));
      if (slice.bands !== null || candidates.length === 0) {
        err('TM_DEF_SLICE_NOT_KEY', at, `slice ${slice.name} (${slice.field}${slice.bands ? ' bands' : ''}) is not a key field of a view of the monitor's source, so a logged read does not carry it and logged predictions cannot be sliced by it`, `slice by a view's key field (${[...new Set(sourceViews.flatMap((v) => v.keyFields))].join(', ') || 'none'}), without bands`);
      }
      sliceKeys[slice.field] = candidates;
    }
    logPlan = { model: model ?? null, sliceKeys };
  } else {
    const s = spec as SourceLabelSpec<AnyObjectSchema, AnyObjectSchema>;
    need(predictions, String(s.predictionId), 'predictionId', ['string', 'number']);
    need(predictions, String(s.score), 'score', ['number']);
    for (const slice of slices) {
      if (predictions && !(slice.field in predictions.fields)) {
        err('TM_DEF_UNKNOWN_FIELD', at, `slice ${slice.name} reads "${slice.field}", which predictions source ${predictions.name} lacks, so label metrics cannot be sliced by it`, `add ${slice.field} to the predictions' schema`);
      }
    }
  }
  if (spec.kind !== 'binary' && spec.kind !== 'regression') err('TM_DEF_BAD_MONITOR', at, `kind ${JSON.stringify(spec.kind)}`, 'use binary or regression');
  const threshold = spec.threshold ?? 0.5;
  const minLabelled = spec.minLabelled ?? 200;
  if (!Number.isInteger(minLabelled) || minLabelled < 1) err('TM_DEF_BAD_MONITOR', at, `minLabelled ${minLabelled} is not a positive integer`, 'e.g. minLabelled: 200');
  if (!Number.isFinite(threshold)) err('TM_DEF_BAD_MONITOR', at, `threshold ${threshold} is not a number`, 'e.g. threshold: 0.5');
  return {
    predictions: fromLog ? FEATURE_LOG_PREDICTIONS : (predictions?.name ?? ''),
    labels: labels?.name ?? '',
    predictionIdField: fromLog ? 'request_id' : String((spec as SourceLabelSpec<AnyObjectSchema, AnyObjectSchema>).predictionId),
    labelIdField: String(spec.labelId),
    scoreField: fromLog ? 'score' : String((spec as SourceLabelSpec<AnyObjectSchema, AnyObjectSchema>).score),
    labelField: String(spec.label),
    kind: spec.kind,
    threshold,
    labelDelayMs: duration(spec.labelDelay, at, 'labelDelay') ?? 0,
    minLabelled,
    // Only logged predictions carry the key, so the versions of the other monitors stay as they were.
    ...(logPlan ? { fromLog: logPlan } : {}),
  };
}


