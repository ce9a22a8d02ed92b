// Point-in-time SQL: the value of each requested feature at each spine row's time, computed inside
// ClickHouse with the sawtooth windows of docs/semantics.md (events with tail(t) <= ts < t, where
// tail(t) = floor(t/H)*H - W). Inside a view, keys are dense integer ids of the spine's keys. Per
// (key, ts) the partial aggregates of every feature (one column per distinct part), then per key in
// time order (one table, `pre`, built from per-key arrays: arrayCumSum, arrayFill):
//   sums, counts: prefix sums P; the window is P(< t) - P(< tail(t)), read by an ASOF join on
//                 ts < t and one on ts < tail(t) per (window, hop) (DuckDB's plan). Plain sums
//                 (counts, variance parts) are exact when integers with magnitudes adding up to
//                 under 2^52; compensated sums (sum, mean) are summed in fixed point, the Int128
//                 x * 2^64 of each event's value, exact when every value is a multiple of 2^-64
//                 under 2^62 and their magnitudes add up to under 2^62 (float data included), and
//                 the difference goes back to a double once, so it is the exactly rounded window
//                 sum up to that one rounding. Decided per key and column; other keys take the tile
//                 windows below;
//   min, max:     running extremes within blocks of n + 1 tiles (n = W/H), forward and backward: a
//                 window spans at most two consecutive blocks, the end of one and the start of the
//                 next, read by the join at t and one on ts >= tail(t);
//   last:         the latest present per-(key, ts) value (the tie rule: the greatest; text compares
//                 bytewise, which in UTF-8 is code point order) carried forward, read by the join at
//                 t and kept when inside the window or the ttl;
//   first:        per (key, ts) the smallest value, picked by an ASOF join on ts >= tail(t), kept
//                 only when it is before t;
//   tile windows: (slowWindows) whole tiles [h-n, h-1] summed by a RANGE window over the tile index,
//                 the head tile by running aggregates picked by an ASOF join on ts < t, with
//                 compensated sums folded; for the rows of keys that are not exact and for
//                 approx_percentile, joined by row number.
// prefixOnlySql is the same query without the tile windows, guarded per row by a running flag
// (every prefix up to t exact) that makes it fail otherwise; files are written with it first.
// Variance uses sums of (x - c) and (x - c)^2 with c the key's mean (rounded when the key's values
// are integers, so those sums are integers), so the subtraction does not cancel; sums and means
// carry compensated (sum, compensation) parts (offline/tile-sql.ts). Identifiers come from the
// registry; numbers in the SQL are registry durations.
import { TidemarkError, type FeaturePlan, type Registry, type ViewPlan } from '../definitions/index.js';
import { AGGREGATION_SPECS } from '../definitions/aggregations/index.js';
import { joinKeyColumn, type SpineInfo } from './spine.js';
import { COMPLETED_LOADS, eventTable, ident, keyColumn } from './tables.js';
import { sqlExactIntegerAggregate, sqlFixedFits, sqlFixedPointOfValue, sqlFromFixedPoint, type SqlCombine } from '../definitions/aggregations/index.js';
import { centerColumn, centerSql, combinePart, emptyPart, exactPartitionColumns, finalExpr, isCentered, isTiledOffline, partColumns, partsOf, tileOf } from './tile-sql.js';

export interface RequestedFeature {
  view: ViewPlan;
  feature: FeaturePlan;
  /** Output column: `<view>__<feature>`. */
  column: string;
}

/** Resolve `view:feature` references; unknown ones are errors that list the valid choices. */
export function resolveFeatureRefs(registry: Registry, refs: readonly string[]): RequestedFeature[] {
  const valid = registry.views.flatMap((v) => v.features.map((f) => `${v.name}:${f.name}`));
  if (refs.length === 0) throw new TidemarkError('TM_DATASET_UNKNOWN_FEATURE', 'no features requested: name them as view:feature', { validFeatures: valid });
  const seen = new Set<string>();
  return refs.map((ref, i) => {
    const [viewName, featureName] = ref.split(':');
    const view = registry.views.find((v) => v.name === viewName);
    const feature = view?.features.find((f) => f.name === featureName);
    if (!view || !feature || ref.split(':').length !== 2) {
      throw new TidemarkError('TM_DATASET_UNKNOWN_FEATURE', `unknown feature ${JSON.stringify(ref)} (features[${i}])`, { feature: ref, validFeatures: valid });
    }
    if (seen.has(ref)) throw new TidemarkError('TM_DATASET_UNKNOWN_FEATURE', `feature ${ref} is requested twice`, { feature: ref });
    seen.add(ref);
    return { view, feature, column: `${view.name}__${feature.name}` };
  });
}

/** The join keys the spine must hold for these features. */
export function requiredJoinKeys(features: readonly RequestedFeature[]): string[] {
  return [...new Set(features.flatMap((f) => f.view.joinKeys))];
}

/** A spine column named like a requested feature's output column is refused. */
export function checkNoOutputClash(spineColumns: readonly string[], requested: readonly RequestedFeature[]): void {
  const taken = new Set(spineColumns);
  for (const r of requested) {
    if (taken.has(r.column)) throw new TidemarkError('TM_SPINE_BAD_COLUMN', `spine column ${r.column} clashes with the output column of feature ${r.view.name}:${r.feature.name}`, { column: r.column });
  }
}

/**
 * One SELECT returning the spine's original columns followed by one column per requested feature,
 * in spine row order: one pass over the spine, joined to each group's whole-tile windows and
 * head-tile running aggregates, and to each `last` feature's candidates.
 */
export function pointInTimeSql(requested: readonly RequestedFeature[], spine: SpineInfo): string {
  return pointInTimeQuery(requested, spine, false);
}

/** The message of the error a prefix-only query raises on a row whose prefixes are not all exact. */
// (not a TM_ code: it never leaves the offline store, which then runs the full query)
export const PREFIX_INEXACT = 'tidemark prefix sums inexact';

/**
 * The same SELECT with the prefix form only (no tile windows): per row, whether the key's prefixes
 * up to t are all exact is a running flag of the prefix table, and a row where one is not makes the
 * query fail with PREFIX_INEXACT (throwIf), so its output is never used; then run pointInTimeSql's
 * query instead. On integer data, and on float data that fits the fixed point, it is the same
 * values as pointInTimeSql's without computing the tile windows' tables for no row. Null when a
 * feature has no prefix form (approx_percentile).
 */
export function prefixOnlySql(requested: readonly RequestedFeature[], spine: SpineInfo): string | null {
  if (requested.some((r) => isTiledOffline(r.feature) && !isPrefixable(r.feature))) return null;
  return pointInTimeQuery(requested, spine, true);
}

function pointInTimeQuery(requested: readonly RequestedFeature[], spine: SpineInfo, prefixOnly: boolean): string {
  checkNoOutputClash(spine.columns.map(([n]) => n), requested);
  // prefixOnly: per row, the conditions under which its prefix values are exact.
  const guards: string[] = [];
  const ctes: string[] = [];
  const joins: string[] = [];
  const outputs = new Map<string, string>();
  const spineExtras: string[] = [];
  const spineJoins: string[] = [];
  const views = [...new Set(requested.map((r) => r.view))];

  views.forEach((view, v) => {
    // Inside a view's queries a key is a dense integer id (v<v>_ids, from the spine's distinct keys):
    // grouping, sorting, windows and ASOF joins on one UInt32 instead of the key's strings.
    const keyList = 'id';
    const ids = `v${v}_ids`;
    const keyEq = (alias: string): string => `${alias}.id = sp.v${v}_id`;
    const spineTable = ident(spine.table);
    const spineKeys = view.joinKeys.map((jk) => ident(joinKeyColumn(jk)));
    const idOn = (alias: string, columns: string[]): string => columns.map((c, k) => `${alias}.k${k} = ${c}`).join(' AND ');
    ctes.push(`${ids} AS MATERIALIZED (SELECT *, toUInt32(dense_rank() OVER (ORDER BY ${spineKeys.map((_, k) => `k${k}`).join(', ')})) AS id FROM (SELECT DISTINCT ${spineKeys.map((c, k) => `${c} AS k${k}`).join(', ')} FROM ${spineTable}))`);
    spineJoins.push(`LEFT JOIN ${ids} AS v${v}_i ON ${idOn(`v${v}_i`, spineKeys.map((c) => `s.${c}`))}`);
    spineExtras.push(`v${v}_i.id AS v${v}_id`);
    const mine = requested.filter((r) => r.view === view);
    const fields = [...new Set(mine.map((r) => r.feature.field).filter((f): f is string => f !== null))];
    const centered = [...new Set(mine.filter((r) => isCentered(r.feature)).map((r) => r.feature.field!))];
    const e = `v${v}_e`;
    // Only the events a spine row can see: its keys (the join with the ids), and times from the
    // earliest window start (when every requested feature has a window or a ttl) to the latest spine time.
    const lookbacks = mine.map((r) => (r.feature.windowMs !== null ? r.feature.windowMs + r.feature.hopMs : r.feature.ttlMs));
    const [minT, maxT] = spine.timeRangeMs === undefined ? [`(SELECT min(__t) FROM ${spineTable})`, `(SELECT max(__t) FROM ${spineTable})`] : spine.timeRangeMs.map((t) => `toInt64(${t})`);
    const reach = [COMPLETED_LOADS, `__ts < ${maxT}`, ...(lookbacks.every((l): l is number => l !== null) ? [`__ts >= ${minT} - ${Math.max(...lookbacks)}`] : [])];
    ctes.push(
      `${e} AS (SELECT ${ids}.id AS id, __ts AS ts${fields.map((f) => `, ${ident(f)}`).join('')} FROM ${ident(eventTable(view.source))} AS ev INNER JOIN ${ids} ON ${idOn(ids, view.keyFields.map((kf) => `ev.${ident(keyColumn(kf))}`))} WHERE ${reach.join(' AND ')})`,
    );
    let source = e;
    if (centered.length > 0) {
      // (centerSql: integer centers for integer fields, so the variance's prefix sums can be exact)
      ctes.push(`v${v}_c AS (SELECT ${keyList}, ${centered.map((f) => `${centerSql(f)} AS ${centerColumn(f)}`).join(', ')} FROM ${e} GROUP BY ${keyList})`);
      ctes.push(`v${v}_ec AS (SELECT * FROM ${e} INNER JOIN v${v}_c USING (${keyList}))`);
      source = `v${v}_ec`;
    }

    // Windowed features: per (key, ts) parts, once per view (a part several features share is one
    // column), then prefix sums and per-block running min/max read by ASOF joins (fast path), and,
    // for keys whose sums are not provably exact, the tile windows of slowWindows.
    // A `last` reads the same lookup at t: per (key, ts) its tie rule's value, carried forward over
    // the key's instants as the latest present value and its instant.
    const windowed = mine.filter((r) => isTiledOffline(r.feature));
    const lasts = mine.filter((r) => !isTiledOffline(r.feature) && AGGREGATION_SPECS[r.feature.agg].sql.asof!.from === 'end');
    if (windowed.length > 0 || lasts.length > 0) {
      const parts = windowed.flatMap((r) => partsOf(r.feature, requested.indexOf(r)));
      const columnOf = new Map<string, string>();
      const columns: { name: string; perTs: string; combine: SqlCombine }[] = [];
      for (const p of parts) {
        const same = columns.find((c) => c.perTs === p.perTs && c.combine === p.combine);
        if (same) columnOf.set(p.name, same.name);
        else {
          const name = `c${columns.length}`;
          columns.push({ name, perTs: p.perTs, combine: p.combine });
          columnOf.set(p.name, name);
        }
      }
      const picks: { name: string; perTs: string }[] = [];
      const pickOf = new Map<RequestedFeature, string>();
      for (const r of lasts) {
        const perTs = AGGREGATION_SPECS[r.feature.agg].sql.asof!.perTs(ident(r.feature.field!));
        const same = picks.find((x) => x.perTs === perTs) ?? picks[picks.push({ name: `l${picks.length}`, perTs }) - 1]!;
        pickOf.set(r, same.name);
      }
      const fast = windowed.filter((r) => isPrefixable(r.feature));
      const fastColumns = new Set(fast.flatMap((r) => partsOf(r.feature, requested.indexOf(r)).map((p) => columnOf.get(p.name)!)));
      const sums = columns.filter((c) => fastColumns.has(c.name) && (c.combine === 'sum' || c.combine === 'compensatedSum'));
      // A compensated sum's prefix form: per (key, ts) the exact fixed-point sum of its field's
      // values (<c>_q, Int128), whether they all fit the fixed point (<c>_f) and their magnitudes
      // (<c>_m). The field: that of the features reading the column (sum and mean: the values summed).
      const fieldOf = new Map<string, string>();
      for (const r of fast) for (const p of partsOf(r.feature, requested.indexOf(r))) if (p.combine === 'compensatedSum') fieldOf.set(columnOf.get(p.name)!, r.feature.field!);
      const fixedColumns = sums.filter((c) => c.combine === 'compensatedSum').flatMap((c) => {
        const x = `toFloat64(${ident(fieldOf.get(c.name)!)})`;
        return [`sum(${sqlFixedPointOfValue(`ifNull(${x}, 0.)`)}) AS ${c.name}_q`, `min(ifNull(${sqlFixedFits(x)}, 1)) AS ${c.name}_f`, `sum(abs(ifNull(${x}, 0.))) AS ${c.name}_m`];
      });
      // With prefixOnly, the compensated pairs themselves are read by nothing (no tile windows).
      const ptsColumns = [...columns.filter((c) => !(prefixOnly && c.combine === 'compensatedSum' && sums.includes(c))), ...picks];
      const pts = `v${v}_pts`;
      // Read once with prefixOnly (by the prefix table), so streamed, not held.
      ctes.push(`${pts} AS ${prefixOnly ? '' : 'MATERIALIZED '}(SELECT ${keyList}, ts, ${[...ptsColumns.map((c) => `${c.perTs} AS ${c.name}`), ...fixedColumns].join(', ')} FROM ${source} GROUP BY ${keyList}, ts)`);
      // Blocks of n + 1 tiles for each (hop, n) of a min or max: a window (n whole tiles and the head
      // tile cut at t) spans at most two consecutive blocks.
      const blockOf = (f: FeaturePlan): string => `${f.hopMs}_${f.tilesPerWindow! + 1}`;
      const blocks = new Map<string, { hopMs: number; size: number; columns: Set<string> }>();
      for (const r of fast) {
        for (const p of partsOf(r.feature, requested.indexOf(r))) {
          const c = columns.find((x) => x.name === columnOf.get(p.name))!;
          if (c.combine !== 'min' && c.combine !== 'max') continue;
          const b = blocks.get(blockOf(r.feature)) ?? blocks.set(blockOf(r.feature), { hopMs: r.feature.hopMs, size: r.feature.tilesPerWindow! + 1, columns: new Set() }).get(blockOf(r.feature))!;
          b.columns.add(c.name);
        }
      }
      const pre = `v${v}_pre`;
      const running = `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`;
      // Per key, its instants in time order as arrays (one sort of (ts, ...) tuples per key), where
      // running sums are arrayCumSum (left to right, as a running window adds) and the latest present
      // value arrayFill; then one row per instant again (ARRAY JOIN). Window functions would cost a
      // call per row and function (most of this table's time, measured).
      const items: string[] = []; // tuple elements after ts: element i is at index i + 2
      const at = (expr: string): string => `tupleElement(__r, ${items.push(expr) + 1})`;
      const arrayed: string[] = [];
      const outer: string[] = [];
      for (const x of picks) {
        const vals = at(x.name);
        arrayed.push(`arrayFill((v) -> isNotNull(v), ${vals}) AS ${x.name}_v`, `arrayFill((v) -> isNotNull(v), arrayMap((t, v) -> if(isNull(v), NULL, t), tupleElement(__r, 1), ${vals})) AS ${x.name}_t`);
        outer.push(`${x.name}_v`, `${x.name}_t`);
      }
      for (const c of sums) {
        const vals = at(c.combine === 'compensatedSum' ? `${c.name}_q` : c.name);
        arrayed.push(`arrayCumSum(${vals}) AS ${c.name}_p`);
        outer.push(`${c.name}_p`);
      }
      const blockColumns = new Set([...blocks.values()].flatMap((b) => [...b.columns]));
      for (const name of blockColumns) arrayed.push(`${at(name)} AS ${name}`);
      for (const [id, b] of blocks) {
        const blk = floorDiv(tileOf('ts', b.hopMs), b.size);
        outer.push(`${blk} AS b${id}`);
        for (const name of b.columns) {
          const c = columns.find((x) => x.name === name)!;
          // Within the block, up to this instant and from it on (a window spans the end of one
          // block and the start of the next).
          outer.push(`${c.combine}(${name}) OVER (PARTITION BY ${keyList}, ${blk} ORDER BY ts ${running}) AS ${name}_pm${id}`, `${c.combine}(${name}) OVER (PARTITION BY ${keyList}, ${blk} ORDER BY ts DESC ${running}) AS ${name}_sm${id}`);
        }
      }
      if (prefixOnly && sums.length > 0) {
        // Whether every prefix of every sum column up to this instant is exact: the running count of
        // instants that break the rule is 0, and the running magnitudes stay under the bound (a
        // running double sum of non-negative terms: for plain sums of integers exact below 2^53,
        // and for the fixed point's 2^62 bound off by far less than its factor 2 of slack to Int128).
        const [plain, fixed] = [sums.filter((c) => c.combine === 'sum'), sums.filter((c) => c.combine === 'compensatedSum')];
        const bad = at(`toUInt32(${[...plain.map((c) => `NOT (${c.name} = floor(${c.name}))`), ...fixed.map((c) => `NOT ${c.name}_f`)].join(' OR ')})`);
        const ok = [`arrayMap((n) -> n = 0, arrayCumSum(${bad}))`];
        if (plain.length > 0) ok.push(`arrayMap((m) -> m < 4503599627370496, arrayCumSum(${at(plain.map((c) => `abs(toFloat64(${c.name}))`).join(' + '))}))`);
        if (fixed.length > 0) ok.push(`arrayMap((m) -> m < 4.611686018427388e18, arrayCumSum(${at(fixed.map((c) => `${c.name}_m`).join(' + '))}))`);
        arrayed.push(`arrayMap((${ok.map((_, i) => `o${i}`).join(', ')}) -> ${ok.map((_, i) => `o${i}`).join(' AND ')}, ${ok.join(', ')}) AS __ok`);
        outer.push('__ok');
      }
      const byKeyArrays = `(SELECT ${keyList}, arraySort(groupArray(tuple(ts${items.map((x) => `, ${x}`).join('')}))) AS __r FROM ${pts} GROUP BY ${keyList})`;
      ctes.push(`${pre} AS MATERIALIZED (SELECT ${keyList}, ts${outer.map((x) => `, ${x}`).join('')} FROM ${byKeyArrays} ARRAY JOIN tupleElement(__r, 1) AS ts${arrayed.map((x) => `, ${x}`).join('')})`);
      // Per key and sum column: whether every prefix sum is exact (integers, magnitudes adding up to
      // under 2^52), so that differences of prefixes are the window's plain sum, which is then its
      // compensated sum (compensation 0).
      const exactKeys = `v${v}_x`;
      if (sums.length > 0 && !prefixOnly) {
        ctes.push(`${exactKeys} AS (SELECT ${keyList}, ${sums.map((c) => `${c.combine === 'sum' ? sqlExactIntegerAggregate(`tuple(toFloat64(${c.name}), 0.)`) : `(min(${c.name}_f) AND sum(${c.name}_m) < 4.611686018427388e18)`} AS ${c.name}_x`).join(', ')} FROM ${pts} GROUP BY ${keyList})`);
        joins.push(`LEFT JOIN ${exactKeys} AS v${v}_xk ON ${keyEq(`v${v}_xk`)}`);
      }
      const exactOf = (r: RequestedFeature): string => {
        const xs = [...new Set(partsOf(r.feature, requested.indexOf(r)).map((p) => columnOf.get(p.name)!))].filter((n) => sums.some((c) => c.name === n));
        return xs.length === 0 ? '1' : xs.map((n) => `ifNull(v${v}_xk.${n}_x, 1)`).join(' AND ');
      };
      // Up to t: the key's latest instant before t.
      const up = `v${v}_up`;
      if (prefixOnly && sums.length > 0) guards.push(`ifNull(v${v}_up.__ok, 1)`);
      joins.push(`ASOF LEFT JOIN (SELECT ${keyList}, ts, ${[...(prefixOnly && sums.length > 0 ? ['__ok'] : []), ...picks.flatMap((x) => [`${x.name}_v`, `${x.name}_t`]), ...sums.map((c) => `${c.name}_p`), ...[...blocks].flatMap(([id, b]) => [`b${id}`, ...[...b.columns].map((n) => `${n}_pm${id}`)])].join(', ')} FROM ${pre}) AS ${up} ON ${keyEq(up)} AND ${up}.ts < sp.__t`);
      for (const r of lasts) {
        const f = r.feature;
        const [lv, lt] = [`${up}.${pickOf.get(r)}_v`, `${up}.${pickOf.get(r)}_t`];
        const lower = f.windowMs !== null ? `${tileOf('sp.__t', f.hopMs)} * ${f.hopMs} - ${f.windowMs}` : f.ttlMs !== null ? `sp.__t - ${f.ttlMs}` : null;
        outputs.set(r.column, lower === null ? lv : `if(${lt} >= ${lower}, ${lv}, NULL)`);
      }
      // At tail(t), per (window, hop): the key's latest instant before the window start, whose
      // prefix sums are P(< tail(t)) (none: 0); and, for a min or max, its earliest instant at or
      // after the window start, where the block's suffix extremes are read.
      const tailOf = (f: FeaturePlan): string => `${f.windowMs}_${f.hopMs}`;
      const tails = [...new Set(fast.map((r) => tailOf(r.feature)))];
      for (const id of tails) {
        const mineHere = fast.filter((r) => tailOf(r.feature) === id);
        const f0 = mineHere[0]!.feature;
        const lo = `v${v}_t${id}`;
        spineExtras.push(`${tileOf('__t', f0.hopMs)} * ${f0.hopMs} - ${f0.windowMs!} AS ${lo}_start`);
        const needed = new Set(mineHere.flatMap((r) => partsOf(r.feature, requested.indexOf(r)).map((p) => columnOf.get(p.name)!)));
        const bid = blockOf(f0);
        const sumCols = sums.filter((c) => needed.has(c.name)).map((c) => `${c.name}_p`);
        if (sumCols.length > 0) joins.push(`ASOF LEFT JOIN (SELECT ${keyList}, ts, ${sumCols.join(', ')} FROM ${pre}) AS ${lo} ON ${keyEq(lo)} AND ${lo}.ts < sp.${lo}_start`);
        const lom = `${lo}m`;
        if (blocks.has(bid)) {
          const cols = [`b${bid}`, ...[...blocks.get(bid)!.columns].filter((n) => needed.has(n)).map((n) => `${n}_sm${bid}`)];
          joins.push(`ASOF LEFT JOIN (SELECT ${keyList}, ts, ${cols.join(', ')} FROM ${pre}) AS ${lom} ON ${keyEq(lom)} AND ${lom}.ts >= sp.${lo}_start`);
          const b = blocks.get(bid)!;
          spineExtras.push(`${floorDiv(tileOf('__t', b.hopMs), b.size)} AS ${lo}_b1`, `${floorDiv(`${tileOf('__t', b.hopMs)} - ${f0.tilesPerWindow!}`, b.size)} AS ${lo}_b0`);
        }
        for (const r of mineHere) {
          const i = requested.indexOf(r);
          const combine = new Map(partsOf(r.feature, i).map((p) => [p.name, p.combine]));
          const value = AGGREGATION_SPECS[r.feature.agg].sql.final((suffix) => {
            const name = columnOf.get(`f${i}_${suffix}`)!;
            const how = combine.get(`f${i}_${suffix}`);
            switch (how) {
              case 'compensatedSum':
                // The same difference in fixed point (Int128), back to a double once.
                return sqlFromFixedPoint(`ifNull(${up}.${name}_p, 0) - ifNull(${lo}.${name}_p, 0)`);
              case 'sum':
                // P(< t) - P(< tail(t)), each 0 when the key has no instant before it
                // (in the prefix's own type: UInt64 - UInt64 is Int64 in ClickHouse)
                return `CAST(ifNull(${up}.${name}_p, 0) - ifNull(${lo}.${name}_p, 0), toTypeName(assumeNotNull(${up}.${name}_p)))`;
              case 'min':
              case 'max': {
                const prefix = `if(${up}.b${bid} = sp.${lo}_b1, ${up}.${name}_pm${bid}, NULL)`;
                const suffixPart = `if(${lom}.ts < sp.__t AND ${lom}.b${bid} = sp.${lo}_b0 AND sp.${lo}_b0 != sp.${lo}_b1, ${lom}.${name}_sm${bid}, NULL)`;
                return `multiIf(isNull(${prefix}), ${suffixPart}, isNull(${suffixPart}), ${prefix}, ${how === 'min' ? 'least' : 'greatest'}(${prefix}, ${suffixPart}))`;
              }
              default:
                throw new Error(`part ${suffix} has no prefix form`);
            }
          }, r.feature);
          outputs.set(r.column, value);
        }
      }
      // The rest: keys with a sum that is not exact, and features with no prefix form (percentiles).
      const slow = windowed.filter((r) => !isPrefixable(r.feature) || partsOf(r.feature, requested.indexOf(r)).some((p) => p.combine === 'sum' || p.combine === 'compensatedSum'));
      if (slow.length > 0 && !prefixOnly) {
        // Computed for the spine rows that need it only (none on integer data), into one table
        // joined by row number: one join instead of two per hop.
        const slowKeys = sums.length === 0 ? null : `v${v}_sk`;
        if (slowKeys !== null) ctes.push(`${slowKeys} AS (SELECT ${keyList} FROM ${exactKeys} WHERE NOT (${sums.map((c) => `${c.name}_x`).join(' AND ')}))`);
        const [slowExtras, slowJoins, slowSelect] = [[] as string[], [] as string[], [] as string[]];
        for (const hopMs of [...new Set(slow.map((r) => r.feature.hopMs))]) {
          const group = slow.filter((r) => r.feature.hopMs === hopMs);
          const allKeys = slowKeys === null || group.some((r) => !isPrefixable(r.feature));
          const g = `v${v}_h${hopMs}`;
          const [w, r] = slowWindows({ ctes, spineExtras: slowExtras, joins: slowJoins, keyList, keyEq, spineIds: `(SELECT s.__t AS __t, i.id AS id FROM ${spineTable} AS s INNER JOIN ${ids} AS i ON ${idOn('i', spineKeys.map((c) => `s.${c}`))})`, pts, columnOf, group: group.map((x) => ({ feature: x.feature, i: requested.indexOf(x) })), hopMs, g, keysIn: allKeys ? null : slowKeys });
          for (const x of group) slowSelect.push(`${finalExpr(x.feature, requested.indexOf(x), w, r)} AS s${requested.indexOf(x)}`);
        }
        const allRows = slowKeys === null || slow.some((r) => !isPrefixable(r.feature));
        const sl = `v${v}_slow`;
        ctes.push(
          `${sl} AS (SELECT sp.__row AS __row, ${slowSelect.join(', ')} FROM (SELECT s.__row AS __row, s.__t AS __t, i.id AS v${v}_id${slowExtras.map((x) => `, ${x}`).join('')} FROM ${spineTable} AS s INNER JOIN ${ids} AS i ON ${idOn('i', spineKeys.map((c) => `s.${c}`))}${allRows ? '' : ` WHERE i.id IN (SELECT id FROM ${slowKeys})`}) AS sp ${slowJoins.join(' ')})`,
        );
        joins.push(`LEFT JOIN ${sl} ON ${sl}.__row = sp.__row`);
        for (const x of slow) {
          const slowValue = `${sl}.s${requested.indexOf(x)}`;
          // In the fast value's type (the join makes the slow one Nullable; it is present where used).
          const fastValue = outputs.get(x.column);
          outputs.set(x.column, isPrefixable(x.feature) ? `CAST(if(${exactOf(x)}, ${fastValue}, ${slowValue}), toTypeName(${fastValue}))` : slowValue);
        }
      }
    }

    // first: per (key, ts) the value its tie rule keeps, picked by an ASOF join from the window
    // start (ts >= tail(t)).
    for (const r of mine.filter((x) => !isTiledOffline(x.feature) && !lasts.includes(x))) {
      const f = r.feature;
      const asof = AGGREGATION_SPECS[f.agg].sql.asof!;
      const l = `v${v}_pick${requested.indexOf(r)}`;
      ctes.push(`${l} AS (SELECT ${keyList}, ts, ${asof.perTs(ident(f.field!))} AS v FROM ${e} WHERE ${ident(f.field!)} IS NOT NULL GROUP BY ${keyList}, ts)`);
      spineExtras.push(`${tileOf('__t', f.hopMs)} * ${f.hopMs} - ${f.windowMs!} AS ${l}_start`);
      joins.push(`ASOF LEFT JOIN ${l} ON ${keyEq(l)} AND ${l}.ts >= sp.${l}_start`);
      outputs.set(r.column, `if(${l}.ts < sp.__t, ${l}.v, NULL)`);
    }
  });

  const select = [...spine.columns.map(([n]) => `sp.${ident(n)} AS ${ident(n)}`), ...requested.map((r) => `${outputs.get(r.column)} AS ${ident(r.column)}`)];
  const spineQuery = `(SELECT s.*, ${spineExtras.join(', ')} FROM ${ident(spine.table)} AS s ${spineJoins.join(' ')}) AS sp`;
  const where = guards.length === 0 ? '' : ` WHERE throwIf(NOT (${guards.join(' AND ')}), '${PREFIX_INEXACT}') = 0`;
  return `WITH ${ctes.join(',\n')}\nSELECT ${select.join(', ')} FROM ${spineQuery} ${joins.join(' ')}${where} ORDER BY sp.__row SETTINGS join_use_nulls = 1, enable_materialized_cte = 1`;
}

/** Whether every part of a feature has a prefix form: sums (differenced) and min/max (per block). */
function isPrefixable(f: FeaturePlan): boolean {
  return partsOf(f, 0).every((p) => p.combine !== 'sumMap');
}

/** floor(x / n) for an integer expression x (intDiv truncates toward zero). */
function floorDiv(x: string, n: number): string {
  return `intDiv((${x}) - positiveModulo(${x}, ${n}), ${n})`;
}

interface SlowWindowsInput {
  ctes: string[];
  spineExtras: string[];
  joins: string[];
  keyList: string;
  keyEq: (alias: string) => string;
  /** The spine's times (__t) with their key ids (id). */
  spineIds: string;
  /** The view's per (key, ts) parts table and the column each feature part reads. */
  pts: string;
  columnOf: Map<string, string>;
  group: { feature: FeaturePlan; i: number }[];
  hopMs: number;
  g: string;
  /** A table of the keys to compute (null: all). */
  keysIn: string | null;
}

/**
 * The tile-window form, for keys whose sums are not provably exact and for parts with no prefix
 * form: whole tiles [h-n, h-1] summed by a RANGE window over the tile index and read at probe rows
 * (key, h-1) added for the spine's tiles; the head tile h by running aggregates over its instants,
 * picked by an ASOF join on ts < t. Compensated sums fold their (sum, compensation) pairs. Returns
 * the aliases of the whole-tile and head-tile joins.
 */
function slowWindows(o: SlowWindowsInput): [string, string] {
  const { keyList, g, hopMs } = o;
  const head = `${g}_head`;
  o.spineExtras.push(`${tileOf('__t', hopMs)} AS ${head}`);
  const partWindow = new Map<string, number>();
  const parts = o.group.flatMap(({ feature, i }) => {
    const ps = partsOf(feature, i);
    for (const p of ps) partWindow.set(p.name, feature.tilesPerWindow!);
    return ps;
  });
  const sizes = [...new Set(o.group.map((x) => x.feature.tilesPerWindow!))];
  const only = (keys: string): string => (o.keysIn === null ? '' : ` WHERE (${keys}) IN (SELECT ${keyList} FROM ${o.keysIn})`);
  // Referenced twice (tiles and running sums): materialized once.
  o.ctes.push(`${g}_pts AS MATERIALIZED (SELECT ${keyList}, ts, ${tileOf('ts', hopMs)} AS j, ${parts.map((p) => `${o.columnOf.get(p.name)} AS ${p.name}`).join(', ')} FROM ${o.pts}${only(keyList)})`);
  // The joined tables hold plain columns (partColumns).
  const flat = parts.flatMap(partColumns).join(', ');
  // Rows with their compensated sums' exactPartitionColumns, for the window over `partitionBy`.
  const withExact = (rows: string, partitionBy: string): string => {
    const exact = exactPartitionColumns(parts, partitionBy);
    return exact.length === 0 ? rows : `(SELECT *, ${exact.join(', ')} FROM ${rows})`;
  };
  const tiles =
    // A tile's instants folded in time order: the same bits whatever order the rows arrive in.
    `(SELECT ${keyList}, j, 0 AS probe, ${parts.map((p) => `${combinePart(p, undefined, 'ts')} AS ${p.name}`).join(', ')} FROM ${g}_pts GROUP BY ${keyList}, j` +
    ` UNION ALL SELECT DISTINCT id, ${tileOf('__t', hopMs)} - 1 AS j, 1 AS probe, ${parts.map((p) => `${emptyPart(p)} AS ${p.name}`).join(', ')} FROM ${o.spineIds}${only('id')})`;
  o.ctes.push(
    `${g}_win AS (SELECT ${keyList}, j, ${flat} FROM (SELECT ${keyList}, j, probe, ${parts.map((p) => `${combinePart(p, `w${partWindow.get(p.name)}`)} AS ${p.name}`).join(', ')} FROM ${withExact(tiles, keyList)}` +
      ` WINDOW ${sizes.map((n) => `w${n} AS (PARTITION BY ${keyList} ORDER BY j RANGE BETWEEN ${n - 1} PRECEDING AND CURRENT ROW)`).join(', ')}) WHERE probe = 1)`,
  );
  o.ctes.push(
    `${g}_run AS (SELECT ${keyList}, j, ts, ${flat} FROM (SELECT ${keyList}, j, ts, ${parts.map((p) => `${combinePart(p, 'r')} AS ${p.name}`).join(', ')} FROM ${withExact(`${g}_pts`, `${keyList}, j`)} WINDOW r AS (PARTITION BY ${keyList}, j ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)))`,
  );
  o.joins.push(`LEFT JOIN ${g}_win AS ${g}_w ON ${o.keyEq(`${g}_w`)} AND ${g}_w.j = sp.${head} - 1`);
  o.joins.push(`ASOF LEFT JOIN ${g}_run AS ${g}_r ON ${o.keyEq(`${g}_r`)} AND ${g}_r.j = sp.${head} AND ${g}_r.ts < sp.__t`);
  return [`${g}_w`, `${g}_r`];
}
