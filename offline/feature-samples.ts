// Feature samples for the monitor: the value of a windowed feature for each key at the close of each
// tile (of the feature's hop) in which the key had events, i.e. what a reader at that instant is
// served (docs/semantics.md: at t = (j+1)*H the sawtooth window is exactly tiles j-n+1..j). Computed
// inside ClickHouse from the same partial aggregates as point-in-time datasets.
import type { FeaturePlan, ViewPlan } from '../definitions/index.js';
import { COMPLETED_LOADS, eventTable, ident, keyColumn } from './tables.js';
import { centerColumn, centerSql, combinePart, type AggPart, exactPartitionColumns, finalOfColumns, isCentered, isTiledOffline, partsOf, tileOf } from './tile-sql.js';

export interface FeatureSampleOptions {
  /**
   * Fields known to hold, in every row the query reads, integers whose magnitudes add up to under
   * 2^52 (the caller checked, e.g. with exactIntegerFieldsSql). Their compensated sums are then
   * written as the plain sums that the exactness tests would pick anyway: the same doubles, without
   * computing the tests and the unused fold of every tile and window.
   */
  exactFields?: ReadonlySet<string>;
}

/**
 * SELECT returning one row per (key, active tile) with tile close `ts` in [{from:Int64}, {to:Int64}):
 * the view's key fields (named as the event fields, canonical key text), `ts` (ms), and `x0..xn`,
 * one column per feature (all of one hop). Null where a feature has no value (a mean over no values).
 */
export function featureSampleSql(view: ViewPlan, features: readonly FeaturePlan[], options: FeatureSampleOptions = {}): string {
  const hopMs = features[0]!.hopMs;
  if (features.some((f) => f.hopMs !== hopMs || f.windowMs === null || !isTiledOffline(f))) {
    throw new Error('featureSampleSql takes windowed, tiled features of one hop');
  }
  const keys = view.keyFields.map((_, k) => `k${k}`);
  const keyList = keys.join(', ');
  const fields = [...new Set(features.map((f) => f.field).filter((f): f is string => f !== null))];
  const centered = [...new Set(features.filter(isCentered).map((f) => f.field!))];
  const lookbackMs = Math.max(...features.map((f) => f.windowMs!));
  const ctes = [
    `e AS (SELECT ${view.keyFields.map((kf, k) => `${ident(keyColumn(kf))} AS k${k}`).join(', ')}, __ts AS ts${fields.map((f) => `, ${ident(f)}`).join('')} FROM ${ident(eventTable(view.source))} WHERE ${COMPLETED_LOADS} AND __ts >= {from:Int64} - ${lookbackMs} AND __ts < {to:Int64})`,
  ];
  let source = 'e';
  if (centered.length > 0) {
    // (centerSql: the same center bits every run, so a sample never moves across a bin edge between runs)
    ctes.push(`c AS (SELECT ${keyList}, ${centered.map((f) => `${centerSql(f)} AS ${centerColumn(f)}`).join(', ')} FROM e GROUP BY ${keyList})`);
    ctes.push(`ec AS (SELECT * FROM e INNER JOIN c USING (${keyList}))`);
    source = 'ec';
  }
  // A compensated sum of an exact field: the plain-sum branch of its tile aggregate and of its window combination.
  const plainSumOf = (f: FeaturePlan, p: AggPart): boolean => p.combine === 'compensatedSum' && f.field !== null && (options.exactFields?.has(f.field) ?? false);
  const parts = features.flatMap((f, i) =>
    partsOf(f, i).map((p) => ({ ...p, tiles: f.tilesPerWindow!, plain: plainSumOf(f, p), perTs: plainSumOf(f, p) ? `tuple(sum(ifNull(toFloat64(${ident(f.field!)}), 0)), 0.)` : p.perTs })),
  );
  const sizes = [...new Set(parts.map((p) => p.tiles))];
  ctes.push(`t AS (SELECT ${keyList}, ${tileOf('ts', hopMs)} AS j, ${parts.map((p) => `${p.perTs} AS ${p.name}`).join(', ')} FROM ${source} GROUP BY ${keyList}, j)`);
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

/**
 * One row with a column per field (named as the field, Bool): whether every value of it in the
 * source's completed loads is an integer (nulls aside) and their magnitudes add up to under 2^52.
 * Then every compensated sum of some of them is its plain sum (see featureSampleSql's exactFields).
 */
export function exactIntegerFieldsSql(source: string, fields: readonly string[]): string {
  const checks = fields.map((f) => {
    const v = `toFloat64(${ident(f)})`;
    return `toBool(min(ifNull(${v} = floor(${v}), 1)) AND sum(abs(ifNull(${v}, 0))) < 4503599627370496) AS ${ident(f)}`;
  });
  return `SELECT ${checks.join(', ')} FROM ${ident(eventTable(source))} WHERE ${COMPLETED_LOADS}`;
}
