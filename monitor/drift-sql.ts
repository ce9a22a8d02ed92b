// The monitor's ClickHouse SQL: the sample of every watched feature (event fields per event, view
// features at each tile close), sliced, and binned against the reference profile's frozen edges
// (numeric: ASOF join on the greatest edge <= x; categorical: join on the category), counted per
// (feature, slice, time bucket, bin). Integer counts merge exactly, so windows are sums of buckets
// and memory stays bounded by features x slices x bins, whatever the row count.
import { createHash } from 'node:crypto';
import type { CompiledDefinitions, FeaturePlan, MonitorFeaturePlan, MonitorPlan, MonitorSlicePlan, ViewPlan } from '../definitions/index.js';
import { TidemarkError } from '../definitions/index.js';
import { COMPLETED_LOADS, eventTable, exactIntegerFieldPartsSql, exactIntegerFieldsOfParts, featureSampleSql, featureTileSql, ident, ownedEventsSql, sourcePlacements, windowsInNode, type OfflineExecutor, type ShardSet } from '../offline/index.js';
import { AGGREGATION_SPECS } from '../definitions/aggregations/index.js';

/** Slice key of the unsliced series. */
export const ALL_SLICE = 'all';

/** Percentiles whose values are a numeric profile's fine edges; every tenth is a decile edge. */
export const FINE_BIN_PROBABILITIES = Array.from({ length: 99 }, (_, i) => (i + 1) / 100);

/** Fine bins of a numeric profile: one more than its edges. */
export const FINE_BINS = FINE_BIN_PROBABILITIES.length + 1;

/** The key of a (feature, slice) series in profiles and counts. */
export function profileKey(feature: string, slice: string): string {
  return `${feature}\u0000${slice}`;
}

/** Label of a numeric band: `<500`, `[500,1000)`, `>=2000`. */
export function bandLabels(bands: readonly number[]): string[] {
  return [`<${bands[0]}`, ...bands.slice(1).map((b, i) => `[${bands[i]},${b})`), `>=${bands[bands.length - 1]}`];
}

function sliceExpr(slice: MonitorSlicePlan): string {
  return sliceLabelOfKey(slice, sliceKeyExpr(slice));
}

/**
 * What a row's slice label is made from, cheap to group by (no string built per row): the field's
 * value, or its band's index (0: null, i + 1: band i).
 */
function sliceKeyExpr(slice: MonitorSlicePlan): string {
  const col = ident(slice.field);
  if (slice.bands === null) return col;
  const arms = slice.bands.map((b, i) => `${col} < ${b}, ${i + 1}`).join(', ');
  return `toUInt8(multiIf(isNull(${col}), 0, ${arms}, ${slice.bands.length + 1}))`;
}

/** The label of a slice key (sliceKeyExpr's value in `key`): `origin=ATL`, `distance=[500,1000)`, `origin=(null)`. */
function sliceLabelOfKey(slice: MonitorSlicePlan, key: string): string {
  const prefix = `'${slice.name}='`;
  if (slice.bands === null) return `concat(${prefix}, ifNull(toString(${key}), '(null)'))`;
  const labels = ['(null)', ...bandLabels(slice.bands)].map((l) => `'${l}'`).join(', ');
  return `concat(${prefix}, [${labels}][${key} + 1])`;
}

/** The label of each slice definition (`origin=ATL`, `distance=[500,1000)`), one SQL expression per definition, in plan order. */
export function sliceLabelExprs(plan: MonitorPlan): string[] {
  return plan.slices.map(sliceExpr);
}

/** `['all', 'origin=' || origin, ...]`: each row counts once per slice definition and once overall (samples and predictions alike). */
export function slicesArray(plan: MonitorPlan): string {
  return `[${[`'${ALL_SLICE}'`, ...plan.slices.map(sliceExpr)].join(', ')}]`;
}

interface SampleRelation {
  /** SELECT with columns fid (the feature's index in the plan), x, ts, slice (one row per sample and slice). */
  sql: string;
}

/**
 * Sample relations of the monitor's features of one kind, over ts in [{from:Int64}, {to:Int64}).
 * Numeric x is Float64, categorical x is String; rows with a null x are left out.
 */
function sampleRelations(compiled: CompiledDefinitions, plan: MonitorPlan, kind: MonitorFeaturePlan['kind'], labelled = false, exact?: SampleExactness, leaveOut?: ReadonlySet<number>, shardCount = 1): SampleRelation[] {
  // Sliced: one row per sample and slice (column slice). Labelled: one row per sample, with each
  // slice definition's key (sliceKeyExpr) in a column k<i>, labelled after the counts (slicedCounts).
  const sliced = labelled ? plan.slices.map((s, i) => `, ${sliceKeyExpr(s)} AS k${i}`).join('') : `, arrayJoin(${slicesArray(plan)}) AS slice`;
  const features = plan.features.filter((f) => f.kind === kind);
  const out: SampleRelation[] = [];
  const cast = (col: string): string => (kind === 'numeric' ? `toFloat64(${col})` : `toString(${col})`);
  const fieldFeatures = features.filter((f) => f.from === 'field');
  if (fieldFeatures.length > 0) {
    const sliceFields = [...new Set(plan.slices.map((s) => s.field))];
    const columns = [...new Set([...sliceFields, ...fieldFeatures.map((f) => f.field!)])].map(ident);
    const pairs = fieldFeatures.map((f) => `tuple(toUInt16(${plan.features.indexOf(f)}), ${cast(ident(f.field!))})`).join(', ');
    out.push({
      sql:
        `SELECT p.1 AS fid, assumeNotNull(p.2) AS x, ts${sliced} FROM (` +
        `SELECT ${columns.join(', ')}, __ts AS ts, arrayJoin([${pairs}]) AS p FROM ${ident(eventTable(plan.source))} ` +
        `WHERE ${COMPLETED_LOADS} AND __ts >= {from:Int64} AND __ts < {to:Int64}${ownedEvents(compiled, plan, shardCount)}) WHERE p.2 IS NOT NULL`,
    });
  }
  const viewFeatures = features.filter((f) => f.from === 'view' && !(leaveOut?.has(plan.features.indexOf(f)) ?? false));
  for (const { view, plans, features: group } of viewGroups(compiled, viewFeatures)) {
    const pairs = group.map((f, i) => `tuple(toUInt16(${plan.features.indexOf(f)}), toFloat64(x${i}))`).join(', ');
    out.push({
      sql:
        `SELECT p.1 AS fid, assumeNotNull(p.2) AS x, ts${sliced} FROM (` +
        `SELECT *, arrayJoin([${pairs}]) AS p FROM (${featureSampleSql(view, plans, { exactFields: exact?.sums.get(view.source), shardCount })})) WHERE p.2 IS NOT NULL`,
    });
  }
  return out;
}

/** On shards (shardCount > 1): the filter that counts each event of the monitored source once, on one shard (ownedEventsSql). */
function ownedEvents(compiled: CompiledDefinitions, plan: MonitorPlan, shardCount: number): string {
  if (shardCount <= 1) return '';
  return ` AND ${ownedEventsSql(compiled.registry, compiled.registry.sources.find((s) => s.name === plan.source)!, shardCount)}`;
}

/** View features grouped as one feature-sample query computes them: one view, one hop. */
function viewGroups(compiled: CompiledDefinitions, features: readonly MonitorFeaturePlan[]): { view: ViewPlan; plans: FeaturePlan[]; features: MonitorFeaturePlan[] }[] {
  const groups = new Map<string, { view: ViewPlan; plans: FeaturePlan[]; features: MonitorFeaturePlan[] }>();
  for (const f of features) {
    const view = compiled.registry.views.find((v) => v.name === f.view)!;
    const feature = view.features.find((x) => x.name === f.feature)!;
    const key = `${view.name}/${feature.hopMs}`;
    const group = groups.get(key) ?? { view, plans: [], features: [] };
    group.plans.push(feature);
    group.features.push(f);
    groups.set(key, group);
  }
  return [...groups.values()];
}

/**
 * Numeric view features whose windows Node combines (offline/feature-windows.ts), from one query of
 * their source's events: one view's, or on one node a chain of views of one source whose key
 * fields nest (airport within route), read by the finest view's keys and ordered by the coarser
 * ones' so that each coarser key's rows are consecutive.
 */
export interface NodeWindowGroup {
  /** The view whose keys the query groups by (the finest). */
  view: ViewPlan;
  /** The features by view and hop: a TileWindows each; keyColumns is how many of groupKeys are its view's key (0: the query's view). */
  hops: { features: FeaturePlan[]; fids: number[]; keyColumns: number }[];
  /** Each feature's index in the plan, of every hop. */
  fids: number[];
  /** The coarser views' key fields, as featureTileSql's groupKeys. */
  groupKeys: string[];
  /** featureTileSql of every hop's features, with each slice definition's label (sliceLabelExprs) as label columns. */
  sql: string;
}

/** The monitor's numeric view features whose samples Node windows with the SQL's doubles (windowsInNode), by query. */
export function nodeWindowGroups(compiled: CompiledDefinitions, plan: MonitorPlan, exact: SampleExactness, shardCount = 1): NodeWindowGroup[] {
  const candidates = plan.features.filter((f) => {
    if (f.kind !== 'numeric' || f.from !== 'view') return false;
    const view = compiled.registry.views.find((v) => v.name === f.view)!;
    return windowsInNode(view.features.find((x) => x.name === f.feature)!, exactSetsOf(exact, view.source));
  });
  type ViewHops = { view: ViewPlan; hops: { features: FeaturePlan[]; fids: number[] }[] };
  const byView = new Map<string, ViewHops>();
  for (const { view, plans, features } of viewGroups(compiled, candidates)) {
    const entry = byView.get(view.name) ?? { view, hops: [] };
    entry.hops.push({ features: plans, fids: features.map((f) => plan.features.indexOf(f)) });
    byView.set(view.name, entry);
  }
  // Chains of views whose key fields nest, coarsest first. On shards each view reads the keys its
  // shard owns by its own key: one query per view there.
  const chains: ViewHops[][] = [];
  const views = [...byView.values()].sort((a, b) => a.view.keyFields.length - b.view.keyFields.length);
  for (const entry of views) {
    const chain = shardCount > 1 ? undefined : chains.find((c) => c[0]!.view.source === entry.view.source && c[c.length - 1]!.view.keyFields.every((f) => entry.view.keyFields.includes(f)));
    if (chain) chain.push(entry);
    else chains.push([entry]);
  }
  return chains.map((chain) => {
    const root = chain[chain.length - 1]!.view;
    // The coarser views' key fields, coarsest first: each one's key is a prefix of these.
    const groupKeys: string[] = [];
    for (const { view } of chain.slice(0, -1)) for (const f of view.keyFields) if (!groupKeys.includes(f)) groupKeys.push(f);
    const hops = chain.flatMap(({ view, hops }) => hops.map((h) => ({ ...h, keyColumns: view === root ? 0 : view.keyFields.length })));
    return {
      view: root,
      hops,
      fids: hops.flatMap((h) => h.fids),
      groupKeys,
      sql: featureTileSql(root, hops.flatMap((h) => h.features), { exactFields: exact.sums.get(root.source), labels: sliceLabelExprs(plan), shardCount, groupKeys }),
    };
  });
}

/**
 * How the monitor's numeric samples are taken, for evaluations and the reference alike: the view
 * features windowed in Node (`groups`, their plan indices in `windowed`), the rest from ClickHouse
 * (`sql`, numericSamplesSql; null when nothing is left for it).
 */
export interface NumericSampling {
  groups: NodeWindowGroup[];
  windowed: ReadonlySet<number>;
  sql: string | null;
}

/**
 * With `shardCount` > 1, the SQL of a sharded store: run on each shard with {shard:UInt32}, it reads
 * each event field's samples once and each view feature's samples on its key's shard, so the
 * shards' counts add up to one node's.
 */
export function numericSampling(compiled: CompiledDefinitions, plan: MonitorPlan, exact: SampleExactness, shardCount = 1): NumericSampling {
  const groups = nodeWindowGroups(compiled, plan, exact, shardCount);
  const windowed = new Set(groups.flatMap((g) => g.fids));
  if (shardCount > 1) refuseOrderRoundedOnShards(compiled, plan, windowed);
  return { groups, windowed, sql: numericSamplesSql(compiled, plan, exact, windowed, shardCount) };
}

/**
 * On shards, a variance or stddev view feature windowed in ClickHouse (its field not proven
 * exact) is refused: the SQL folds a key's squared deviations in GROUP BY output order, which
 * depends on the other keys of the query, so its last bits (and a sample on a bin edge) could differ
 * from one node's. Windowed in Node (exact fields) it is the same doubles anywhere.
 */
function refuseOrderRoundedOnShards(compiled: CompiledDefinitions, plan: MonitorPlan, windowed: ReadonlySet<number>): void {
  const rounded = plan.features.filter((f, fid) => {
    if (f.kind !== 'numeric' || f.from !== 'view' || windowed.has(fid)) return false;
    const view = compiled.registry.views.find((v) => v.name === f.view)!;
    return AGGREGATION_SPECS[view.features.find((x) => x.name === f.feature)!.agg].sql.centered === true;
  });
  if (rounded.length > 0) {
    const names = rounded.map((f) => f.name);
    throw new TidemarkError(
      'TM_OFFLINE_SHARDS_UNSUPPORTED',
      `monitor ${plan.name}: ${names.join(', ')} cannot be sampled on a sharded offline store: a variance or stddev of a field that is not all integers (with bounded squares) is rounded by the order of the query's rows, so its samples could differ from one node's; monitor it on a single-node store`,
      { monitor: plan.name, features: names },
    );
  }
}

/**
 * On shards, the label metrics need the predictions and labels on one node: the home shard, where
 * sources no view keys are (and the feature log). A view keyed on either spreads it over the shards.
 */
export function refuseUnplacedLabelsOnShards(compiled: CompiledDefinitions, plan: MonitorPlan): void {
  if (!plan.labels) return;
  const spread = [plan.labels.fromLog ? null : plan.labels.predictions, plan.labels.labels].filter((name): name is string => {
    const source = name === null ? undefined : compiled.registry.sources.find((s) => s.name === name);
    return source !== undefined && sourcePlacements(compiled.registry, source).length > 0;
  });
  if (spread.length > 0) {
    throw new TidemarkError(
      'TM_OFFLINE_SHARDS_UNSUPPORTED',
      `monitor ${plan.name}: its label metrics join predictions to labels on one node, but ${spread.join(' and ')} ${spread.length > 1 ? 'are' : 'is'} keyed by a view and so spread over the shards; monitor it on a single-node store`,
      { monitor: plan.name, sources: spread },
    );
  }
}

function exactSetsOf(exact: SampleExactness, source: string): { sums: ReadonlySet<string>; squares: ReadonlySet<string> } {
  return { sums: exact.sums.get(source) ?? new Set(), squares: exact.squares.get(source) ?? new Set() };
}

export function hasFeatures(plan: MonitorPlan, kind: MonitorFeaturePlan['kind']): boolean {
  return plan.features.some((f) => f.kind === kind);
}

function unionOf(compiled: CompiledDefinitions, plan: MonitorPlan, kind: MonitorFeaturePlan['kind'], labelled = false, exact?: SampleExactness, leaveOut?: ReadonlySet<number>, shardCount = 1): string {
  return sampleRelations(compiled, plan, kind, labelled, exact, leaveOut, shardCount).map((r) => r.sql).join('\nUNION ALL\n');
}

/** Per source, a set of fields. */
export type ExactFields = ReadonlyMap<string, ReadonlySet<string>>;

/**
 * Per source, the fields proven to hold integers whose magnitudes add up to under 2^52 (`sums`:
 * their compensated sums are plain sums, featureSampleSql's exactFields, and their window sums are
 * exact in any order), and among those the fields whose squares are bounded too (`squares`:
 * variance parts exact in any order). See exactIntegerFieldsOfParts.
 */
export interface SampleExactness {
  sums: ExactFields;
  squares: ExactFields;
}

/**
 * Per executor (one node, or one shard), per exactness query: the parts of each closed load read so
 * far (null: the load has no rows the query counts). A file's load (named by its SHA-256) never
 * changes once complete, so its parts are read once and kept, in memory and in
 * tm_load_exactness: a monitor on schedule reads only the loads that arrived since its last
 * evaluation, and a new process (a restarted monitor) reads what an earlier one stored, not the
 * whole source. A Kafka partition's load is open-ended (its sha256 is empty): read every time. A
 * load deleted later only keeps a field off the Node path (its integers and magnitudes only ever
 * narrow what is exact), and that path and ClickHouse's give the same values.
 */
const loadExactness = new WeakMap<OfflineExecutor, Map<string, Map<string, Record<string, number> | null>>>();

/** The executors whose tm_load_exactness exists (created on first use). */
const exactnessTables = new WeakMap<OfflineExecutor, Promise<void>>();

function ensureExactnessTable(executor: OfflineExecutor): Promise<void> {
  let created = exactnessTables.get(executor);
  if (!created) {
    created = executor.command('CREATE TABLE IF NOT EXISTS tm_load_exactness (query String, load_id String, parts String) ENGINE = ReplacingMergeTree ORDER BY (query, load_id)');
    exactnessTables.set(executor, created);
    created.catch(() => exactnessTables.delete(executor));
  }
  return created;
}

/** Every completed load's exactness parts (exactIntegerFieldPartsSql with byLoad), reading only the loads not read before (in this process or, stored, in an earlier one) and the open ones. */
async function exactnessParts(executor: OfflineExecutor, source: string, sql: string, params: Record<string, unknown>): Promise<Record<string, number>[]> {
  const query = createHash('sha256').update(`${sql}\u0000${JSON.stringify(params)}`).digest('hex');
  let queries = loadExactness.get(executor);
  if (!queries) loadExactness.set(executor, (queries = new Map()));
  let closed = queries.get(query);
  if (!closed) queries.set(query, (closed = new Map()));
  const known = (): Record<string, number>[] => [...closed.values()].filter((p): p is Record<string, number> => p !== null);
  // tm_loads first (one row per load): when no load completed since and none is open, the events are not read at all.
  const unread = await executor.rows<{ load_id: string; closed: number }>(
    "SELECT load_id, sha256 != '' AS closed FROM tm_loads WHERE source = {source:String} AND load_id NOT IN {seen:Array(String)}",
    { source, seen: [...closed.keys()] },
  );
  if (unread.length === 0) return known();
  const closing = new Set(unread.filter((l) => Number(l.closed) === 1).map((l) => l.load_id));
  if (closing.size > 0) {
    await ensureExactnessTable(executor);
    const stored = await executor.rows<{ load_id: string; parts: string }>('SELECT load_id, any(parts) AS parts FROM tm_load_exactness WHERE query = {query:String} AND load_id IN {ids:Array(String)} GROUP BY load_id', { query, ids: [...closing] });
    for (const { load_id, parts } of stored) {
      closed.set(load_id, JSON.parse(parts) as Record<string, number> | null);
      closing.delete(load_id);
    }
    if (closing.size === 0 && stored.length === unread.length) return known();
  }
  const open: Record<string, number>[] = [];
  const read = new Map<string, Record<string, number>>();
  for (const row of await executor.rows<Record<string, number> & { __load: string }>(sql, { ...params, seen: [...closed.keys()] })) {
    if (closing.has(row.__load)) read.set(row.__load, row);
    else open.push(row);
  }
  if (closing.size > 0) {
    // Closed loads without a row counted here are remembered too (null): they never get one.
    const rows = [...closing].map((load_id) => ({ query, load_id, parts: JSON.stringify(read.get(load_id) ?? null) }));
    await executor.insert('tm_load_exactness', rows);
    for (const load_id of closing) closed.set(load_id, read.get(load_id) ?? null);
  }
  return [...known(), ...open];
}

/**
 * The exactness of the fields of the monitor's numeric view features (sums, means, min, max,
 * variance), checked over every completed load of each source (a closed load's parts read once,
 * then kept in memory and in tm_load_exactness: see loadExactness): once per evaluation, not per span.
 */
export async function exactSampleFields(executor: OfflineExecutor, compiled: CompiledDefinitions, plan: MonitorPlan, shards: ShardSet | null = null): Promise<SampleExactness> {
  const bySource = new Map<string, { fields: Set<string>; squares: Set<string> }>();
  for (const f of plan.features) {
    if (f.kind !== 'numeric' || f.from !== 'view') continue;
    const view = compiled.registry.views.find((v) => v.name === f.view)!;
    const feature = view.features.find((x) => x.name === f.feature)!;
    const sql = AGGREGATION_SPECS[feature.agg].sql;
    if (feature.field === null || !(sql.centered || (sql.parts ?? []).some((p) => p.combine === 'compensatedSum' || p.combine === 'min' || p.combine === 'max'))) continue;
    const entry = bySource.get(view.source) ?? { fields: new Set<string>(), squares: new Set<string>() };
    entry.fields.add(feature.field);
    if (sql.centered) entry.squares.add(feature.field);
    bySource.set(view.source, entry);
  }
  const sums = new Map<string, Set<string>>();
  const squares = new Map<string, Set<string>>();
  for (const [source, { fields, squares: squared }] of bySource) {
    // On shards, each shard's sums over the events it counts (each event once), added: one node's decisions.
    const owned = shards === null ? '1' : ownedEventsSql(compiled.registry, compiled.registry.sources.find((s) => s.name === source)!, shards.count);
    const sql = exactIntegerFieldPartsSql(source, [...fields], [...squared], owned, true);
    const parts = shards === null ? await exactnessParts(executor, source, sql, {}) : (await shards.each((shardExecutor, shard) => exactnessParts(shardExecutor, source, sql, { shard }))).flat();
    const row = exactIntegerFieldsOfParts(parts, [...fields], [...squared]);
    const exact = new Set([...fields].filter((f) => row?.[f] === true));
    sums.set(source, exact);
    squares.set(source, new Set([...squared].filter((f) => exact.has(f) && row?.[`__sq_${f}`] === true)));
  }
  return { sums, squares };
}

/** Reference profile of numeric features: fine edges (percentiles, numpy's linear rule) and size per (feature, slice). */
export function numericProfileSql(compiled: CompiledDefinitions, plan: MonitorPlan, exact?: SampleExactness): string {
  const ps = FINE_BIN_PROBABILITIES.map((p) => p.toFixed(2)).join(', ');
  return `SELECT fid, slice, quantilesExactInclusive(${ps})(x) AS edges, count() AS n FROM (${unionOf(compiled, plan, 'numeric', false, exact)}) GROUP BY fid, slice`;
}

/**
 * The categorical samples with ts in [{from}, {to}), one row per distinct (feature, bucket,
 * category, slice labels) with its count: fid, b = intDiv(ts - {origin}, {interval}), x (the
 * category), s0..s<n-1> (each slice definition's label), c. Binned against the profile's
 * categories outside ClickHouse, each row counted once overall and once per slice label (as
 * numericSamplesSql): a third of the CPU of one row per sample and slice joined with the stored
 * categories. On a sharded store each shard counts the events it owns; the counts add.
 */
export function categoricalSamplesSql(compiled: CompiledDefinitions, plan: MonitorPlan, shardCount = 1): string {
  return slicedCounts(plan, unionOf(compiled, plan, 'categorical', true, undefined, undefined, shardCount), 'intDiv(ts - {origin:Int64}, {interval:Int64})', 'count()', '');
}

/**
 * Counts per (fid, b, x, slice keys) of labelled samples, each slice key then labelled (s<i>):
 * grouped by the keys, not the labels, so that a label is built per counted row, not per sample
 * (the flights' numeric samples: 0.19 s against 0.48 s in chDB). Keys of one label (a null and the
 * text '(null)') give rows of one label; their counts add where they are read.
 */
function slicedCounts(plan: MonitorPlan, union: string, bucket: string, count: string, settings: string, label = (l: string): string => l): string {
  const keys = plan.slices.map((_, i) => `, k${i}`).join('');
  const labels = plan.slices.map((s, i) => `, ${label(sliceLabelOfKey(s, `k${i}`))} AS s${i}`).join('');
  return `SELECT fid, b, x${labels}, c FROM (SELECT fid, ${bucket} AS b, x${keys}, ${count} AS c FROM (${union}) GROUP BY fid, b, x${keys})${settings}`;
}

/** A row of categoricalSamplesSql; its slice labels are in columns s0.. */
export type CategoricalSampleRow = { fid: number; b: number; x: string; c: number } & Record<string, unknown>;

/** The slices a row of categoricalSamplesSql counts in: 'all', then each slice definition's label. */
export function sampleSlices(plan: MonitorPlan, row: CategoricalSampleRow): string[] {
  return [ALL_SLICE, ...plan.slices.map((_, i) => row[`s${i}`] as string)];
}

/**
 * Numeric bin counts per (feature, slice, bucket, bin) for ts in [{from}, {to}), bucket = (ts -
 * {origin}) / {interval}: bin = number of fine edges <= x (duplicate edges keep their greatest
 * index, so equal values fall in the last of their equal edges' bins).
 */
export function binCountsSql(compiled: CompiledDefinitions, plan: MonitorPlan): string {
  const bucket = `intDiv(s.ts - {origin:Int64}, {interval:Int64})`;
  const mine = `monitor = {monitor:String} AND version = {version:String}`;
  return (
    `SELECT s.fid AS fid, s.slice AS slice, ${bucket} AS b, toUInt32(p.idx) AS bin, count() AS c FROM (${unionOf(compiled, plan, 'numeric')}) AS s ` +
    `ASOF LEFT JOIN (SELECT fid, slice, edge, idx FROM tm_monitor_edges WHERE ${mine}) AS p ON s.fid = p.fid AND s.slice = p.slice AND s.x >= p.edge ` +
    `GROUP BY fid, slice, b, bin ORDER BY b SETTINGS join_use_nulls = 0`
  );
}

/**
 * The numeric samples with ts in [{from}, {to}), one row per distinct (feature, bucket, value, slice
 * labels) with its count (not one per sample and slice: a field of whole minutes has a few hundred
 * values per airport), for binning outside ClickHouse: fid (UInt16), b = intDiv(ts - {origin},
 * {interval}) as Float64 (exact below 2^53), x (Float64), s0..s<n-1>, the label of each slice
 * definition (LowCardinality, sent as an Arrow dictionary), and c, the count (Float64). The same
 * sample values as binCountsSql's, without the slicing and the ASOF join.
 * The features in `leaveOut` (plan indices: those windowed in Node) are left out; null when none is left.
 */
export function numericSamplesSql(compiled: CompiledDefinitions, plan: MonitorPlan, exact?: SampleExactness, leaveOut?: ReadonlySet<number>, shardCount = 1): string | null {
  const union = unionOf(compiled, plan, 'numeric', true, exact, leaveOut, shardCount);
  if (union === '') return null;
  return slicedCounts(plan, union, 'toFloat64(intDiv(ts - {origin:Int64}, {interval:Int64}))', 'toFloat64(count())', ' SETTINGS output_format_arrow_low_cardinality_as_dictionary = 1', (l) => `toLowCardinality(${l})`);
}
