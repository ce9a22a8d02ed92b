// One bootstrap measurement in its own process (issue: plan, apply, bootstrap):
//   load <dir>                      load flights-3m.parquet into chDB at <dir> (as npm start does)
//   redis-bootstrap <dir> <url>     tidemark bootstrap of every flights view from that chDB into Redis
//   redis-replay <url>              the baseline: the same events replayed through the materializer core into Redis
//   memory-rebuild <dir>            npm start's rebuild of the in-memory store from chDB
//   memory-replay                   npm start's replay of the Parquet file into the in-memory store
import { randomUUID } from 'node:crypto';
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { replayParquetFile } from '../ingest/index.js';
import { connectRedisOnlineStore, MemoryOnlineStore, newVersionState, writeVersionState } from '../online/index.js';
import { OfflineStore } from '../offline/index.js';
import { bootstrapView } from '../api/bootstrap.js';

const [mode, a, b] = process.argv.slice(2);
const compiled = compileOrThrow(flights);
const started = performance.now();
const seconds = (): number => (performance.now() - started) / 1000;
const peakRssMb = (): number => process.resourceUsage().maxRSS / 1024;
let out: Record<string, number> = {};

if (mode === 'load') {
  const offline = await OfflineStore.open(compiled, { dataDir: a! });
  const loaded = await offline.loadEvents('flights', FLIGHTS_PARQUET_PATH);
  await offline.close();
  out = { events: loaded.events, seconds: seconds() };
} else if (mode === 'redis-bootstrap' || mode === 'memory-rebuild') {
  const offline = await OfflineStore.open(compiled, { dataDir: a! });
  const t0 = performance.now();
  let keys = 0;
  let tiles = 0;
  let events = 0;
  if (mode === 'redis-bootstrap') {
    const prefix = `bench-bootstrap-${randomUUID().slice(0, 8)}`;
    const store = connectRedisOnlineStore(compiled.registry, b!, { prefix });
    for (const view of compiled.registry.views) await writeVersionState(store.client, prefix, newVersionState(compiled.registry, view, 'apply', Date.now()));
    for (const view of compiled.registry.views) {
      const r = await bootstrapView(view, { kind: 'redis', store }, { executor: offline.executor, registry: compiled.registry });
      keys += r.keys;
      tiles += r.tiles;
      events += r.events;
    }
    store.client.disconnect();
  } else {
    const store = new MemoryOnlineStore(compiled.registry);
    for (const view of compiled.registry.views) {
      const r = await bootstrapView(view, { kind: 'memory', store }, { executor: offline.executor, registry: compiled.registry, batchKeys: 20_000 });
      keys += r.keys;
      tiles += r.tiles;
      events += r.events;
    }
  }
  out = { keys, tiles, events, seconds: (performance.now() - t0) / 1000, peakRssMb: peakRssMb() };
  await offline.close();
} else if (mode === 'redis-replay' || mode === 'memory-replay') {
  const store = mode === 'redis-replay' ? connectRedisOnlineStore(compiled.registry, a!, { prefix: `bench-replay-${randomUUID().slice(0, 8)}` }) : new MemoryOnlineStore(compiled.registry);
  const stats = await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, store, { source: 'flights' });
  const st = await store.stats();
  out = { events: stats.events, keys: Object.values(st.keys).reduce((x, y) => x + y, 0), seconds: stats.seconds, peakRssMb: peakRssMb() };
  if (store instanceof MemoryOnlineStore) await store.close();
  else store.client.disconnect();
} else throw new Error(`unknown mode ${mode}`);
process.stdout.write(JSON.stringify(out) + '\n');
