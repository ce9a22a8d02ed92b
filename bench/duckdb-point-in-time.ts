// Benchmark baseline: the point-in-time datasets of examples/flights (views origin_delays and
// route_delays) computed by DuckDB (@duckdb/node-api, in memory, default threads) with the
// semantics of docs/semantics.md, so `npm run bench` can set tidemark's time next to DuckDB's.
//
// Written the way a DuckDB user would, independently of offline/point-in-time.ts. With tail(t) =
// floor(t/H)*H - W, a feature at spine time t covers the key's events with tail(t) <= ts < t:
//   - per (key, ts) the events are summed (n, sum, sum of squares, max), plus one sentinel row per
//     key at the smallest BIGINT (so every lookup below finds a row of its key); a running total in
//     (key, ts) order, one streaming pass, gives prefix sums P (partitioned window aggregates cost
//     DuckDB about a microsecond per row each here, several times this plan);
//   - an ASOF LEFT JOIN on ts < t finds P(t), the totals of the key's events before t, and one on
//     ts < tail(t) per (window, hop) finds P(tail); count, sum, mean and stddev come from the
//     difference (integers: exact; variance as (n*ss - s*s) / n^2);
//   - max is not a difference: a window over events and spine rows of the key, ordered by 2*ts + 1
//     for an event and 2*t for a spine row (so a row sits after exactly the events with ts < t),
//     with a per-row frame RANGE 2*(t - tail(t)) PRECEDING AND CURRENT ROW;
//   - last (no window) is the greatest value at the greatest ts < t: the per-(key, ts) max of the
//     row that the ASOF join on ts < t found.
// The float field delay_h (bench/flights-float.ts) is summed the same way, as DOUBLE prefix sums:
// what a DuckDB user would write, but not exact where the values cancel (the bench has the
// reference decide those rows, bench/reference-check.ts).
// Empty windows: count and sum 0, the others NULL. Events that tidemark would reject as bad (a
// missing field or key) are left out. The output keeps the spine's columns and row order and adds
// `<view>__<feature>` columns. compareDatasets checks two such files value by value.
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

export type FlightsView = 'origin_delays' | 'route_delays';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

type Agg = 'count' | 'sum' | 'mean' | 'max' | 'stddev' | 'last';
interface Feature {
  name: string;
  agg: Agg;
  field?: 'delay' | 'distance' | 'delay_h';
  windowMs?: number;
  hopMs?: number;
}
interface ViewSpec {
  /** [spine column, event column] per join key. */
  keys: [string, string][];
  features: Feature[];
}

const VIEWS: Record<FlightsView, ViewSpec> = {
  origin_delays: {
    keys: [['airport', 'origin']],
    features: [
      { name: 'flights_1h', agg: 'count', windowMs: HOUR, hopMs: 5 * MINUTE },
      { name: 'delay_mean_1h', agg: 'mean', field: 'delay', windowMs: HOUR, hopMs: 5 * MINUTE },
      { name: 'delay_mean_1d', agg: 'mean', field: 'delay', windowMs: DAY, hopMs: HOUR },
      { name: 'delay_max_1d', agg: 'max', field: 'delay', windowMs: DAY, hopMs: HOUR },
      { name: 'delay_stddev_7d', agg: 'stddev', field: 'delay', windowMs: 7 * DAY, hopMs: HOUR },
      { name: 'distance_sum_1d', agg: 'sum', field: 'distance', windowMs: DAY, hopMs: HOUR },
      { name: 'last_delay', agg: 'last', field: 'delay' },
      // bench/flights-float.ts: a float field (delay / 60), summed as doubles here
      { name: 'delay_h_mean_1d', agg: 'mean', field: 'delay_h', windowMs: DAY, hopMs: HOUR },
    ],
  },
  route_delays: {
    keys: [['origin', 'origin'], ['destination', 'destination']],
    features: [
      { name: 'flights_7d', agg: 'count', windowMs: 7 * DAY, hopMs: HOUR },
      { name: 'delay_mean_7d', agg: 'mean', field: 'delay', windowMs: 7 * DAY, hopMs: HOUR },
      { name: 'delay_h_mean_7d', agg: 'mean', field: 'delay_h', windowMs: 7 * DAY, hopMs: HOUR },
    ],
  },
};

type Kind = 'exact' | 'sum' | 'stddev';
const kindOf = (agg: Agg): Kind => (agg === 'sum' || agg === 'mean' ? 'sum' : agg === 'stddev' ? 'stddev' : 'exact');

/** Output feature columns of a view with their comparison tolerance, and whether the feature reads float data. */
export function featureColumns(view: FlightsView): { column: string; kind: Kind; float: boolean }[] {
  return VIEWS[view].features.map((f) => ({ column: `${view}__${f.name}`, kind: kindOf(f.agg), float: FLOAT_FIELDS.has(f.field!) }));
}

/** Fields holding non-integer doubles: their prefix sums are plain DOUBLE sums, not exact. */
const FLOAT_FIELDS = new Set<string>(['delay_h']);

const lit = (s: string): string => `'${s.replaceAll("'", "''")}'`;

/** tail(t) = floor(t/H)*H - W for a BIGINT expression t. */
const tail = (t: string, f: Feature): string => `(${t} - ((${t} % ${f.hopMs}) + ${f.hopMs}) % ${f.hopMs} - ${f.windowMs})`;

/**
 * The statements of one dataset over tables `ev` (events, keys as k0, k1, ...) and `spine` (with
 * its row number `__row`): two that build tables `pts` and `pre`, then the dataset's SELECT.
 */
export function datasetSql(view: FlightsView): string[] {
  const { keys, features } = VIEWS[view];
  const k = keys.map((_, i) => `k${i}`).join(', ');
  const keyEq = (a: string): string => keys.map((_, i) => `${a}.k${i} = s.k${i}`).join(' AND ');
  const uses = (aggs: Agg[]): string[] => [...new Set(features.filter((f) => aggs.includes(f.agg)).map((f) => f.field!))];
  // Per (key, ts): n events, s_<field> sums, q_<field> sums of squares, m_<field> maxima.
  const sums = ['n', ...uses(['sum', 'mean', 'stddev']).map((x) => `s_${x}`), ...uses(['stddev']).map((x) => `q_${x}`)];
  const maxima = uses(['max', 'last']).map((x) => `m_${x}`);
  const aggOf = (c: string): string => (c === 'n' ? 'count(*)' : c.startsWith('s_') ? `sum(${c.slice(2)})` : c.startsWith('q_') ? `sum(${c.slice(2)} * ${c.slice(2)})` : `max(${c.slice(2)})`);
  const pts = `CREATE TEMP TABLE pts AS SELECT ${k}, ts, ${[...sums, ...maxima].map((c) => `${aggOf(c)} AS ${c}`).join(', ')} FROM ev GROUP BY ALL
    UNION ALL SELECT DISTINCT ${k}, -9223372036854775808, ${[...sums.map(() => '0'), ...maxima.map(() => 'NULL')].join(', ')} FROM ev`;
  // Running totals in (key, ts) order: one streaming pass; differences within a key are exact.
  const pre = `CREATE TEMP TABLE pre AS SELECT ${k}, ts, ${[...maxima, ...sums.map((c) => `(sum(${c}) OVER w)${FLOAT_FIELDS.has(c.slice(2)) ? '' : '::BIGINT'} AS ${c}`)].join(', ')}
    FROM pts WINDOW w AS (ORDER BY ${k}, ts ROWS UNBOUNDED PRECEDING)`;
  // One ASOF join at t, one at each distinct tail.
  const bound = (f: Feature): string => `${f.windowMs}/${f.hopMs}`;
  const tails = [...new Set(features.filter((f) => f.windowMs !== undefined && f.agg !== 'max').map(bound))];
  const joins = [`ASOF LEFT JOIN pre up ON ${keyEq('up')} AND s.ts > up.ts`];
  tails.forEach((b, i) => joins.push(`ASOF LEFT JOIN pre lo${i} ON ${keyEq(`lo${i}`)} AND ${tail('s.ts', features.find((f) => bound(f) === b)!)} > lo${i}.ts`));
  const maxes = features.filter((f) => f.agg === 'max');
  if (maxes.length > 0) joins.push('LEFT JOIN mx USING (__row)');
  const value = (f: Feature): string => {
    const d = (c: string): string => `(up.${c} - lo${tails.indexOf(bound(f))}.${c})`;
    const [n, s, q] = [d('n'), d(`s_${f.field}`), d(`q_${f.field}`)];
    switch (f.agg) {
      case 'count':
        return `coalesce(${n}, 0)`;
      case 'sum':
        return `coalesce(${s}, 0)`;
      case 'mean':
        return `${s} / nullif(${n}, 0)`;
      case 'stddev': // exact integer numerator and denominator
        return `sqrt((${n}::HUGEINT * ${q} - ${s}::HUGEINT * ${s}) / nullif(${n}::HUGEINT * ${n}, 0))`;
      case 'last':
        return `up.m_${f.field}`;
      case 'max':
        return `mx.${f.name}`;
    }
  };
  // max: one window over the key's events and spine rows, with a per-row frame reaching tail(t).
  const mx = `mx AS (SELECT * FROM (SELECT __row, ${maxes
    .map((f) => `max(m_${f.field}) OVER (PARTITION BY ${k} ORDER BY o RANGE BETWEEN coalesce(2 * (t - ${tail('t', f)}), 0) PRECEDING AND CURRENT ROW) AS ${f.name}`)
    .join(', ')} FROM (SELECT __row, ${k}, ts AS t, 2 * ts AS o, ${maxima.map((c) => `NULL::BIGINT AS ${c}`).join(', ')} FROM sp
      UNION ALL SELECT NULL, ${k}, NULL, 2 * ts + 1, ${maxima.join(', ')} FROM pts WHERE n > 0)) WHERE __row IS NOT NULL)`;
  const select = `WITH sp AS (SELECT *, ${keys.map(([c], i) => `${c} AS k${i}`).join(', ')} FROM spine)${maxes.length > 0 ? `, ${mx}` : ''}
    SELECT s.* EXCLUDE (__row, ${k}), ${features.map((f) => `${value(f)} AS "${view}__${f.name}"`).join(', ')}
    FROM sp s ${joins.join(' ')} ORDER BY s.__row`;
  return [pts, pre, select];
}

async function withDuckDb<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    return await fn(connection);
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/**
 * Builds the point-in-time dataset of `view` for the spine (key columns airport, or origin and
 * destination; ts, BIGINT epoch ms; any other columns pass through) and writes it to `outParquet`
 * as Parquet. `seconds`
 * covers everything from reading both Parquet files to the written output; `loadSeconds` is the
 * part spent reading the events into memory.
 */
export async function duckdbDataset(opts: { eventsParquet: string; spineParquet: string; view: FlightsView; outParquet: string }): Promise<{ rows: number; seconds: number; loadSeconds: number }> {
  return withDuckDb(async (c) => {
    const start = performance.now();
    // The flights' date is a naive TIMESTAMP, read as UTC. Events with a missing field or an empty
    // key fail the source's schema in tidemark (bad events) and take no part.
    // delay_h: the file's column (bench/flights-float.ts), or the same double computed from delay.
    const hasDelayH = (await c.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${lit(opts.eventsParquet)})`)).getRows().some((r) => r[0] === 'delay_h');
    await c.run(
      `CREATE TEMP TABLE ev AS SELECT ${VIEWS[opts.view].keys.map(([, e], i) => `${e} AS k${i}`).join(', ')}, epoch_ms(date) AS ts, delay, ${hasDelayH ? 'delay_h' : 'delay / 60 AS delay_h'}, distance
       FROM read_parquet(${lit(opts.eventsParquet)})
       WHERE date IS NOT NULL AND delay IS NOT NULL AND distance IS NOT NULL AND origin <> '' AND destination <> ''${hasDelayH ? ' AND delay_h IS NOT NULL' : ''}`,
    );
    const loadSeconds = (performance.now() - start) / 1000;
    await c.run(`CREATE TEMP TABLE spine AS SELECT * EXCLUDE (file_row_number), file_row_number AS __row FROM read_parquet(${lit(opts.spineParquet)}, file_row_number = true)`);
    const [pts, pre, select] = datasetSql(opts.view);
    await c.run(pts!);
    await c.run('DROP TABLE ev');
    await c.run(pre!);
    await c.run(`COPY (${select}) TO ${lit(opts.outParquet)} (FORMAT parquet)`);
    const rows = Number((await c.runAndReadAll('SELECT count(*) FROM spine')).getRows()[0]![0]);
    return { rows, seconds: (performance.now() - start) / 1000, loadSeconds };
  });
}

/**
 * Writes a random spine for `view` to `outParquet`: columns airport (or origin, destination), ts
 * (epoch ms) and id (= row index). Keys are those of random flights (so busy airports are drawn
 * often); per row, by id: a uniform time over the data's span plus a day either side, the drawn
 * flight's own departure time (a row must not see its own event), or a time on a 5m or 1h tile
 * edge. One row in 1 000 has a key with no events. Deterministic for a given `seed`.
 */
export async function writeRandomSpine(opts: { eventsParquet: string; view: FlightsView; rows: number; outParquet: string; seed?: number }): Promise<void> {
  const seed = opts.seed ?? 1;
  const keys = opts.view === 'origin_delays' ? `CASE WHEN s.id % 1000 = 999 THEN 'ZZZ' ELSE e.origin END AS airport` : `e.origin, CASE WHEN s.id % 1000 = 999 THEN 'ZZZ' ELSE e.destination END AS destination`;
  await withDuckDb((c) =>
    c.run(`COPY (
      WITH ev AS (SELECT origin, destination, epoch_ms(date) AS ts, file_row_number AS i FROM read_parquet(${lit(opts.eventsParquet)}, file_row_number = true)),
      span AS (SELECT min(ts) - ${DAY} AS lo, max(ts) + ${DAY} AS hi, count(*) AS n FROM ev),
      s AS (SELECT range AS id, hash(range, ${seed}) AS h, lo + (hash(range, ${seed + 1}) % (hi - lo))::BIGINT AS u, n FROM range(${opts.rows}), span)
      SELECT ${keys}, CASE s.id % 8 WHEN 2 THEN e.ts WHEN 6 THEN e.ts WHEN 3 THEN u - u % ${5 * MINUTE} WHEN 7 THEN u - u % ${HOUR} ELSE u END AS ts, s.id
      FROM s JOIN ev e ON e.i = s.h % s.n ORDER BY s.id
    ) TO ${lit(opts.outParquet)} (FORMAT parquet)`),
  );
}

/**
 * Compares two dataset files row by row (same row order) on every column: exact for passthrough
 * columns, counts, max and last; 1e-9 relative for sums and means; 1e-6 relative for stddev; NULL
 * equals only NULL. `mismatches` counts rows with any difference (or present in one file only);
 * `examples` shows up to 5 of them, with the differing columns. A column missing from one file is
 * an error. Columns in `skip` take no part in `mismatches`: `skipped` counts their differing rows.
 */
export async function compareDatasets(a: string, b: string, opts: { skip?: readonly string[] } = {}): Promise<{ rows: number; mismatches: number; examples: string[]; skipped: Record<string, number> }> {
  return withDuckDb(async (c) => {
    const side = (file: string): string => `(SELECT *, file_row_number AS __row FROM read_parquet(${lit(file)}, file_row_number = true))`;
    const names = async (file: string): Promise<string[]> => (await c.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${lit(file)})`)).getRows().map((r) => String(r[0]));
    const [inA, inB] = [await names(a), await names(b)];
    const onlyOne = [...inA.filter((n) => !inB.includes(n)), ...inB.filter((n) => !inA.includes(n))];
    if (onlyOne.length > 0) throw new Error(`columns in only one of ${a} and ${b}: ${onlyOne.join(', ')}`);
    const kinds = new Map(Object.keys(VIEWS).flatMap((v) => featureColumns(v as FlightsView).map((f) => [f.column, f.kind] as const)));
    const tol: Record<Kind, number> = { exact: 0, sum: 1e-9, stddev: 1e-6 };
    const differs = (col: string): string => {
      const [x, y] = [`a."${col}"`, `b."${col}"`];
      const kind = kinds.get(col) ?? 'exact';
      if (kind === 'exact') return `(${x} IS DISTINCT FROM ${y})`;
      return `coalesce((${x} IS NULL) <> (${y} IS NULL) OR abs(${x}::DOUBLE - ${y}::DOUBLE) > ${tol[kind]} * abs(${y}::DOUBLE), false)`;
    };
    await c.run(`CREATE TEMP TABLE cmp AS SELECT coalesce(a.__row, b.__row) AS row, a.__row IS NULL OR b.__row IS NULL AS missing,
      ${inA.map((n) => `a."${n}" AS "a.${n}", b."${n}" AS "b.${n}", ${differs(n)} AS "d.${n}"`).join(', ')}
      FROM ${side(a)} a FULL JOIN ${side(b)} b ON a.__row = b.__row`);
    const skip = new Set(opts.skip ?? []);
    const checked = inA.filter((n) => !skip.has(n));
    const bad = `missing OR ${checked.map((n) => `"d.${n}"`).join(' OR ')}`;
    const [rows, mismatches] = (await c.runAndReadAll(`SELECT count(*), count(*) FILTER (${bad}) FROM cmp`)).getRows()[0]!.map(Number) as [number, number];
    // The skipped columns' differences, counted (the reference decides between the two files there).
    const skipped: Record<string, number> = {};
    for (const n of inA.filter((x) => skip.has(x))) skipped[n] = Number((await c.runAndReadAll(`SELECT count(*) FILTER ("d.${n}") FROM cmp`)).getRows()[0]![0]);
    const examples = (await c.runAndReadAll(`SELECT * FROM cmp WHERE ${bad} ORDER BY row LIMIT 5`)).getRowObjectsJson().map((r) => {
      const cols = r.missing ? ['(row in one file only)'] : checked.filter((n) => r[`d.${n}`]).map((n) => `${n}: ${JSON.stringify(r[`a.${n}`])} vs ${JSON.stringify(r[`b.${n}`])}`);
      return `row ${r.row}: ${cols.join('; ')}`;
    });
    return { rows, mismatches, examples, skipped };
  });
}
