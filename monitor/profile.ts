// Reference profiles: per (feature, slice) of a monitor, the frozen bins and the reference's counts
// in them, computed once from the reference time range and stored under the monitor plan's version
// (which hashes the plan and the views it reads), so a changed definition gets a new profile.
// Numeric: 99 percentile edges (every tenth a decile edge: PSI's bins), counts in the 100 fine bins.
// Categorical: one bin per reference category plus bin 0 for categories unseen in the reference.
import type { CompiledDefinitions, MonitorPlan } from '../definitions/index.js';
import { insertInChunks, tabSeparatedValue, type OfflineExecutor, type ShardSet } from '../offline/index.js';
import { binCountsSql, categoricalSamplesSql, exactSampleFields, FINE_BINS, hasFeatures, numericProfileSql, numericSampling, profileKey, sampleSlices, type CategoricalSampleRow, type NumericSampling } from './drift-sql.js';
import { countAllNumericSamples } from './numeric-bins.js';
import { handled } from './promises.js';
import { ReferenceSamples, type ReferenceSeries } from './reference-samples.js';

export interface FeatureSliceProfile {
  feature: string;
  slice: string;
  kind: 'numeric' | 'categorical';
  /** Reference rows. */
  n: number;
  /** Numeric: the fine edges (ascending, ties allowed). Empty for categorical. */
  edges: number[];
  /** Categorical: the categories, bin i + 1 each. Empty for numeric. */
  categories: string[];
  /** Reference counts per bin: 100 fine bins (numeric) or 1 + categories (bin 0: unseen). */
  counts: Float64Array;
}

export type MonitorProfile = Map<string, FeatureSliceProfile>;


// (defined next to the SQL that cuts them: numeric-bins.ts, which this module imports, reads them too)
export { FINE_BINS, profileKey } from './drift-sql.js';

/** Create the monitor's tables; safe to run again. */
export async function ensureMonitorTables(executor: OfflineExecutor): Promise<void> {
  await executor.command(
    `CREATE TABLE IF NOT EXISTS tm_monitor_profiles (monitor String, version String, feature String, slice String, kind String, n UInt64, edges Array(Float64), categories Array(String), counts Array(Float64), created_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY (monitor, version, feature, slice)`,
  );
  await executor.command(`CREATE TABLE IF NOT EXISTS tm_monitor_edges (monitor String, version String, fid UInt16, slice String, edge Float64, idx UInt32) ENGINE = MergeTree ORDER BY (monitor, version, fid, slice, edge)`);
  await executor.command(`CREATE TABLE IF NOT EXISTS tm_monitor_categories (monitor String, version String, fid UInt16, slice String, value String, idx UInt32) ENGINE = MergeTree ORDER BY (monitor, version, fid, slice, value)`);
}

/** A profile as stored (counts as a plain array). */
type ProfileRow = Omit<FeatureSliceProfile, 'counts'> & { counts: number[] };

function numericRow(e: ReferenceSeries): ProfileRow {
  return { feature: e.feature, slice: e.slice, kind: 'numeric', n: e.n, edges: e.edges, categories: [], counts: e.counts };
}

/**
 * Read the stored profile of this monitor version, or compute and store it from the reference range.
 * On a sharded store (`shards`; `executor` is its home shard, where the profile is stored) the
 * reference's samples come from every shard (each counted on one: see numericSampling) and are
 * profiled here together, numeric ones always in Node, categorical counts added.
 */
export async function loadOrBuildProfile(executor: OfflineExecutor, compiled: CompiledDefinitions, plan: MonitorPlan, shards: ShardSet | null = null): Promise<{ profile: MonitorProfile; built: boolean }> {
  await ensureMonitorTables(executor);
  const key = { monitor: plan.name, version: plan.version };
  const stored = await loadProfile(executor, plan);
  if (stored.size > 0) return { profile: stored, built: false };

  // A profile build that died half-way left edges or categories behind: start clean.
  for (const table of ['tm_monitor_edges', 'tm_monitor_categories']) {
    await executor.command(`DELETE FROM ${table} WHERE monitor = {monitor:String} AND version = {version:String}`, key);
  }
  const range = { from: plan.reference.fromMs, to: plan.reference.toMs };
  const rows: ProfileRow[] = [];
  // Numeric samples windowed in Node: their queries are queued first, then the categorical counts',
  // which ClickHouse then runs while this thread windows the view features' events.
  let inNode: Promise<ReferenceSeries[]> | null = null;
  if (hasFeatures(plan, 'numeric')) {
    const sampling = numericSampling(compiled, plan, await exactSampleFields(executor, compiled, plan, shards), shards?.count ?? 1);
    const numeric = plan.features.map((f, fid) => ({ f, fid })).filter(({ f }) => f.kind === 'numeric');
    // Every view feature windowed in Node: its samples are the same doubles as the SQL's, so the
    // profile is computed from one pass over them. Otherwise the two queries of before: a window
    // sum that is not exact has last bits that depend on the query's shape, and the stored profile
    // must not move.
    // On shards, in Node always: the view features sampled in ClickHouse there are the ones whose
    // samples do not depend on the query's other keys (numericSampling refuses the others), and the
    // edges and counts in Node are ClickHouse's quantiles and bins of the same values.
    if (shards !== null || numeric.every(({ f, fid }) => f.from === 'field' || sampling.windowed.has(fid))) {
      inNode = handled(referenceInNode(executor, plan, sampling, range, shards));
    } else {
      const built = await referenceInSql(executor, compiled, plan, range);
      rows.push(...built.map(numericRow));
    }
  }
  // The samples per (feature, category, slice labels), from every shard (each counts the events
  // it owns), counted here once overall and once per slice label, as an evaluation counts them.
  const categorical = hasFeatures(plan, 'categorical') ? categoricalSamplesSql(compiled, plan, shards?.count ?? 1) : null;
  const samples = { ...range, origin: range.from, interval: range.to - range.from };
  const categoricalRows =
    categorical === null ? null : handled(shards === null ? executor.rows<CategoricalSampleRow>(categorical, samples).then((r) => [r]) : shards.each((shardExecutor, shard) => shardExecutor.rows<CategoricalSampleRow>(categorical, { ...samples, shard })));
  if (inNode) {
    const built = await inNode;
    await insertEdges(executor, plan, built);
    rows.push(...built.map(numericRow));
  }
  if (categoricalRows) {
    const perShard = await categoricalRows;
    const byKey = new Map<string, { fid: number; feature: string; slice: string; counts: Map<string, number> }>();
    const add = (fid: number, slice: string, value: string, n: number): void => {
      const feature = plan.features[fid]!.name;
      const k = profileKey(feature, slice);
      let entry = byKey.get(k);
      if (!entry) byKey.set(k, (entry = { fid, feature, slice, counts: new Map() }));
      entry.counts.set(value, (entry.counts.get(value) ?? 0) + n);
    };
    for (const rows of perShard) {
      for (const r of rows) {
        const fid = Number(r.fid);
        const n = Number(r.c);
        for (const slice of sampleSlices(plan, r)) add(fid, slice, r.x, n);
      }
    }
    const catRows: Record<string, unknown>[] = [];
    for (const { counts, ...entry } of byKey.values()) {
      const values = [...counts];
      // Most frequent first, ties by value, so the bin order is stable.
      values.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      values.forEach(([value], i) => catRows.push({ ...key, fid: entry.fid, slice: entry.slice, value, idx: i + 1 }));
      rows.push({
        feature: entry.feature,
        slice: entry.slice,
        kind: 'categorical',
        n: values.reduce((s, [, n]) => s + n, 0),
        edges: [],
        categories: values.map(([v]) => v),
        counts: [0, ...values.map(([, n]) => n)],
      });
    }
    await insertInChunks(executor, 'tm_monitor_categories', catRows);
  }
  // The profile rows go last: their presence marks the profile complete.
  await insertInChunks(executor, 'tm_monitor_profiles', rows.map((r) => ({ ...key, ...r, created_at: Date.now() })));
  return { profile: toProfile(rows), built: true };
}

/** The numeric reference from one pass over its samples in Node (ReferenceSamples; on shards, every shard's samples: they are sorted before any quantile). */
async function referenceInNode(executor: OfflineExecutor, plan: MonitorPlan, sampling: NumericSampling, range: { from: number; to: number }, shards: ShardSet | null): Promise<ReferenceSeries[]> {
  const samples = new ReferenceSamples(plan);
  const params = { ...range, origin: range.from, interval: range.to - range.from };
  if (shards) await shards.each((shardExecutor, shard) => countAllNumericSamples(shardExecutor, plan, sampling, { ...params, shard }, samples));
  else await countAllNumericSamples(executor, plan, sampling, params, samples);
  return samples.series();
}

/** The numeric reference from ClickHouse: the edges (numericProfileSql), stored, then the counts against them (binCountsSql). */
async function referenceInSql(executor: OfflineExecutor, compiled: CompiledDefinitions, plan: MonitorPlan, range: { from: number; to: number }): Promise<ReferenceSeries[]> {
  const key = { monitor: plan.name, version: plan.version };
  const edges = (await executor.rows<{ fid: number; slice: string; edges: number[]; n: number }>(numericProfileSql(compiled, plan), range)).map((e) => ({ ...e, feature: plan.features[e.fid]!.name }));
  await insertEdges(executor, plan, edges);
  const counts = await executor.rows<{ fid: number; slice: string; bin: number; c: number }>(binCountsSql(compiled, plan), {
    ...range,
    ...key,
    origin: range.from,
    interval: range.to - range.from,
  });
  const byKey = new Map<string, number[]>();
  for (const c of counts) {
    const k = profileKey(plan.features[c.fid]!.name, c.slice);
    const arr = byKey.get(k) ?? new Array<number>(FINE_BINS).fill(0);
    arr[c.bin] = (arr[c.bin] ?? 0) + c.c;
    byKey.set(k, arr);
  }
  return edges.map((e) => ({ feature: e.feature, slice: e.slice, n: e.n, edges: e.edges, counts: byKey.get(profileKey(e.feature, e.slice)) ?? new Array<number>(FINE_BINS).fill(0) }));
}

/** Store the fine edges (tm_monitor_edges, which binCountsSql's ASOF join reads). Equal edges keep the greatest index: a bin index is then the number of edges <= x. */
async function insertEdges(executor: OfflineExecutor, plan: MonitorPlan, series: readonly { feature: string; slice: string; edges: readonly number[] }[]): Promise<void> {
  const fidOf = new Map(plan.features.map((f, fid) => [f.name, fid]));
  // As TabSeparated text, which the engine parses on its own thread: the flights' 123,499 edges took
  // about half a second of this thread as rows of values. An edge is written in its shortest form,
  // which ClickHouse reads back as the same double.
  const prefix = `${tabSeparatedValue(plan.name)}\t${tabSeparatedValue(plan.version)}\t`;
  let text = '';
  let lines = 0;
  for (const e of series) {
    const byValue = new Map<number, number>();
    e.edges.forEach((v, i) => byValue.set(v, i + 1));
    const head = `${prefix}${fidOf.get(e.feature)!}\t${tabSeparatedValue(e.slice)}\t`;
    for (const [edge, idx] of byValue) {
      text += `${head}${edge}\t${idx}\n`;
      if (++lines % EDGE_LINES_PER_INSERT === 0) {
        await executor.insertTabSeparated('tm_monitor_edges', EDGE_COLUMNS, Buffer.from(text, 'utf8'));
        text = '';
      }
    }
  }
  await executor.insertTabSeparated('tm_monitor_edges', EDGE_COLUMNS, Buffer.from(text, 'utf8'));
}

const EDGE_COLUMNS = ['monitor', 'version', 'fid', 'slice', 'edge', 'idx'] as const;
/** Lines per insert of edges: bounded text whatever the number of slices. */
const EDGE_LINES_PER_INSERT = 200_000;

/** The stored profile of this monitor version (empty when not built yet), or only one (feature, slice) of it. */
export async function loadProfile(executor: OfflineExecutor, plan: MonitorPlan, only?: { feature: string; slice: string }): Promise<MonitorProfile> {
  const filter = only ? ' AND feature = {feature:String} AND slice = {slice:String}' : '';
  const rows = await executor.rows<ProfileRow>(`SELECT feature, slice, kind, n, edges, categories, counts FROM tm_monitor_profiles WHERE monitor = {monitor:String} AND version = {version:String}${filter}`, {
    monitor: plan.name,
    version: plan.version,
    ...only,
  });
  return toProfile(rows);
}

function toProfile(rows: readonly ProfileRow[]): MonitorProfile {
  const profile: MonitorProfile = new Map();
  for (const r of rows) {
    profile.set(profileKey(r.feature, r.slice), { feature: r.feature, slice: r.slice, kind: r.kind, n: Number(r.n), edges: r.edges, categories: r.categories, counts: Float64Array.from(r.counts) });
  }
  return profile;
}
