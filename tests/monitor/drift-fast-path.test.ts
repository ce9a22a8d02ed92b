// The drift evaluation's fast path gives the numbers of the plain one. Statistics computed by the
// worker pool equal, bit for bit, those computed on the main thread and those of an independent
// computation from the PSI, KS and calibration primitives (the code drift.ts ran before the pool);
// an evaluation over many spans with the pool and the next span's counting pipelined equals the
// same evaluation with every statistic on the main thread, result by result.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, type CompiledDefinitions } from '../../definitions/index.js';
import { categoricalPsiTestCounts, psiPValue, SeededRandom } from '../../monitor/calibration.js';
import { decileCounts, driftTestStatistics, type DriftTestInput } from '../../monitor/drift-statistics.js';
import { evaluateDrift, loadOrBuildProfile, type DriftEvaluation, type DriftResult } from '../../monitor/index.js';
import { binnedKs, ksPValue } from '../../monitor/ks.js';
import { psi } from '../../monitor/psi.js';
import { StatisticsPool } from '../../monitor/statistics-pool.js';
import { OfflineStore } from '../../offline/index.js';
import * as sensorDefinitions from '../fixtures/sensor-monitor.js';
import { END_HOUR, HOUR, REFERENCE_HOURS, T0, sensorData } from '../fixtures/sensor-monitor.js';

/** Random tests: numeric (100 fine bins) and categorical (bin 0 unseen), sizes from a handful of rows (Monte Carlo) to many (chi2), some shifted. */
function randomTests(count: number, seed: number): DriftTestInput[] {
  const rng = new SeededRandom(seed);
  const counts = (bins: number, n: number, tilt: number): Float64Array => {
    const out = new Float64Array(bins);
    for (let i = 0; i < n; i++) out[Math.min(bins - 1, Math.floor(bins * rng.uniform() ** (1 + tilt)))]! += 1;
    return out;
  };
  const tests: DriftTestInput[] = [];
  for (let i = 0; i < count; i++) {
    const n = [3, 12, 40, 150, 900, 20_000][i % 6]!;
    const m = [20, 200, 5000][i % 3]!;
    const tilt = i % 4 === 0 ? 0.8 : 0;
    if (i % 5 === 4) {
      const categories = 1 + (i % 30);
      const refCounts = counts(categories + 1, m, 0);
      refCounts[0] = 0;
      const cur = counts(categories + 1, n, tilt);
      const unseenCounts = cur[0]! > 0 ? [Math.ceil(cur[0]! / 2), Math.floor(cur[0]! / 2)].filter((c) => c > 0) : [];
      tests.push({ kind: 'categorical', refCounts, refN: m, cur, nCur: n, unseenCounts });
    } else {
      tests.push({ kind: 'numeric', refCounts: counts(100, m, 0), refN: m, cur: counts(100, n, tilt), nCur: n, unseenCounts: [] });
    }
  }
  return tests;
}

/** The statistics as drift.ts computed them before the pool, straight from the primitives. */
function independent(t: DriftTestInput): Record<string, unknown> {
  const options = { maxReplicates: 1000 };
  if (t.kind === 'categorical') {
    const p = categoricalPsiTestCounts([...t.refCounts.subarray(1), ...t.unseenCounts.map(() => 0)], [...t.cur.subarray(1), ...t.unseenCounts], options).pValue;
    return { psi: psi(t.refCounts, t.cur), ks: null, ksErrorBound: null, psiPValue: p, ksPValue: null, currentBins: [...t.cur] };
  }
  const ref = decileCounts(t.refCounts);
  const cur = decileCounts(t.cur);
  const value = psi(ref, cur);
  const ks = binnedKs(t.refCounts, t.cur);
  const pKs = ksPValue(ks.statistic, t.refN, t.nCur, 'asymp');
  const pPsi = 2 * pKs < 1 / 1001 ? null : psiPValue(value, ref, t.nCur, { ...options, kind: 'numeric' });
  return { psi: value, ks: ks.statistic, ksErrorBound: ks.errorBound, psiPValue: pPsi, ksPValue: pKs, currentBins: [...cur] };
}

/** Equal bit for bit: every number compared with Object.is (NaN equals NaN, 0 differs from -0). */
function expectSameBits(actual: unknown, expected: unknown, where: string): void {
  if (typeof expected === 'number') {
    expect(Object.is(actual, expected), `${where}: ${String(actual)} vs ${String(expected)}`).toBe(true);
  } else if (Array.isArray(expected)) {
    expect(Array.isArray(actual), where).toBe(true);
    expect((actual as unknown[]).length, where).toBe(expected.length);
    expected.forEach((e, i) => expectSameBits((actual as unknown[])[i], e, `${where}[${i}]`));
  } else if (expected !== null && typeof expected === 'object') {
    expect(Object.keys(actual as object).sort(), where).toEqual(Object.keys(expected).sort());
    for (const [k, e] of Object.entries(expected)) expectSameBits((actual as Record<string, unknown>)[k], e, `${where}.${k}`);
  } else {
    expect(actual, where).toEqual(expected);
  }
}

describe('drift statistics on worker threads', () => {
  it('equal the main thread and an independent computation from the primitives, bit for bit', async () => {
    const tests = randomTests(300, 7);
    const pool = await StatisticsPool.open(2);
    try {
      const pooled = await pool.compute(tests);
      expect(pooled).toHaveLength(tests.length);
      tests.forEach((t, i) => {
        const inline = driftTestStatistics(t);
        expectSameBits(pooled[i], inline, `test ${i} (${t.kind}, n=${t.nCur}) pool vs main thread`);
        expectSameBits(inline, independent(t), `test ${i} (${t.kind}, n=${t.nCur}) vs independent`);
      });
      // Monte Carlo p-values were exercised, not only the chi2 path.
      expect(tests.filter((t, i) => t.kind === 'numeric' && pooled[i]!.psiPValue !== null && t.nCur <= 40).length).toBeGreaterThan(20);
    } finally {
      await pool.close();
    }
  }, 120_000);

  it('a bad input fails with its code from the worker, as on the main thread', async () => {
    const pool = await StatisticsPool.open(1);
    try {
      const bad: DriftTestInput = { kind: 'categorical', refCounts: Float64Array.from([0, 2.5]), refN: 2.5, cur: Float64Array.from([0, 3]), nCur: 3, unseenCounts: [] };
      let expected: unknown;
      try {
        driftTestStatistics(bad);
      } catch (e) {
        expected = e;
      }
      await expect(pool.compute([bad])).rejects.toMatchObject({ code: (expected as { code: string }).code });
    } finally {
      await pool.close();
    }
  }, 60_000);
});

describe('drift evaluation over many spans', () => {
  let dir: string;
  let compiled: CompiledDefinitions;
  let store: OfflineStore;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidemark-drift-fast-'));
    compiled = compileOrThrow(sensorDefinitions);
    const data = sensorData();
    const path = join(dir, 'readings.ndjson');
    writeFileSync(path, `${data.readings.map((r) => JSON.stringify(r)).join('\n')}\n`);
    store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
    await store.loadEvents('readings', path);
  }, 120_000);

  afterAll(async () => {
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('gives the same results with the worker pool and with every statistic on the main thread', async () => {
    const plan = compiled.monitors[0]!;
    const { profile } = await loadOrBuildProfile(store.executor, compiled, plan);
    const from = T0 + REFERENCE_HOURS * HOUR;
    const to = T0 + END_HOUR * HOUR;
    /** How many evaluations had been yielded each time onFirstCounts was called. */
    const firstCountsCalls: number[] = [];
    const collect = async (statistics: 'workers' | 'inline', querySpanMs?: number): Promise<DriftEvaluation[]> => {
      const out: DriftEvaluation[] = [];
      const onFirstCounts = (): void => void firstCountsCalls.push(out.length);
      // Results in a fixed order (within an evaluation they come in the order ClickHouse returned the counts).
      const order = (a: DriftResult, b: DriftResult): number => (a.feature < b.feature ? -1 : a.feature > b.feature ? 1 : 0) || (a.slice < b.slice ? -1 : a.slice > b.slice ? 1 : 0) || a.windowMs - b.windowMs;
      for await (const e of evaluateDrift(store.executor, compiled, plan, profile, from, to, { statistics, querySpanMs, onFirstCounts })) out.push({ ...e, results: [...e.results].sort(order) });
      return out;
    };
    const oneSpan = await collect('inline');
    // 3-hour counting spans: the next span is counted while this one's statistics are computed.
    const spansInline = await collect('inline', 3 * HOUR);
    const spansWorkers = await collect('workers', 3 * HOUR);
    expect(oneSpan.length).toBe((to - from) / HOUR);
    expect(oneSpan.every((e) => e.results.some((r) => r.drift !== null))).toBe(true);
    expect(oneSpan.some((e) => e.results.some((r) => r.drift === true))).toBe(true);
    expectSameBits(spansInline, oneSpan, 'inline, 3h spans vs one span');
    expectSameBits(spansWorkers, oneSpan, 'workers, 3h spans vs one span');
    // Called once per evaluation run, before its first evaluation is yielded.
    expect(firstCountsCalls).toEqual([0, 0, 0]);
  }, 120_000);
});
