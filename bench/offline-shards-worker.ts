// The sharded offline store in one process (the coordinator), its shards in others: starts
// `max(counts)` chDB-backed ClickHouse HTTP fixture processes (tests/support/clickhouse-shards.ts;
// NOT a ClickHouse cluster), and for each shard count n loads flights-3m into a fresh database on
// the first n of them (rows routed in Node) and writes the dataset of every feature of <view> for
// <spine> to <dir>/sharded-<n>.parquet. CPU seconds per shard process and of the coordinator are
// those of the dataset alone.
//   node bin/run-ts.mjs bench/offline-shards-worker.ts <dir> <view> <spine.parquet> <counts, e.g. 1,2,3>
// Prints one JSON line with the figures.
import { join } from 'node:path';
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { OfflineStore } from '../offline/index.js';
import { databaseUrls, startClickHouseShards } from '../tests/support/clickhouse-shards.js';

const [dir, view, spine, countsArg] = process.argv.slice(2) as [string, string, string, string];
const counts = countsArg.split(',').map(Number);
const compiled = compileOrThrow(flights);
const features = compiled.registry.views.find((v) => v.name === view)!.features.map((f) => `${view}:${f.name}`);
const cluster = await startClickHouseShards(join(dir, 'shards'), Math.max(...counts));
const figures: Record<string, number> = {};
const cpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
try {
  for (const n of counts) {
    const urls = await databaseUrls(cluster.urls.slice(0, n), `bench_${n}`);
    const store = await OfflineStore.open(compiled, { clickhouseShards: urls });
    try {
      let started = performance.now();
      const loaded = await store.loadEvents('flights', FLIGHTS_PARQUET_PATH);
      figures[`load_${n}`] = (performance.now() - started) / 1000;
      figures[`events_${n}`] = loaded.events;
      const shardRows = await Promise.all(store.shards!.executors.map(async (e) => Number((await e.rows<{ c: number }>('SELECT count() AS c FROM tm_events_flights'))[0]!.c)));
      shardRows.forEach((rows, s) => (figures[`stored_${n}_${s}`] = rows));
      const before = cluster.shards.slice(0, n).map((s) => s.cpuSeconds());
      const coordinatorBefore = cpuSeconds();
      started = performance.now();
      const result = await store.writeDataset(spine, features, join(dir, `sharded-${n}.parquet`));
      figures[`dataset_${n}`] = (performance.now() - started) / 1000;
      figures[`rows_${n}`] = result.rows;
      figures[`coordinator_cpu_${n}`] = cpuSeconds() - coordinatorBefore;
      cluster.shards.slice(0, n).forEach((s, i) => (figures[`cpu_${n}_${i}`] = s.cpuSeconds() - before[i]!));
    } finally {
      await store.close();
    }
  }
} finally {
  await cluster.close();
}
figures.peakRssMb = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify(figures)}\n`);
