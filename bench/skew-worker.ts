// One step of the skew bench (BENCH_ONLY=skew) in its own process (so peak RSS is its own):
//   load <dir>             load flights-3m.parquet into chDB at <dir>, and write a spine of
//                          <reads> random (airport, read time) rows over the data's six months
//   dataset <dir> <reads>  baseline: the point-in-time dataset of every origin_delays feature
//                          (7) for that spine, written to Parquet: the values the skew check
//                          computes offline
//   log <dir>              the logged reads of that spine, as serving would have logged them: the
//                          values are the dataset's, except flights_1h off by one in every
//                          hundredth read (so the check has mismatches to find)
//   skew <dir>             evaluateSkew over the log (every logged value of origin_delays)
// Prints one JSON line with the figures.
import { join } from 'node:path';
import { compileOrThrow } from '../definitions/index.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import * as flights from '../examples/flights/definitions.js';
import { evaluateSkew } from '../monitor/index.js';
import { FEATURE_LOG_LINES_TABLE, FEATURE_SETS_TABLE, OfflineStore } from '../offline/index.js';
import { printWorkerFigures } from './worker-figures.js';

const [mode, dir, readsArg] = process.argv.slice(2) as [string, string, string?];
const compiled = compileOrThrow(flights);
const store = await OfflineStore.open(compiled, { dataDir: join(dir, 'store') });
const view = compiled.registry.views.find((v) => v.name === 'origin_delays')!;
const features = view.features.map((f) => f.name);
const spine = join(dir, 'spine.parquet');
const dataset = join(dir, 'dataset.parquet');
const started = performance.now();
const figures: Record<string, unknown> = { mode };
try {
  if (mode === 'load') {
    const result = await store.loadEvents('flights', FLIGHTS_PARQUET_PATH);
    const from = 978307200000; // 2001-01-01
    const span = 15638400000; // to 2001-07-01
    await store.executor.command(
      `WITH (SELECT groupArray(DISTINCT origin) FROM tm_events_flights) AS a
       SELECT a[1 + cityHash64(number, 5) % length(a)] AS airport, toInt64(${from} + cityHash64(number, 6) % ${span}) AS ts, toInt64(number) AS id
       FROM numbers(${Number(readsArg)}) ORDER BY id
       INTO OUTFILE '${spine}' TRUNCATE FORMAT Parquet`,
    );
    Object.assign(figures, { events: result.events });
  } else if (mode === 'dataset') {
    const result = await store.writeDataset(spine, features.map((f) => `origin_delays:${f}`), dataset);
    Object.assign(figures, { rows: result.rows, values: result.rows * features.length });
  } else if (mode === 'log') {
    // The records in the format serving writes (ingest/feature-log.ts, version 3) where embedded
    // serving writes them (chDB's lines table), with their feature set, built from the dataset's rows.
    const column = (f: string): string => `\`origin_delays__${f}\``;
    const value = (f: string): string => (f === 'flights_1h' ? `ifNull(toJSONString(if(id % 100 = 0, ${column(f)} + 1, ${column(f)})), 'null')` : `ifNull(toJSONString(${column(f)}), 'null')`);
    const status = (f: string): string => `if(${column(f)} IS NULL, 'N', 'P')`;
    const set = { kind: 'features', v: 3, features_id: 'bench-features', registry_version: compiled.registry.version, features: features.map((f) => `origin_delays:${f}`) };
    await store.executor.insert(FEATURE_SETS_TABLE, [{ features_id: set.features_id, record: JSON.stringify(set) }]);
    await store.executor.command(
      `INSERT INTO ${FEATURE_LOG_LINES_TABLE} (line)
       SELECT concat('{"kind":"read","v":3,"request_id":"bench-', toString(id), '","read_time_ms":', toString(ts), ',"features_id":"${set.features_id}","entities":{"airport":[', toJSONString(airport), ']},"values":[', ${features.map(value).join(", ',', ")}, '],"statuses":"', ${features.map(status).join(', ')}, '","ages_ms":[${features.map(() => 'null').join(',')}]}')
       FROM file('${dataset}', Parquet)`,
    );
    const [row] = await store.executor.rows<{ n: number }>(`SELECT count() AS n FROM ${FEATURE_LOG_LINES_TABLE}`);
    Object.assign(figures, { reads: Number(row!.n), values: Number(row!.n) * features.length });
  } else if (mode === 'skew') {
    const results = await evaluateSkew(store.executor, compiled.registry, { views: ['origin_delays'] });
    const all = results.filter((r) => r.slice === 'all');
    Object.assign(figures, {
      values: all.reduce((n, r) => n + r.compared, 0),
      mismatches: all.reduce((n, r) => n + r.mismatches, 0),
      featuresWithMismatches: all.filter((r) => r.mismatches > 0).length,
    });
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await store.close();
}
printWorkerFigures(figures, started);
