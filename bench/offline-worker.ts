// One offline measurement in its own process (so peak RSS is its own):
//   load <dir>                       load flights-3m.parquet into chDB at <dir>
//   spines <dir>                     write the benchmark spines (1M airport rows, 1M route rows)
//   dataset <dir> <view> <spine> <out>  tidemark's point-in-time dataset of every feature of <view>
// With BENCH_FLOAT_FLIGHTS=<file> (the offline section), the definitions are bench/flights-float.ts
// and `load` loads that file (flights with the float field delay_h); else examples/flights and
// flights-3m.parquet (the sharded section).
// Prints one JSON line with the figures.
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { OfflineStore } from '../offline/index.js';
import * as flightsFloat from './flights-float.js';
import { printWorkerFigures } from './worker-figures.js';

const [mode, dir, view, spine, out] = process.argv.slice(2) as [string, string, string?, string?, string?];
const floatFlights = process.env.BENCH_FLOAT_FLIGHTS;
const compiled = compileOrThrow(floatFlights ? flightsFloat : flights);
const store = await OfflineStore.open(compiled, { dataDir: dir });
const started = performance.now();
const figures: Record<string, unknown> = { mode };
try {
  if (mode === 'load') {
    const result = await store.loadEvents('flights', floatFlights ?? FLIGHTS_PARQUET_PATH);
    Object.assign(figures, { events: result.events, alreadyLoaded: result.alreadyLoaded });
  } else if (mode === 'spines') {
    // Random (key, time) rows over the data's six months, drawn with a fixed seed.
    const from = 978307200000; // 2001-01-01
    const span = 15638400000; // to 2001-07-01
    await store.executor.command(
      `WITH (SELECT groupArray(DISTINCT origin) FROM tm_events_flights) AS a
       SELECT a[1 + cityHash64(number, 1) % length(a)] AS airport, toInt64(${from} + cityHash64(number, 2) % ${span}) AS ts, toInt64(number) AS id
       FROM numbers(1000000) ORDER BY id
       INTO OUTFILE '${dir}/spine-airports.parquet' TRUNCATE FORMAT Parquet`,
    );
    await store.executor.command(
      `WITH (SELECT groupArray(DISTINCT (origin, destination)) FROM tm_events_flights) AS r
       SELECT r[1 + cityHash64(number, 3) % length(r)].1 AS origin, r[1 + cityHash64(number, 3) % length(r)].2 AS destination, toInt64(${from} + cityHash64(number, 4) % ${span}) AS ts, toInt64(number) AS id
       FROM numbers(1000000) ORDER BY id
       INTO OUTFILE '${dir}/spine-routes.parquet' TRUNCATE FORMAT Parquet`,
    );
  } else if (mode === 'dataset') {
    const features = compiled.registry.views.find((v) => v.name === view)!.features.map((f) => `${view}:${f.name}`);
    const result = await store.writeDataset(spine!, features, out!);
    Object.assign(figures, { rows: result.rows });
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await store.close();
}
printWorkerFigures(figures, started);
