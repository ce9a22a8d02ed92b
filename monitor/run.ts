// The monitor loop: for each evaluation time T (every interval after the reference ends), drift of every feature
// and slice, label metrics, freshness and (with a skew SLO) the skew of the logged reads, written to the metrics table; each SLO's good/bad
// observations feed the burn-rate alerts, whose notifications go to the sinks. The same code runs
// on a schedule (T follows the wall clock) and as a replay over history (T follows event time).
// A restart resumes after the last stored evaluation and refills the burn-rate windows from the
// stored metrics, so nothing is evaluated twice and nothing pages twice.
import { TidemarkError, type CompiledDefinitions, type MonitorPlan, type SloPlan } from '../definitions/index.js';
import { COMPLETED_LOADS, eventTable, ident, type OfflineExecutor, type ShardSet } from '../offline/index.js';
import { AlertDelivery, type AlertSink, type DeliveryReport } from './alert-sinks.js';
import { OfflineAlertStateStore, type AlertStateStore } from './alert-store.js';
import { BurnRateAlerts, type AlertNotification } from './alerts.js';
import type { SloObservation } from './burn-rate.js';
import { evaluateDrift, type DriftResult } from './drift.js';
import { ALL_SLICE, refuseUnplacedLabelsOnShards } from './drift-sql.js';
import { LabelMetricsAhead, labelSqlParams, orphanLabelsSql, type LabelMetricsResult } from './labels.js';
import { compactMetrics, ensureMetricsTable, lastEvaluatedMs, queryMetrics, writeMetrics, type MetricRecord, type MetricRow } from './metrics-store.js';
import { loadOrBuildProfile, type MonitorProfile } from './profile.js';
import { handled } from './promises.js';
import { evaluateSkew } from './skew.js';

export interface MonitorRunnerOptions {
  /** Where alerts go; none: they are only kept in the state store. */
  sinks?: readonly AlertSink[];
  /** Default: the offline store's tm_monitor_alerts. */
  alertStore?: AlertStateStore;
  /** Base URL of the API, for dashboard links in alerts. */
  externalURL?: string;
  log?: (message: string, details?: Record<string, unknown>) => void;
  /**
   * A sharded offline store (--clickhouse-shards); the executor is then its home shard, which holds
   * the profile, the metrics, the alert state and the predictions and labels. The drift counts and
   * freshness come from every shard, merged (see evaluateDrift); the skew check reads the feature
   * log on the home shard and computes each logged read's offline values on its key's shard.
   */
  shards?: ShardSet | null;
}

export interface EvaluationSummary {
  windowEndMs: number;
  metrics: number;
  /** (feature, slice, window) tests the drift decision flagged. */
  drifted: DriftResult[];
  notifications: AlertNotification[];
  delivery: DeliveryReport | null;
}

export class MonitorRunner {
  private constructor(
    readonly plan: MonitorPlan,
    private readonly executor: OfflineExecutor,
    private readonly compiled: CompiledDefinitions,
    readonly profile: MonitorProfile,
    readonly alerts: BurnRateAlerts,
    private readonly delivery: AlertDelivery | null,
    private readonly log: NonNullable<MonitorRunnerOptions['log']>,
    private readonly shards: ShardSet | null,
  ) {}

  /** Open a monitor of the definitions (by name; default the only one): its profile, metrics table and alert state. */
  static async open(executor: OfflineExecutor, compiled: CompiledDefinitions, name: string | undefined, opts: MonitorRunnerOptions = {}): Promise<MonitorRunner> {
    const plan = pickMonitor(compiled, name);
    const shards = opts.shards ?? null;
    if (shards) {
      if (executor !== shards.home) throw new Error('MonitorRunner.open on shards takes the home shard\'s executor (OfflineStore.executor of the sharded store)');
      // The parts that cannot be exact on shards say so before anything is built.
      refuseUnplacedLabelsOnShards(compiled, plan);
    }
    await ensureMetricsTable(executor);
    const log = opts.log ?? (() => {});
    const { profile, built } = await loadOrBuildProfile(executor, compiled, plan, shards);
    if (built) log(`monitor ${plan.name}: reference profile built`, { slices: new Set([...profile.values()].map((p) => p.slice)).size, version: plan.version });
    const store = opts.alertStore ?? (await OfflineAlertStateStore.open(executor));
    const alerts = await BurnRateAlerts.open(store, {
      slos: plan.slos.map((s) => ({ name: s.name, objective: s.objective, indicator: s.indicator, max: s.max, min: s.min, policy: s.policy })),
      externalURL: opts.externalURL ?? 'http://localhost:8080',
      monitor: plan.name,
    });
    const delivery = opts.sinks && opts.sinks.length > 0 ? new AlertDelivery(alerts, opts.sinks) : null;
    const runner = new MonitorRunner(plan, executor, compiled, profile, alerts, delivery, log, shards);
    await runner.refillBurnRateWindows();
    return runner;
  }

  /** The last evaluated window end of this monitor version, or null. */
  lastEvaluatedMs(): Promise<number | null> {
    return lastEvaluatedMs(this.executor, this.plan.name, this.plan.version);
  }

  /**
   * Evaluate every interval end T in (fromMs, toMs], oldest first, skipping those already stored.
   * `onEvaluation` sees each one as it is written.
   */
  async evaluate(fromMs: number, toMs: number, onEvaluation?: (s: EvaluationSummary) => void | Promise<void>): Promise<EvaluationSummary[]> {
    const last = await this.lastEvaluatedMs();
    const start = last === null ? fromMs : Math.max(fromMs, last);
    const out: EvaluationSummary[] = [];
    if (toMs <= start) return out;
    // ClickHouse runs one query at a time. The drift counts up to the first evaluation go first, so
    // that Node starts on the drift statistics early; the label metrics (four weeks of evaluations
    // per query, the next queued when one is first used), orphan labels and freshness (one query
    // each) are queued once those counts are in, and run while Node computes the statistics.
    const labels = this.plan.labels ? new LabelMetricsAhead(this.executor, this.plan, start, toMs) : null;
    let orphansLater: Promise<Map<number, number> | null> = Promise.resolve(null);
    let freshnessLater: Promise<Map<number, number>> | null = null;
    const queueOthers = (): void => {
      if (freshnessLater) return;
      labels?.start();
      if (this.plan.labels) orphansLater = handled(this.orphanLabelBuckets(start, toMs));
      freshnessLater = handled(this.latestEventTimes(start, toMs));
    };
    const driftEvaluations = evaluateDrift(this.executor, this.compiled, this.plan, this.profile, start, toMs, { onFirstCounts: queueOthers, shards: this.shards })[Symbol.asyncIterator]();
    const firstDrift = handled(driftEvaluations.next());
    try {
      for (let step = await firstDrift; !step.done; step = await driftEvaluations.next()) {
        const drift = step.value;
        const T = drift.windowEndMs;
        queueOthers();
        const labelResults = labels ? await labels.at(T) : [];
        const orphans = await orphansLater;
        const rows: MetricRow[] = drift.results.map((r) => this.driftRow(r));
        for (const l of labelResults) rows.push(...this.labelRows(l));
        if (orphans) rows.push(...this.orphanRows(T, orphans));
        rows.push(this.freshnessRow(T, (await freshnessLater!).get(T) ?? null));
        if (this.plan.skew) rows.push(...(await this.skewRows(T, this.plan.skew.views)));
        await writeMetrics(this.executor, rows);
        const notifications = this.observe(T, rows);
        const delivery = this.delivery ? await this.delivery.deliver(Date.now()) : (await this.alerts.save(), null);
        for (const failure of delivery?.failures ?? []) this.log(`alert sink ${failure.sink} failed; its alerts stay pending`, { code: failure.error.code, error: failure.error.message });
        const summary = { windowEndMs: T, metrics: rows.length, drifted: drift.results.filter((r) => r.drift === true), notifications, delivery };
        out.push(summary);
        await onEvaluation?.(summary);
      }
    } finally {
      // Stopped by an error: close the generator (its prefetched counts are dropped).
      await driftEvaluations.return?.(undefined);
    }
    // A replay wrote one part per evaluation: compact them, so later reads with FINAL stay cheap
    // (one evaluation at a time, on schedule, is left to the background merges).
    if (out.length > 1) await compactMetrics(this.executor);
    return out;
  }

  /** Retry undelivered notifications (e.g. after a sink was down). */
  async deliverPending(): Promise<DeliveryReport | null> {
    return this.delivery ? this.delivery.deliver(Date.now()) : null;
  }

  private base(windowMs: number, windowEndMs: number): Pick<MetricRow, 'monitor' | 'version' | 'window_ms' | 'window_end'> {
    return { monitor: this.plan.name, version: this.plan.version, window_ms: windowMs, window_end: windowEndMs };
  }

  private driftRow(r: DriftResult): MetricRow {
    return {
      ...this.base(r.windowMs, r.windowEndMs),
      metric: 'drift',
      feature: r.feature,
      slice: r.slice,
      value: r.psi,
      n_ref: r.nRef,
      n_cur: r.nCur,
      ks: r.ks,
      ks_error_bound: r.ksErrorBound,
      p_value: r.pValue,
      q_value: r.qValue,
      drift: r.drift,
      detail: JSON.stringify({
        kind: r.kind,
        mode: this.plan.drift.mode,
        psi_p_value: r.psiPValue,
        ks_p_value: r.ksPValue,
        ...(r.note ? { note: r.note } : {}),
        // The bins the PSI was computed from, so the dashboard can show them without recounting.
        ...(r.currentBins ? { cur_bins: r.currentBins } : {}),
        ...(r.unseenTop ? { unseen_top: r.unseenTop } : {}),
      }),
    };
  }

  private labelRows(l: LabelMetricsResult): MetricRow[] {
    return Object.entries(l.metrics).map(([metric, value]) => ({
      ...this.base(l.windowMs, l.windowEndMs),
      metric,
      feature: '',
      slice: l.slice,
      value,
      n_ref: 0,
      n_cur: l.labelled,
      ks: null,
      ks_error_bound: null,
      p_value: null,
      q_value: null,
      drift: null,
      detail: JSON.stringify({ labelled: l.labelled, unlabelled: l.unlabelled, ...(l.withoutRead !== undefined ? { without_read: l.withoutRead } : {}) }),
    }));
  }

  /** Labels without a prediction, counted per interval bucket of label time (one query per evaluate call). */
  private async orphanLabelBuckets(fromMs: number, toMs: number): Promise<Map<number, number>> {
    const rows = await this.executor.rows<{ b: number; n: number }>(orphanLabelsSql(this.plan, this.plan.labels!), { from: fromMs - Math.max(...this.plan.windowsMs), to: toMs, ...labelSqlParams(this.plan.labels!) });
    return new Map(rows.map((r) => [r.b, r.n]));
  }

  private orphanRows(T: number, buckets: ReadonlyMap<number, number>): MetricRow[] {
    const last = (T - this.plan.phaseMs) / this.plan.intervalMs - 1;
    return this.plan.windowsMs.map((w) => {
      let n = 0;
      for (let b = last - w / this.plan.intervalMs + 1; b <= last; b++) n += buckets.get(b) ?? 0;
      return this.plainRow('labels_without_prediction', w, T, n);
    });
  }

  /**
   * The latest event time before T of the monitored source, for every interval end T in (fromMs,
   * toMs], in one pass (as `latestEventTimeMs(source, T)` per T); T without an earlier event is absent.
   */
  private async latestEventTimes(fromMs: number, toMs: number): Promise<Map<number, number>> {
    const { phaseMs, intervalMs } = this.plan;
    const ends: number[] = [];
    for (let k = Math.floor((fromMs - phaseMs) / intervalMs) + 1; phaseMs + k * intervalMs <= toMs; k++) ends.push(phaseMs + k * intervalMs);
    if (ends.length === 0) return new Map();
    const columns = ends.map((_, i) => `countIf(__ts < {t${i}:Int64}) AS n${i}, maxIf(__ts, __ts < {t${i}:Int64}) AS m${i}`).join(', ');
    const sql = `SELECT ${columns} FROM ${ident(eventTable(this.plan.source))} WHERE ${COMPLETED_LOADS} AND __ts < {before:Int64}`;
    const params = { before: ends[ends.length - 1]!, ...Object.fromEntries(ends.map((T, i) => [`t${i}`, T])) };
    // On shards: every shard's latest (an event copied to several shards has one time), the greatest.
    const rows = this.shards ? await this.shards.each(async (shardExecutor) => (await shardExecutor.rows<Record<string, number>>(sql, params))[0]) : [(await this.executor.rows<Record<string, number>>(sql, params))[0]];
    return new Map(
      ends.flatMap((T, i) => {
        const latest = rows.filter((row) => row && Number(row[`n${i}`]) > 0).map((row) => Number(row![`m${i}`]));
        return latest.length > 0 ? [[T, Math.max(...latest)] as const] : [];
      }),
    );
  }

  /** Freshness at T: T minus the latest event time before T of the monitored source. */
  private freshnessRow(T: number, latest: number | null): MetricRow {
    return this.plainRow('freshness', this.plan.intervalMs, T, latest === null ? null : T - latest);
  }

  /**
   * Skew at T, per window: the logged reads with read time in [T - window, T) against the offline
   * point-in-time values (monitor/skew.ts); one row per logged view feature and slice (all, and
   * each monitor slice whose field is a key field of the feature's view; value = match rate,
   * n_cur = values compared, detail = mismatches, SMAPE, largest difference and a sample).
   */
  private async skewRows(T: number, views: readonly string[]): Promise<MetricRow[]> {
    const rows: MetricRow[] = [];
    for (const w of this.plan.windowsMs) {
      for (const r of await evaluateSkew(this.executor, this.compiled.registry, { views, fromMs: T - w, toMs: T, slices: this.plan.slices, shards: this.shards })) {
        rows.push({
          ...this.plainRow('skew', w, T, r.exactMatchRate),
          feature: `${r.view}:${r.feature}`,
          slice: r.slice,
          n_cur: r.compared,
          detail: JSON.stringify({ mismatches: r.mismatches, tolerance: r.tolerance, smape: r.smape, max_abs_diff: r.maxAbsDiff, sample: r.sample }),
        });
      }
    }
    return rows;
  }

  private plainRow(metric: string, windowMs: number, T: number, value: number | null): MetricRow {
    return { ...this.base(windowMs, T), metric, feature: '', slice: ALL_SLICE, value, n_ref: 0, n_cur: 0, ks: null, ks_error_bound: null, p_value: null, q_value: null, drift: null, detail: '{}' };
  }

  /** Each SLO's observations at T from the metric rows of T. */
  private observe(T: number, rows: readonly Pick<MetricRow, 'metric' | 'feature' | 'slice' | 'window_ms' | 'value' | 'ks' | 'drift' | 'n_cur' | 'detail'>[]): AlertNotification[] {
    const out: AlertNotification[] = [];
    for (const slo of this.plan.slos) {
      for (const { labels, observation } of sloObservations(slo, T, rows, this.plan.labels?.minLabelled ?? 0)) out.push(...this.alerts.observe(slo.name, labels, observation));
    }
    return out;
  }

  /** After a restart: feed the stored metrics since the alerts' warm-up point back through the SLOs (they only refill windows). */
  private async refillBurnRateWindows(): Promise<void> {
    const from = this.alerts.warmUpFromMs();
    const last = await this.lastEvaluatedMs();
    if (from === null || last === null) return;
    const rows: MetricRecord[] = await queryMetrics(this.executor, { monitor: this.plan.name, fromMs: from + 1, toMs: last, limit: 100_000 });
    const byT = new Map<number, MetricRecord[]>();
    for (const r of rows) {
      if (r.version !== this.plan.version) continue;
      const T = Date.parse(r.window_end);
      byT.set(T, [...(byT.get(T) ?? []), r]);
    }
    for (const T of [...byT.keys()].sort((a, b) => a - b)) {
      this.observe(T, byT.get(T)!.map((r) => ({ ...r, detail: JSON.stringify(r.detail) })));
    }
  }
}

/** The monitor named, or the only one. */
export function pickMonitor(compiled: CompiledDefinitions, name: string | undefined): MonitorPlan {
  const names = compiled.monitors.map((m) => m.name);
  const plan = name === undefined ? (compiled.monitors.length === 1 ? compiled.monitors[0] : undefined) : compiled.monitors.find((m) => m.name === name);
  if (!plan) {
    throw new TidemarkError('TM_MONITOR_UNKNOWN', name === undefined ? `the definitions hold ${names.length} monitors; name one with --monitor` : `no monitor named ${name}`, { validMonitors: names });
  }
  return plan;
}

/** Good/bad observations of one SLO at T, one per series (feature x slice). */
export function sloObservations(
  slo: SloPlan,
  T: number,
  rows: readonly Pick<MetricRow, 'metric' | 'feature' | 'slice' | 'window_ms' | 'value' | 'ks' | 'drift' | 'n_cur' | 'detail'>[],
  minLabelled: number,
): { labels: Record<string, string>; observation: SloObservation }[] {
  const out: { labels: Record<string, string>; observation: SloObservation }[] = [];
  const push = (labels: Record<string, string>, bad: boolean, value: number | null): void => {
    out.push({ labels, observation: { timeMs: T, good: bad ? 0 : 1, bad: bad ? 1 : 0, indicatorValue: value } });
  };
  const drift = slo.indicator === 'drift' || slo.indicator === 'psi' || slo.indicator === 'ks';
  for (const r of rows) {
    if (slo.indicator === 'skew') {
      // One observation per logged view feature (and slice) with values compared in the window.
      if (r.metric !== 'skew' || r.window_ms !== slo.windowMs || r.value === null || (slo.feature !== null && r.feature !== slo.feature)) continue;
      push({ feature: r.feature, slice: r.slice }, r.value < slo.min!, r.value);
      continue;
    }
    // Freshness is one value per evaluation; the others are judged over the SLO's window.
    if (slo.indicator !== 'freshness' && r.window_ms !== slo.windowMs) continue;
    if (drift) {
      if (r.metric !== 'drift' || (slo.feature !== null && r.feature !== slo.feature)) continue;
      const labels = { feature: r.feature, slice: r.slice };
      if (slo.indicator === 'drift') {
        if (r.drift !== null) push(labels, r.drift, r.value);
        continue;
      }
      // psi/ks: judged only where a decision could be made (a reference and enough rows).
      if ((JSON.parse(r.detail) as { note?: string }).note) continue;
      const value = slo.indicator === 'psi' ? r.value : r.ks;
      if (value !== null) push(labels, value > slo.max!, value);
      continue;
    }
    if (r.metric !== slo.indicator || r.value === null) continue;
    // A label metric over a handful of labels is noise, not a signal worth a page.
    if (slo.indicator !== 'freshness' && r.n_cur < minLabelled) continue;
    const bad = slo.min !== null ? r.value < slo.min : r.value > slo.max!;
    push(slo.indicator === 'freshness' ? {} : { slice: r.slice }, bad, r.value);
  }
  return out;
}
