// The servers of the read benchmark, each role in its own process so that one's heap and garbage
// collection never stall the other's requests:
//   read-server.ts <rows|all> memory      tidemark's API over the in-memory store (filled by
//                                         replaying the flights), the same API logging 0%, 10% and
//                                         100% of its reads (--log-features) into a chDB offline
//                                         store, and a baseline fastify route that returns a constant
//   read-server.ts <rows|all> <redisUrl>  the same API over a Redis store filled by replaying the
//                                         same flights (this process keeps no in-memory store)
import Fastify, { type FastifyInstance } from 'fastify';
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

/**
 * Each server's own handling time of every read (fastify's elapsed time, from the request's arrival
 * to its answer sent), so the bench can tell the server's share of a latency from the queueing in
 * the kernel and the load generator on these shared cores: GET /bench/server-times returns the
 * percentiles since the last call and starts over.
 */
function timeReads(app: FastifyInstance): FastifyInstance {
  let times: number[] = [];
  app.addHook('onResponse', async (request, reply) => {
    if (request.url === '/get-online-features') times.push(reply.elapsedTime);
  });
  app.get('/bench/server-times', { config: { scope: 'features:read' } }, async () => {
    const t = Float64Array.from(times).sort();
    times = [];
    const at = (q: number): number | null => (t.length === 0 ? null : t[Math.min(t.length - 1, Math.floor(q * t.length))]!);
    return { count: t.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
  });
  return app;
}

const limit = process.argv[2] && process.argv[2] !== 'all' ? Number(process.argv[2]) : undefined;
const role = process.argv[3] ?? 'memory';
const compiled = compileOrThrow(flights);
const opts = limit === undefined ? { source: 'flights' } : { source: 'flights', limit };
if (role === 'memory') {
  const store = new MemoryOnlineStore(compiled.registry);
  await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, opts);
  const tidemark = timeReads(await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark') }));
  const baseline = timeReads(Fastify());
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
  const server = timeReads(await buildServer({ service: new OnlineFeatureService(compiled.registry, redisStore, 'watermark') }));
  process.stdout.write(JSON.stringify({ redisTidemarkUrl: await server.listen({ port: 0, host: '127.0.0.1' }), redisFillSeconds }) + '\n');
}
process.on('SIGTERM', () => process.exit(0));
