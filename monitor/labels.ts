// Label metrics: predictions joined to their delayed labels by prediction id, grouped by prediction
// time. An evaluation at T over window W covers predictions made in [T - D - W, T - D), D the label
// delay, and a prediction counts as labelled when its first label arrived before prediction time + D
// (a later label counts as missing: the window's value never changes after it is written).
// Aggregated inside ClickHouse to one row per (evaluation, window, slice): AUC by the rank-sum
// (Mann-Whitney) identity with tied scores counting one half, which is scikit-learn's roc_auc_score;
// the rest from sums and confusion counts. Unlabelled predictions and labels without a prediction
// are counted, not errors.
import type { LabelPlan, MonitorPlan } from '../definitions/index.js';
import { COMPLETED_LOADS, eventTable, featureLogTablesOf, ident, loggedPredictionIdsSql, loggedPredictionsSql, type FeatureLogTables, type OfflineExecutor } from '../offline/index.js';
import { slicesArray } from './drift-sql.js';
import { confusionMetrics, regressionMetrics } from './label-metrics.js';
import { handled } from './promises.js';

export const LOG_LOSS_EPS = 1e-15;

export interface LabelWindowRow {
  k: number;
  w: number;
  slice: string;
  positives: number;
  negatives: number;
  labelled: number;
  unlabelled: number;
  /** Binary: sum over labelled predictions of pos * (negatives scored lower + half the tied). */
  auc_pairs: number;
  log_loss_sum: number;
  brier_sum: number;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  /** Regression. */
  abs_error_sum: number;
  sq_error_sum: number;
  /** Logged predictions whose request's read was not logged (always 0 for a predictions source). */
  without_read: number;
}

export interface LabelMetricsResult {
  windowEndMs: number;
  windowMs: number;
  slice: string;
  labelled: number;
  unlabelled: number;
  /** Logged predictions only: those whose request's read was not logged (counted in `all` and in `<slice>=(null)`). */
  withoutRead?: number;
  metrics: Record<string, number | null>;
}

/** The query parameters of a label plan's SQL besides the time range: the model of logged predictions. */
export function labelSqlParams(labels: LabelPlan): Record<string, unknown> {
  return labels.fromLog?.model != null ? { model: labels.fromLog.model } : {};
}

/**
 * The predictions relation: id, ts, s, read and the slice fields. From a predictions source, or
 * from the feature log (tm_prediction_log joined to the logged read of the same request id).
 */
function predictionsSql(plan: MonitorPlan, labels: LabelPlan, fromSql: string, toSql: string, tables: FeatureLogTables): string {
  const sliceCols = [...new Set(plan.slices.map((s) => s.field))];
  if (labels.fromLog) {
    const fromLog = labels.fromLog;
    return loggedPredictionsSql(fromSql, toSql, { model: fromLog.model !== null, slices: sliceCols.map((c) => ({ column: c, candidates: fromLog.sliceKeys[c] ?? [] })), tables });
  }
  return `SELECT toString(${ident(labels.predictionIdField)}) AS id, __ts AS ts, toFloat64(${ident(labels.scoreField)}) AS s, toUInt8(1) AS read${sliceCols.map((c) => `, ${ident(c)}`).join('')} FROM ${predictionRowsSql(labels, fromSql, toSql)} ORDER BY __ts LIMIT 1 BY id`;
}

/** The predictions source's rows with a score in [from, to) (FROM and WHERE), duplicates of an id included. */
function predictionRowsSql(labels: LabelPlan, fromSql: string, toSql: string): string {
  return `${ident(eventTable(labels.predictions))} WHERE ${COMPLETED_LOADS} AND __ts >= ${fromSql} AND __ts < ${toSql} AND ${ident(labels.scoreField)} IS NOT NULL`;
}

/**
 * The ids of the predictions relation, for filtering labels: from a predictions source its raw ids
 * (a superset, cheaper than deduplicating the relation a second time; the join keeps only p's).
 */
function predictionIdsSql(labels: LabelPlan, fromSql: string, toSql: string): string {
  return labels.fromLog ? `SELECT id FROM p` : `SELECT toString(${ident(labels.predictionIdField)}) FROM ${predictionRowsSql(labels, fromSql, toSql)}`;
}

/** Rows for evaluations at phase + k * interval, k in [{kFirst}, {kLast}], every window of the plan. */
export function labelWindowsSql(plan: MonitorPlan, labels: LabelPlan, tables: FeatureLogTables): string {
  const I = plan.intervalMs;
  const P = plan.phaseMs;
  const D = labels.labelDelayMs;
  const maxW = Math.max(...plan.windowsMs);
  const lab = ident(eventTable(labels.labels));
  const pFrom = `({kFirst:Int64} * ${I} + ${P} - ${D} - ${maxW})`;
  const pTo = `({kLast:Int64} * ${I} + ${P} - ${D})`;
  const windows = `[${plan.windowsMs.join(', ')}]`;
  const isBinary = labels.kind === 'binary';
  // Float sums over a window's scores in score order: the same bits every run (a GROUP BY's own order varies).
  const byScore = 'arraySort(groupArray((s, pos, neg)))';
  const thr = labels.threshold;
  // Regression's error sums, each added in an order of its own (ascending values within a score's
  // group, then by score), not in the order the GROUP BY meets the rows: the same bits whatever
  // the span of the query. Binary metrics do not read them.
  const ascendingSum = (values: string): string => `arrayReduce('sumKahan', arraySort(${values}))`;
  const byScoreSum = (column: string): string => `arrayReduce('sumKahan', arrayMap(t -> t.2, arraySort(groupArray((s, ${column})))))`;
  const errorSums = isBinary
    ? { bucket: '0 AS ae, 0 AS se', window: '0 AS ae, 0 AS se', total: '0 AS abs_error_sum, 0 AS sq_error_sum' }
    : {
        bucket: `${ascendingSum('groupArrayIf(abs(s - y), has)')} AS ae, ${ascendingSum('groupArrayIf((s - y) * (s - y), has)')} AS se`,
        window: `${ascendingSum('groupArray(ae)')} AS ae, ${ascendingSum('groupArray(se)')} AS se`,
        total: `${byScoreSum('ae')} AS abs_error_sum, ${byScoreSum('se')} AS sq_error_sum`,
      };
  return `WITH
p AS (${predictionsSql(plan, labels, pFrom, pTo, tables)}),
l AS (SELECT toString(${ident(labels.labelIdField)}) AS id, __ts AS lts, toFloat64(${ident(labels.labelField)}) AS y FROM ${lab} WHERE ${COMPLETED_LOADS} AND __ts < ${pTo} + ${D} AND ${ident(labels.labelField)} IS NOT NULL AND id IN (${predictionIdsSql(labels, pFrom, pTo)}) ORDER BY __ts LIMIT 1 BY id),
j AS (SELECT p.*, ifNull(l.id = p.id AND l.lts < p.ts + ${D}, false) AS has, l.y AS y FROM p LEFT JOIN l ON p.id = l.id),
b AS (SELECT intDiv(ts + ${D} - ${P}, ${I}) AS b, arrayJoin(${slicesArray(plan)}) AS slice, s, countIf(has AND y = 1) AS pos, countIf(has AND y = 0) AS neg, countIf(has) AS lab, countIf(NOT has) AS unl,
      countIf(read = 0) AS unread, ${errorSums.bucket} FROM j GROUP BY b, slice, s),
g AS (SELECT k, w, slice, s, sum(pos) AS pos, sum(neg) AS neg, sum(lab) AS lab, sum(unl) AS unl, sum(unread) AS unread, ${errorSums.window}
      FROM (SELECT *, arrayJoin(${windows}) AS w, arrayJoin(range(b + 1, b + intDiv(w, ${I}) + 1)) AS k FROM b) WHERE k >= {kFirst:Int64} AND k <= {kLast:Int64} GROUP BY k, w, slice, s)
SELECT k, w, slice, sum(pos) AS positives, sum(neg) AS negatives, sum(lab) AS labelled, sum(unl) AS unlabelled, sum(unread) AS without_read,
  sum(pos * (neg_below + neg / 2)) AS auc_pairs,
  ${isBinary ? `arrayReduce('sumKahan', arrayMap(t -> t.2 * -log(least(greatest(t.1, ${LOG_LOSS_EPS}), 1 - ${LOG_LOSS_EPS})) + t.3 * -log(1 - least(greatest(t.1, ${LOG_LOSS_EPS}), 1 - ${LOG_LOSS_EPS})), ${byScore}))` : '0'} AS log_loss_sum,
  arrayReduce('sumKahan', arrayMap(t -> t.2 * (1 - t.1) * (1 - t.1) + t.3 * t.1 * t.1, ${byScore})) AS brier_sum,
  sumIf(pos, s >= ${thr}) AS tp, sumIf(neg, s >= ${thr}) AS fp, sumIf(pos, s < ${thr}) AS fn, sumIf(neg, s < ${thr}) AS tn,
  ${errorSums.total}
FROM (SELECT *, sum(neg) OVER (PARTITION BY k, w, slice ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS neg_below FROM g)
GROUP BY k, w, slice ORDER BY k, w, slice SETTINGS join_use_nulls = 0`;
}

/** Labels per interval bucket over [{from}, {to}) whose id no prediction in the store carries. */
export function orphanLabelsSql(plan: MonitorPlan, labels: LabelPlan): string {
  const ids = labels.fromLog ? loggedPredictionIdsSql({ model: labels.fromLog.model !== null }) : `SELECT toString(${ident(labels.predictionIdField)}) FROM ${ident(eventTable(labels.predictions))} WHERE ${COMPLETED_LOADS}`;
  return `SELECT intDiv(__ts - ${plan.phaseMs}, ${plan.intervalMs}) AS b, count() AS n FROM ${ident(eventTable(labels.labels))} WHERE ${COMPLETED_LOADS} AND __ts >= {from:Int64} AND __ts < {to:Int64} AND toString(${ident(labels.labelIdField)}) NOT IN (${ids}) GROUP BY b`;
}

/** Final metrics from one aggregated row (scikit-learn's definitions, via label-metrics.ts; zero_division 0 as sklearn's default). */
export function labelMetricsOf(row: LabelWindowRow, kind: LabelPlan['kind']): Record<string, number | null> {
  if (kind === 'regression') {
    if (row.labelled === 0) return {};
    const { mae, rmse } = regressionMetrics({ n: row.labelled, sumAbsError: row.abs_error_sum, sumSquaredError: row.sq_error_sum });
    return { mae, rmse };
  }
  const n = row.positives + row.negatives;
  if (n === 0) return {};
  const { precision, recall, f1, accuracy } = confusionMetrics({ truePositives: row.tp, falsePositives: row.fp, trueNegatives: row.tn, falseNegatives: row.fn });
  return {
    // One class only: AUC is undefined (scikit-learn raises).
    auc: row.positives === 0 || row.negatives === 0 ? null : row.auc_pairs / (row.positives * row.negatives),
    log_loss: row.log_loss_sum / n,
    brier: row.brier_sum / n,
    precision,
    recall,
    f1,
    accuracy,
  };
}

/**
 * Evaluations per label-metrics query (about six weeks): a query holds its span's predictions
 * (and the longest window before it) once each while it joins them to their labels, so the span
 * bounds its memory; the expansion to (window, evaluation, slice) is of per-(bucket, slice, score)
 * counts, not of predictions.
 */
function evaluationsPerQuery(plan: MonitorPlan): number {
  // Measured on the flights replay (peak RSS of the queries alone): 4 weeks 1.6 GB, 6 weeks 1.7 GB,
  // 8 weeks 1.9 GB, 13 weeks 2.6 GB, for about the same CPU from 6 weeks on.
  return Math.max(1, Math.floor((42 * 86_400_000) / plan.intervalMs));
}

/** Label metrics of evaluations k in [kFirst, kLast] (one query), by evaluation time. */
async function labelMetricsOfSpan(executor: OfflineExecutor, plan: MonitorPlan, kFirst: number, kLast: number): Promise<Map<number, LabelMetricsResult[]>> {
  const labels = plan.labels!;
  const out = new Map<number, LabelMetricsResult[]>();
  const rows = await executor.rows<LabelWindowRow>(labelWindowsSql(plan, labels, featureLogTablesOf(executor)), { kFirst, kLast, ...labelSqlParams(labels) });
  for (const row of rows) {
    const windowEndMs = plan.phaseMs + row.k * plan.intervalMs;
    const list = out.get(windowEndMs) ?? [];
    list.push({ windowEndMs, windowMs: row.w, slice: row.slice, labelled: row.labelled, unlabelled: row.unlabelled, ...(labels.fromLog ? { withoutRead: Number(row.without_read) } : {}), metrics: labelMetricsOf(row, labels.kind) });
    out.set(windowEndMs, list);
  }
  return out;
}

/** Label metrics of every (evaluation, window, slice) for evaluation times in (fromMs, toMs]. */
export async function evaluateLabels(executor: OfflineExecutor, plan: MonitorPlan, fromMs: number, toMs: number): Promise<Map<number, LabelMetricsResult[]>> {
  const out = new Map<number, LabelMetricsResult[]>();
  const kFirst = Math.floor((fromMs - plan.phaseMs) / plan.intervalMs) + 1;
  const kLast = Math.floor((toMs - plan.phaseMs) / plan.intervalMs);
  const perQuery = evaluationsPerQuery(plan);
  for (let k0 = kFirst; k0 <= kLast; k0 += perQuery) {
    for (const [T, list] of await labelMetricsOfSpan(executor, plan, k0, Math.min(kLast, k0 + perQuery - 1))) out.set(T, list);
  }
  return out;
}

/**
 * The label metrics of evaluation times in (fromMs, toMs], oldest first, one query per span of
 * evaluations: the first span's query is queued by `start()` (or the first `at`), the next one's
 * when a span is first used, so the next span is counted while this one's evaluations are
 * written. Holds two spans' results at most.
 */
export class LabelMetricsAhead {
  private readonly kFirst: number;
  private readonly kLast: number;
  private readonly perQuery: number;
  private readonly spans = new Map<number, Promise<Map<number, LabelMetricsResult[]>>>();

  constructor(
    private readonly executor: OfflineExecutor,
    private readonly plan: MonitorPlan,
    fromMs: number,
    toMs: number,
    /** Evaluations per query; default about four weeks of them. */
    perQuery = evaluationsPerQuery(plan),
  ) {
    this.kFirst = Math.floor((fromMs - plan.phaseMs) / plan.intervalMs) + 1;
    this.kLast = Math.floor((toMs - plan.phaseMs) / plan.intervalMs);
    this.perQuery = Math.max(1, perQuery);
  }

  /** Queue the first span's query. */
  start(): void {
    if (this.kFirst <= this.kLast) this.span(0);
  }

  /** The results of evaluation time T (every window and slice). */
  async at(T: number): Promise<LabelMetricsResult[]> {
    const k = Math.round((T - this.plan.phaseMs) / this.plan.intervalMs);
    const index = Math.floor((k - this.kFirst) / this.perQuery);
    const results = this.span(index);
    for (const old of this.spans.keys()) if (old < index) this.spans.delete(old);
    if (this.kFirst + (index + 1) * this.perQuery <= this.kLast) this.span(index + 1);
    return (await results).get(T) ?? [];
  }

  private span(index: number): Promise<Map<number, LabelMetricsResult[]>> {
    let results = this.spans.get(index);
    if (!results) {
      const k0 = this.kFirst + index * this.perQuery;
      // Marked handled: a stopped run may never await it.
      results = handled(labelMetricsOfSpan(this.executor, this.plan, k0, Math.min(this.kLast, k0 + this.perQuery - 1)));
      this.spans.set(index, results);
    }
    return results;
  }
}
