// POST /consistency/sample on real data: the first 100 000 flights replayed into the in-memory
// store and, from the same decoded events, loaded into chDB. The probe samples keys from the
// offline events inside retention, reads them online and computes them offline at one instant:
// everything agrees. Then one extra event reaches the online store only, for one sampled airport,
// and the probe names that airport and the features the event changed (and nothing else).
// Also: given keys in both forms, the coded refusals, and GET /status/materializer of a memory store.
import type { FastifyInstance } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/server.js';
import type { ConsistencyReport } from '../../api/consistency.js';
import { compileOrThrow, type CompiledDefinitions } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { EventDecoder, replayParquetFile, TileBatchBuilder, type ReplayStats } from '../../ingest/index.js';
import { MemoryOnlineStore, OnlineFeatureService, storeClockMs } from '../../online/index.js';
import { OfflineStore } from '../../offline/index.js';
import { eventRow } from '../../offline/load.js';
import { keyFieldsOf } from '../../offline/tables.js';

const LIMIT = 100_000;
const dir = mkdtempSync(join(tmpdir(), 'tm-consistency-'));
let compiled: CompiledDefinitions;
let store: MemoryOnlineStore;
let offline: OfflineStore;
let replay: ReplayStats;
let app: FastifyInstance;

beforeAll(async () => {
  compiled = compileOrThrow(flightsDefinitions);
  store = new MemoryOnlineStore(compiled.registry);
  offline = await OfflineStore.open(compiled, { dataDir: dir });
  const source = compiled.registry.sources[0]!;
  const keyFields = keyFieldsOf(compiled.registry, source);
  let offset = 0;
  // One decode: the replay's events go to the online store and, as rows, to the offline store.
  replay = await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, {
    source: 'flights',
    limit: LIMIT,
    onBatch: async (events) => offline.executor.insert('tm_events_flights', events.map((e) => eventRow(source, keyFields, e, 'file:flights', offset++))),
  });
  await offline.executor.insert('tm_loads', [{ load_id: 'file:flights', source: 'flights', file: 'flights', sha256: '', rows: LIMIT, events: offset, bad: 0, registry_version: compiled.registry.version, loaded_at: Date.now() }]);
  app = await buildServer({
    service: new OnlineFeatureService(compiled.registry, store, 'watermark'),
    offline,
    materializerStatus: async () => ({ kind: 'replay', rebuilt: false, events: replay.events, badEvents: replay.badEvents, lateTileEvents: replay.lateTileEvents, seconds: replay.seconds }),
  });
}, 240_000);

afterAll(async () => {
  await app?.close();
  await offline?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function probe(body: Record<string, unknown>): Promise<ConsistencyReport> {
  const res = await app.inject({ method: 'POST', url: '/consistency/sample', payload: body });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as ConsistencyReport;
}

describe('POST /consistency/sample (first 100 000 flights, memory store and chDB)', () => {
  let sampledAirports: string[] = [];

  it('samples 100 keys inside retention, deterministically, and finds every (key, feature) in agreement at the watermark clock', async () => {
    const watermarkMs = (await store.watermarkMs())!;
    for (const view of compiled.registry.views) {
      const report = await probe({ view: view.name });
      expect(report.keysFrom).toBe('sample');
      expect(report.atMs).toBe(storeClockMs('watermark', watermarkMs));
      expect(report.keysCompared).toBe(100);
      expect(report.features.map((f) => f.feature)).toEqual(view.features.map((f) => f.name));
      expect(report.mismatches).toEqual([]);
      for (const f of report.features) {
        expect(f.agreementRate, `${view.name}:${f.feature}`).toBe(1);
        expect(f.mismatches).toBe(0);
        // Counts, maxima and lasts are exact; sums and means within 1e-9, stddev within 1e-6 relative.
        if (['count', 'max', 'last'].includes(f.agg)) expect(f.exactMatchRate).toBe(1);
        expect(f.maxAbsDiff ?? 0).toBeLessThan(1e-3);
      }
    }
    const first = await probe({ view: 'origin_delays', sample: 20 });
    const again = await probe({ view: 'origin_delays', sample: 20 });
    expect(again).toEqual(first);
    expect(first.keys).toHaveLength(20);
    expect(first.joinKeys).toEqual(['airport']);
    // A smaller sample is the head of a larger one: keys are ordered by their hash, not picked at random.
    const five = await probe({ view: 'origin_delays', sample: 5 });
    expect(five.keys).toEqual(first.keys.slice(0, 5));
    sampledAirports = five.keys.map(([airport]) => String(airport));
  });

  it('takes given keys as lists in join key order or as join key columns, and compares them at a given time', async () => {
    const atMs = (await store.watermarkMs())! - 3 * 3_600_000;
    const lists = await probe({ view: 'route_delays', keys: [['ORD', 'LGA'], ['SFO', 'LAX'], ['NOPE', 'NONE']], at: atMs });
    const columns = await probe({ view: 'route_delays', keys: { origin: ['ORD', 'SFO', 'NOPE'], destination: ['LGA', 'LAX', 'NONE'] }, at: new Date(atMs).toISOString() });
    expect(lists.keysFrom).toBe('request');
    expect(lists.keysCompared).toBe(3);
    expect(lists.atMs).toBe(atMs);
    expect(columns).toEqual(lists);
    expect(lists.mismatches).toEqual([]);
    expect(lists.features.find((f) => f.feature === 'flights_7d')!.agreementRate).toBe(1);
  });

  it('names the key and the features an event seen only online changed', async () => {
    const watermarkMs = (await store.watermarkMs())!;
    const airport = sampledAirports[0]!;
    // At the watermark (so it moves nothing), delayed 999 minutes: inside every window, and the airport's latest delay.
    const decoded = new EventDecoder(compiled, 'flights').decodeValue({ date: watermarkMs, delay: 999, distance: 1, origin: airport, destination: 'ZZZ' });
    if (!decoded.ok) throw new Error(decoded.bad.reason);
    store.applySync(new TileBatchBuilder(compiled.registry).build([decoded.event]));
    expect(await store.watermarkMs()).toBe(watermarkMs);

    const report = await probe({ view: 'origin_delays', sample: 5 });
    expect(report.keysCompared).toBe(5);
    const changed = ['flights_1h', 'delay_mean_1h', 'delay_mean_1d', 'delay_max_1d', 'delay_stddev_7d', 'distance_sum_1d', 'last_delay'];
    expect(report.mismatches.map((m) => m.key)).toEqual(changed.map(() => ({ airport })));
    expect(report.mismatches.map((m) => m.feature)).toEqual(changed);
    const count = report.mismatches.find((m) => m.feature === 'flights_1h')!;
    expect(count.online).toBe((count.offline as number) + 1);
    expect(report.mismatches.find((m) => m.feature === 'delay_max_1d')!.online).toBe(999);
    expect(report.mismatches.find((m) => m.feature === 'last_delay')).toMatchObject({ online: 999 });
    for (const f of report.features) {
      expect(f.mismatches, f.feature).toBe(changed.includes(f.feature) ? 1 : 0);
      expect(f.agreementRate).toBe(changed.includes(f.feature) ? 0.8 : 1);
    }
    expect(report.features.find((f) => f.feature === 'flights_1h')!.maxAbsDiff).toBe(1);
    expect(report.mismatchesOmitted).toBe(0);
  });

  it('refuses an unknown view (404 with the views), bad keys (400), too many keys (413), and a server without an offline store (501)', async () => {
    const unknown = await app.inject({ method: 'POST', url: '/consistency/sample', payload: { view: 'nope' } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'TM_CONSISTENCY_UNKNOWN_VIEW', validViews: ['origin_delays', 'route_delays', 'dest_delays'] });
    const arity = await app.inject({ method: 'POST', url: '/consistency/sample', payload: { view: 'route_delays', keys: [['ORD']] } });
    expect(arity.statusCode).toBe(400);
    expect(arity.json()).toMatchObject({ code: 'TM_CONSISTENCY_BAD_REQUEST', field: 'keys[0]', validJoinKeys: ['origin', 'destination'] });
    const wrongKey = await app.inject({ method: 'POST', url: '/consistency/sample', payload: { view: 'origin_delays', keys: { origin: ['ORD'] } } });
    expect(wrongKey.json()).toMatchObject({ code: 'TM_CONSISTENCY_BAD_REQUEST', field: 'keys.origin' });
    const badTime = await app.inject({ method: 'POST', url: '/consistency/sample', payload: { view: 'origin_delays', at: 'yesterday' } });
    expect(badTime.json()).toMatchObject({ code: 'TM_CONSISTENCY_BAD_REQUEST', field: 'at' });
    const tooMany = await app.inject({ method: 'POST', url: '/consistency/sample', payload: { view: 'origin_delays', sample: 1001 } });
    expect(tooMany.statusCode).toBe(413);
    expect(tooMany.json()).toMatchObject({ code: 'TM_LIMIT_EXCEEDED', limit: 'consistencyKeys', flag: '--max-consistency-keys' });

    const onlineOnly = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark') });
    try {
      const res = await onlineOnly.inject({ method: 'POST', url: '/consistency/sample', payload: { view: 'origin_delays' } });
      expect(res.statusCode).toBe(501);
      expect(res.json().code).toBe('TM_CONSISTENCY_NO_OFFLINE');
      expect(res.json().message).toMatch(/--clickhouse-url .*--data-dir/);
    } finally {
      await onlineOnly.close();
    }
  });
});

describe('GET /status/materializer of the in-memory store', () => {
  it('reports the store, the watermark clock, freshness as wall time minus the watermark, every view ready with its keys, and the replay', async () => {
    const before = Date.now();
    const res = await app.inject({ method: 'GET', url: '/status/materializer' });
    expect(res.statusCode).toBe(200);
    const status = res.json();
    const stats = await store.stats();
    expect(status).toMatchObject({ store: { kind: 'memory', prefix: null }, registryVersion: compiled.registry.version, clock: 'watermark', watermarkMs: stats.watermarkMs, watermark: new Date(stats.watermarkMs!).toISOString(), readTime: new Date(stats.watermarkMs! + 1).toISOString() });
    expect(status.freshnessMs).toBeGreaterThanOrEqual(before - stats.watermarkMs!);
    expect(status.freshness).toMatch(/wall clock now minus the watermark; under the watermark clock .* the age of the data/);
    expect(status.views.map((v: { view: string; status: string; keys: number }) => [v.view, v.status, v.keys])).toEqual(compiled.registry.views.map((v) => [v.name, 'ready', stats.keys[v.name]]));
    expect(status.views[0].namespace).toMatch(/^origin_delays@[0-9a-f]+$/);
    expect(status.materializer).toEqual({ kind: 'replay', rebuilt: false, events: LIMIT - replay.badEvents, badEvents: replay.badEvents, lateTileEvents: replay.lateTileEvents, seconds: replay.seconds });
    expect(status.storeError).toBeUndefined();
  });
});
