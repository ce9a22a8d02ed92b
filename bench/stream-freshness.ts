// Freshness driver of the stream benchmark (bench/stream.ts): produces flights at a fixed event rate,
// sent in one produce request every <producer batch ms>, while a Materializer (bench/stream-worker.ts
// materialize ... until-stopped) writes them to Redis, and times each event from the moment it was
// due on the schedule (also its event time) to the moment its tiles are visible in Redis.
//
//   stream-freshness.ts <brokers> <topic> <redisUrl> <prefix> <events/s> <producer batch ms> <seconds> <warm-up seconds>
//
// Visible means: the `origin_delays` key of the event's origin has merged it. The Redis store keeps
// per key and partition the highest applied offset, its fence, written in the same script call as
// the tiles (online/redis.ts), so an event at (partition, offset) is visible once its key's fence
// for that partition is >= offset. The driver learns of fence writes through Redis keyspace
// notifications (it turns on `notify-keyspace-events Kh` for the run and restores the setting
// after), reads the key's fences (HGETALL) on each, and stamps every event they cover with the time
// that read answered: an upper bound of when it became visible, late by at most one round trip.
// An event acknowledged by Kafka after its fence was read is stamped with the time of that read.
// Events sent during the warm-up are not counted. The last stdout line is the JSON result.
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { Redis } from 'ioredis';
import { flightRows, printResult } from './stream-support.js';
import { compileOrThrow } from '../definitions/index.js';
import * as flightsDefinitions from '../examples/flights/definitions.js';
import { viewNamespace } from '../online/index.js';

const [brokerList, topic, redisUrl, prefix, rateArg, batchMsArg, secondsArg, warmupArg] = process.argv.slice(2);
if (!brokerList || !topic || !redisUrl || !prefix) throw new Error('usage: stream-freshness.ts <brokers> <topic> <redisUrl> <prefix> <events/s> <producer batch ms> <seconds> <warm-up seconds>');
const rate = Number(rateArg);
const batchMs = Number(batchMsArg);
const measureSeconds = Number(secondsArg);
const warmupSeconds = Number(warmupArg);
const DRAIN_MS = 10_000;
// The key namespace of origin_delays' version (its keys are `P:{<namespace>:<origin>}:k`).
const VIEW = viewNamespace(compileOrThrow(flightsDefinitions).registry.views.find((v) => v.name === 'origin_delays')!);
const SOURCE = 'flights';

interface PendingEvent {
  partition: number;
  offset: number;
  /** When the event was due on the fixed-rate schedule (performance.now() time). */
  dueAt: number;
  measured: boolean;
}

const rows = await flightRows(Math.ceil(rate * (warmupSeconds + measureSeconds)));
const db = Number(/^rediss?:\/\/[^/]*\/(\d+)/.exec(redisUrl)?.[1] ?? 0);
const commands = new Redis(redisUrl);
const subscriber = new Redis(redisUrl);
const kafka = new Kafka({ clientId: 'tidemark-bench-freshness', brokers: brokerList.split(','), logLevel: logLevel.ERROR });
const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
const partitions = (await (async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).length;
  } finally {
    await admin.disconnect();
  }
})());

// Keyspace notifications for hashes, for this run only.
const [, savedFlags] = (await commands.config('GET', 'notify-keyspace-events')) as [string, string];
let flags = savedFlags.includes('K') ? savedFlags : `${savedFlags}K`;
if (!flags.includes('h') && !flags.includes('A')) flags += 'h';
await commands.config('SET', 'notify-keyspace-events', flags);

/** Events sent and acknowledged, not yet seen visible, by origin (the origin_delays entity key). */
const pending = new Map<string, PendingEvent[]>();
/** The latest fences read per origin: partition -> offset, and when the read answered. */
const fencesSeen = new Map<string, { fences: Map<number, number>; at: number }>();
const latenciesMs: number[] = [];
let notifications = 0;
let fenceReads = 0;

function settle(origin: string): void {
  const seen = fencesSeen.get(origin);
  const list = pending.get(origin);
  if (!seen || !list) return;
  const left = list.filter((e) => {
    if ((seen.fences.get(e.partition) ?? -1) < e.offset) return true;
    if (e.measured) latenciesMs.push(seen.at - e.dueAt);
    return false;
  });
  if (left.length === 0) pending.delete(origin);
  else pending.set(origin, left);
}

const reading = new Set<string>();
const dirty = new Set<string>();
async function readFences(origin: string): Promise<void> {
  if (reading.has(origin)) {
    dirty.add(origin);
    return;
  }
  reading.add(origin);
  try {
    do {
      dirty.delete(origin);
      const hash = await commands.hgetall(`${prefix}:{${VIEW}:${origin}}:k`);
      fenceReads++;
      const at = performance.now();
      const fences = new Map<number, number>();
      for (const [field, value] of Object.entries(hash)) {
        const m = /^fence:(.+):(\d+)$/.exec(field);
        if (m && m[1] === SOURCE) fences.set(Number(m[2]), Number(value));
      }
      fencesSeen.set(origin, { fences, at });
      settle(origin);
    } while (dirty.has(origin));
  } finally {
    reading.delete(origin);
  }
}

const channelPrefix = `__keyspace@${db}__:${prefix}:{${VIEW}:`;
subscriber.on('pmessage', (_pattern: string, channel: string) => {
  notifications++;
  if (!channel.startsWith(channelPrefix) || !channel.endsWith('}:k')) return;
  void readFences(channel.slice(channelPrefix.length, -3));
});
await subscriber.psubscribe(`${channelPrefix}*}:k`);
await producer.connect();

// Open loop: event i is due at i / rate seconds; every `batchMs` the producer sends the events due
// by then in one request, whether or not earlier sends were acknowledged. The records have no key,
// and each request goes to the next partition in turn, as Kafka's sticky partitioner sends keyless
// records (one partition per batch). An event's time (its `date`, and where its freshness is
// counted from) is when it was due, so the wait for its batch to leave counts too.
const sends: Promise<void>[] = [];
const started = performance.now();
const wallAtStart = Date.now();
const totalEvents = rows.length;
const warmupEvents = Math.floor(rate * warmupSeconds);
let sent = 0;
while (sent < totalEvents) {
  const due = Math.min(totalEvents, Math.floor(((performance.now() - started) / 1000) * rate));
  if (due > sent) {
    const batch = rows.slice(sent, due).map((row, j) => {
      const index = sent + j;
      const dueAt = started + (index * 1000) / rate;
      return { row: { ...row, date: Math.round(wallAtStart + dueAt - started) } as Record<string, unknown>, dueAt, partition: sends.length % partitions, measured: index >= warmupEvents };
    });
    sent = due;
    sends.push(
      producer.send({ topic, acks: -1, messages: batch.map((e) => ({ partition: e.partition, value: JSON.stringify(e.row) })) }).then((metadata) => {
        // Offsets in one partition follow the order of the messages sent to it.
        const next = new Map(metadata.map((m) => [m.partition, Number(m.baseOffset)]));
        const touched = new Set<string>();
        for (const e of batch) {
          const offset = next.get(e.partition)!;
          next.set(e.partition, offset + 1);
          const origin = String(e.row.origin);
          const list = pending.get(origin) ?? [];
          list.push({ partition: e.partition, offset, dueAt: e.dueAt, measured: e.measured });
          pending.set(origin, list);
          touched.add(origin);
        }
        for (const origin of touched) settle(origin);
      }),
    );
  }
  await new Promise((resolve) => setTimeout(resolve, batchMs));
}
const sendSeconds = (performance.now() - started) / 1000;
await Promise.all(sends);
const drainDeadline = Date.now() + DRAIN_MS;
while (pending.size > 0 && Date.now() < drainDeadline) await new Promise((resolve) => setTimeout(resolve, 20));
const notVisible = [...pending.values()].reduce((n, list) => n + list.filter((e) => e.measured).length, 0);

await commands.config('SET', 'notify-keyspace-events', savedFlags);
await producer.disconnect();
subscriber.disconnect();
commands.disconnect();

const sorted = Float64Array.from(latenciesMs).sort();
const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
printResult({
  events: totalEvents,
  measured: sorted.length,
  rate: totalEvents / sendSeconds,
  p50Ms: at(0.5),
  p90Ms: at(0.9),
  p99Ms: at(0.99),
  maxMs: sorted[sorted.length - 1] ?? Number.NaN,
  notVisible,
  notifications,
  fenceReads,
});
process.exit(0);
