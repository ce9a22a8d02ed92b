// Faults of the services around a running Materializer (in process), each on private services:
// Kafka brokers down and back (a private librdkafka mock cluster: the shared one serves every test
// file), and Redis down and back (a private redis-server with append-only persistence, stopped and
// started again on the same port and data directory). What the tests demand: /healthz answers 503
// degraded while the materializer cannot fetch, commit or write, and 200 again afterwards; no
// offset is committed for events not written; and once it has caught up, every key of every view
// equals the reference.
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Partitioners } from 'kafkajs';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { buildMaterializerServer, Materializer } from '../../ingest/index.js';
import { RedisOnlineStore, createRedisClient, type RedisClient } from '../../online/index.js';
import { startMockKafka } from '../support/kafka.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';
import { testRedisUrl, pingRedis } from '../support/redis.js';
import { freeLoopbackPort, requireExecutable, sleep, spawnTethered, stopTethered } from '../support/services.js';
import { committedTotal, compareWithReference, flightRecords, kafkaClient, produce, until } from './support.js';

const compiled = compileOrThrow(flightsDefinitions);
const CHUNK = 8_000;
let fx: FlightsFixture;
let records: string[];

beforeAll(async () => {
  [fx, records] = await Promise.all([loadFlightsFixture(2 * CHUNK), flightRecords(2 * CHUNK)]);
});

function materializer(brokers: string[], store: RedisOnlineStore, redis: RedisClient, groupId: string): Materializer {
  return new Materializer({
    compiled,
    brokers,
    groupId,
    store,
    storeReady: () => redis.status === 'ready',
    sessionTimeoutMs: 10_000,
    heartbeatIntervalMs: 500,
    retryBackoffMs: { initial: 50, max: 1_000 },
    probeIntervalMs: 200,
    processMetrics: false,
    log: process.env.TM_DEBUG ? (level, message, details) => console.log(Date.now() % 100000, level, message, JSON.stringify(details ?? {}).slice(0, 200)) : undefined,
  });
}

describe('Materializer under service faults', () => {
  it('Kafka: a partition leader down, then every broker down mid-replay: /healthz says 503 degraded, then 200; nothing lost or doubled', async () => {
    const mock = await startMockKafka({ brokers: 3 });
    const redis = createRedisClient(testRedisUrl());
    const store = new RedisOnlineStore(compiled.registry, redis, { prefix: `kfault-${randomUUID().slice(0, 8)}` });
    const groupId = `kfault-${randomUUID().slice(0, 8)}`;
    const kafka = kafkaClient(mock.brokers);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    const m = materializer(mock.brokers, store, redis, groupId);
    const server = await buildMaterializerServer(m);
    const health = async (): Promise<{ status: number; problems: string[] }> => {
      const res = await server.inject({ method: 'GET', url: '/healthz' });
      return { status: res.statusCode, problems: res.json<{ problems: string[] }>().problems };
    };
    try {
      await mock.createTopic('flights', 4);
      await producer.connect();
      await produce(producer, 'flights', records.slice(0, CHUNK / 2), 4);
      await m.start();
      await until(async () => (await committedTotal(kafka, groupId, 'flights')) === CHUNK / 2, 'the first records committed');
      expect((await health()).status).toBe(200);

      // One broker down: the leader of partition 0.
      const admin = kafka.admin();
      await admin.connect();
      const metadata = await admin.fetchTopicMetadata({ topics: ['flights'] });
      await admin.disconnect();
      const leader = metadata.topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader;
      await mock.brokerDown(leader);
      await until(async () => (await health()).status === 503, '/healthz to report the unreachable leader');
      expect((await health()).problems.join('; ')).toMatch(/Kafka/);
      await mock.brokerUp(leader);
      await until(async () => (await health()).status === 200, '/healthz to recover after the broker came back');

      // Every broker down while a backlog is being materialized (fetches and commits fail).
      await produce(producer, 'flights', records.slice(CHUNK / 2), 4, CHUNK / 2);
      await until(() => m.stats().events > CHUNK / 2, 'the backlog to start');
      await mock.brokerDown(-1);
      await until(async () => (await health()).status === 503, '/healthz to report Kafka down');
      await sleep(1_500); // let fetches, heartbeats and commits fail for a while
      await mock.brokerUp(-1);
      await until(async () => (await committedTotal(kafka, groupId, 'flights')) === 2 * CHUNK, 'every record committed after the brokers came back', 120_000);
      await until(async () => (await health()).status === 200, '/healthz to recover');

      expect(m.stats().lateTileEvents).toBe(0);
      const { mismatches, compared } = await compareWithReference(compiled, store, fx);
      expect(mismatches.slice(0, 10)).toEqual([]);
      expect(compared).toBeGreaterThan(2_000);
    } finally {
      await server.close();
      await m.stop();
      await producer.disconnect();
      await redis.quit();
      await mock.stop();
    }
  }, 180_000);

  it('Redis: down while records arrive, the materializer pauses and commits nothing it has not written; back up, it resumes and every value equals the reference', async () => {
    requireExecutable('redis-server', 'redis-server');
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-redis-fault-'));
    const port = await freeLoopbackPort();
    let server: ChildProcess | null = null;
    const launch = async (): Promise<void> => {
      server = spawnTethered('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--protected-mode', 'no'], dir);
      await until(() => pingRedis('127.0.0.1', port, 200), `redis-server on port ${port}`, 15_000);
    };
    await launch();
    const mock = await startMockKafka({ brokers: 1 });
    const redis = createRedisClient(`redis://127.0.0.1:${port}`);
    redis.on('error', () => undefined); // connection errors are expected here; health reports them
    const store = new RedisOnlineStore(compiled.registry, redis);
    const groupId = `rfault-${randomUUID().slice(0, 8)}`;
    const kafka = kafkaClient(mock.brokers);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    const m = materializer(mock.brokers, store, redis, groupId);
    const http = await buildMaterializerServer(m);
    const status = async (): Promise<number> => (await http.inject({ method: 'GET', url: '/healthz' })).statusCode;
    try {
      await mock.createTopic('flights', 4);
      await producer.connect();
      await produce(producer, 'flights', records.slice(0, CHUNK), 4);
      await m.start();
      await until(async () => (await committedTotal(kafka, groupId, 'flights')) === CHUNK, 'the first records committed');
      expect(await status()).toBe(200);

      await stopTethered(server!);
      await produce(producer, 'flights', records.slice(CHUNK), 4, CHUNK);
      // The new records reached the materializer, which cannot write them.
      await until(() => m.stats().batchesInFlight > 0, 'a batch waiting for Redis');
      await until(async () => (await status()) === 503, '/healthz to report the store down');
      await sleep(1_000);
      expect(await committedTotal(kafka, groupId, 'flights')).toBe(CHUNK);
      expect(m.stats().events).toBe(CHUNK);

      await launch();
      await until(async () => (await committedTotal(kafka, groupId, 'flights')) === 2 * CHUNK, 'every record committed after Redis came back', 120_000);
      await until(async () => (await status()) === 200, '/healthz to recover');
      const { mismatches, compared } = await compareWithReference(compiled, store, fx);
      expect(mismatches.slice(0, 10)).toEqual([]);
      expect(compared).toBeGreaterThan(2_000);
    } finally {
      await http.close();
      await m.stop();
      await producer.disconnect();
      await redis.quit().catch(() => undefined);
      await mock.stop();
      if (server) await stopTethered(server);
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
