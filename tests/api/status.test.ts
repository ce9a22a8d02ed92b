// GET /status/materializer: the Prometheus text a real materializer's prom-client registry writes,
// parsed and summarized; a scraped endpoint and an unreachable one (200 either way); and a Redis
// store (the run's redis-server) with view versions ready and bootstrapping, keys and a watermark,
// and a Redis that cannot answer (storeError, still 200).
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePrometheusText, scrapeMaterializerMetrics, summarizeMaterializerMetrics } from '../../api/materializer-status.js';
import { buildServer } from '../../api/server.js';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { EventDecoder, MaterializerMetrics, TileBatchBuilder } from '../../ingest/index.js';
import { claimStreamVersions, createRedisClient, MemoryOnlineStore, newVersionState, OnlineFeatureService, readVersionState, RedisOnlineStore, writeVersionState } from '../../online/index.js';
import { testRedisUrl } from '../support/redis.js';

const compiled = compileOrThrow(flightsDefinitions);
const WATERMARK = Date.UTC(2001, 0, 1, 9, 0);

/** A materializer's metrics after some work, as its GET /metrics writes them. */
async function materializerMetricsText(): Promise<string> {
  const m = new MaterializerMetrics(false);
  m.events.inc({ source: 'flights' }, 1200);
  m.badEvents.inc({ source: 'flights', code: 'TM_EVENT_SCHEMA' }, 3);
  m.badEvents.inc({ source: 'flights', code: 'TM_EVENT_TIME' }, 2);
  m.lateTileEvents.inc({ source: 'flights' }, 7);
  m.commitLag.set({ topic: 'flights', partition: '0' }, 40);
  m.commitLag.set({ topic: 'flights', partition: '1' }, 2);
  m.watermark.set(WATERMARK);
  m.healthy.set(1);
  m.inFlight.set(1);
  for (const seconds of [0.004, 0.02, 0.02, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 8]) m.freshness.observe({ topic: 'flights' }, seconds);
  return m.registry.metrics();
}

describe('the materializer metrics', () => {
  it('parses prom-client text: names, escaped labels, values, comments skipped', () => {
    const samples = parsePrometheusText('# HELP x a help line\n# TYPE x gauge\nx{a="1",b="q\\"uote\\\\"} 2.5\ny 7 1700000000000\nz{le="+Inf"} +Inf\n\nnot a sample line\n');
    expect(samples).toEqual([
      { name: 'x', labels: { a: '1', b: 'q"uote\\' }, value: 2.5 },
      { name: 'y', labels: {}, value: 7 },
      { name: 'z', labels: { le: '+Inf' }, value: Number.POSITIVE_INFINITY },
    ]);
  });

  it('summarizes the gauges and counters an on-call engineer reads', async () => {
    const now = WATERMARK + 90_000;
    const summary = summarizeMaterializerMetrics(parsePrometheusText(await materializerMetricsText()), now);
    expect(summary).toEqual({
      healthy: true,
      watermarkMs: WATERMARK,
      watermark: new Date(WATERMARK).toISOString(),
      freshnessMs: 90_000,
      freshnessSeconds: { count: 10, mean: expect.closeTo(9.844 / 10, 9), p50AtMost: 0.5, p99AtMost: 10 },
      commitLag: { total: 42, partitions: [{ topic: 'flights', partition: '0', lag: 40 }, { topic: 'flights', partition: '1', lag: 2 }] },
      events: 1200,
      deadLetters: 5,
      lateTileEvents: 7,
      batchesInFlight: 1,
    });
    // Before its first batch the watermark gauge reads 0: no watermark, no freshness.
    const fresh = summarizeMaterializerMetrics(parsePrometheusText(await new MaterializerMetrics(false).registry.metrics()), now);
    expect(fresh).toMatchObject({ watermarkMs: null, freshnessMs: null, freshnessSeconds: { count: 0, mean: null, p50AtMost: null, p99AtMost: null }, events: 0, commitLag: { total: 0, partitions: [] } });
  });
});

describe('GET /status/materializer with --materializer-metrics-url', () => {
  let metricsServer: FastifyInstance;
  let metricsUrl: string;
  let closedUrl: string;
  beforeAll(async () => {
    const text = await materializerMetricsText();
    metricsServer = Fastify();
    metricsServer.get('/metrics', async (_q, reply) => reply.type('text/plain; version=0.0.4').send(text));
    metricsServer.get('/other', async () => 'no such series 1\n');
    metricsUrl = `${await metricsServer.listen({ port: 0, host: '127.0.0.1' })}/metrics`;
    const closed = Fastify();
    closedUrl = `${await closed.listen({ port: 0, host: '127.0.0.1' })}/metrics`;
    await closed.close();
  });
  afterAll(async () => {
    await metricsServer?.close();
  });

  it('answers the scraped gauges; an endpoint that is down or not a materializer is named, never a 500', async () => {
    const service = new OnlineFeatureService(compiled.registry, new MemoryOnlineStore(compiled.registry), 'wall');
    for (const [url, expected] of [
      [metricsUrl, { kind: 'metrics', url: metricsUrl, reachable: true, watermarkMs: WATERMARK, events: 1200, deadLetters: 5, commitLag: { total: 42 } }],
      [closedUrl, { kind: 'metrics', url: closedUrl, reachable: false, error: expect.stringMatching(/^GET .* failed: fetch failed \(.*ECONNREFUSED/) }],
      [metricsUrl.replace('/metrics', '/nope'), { reachable: false, error: expect.stringContaining('answered 404') }],
      [metricsUrl.replace('/metrics', '/other'), { reachable: false, error: expect.stringContaining('holds no tidemark_materializer_* series') }],
    ] as const) {
      const app = await buildServer({ service, materializerStatus: () => scrapeMaterializerMetrics(url) });
      const res = await app.inject({ method: 'GET', url: '/status/materializer' });
      await app.close();
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().materializer).toMatchObject(expected);
    }
    const app = await buildServer({ service });
    const res = await app.inject({ method: 'GET', url: '/status/materializer' });
    await app.close();
    expect(res.json()).toMatchObject({ store: { kind: 'memory' }, clock: 'wall', watermark: null, freshnessMs: null, freshness: 'no event materialized yet', materializer: null });
  });
});

describe('GET /status/materializer of a Redis store', () => {
  const client = createRedisClient(testRedisUrl());
  const prefix = `status-${process.pid}-${Date.now().toString(36)}`;
  afterAll(async () => {
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length > 0) await client.del(...keys);
    await client.quit();
  });

  it('reports each view version from the meta hash (ready, bootstrapping with its progress, unrecorded), its keys, and freshness on the wall clock', async () => {
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    const service = new OnlineFeatureService(compiled.registry, store, 'wall');
    const app = await buildServer({ service });
    try {
      const empty = (await app.inject({ method: 'GET', url: '/status/materializer' })).json();
      expect(empty.views.map((v: { status: string }) => v.status)).toEqual(['unrecorded', 'unrecorded', 'unrecorded']);

      await claimStreamVersions(client, prefix, compiled.registry, WATERMARK);
      const decoder = new EventDecoder(compiled, 'flights');
      const events = ['SFO', 'ORD', 'ATL'].map((origin, i) => {
        const d = decoder.decodeValue({ date: WATERMARK - i * 60_000, delay: i, distance: 100, origin, destination: 'LAX' });
        if (!d.ok) throw new Error(d.bad.reason);
        return d.event;
      });
      await store.apply(new TileBatchBuilder(compiled.registry).build(events));
      const route = compiled.registry.views.find((v) => v.name === 'route_delays')!;
      const bootstrapping = { ...newVersionState(compiled.registry, route, 'apply', WATERMARK), status: 'bootstrapping' as const };
      bootstrapping.bootstrap = { offsets: {}, fileCutMs: null, startedAt: new Date(WATERMARK).toISOString(), checkpoint: '["ORD","LAX"]', keys: 2, tiles: 5, events: 9, fileRowsLeftOut: 0, finishedAt: null };
      await writeVersionState(client, prefix, bootstrapping);
      expect((await readVersionState(client, prefix, bootstrapping.namespace))?.status).toBe('bootstrapping');

      const before = Date.now();
      const res = await app.inject({ method: 'GET', url: '/status/materializer' });
      expect(res.statusCode).toBe(200);
      const status = res.json();
      expect(status).toMatchObject({ store: { kind: 'redis', prefix }, clock: 'wall', watermarkMs: WATERMARK, watermark: new Date(WATERMARK).toISOString(), freshness: 'wall clock now minus the watermark', materializer: null });
      expect(status.freshnessMs).toBeGreaterThanOrEqual(before - WATERMARK);
      expect(Date.parse(status.readTime)).toBeGreaterThanOrEqual(before);
      expect(status.views).toEqual([
        { view: 'origin_delays', namespace: store.namespaceOf('origin_delays'), status: 'ready', keys: 3, bootstrap: null },
        { view: 'route_delays', namespace: store.namespaceOf('route_delays'), status: 'bootstrapping', keys: 3, bootstrap: { startedAt: new Date(WATERMARK).toISOString(), finishedAt: null, keys: 2, tiles: 5, events: 9, checkpoint: '["ORD","LAX"]' } },
        { view: 'dest_delays', namespace: store.namespaceOf('dest_delays'), status: 'ready', keys: 1, bootstrap: null },
      ]);
    } finally {
      await app.close();
    }
  });

  it('a Redis that cannot answer: 200 with storeError, not a 500', async () => {
    const down = createRedisClient('redis://127.0.0.1:1', { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
    down.on('error', () => undefined);
    const app = await buildServer({ service: new OnlineFeatureService(compiled.registry, new RedisOnlineStore(compiled.registry, down, { prefix }), 'wall') });
    try {
      const res = await app.inject({ method: 'GET', url: '/status/materializer' });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toMatchObject({ store: { kind: 'redis' }, watermark: null, storeError: expect.stringMatching(/^online store unavailable: /) });
      expect(res.json().views.map((v: { keys: number | null }) => v.keys)).toEqual([null, null, null]);
    } finally {
      await app.close();
      down.disconnect();
    }
  });
});
