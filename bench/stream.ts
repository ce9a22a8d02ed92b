// The stream section of `npm run bench` (BENCH_ONLY=stream): the Kafka-to-Redis path on real
// services, each figure next to a baseline measured in the same run.
//  1. throughput: tidemark's materializer consuming a topic of flights (JSON, 4 partitions) into
//     Redis, next to a kafkajs consumer and an @platformatic/kafka consumer whose handlers do nothing,
//     on the same topic with the same fetch settings; alternating runs, the median of each.
//  2. reads: POST /get-online-features served by `tidemark serve` from the Redis the materializer
//     filled (1 entity x the 7 origin_delays features): saturation, and p50/p99 at half of it (open
//     loop, bench/http-load.ts), next to redis-benchmark sending the very Redis commands the store
//     sends per request (caught with MONITOR), with the same number of connections.
//  3. freshness: produce to visible in Redis at 5 000 events/s (bench/stream-freshness.ts), with
//     the materializer's default fetch max wait and with a short one.
// Services: KAFKA_BROKERS and REDIS_URL when set, else a redis-server and librdkafka's mock Kafka
// cluster started here by tests/support (as `npm test` does). What the mock (librdkafka 2.0.2)
// does differently from Kafka, and how the section deals with it:
//  - it keeps at most 5 MB per partition, so its topic holds 200 000 flights (BENCH_STREAM_EVENTS;
//    1 000 000 on a real Kafka);
//  - it answers a fetch with one record batch per partition, so the throughput topic is produced in
//    record batches of 8 000 (~0.7 MB), about what a 1 MiB fetch returns from Kafka to a consumer
//    with a backlog;
//  - it holds a fetch that finds no new record for its whole max wait instead of answering when
//    records arrive, which adds up to the max wait (250 ms by default) to freshness: hence the row
//    with a 10 ms max wait;
//  - it does not speak the protocol versions @platformatic/kafka requires (Kafka >= 3.5), so that
//    client is measured only against a real Kafka (KAFKA_BROKERS); the row says why otherwise.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { Redis } from 'ioredis';
import { externalKafka, startMockKafka, type KafkaCluster } from '../tests/support/kafka.js';
import { startRedisServer } from '../tests/support/redis.js';
import { latencyAtRate, saturationRps, type LoadTarget } from './http-load.js';
import { commandsBetween, CONSUMER_SETTINGS, redisCounters } from './stream-support.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUN_TS = join(ROOT, 'bin', 'run-ts.mjs');
const TIDEMARK = join(ROOT, 'bin', 'tidemark.mjs');
const PARTITIONS = 4;
const CONNECTIONS = 8;
const READ_FEATURES = ['flights_1h', 'delay_mean_1h', 'delay_mean_1d', 'delay_max_1d', 'delay_stddev_7d', 'distance_sum_1d', 'last_delay'].map((f) => `origin_delays:${f}`);
const FRESHNESS_RATE = Number(process.env.BENCH_FRESHNESS_RATE ?? 5_000);
const FRESHNESS_SECONDS = Number(process.env.BENCH_FRESHNESS_SECONDS ?? 10);
/** How often the freshness producer sends (all events due by then in one request): a producer's linger. */
const FRESHNESS_BATCH_MS = 10;
/** A fetch max wait short enough that the mock cluster's hold of an empty fetch adds little (see freshness()). */
const SHORT_FETCH_WAIT_MS = 10;
const TARGETS = { eventsPerSecond: 100_000, ofNoop: 0.5, readP99Ms: 2, freshnessP99Ms: 100 };

export interface StreamSectionOptions {
  runWorker(args: string[]): Promise<Record<string, number>>;
  fmt(n: number, digits?: number): string;
  saturationMs: number;
  latencyMs: number;
}

type Result = Record<string, unknown> & Record<'events' | 'seconds', number>;

/** A long-running child whose first stdout line says it is ready; stop() sends SIGTERM and returns its last line. */
function startChild(command: string[], what: string): { ready: Promise<string>; stop(): Promise<string> } {
  const child: ChildProcess = spawn(process.execPath, command, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      if (lines.length === 1) resolve(line);
    });
    void exited.then(() => reject(new Error(`${what} exited before it was ready`)));
  });
  ready.catch(() => undefined);
  return {
    ready,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      return lines[lines.length - 1] ?? '';
    },
  };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The arguments of each command a client sent (not those a script ran: MONITOR marks them `[0 lua]`)
 * that names a key under `prefix`, as MONITOR printed them, their quoting undone.
 */
function parseMonitor(text: string, prefix: string): string[][] {
  const commands: string[][] = [];
  for (const line of text.split('\n')) {
    if (!line.includes(`${prefix}:`) || /^\S+ \[\d+ lua\]/.test(line)) continue;
    const args = [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) =>
      m[1]!.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) => (e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' } as Record<string, string>)[e] ?? e)),
    );
    if (args.length > 0) commands.push(args);
  }
  return commands;
}

/** The Redis commands one POST of `target` makes the server send, caught with redis-cli MONITOR. */
async function commandsPerRequest(redisUrl: string, prefix: string, target: LoadTarget): Promise<string[][]> {
  const monitor = spawn('redis-cli', ['-u', redisUrl, 'monitor'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  monitor.stdout.on('data', (d: Buffer) => (text += d.toString('utf8')));
  const deadline = Date.now() + 5_000;
  while (!text.startsWith('OK') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  // Several requests: a command every request sends shows up that many times; the store's
  // version-status check (at most once a second, cached in between) does not.
  const requests = 5;
  for (let i = 0; i < requests; i++) {
    const res = await fetch(`${target.origin}${target.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: target.body });
    if (res.status !== 200) throw new Error(`POST ${target.path} answered ${res.status}: ${await res.text()}`);
    await res.text();
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  monitor.kill('SIGTERM');
  const seen = new Map<string, { command: string[]; times: number }>();
  for (const command of parseMonitor(text, prefix)) {
    const key = JSON.stringify(command);
    const entry = seen.get(key) ?? { command, times: 0 };
    entry.times++;
    seen.set(key, entry);
  }
  const commands = [...seen.values()].filter((e) => e.times >= requests).map((e) => e.command);
  if (commands.length === 0) throw new Error(`MONITOR showed no command under prefix ${prefix} in each of ${requests} requests:\n${text.slice(0, 2000)}`);
  return commands;
}

/** redis-benchmark running one command with `clients` connections for about `seconds`: req/s and latency. */
function redisBenchmark(redisUrl: string, command: string[], clients: number, seconds: number): { rps: number; p50Ms: number; p99Ms: number } {
  const run = (requests: number): { rps: number; p50Ms: number; p99Ms: number } => {
    const r = spawnSync('redis-benchmark', ['-u', redisUrl, '-c', String(clients), '-n', String(requests), '--csv', ...command], { encoding: 'utf8' });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    const fields = last.split(',').slice(-7).map((f) => Number(f.replace(/"/g, '')));
    if (r.status !== 0 || fields.length !== 7 || fields.some((f) => !Number.isFinite(f))) {
      throw new Error(`redis-benchmark ${command[0]} failed (exit ${r.status}): ${r.stdout.slice(-500)}${r.stderr.slice(-500)}`);
    }
    return { rps: fields[0]!, p50Ms: fields[3]!, p99Ms: fields[5]! };
  };
  const probe = run(10_000);
  return run(Math.max(10_000, Math.round(probe.rps * seconds)));
}

export async function streamSection(o: StreamSectionOptions): Promise<void> {
  const { fmt } = o;
  console.log('');
  console.log('## Stream path: Kafka to Redis');
  const runId = randomBytes(4).toString('hex');
  const stops: (() => Promise<void>)[] = [];
  try {
    // Services.
    let redisUrl = process.env.REDIS_URL;
    let redisName = `REDIS_URL=${redisUrl}`;
    if (!redisUrl) {
      const server = await startRedisServer();
      stops.push(() => server.stop());
      redisUrl = server.url;
      redisName = `redis-server ${/v=(\S+)/.exec(spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? ''} started here`;
    }
    let kafka: KafkaCluster;
    let kafkaName: string;
    if (process.env.KAFKA_BROKERS) {
      kafka = externalKafka(process.env.KAFKA_BROKERS);
      kafkaName = `KAFKA_BROKERS=${process.env.KAFKA_BROKERS}`;
    } else {
      const mock = await startMockKafka({ brokers: 3 });
      stops.push(() => mock.stop());
      kafka = mock;
      kafkaName = 'librdkafka 2.0.2 mock cluster (3 brokers) started here';
    }
    if (!kafka.controllable || process.env.REDIS_URL) {
      stops.push(() => cleanUp(kafka, redisUrl!, runId));
    }
    const events = Number(process.env.BENCH_STREAM_EVENTS ?? (kafka.controllable ? 200_000 : 1_000_000));
    const runs = Number(process.env.BENCH_STREAM_RUNS ?? 3);
    console.log(`services: Kafka: ${kafkaName}; Redis: ${redisName}; load average (1 min) at the start: ${fmt(loadavg()[0]!, 2)}`);

    // 1. Throughput.
    const topic = `tidemark-bench-${runId}`;
    await kafka.createTopic(topic, PARTITIONS);
    const produced = await o.runWorker(['bench/stream-worker.ts', 'produce', kafka.bootstrap, topic, String(events), String(PARTITIONS)]);
    console.log('');
    console.log(`### Materializer throughput: ${fmt(events)} flights (JSON, ${fmt(produced.valueBytes! / events)} bytes each) on a ${PARTITIONS}-partition topic, consumed from the start`);
    const noop: Result[] = [];
    const platformatic: Result[] = [];
    const materialized: Result[] = [];
    let platformaticError: string | null = null;
    let lastPrefix = '';
    for (let i = 0; i < runs; i++) {
      noop.push((await o.runWorker(['bench/stream-worker.ts', 'kafkajs-noop', kafka.bootstrap, topic, String(events)])) as Result);
      // A client that cannot talk to this broker fails at once: no point asking again.
      if (platformaticError === null) {
        const r: Record<string, unknown> = await o.runWorker(['bench/stream-worker.ts', 'platformatic-noop', kafka.bootstrap, topic, String(events)]);
        if (typeof r.error === 'string') platformaticError = r.error;
        else platformatic.push(r as Result);
      }
      lastPrefix = `bench-${runId}-${i}`;
      materialized.push((await o.runWorker(['bench/stream-worker.ts', 'materialize', kafka.bootstrap, topic, redisUrl, lastPrefix, String(events)])) as Result);
    }
    const rate = (r: Result): number => r.events / r.seconds;
    const pick = (rs: Result[]): Result => [...rs].sort((a, b) => rate(a) - rate(b))[Math.floor(rs.length / 2)]!;
    const allRates = (rs: Result[]): string => rs.map((r) => fmt(rate(r))).join(', ');
    const noopMedian = pick(noop);
    const mat = pick(materialized);
    console.log(`| consumer (its own process, fetch settings of tidemark materialize) | events/s (median of ${runs}) | seconds | process CPU s | all runs, events/s |`);
    console.log('|---|---:|---:|---:|---|');
    console.log(`| baseline: kafkajs 2, no-op eachBatch | ${fmt(rate(noopMedian))} | ${fmt(noopMedian.seconds, 2)} | ${fmt(noopMedian.cpuSeconds as number, 2)} | ${allRates(noop)} |`);
    if (platformaticError === null) {
      const p = pick(platformatic);
      console.log(`| baseline: @platformatic/kafka, no-op handler | ${fmt(rate(p))} | ${fmt(p.seconds, 2)} | ${fmt(p.cpuSeconds as number, 2)} | ${allRates(platformatic)} |`);
    } else {
      console.log(`| baseline: @platformatic/kafka, no-op handler | not measured | | | ${platformaticError.replace(/\|/g, '/')} |`);
    }
    console.log(`| tidemark materializer into Redis (decode, validate, fences, tiles, commit) | ${fmt(rate(mat))} | ${fmt(mat.seconds, 2)} | ${fmt(mat.cpuSeconds as number, 2)} | ${allRates(materialized)} |`);
    const ratio = rate(mat) / rate(noopMedian);
    const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
    console.log(`targets: >= ${fmt(TARGETS.eventsPerSecond)} events/s per process: ${met(rate(mat) >= TARGETS.eventsPerSecond)} (${fmt(rate(mat))}); >= ${TARGETS.ofNoop} of the kafkajs no-op consumer: ${met(ratio >= TARGETS.ofNoop)} (${fmt(ratio, 3)})`);
    const commands = (mat.redisCommands as { command: string; calls: number; seconds: number }[]).slice(0, 4);
    console.log(
      `where the materializer's time goes (median run: ${fmt(mat.seconds, 2)} s, ${fmt(mat.batches as number)} batches, ${fmt(events / (mat.batches as number))} events each): ` +
        `its process ${fmt(mat.cpuSeconds as number, 2)} CPU s; Redis ${fmt(mat.redisCpuSeconds as number, 2)} CPU s, in ${commands.map((c) => `${c.command.toUpperCase()} ${fmt(c.calls)} calls ${fmt(c.seconds, 2)} s`).join(', ')} (a script's own commands count under their names too); ` +
        `batches fetched to committed ${fmt(mat.batchSecondsSum as number, 2)} s in all (up to ${CONSUMER_SETTINGS.partitionsConsumedConcurrently} partitions at a time); group join ${fmt(mat.joinSeconds as number, 1)} s, not counted`,
    );

    // 2. Reads from the Redis the last materializer run filled.
    await readsFromRedis(o, redisUrl, lastPrefix);

    // 3. Freshness.
    await freshness(o, kafka, redisUrl, runId);
    console.log(`load average (1 min) at the end: ${fmt(loadavg()[0]!, 2)} (the machine is shared: figures taken under load vary by tens of percent)`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error(`stream bench clean-up: ${e instanceof Error ? e.message : String(e)}`));
  }
}

async function readsFromRedis(o: StreamSectionOptions, redisUrl: string, prefix: string): Promise<void> {
  const { fmt } = o;
  console.log('');
  console.log(`### Online reads from Redis: POST /get-online-features, 1 entity x ${READ_FEATURES.length} origin_delays features, ${CONNECTIONS} connections`);
  const serve = startChild([TIDEMARK, 'serve', '--definitions', 'examples/flights', '--redis-url', redisUrl, '--prefix', prefix, '--clock', 'watermark', '--port', '0', '--host', '127.0.0.1'], 'tidemark serve');
  try {
    const origin = /(http:\/\/\S+)\s*$/.exec(await serve.ready)?.[1];
    if (!origin) throw new Error(`tidemark serve printed no address: ${await serve.ready}`);
    const target: LoadTarget = { origin, path: '/get-online-features', method: 'POST', body: JSON.stringify({ features: READ_FEATURES, entities: { airport: ['ORD'] } }) };
    await saturationRps(target, CONNECTIONS, 1_000); // warm-up (scripts loaded, JIT)
    const commands = await commandsPerRequest(redisUrl, prefix, target);
    const redis = new Redis(redisUrl);
    const before = await redisCounters(redis);
    const rps = await saturationRps(target, CONNECTIONS, o.saturationMs);
    const during = commandsBetween(before.commands, (await redisCounters(redis)).commands);
    redis.disconnect();
    const half = await latencyAtRate(target, Math.max(1, Math.floor(rps / 2)), o.latencyMs);
    const baselines = commands.map((c) => ({ command: c, ...redisBenchmark(redisUrl, c, CONNECTIONS, 3) }));
    const both = 1 / baselines.reduce((s, b) => s + 1 / b.rps, 0);
    // EVALSHA <sha> <key count> <keys> <args>: name the script and keep the arguments short.
    const describe = (c: string[]): string =>
      c[0]!.toLowerCase() === 'evalsha' ? `EVALSHA ${c[1]!.slice(0, 8)}... ${c[2]} ${c.slice(3, 3 + Number(c[2])).join(' ')} ${c.slice(3 + Number(c[2])).join(' ')}` : c.join(' ');
    console.log('| measure | req/s | p50 ms | p99 ms |');
    console.log('|---|---:|---:|---:|');
    console.log(`| tidemark serve (Redis store, watermark clock): saturation | ${fmt(rps)} | | |`);
    console.log(`| tidemark serve: open loop at half of saturation | ${fmt(half.rateRps)} | ${fmt(half.p50Ms, 3)} | ${fmt(half.p99Ms, 3)} |`);
    for (const b of baselines) console.log(`| baseline: redis-benchmark -c ${CONNECTIONS} ${describe(b.command).replace(/\|/g, '/')} (saturation) | ${fmt(b.rps)} | ${fmt(b.p50Ms, 3)} | ${fmt(b.p99Ms, 3)} |`);
    if (baselines.length > 1) console.log(`| baseline: the ${baselines.length} commands of a request one after the other (1 / sum of 1 / req/s) | ${fmt(both)} | | |`);
    const requests = (rps * o.saturationMs) / 1000;
    const sent = new Set(commands.map((c) => c[0]!.toLowerCase()));
    const redisMicros = during.filter((c) => sent.has(c.command)).map((c) => ({ ...c, micros: (c.seconds * 1e6) / requests }));
    console.log(
      `per request the store sent ${commands.length} Redis command(s), ${commands.map((c) => c[0]!.toUpperCase()).join(' then ')}; tidemark serve reaches ${fmt(rps / both, 2)} of the rate redis-benchmark gets for them; ` +
        `at saturation Redis spent ${redisMicros.map((c) => `${fmt(c.micros)} µs in ${c.command.toUpperCase()}`).join(' and ')} per request (INFO commandstats), busy ${fmt((100 * redisMicros.reduce((n, c) => n + c.seconds, 0)) / (o.saturationMs / 1000))}% of the time`,
    );
    console.log(`target: p99 under ${TARGETS.readP99Ms} ms at half of saturation: ${half.p99Ms < TARGETS.readP99Ms ? 'met' : 'NOT met'} (${fmt(half.p99Ms, 3)} ms)`);
  } finally {
    await serve.stop();
  }
}

async function freshness(o: StreamSectionOptions, kafka: KafkaCluster, redisUrl: string, runId: string): Promise<void> {
  const { fmt } = o;
  console.log('');
  console.log(`### Freshness: produce to visible in Redis at ${fmt(FRESHNESS_RATE)} events/s, one produce request every ${FRESHNESS_BATCH_MS} ms, for ${FRESHNESS_SECONDS} s after 3 s of warm-up`);
  console.log('| materializer | events | p50 ms | p90 ms | p99 ms | max ms | p99 under 100 ms |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  const cases = [
    { name: `as tidemark materialize runs it (fetch max wait ${CONSUMER_SETTINGS.maxWaitTimeMs} ms)`, maxWaitMs: CONSUMER_SETTINGS.maxWaitTimeMs },
    { name: `fetch max wait ${SHORT_FETCH_WAIT_MS} ms`, maxWaitMs: SHORT_FETCH_WAIT_MS },
  ];
  const notes: string[] = [];
  for (const [i, c] of cases.entries()) {
    const topic = `tidemark-bench-${runId}-fresh-${i}`;
    const prefix = `bench-${runId}-fresh-${i}`;
    await kafka.createTopic(topic, PARTITIONS);
    const materializer = startChild([RUN_TS, 'bench/stream-worker.ts', 'materialize', kafka.bootstrap, topic, redisUrl, prefix, 'until-stopped', String(c.maxWaitMs)], 'materializer');
    let result: Record<string, number>;
    let final: Record<string, unknown>;
    try {
      await materializer.ready;
      result = await o.runWorker(['bench/stream-freshness.ts', kafka.bootstrap, topic, redisUrl, prefix, String(FRESHNESS_RATE), String(FRESHNESS_BATCH_MS), String(FRESHNESS_SECONDS), '3']);
    } finally {
      final = JSON.parse((await materializer.stop()) || '{}') as Record<string, unknown>;
    }
    const met = result.p99Ms! < TARGETS.freshnessP99Ms && result.notVisible === 0;
    console.log(`| ${c.name}: produce (due time) to the event's origin_delays key fence covering it | ${fmt(result.measured!)} | ${fmt(result.p50Ms!, 1)} | ${fmt(result.p90Ms!, 1)} | ${fmt(result.p99Ms!, 1)} | ${fmt(result.maxMs!, 1)} | ${met ? 'met' : 'NOT met'} |`);
    const histogram = final.freshnessHistogram as { name: string; values: HistogramValue[] } | null | undefined;
    if (histogram) {
      const q = histogramQuantiles(histogram.values, [0.5, 0.9, 0.99]);
      console.log(`| ${c.name}: the materializer's own ${histogram.name} (bucket upper bounds) | ${fmt(q.count)} | ${q.values.map((v) => fmt(v * 1000, 1)).join(' | ')} | | |`);
    }
    notes.push(`${c.name}: sent ${fmt(result.events!)} events at ${fmt(result.rate!)}/s, ${fmt(result.notVisible!)} measured events not visible within 10 s of the last send, ${fmt(Number(final.batches ?? 0))} batches (${fmt(result.events! / Number(final.batches ?? 1), 1)} events each)`);
  }
  for (const note of notes) console.log(note);
  if (kafka.controllable) {
    console.log(`(the mock cluster holds a fetch that finds no new record for the whole max wait, where Kafka answers it as soon as records arrive: the ${SHORT_FETCH_WAIT_MS} ms row is the one that shows tidemark's own latency there)`);
  }
}

type HistogramValue = { value: number; labels: Record<string, string | number>; metricName?: string };

/** Quantiles of a prom-client histogram (summed over its label sets) as the upper bound of the bucket holding them. */
function histogramQuantiles(values: HistogramValue[], qs: number[]): { count: number; values: number[] } {
  const buckets = new Map<number, number>();
  let count = 0;
  for (const v of values) {
    if (v.metricName?.endsWith('_bucket')) {
      const le = v.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(v.labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + v.value);
    } else if (v.metricName?.endsWith('_count')) count += v.value;
  }
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  return { count, values: qs.map((q) => sorted.find(([, c]) => c >= q * count)?.[0] ?? Number.NaN) };
}

/** On services we did not start: delete the benchmark's keys and topics. */
async function cleanUp(kafka: KafkaCluster, redisUrl: string, runId: string): Promise<void> {
  if (process.env.REDIS_URL) {
    const redis = new Redis(redisUrl);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `bench-${runId}-*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  }
  if (!kafka.controllable) {
    const admin = new Kafka({ clientId: 'tidemark-bench-cleanup', brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(`tidemark-bench-${runId}`));
      if (topics.length > 0) await admin.deleteTopics({ topics });
    } finally {
      await admin.disconnect();
    }
  }
}
