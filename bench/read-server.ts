// The servers of the read benchmark, in their own process: tidemark's API over the in-memory store
// (filled by replaying the flights), the same API over a Redis store filled by replaying the same
// flights (when a Redis URL is given), and a baseline fastify route that returns a constant.
import Fastify from 'fastify';
import { buildServer } from '../api/index.js';
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { replayParquetFile } from '../ingest/index.js';
import { connectRedisOnlineStore, MemoryOnlineStore, OnlineFeatureService, tilesPerRead } from '../online/index.js';

const limit = process.argv[2] && process.argv[2] !== 'all' ? Number(process.argv[2]) : undefined;
const redisUrl = process.argv[3];
const compiled = compileOrThrow(flights);
const opts = limit === undefined ? { source: 'flights' } : { source: 'flights', limit };
const store = new MemoryOnlineStore(compiled.registry);
await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, opts);
const tidemark = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark') });
const baseline = Fastify();
const constant = { metadata: { feature_names: ['airport', 'x'] }, results: [] };
baseline.post('/get-online-features', async () => constant);
const [tidemarkUrl, baselineUrl] = [await tidemark.listen({ port: 0, host: '127.0.0.1' }), await baseline.listen({ port: 0, host: '127.0.0.1' })];
let redisTidemarkUrl: string | null = null;
let redisFillSeconds: number | null = null;
if (redisUrl) {
  const redisStore = connectRedisOnlineStore(compiled.registry, redisUrl, { prefix: `bench-reads-${process.pid}` });
  const started = performance.now();
  await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, redisStore, opts);
  redisFillSeconds = (performance.now() - started) / 1000;
  const server = await buildServer({ service: new OnlineFeatureService(compiled.registry, redisStore, 'watermark') });
  redisTidemarkUrl = await server.listen({ port: 0, host: '127.0.0.1' });
}
// Tiles one read merges at the watermark clock, per feature of origin_delays (the head tile included).
const view = compiled.registry.views.find((v) => v.name === 'origin_delays')!;
const atMs = store.watermarkSync()! + 1;
const tiles = Object.fromEntries(view.features.filter((f) => f.windowMs !== null).map((f) => [f.name, { now: tilesPerRead(view, f, atMs), withoutRollups: f.tilesPerWindow! + 1 }]));
process.stdout.write(JSON.stringify({ tidemarkUrl, baselineUrl, redisTidemarkUrl, redisFillSeconds, airports: store.entityKeys('origin_delays'), tiles }) + '\n');
process.on('SIGTERM', () => process.exit(0));
