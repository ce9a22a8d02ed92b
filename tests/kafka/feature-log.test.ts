// Feature logging through Kafka, on real services: reads served from Redis (flights replayed
// through the materializer core) are logged to `<prefix>.feature_log` on a private librdkafka mock
// cluster with predictions for some of them; `offline-sink`'s consumer (OfflineKafkaSink with the
// feature-log topic) lands them in tm_feature_log_records and tm_prediction_log, bad records in
// tm_dead_letters with TM_LOG_BAD_RECORD, field and reason; a second group's full redelivery
// stores nothing twice; and the logged values match the offline path. Then a Kafka outage: serving
// keeps answering, the drops are counted (GET /metrics), and logging resumes once Kafka is back.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { Partitioners } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledDefinitions } from '../../definitions/index.js';
import { featureLogTopic, KafkaFeatureLogSink } from '../../ingest/index.js';
import { evaluateSkew } from '../../monitor/index.js';
import { FEATURE_LOG_TABLE, FEATURE_SETS_TABLE, featureLogTablesOf, loggedValuesSql, OfflineKafkaSink, PREDICTION_LOG_TABLE, type OfflineStore } from '../../offline/index.js';
import { createRedisClient, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { startMockKafka } from '../support/kafka.js';
import { testRedisUrl } from '../support/redis.js';
import { FEATURES, loggingServer, offlineFlights, readAirports, replayFlights } from '../support/feature-log.js';
import { kafkaClient, until } from './support.js';

const LIMIT = 3_000;
let mock: Awaited<ReturnType<typeof startMockKafka>>;
let compiled: CompiledDefinitions;
let offline: OfflineStore;
let dir: string;
let airports: string[];
let client: RedisClient;
let store: RedisOnlineStore;

beforeAll(async () => {
  mock = await startMockKafka({ brokers: 1 });
  ({ compiled, offline, dir, airports } = await offlineFlights(LIMIT));
  client = createRedisClient(testRedisUrl());
  store = new RedisOnlineStore(compiled.registry, client, { prefix: `log-${randomUUID().slice(0, 8)}` });
  await replayFlights(compiled, store, LIMIT);
}, 120_000);

afterAll(async () => {
  await client?.quit();
  await offline?.close();
  await mock?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const READS = `SELECT count() AS n FROM ${FEATURE_LOG_TABLE}`;
const count = async (sql: string): Promise<number> => Number((await offline.executor.rows<{ n: number }>(sql))[0]!.n);

describe('feature log through Kafka', () => {
  it('serve logs reads and predictions to <prefix>.feature_log; offline-sink lands them, bad records in the dead letters', async () => {
    const topic = featureLogTopic('tm');
    expect(topic).toBe('tm.feature_log');
    await mock.createTopic(topic, 2);
    const { app, queue } = await loggingServer(compiled, store, new KafkaFeatureLogSink(topic, { brokers: mock.brokers }));
    const ids: string[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const res = await readAirports(app, airports.slice(i * 3, i * 3 + 3));
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        ids.push(res.requestId!);
      }
      for (const [i, id] of ids.slice(0, 2).entries()) {
        const res = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload: { request_id: id, score: 0.25 + i / 2, model: 'delay-model@3' } });
        expect(res.statusCode, res.body).toBe(200);
        expect(res.json()).toEqual({ request_id: id, destination: `kafka:${topic}`, status: 'written' });
      }
      const badPrediction = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload: { request_id: ids[0], score: 'high' } });
      expect(badPrediction.statusCode).toBe(400);
      expect(badPrediction.json()).toMatchObject({ code: 'TM_READ_BAD_REQUEST', field: 'score' });
      await queue.flush();
      expect(queue.stats).toMatchObject({ queued: 6, written: 6, droppedQueueFull: 0, droppedWriteFailed: 0 });
    } finally {
      await app.close();
      await queue.close();
    }

    // Bad records, as a faulty or foreign producer could write them.
    const producer = kafkaClient(mock.brokers).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const read = { kind: 'read', v: 1, request_id: 'bad', read_time_ms: 1, registry_version: compiled.registry.version, entities: { airport: ['ORD'] } };
    await producer.send({
      topic,
      messages: [
        { partition: 0, value: '{"kind": "read", ' },
        { partition: 0, value: JSON.stringify({ ...read, features: [{ view: 'origin_delays', feature: 'nope', values: [1], statuses: ['PRESENT'], event_times_ms: [1] }] }) },
        { partition: 1, value: JSON.stringify({ ...read, features: [{ view: 'origin_delays', feature: 'flights_1h', values: [1, 2], statuses: ['PRESENT'], event_times_ms: [1] }] }) },
        // A prediction whose score is not a number.
        { partition: 1, value: JSON.stringify({ kind: 'prediction', v: 1, request_id: ids[0], score: 'high', model: null, at_ms: 1 }) },
        // A version-2 read with two values for one entity row.
        { partition: 1, value: JSON.stringify({ ...read, v: 2, features: ['origin_delays:flights_1h'], values: [[1, 2]], statuses: ['P'], ages_ms: [[0]] }) },
        // Two records in one message (as tidemark's producer batches them): a cut line, and a version-3 read whose feature set never came.
        { partition: 1, value: `{"kind": "read", \n${JSON.stringify({ kind: 'read', v: 3, request_id: 'bad-v3', read_time_ms: 1, features_id: '00000000deadbeef', entities: { airport: ['ORD'] }, values: [1], statuses: 'P', ages_ms: [0] })}` },
      ],
    });
    await producer.disconnect();

    const sink = new OfflineKafkaSink(offline.executor, compiled, { brokers: mock.brokers, groupId: `log-sink-${randomUUID().slice(0, 8)}`, featureLogTopic: topic });
    const rows = 4 * 3 * FEATURES.length;
    await sink.start();
    try {
      await until(async () => (await count(READS)) === 4 && (await count(`SELECT count() AS n FROM ${PREDICTION_LOG_TABLE}`)) === 2 && sink.stats.badLogRecords === 7, '4 logged reads, 2 predictions and 7 dead letters');
    } finally {
      await sink.stop();
    }
    expect(sink.stats).toMatchObject({ logRecords: 6, badLogRecords: 7 });
    // The reads' feature set, stored once.
    expect(await count(`SELECT count() AS n FROM ${FEATURE_SETS_TABLE}`)).toBe(1);
    expect(await count(`SELECT count() AS n FROM (${loggedValuesSql('1', featureLogTablesOf(offline.executor))})`)).toBe(rows);
    const predictions = await offline.executor.rows<{ request_id: string; score: number; model: string }>(`SELECT request_id, score, model FROM ${PREDICTION_LOG_TABLE} ORDER BY score`);
    expect(predictions).toEqual([{ request_id: ids[0], score: 0.25, model: 'delay-model@3' }, { request_id: ids[1], score: 0.75, model: 'delay-model@3' }]);
    const logged = await offline.executor.rows<{ request_id: string; n: number }>(`SELECT request_id, count() AS n FROM ${FEATURE_LOG_TABLE} GROUP BY request_id ORDER BY request_id`);
    expect(logged.map((r) => r.request_id)).toEqual([...ids].sort());
    const dead = await offline.executor.rows<{ code: string; field: string | null; reason: string }>(`SELECT code, field, reason FROM tm_dead_letters WHERE source = 'feature_log' ORDER BY position, field`);
    expect(dead.map((d) => d.code)).toEqual(Array(7).fill('TM_LOG_BAD_RECORD'));
    expect(dead.map((d) => d.field).sort()).toEqual(['features.0', 'features.0.values', 'features_id', 'score', 'values.0', null, null].sort());
    expect(dead.find((d) => d.field === 'features_id')!.reason).toMatch(/^line 2 of the message at offset \d+: feature-log record, field features_id: no feature set 00000000deadbeef came before it/);
    expect(dead.filter((d) => d.field === null).map((d) => d.reason).sort()[0]).toMatch(/^feature-log record is not JSON/);
    expect(dead.find((d) => d.field === 'values.0')!.reason).toContain('values.0 (origin_delays:flights_1h): 2 entries for 1 entity rows');
    expect(dead.find((d) => d.field === 'score')!.reason).toMatch(/^feature-log record, field score: /);
    expect(dead.filter((d) => d.field === null).map((d) => d.reason).sort()[1]).toMatch(/^line 1 of the message at offset \d+: feature-log record is not JSON/);
    expect(dead.find((d) => d.field === 'features.0')!.reason).toContain('origin_delays:nope is not a feature of registry');
    expect(dead.find((d) => d.field === 'features.0.values')!.reason).toContain('2 entries for 1 entity rows');

    // A second group reads the topic from the start: every good record is a redelivery.
    const again = new OfflineKafkaSink(offline.executor, compiled, { brokers: mock.brokers, groupId: `log-sink-${randomUUID().slice(0, 8)}`, featureLogTopic: topic });
    await again.start();
    try {
      await until(() => again.stats.redelivered === 6, 'the redelivery of the 6 good records');
    } finally {
      await again.stop();
    }
    expect(await count(READS)).toBe(4);
    expect(await count(`SELECT count() AS n FROM ${FEATURE_SETS_TABLE}`)).toBe(1);
    expect(await count(`SELECT count() AS n FROM (${loggedValuesSql('1', featureLogTablesOf(offline.executor))})`)).toBe(rows);
    expect(await count(`SELECT count() AS n FROM ${PREDICTION_LOG_TABLE}`)).toBe(2);

    // What Kafka carried matches the offline path.
    const skew = (await evaluateSkew(offline.executor, compiled.registry)).filter((r) => r.slice === 'all');
    expect(skew).toHaveLength(FEATURES.length);
    for (const r of skew) expect(r, `${r.view}:${r.feature}`).toMatchObject({ compared: 12, mismatches: 0, exactMatchRate: 1 });
  });

  it('keeps serving through a Kafka outage, counts the drops in GET /metrics, and logs again once Kafka is back', async () => {
    const down = await startMockKafka({ brokers: 1 });
    const topic = featureLogTopic(`outage-${randomUUID().slice(0, 6)}`);
    await down.createTopic(topic, 1);
    const { app, queue } = await loggingServer(compiled, store, new KafkaFeatureLogSink(topic, { brokers: down.brokers, retries: 1 }), { queueLimit: 5, writeTimeoutMs: 3_000 });
    try {
      await down.brokerDown(-1);
      const started = performance.now();
      for (let i = 0; i < 50; i++) {
        const res = await readAirports(app, [airports[i % 10]!]);
        expect(res.status, JSON.stringify(res.body)).toBe(200);
      }
      // Fifty answers without waiting for a write that cannot succeed (each write may take up to 3 s).
      expect(performance.now() - started).toBeLessThan(3_000);
      expect(queue.stats.droppedQueueFull).toBeGreaterThan(0);
      expect(queue.stats.queued + queue.stats.droppedQueueFull).toBe(50);
      await queue.flush();
      expect(queue.stats.written).toBe(0);
      expect(queue.stats.droppedWriteFailed).toBe(queue.stats.queued);
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      const sample = (outcome: string): number => Number(new RegExp(`^tidemark_feature_log_records_total\\{kind="read",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? -1);
      expect(sample('dropped_queue_full')).toBe(queue.stats.droppedQueueFull);
      expect(sample('dropped_write_failed')).toBe(queue.stats.droppedWriteFailed);
      expect(metrics).toMatch(/^tidemark_feature_log_queue_limit 5$/m);
      // A prediction is answered once written: during the outage it is refused (to retry), never accepted and dropped.
      const prediction = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload: { request_id: 'outage-1', score: 0.5 } });
      expect(prediction.statusCode, prediction.body).toBe(503);
      expect(prediction.json()).toMatchObject({ code: 'TM_LOG_UNAVAILABLE', request_id: 'outage-1' });
      expect(prediction.json().message).toContain(`writing to kafka:${topic} failed`);

      await down.brokerUp(-1);
      await until(async () => {
        const res = await readAirports(app, [airports[0]!]);
        expect(res.status).toBe(200);
        await queue.flush();
        return queue.stats.written > 0;
      }, 'a logged read after Kafka is back', 60_000);
      const again = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload: { request_id: 'outage-1', score: 0.5 } });
      expect(again.statusCode, again.body).toBe(200);
    } finally {
      await app.close();
      await queue.close();
      await down.stop();
    }
  });
});
