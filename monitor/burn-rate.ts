// Burn-rate evaluation (docs/semantics.md, "Burn-rate alerting"): the SRE Workbook's multiwindow,
// multi-burn-rate rules over SLO observations, pure and incremental. A replay drives it with
// months of 5-minute evaluations over hundreds of series, so each series keeps cumulative sums
// in a ring and one cursor per window length: O(1) amortised per observation, and memory bounded
// by the observations inside the longest window.
import { formatDurationMs, TidemarkError } from '../definitions/index.js';

export type AlertSeverity = 'page' | 'ticket';

/** Fires when the burn rates over both windows exceed `burnRate`. */
export interface BurnRateRule {
  severity: AlertSeverity;
  longWindowMs: number;
  shortWindowMs: number;
  burnRate: number;
}

export type BurnRatePolicy = readonly BurnRateRule[];

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/**
 * The Google SRE Workbook's table (chapter "Alerting on SLOs", multiwindow multi-burn-rate):
 * 2% of a 30-day budget in 1h pages, 5% in 6h pages, 10% in 3d opens a ticket.
 */
export const DEFAULT_BURN_RATE_POLICY: BurnRatePolicy = Object.freeze([
  Object.freeze({ severity: 'page', longWindowMs: HOUR_MS, shortWindowMs: 5 * MINUTE_MS, burnRate: 14.4 }),
  Object.freeze({ severity: 'page', longWindowMs: 6 * HOUR_MS, shortWindowMs: 30 * MINUTE_MS, burnRate: 6 }),
  Object.freeze({ severity: 'ticket', longWindowMs: 3 * DAY_MS, shortWindowMs: 6 * HOUR_MS, burnRate: 1 }),
] as const);

/** One evaluation of an SLO's indicator for one series (usually good 1 or bad 1; per-event indicators give counts). */
export interface SloObservation {
  timeMs: number;
  good: number;
  bad: number;
  /** The indicator's value at this evaluation (a PSI, an AUC...), shown in alert annotations. */
  indicatorValue?: number | null;
}

/**
 * Burn rates this close (relatively) to a threshold count as equal to it. `1 - objective` is
 * inexact in binary (1 - 0.9 = 0.09999999999999998), and that noise must not decide a page:
 * "exceeds" means exceeds by more than it.
 */
export const BURN_RATE_TOLERANCE = 1e-9;

/** A stable name for a rule, persisted with firing alerts: `page:1h/5m>14.4`. */
export function ruleId(rule: BurnRateRule): string {
  return `${rule.severity}:${formatDurationMs(rule.longWindowMs)}/${formatDurationMs(rule.shortWindowMs)}>${rule.burnRate}`;
}

/** Throws TM_SLO_BAD_POLICY naming `where` unless the objective and every rule make sense. */
export function validateBurnRatePolicy(policy: BurnRatePolicy, objective: number, where: string): void {
  const bad = (message: string, details: Record<string, unknown> = {}): never => {
    throw new TidemarkError('TM_SLO_BAD_POLICY', `${where}: ${message}`, { where, ...details });
  };
  if (!(Number.isFinite(objective) && objective > 0 && objective < 1)) bad(`objective ${objective} is not in (0, 1) (e.g. 0.99)`, { objective });
  if (policy.length === 0) bad('the burn-rate policy has no rule');
  const seen = new Set<string>();
  for (const rule of policy) {
    const id = ruleId(rule);
    if (rule.severity !== 'page' && rule.severity !== 'ticket') bad(`rule ${id}: severity must be page or ticket`, { rule });
    for (const [name, ms] of [['longWindowMs', rule.longWindowMs], ['shortWindowMs', rule.shortWindowMs]] as const) {
      if (!(Number.isSafeInteger(ms) && ms > 0)) bad(`rule ${id}: ${name} ${ms} is not a positive whole number of milliseconds`, { rule });
    }
    if (!(rule.shortWindowMs < rule.longWindowMs)) bad(`rule ${id}: the short window must be shorter than the long one`, { rule });
    if (!(Number.isFinite(rule.burnRate) && rule.burnRate > 0)) bad(`rule ${id}: burnRate must be a positive number`, { rule });
    if (seen.has(id)) bad(`rule ${id} is listed twice`, { rule });
    seen.add(id);
  }
}

/** The error budget `1 - objective`, rounded to 12 significant digits (0.99 gives exactly 0.01). */
export function errorBudget(objective: number): number {
  return Number((1 - objective).toPrecision(12));
}

/** Burn rate of `bad` among `good + bad`; null for an empty window (no observation: no burn rate, never firing). */
export function burnRateOf(good: number, bad: number, objective: number): number | null {
  const total = good + bad;
  return total > 0 ? bad / total / errorBudget(objective) : null;
}

/** Whether a burn rate strictly exceeds a threshold (an empty window never does). */
export function exceedsBurnRate(burnRate: number | null, threshold: number): boolean {
  return burnRate !== null && burnRate > threshold * (1 + BURN_RATE_TOLERANCE);
}

/** Good and bad counts over the window (t - windowMs, t] and their burn rate. */
export interface WindowBurnRate {
  windowMs: number;
  good: number;
  bad: number;
  burnRate: number | null;
}

/**
 * The burn rate over (tMs - windowMs, tMs] by scanning every observation: the plain definition,
 * O(n). Tests check the incremental evaluator against it.
 */
export function windowBurnRate(observations: readonly SloObservation[], tMs: number, windowMs: number, objective: number): WindowBurnRate {
  let good = 0;
  let bad = 0;
  for (const o of observations) {
    if (o.timeMs > tMs - windowMs && o.timeMs <= tMs) {
      good += o.good;
      bad += o.bad;
    }
  }
  return { windowMs, good, bad, burnRate: burnRateOf(good, bad, objective) };
}

/**
 * One rule's decision. Not firing: fires when both windows exceed the threshold. Firing: stays
 * firing until its short window falls back to the threshold or under (SEMANTICS: "an alert
 * resolves when its short window falls back under its threshold"); an empty short window is
 * under it, so a series that stops reporting resolves.
 */
export function ruleFires(rule: BurnRateRule, long: WindowBurnRate, short: WindowBurnRate, wasFiring: boolean): boolean {
  if (wasFiring) return exceedsBurnRate(short.burnRate, rule.burnRate);
  return exceedsBurnRate(long.burnRate, rule.burnRate) && exceedsBurnRate(short.burnRate, rule.burnRate);
}

export interface RuleEvaluation {
  rule: BurnRateRule;
  id: string;
  long: WindowBurnRate;
  short: WindowBurnRate;
  firing: boolean;
  /** It was not firing at the previous evaluation. */
  started: boolean;
  /** It was firing at the previous evaluation and is not now. */
  stopped: boolean;
}

/** One alert's worth: a severity fires when any of its rules fires. */
export interface SeverityEvaluation {
  severity: AlertSeverity;
  firing: boolean;
  /** Every rule of this severity, in policy order. */
  rules: RuleEvaluation[];
}

export interface SeriesEvaluation {
  series: string;
  timeMs: number;
  /** One per severity the policy names, pages first. */
  severities: SeverityEvaluation[];
}

/** Cumulative sums of one series' observations in a ring, with a cursor per window length. */
class SeriesWindows {
  capacity = 16;
  times = new Float64Array(16);
  /** Cumulative good and bad up to and including each entry (since the series began). */
  cumGood = new Float64Array(16);
  cumBad = new Float64Array(16);
  /** Absolute index of the oldest entry kept, and one past the newest. */
  head = 0;
  tail = 0;
  /** Cumulative sums of the entries dropped before `head`. */
  baseGood = 0;
  baseBad = 0;
  /** Per window length: absolute index of the first entry inside (t - W, t]. */
  readonly cursors: number[];
  lastObservationMs = Number.NEGATIVE_INFINITY;
  lastEvaluationMs = Number.NEGATIVE_INFINITY;
  readonly firing: Uint8Array;

  constructor(windowCount: number, ruleCount: number) {
    this.cursors = new Array<number>(windowCount).fill(0);
    this.firing = new Uint8Array(ruleCount);
  }

  get size(): number {
    return this.tail - this.head;
  }

  private slot(index: number): number {
    return index & (this.capacity - 1);
  }

  append(timeMs: number, good: number, bad: number): void {
    if (this.tail > this.head) {
      const last = this.slot(this.tail - 1);
      if (this.times[last] === timeMs) {
        // Several observations at one instant are one entry: windows cut between instants only.
        this.cumGood[last]! += good;
        this.cumBad[last]! += bad;
        return;
      }
    }
    if (this.size === this.capacity) this.grow();
    const [prevGood, prevBad] = this.cumulativeBefore(this.tail);
    const slot = this.slot(this.tail);
    this.times[slot] = timeMs;
    this.cumGood[slot] = prevGood + good;
    this.cumBad[slot] = prevBad + bad;
    this.tail++;
  }

  private grow(): void {
    const capacity = this.capacity * 2;
    const times = new Float64Array(capacity);
    const cumGood = new Float64Array(capacity);
    const cumBad = new Float64Array(capacity);
    for (let i = this.head; i < this.tail; i++) {
      const from = this.slot(i);
      const to = i & (capacity - 1);
      times[to] = this.times[from]!;
      cumGood[to] = this.cumGood[from]!;
      cumBad[to] = this.cumBad[from]!;
    }
    this.capacity = capacity;
    this.times = times;
    this.cumGood = cumGood;
    this.cumBad = cumBad;
  }

  /** Cumulative good and bad of every entry before absolute index `index` (index >= head). */
  cumulativeBefore(index: number): [number, number] {
    if (index === this.head) return [this.baseGood, this.baseBad];
    const slot = this.slot(index - 1);
    return [this.cumGood[slot]!, this.cumBad[slot]!];
  }

  /** Move every window to end at `tMs` and drop what even the longest window no longer holds. */
  advance(tMs: number, windowsMs: readonly number[]): void {
    let oldest = this.tail;
    for (let w = 0; w < windowsMs.length; w++) {
      const startMs = tMs - windowsMs[w]!;
      let cursor = this.cursors[w]!;
      if (cursor < this.head) cursor = this.head;
      while (cursor < this.tail && this.times[this.slot(cursor)]! <= startMs) cursor++;
      this.cursors[w] = cursor;
      if (cursor < oldest) oldest = cursor;
    }
    if (oldest > this.head) {
      const slot = this.slot(oldest - 1);
      this.baseGood = this.cumGood[slot]!;
      this.baseBad = this.cumBad[slot]!;
      this.head = oldest;
    }
  }

  /** Good and bad inside window `w` (call advance first). */
  windowSums(w: number): [number, number] {
    const [endGood, endBad] = this.cumulativeBefore(this.tail);
    const [startGood, startBad] = this.cumulativeBefore(this.cursors[w]!);
    return [endGood - startGood, endBad - startBad];
  }
}

export interface BurnRateEvaluatorOptions {
  /** Fraction of good evaluations promised, e.g. 0.99. */
  objective: number;
  /** Default DEFAULT_BURN_RATE_POLICY. */
  policy?: BurnRatePolicy;
  /** Who this is for (an SLO name), for error messages. */
  name?: string;
}

/**
 * Burn rates and rule decisions for every series of one SLO. Per series, observations must come
 * in time order (equal times add up) and each evaluation time must be at or after the last
 * observation and evaluation: the monitor replays by event time.
 */
export class BurnRateEvaluator {
  readonly objective: number;
  readonly policy: BurnRatePolicy;
  readonly name: string;
  /** Distinct window lengths of the policy, ascending. */
  readonly windowsMs: readonly number[];
  readonly maxWindowMs: number;
  private readonly ruleIds: string[];
  private readonly longIndex: number[];
  private readonly shortIndex: number[];
  private readonly severityOrder: AlertSeverity[];
  private readonly series = new Map<string, SeriesWindows>();

  constructor(options: BurnRateEvaluatorOptions) {
    this.objective = options.objective;
    this.policy = options.policy ?? DEFAULT_BURN_RATE_POLICY;
    this.name = options.name ?? 'slo';
    validateBurnRatePolicy(this.policy, this.objective, this.name);
    this.windowsMs = [...new Set(this.policy.flatMap((r) => [r.longWindowMs, r.shortWindowMs]))].sort((a, b) => a - b);
    this.maxWindowMs = this.windowsMs[this.windowsMs.length - 1]!;
    this.ruleIds = this.policy.map(ruleId);
    this.longIndex = this.policy.map((r) => this.windowsMs.indexOf(r.longWindowMs));
    this.shortIndex = this.policy.map((r) => this.windowsMs.indexOf(r.shortWindowMs));
    const severities = new Set(this.policy.map((r) => r.severity));
    this.severityOrder = (['page', 'ticket'] as const).filter((s) => severities.has(s));
  }

  private windowsOf(series: string): SeriesWindows {
    let w = this.series.get(series);
    if (!w) {
      w = new SeriesWindows(this.windowsMs.length, this.policy.length);
      this.series.set(series, w);
    }
    return w;
  }

  /** Record an observation without evaluating (a restarted monitor refilling its windows). */
  add(series: string, observation: SloObservation): void {
    const { timeMs, good, bad } = observation;
    if (!Number.isFinite(timeMs) || !(Number.isFinite(good) && good >= 0) || !(Number.isFinite(bad) && bad >= 0)) {
      throw new TidemarkError('TM_SLO_BAD_OBSERVATION', `${this.name}, series ${series}: an observation needs a finite time and non-negative good and bad counts`, {
        slo: this.name,
        series,
        observation,
      });
    }
    const w = this.windowsOf(series);
    if (timeMs < w.lastObservationMs || timeMs < w.lastEvaluationMs) {
      throw new TidemarkError(
        'TM_SLO_OUT_OF_ORDER',
        `${this.name}, series ${series}: observation at ${timeMs} comes after one at ${Math.max(w.lastObservationMs, w.lastEvaluationMs)}; observations of a series must come in time order`,
        { slo: this.name, series, timeMs, lastMs: Math.max(w.lastObservationMs, w.lastEvaluationMs) },
      );
    }
    w.lastObservationMs = timeMs;
    w.append(timeMs, good, bad);
    // Later evaluations are at or after timeMs, so entries out of every window can go now.
    w.advance(timeMs, this.windowsMs);
  }

  /** Burn rates over every window ending at `tMs` and the rules' decisions (which update the firing state). */
  evaluate(series: string, tMs: number): SeriesEvaluation {
    const w = this.windowsOf(series);
    if (!Number.isFinite(tMs) || tMs < w.lastObservationMs || tMs < w.lastEvaluationMs) {
      throw new TidemarkError('TM_SLO_OUT_OF_ORDER', `${this.name}, series ${series}: evaluation at ${tMs} is before its last observation or evaluation`, {
        slo: this.name,
        series,
        timeMs: tMs,
        lastMs: Math.max(w.lastObservationMs, w.lastEvaluationMs),
      });
    }
    w.lastEvaluationMs = tMs;
    w.advance(tMs, this.windowsMs);
    const windows = this.windowsMs.map((windowMs, i): WindowBurnRate => {
      const [good, bad] = w.windowSums(i);
      return { windowMs, good, bad, burnRate: burnRateOf(good, bad, this.objective) };
    });
    const rules = this.policy.map((rule, r): RuleEvaluation => {
      const wasFiring = w.firing[r] === 1;
      const long = windows[this.longIndex[r]!]!;
      const short = windows[this.shortIndex[r]!]!;
      const firing = ruleFires(rule, long, short, wasFiring);
      w.firing[r] = firing ? 1 : 0;
      return { rule, id: this.ruleIds[r]!, long, short, firing, started: firing && !wasFiring, stopped: wasFiring && !firing };
    });
    const severities = this.severityOrder.map((severity): SeverityEvaluation => {
      const own = rules.filter((r) => r.rule.severity === severity);
      return { severity, firing: own.some((r) => r.firing), rules: own };
    });
    return { series, timeMs: tMs, severities };
  }

  /** add, then evaluate at the observation's time: one monitor evaluation of one series. */
  observe(series: string, observation: SloObservation): SeriesEvaluation {
    this.add(series, observation);
    return this.evaluate(series, observation.timeMs);
  }

  /** Ids of the rules firing for a series after its last evaluation. */
  firingRuleIds(series: string): string[] {
    const w = this.series.get(series);
    return w ? this.ruleIds.filter((_, r) => w.firing[r] === 1) : [];
  }

  /**
   * Restore which rules were firing (persisted with the alerts), so a restarted monitor keeps
   * the hysteresis: a rule firing before the restart still resolves only on its short window.
   * Ids the policy no longer has are ignored.
   */
  setFiringRules(series: string, ruleIds: Iterable<string>): void {
    const w = this.windowsOf(series);
    const ids = new Set(ruleIds);
    this.ruleIds.forEach((id, r) => {
      w.firing[r] = ids.has(id) ? 1 : 0;
    });
  }

  /** Observations (distinct instants) a series holds: at most those inside the longest window. */
  retainedObservations(series: string): number {
    return this.series.get(series)?.size ?? 0;
  }

  get seriesCount(): number {
    return this.series.size;
  }

  forget(series: string): void {
    this.series.delete(series);
  }
}
