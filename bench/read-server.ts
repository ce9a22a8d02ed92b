// The servers of the read benchmark, each role in its own process so that one's heap and garbage
// collection never stall the other's requests:
//   read-server.ts <rows|all> memory      tidemark's API over the in-memory store (filled by
//                                         replaying the flights), the same API logging 0%, 10% and
//                                         100% of its reads (--log-features) into a chDB offline
//                                         store, and a baseline fastify route that returns a constant
//   read-server.ts <rows|all> <redisUrl>  the same API over a Redis store filled by replaying the
//                                         same flights (this process keeps no in-memory store)
import Fastify from 'fastify';
import { buildServer } from '../api/index.js';
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FeatureLogQueue, replayParquetFile } from '../ingest/index.js';
import { OfflineFeatureLogSink, OfflineStore } from '../offline/index.js';
import { connectRedisOnlineStore, MemoryOnlineStore, OnlineFeatureService, tilesPerRead } from '../online/index.js';

const limit = process.argv[2] && process.argv[2] !== 'all' ? Number(process.argv[2]) : undefined;
const role = process.argv[3] ?? 'memory';
const compiled = compileOrThrow(flights);
const opts = limit === undefined ? { source: 'flights' } : { source: 'flights', limit };
if (role === 'memory') {
  const store = new MemoryOnlineStore(compiled.registry);
  await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, opts);
  const tidemark = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark') });
  const baseline = Fastify();
  const constant = { metadata: { feature_names: ['airport', 'x'] }, results: [] };
  baseline.post('/get-online-features', async () => constant);
  const [tidemarkUrl, baselineUrl] = [await tidemark.listen({ port: 0, host: '127.0.0.1' }), await baseline.listen({ port: 0, host: '127.0.0.1' })];
  // Feature logging as the quickstart does it: straight into chDB (in this process).
  const offline = await OfflineStore.open(compiled, { dataDir: mkdtempSync(join(tmpdir(), 'tidemark-bench-log-')) });
  const loggingUrls: Record<string, string> = {};
  for (const rate of [0, 0.1, 1]) {
    const logging = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark'), featureLog: new FeatureLogQueue(new OfflineFeatureLogSink(offline.executor), { sampleRate: rate }) });
    loggingUrls[String(rate)] = await logging.listen({ port: 0, host: '127.0.0.1' });
  }
  const view = compiled.registry.views.find((v) => v.name === 'origin_delays')!;
  const atMs = store.watermarkSync()! + 1;
  const tiles = Object.fromEntries(view.features.filter((f) => f.windowMs !== null).map((f) => [f.name, { now: tilesPerRead(view, f, atMs), withoutRollups: f.tilesPerWindow! + 1 }]));
  process.stdout.write(JSON.stringify({ tidemarkUrl, baselineUrl, loggingUrls, airports: store.entityKeys('origin_delays'), tiles }) + '\n');
} else {
  const redisStore = connectRedisOnlineStore(compiled.registry, role, { prefix: `bench-reads-${process.pid}` });
  const started = performance.now();
  await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, redisStore, opts);
  const redisFillSeconds = (performance.now() - started) / 1000;
  const server = await buildServer({ service: new OnlineFeatureService(compiled.registry, redisStore, 'watermark') });
  process.stdout.write(JSON.stringify({ redisTidemarkUrl: await server.listen({ port: 0, host: '127.0.0.1' }), redisFillSeconds }) + '\n');
}
process.on('SIGTERM', () => process.exit(0));
