// Label metrics against scikit-learn (fixtures from scripts/monitor-fixtures.py): ROC AUC with
// ties, log loss clipped at 1e-15, Brier, precision/recall/F1 (both zero_division values) and
// accuracy at several thresholds, from per-score groups; MAE and RMSE from sums. Within 1e-9.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  binaryMetrics,
  mergeRegressionSums,
  regressionMetrics,
  regressionSums,
  scoreGroups,
  type ScoreGroup,
} from '../../monitor/label-metrics.js';

type Num = number | 'NaN' | 'Infinity' | '-Infinity';
const num = (v: Num): number => (typeof v === 'number' ? v : Number(v));

interface LabelFixtures {
  versions: Record<string, string>;
  binary: {
    name: string;
    groups: { score: Num; positives: number; negatives: number }[];
    rocAuc: Num;
    logLoss: Num;
    brier: Num;
    atThreshold: {
      threshold: number;
      precision: Num;
      recall: Num;
      f1: Num;
      precisionZeroDivisionOne: Num;
      recallZeroDivisionOne: Num;
      f1ZeroDivisionOne: Num;
      accuracy: Num;
    }[];
  }[];
  regression: { yTrue: Num[]; yPred: Num[]; mae: Num; rmse: Num; mse: Num };
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/monitor/label_metrics.json', import.meta.url), 'utf8')) as LabelFixtures;

function close(actual: number, expected: Num, what: string): void {
  const e = num(expected);
  if (Number.isNaN(e)) expect(actual, what).toBeNaN();
  else expect(Math.abs(actual - e), `${what}: ${actual} vs ${e}`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(e)));
}

describe(`binaryMetrics matches scikit-learn ${fixtures.versions.sklearn}`, () => {
  for (const c of fixtures.binary) {
    it(c.name, () => {
      const groups: ScoreGroup[] = c.groups.map((g) => ({ score: num(g.score), positives: g.positives, negatives: g.negatives }));
      for (const t of c.atThreshold) {
        const m = binaryMetrics(groups, t.threshold);
        close(m.rocAuc, c.rocAuc, 'roc_auc');
        close(m.logLoss, c.logLoss, 'log_loss');
        close(m.brier, c.brier, 'brier');
        close(m.precision, t.precision, `precision @${t.threshold}`);
        close(m.recall, t.recall, `recall @${t.threshold}`);
        close(m.f1, t.f1, `f1 @${t.threshold}`);
        close(m.accuracy, t.accuracy, `accuracy @${t.threshold}`);
        const one = binaryMetrics(groups, t.threshold, { zeroDivision: 1 });
        close(one.precision, t.precisionZeroDivisionOne, `precision zd=1 @${t.threshold}`);
        close(one.recall, t.recallZeroDivisionOne, `recall zd=1 @${t.threshold}`);
        close(one.f1, t.f1ZeroDivisionOne, `f1 zd=1 @${t.threshold}`);
        expect(m.truePositives + m.falsePositives + m.trueNegatives + m.falseNegatives).toBe(m.n);
      }
    });
  }

  it('the same from rows grouped by score, in any order, with a score split over groups', () => {
    const rows = [
      { score: 0.9, label: 1 as const },
      { score: 0.1, label: 0 as const },
      { score: 0.5, label: 1 as const },
      { score: 0.5, label: 0 as const },
      { score: 0.1, label: 1 as const },
    ];
    const grouped = scoreGroups(rows);
    expect(grouped).toHaveLength(3);
    const split: ScoreGroup[] = [...grouped.reverse(), { score: 0.5, positives: 0, negatives: 0 }];
    const m = binaryMetrics(split, 0.5);
    // positives 0.9, 0.5, 0.1 vs negatives 0.5, 0.1: pairs won 2 + 1.5 + 0.5 of 6
    expect(m.rocAuc).toBeCloseTo(4 / 6, 15);
    expect([m.truePositives, m.falsePositives, m.trueNegatives, m.falseNegatives]).toEqual([2, 1, 1, 1]);
  });

  it('no rows: every metric NaN; scores outside [0, 1]: AUC only', () => {
    const empty = binaryMetrics([], 0.5);
    for (const k of ['rocAuc', 'logLoss', 'brier', 'precision', 'recall', 'f1', 'accuracy'] as const) expect(empty[k]).toBeNaN();
    const margins = binaryMetrics(
      [
        { score: -2, positives: 0, negatives: 3 },
        { score: 3, positives: 2, negatives: 1 },
      ],
      0,
    );
    expect(margins.rocAuc).toBeCloseTo(7 / 8, 15); // 2 positives x (3 negatives below + 1 tie / 2)
    expect(margins.logLoss).toBeNaN();
    expect(margins.brier).toBeNaN();
  });

  it('refuses non-finite scores and negative counts', () => {
    const badInput = expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' });
    expect(() => binaryMetrics([{ score: NaN, positives: 1, negatives: 0 }], 0.5)).toThrow(badInput);
    expect(() => binaryMetrics([{ score: 0.5, positives: -1, negatives: 0 }], 0.5)).toThrow(badInput);
  });
});

describe('regression metrics', () => {
  const { yTrue, yPred } = fixtures.regression;
  const pairs = yTrue.map((y, i) => [num(y), num(yPred[i]!)] as const);

  it('MAE, MSE and RMSE match scikit-learn', () => {
    const m = regressionMetrics(regressionSums(pairs));
    expect(m.n).toBe(1000);
    close(m.mae, fixtures.regression.mae, 'mae');
    close(m.mse, fixtures.regression.mse, 'mse');
    close(m.rmse, fixtures.regression.rmse, 'rmse');
  });

  it('sums of buckets merge to the sums of all rows', () => {
    const merged = mergeRegressionSums(regressionSums(pairs.slice(0, 333)), regressionSums(pairs.slice(333)));
    const m = regressionMetrics(merged);
    close(m.mae, fixtures.regression.mae, 'mae');
    close(m.rmse, fixtures.regression.rmse, 'rmse');
    expect(regressionMetrics({ n: 0, sumAbsError: 0, sumSquaredError: 0 }).mae).toBeNaN();
    expect(() => regressionMetrics({ n: 1, sumAbsError: -1, sumSquaredError: 0 })).toThrow(expect.objectContaining({ code: 'TM_MONITOR_BAD_INPUT' }));
  });
});
