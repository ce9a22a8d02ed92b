// One step of the sharded offline bench in its own process (so peak RSS is its own), against shard
// processes the bench started (bench/offline-shards.ts):
//   load <shard urls>                                    load flights-3m, rows routed in Node
//   dataset <shard urls> <view> <spine.parquet> <out>    the dataset of every feature of <view>
// <shard urls> is comma-separated. Prints one JSON line with the figures (CPU seconds of this
// process during the step itself).
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { OfflineStore } from '../offline/index.js';

const [mode, urlList, view, spine, out] = process.argv.slice(2) as [string, string, string?, string?, string?];
const compiled = compileOrThrow(flights);
const store = await OfflineStore.open(compiled, { clickhouseShards: urlList.split(',') });
const figures: Record<string, number> = {};
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const cpuBefore = cpuSeconds();
const started = performance.now();
try {
  if (mode === 'load') {
    const loaded = await store.loadEvents('flights', FLIGHTS_PARQUET_PATH);
    figures.events = loaded.events;
    const stored = await Promise.all(store.shards!.executors.map(async (e) => Number((await e.rows<{ c: number }>('SELECT count() AS c FROM tm_events_flights'))[0]!.c)));
    stored.forEach((rows, s) => (figures[`stored_${s}`] = rows));
  } else if (mode === 'dataset') {
    const features = compiled.registry.views.find((v) => v.name === view)!.features.map((f) => `${view}:${f.name}`);
    figures.rows = (await store.writeDataset(spine!, features, out!)).rows;
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} finally {
  await store.close();
}
figures.seconds = (performance.now() - started) / 1000;
figures.cpuSeconds = cpuSeconds() - cpuBefore;
figures.peakRssMb = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify(figures)}\n`);
