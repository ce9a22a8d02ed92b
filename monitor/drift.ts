// Drift evaluation: bucket counts streamed out of ClickHouse in time order, summed into rolling
// windows in Node (exactly: integer counts), and at each evaluation time the PSI, binned KS and
// drift decision of every (feature, slice, window). Memory: windows x features x slices x bins,
// plus the buckets of the longest window; never rows.
import { compareCodePoints, type CompiledDefinitions, type MonitorPlan } from '../definitions/index.js';
import type { OfflineExecutor, ShardSet } from '../offline/index.js';
import { decideDrift } from './calibration.js';
import { categoricalSamplesSql, exactSampleFields, hasFeatures, numericSampling, sampleSlices, type CategoricalSampleRow } from './drift-sql.js';
import { countGroupSamples, NumericBinCounter, readBatches } from './numeric-bins.js';
import { handled } from './promises.js';
import type { DriftTestInput } from './drift-statistics.js';
import { FINE_BINS, profileKey, type MonitorProfile } from './profile.js';
import { totalCount } from './psi.js';
import { inlineStatistics, StatisticsPool, type StatisticsComputer } from './statistics-pool.js';

/** One (feature, slice, window) at one evaluation time. */
export interface DriftResult {
  feature: string;
  slice: string;
  kind: 'numeric' | 'categorical';
  windowMs: number;
  windowEndMs: number;
  nRef: number;
  nCur: number;
  /** null when there is no reference for this slice or no current rows. */
  psi: number | null;
  /** Binned KS statistic and its error bound (numeric only). */
  ks: number | null;
  ksErrorBound: number | null;
  /** p-value of the PSI under no drift at these sample sizes (null when the KS p-value alone decides), and of the binned KS (asymptotic). */
  psiPValue: number | null;
  ksPValue: number | null;
  /** The test's p-value (numeric: Bonferroni of PSI and KS) and its Benjamini-Hochberg adjusted value. */
  pValue: number | null;
  qValue: number | null;
  /** null: no decision (no reference, or fewer rows than minSamples on either side). */
  drift: boolean | null;
  /** Why there is no decision. */
  note: 'no_reference' | 'too_few_rows' | null;
  /**
   * The current window's counts in the bins the PSI was computed from: numeric, the 10 decile bins;
   * categorical, bin 0 = unseen in the reference, bin i + 1 = the profile's category i. null without a reference.
   */
  currentBins: number[] | null;
  /** Categorical: the most frequent categories unseen in the reference (at most UNSEEN_TOP, count descending). */
  unseenTop: { category: string; count: number }[] | null;
}

/** How many unseen categories a drift result keeps (the dashboard shows them; the rest is in bin 0). */
export const UNSEEN_TOP = 10;

export interface DriftEvaluation {
  windowEndMs: number;
  results: DriftResult[];
}

/** Each bin-count query covers about this much time (at least one bucket): bounded intermediate memory. */
const QUERY_SPAN_MS = 16 * 86_400_000;

export { decileCounts } from './drift-statistics.js';

/** Above this many (evaluation, window, feature, slice) tests, statistics go to worker threads. */
const POOL_MIN_TESTS = 1000;

/** One bucket's counts per (feature, slice) key: per bin (numeric: dense, one per fine bin), and per category the reference never saw. */
interface KeyCounts {
  bins: Map<number, number> | Float64Array;
  unseen: Map<string, number>;
}
type BucketCounts = Map<string, KeyCounts>;

/** Rolling window sums over buckets; each window keeps its own running totals. */
class RollingCounts {
  private readonly buckets = new Map<number, BucketCounts>();
  readonly sums: Map<string, Float64Array>[];
  /** Per window and key, counts of categories unseen in the reference (they share bin 0 in `sums`). */
  readonly unseen: Map<string, Map<string, number>>[];
  constructor(
    private readonly windowsBuckets: readonly number[],
    private readonly sizeOf: (key: string) => number,
  ) {
    this.sums = windowsBuckets.map(() => new Map());
    this.unseen = windowsBuckets.map(() => new Map());
  }

  push(bucket: number, counts: BucketCounts): void {
    this.buckets.set(bucket, counts);
    this.windowsBuckets.forEach((nb, w) => {
      this.apply(w, counts, 1);
      const leaving = this.buckets.get(bucket - nb);
      if (leaving) this.apply(w, leaving, -1);
    });
    this.buckets.delete(bucket - Math.max(...this.windowsBuckets));
  }

  private apply(w: number, counts: BucketCounts, sign: number): void {
    const sums = this.sums[w]!;
    for (const [key, { bins, unseen }] of counts) {
      let arr = sums.get(key);
      if (!arr) {
        arr = new Float64Array(this.sizeOf(key));
        sums.set(key, arr);
      }
      if (bins instanceof Float64Array) {
        for (let bin = 0; bin < bins.length; bin++) if (bins[bin] !== 0) arr[Math.min(bin, arr.length - 1)]! += sign * bins[bin]!;
      } else for (const [bin, c] of bins) arr[Math.min(bin, arr.length - 1)]! += sign * c;
      if (unseen.size === 0) continue;
      let categories = this.unseen[w]!.get(key);
      if (!categories) this.unseen[w]!.set(key, (categories = new Map()));
      for (const [category, c] of unseen) {
        const next = (categories.get(category) ?? 0) + sign * c;
        if (next === 0) categories.delete(category);
        else categories.set(category, next);
      }
    }
  }
}

/** The time range of one span of counting, with the monitor's query parameters. */
type SpanParams = { monitor: string; version: string; origin: number; interval: number; from: number; to: number };

/**
 * One query's share of a span's counting: `read` runs the query (on every shard of a sharded
 * store) and resolves with a function that counts its rows on this thread into bucket counts of
 * the query's own (feature, slice) keys. Reading and counting are apart so that the next query runs
 * in ClickHouse while this thread counts. `rank` is its tests' place in an evaluation's results.
 */
interface Counting {
  read: (span: SpanParams) => Promise<() => Map<number, BucketCounts>>;
  rank: number;
}

/** Evaluate drift at every evaluation time T (phase + k * interval) in (fromMs, toMs], from bucket counts. */
export async function* evaluateDrift(
  executor: OfflineExecutor,
  compiled: CompiledDefinitions,
  plan: MonitorPlan,
  profile: MonitorProfile,
  fromMs: number,
  toMs: number,
  /**
   * statistics: where test statistics are computed (auto: worker threads for many tests); querySpanMs: time one counting query covers;
   * onFirstCounts: called once, when the counts of the first evaluation are in and before the statistics of its last query's features are computed. ClickHouse
   * runs one query at a time, so a caller queues its own queries there: they run while Node computes statistics, not ahead of the counts.
   * shards: a sharded offline store (then `executor` is its home shard, unused here): each shard counts
   * the samples it owns (each event once, each view key on its shard) and the counts are added.
   */
  options: { statistics?: 'auto' | 'workers' | 'inline'; querySpanMs?: number; onFirstCounts?: () => void; shards?: ShardSet | null } = {},
): AsyncIterable<DriftEvaluation> {
  const interval = plan.intervalMs;
  const phase = plan.phaseMs;
  const windowsBuckets = plan.windowsMs.map((w) => w / interval);
  // Bucket b covers [phase + b * interval, phase + (b + 1) * interval) and is evaluated at its end.
  const firstEval = Math.floor((fromMs - phase) / interval) + 1;
  const lastEval = Math.floor((toMs - phase) / interval);
  const bucketsPerQuery = Math.max(1, Math.floor((options.querySpanMs ?? QUERY_SPAN_MS) / interval));
  if (lastEval < firstEval) return;
  const warmup = Math.max(...windowsBuckets);
  const params = { monitor: plan.name, version: plan.version, origin: phase, interval };
  const countings = await countingsOf(executor, compiled, plan, profile, options.shards ?? null);
  // Each query's features have rolling sums of their own: a query's tests are handed out as soon as
  // its counts are in, while ClickHouse runs the next query (the last query's are left for the end).
  const sizeOf = (key: string): number => {
    const p = profile.get(key);
    return p ? p.counts.length : FINE_BINS;
  };
  const rolling = countings.map(() => new RollingCounts(windowsBuckets, sizeOf));
  // Worker threads compute the statistics of a replay's many tests in parallel (the same bits as
  // on this thread: each test's Monte Carlo is seeded by its own counts).
  const tests = (lastEval - firstEval + 1) * plan.windowsMs.length * profile.size;
  const mode = options.statistics ?? 'auto';
  const useWorkers = mode === 'workers' || (mode === 'auto' && tests >= POOL_MIN_TESTS);
  // Workers that cannot start (no worker threads here): the same statistics on this thread. They
  // start while ClickHouse runs the first query.
  const starting = useWorkers ? StatisticsPool.open().catch(() => inlineStatistics) : Promise.resolve(inlineStatistics);
  const computer: StatisticsComputer = {
    compute: async (tests) => (await starting).compute(tests),
    close: async () => (await starting).close(),
  };
  // Pipelined, one query ahead: while ClickHouse runs the next query (of this span or the next),
  // Node counts this one's rows and hands out its tests (the Monte Carlo p-values cost more CPU
  // than the counting). A span's evaluations are yielded once the next span's are all handed out:
  // the worker threads then have work while a consumer writes them (its queries wait behind the
  // counting in ClickHouse's one-at-a-time queue). Memory: two queries' rows, two spans' results.
  const steps: { start: number; end: number; counting: number }[] = [];
  for (let start = firstEval - warmup; start < lastEval; start += bucketsPerQuery) {
    const end = Math.min(start + bucketsPerQuery, lastEval);
    countings.forEach((_, counting) => steps.push({ start, end, counting }));
  }
  const read = (i: number): Promise<() => Map<number, BucketCounts>> => {
    const { start, end, counting } = steps[i]!;
    return handled(countings[counting]!.read({ ...params, from: phase + start * interval, to: phase + end * interval }));
  };
  let firstCountsIn = false;
  type Pending = { windowEndMs: number; windows: Promise<DriftResult[]>[][] };
  /** The previous span's evaluations, handed out and not yet yielded. */
  let previous: Pending[] = [];
  /** This span's evaluations, by bucket: each window's tests, per query. */
  let current = new Map<number, Pending>();
  try {
    let next = steps.length > 0 ? read(0) : null;
    for (let i = 0; i < steps.length; i++) {
      const { start, end, counting } = steps[i]!;
      const count = await next!;
      next = i + 1 < steps.length ? read(i + 1) : null;
      const lastOfSpan = counting === countings.length - 1;
      if (lastOfSpan && end >= firstEval && !firstCountsIn) {
        firstCountsIn = true;
        options.onFirstCounts?.();
      }
      const byBucket = count();
      const sums = rolling[counting]!;
      for (let b = start; b < end; b++) {
        sums.push(b, byBucket.get(b) ?? new Map());
        if (b + 1 < firstEval) continue;
        let pending = current.get(b);
        if (!pending) current.set(b, (pending = { windowEndMs: phase + (b + 1) * interval, windows: plan.windowsMs.map(() => []) }));
        // In rank order, whatever the order the queries ran in: the results keep one order.
        plan.windowsMs.forEach((windowMs, w) => (pending.windows[w]![countings[counting]!.rank] = handled(windowTests(plan, profile, sums.sums[w]!, sums.unseen[w]!, windowMs, pending.windowEndMs, computer))));
      }
      if (!lastOfSpan) continue;
      for (const evaluation of previous) yield await decided(plan, evaluation);
      previous = [...current.values()];
      current = new Map();
    }
    for (const evaluation of previous) yield await decided(plan, evaluation);
  } finally {
    await computer.close();
  }
}

/** One evaluation's results, every window decided over all of its tests. */
async function decided(plan: MonitorPlan, { windowEndMs, windows }: { windowEndMs: number; windows: Promise<DriftResult[]>[][] }): Promise<DriftEvaluation> {
  const results: DriftResult[] = [];
  for (const tests of windows) results.push(...decideWindow(plan, (await Promise.all(tests)).flat()));
  return { windowEndMs, results };
}

/**
 * The monitor's counting queries, in the order they run: each group of Node-windowed view
 * features first (the most counting on this thread, which then overlaps the next queries in
 * ClickHouse), then the categorical counts (their permutation tests, the costliest per test, then
 * run while the rest is read and counted), then the numeric samples ClickHouse takes. Each counts
 * its own features. Their tests' place in the results (rank) is the order before: numeric, view
 * groups, categorical.
 */
async function countingsOf(executor: OfflineExecutor, compiled: CompiledDefinitions, plan: MonitorPlan, profile: MonitorProfile, shards: ShardSet | null): Promise<Counting[]> {
  const shardCount = shards?.count ?? 1;
  /** `query` on every shard (each counts what it owns; the counts add), or on the one node. */
  const everywhere = <T>(span: SpanParams, query: (executor: OfflineExecutor, params: Record<string, unknown>) => Promise<T>): Promise<T[]> =>
    shards ? shards.each((shardExecutor, shard) => query(shardExecutor, { ...span, shard })) : query(executor, span).then((rows) => [rows]);
  // `runs`: its place in the run order (see above); the array's order is the results' order.
  const countings: { read: Counting['read']; runs: number }[] = [];
  if (hasFeatures(plan, 'numeric')) {
    // The fields' exactness is checked once per evaluation (a scan of the source), not per span; it
    // decides which view features are windowed in Node and which are sampled in ClickHouse (numericSampling).
    const numeric = numericSampling(compiled, plan, await exactSampleFields(executor, compiled, plan, shards), shardCount);
    const counter = (): NumericBinCounter => new NumericBinCounter(plan, (feature, slice) => profile.get(profileKey(feature, slice))?.edges ?? null);
    if (numeric.sql !== null) {
      const sql = numeric.sql;
      countings.push({
        runs: 2,
        read: async (span) => {
          const perShard = await everywhere(span, (shardExecutor, p) => readBatches(shardExecutor, sql, p));
          return () => {
            const samples = counter();
            for (const batches of perShard) for (const batch of batches) samples.add(batch);
            return numericBuckets(samples);
          };
        },
      });
    }
    for (const group of numeric.groups) {
      countings.push({
        runs: 0,
        read: async (span) => {
          const perShard = await everywhere(span, (shardExecutor, p) => readBatches(shardExecutor, group.sql, p));
          return () => {
            const samples = counter();
            for (const batches of perShard) countGroupSamples(plan, group, batches, span, samples);
            return numericBuckets(samples);
          };
        },
      });
    }
  }
  if (hasFeatures(plan, 'categorical')) {
    // Categories are matched to the profile's bins here (on shards the profile is on the home shard only): per (feature, slice), category -> bin.
    const categoryBins = new Map<string, Map<string, number>>();
    const categoryBin = (key: string, category: string): number => {
      let bins = categoryBins.get(key);
      if (!bins) categoryBins.set(key, (bins = new Map((profile.get(key)?.categories ?? []).map((c, i) => [c, i + 1]))));
      return bins.get(category) ?? 0;
    };
    const sql = categoricalSamplesSql(compiled, plan, shardCount);
    countings.push({
      runs: 1,
      read: async (span) => {
        const perShard = await everywhere(span, (shardExecutor, p) => shardExecutor.rows<CategoricalSampleRow>(sql, p));
        return () => {
          const byBucket = new Map<number, BucketCounts>();
          const add = (b: number, key: string, category: string, c: number): void => {
            let bucket = byBucket.get(b);
            if (!bucket) byBucket.set(b, (bucket = new Map()));
            let counts = bucket.get(key);
            if (!counts) bucket.set(key, (counts = { bins: new Map(), unseen: new Map() }));
            const bin = categoryBin(key, category);
            const bins = counts.bins as Map<number, number>;
            bins.set(bin, (bins.get(bin) ?? 0) + c);
            if (bin === 0) counts.unseen.set(category, (counts.unseen.get(category) ?? 0) + c);
          };
          for (const rows of perShard) {
            for (const r of rows) {
              const feature = plan.features[r.fid]!.name;
              const b = Number(r.b);
              const c = Number(r.c);
              for (const slice of sampleSlices(plan, r)) add(b, profileKey(feature, slice), r.x, c);
            }
          }
          return byBucket;
        };
      },
    });
  }
  const ranked = countings.map(({ read, runs }, rank) => ({ read, rank, runs }));
  return ranked.sort((a, b) => a.runs - b.runs).map(({ read, rank }) => ({ read, rank }));
}

/** A numeric counter's bucket counts (dense fine bins, nothing unseen). */
function numericBuckets(counter: NumericBinCounter): Map<number, BucketCounts> {
  const byBucket = new Map<number, BucketCounts>();
  for (const [b, keys] of counter.buckets()) {
    const bucket: BucketCounts = new Map();
    for (const [key, bins] of keys) bucket.set(key, { bins, unseen: new Map() });
    byBucket.set(b, bucket);
  }
  return byBucket;
}

/**
 * The tests of one window at one time over some of its (feature, slice) keys, with their
 * statistics and no decision yet (decideWindow, over all of the window's tests). The counts are
 * copied before the first await: the rolling sums move on.
 */
async function windowTests(
  plan: MonitorPlan,
  profile: MonitorProfile,
  sums: ReadonlyMap<string, Float64Array>,
  unseen: ReadonlyMap<string, ReadonlyMap<string, number>>,
  windowMs: number,
  windowEndMs: number,
  computer: StatisticsComputer,
): Promise<DriftResult[]> {
  const results: DriftResult[] = [];
  const withStatistics: DriftResult[] = [];
  const inputs: DriftTestInput[] = [];
  for (const [key, cur] of sums) {
    const nCur = totalCount(cur);
    if (nCur <= 0) continue;
    const ref = profile.get(key);
    const [feature, slice] = key.split('\u0000') as [string, string];
    const kind = plan.features.find((f) => f.name === feature)?.kind ?? 'numeric';
    const base: DriftResult = { feature, slice, kind, windowMs, windowEndMs, nRef: ref?.n ?? 0, nCur, psi: null, ks: null, ksErrorBound: null, psiPValue: null, ksPValue: null, pValue: null, qValue: null, drift: null, note: null, currentBins: null, unseenTop: null };
    if (!ref || ref.n === 0) {
      results.push({ ...base, note: 'no_reference' });
      continue;
    }
    const unseenHere = ref.kind === 'categorical' ? unseen.get(key) : undefined;
    // In category order: the Monte Carlo is seeded by the counts in this order, and the order the
    // categories were met in depends on how ClickHouse (or the shards) sent them.
    const unseenCounts = [...(unseenHere ?? new Map<string, number>())].sort((a, b) => compareCodePoints(a[0], b[0])).map(([, c]) => c);
    inputs.push({ kind: ref.kind, refCounts: ref.counts, refN: ref.n, cur: cur.slice(), nCur, unseenCounts });
    const result: DriftResult = { ...base, unseenTop: ref.kind === 'categorical' ? topUnseen(unseenHere) : null };
    results.push(result);
    withStatistics.push(result);
  }
  const statistics = await computer.compute(inputs);
  withStatistics.forEach((result, i) => Object.assign(result, statistics[i]!));
  return results;
}

/** Decisions of one window at one time, calibrated: BH across all its (feature, slice) tests (their order does not matter). */
function decideWindow(plan: MonitorPlan, results: DriftResult[]): DriftResult[] {
  const { mode, fdr, psiFloor, minSamples } = plan.drift;
  const tested: DriftResult[] = [];
  for (const result of results) {
    if (result.note === 'no_reference') continue;
    if (result.nCur < minSamples || result.nRef < minSamples) result.note = 'too_few_rows';
    else tested.push(result);
  }
  const decisions = decideDrift(
    // A PSI p-value skipped because the KS one alone decides stands in as 1: it cannot change the combination.
    tested.map((t) => ({ kind: t.kind, psi: t.psi!, psiPValue: t.psiPValue ?? 1, ksPValue: t.ksPValue })),
    mode === 'fixed' ? { mode } : { mode, fdr, psiFloor },
  );
  tested.forEach((t, i) => {
    const d = decisions[i]!;
    t.drift = d.drift;
    t.pValue = Number.isNaN(d.pValue) ? null : d.pValue;
    t.qValue = d.qValue;
  });
  return results;
}

/** The UNSEEN_TOP most frequent unseen categories, count descending, ties by code point. */
function topUnseen(unseen: ReadonlyMap<string, number> | undefined): { category: string; count: number }[] {
  return [...(unseen ?? new Map<string, number>())]
    .map(([category, count]) => ({ category, count }))
    .sort((a, b) => b.count - a.count || compareCodePoints(a.category, b.category))
    .slice(0, UNSEEN_TOP);
}
