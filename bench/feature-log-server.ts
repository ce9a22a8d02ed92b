// The servers of the feature-logging bench (bench/feature-log.ts), all in this one process over one
// in-memory store filled by replaying the flights: tidemark's API without logging, and the same API
// logging 0%, 10% and 100% of its reads (--log-features) into a chDB offline store in this process
// (embedded mode), 100% into a sink that writes nothing (the serving path's share), and, with a
// Kafka bootstrap given, 10% and 100% to `<prefix>.feature_log`.
// Only one server is loaded at a time. A control server answers GET /cpu with this process's CPU
// time (every thread: the serving loop, chDB's, V8's collector helpers) and the serving thread's
// alone (Linux), and GET /flush/<name>
// with the log's counters once its queue is written, so the bench can charge each case its CPU.
//   feature-log-server.ts <rows|all> [kafka bootstrap]
import Fastify from 'fastify';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildServer } from '../api/index.js';
import { compileOrThrow } from '../definitions/index.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import * as flights from '../examples/flights/definitions.js';
import { FeatureLogQueue, featureLogTopic, KafkaFeatureLogSink, replayParquetFile, type EncodedFeatureSet } from '../ingest/index.js';
import { OfflineFeatureLogSink, OfflineStore } from '../offline/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../online/index.js';

const limit = process.argv[2] && process.argv[2] !== 'all' ? Number(process.argv[2]) : undefined;
const kafkaBootstrap = process.argv[3];
const compiled = compileOrThrow(flights);
const store = new MemoryOnlineStore(compiled.registry);
await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, limit === undefined ? { source: 'flights' } : { source: 'flights', limit });
const service = (): OnlineFeatureService => new OnlineFeatureService(compiled.registry, store, 'watermark');

/** A queue that keeps each served read as a record with a Buffer of its text, as the queue did before its arena (the record's request id aside). */
class RecordQueue extends FeatureLogQueue {
  override offerRead(json: string, timeMs: number, features: EncodedFeatureSet): boolean {
    return this.offerEncoded({ kind: 'read', requestId: '', timeMs, json, features });
  }
}

const urls: Record<string, string> = {};
const queues: Record<string, FeatureLogQueue> = {};
urls.none = await (await buildServer({ service: service() })).listen({ port: 0, host: '127.0.0.1' });
const offline = await OfflineStore.open(compiled, { dataDir: mkdtempSync(join(tmpdir(), 'tidemark-bench-log-')) });
const sinks: [string, () => ConstructorParameters<typeof FeatureLogQueue>[0], number][] = [0, 0.1, 1].map((rate) => [`chdb-${rate}`, () => new OfflineFeatureLogSink(offline.executor), rate]);
// The serving path's share alone: every read encoded and queued, the batches taken and dropped.
sinks.push(['discard-1', () => ({ destination: 'nowhere', write: async () => undefined, writeBatch: async () => undefined }), 1]);
// The eighth session's queue beside it: each served read queued as a record holding its text's Buffer (not in the arena).
sinks.push(['records-1', () => ({ destination: 'nowhere', write: async () => undefined }), 1]);
if (kafkaBootstrap) for (const rate of [0.1, 1]) sinks.push([`kafka-${rate}`, () => new KafkaFeatureLogSink(featureLogTopic('bench'), { brokers: kafkaBootstrap.split(',') }), rate]);
for (const [name, sink, rate] of sinks) {
  const queue = name === 'records-1' ? new RecordQueue(sink(), { sampleRate: rate }) : new FeatureLogQueue(sink(), { sampleRate: rate });
  queues[name] = queue;
  urls[name] = await (await buildServer({ service: service(), featureLog: queue })).listen({ port: 0, host: '127.0.0.1' });
}

const control = Fastify();
control.get('/cpu', async () => {
  const cpu = process.cpuUsage();
  return { cpuMicros: cpu.user + cpu.system, mainMicros: mainThreadMicros() };
});

/** CPU time of the serving thread (the event loop) alone, from Linux's per-thread schedstat (ns on CPU); null elsewhere. */
function mainThreadMicros(): number | null {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1_000;
  } catch {
    return null;
  }
}
control.get<{ Params: { name: string } }>('/flush/:name', async (request) => {
  const queue = queues[request.params.name];
  if (!queue) return {};
  await queue.flush();
  return { ...queue.stats };
});
urls.control = await control.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(JSON.stringify({ urls }) + '\n');
process.on('SIGTERM', () => process.exit(0));
