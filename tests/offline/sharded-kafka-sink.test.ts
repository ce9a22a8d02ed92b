// The offline Kafka sink on a sharded store (2 chDB shard processes, tests/support/clickhouse-shards.ts;
// Kafka: the suite's broker, librdkafka's mock cluster or KAFKA_BROKERS): stream events land on the
// shards their keys name, a dataset over them equals the single-node dataset of the same events
// loaded from a file, and after a crash that left one shard's insert undone (its rows deleted
// here), a redelivery stores exactly those rows on that shard and nothing twice anywhere.
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow } from '../../definitions/index.js';
import * as flights from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { readParquetBatches } from '../../ingest/index.js';
import { kafkaLoadId, OfflineKafkaSink, OfflineStore } from '../../offline/index.js';
import { shardOfKey } from '../../offline/shards.js';
import { databaseUrls, datasetsOfBoth, startClickHouseShards, type ClickHouseShards } from '../support/clickhouse-shards.js';
import { testKafka, type KafkaCluster } from '../support/kafka.js';
import { writeNdjson } from '../support/offline-fixtures.js';

const EVENTS = 2_000;
const compiled = compileOrThrow(flights);
const FEATURES = ['origin_delays:flights_1h', 'origin_delays:delay_mean_1d', 'origin_delays:last_delay', 'route_delays:flights_7d', 'dest_delays:delay_mean_1d'];
let kafka: KafkaCluster;
let cluster: ClickHouseShards;
let topic: string;
const root = mkdtempSync(join(tmpdir(), 'tidemark-sharded-sink-'));
const rows: Record<string, unknown>[] = [];

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

beforeAll(async () => {
  [kafka, cluster] = await Promise.all([testKafka(), startClickHouseShards(root, 2)]);
  topic = `flights-${randomUUID().slice(0, 8)}`;
  (compiled.registry.sources[0] as { topic: string }).topic = topic;
  await kafka.createTopic(topic, 2);
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit: EVENTS })) rows.push(...batch.rows);
  const producer = new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  await producer.send({ topic, messages: rows.map((row, i) => ({ partition: i % 2, value: JSON.stringify(row) })) });
  await producer.disconnect();
}, 120_000);

afterAll(async () => {
  await cluster?.close();
  await kafka?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('offline Kafka sink on 2 shards', () => {
  it('routes events to their shards; after one shard lost a batch, a redelivery restores it there only; datasets equal the single node', async () => {
    const dir = join(root, 'sink');
    mkdirSync(dir, { recursive: true });
    const sharded = await OfflineStore.open(compiled, { clickhouseShards: await databaseUrls(cluster.urls, 'sink') });
    const single = await OfflineStore.open(compiled, { clickhouseUrl: (await databaseUrls(cluster.urls.slice(0, 1), 'single'))[0]! });
    const count = async (shard: number): Promise<{ n: number; distinct: number }> => {
      const [r] = await sharded.shards!.executors[shard]!.rows<{ n: number; distinct: number }>('SELECT count() AS n, uniqExact(__load, __offset) AS distinct FROM tm_events_flights');
      return { n: Number(r!.n), distinct: Number(r!.distinct) };
    };
    try {
      const sink = new OfflineKafkaSink(sharded.shards!, compiled, { brokers: kafka.brokers, groupId: `sink-${randomUUID().slice(0, 8)}` });
      await sink.start();
      try {
        await until(async () => sink.stats.events === EVENTS, `${EVENTS} events`);
      } finally {
        await sink.stop();
      }
      // Every event is on each shard one of its keys (origin, route, destination) names, once.
      const expected = [0, 1].map((shard) =>
        rows.filter((r) => [[r.origin], [r.origin, r.destination], [r.destination]].some((key) => shardOfKey(key.map(String), 2) === shard)).length,
      );
      const before = [await count(0), await count(1)];
      expect(before).toEqual(expected.map((n) => ({ n, distinct: n })));

      // A crash after shard 1 stored nothing of partition 0's last records (shard 0 has them).
      const lost = kafkaLoadId(topic, 0);
      await sharded.shards!.executors[1]!.command(`ALTER TABLE tm_events_flights DELETE WHERE __load = {l:String} AND __offset >= 600 SETTINGS mutations_sync = 2`, { l: lost });
      const afterCrash = await count(1);
      expect(afterCrash.n).toBeLessThan(expected[1]!);
      const again = new OfflineKafkaSink(sharded.shards!, compiled, { brokers: kafka.brokers, groupId: `sink-${randomUUID().slice(0, 8)}` });
      await again.start();
      try {
        await until(async () => again.stats.events + again.stats.redelivered >= EVENTS, 'the redelivery');
      } finally {
        await again.stop();
      }
      expect(again.stats.events).toBe(expected[1]! - afterCrash.n);
      expect([await count(0), await count(1)]).toEqual(expected.map((n) => ({ n, distinct: n })));

      // Datasets: the sharded stream events equal the same events loaded from a file on one node.
      await single.loadEvents('flights', writeNdjson(join(dir, 'events.ndjson'), rows));
      const airports = ['ORD', 'ATL', 'SFO', 'DEN', 'LAX', 'PHX'];
      const t0 = Math.min(...rows.map((r) => Number(r.date)));
      const spine = writeNdjson(
        join(dir, 'spine.ndjson'),
        Array.from({ length: 60 }, (_, i) => ({ airport: airports[i % 6], origin: airports[i % 6], destination: airports[(i + 1) % 6], ts: t0 + i * 600_000, label: i % 2 })),
      );
      const both = await datasetsOfBoth(sharded, single, spine, FEATURES, dir);
      expect(both.sharded).toEqual(both.single);
    } finally {
      await sharded.close();
      await single.close();
    }
  }, 120_000);
});
