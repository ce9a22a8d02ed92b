// The stream path into a Redis Cluster: the first 20 000 flights produced to a 4-partition topic on
// a private librdkafka mock cluster, one Materializer (its partitions' batches group-committed
// together) writing into the run's Redis Cluster of three masters, where each script call holds
// the keys of one hash slot; then every key of every view equals the reference at the watermark,
// and the entities were spread over every master.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { Partitioners } from 'kafkajs';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { Materializer } from '../../ingest/index.js';
import { createRedisClient, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { startMockKafka } from '../support/kafka.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';
import { testRedisClusterNodes } from '../support/redis.js';
import { clusterUrl } from '../online/redis-backends.js';
import { committedTotal, compareWithReference, flightRecords, kafkaClient, maxEventTime, produce, until } from './support.js';

const LIMIT = 20_000;
const PARTITIONS = 4;
const compiled = compileOrThrow(flightsDefinitions);

let mock: Awaited<ReturnType<typeof startMockKafka>>;
let fx: FlightsFixture;
let records: string[];
let cluster: RedisClient;

beforeAll(async () => {
  [mock, fx, records] = await Promise.all([startMockKafka({ brokers: 3 }), loadFlightsFixture(LIMIT), flightRecords(LIMIT)]);
  cluster = createRedisClient(clusterUrl(testRedisClusterNodes()));
});
afterAll(async () => {
  await cluster?.quit();
  await mock?.stop();
});

describe('Kafka materializer into Redis Cluster (librdkafka mock cluster, 3 Redis masters)', () => {
  it('materializes 20 000 flights: every key of every view equals the reference, keys spread over every master', async () => {
    expect(cluster).toBeInstanceOf(Cluster);
    await mock.createTopic('flights', PARTITIONS);
    const kafka = kafkaClient(mock.brokers);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    await produce(producer, 'flights', records, PARTITIONS);
    await producer.disconnect();

    const prefix = `cluster-${randomUUID().slice(0, 8)}`;
    const groupId = `cluster-${randomUUID().slice(0, 8)}`;
    const store = new RedisOnlineStore(compiled.registry, cluster, { prefix });
    const m = new Materializer({ compiled, brokers: mock.brokers, groupId, store, storeReady: () => cluster.status === 'ready', sessionTimeoutMs: 10_000, heartbeatIntervalMs: 500, processMetrics: false });
    try {
      await m.start();
      await until(() => m.stats().events >= LIMIT, `all ${LIMIT} events`);
      await until(async () => (await committedTotal(kafka, groupId, 'flights')) >= LIMIT, 'every offset committed');
      expect(m.stats()).toMatchObject({ events: LIMIT, badEvents: 0, lateTileEvents: 0, refusedKeys: 0, droppedBatches: 0 });
      expect(m.health().assigned.flights).toEqual([0, 1, 2, 3]);
    } finally {
      await m.stop();
    }

    expect(await store.watermarkMs()).toBe(maxEventTime(fx));
    const { compared, mismatches } = await compareWithReference(compiled, store, fx);
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(7_000);

    // Every master holds some of the entities.
    const perMaster = await Promise.all(
      (cluster as Cluster).nodes('master').map(async (node) => {
        let n = 0;
        let cursor = '0';
        do {
          const [next, keys] = (await node.scan(cursor, 'MATCH', `${prefix}:{*}:k`, 'COUNT', 1000)) as [string, string[]];
          cursor = next;
          n += keys.length;
        } while (cursor !== '0');
        return n;
      }),
    );
    expect(perMaster).toHaveLength(3);
    expect(perMaster.every((n) => n > 100)).toBe(true);
    expect(perMaster.reduce((a, b) => a + b, 0)).toBe(Object.values((await store.stats()).keys).reduce((a, b) => a + b, 0));
  });
});
