// Point-in-time SQL: the value of each requested feature at each spine row's time, computed inside
// ClickHouse with the sawtooth windows of docs/semantics.md (events with tail(t) <= ts < t, where
// tail(t) = floor(t/H)*H - W). For a feature with hop H and window W = n*H at a row with time t
// in tile h = floor(t/H):
//   whole tiles   [h-n, h-1]: per-key tile aggregates, summed by a RANGE window over the tile index
//                 and read at "probe" rows (key, h-1) added for the spine's tiles, so keys with no
//                 tile at h-1 still get their window;
//   head tile h,  ts < t:     running aggregates over the tile's distinct event times, picked by an
//                 ASOF join on ts < t (strict: a row never sees its own instant);
//   last:         per (key, ts) the greatest value (the tie rule; text compares bytewise, which in
//                 UTF-8 is code point order), picked by an ASOF join on ts < t, kept only when it is
//                 inside the window or the ttl;
//   first:        per (key, ts) the smallest value, picked by an ASOF join on ts >= tail(t), kept
//                 only when it is before t.
// Variance uses sums of (x - c) and (x - c)^2 with c the key's mean, so the subtraction does not
// cancel; sums and means carry compensated (sum, compensation) parts (offline/tile-sql.ts). Identifiers come from the registry; numbers in the SQL are registry durations.
import { TidemarkError, type FeaturePlan, type Registry, type ViewPlan } from '../definitions/index.js';
import { AGGREGATION_SPECS } from '../definitions/aggregations/index.js';
import { joinKeyColumn, type SpineInfo } from './spine.js';
import { COMPLETED_LOADS, eventTable, ident, keyColumn } from './tables.js';
import { centerColumn, combinePart, emptyPart, exactPartitionColumns, finalExpr, isCentered, isTiledOffline, partColumns, partsOf, tileOf } from './tile-sql.js';

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
  checkNoOutputClash(spine.columns.map(([n]) => n), requested);
  const ctes: string[] = [];
  const joins: string[] = [];
  const outputs = new Map<string, string>();
  const spineExtras: string[] = [];
  const views = [...new Set(requested.map((r) => r.view))];

  views.forEach((view, v) => {
    const keys = view.keyFields.map((_, k) => `k${k}`);
    const keyList = keys.join(', ');
    const spineKey = (k: number): string => `sp.v${v}_k${k}`;
    const keyEq = (alias: string): string => keys.map((k, i) => `${alias}.${k} = ${spineKey(i)}`).join(' AND ');
    view.joinKeys.forEach((jk, k) => spineExtras.push(`${ident(joinKeyColumn(jk))} AS v${v}_k${k}`));
    const mine = requested.filter((r) => r.view === view);
    const fields = [...new Set(mine.map((r) => r.feature.field).filter((f): f is string => f !== null))];
    const centered = [...new Set(mine.filter((r) => isCentered(r.feature)).map((r) => r.feature.field!))];
    const e = `v${v}_e`;
    // Only the events a spine row can see: its keys, and times from the earliest window start (when
    // every requested feature has a window or a ttl) to the latest spine time.
    const lookbacks = mine.map((r) => (r.feature.windowMs !== null ? r.feature.windowMs + r.feature.hopMs : r.feature.ttlMs));
    const spineTable = ident(spine.table);
    const spineKeyTuple = view.joinKeys.map((jk) => ident(joinKeyColumn(jk))).join(', ');
    const eventKeyTuple = view.keyFields.map((kf) => ident(keyColumn(kf))).join(', ');
    const [minT, maxT] = spine.timeRangeMs === undefined ? [`(SELECT min(__t) FROM ${spineTable})`, `(SELECT max(__t) FROM ${spineTable})`] : spine.timeRangeMs.map((t) => `toInt64(${t})`);
    const reach = [
      COMPLETED_LOADS,
      `(${eventKeyTuple}) IN (SELECT DISTINCT ${spineKeyTuple} FROM ${spineTable})`,
      `__ts < ${maxT}`,
      ...(lookbacks.every((l): l is number => l !== null) ? [`__ts >= ${minT} - ${Math.max(...lookbacks)}`] : []),
    ];
    ctes.push(
      `${e} AS (SELECT ${view.keyFields.map((kf, k) => `${ident(keyColumn(kf))} AS k${k}`).join(', ')}, __ts AS ts${fields.map((f) => `, ${ident(f)}`).join('')} FROM ${ident(eventTable(view.source))} WHERE ${reach.join(' AND ')})`,
    );
    let source = e;
    if (centered.length > 0) {
      ctes.push(`v${v}_c AS (SELECT ${keyList}, ${centered.map((f) => `ifNull(avg(${ident(f)}), 0) AS ${centerColumn(f)}`).join(', ')} FROM ${e} GROUP BY ${keyList})`);
      ctes.push(`v${v}_ec AS (SELECT * FROM ${e} INNER JOIN v${v}_c USING (${keyList}))`);
      source = `v${v}_ec`;
    }

    // Windowed features, one block per hop.
    const windowed = mine.filter((r) => isTiledOffline(r.feature));
    for (const hopMs of [...new Set(windowed.map((r) => r.feature.hopMs))]) {
      const group = windowed.filter((r) => r.feature.hopMs === hopMs);
      const g = `v${v}_h${hopMs}`;
      const head = `${g}_head`;
      spineExtras.push(`${tileOf('__t', hopMs)} AS ${head}`);
      const partWindow = new Map<string, number>();
      const parts = group.flatMap((r) => {
        const ps = partsOf(r.feature, requested.indexOf(r));
        for (const p of ps) partWindow.set(p.name, r.feature.tilesPerWindow!);
        return ps;
      });
      const sizes = [...new Set(group.map((r) => r.feature.tilesPerWindow!))];
      // Referenced twice (tiles and running sums): materialized once.
      ctes.push(`${g}_pts AS MATERIALIZED (SELECT ${keyList}, ts, ${tileOf('ts', hopMs)} AS j, ${parts.map((p) => `${p.perTs} AS ${p.name}`).join(', ')} FROM ${source} GROUP BY ${keyList}, ts)`);
      // The joined tables hold plain columns (partColumns).
      const flat = parts.flatMap(partColumns).join(', ');
      // Rows with their compensated sums' exactPartitionColumns, for the window over `partitionBy`.
      const withExact = (rows: string, partitionBy: string): string => {
        const exact = exactPartitionColumns(parts, partitionBy);
        return exact.length === 0 ? rows : `(SELECT *, ${exact.join(', ')} FROM ${rows})`;
      };
      const tiles =
        `(SELECT ${keyList}, j, 0 AS probe, ${parts.map((p) => `${combinePart(p)} AS ${p.name}`).join(', ')} FROM ${g}_pts GROUP BY ${keyList}, j` +
        ` UNION ALL SELECT DISTINCT ${view.joinKeys.map((jk, k) => `${ident(joinKeyColumn(jk))} AS k${k}`).join(', ')}, ${tileOf('__t', hopMs)} - 1 AS j, 1 AS probe, ${parts.map((p) => `${emptyPart(p)} AS ${p.name}`).join(', ')} FROM ${ident(spine.table)})`;
      ctes.push(
        `${g}_win AS (SELECT ${keyList}, j, ${flat} FROM (SELECT ${keyList}, j, probe, ${parts.map((p) => `${combinePart(p, `w${partWindow.get(p.name)}`)} AS ${p.name}`).join(', ')} FROM ${withExact(tiles, keyList)}` +
          ` WINDOW ${sizes.map((n) => `w${n} AS (PARTITION BY ${keyList} ORDER BY j RANGE BETWEEN ${n - 1} PRECEDING AND CURRENT ROW)`).join(', ')}) WHERE probe = 1)`,
      );
      ctes.push(
        `${g}_run AS (SELECT ${keyList}, j, ts, ${flat} FROM (SELECT ${keyList}, j, ts, ${parts.map((p) => `${combinePart(p, 'r')} AS ${p.name}`).join(', ')} FROM ${withExact(`${g}_pts`, `${keyList}, j`)} WINDOW r AS (PARTITION BY ${keyList}, j ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)))`,
      );
      joins.push(`LEFT JOIN ${g}_win AS ${g}_w ON ${keyEq(`${g}_w`)} AND ${g}_w.j = sp.${head} - 1`);
      joins.push(`ASOF LEFT JOIN ${g}_run AS ${g}_r ON ${keyEq(`${g}_r`)} AND ${g}_r.j = sp.${head} AND ${g}_r.ts < sp.__t`);
      for (const r of group) outputs.set(r.column, finalExpr(r.feature, requested.indexOf(r), `${g}_w`, `${g}_r`));
    }

    // Features that pick one event (last, windowed or not; first): per (key, ts) the value its tie
    // rule keeps, picked by an ASOF join from the end (ts < t) or from the window start (ts >= tail(t)).
    for (const r of mine.filter((x) => !isTiledOffline(x.feature))) {
      const f = r.feature;
      const asof = AGGREGATION_SPECS[f.agg].sql.asof!;
      const l = `v${v}_pick${requested.indexOf(r)}`;
      ctes.push(`${l} AS (SELECT ${keyList}, ts, ${asof.perTs(ident(f.field!))} AS v FROM ${e} WHERE ${ident(f.field!)} IS NOT NULL GROUP BY ${keyList}, ts)`);
      if (asof.from === 'start') {
        spineExtras.push(`${tileOf('__t', f.hopMs)} * ${f.hopMs} - ${f.windowMs!} AS ${l}_start`);
        joins.push(`ASOF LEFT JOIN ${l} ON ${keyEq(l)} AND ${l}.ts >= sp.${l}_start`);
        outputs.set(r.column, `if(${l}.ts < sp.__t, ${l}.v, NULL)`);
        continue;
      }
      joins.push(`ASOF LEFT JOIN ${l} ON ${keyEq(l)} AND ${l}.ts < sp.__t`);
      const lower = f.windowMs !== null ? `${tileOf('sp.__t', f.hopMs)} * ${f.hopMs} - ${f.windowMs}` : f.ttlMs !== null ? `sp.__t - ${f.ttlMs}` : null;
      outputs.set(r.column, lower === null ? `${l}.v` : `if(${l}.ts >= ${lower}, ${l}.v, NULL)`);
    }
  });

  const select = [...spine.columns.map(([n]) => `sp.${ident(n)} AS ${ident(n)}`), ...requested.map((r) => `${outputs.get(r.column)} AS ${ident(r.column)}`)];
  const spineQuery = `(SELECT *, ${spineExtras.join(', ')} FROM ${ident(spine.table)}) AS sp`;
  return `WITH ${ctes.join(',\n')}\nSELECT ${select.join(', ')} FROM ${spineQuery} ${joins.join(' ')} ORDER BY sp.__row SETTINGS join_use_nulls = 1, enable_materialized_cte = 1`;
}
