// Worker processes of the stream benchmark (bench/stream.ts), one role per process so that each
// client under test has a Node.js process of its own. The last stdout line is the JSON result.
//
//   produce <brokers> <topic> <events> <partitions>
//       the first <events> flights as JSON, record i to partition i % <partitions>; checks that the
//       broker kept them all (the mock cluster drops the oldest data past 5 MB per partition)
//   kafkajs-noop <brokers> <topic> <events>
//   platformatic-noop <brokers> <topic> <events>
//       a consumer group of one that hands every record to a handler doing nothing, until <events>
//   materialize <brokers> <topic> <redisUrl> <prefix> <events|until-stopped> [<fetch max wait ms>]
//       tidemark's Materializer into Redis, as `tidemark materialize` runs it; with a count, times
//       it to that many events; with until-stopped, prints {ready} once in the group and its
//       result on SIGTERM (the freshness run)
//
// Rates are timed from joining the group (a rebalance of the mock cluster takes seconds and is no
// part of a client's throughput) to the last record handled; for the materializer, to the last
// batch written to Redis and committed.
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { Materializer } from '../ingest/index.js';
import { claimStreamVersions, createRedisClient, RedisOnlineStore } from '../online/index.js';
import { commandsBetween, CONSUMER_SETTINGS, flightRows, flightsOnTopic, printResult, redisCounters } from './stream-support.js';

const [role = '', brokerList = '', topic = '', ...rest] = process.argv.slice(2);
if (!role || !brokerList || !topic) throw new Error('usage: stream-worker.ts <role> <brokers> <topic> ...');
const brokers = brokerList.split(',');
const GIVE_UP_MS = 120_000;
const STALL_MS = 30_000;
/**
 * Records per partition in one produce request, so one record batch: ~0.7 MB of flights JSON, under
 * Kafka's default 1 MB message limit. The mock cluster answers a fetch with one record batch per
 * partition, so this is also the batch size consumers see there: about what a 1 MiB fetch
 * (maxBytesPerPartition) returns from Kafka when a consumer has a backlog.
 */
const RECORDS_PER_PRODUCER_BATCH = 8_000;

const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
};

/** Resolves when `check` holds (polled every `everyMs`), rejects after `timeoutMs`. */
async function until(check: () => boolean, what: string, everyMs = 2, timeoutMs = GIVE_UP_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

async function produce(): Promise<void> {
  const [events, partitions] = rest.map(Number) as [number, number];
  const rows = await flightRows(events);
  const kafka = new Kafka({ clientId: 'tidemark-bench-producer', brokers, logLevel: logLevel.ERROR });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const started = performance.now();
  let bytes = 0;
  const chunk = RECORDS_PER_PRODUCER_BATCH * partitions;
  for (let i = 0; i < rows.length; i += chunk) {
    const messages = rows.slice(i, i + chunk).map((row, j) => {
      const value = JSON.stringify(row);
      bytes += value.length;
      return { partition: (i + j) % partitions, value };
    });
    await producer.send({ topic, messages, acks: -1 });
  }
  const seconds = (performance.now() - started) / 1000;
  await producer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const kept = offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  if (kept !== rows.length) {
    throw new Error(`the broker kept ${kept} of the ${rows.length} records produced to ${topic} (partitions low-high: ${offsets.map((p) => `${p.low}-${p.high}`).join(', ')}); the mock cluster keeps 5 MB per partition: produce fewer events or use more partitions`);
  }
  printResult({ events: rows.length, seconds, valueBytes: bytes });
}

async function kafkajsNoop(): Promise<void> {
  const events = Number(rest[0]);
  const kafka = new Kafka({ clientId: 'tidemark-bench-kafkajs', brokers, logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({
    groupId: `bench-kafkajs-${process.pid}-${Date.now()}`,
    sessionTimeout: CONSUMER_SETTINGS.sessionTimeoutMs,
    heartbeatInterval: CONSUMER_SETTINGS.heartbeatIntervalMs,
    maxWaitTimeInMs: CONSUMER_SETTINGS.maxWaitTimeMs,
    minBytes: CONSUMER_SETTINGS.minBytes,
    maxBytes: CONSUMER_SETTINGS.maxBytes,
    maxBytesPerPartition: CONSUMER_SETTINGS.maxBytesPerPartition,
  });
  let joinedAt: number | null = null;
  let doneAt: number | null = null;
  let cpuAtJoin = process.cpuUsage();
  const startedAt = performance.now();
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joinedAt ??= performance.now();
    cpuAtJoin = process.cpuUsage();
  });
  let seen = 0;
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently: CONSUMER_SETTINGS.partitionsConsumedConcurrently,
    // The no-op handler: counts what it was handed, nothing else.
    eachBatch: async ({ batch }) => {
      seen += batch.messages.length;
      if (seen >= events) doneAt ??= performance.now();
    },
  });
  await until(() => doneAt !== null, `${events} records`);
  const cpu = cpuSeconds(cpuAtJoin);
  await consumer.disconnect();
  printResult({ events: seen, seconds: (doneAt! - joinedAt!) / 1000, cpuSeconds: cpu, joinSeconds: (joinedAt! - startedAt) / 1000 });
}

async function platformaticNoop(): Promise<void> {
  const events = Number(rest[0]);
  // Imported here: it compiles its option validators (ajv) at import, which the other roles need not pay.
  const { Consumer: PlatformaticConsumer } = await import('@platformatic/kafka');
  const consumer = new PlatformaticConsumer({
    groupId: `bench-platformatic-${process.pid}-${Date.now()}`,
    clientId: 'tidemark-bench-platformatic',
    bootstrapBrokers: brokers,
    sessionTimeout: CONSUMER_SETTINGS.sessionTimeoutMs,
    heartbeatInterval: CONSUMER_SETTINGS.heartbeatIntervalMs,
    maxWaitTime: CONSUMER_SETTINGS.maxWaitTimeMs,
    minBytes: CONSUMER_SETTINGS.minBytes,
    maxBytes: CONSUMER_SETTINGS.maxBytes,
    maxBytesPerPartition: CONSUMER_SETTINGS.maxBytesPerPartition,
    autocommit: true,
  });
  let joinedAt: number | null = null;
  let doneAt: number | null = null;
  let cpuAtJoin = process.cpuUsage();
  const startedAt = performance.now();
  consumer.on('consumer:group:join', () => {
    joinedAt ??= performance.now();
    cpuAtJoin = process.cpuUsage();
  });
  try {
    // (The promise overload of consume(), which TypeScript does not pick from the package's types.)
    const stream = (await (consumer.consume({ topics: [topic], mode: 'earliest' }) as unknown as Promise<{ on(event: 'data', listener: () => void): unknown }>));
    let seen = 0;
    // The no-op handler (values stay Buffers: no deserializer runs).
    stream.on('data', () => {
      if (++seen >= events) doneAt ??= performance.now();
    });
    await until(() => doneAt !== null, `${events} records`);
    const cpu = cpuSeconds(cpuAtJoin);
    printResult({ events: seen, seconds: (doneAt! - joinedAt!) / 1000, cpuSeconds: cpu, joinSeconds: (joinedAt! - startedAt) / 1000 });
  } catch (e) {
    // Reported, not thrown: the section prints why this client could not be measured.
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    const detail = inner instanceof Error ? `: ${inner.message}` : '';
    printResult({ error: `${e instanceof Error ? e.message : String(e)}${detail}` });
  } finally {
    await (consumer.close(true) as unknown as Promise<void>).catch(() => undefined);
  }
}

async function materialize(): Promise<void> {
  const [redisUrl, prefix, until_, maxWaitArg] = rest as [string, string, string, string | undefined];
  const untilStopped = until_ === 'until-stopped';
  const events = untilStopped ? Number.POSITIVE_INFINITY : Number(until_);
  const compiled = flightsOnTopic(topic);
  const client = createRedisClient(redisUrl);
  const store = new RedisOnlineStore(compiled.registry, client, { prefix });
  // A fresh group starts from the topics' beginning: record the view versions as ready, as `tidemark
  // materialize` does (api/materialize-start.ts), so `tidemark serve` reads them.
  await claimStreamVersions(client, prefix, compiled.registry);
  // As `tidemark materialize` builds it without flags (api/cli.ts), with the benchmark's topic and
  // group, and the fetch max wait when one is given.
  const materializer = new Materializer({
    compiled,
    brokers,
    groupId: `bench-materializer-${process.pid}-${Date.now()}`,
    store,
    storeReady: () => client.status === 'ready',
    sessionTimeoutMs: CONSUMER_SETTINGS.sessionTimeoutMs,
    heartbeatIntervalMs: CONSUMER_SETTINGS.heartbeatIntervalMs,
    maxBytesPerPartition: CONSUMER_SETTINGS.maxBytesPerPartition,
    ...(maxWaitArg === undefined ? {} : { maxWaitTimeMs: Number(maxWaitArg) }),
    log: (level, message, details) => {
      if (level === 'error') console.error(`materializer: ${message} ${JSON.stringify(details ?? {})}`);
    },
  });
  let failure: unknown = null;
  materializer.done.catch((e: unknown) => (failure = e));
  const startedAt = performance.now();
  await materializer.start();
  await until(() => Object.keys(materializer.health().assigned).length > 0, 'the materializer to join its group');
  const joinedAt = performance.now();
  const cpuAtJoin = process.cpuUsage();
  const redisAtJoin = await redisCounters(client);
  const handled = (): number => materializer.stats().events + materializer.stats().badEvents;
  if (untilStopped) {
    printResult({ ready: true });
    await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  } else {
    // Fail with the materializer's own account when it stops making progress.
    let progress = { handled: 0, at: Date.now() };
    await until(() => {
      if (failure !== null) throw new Error(`the materializer failed: ${failure instanceof Error ? failure.message : String(failure)}`);
      if (handled() > progress.handled) progress = { handled: handled(), at: Date.now() };
      else if (Date.now() - progress.at > STALL_MS) {
        throw new Error(`the materializer stalled at ${progress.handled} of ${events} events: ${JSON.stringify(materializer.stats())} ${JSON.stringify(materializer.health())}`);
      }
      return handled() >= events;
    }, `${events} events materialized`);
  }
  const doneAt = performance.now();
  const cpu = cpuSeconds(cpuAtJoin);
  const redisAtEnd = await redisCounters(client);
  const stats = materializer.stats();
  const metrics = await materializer.metrics.registry.getMetricsAsJSON();
  const histogram = (match: (name: string) => boolean) => metrics.find((m) => match(m.name) && String(m.type) === 'histogram') ?? null;
  // Batch time (fetched to committed), and a freshness histogram where the materializer keeps one.
  const batchSeconds = histogram((name) => name === 'tidemark_materializer_batch_seconds');
  const freshness = histogram((name) => name.includes('freshness'));
  const sumOf = (h: typeof batchSeconds, suffix: string): number => (h?.values ?? []).filter((v) => (v as { metricName?: string }).metricName?.endsWith(suffix)).reduce((n, v) => n + v.value, 0);
  await materializer.stop();
  await client.quit();
  printResult({
    events: stats.events,
    badEvents: stats.badEvents,
    batches: stats.batches,
    seconds: (doneAt - joinedAt) / 1000,
    joinSeconds: (joinedAt - startedAt) / 1000,
    cpuSeconds: cpu,
    batchSecondsSum: sumOf(batchSeconds, '_sum'),
    redisCpuSeconds: redisAtEnd.cpuSeconds - redisAtJoin.cpuSeconds,
    redisCommands: commandsBetween(redisAtJoin.commands, redisAtEnd.commands),
    freshnessHistogram: freshness ? { name: freshness.name, values: freshness.values } : null,
  });
}

const roles: Record<string, () => Promise<void>> = { produce, 'kafkajs-noop': kafkajsNoop, 'platformatic-noop': platformaticNoop, materialize };
const run = roles[role];
if (!run) throw new Error(`unknown role ${role} (${Object.keys(roles).join(', ')})`);
await run();
process.exit(0);
