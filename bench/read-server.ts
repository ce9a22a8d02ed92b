// The servers of the read benchmark, in their own process: tidemark's API over the in-memory store
// (filled by replaying the flights) and a baseline fastify route that returns a constant.
import Fastify from 'fastify';
import { buildServer } from '../api/index.js';
import { compileOrThrow } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { replayParquetFile } from '../ingest/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../online/index.js';

const limit = process.argv[2] ? Number(process.argv[2]) : undefined;
const compiled = compileOrThrow(flights);
const store = new MemoryOnlineStore(compiled.registry);
await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, limit === undefined ? { source: 'flights' } : { source: 'flights', limit });
const tidemark = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark') });
const baseline = Fastify();
const constant = { metadata: { feature_names: ['airport', 'x'] }, results: [] };
baseline.post('/get-online-features', async () => constant);
const [tidemarkUrl, baselineUrl] = [await tidemark.listen({ port: 0, host: '127.0.0.1' }), await baseline.listen({ port: 0, host: '127.0.0.1' })];
process.stdout.write(JSON.stringify({ tidemarkUrl, baselineUrl, airports: store.entityKeys('origin_delays') }) + '\n');
process.on('SIGTERM', () => process.exit(0));
