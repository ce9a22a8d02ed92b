// Feature samples for the monitor: the value of a windowed feature for each key at the close of each
// tile (of the feature's hop) in which the key had events, i.e. what a reader at that instant is
// served (docs/semantics.md: at t = (j+1)*H the sawtooth window is exactly tiles j-n+1..j). Computed
// inside ClickHouse from the same partial aggregates as point-in-time datasets.
import type { FeaturePlan, ViewPlan } from '../definitions/index.js';
import { ownedRowsSql } from './shards.js';
import { COMPLETED_LOADS, eventTable, ident, keyColumn } from './tables.js';
import { centerColumn, centerSql, combinePart, type AggPart, exactPartitionColumns, finalOfColumns, isCentered, isTiledOffline, partsOf, tileOf } from './tile-sql.js';
import { tileFieldsOf } from './feature-windows.js';

export interface FeatureSampleOptions {
  /**
   * Fields known to hold, in every row the query reads, integers whose magnitudes add up to under
   * 2^52 (the caller checked, e.g. with exactIntegerFieldsOfParts). Their compensated sums are then
   * written as the plain sums that the exactness tests would pick anyway: the same doubles, without
   * computing the tests and the unused fold of every tile and window.
   */
  exactFields?: ReadonlySet<string>;
  /**
   * A sharded store of this many shards: read only the events of the keys that shard {shard:UInt32}
   * owns by the view's key (each key's events of the view are all there; copies of other keys'
   * events, placed there by other views, are left out).
   */
  shardCount?: number;
}

/**
 * SELECT returning one row per (key, active tile) with tile close `ts` in [{from:Int64}, {to:Int64}):
 * the view's key fields (named as the event fields, canonical key text), `ts` (ms), and `x0..xn`,
 * one column per feature (all of one hop). Null where a feature has no value (a mean over no values).
 */
export function featureSampleSql(view: ViewPlan, features: readonly FeaturePlan[], options: FeatureSampleOptions = {}): string {
  const { ctes, keyList, parts, hopMs } = tileCtes(view, features, options, (p) => (p.plain ? `tuple(${p.plainSum}, 0.)` : p.perTs));
  const sizes = [...new Set(parts.map((p) => p.tiles))];
  const exact = exactPartitionColumns(
    parts.filter((p) => !p.plain),
    keyList,
  );
  const combined = (p: (typeof parts)[number]): string => (p.plain ? `tuple(sum(tupleElement(${p.name}, 1)) OVER w${p.tiles}, 0.)` : combinePart(p, `w${p.tiles}`));
  ctes.push(
    `w AS (SELECT ${keyList}, j, ${parts.map((p) => `${combined(p)} AS ${p.name}`).join(', ')} FROM ${exact.length === 0 ? 't' : `(SELECT *, ${exact.join(', ')} FROM t)`} ` +
      `WINDOW ${sizes.map((n) => `w${n} AS (PARTITION BY ${keyList} ORDER BY j RANGE BETWEEN ${n - 1} PRECEDING AND CURRENT ROW)`).join(', ')})`,
  );
  const outputs = features.map((f, i) => `${finalOfColumns(f, i)} AS x${i}`);
  return `WITH ${ctes.join(',\n')}\nSELECT ${view.keyFields.map((kf, k) => `k${k} AS ${ident(kf)}`).join(', ')}, (j + 1) * ${hopMs} AS ts, ${outputs.join(', ')} FROM w WHERE ts >= {from:Int64} AND ts < {to:Int64}`;
}

interface TilePart extends AggPart {
  /** Tiles per window of its feature. */
  tiles: number;
  /** A compensated sum of an exact field: its plain sum (`plainSum`) stands for it. */
  plain: boolean;
  plainSum: string;
}

/** Whether the feature's field is one of options.exactFields (its compensated sums are then plain sums). */
function hasExactField(f: FeaturePlan, options: FeatureSampleOptions): boolean {
  return f.field !== null && (options.exactFields?.has(f.field) ?? false);
}

/** The CTE `e`: the view's events read for outputs in [{from}, {to}) (the longest window's lookback before {from}), keys as k0.. and `ts`, with the features' fields. */
function eventsCte(view: ViewPlan, features: readonly FeaturePlan[], options: FeatureSampleOptions): { cte: string; keyList: string } {
  if (features.some((f) => f.windowMs === null || !isTiledOffline(f))) throw new Error('feature samples are of windowed, tiled features');
  const keyList = view.keyFields.map((_, k) => `k${k}`).join(', ');
  const fields = tileFieldsOf(features);
  const lookbackMs = Math.max(...features.map((f) => f.windowMs!));
  const cte =
    `e AS (SELECT ${view.keyFields.map((kf, k) => `${ident(keyColumn(kf))} AS k${k}`).join(', ')}, __ts AS ts${fields.map((f) => `, ${ident(f)}`).join('')} FROM ${ident(eventTable(view.source))} ` +
    `WHERE ${COMPLETED_LOADS} AND __ts >= {from:Int64} - ${lookbackMs} AND __ts < {to:Int64}${(options.shardCount ?? 1) > 1 ? ` AND ${ownedRowsSql(view.keyFields, options.shardCount!)}` : ''})`;
  return { cte, keyList };
}

/**
 * The CTEs up to `t`: per (key k0.., tile j) of the events read for outputs in [{from}, {to}) (the
 * longest window's lookback before {from}), each part of each feature as `part(p)` gives it.
 */
function tileCtes(view: ViewPlan, features: readonly FeaturePlan[], options: FeatureSampleOptions, part: (p: TilePart) => string): { ctes: string[]; keyList: string; parts: TilePart[]; hopMs: number } {
  const hopMs = features[0]!.hopMs;
  if (features.some((f) => f.hopMs !== hopMs)) throw new Error('featureSampleSql takes features of one hop');
  const { cte, keyList } = eventsCte(view, features, options);
  const ctes = [cte];
  const centered = [...new Set(features.filter(isCentered).map((f) => f.field!))];
  let source = 'e';
  if (centered.length > 0) {
    // (centerSql: the same center bits every run, so a sample never moves across a bin edge between runs)
    ctes.push(`c AS (SELECT ${keyList}, ${centered.map((f) => `${centerSql(f)} AS ${centerColumn(f)}`).join(', ')} FROM e GROUP BY ${keyList})`);
    ctes.push(`ec AS (SELECT * FROM e INNER JOIN c USING (${keyList}))`);
    source = 'ec';
  }
  // A compensated sum of an exact field: the plain-sum branch of its tile aggregate and of its window combination.
  const plainSumOf = (f: FeaturePlan, p: AggPart): boolean => p.combine === 'compensatedSum' && hasExactField(f, options);
  const parts = features.flatMap((f, i) =>
    partsOf(f, i).map((p) => ({ ...p, tiles: f.tilesPerWindow!, plain: plainSumOf(f, p), plainSum: f.field === null ? '' : `sum(ifNull(toFloat64(${ident(f.field)}), 0))` })),
  );
  ctes.push(`t AS (SELECT ${keyList}, ${tileOf('ts', hopMs)} AS j, ${parts.map((p) => `${part(p)} AS ${p.name}`).join(', ')} FROM ${source} GROUP BY ${keyList}, j)`);
  return { ctes, keyList, parts, hopMs };
}

/**
 * The events that the windows of outputs in [{from:Int64}, {to:Int64}) read (the longest window of
 * all the features, whatever their hops), for tiles built and windows combined outside ClickHouse
 * (see feature-windows.ts: a TileWindows per hop reads the same rows): one row per key, with
 * `labels` (SQL over the key fields, named as the event fields) as columns l0.., then `__ts`, the
 * times (ms) of the key's events, and per field of tileFieldsOf(features) `__x<i>`, its values as
 * Float64 (NaN for null: groupArray drops nulls, and no field proven exact holds a NaN), in the
 * same order. With `groupKeys` (key fields of the view), each row also carries their key texts as
 * __g0.. after the labels, and rows come ordered by them: coarser views keyed by a prefix of them
 * are served by the same rows (TileWindows' keyColumns). Raw events, not tiles: grouping by tile,
 * then ordering each key's tiles, cost ClickHouse three times reading the events. Every part must
 * have an eventTerm, and every compensated sum be of an exact field: its fold has no column form.
 */
export function featureTileSql(view: ViewPlan, features: readonly FeaturePlan[], options: FeatureSampleOptions & { labels?: readonly string[]; groupKeys?: readonly string[] } = {}): string {
  for (const [i, f] of features.entries()) {
    for (const p of partsOf(f, i)) {
      if (p.combine === 'compensatedSum' && !hasExactField(f, options)) throw new Error(`featureTileSql: ${p.name} is a compensated sum of a field not known to be exact`);
      if (p.eventTerm === undefined) throw new Error(`featureTileSql: ${p.name} (${f.agg}) has no event term`);
    }
  }
  const { cte, keyList } = eventsCte(view, features, options);
  const fields = tileFieldsOf(features);
  const labels = (options.labels ?? []).map((l, i) => `${l} AS l${i}`);
  const keys = view.keyFields.map((kf, k) => `k${k} AS ${ident(kf)}`);
  const arrays = ['groupArray(toFloat64(ts)) AS __ts', ...fields.map((f, i) => `groupArray(ifNull(toFloat64(${ident(f)}), nan)) AS __x${i}`)];
  // Key fields of coarser views served by the same rows, in order: rows come ordered by them, so each such key's rows are consecutive.
  const groups = (options.groupKeys ?? []).map((field, g) => {
    const k = view.keyFields.indexOf(field);
    if (k < 0) throw new Error(`featureTileSql: ${field} is not a key field of ${view.name}`);
    return `k${k} AS __g${g}`;
  });
  // Ordered rows come out of the sort in blocks of max_block_size rows: with every key's events in a
  // row, the default (65,409) made the flights' 3,390 routes one 950 MB-peak block; 256 rows gave
  // 14 batches, a 670 MB peak, and a faster query (the scan's smaller blocks included).
  const order = groups.length === 0 ? '' : ` ORDER BY ${groups.map((_, g) => `__g${g}`).join(', ')} SETTINGS max_block_size = 256`;
  return (
    `WITH ${cte}\nSELECT ${[...labels, ...groups.map((_, g) => `__g${g}`), '__ts', ...fields.map((_, i) => `__x${i}`)].join(', ')} ` +
    `FROM (SELECT ${[...keys, ...groups].join(', ')}, ${arrays.join(', ')} FROM e GROUP BY ${keyList})${order}`
  );
}

/**
 * Whether a source's fields are exact for sums (exactIntegerFieldsOfParts decides): one row of sums
 * that add across the shards of a sharded store, over the rows `owned` selects (on shards,
 * ownedEventsSql: each event once; on one node, every row): per field `__int_<f>` (1 when every
 * value is an integer, nulls aside; 0 without rows), `__abs_<f>` (the sum of magnitudes), per field
 * of `squares` `__sqs_<f>` (the sum of squares), and `__n` (rows). With `byLoad`, one such row per
 * completed load not in {seen:Array(String)}, its id in `__load`: the parts of loads already read
 * are kept by the caller (a completed load's events do not change), and all of them add up as
 * shards' do.
 */
export function exactIntegerFieldPartsSql(source: string, fields: readonly string[], squares: readonly string[] = [], owned = '1', byLoad = false): string {
  const table = ident(eventTable(source));
  const value = (f: string): string => `toFloat64(${table}.${ident(f)})`;
  const columns = [
    ...fields.flatMap((f) => [`min(ifNull(${value(f)} = floor(${value(f)}), 1)) AS ${ident(`__int_${f}`)}`, `sum(abs(ifNull(${value(f)}, 0))) AS ${ident(`__abs_${f}`)}`]),
    ...squares.map((f) => `sum(ifNull(${value(f)} * ${value(f)}, 0)) AS ${ident(`__sqs_${f}`)}`),
    'count() AS __n',
  ];
  if (!byLoad) return `SELECT ${columns.join(', ')} FROM ${table} WHERE ${COMPLETED_LOADS} AND ${owned}`;
  return `SELECT __load, ${columns.join(', ')} FROM ${table} WHERE ${COMPLETED_LOADS} AND ${owned} AND __load NOT IN {seen:Array(String)} GROUP BY __load`;
}

/**
 * From the exactIntegerFieldPartsSql rows (one per shard, or one node's), a value per field (named
 * as the field): whether every value of it is an integer (nulls aside) and their magnitudes add up
 * to under 2^52. Then every compensated sum of some of them is its plain sum (see
 * featureSampleSql's exactFields). Per field of `squares`, `__sq_<field>`: whether the sum of its
 * squares plus the row count is under 2^52 (computed in floats, so truly under 2^53). Then for any
 * key and any set of its events, with c the key's center (centerSql: an integer within 1 of its
 * mean), the sums of (x - c)^2, which bound those of |x - c|, are exact integers in any order.
 * Across shards the decisions are one node's: sums of integers under 2^53 are exact in any order,
 * and a sum of non-negative doubles that reaches 2^52 stays there in any order; a shard without
 * rows says nothing about integers (no rows at all says false).
 */
export function exactIntegerFieldsOfParts(parts: readonly Record<string, number>[], fields: readonly string[], squares: readonly string[] = []): Record<string, boolean> {
  const withRows = parts.filter((p) => Number(p.__n) > 0);
  const rows = withRows.reduce((n, p) => n + Number(p.__n), 0);
  const total = (column: string): number => withRows.reduce((s, p) => s + Number(p[column]), 0);
  const out: Record<string, boolean> = {};
  for (const f of fields) out[f] = withRows.length > 0 && withRows.every((p) => Number(p[`__int_${f}`]) === 1) && total(`__abs_${f}`) < 4503599627370496;
  for (const f of squares) out[`__sq_${f}`] = total(`__sqs_${f}`) + rows < 4503599627370496;
  return out;
}
