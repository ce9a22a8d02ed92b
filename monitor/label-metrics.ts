// Label metrics with scikit-learn's definitions (docs/semantics.md, "Drift and quality metrics"),
// finished from aggregates: the monitor groups joined (prediction, label) rows by score in
// ClickHouse, so memory here is bounded by the number of distinct scores, never by rows.
// Sums are compensated (Neumaier) so that results match scikit-learn's within 1e-9 whatever
// the number of rows.
import { TidemarkError } from '../definitions/index.js';

function badInput(message: string, details: Record<string, unknown> = {}): TidemarkError {
  return new TidemarkError('TM_MONITOR_BAD_INPUT', message, details);
}

/** Neumaier's compensated sum: error independent of the number of terms. */
class CompensatedSum {
  private sum = 0;
  private compensation = 0;
  add(x: number): void {
    const t = this.sum + x;
    if (Math.abs(this.sum) >= Math.abs(x)) this.compensation += this.sum - t + x;
    else this.compensation += x - t + this.sum;
    this.sum = t;
  }
  get value(): number {
    return this.sum + this.compensation;
  }
}

/** The labelled predictions that share one score: how many were positive, how many negative. */
export interface ScoreGroup {
  score: number;
  positives: number;
  negatives: number;
}

// A type alias (not an interface) so that it reads as a plain record of numbers too.
export type BinaryMetrics = {
  /** Rows, positive rows, negative rows. */
  n: number;
  positives: number;
  negatives: number;
  /** sklearn roc_auc_score: tied scores count half. NaN when either class is absent (sklearn raises). */
  rocAuc: number;
  /**
   * sklearn log_loss(eps=1e-15) in nats per row: probabilities clipped to [1e-15, 1 - 1e-15].
   * Defined with one class present too (sklearn then wants `labels=[0, 1]`). NaN when a score is
   * outside [0, 1] (not a probability).
   */
  logLoss: number;
  /** sklearn brier_score_loss: mean squared difference of score and label. NaN outside [0, 1]. */
  brier: number;
  /** Predicted positive: score >= threshold. */
  threshold: number;
  truePositives: number;
  falsePositives: number;
  trueNegatives: number;
  falseNegatives: number;
  /**
   * sklearn precision_recall_fscore_support(average='binary'): precision TP/(TP+FP), recall
   * TP/(TP+FN), F1 their harmonic mean. A 0/0 ratio takes `zeroDivision` (sklearn's
   * zero_division: 0, its default "warn" value, or 1); F1 is 0 when precision + recall is 0.
   */
  precision: number;
  recall: number;
  f1: number;
  /** (TP + TN) / n. */
  accuracy: number;
};

/**
 * Binary classification metrics from per-score groups (a score may appear in several groups;
 * they are merged). Every metric is NaN when there are no rows. Counts may be fractional
 * (weights) but not negative.
 */
export function binaryMetrics(groups: readonly ScoreGroup[], threshold: number, options: { zeroDivision?: 0 | 1 } = {}): BinaryMetrics {
  const zeroDivision = options.zeroDivision ?? 0;
  if (Number.isNaN(threshold)) throw badInput('threshold is NaN');
  for (const [i, g] of groups.entries()) {
    if (!Number.isFinite(g.score)) throw badInput('score must be a finite number', { index: i, score: g.score });
    if (!(g.positives >= 0 && g.negatives >= 0 && g.positives < Infinity && g.negatives < Infinity)) {
      throw badInput('positives and negatives must be finite and >= 0', { index: i, positives: g.positives, negatives: g.negatives });
    }
  }
  const sorted = [...groups].sort((a, b) => a.score - b.score);
  const positives = new CompensatedSum();
  const negatives = new CompensatedSum();
  const truePositives = new CompensatedSum();
  const falsePositives = new CompensatedSum();
  const logLoss = new CompensatedSum();
  const brier = new CompensatedSum();
  // Mann-Whitney form of the ROC area: each positive scores 1 per negative below it, 1/2 per tie.
  const aucPairs = new CompensatedSum();
  const negativesBelow = new CompensatedSum();
  let probabilities = true;
  for (let i = 0; i < sorted.length; ) {
    const score = sorted[i]!.score;
    let pos = 0;
    let neg = 0;
    for (; i < sorted.length && sorted[i]!.score === score; i++) {
      pos += sorted[i]!.positives;
      neg += sorted[i]!.negatives;
    }
    aucPairs.add(pos * negativesBelow.value + (pos * neg) / 2);
    negativesBelow.add(neg);
    positives.add(pos);
    negatives.add(neg);
    if (score >= threshold) {
      truePositives.add(pos);
      falsePositives.add(neg);
    }
    if (score < 0 || score > 1) probabilities = false;
    const p = Math.min(Math.max(score, 1e-15), 1 - 1e-15);
    if (pos > 0) logLoss.add(-pos * Math.log(p));
    if (neg > 0) logLoss.add(-neg * Math.log(1 - p));
    if (pos > 0) brier.add(pos * (1 - score) * (1 - score));
    if (neg > 0) brier.add(neg * score * score);
  }
  const P = positives.value;
  const N = negatives.value;
  const n = P + N;
  const TP = truePositives.value;
  const FP = falsePositives.value;
  return {
    n,
    positives: P,
    negatives: N,
    rocAuc: P > 0 && N > 0 ? aucPairs.value / P / N : NaN,
    logLoss: n > 0 && probabilities ? logLoss.value / n : NaN,
    brier: n > 0 && probabilities ? brier.value / n : NaN,
    threshold,
    ...confusionMetrics({ truePositives: TP, falsePositives: FP, trueNegatives: N - FP, falseNegatives: P - TP }, zeroDivision),
  };
}

export interface ConfusionCounts {
  truePositives: number;
  falsePositives: number;
  trueNegatives: number;
  falseNegatives: number;
}

/**
 * Precision, recall, F1 and accuracy from confusion counts (sklearn's definitions; a 0/0 ratio
 * takes `zeroDivision`, F1 is 0 when precision + recall is 0; all NaN for no rows).
 */
export function confusionMetrics(c: ConfusionCounts, zeroDivision: 0 | 1 = 0): ConfusionCounts & { precision: number; recall: number; f1: number; accuracy: number } {
  const { truePositives: TP, falsePositives: FP, trueNegatives: TN, falseNegatives: FN } = c;
  const n = TP + FP + TN + FN;
  const ratio = (num: number, den: number): number => (den === 0 ? zeroDivision : num / den);
  const precision = n === 0 ? NaN : ratio(TP, TP + FP);
  const recall = n === 0 ? NaN : ratio(TP, TP + FN);
  const f1 = n === 0 ? NaN : precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { ...c, precision, recall, f1, accuracy: n === 0 ? NaN : (TP + TN) / n };
}

/** Group (score, label) rows by score: what ClickHouse does before `binaryMetrics`. */
export function scoreGroups(rows: Iterable<{ score: number; label: boolean | 0 | 1 }>): ScoreGroup[] {
  const byScore = new Map<number, ScoreGroup>();
  for (const { score, label } of rows) {
    const key = score === 0 ? 0 : score; // -0 and 0 are one score
    let g = byScore.get(key);
    if (!g) byScore.set(key, (g = { score: key, positives: 0, negatives: 0 }));
    if (label === true || label === 1) g.positives++;
    else g.negatives++;
  }
  return [...byScore.values()];
}

/** What the regression metrics need: row count, sum of |error| and sum of error^2. */
export interface RegressionSums {
  n: number;
  sumAbsError: number;
  sumSquaredError: number;
}

export interface RegressionMetrics {
  n: number;
  /** sklearn mean_absolute_error, in the label's unit. NaN for no rows. */
  mae: number;
  /** sklearn mean_squared_error, in the label's unit squared. */
  mse: number;
  /** sklearn mean_squared_error(squared=False): sqrt(MSE), in the label's unit. */
  rmse: number;
}

/** Compensated sums of |y - yhat| and (y - yhat)^2 over (label, prediction) pairs. */
export function regressionSums(pairs: Iterable<readonly [yTrue: number, yPred: number]>): RegressionSums {
  const abs = new CompensatedSum();
  const sq = new CompensatedSum();
  let n = 0;
  for (const [yTrue, yPred] of pairs) {
    if (!Number.isFinite(yTrue) || !Number.isFinite(yPred)) throw badInput('label and prediction must be finite numbers', { index: n, yTrue, yPred });
    const e = yTrue - yPred;
    abs.add(Math.abs(e));
    sq.add(e * e);
    n++;
  }
  return { n, sumAbsError: abs.value, sumSquaredError: sq.value };
}

/** Sums of two disjoint sets of rows (e.g. two time buckets). */
export function mergeRegressionSums(a: RegressionSums, b: RegressionSums): RegressionSums {
  return { n: a.n + b.n, sumAbsError: a.sumAbsError + b.sumAbsError, sumSquaredError: a.sumSquaredError + b.sumSquaredError };
}

export function regressionMetrics(sums: RegressionSums): RegressionMetrics {
  const { n, sumAbsError, sumSquaredError } = sums;
  if (!(n >= 0 && sumAbsError >= 0 && sumSquaredError >= 0)) throw badInput('regression sums must be >= 0', { ...sums });
  if (n === 0) return { n, mae: NaN, mse: NaN, rmse: NaN };
  const mse = sumSquaredError / n;
  return { n, mae: sumAbsError / n, mse, rmse: Math.sqrt(mse) };
}
