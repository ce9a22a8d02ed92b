// POST /push/:source: events validated by the stream path's decoder, the good ones produced to the
// source's topic (Kafka mode, a private librdkafka mock cluster) or applied to the in-memory store
// (embedded mode), an answer per event. Then the two stream commands together, as users run them:
// `tidemark serve --kafka-brokers` takes pushes, `tidemark materialize` materializes them into
// Redis, and `tidemark serve --clock watermark` reads them back. With tokens, the pushing token's
// name travels with each record and onto its dead letter.
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Partitioners, type Producer } from 'kafkajs';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { buildServer } from '../../api/index.js';
import { parseAuthTokens } from '../../api/auth.js';
import { pushRoutes, TOKEN_HEADER } from '../../api/push-routes.js';
import { Materializer } from '../../ingest/index.js';
import { createRedisClient, MemoryOnlineStore, OnlineFeatureService, RedisOnlineStore } from '../../online/index.js';
import { startMockKafka } from '../support/kafka.js';
import { testRedisUrl } from '../support/redis.js';
import { kafkaClient, readTopic, runCli, until, type CliChild } from './support.js';

const compiled = compileOrThrow(flightsDefinitions);
let mock: Awaited<ReturnType<typeof startMockKafka>>;

beforeAll(async () => {
  mock = await startMockKafka({ brokers: 1 });
});
afterAll(async () => {
  await mock?.stop();
});

const T0 = Date.UTC(2001, 0, 1, 8, 0);
const flight = (minutes: number, origin: string, delay: unknown = 10) => ({ date: T0 + minutes * 60_000, delay, distance: 300, origin, destination: 'LAX' });

async function pushServer(options: { producer?: Producer; store?: MemoryOnlineStore; produceTimeoutMs?: number }) {
  const store = options.store ?? new MemoryOnlineStore(compiled.registry);
  const app = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark') });
  await app.register(pushRoutes, { compiled, ...options });
  return app;
}

describe('POST /push/:source', () => {
  it('Kafka mode: produces the good events to the source topic as sent, keyed by entity, and answers per event', async () => {
    await mock.createTopic('flights', 2);
    const kafka = kafkaClient(mock.brokers);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const app = await pushServer({ producer });
    try {
      const events = [flight(0, 'SFO'), flight(1, 'SFO', 'late'), flight(2, 'ORD'), { date: 'soon', delay: 1, distance: 1, origin: 'SFO', destination: 'LAX' }, flight(3, 'ORD')];
      const res = await app.inject({ method: 'POST', url: '/push/flights', payload: { events } });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body).toMatchObject({ source: 'flights', destination: 'kafka:flights', accepted: 3, rejected: 2 });
      expect(body.results[0]).toEqual({ index: 0, status: 'accepted' });
      expect(body.results[1]).toMatchObject({ index: 1, status: 'rejected', code: 'TM_EVENT_SCHEMA', field: 'delay' });
      expect(body.results[3]).toMatchObject({ index: 3, status: 'rejected', code: 'TM_EVENT_TIME', field: 'date' });
      expect(body.results[1].reason).toContain('delay');

      // Feast's columnar form.
      const df = await app.inject({ method: 'POST', url: '/push/flights', payload: { push_source_name: 'flights', df: { date: [T0 + 600_000, T0 + 660_000], delay: [1, 2], distance: [5, 6], origin: ['JFK', 'JFK'], destination: ['BOS', 'BOS'] } } });
      expect(df.statusCode).toBe(200);
      expect(df.json()).toMatchObject({ accepted: 2, rejected: 0 });

      const onTopic = await readTopic(kafka, 'flights', 5);
      expect(onTopic).toHaveLength(5);
      const sent = [events[0], events[2], events[4]].map((e) => JSON.stringify(e));
      expect(onTopic.map((r) => r.value!.toString('utf8')).filter((v) => sent.includes(v)).sort()).toEqual([...sent].sort());
      // one entity's events share a partition (keyed by the origin airport)
      const ord = onTopic.filter((r) => r.value!.toString('utf8').includes('"ORD"'));
      expect(new Set(ord.map((r) => r.partition)).size).toBe(1);
    } finally {
      await app.close();
      await producer.disconnect();
    }
  });

  it('answers coded 400s for an unknown source and a malformed body, and 503 TM_PUSH_UNAVAILABLE when Kafka is down', async () => {
    const down = await startMockKafka({ brokers: 1 });
    const kafka = kafkaClient(down.brokers);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, retry: { retries: 1, initialRetryTime: 50, maxRetryTime: 100 } });
    await down.createTopic('flights', 1);
    await producer.connect();
    const app = await pushServer({ producer, produceTimeoutMs: 1_000 });
    try {
      const unknown = await app.inject({ method: 'POST', url: '/push/rides', payload: { events: [flight(0, 'SFO')] } });
      expect(unknown.statusCode).toBe(400);
      expect(unknown.json()).toMatchObject({ code: 'TM_READ_BAD_REQUEST', field: 'source', validSources: ['flights'] });
      for (const payload of [{ events: [] }, { rows: [1] }, { df: { a: [1, 2], b: [1] } }]) {
        const bad = await app.inject({ method: 'POST', url: '/push/flights', payload });
        expect(bad.statusCode, JSON.stringify(payload)).toBe(400);
        expect(bad.json().code).toBe('TM_READ_BAD_REQUEST');
      }
      // all rejected: nothing to produce, still an answer per event
      const allBad = await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [{ date: T0, distance: 1, origin: 'SFO', destination: 'LAX' }] } });
      expect(allBad.json()).toMatchObject({ accepted: 0, rejected: 1, results: [{ index: 0, status: 'rejected', code: 'TM_EVENT_SCHEMA', field: 'delay' }] });

      await down.brokerDown(-1);
      const unavailable = await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [flight(0, 'SFO')] } });
      expect(unavailable.statusCode).toBe(503);
      expect(unavailable.json()).toMatchObject({ code: 'TM_PUSH_UNAVAILABLE', source: 'flights' });
    } finally {
      await app.close();
      await producer.disconnect().catch(() => undefined);
      await down.stop();
    }
  });

  it('embedded mode (no Kafka): good events are applied to the in-memory store and readable at once', async () => {
    const store = new MemoryOnlineStore(compiled.registry);
    const app = await pushServer({ store });
    try {
      const res = await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [flight(0, 'SEA', 10), flight(5, 'SEA', 20), flight(6, 'SEA', 'x')] } });
      expect(res.json()).toMatchObject({ destination: 'online-store', accepted: 2, rejected: 1 });
      const read = await app.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['origin_delays:flights_1h', 'origin_delays:delay_mean_1h'], entities: { airport: ['SEA'] } } });
      expect(read.statusCode).toBe(200);
      expect(read.json().results.slice(1).map((r: { values: unknown[] }) => r.values[0])).toEqual([2, 15]);
    } finally {
      await app.close();
    }
  });
});

describe('pushes with tokens', () => {
  it('each record carries the tidemark-token header, and the materializer keeps it on the dead letter', async () => {
    // A serve clock a year ahead lets an event six months ahead pass the push's future-skew check;
    // the materializer, on the real clock, dead-letters it (TM_EVENT_FUTURE) with the record's headers.
    const cluster = await startMockKafka({ brokers: 1 });
    const kafka = kafkaClient(cluster.brokers);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    const redis = createRedisClient(testRedisUrl());
    await cluster.createTopic('flights', 1);
    await producer.connect();
    const sha = (t: string) => createHash('sha256').update(t).digest('hex');
    const auth = { tokens: parseAuthTokens(JSON.stringify([{ name: 'pusher', sha256: sha('pusher-secret'), scopes: ['push:flights'] }])), protectMetrics: false };
    const app = await buildServer({ service: new OnlineFeatureService(compiled.registry, new MemoryOnlineStore(compiled.registry), 'watermark'), auth });
    await app.register(pushRoutes, { compiled, producer, nowMs: () => Date.now() + 365 * 86_400_000 });
    const materializer = new Materializer({ compiled, brokers: cluster.brokers, groupId: `auth-${randomUUID().slice(0, 8)}`, store: new RedisOnlineStore(compiled.registry, redis, { prefix: `auth-${randomUUID().slice(0, 8)}` }), sessionTimeoutMs: 10_000, heartbeatIntervalMs: 500 });
    try {
      const ahead = { date: Date.now() + 180 * 86_400_000, delay: 1, distance: 300, origin: 'SFO', destination: 'LAX' };
      expect((await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [ahead] } })).statusCode).toBe(401);
      const res = await app.inject({ method: 'POST', url: '/push/flights', headers: { authorization: 'Bearer pusher-secret' }, payload: { events: [ahead] } });
      expect(res.json()).toMatchObject({ accepted: 1, rejected: 0 });
      const [record] = await readTopic(kafka, 'flights', 1);
      expect(record!.headers).toEqual({ [TOKEN_HEADER]: 'pusher' });

      await materializer.start();
      await until(() => materializer.stats().badEvents >= 1, 'the record to be dead-lettered');
      const [dead] = await readTopic(kafka, 'flights.dlq', 1);
      expect(dead!.headers).toMatchObject({ [TOKEN_HEADER]: 'pusher', source: 'flights', code: 'TM_EVENT_FUTURE', field: 'date' });
    } finally {
      await materializer.stop();
      await app.close();
      await producer.disconnect();
      await redis.quit();
      await cluster.stop();
    }
  });
});

describe('tidemark serve and tidemark materialize together', () => {
  it('a push to `serve` is materialized by `materialize` into Redis and read back from `serve` at the watermark clock', async () => {
    await mock.createTopic('flights', 2).catch(() => undefined);
    const prefix = `serve-${randomUUID().slice(0, 8)}`;
    const common = ['--definitions', 'examples/flights', '--kafka-brokers', mock.bootstrap, '--redis-url', testRedisUrl(), '--prefix', prefix, '--port', '0'];
    const children: CliChild[] = [];
    try {
      const serve = runCli(['serve', ...common, '--clock', 'watermark']);
      children.push(serve);
      const materialize = runCli(['materialize', ...common, '--group', `serve-${randomUUID().slice(0, 8)}`, '--session-timeout', '6000']);
      children.push(materialize);
      let url = '';
      await until(() => {
        url = / on (http:\/\/\S+)$/m.exec(serve.output())?.[1] ?? '';
        return url !== '' || serve.child.exitCode !== null;
      }, 'tidemark serve to listen');
      expect(url, serve.output()).not.toBe('');
      // Distinct origin so that the other test's records on the topic do not count here.
      const origin = `Q${randomUUID().slice(0, 4).toUpperCase()}`;
      const push = await fetch(`${url}/push/flights`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ events: [flight(0, origin, 4), flight(1, origin, 8), flight(2, origin, 'bad')] }) });
      expect(push.status).toBe(200);
      expect(await push.json()).toMatchObject({ accepted: 2, rejected: 1 });

      const read = async () => {
        const res = await fetch(`${url}/get-online-features`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ features: ['origin_delays:flights_1h', 'origin_delays:delay_mean_1h'], entities: { airport: [origin] } }) });
        return { status: res.status, readTime: res.headers.get('x-tidemark-read-time'), body: (await res.json()) as { results: { values: unknown[] }[] } };
      };
      await until(async () => (await read()).body.results?.[1]?.values[0] === 2, `the pushed events to be materialized (${materialize.output().slice(-2000)})`, 60_000);
      const final = await read();
      expect(final.body.results[2]!.values[0]).toBe(6);
      expect(Number(final.readTime)).toBeGreaterThan(T0 + 60_000); // the watermark clock: latest event + 1 ms, or later
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', clock: 'watermark', redis: 'ready' });
      // materialize recorded what it materialized: `tidemark plan` of the same definitions finds nothing to change.
      const plan = runCli(['plan', '--definitions', 'examples/flights', '--redis-url', testRedisUrl(), '--prefix', prefix]);
      expect(await plan.exit, plan.output()).toBe(0);
      expect(plan.output()).toMatch(/plan: no changes \(3 unchanged\)/);
    } finally {
      for (const c of children) c.child.kill('SIGTERM');
      for (const c of children) expect(await c.exit).toBe(0);
    }
  });
});
