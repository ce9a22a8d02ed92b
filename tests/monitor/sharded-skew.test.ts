// The skew check on a sharded offline store (issue 15): the feature log stays on the home shard and
// its logged reads are the spine of a sharded dataset, each (key, read time) computed on the shard
// that owns the key's events and merged back. Reads are served from an in-memory online store (the
// first flights replayed through the materializer core) and logged through OfflineFeatureLogSink
// into every store at once: one node (a chDB shard process), 2 and 3 shards, and a 2-shard store for
// the negative control. A stray event applied to the online store only makes mismatches in the three
// views (placed by origin, by destination and by route). The same log gives the single node's skew
// results field for field, and a monitor with a skew SLO stores the single node's metric rows and
// alerts; an event moved off its shard changes the results. `dataset --from-log` on shards reads
// the home shard's log and writes the single node's rows.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, source, type CompiledDefinitions } from '../../definitions/index.js';
import { EventDecoder, TileBatchBuilder, type EncodedFeatureLogRecord, type FeatureLogQueue, type FeatureLogSink } from '../../ingest/index.js';
import { evaluateSkew, MonitorRunner, type FeatureSkew } from '../../monitor/index.js';
import { OfflineFeatureLogSink, OfflineStore, writeLogDataset, type OfflineExecutor } from '../../offline/index.js';
import { shardOfKey } from '../../offline/shards.js';
import { MemoryOnlineStore } from '../../online/index.js';
import { databaseUrls, datasetRows, startClickHouseShards, type ClickHouseShards } from '../support/clickhouse-shards.js';
import { FEATURES, flightsWithSkewMonitor, loggingServer, replayFlights } from '../support/feature-log.js';
import { writeFlightFiles, writeNdjson } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';

const LIMIT = 4_000;
const HOUR = 3_600_000;
const ROUTE_FEATURES = ['route_delays:flights_7d', 'route_delays:delay_mean_7d'];
const ROOT = join(import.meta.dirname, '..', '..');

const compiled: CompiledDefinitions = flightsWithSkewMonitor('serving_skew', { byOrigin: true });

const root = mkdtempSync(join(tmpdir(), 'tidemark-sharded-skew-'));
let cluster: ClickHouseShards;
let app: FastifyInstance;
let queue: FeatureLogQueue;
/** The stores, each with the same events and the same feature log. */
const stores: Record<'single' | 'two' | 'three' | 'control', OfflineStore> = {} as never;
let victim: { origin: string; destination: string };
let airports: string[];
const requestIds: string[] = [];

/** Every sink at once: the same records into every store's log. */
class TeeSink implements FeatureLogSink {
  readonly destination = 'every test store';
  constructor(private readonly sinks: readonly FeatureLogSink[]) {}
  async write(records: readonly EncodedFeatureLogRecord[]): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.write(records)));
  }
}

async function read(body: Record<string, unknown>): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/get-online-features', payload: body });
  expect(res.statusCode, res.body).toBe(200);
  requestIds.push(res.headers['x-request-id'] as string);
}

/** The 30 busiest airports (three requests), 5 of them at an earlier tile edge, and the 12 busiest routes. */
async function serveAndLog(routes: readonly [string, string][], earlierMs: number): Promise<void> {
  const busiest = airports.slice(0, 30);
  for (let i = 0; i < busiest.length; i += 10) await read({ features: FEATURES, entities: { airport: busiest.slice(i, i + 10) } });
  await read({ features: FEATURES, entities: { airport: busiest.slice(0, 5) }, at: earlierMs });
  await read({ features: ROUTE_FEATURES, entities: { origin: routes.map((r) => r[0]), destination: routes.map((r) => r[1]) } });
  await queue.flush();
  expect(queue.stats.droppedQueueFull + queue.stats.droppedWriteFailed).toBe(0);
}

beforeAll(async () => {
  cluster = await startClickHouseShards(join(root, 'processes'), 3);
  const files = await writeFlightFiles(root, LIMIT);
  const urls = async (count: number, name: string) => databaseUrls(cluster.urls.slice(0, count), name);
  stores.single = await OfflineStore.open(files.compiled, { clickhouseUrl: (await urls(1, 'tm_skew_single'))[0]! });
  stores.two = await OfflineStore.open(files.compiled, { clickhouseShards: await urls(2, 'tm_skew_two') });
  stores.three = await OfflineStore.open(files.compiled, { clickhouseShards: await urls(3, 'tm_skew_three') });
  stores.control = await OfflineStore.open(files.compiled, { clickhouseShards: await urls(2, 'tm_skew_control') });
  for (const store of Object.values(stores)) await store.loadEvents('flights', files.ndjson);

  const byAirport = new Map<string, number>();
  const byRoute = new Map<string, number>();
  for (const e of files.events) {
    byAirport.set(e.fields.origin as string, (byAirport.get(e.fields.origin as string) ?? 0) + 1);
    const route = `${e.fields.origin as string}\u0000${e.fields.destination as string}`;
    byRoute.set(route, (byRoute.get(route) ?? 0) + 1);
  }
  airports = [...byAirport].sort((a, b) => b[1] - a[1]).map(([a]) => a);
  const routes = [...byRoute].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([r]) => r.split('\u0000') as [string, string]);
  // A busy route whose origin is not on the home shard of 2: its mismatches are computed away from the log.
  const [origin, destination] = routes.find(([o, d]) => shardOfKey([o], 2) === 1 && airports.slice(0, 30).includes(o) && airports.slice(0, 30).includes(d))!;
  victim = { origin, destination };

  const online = new MemoryOnlineStore(files.compiled.registry);
  await replayFlights(files.compiled, online, LIMIT);
  ({ app, queue } = await loggingServer(files.compiled, online, new TeeSink(Object.values(stores).map((s) => new OfflineFeatureLogSink(s.executor)))));
  const earlier = Math.floor((files.maxTs - 6 * HOUR) / HOUR) * HOUR;
  await serveAndLog(routes, earlier);
  // A flight on the victim route applied to the online store only: served values at its origin, its
  // destination and its route now differ from the offline path's.
  const decoded = new EventDecoder(files.compiled, 'flights').decodeValue({ date: files.maxTs - 10 * 60_000, delay: 999, distance: 12_345, origin, destination });
  if (!decoded.ok) throw new Error(decoded.bad.reason);
  await online.apply(new TileBatchBuilder(files.compiled.registry).build([decoded.event]));
  await serveAndLog(routes, earlier);
}, 120_000);

afterAll(async () => {
  await app?.close();
  for (const store of Object.values(stores)) await store?.close();
  await cluster?.close();
  await rm(root, { recursive: true, force: true });
});

const skewOf = (store: OfflineStore, views?: string[]): Promise<FeatureSkew[]> => evaluateSkew(store.executor, compiled.registry, { sliceBy: 'airport', shards: store.shards, ...(views ? { views } : {}) });

describe('the skew check on a sharded offline store', () => {
  let single: FeatureSkew[];

  beforeAll(async () => {
    single = await skewOf(stores.single);
  });

  it('the single node finds the injected mismatches in all three views, and agreement elsewhere', () => {
    const all = single.filter((r) => r.slice === 'all');
    expect(all.map((r) => `${r.view}:${r.feature}`).sort()).toEqual([...FEATURES, ...ROUTE_FEATURES].sort());
    expect(new Set(all.filter((r) => r.mismatches > 0).map((r) => r.view))).toEqual(new Set(['origin_delays', 'dest_delays', 'route_delays']));
    for (const r of all) expect(r.compared, `${r.view}:${r.feature}`).toBeGreaterThan(r.mismatches);
    const flights = all.find((r) => r.feature === 'flights_1h')!;
    // 35 reads of origin_delays before the stray event, 35 after: the victim's read at the watermark mismatches.
    expect(flights).toMatchObject({ compared: 70, mismatches: 1, sample: [{ key: { airport: victim.origin } }] });
    expect(all.find((r) => r.feature === 'distance_sum_1d')!.maxAbsDiff).toBeCloseTo(12_345, 6);
    expect(all.find((r) => r.view === 'route_delays' && r.feature === 'flights_7d')).toMatchObject({ compared: 24, mismatches: 1, sample: [{ key: victim }] });
  });

  for (const name of ['two', 'three'] as const) {
    it(`${name === 'two' ? 2 : 3} shards give the single node's results, every field of every (view, feature, slice)`, async () => {
      const sharded = await skewOf(stores[name]);
      expect(sharded.length).toBe(single.length);
      sharded.forEach((r, i) => expect(r, `${r.view}:${r.feature} ${r.slice}`).toEqual(single[i]));
    });
  }

  it('a monitor with a skew SLO on 2 shards stores the single node\'s metric rows and alerts', async () => {
    const plan = compiled.monitors[0]!;
    const run = async (store: OfflineStore) => {
      const runner = await MonitorRunner.open(store.executor, compiled, 'serving_skew', { shards: store.shards });
      const evaluations = await runner.evaluate(Date.UTC(2001, 0, 1, 9), Date.UTC(2001, 0, 1, 12));
      const metrics = await store.executor.rows<Record<string, unknown>>('SELECT * EXCEPT evaluated_at FROM tm_monitor_metrics FINAL ORDER BY monitor, metric, feature, slice, window_ms, window_end');
      return { evaluations: evaluations.length, metrics, alerts: runner.alerts.alerts() };
    };
    const one = await run(stores.single);
    const skew = one.metrics.filter((r) => r.metric === 'skew');
    expect(skew.some((r) => r.slice === `origin=${victim.origin}` && r.value === 0.5)).toBe(true);
    expect(one.alerts.some((a) => JSON.stringify(a).includes(`origin=${victim.origin}`))).toBe(true);
    {
      const sharded = await run(stores.two);
      expect(sharded.evaluations).toBe(one.evaluations);
      expect(sharded.metrics.length).toBe(one.metrics.length);
      sharded.metrics.forEach((row, i) => expect(row, JSON.stringify(one.metrics[i])).toEqual(one.metrics[i]));
      expect(sharded.alerts).toEqual(one.alerts);
    }
  }, 60_000);

  it('dataset --from-log on --clickhouse-shards writes the single node\'s rows, with and without a labels spine', async () => {
    writeFileSync(join(root, 'labels.ndjson'), requestIds.map((id, i) => JSON.stringify({ request_id: id, y: i % 2 })).join('\n') + '\n');
    const urls = stores.two.shards!.executors.map((e) => e.location).join(',');
    for (const spine of [undefined, join(root, 'labels.ndjson')]) {
      const expected = join(root, `single-log-${spine ? 'labels' : 'all'}.ndjson`);
      await writeLogDataset(stores.single.executor, expected, spine ? { spine } : {});
      const out = join(root, `sharded-log-${spine ? 'labels' : 'all'}.ndjson`);
      const cli = spawnSync(process.execPath, [join(ROOT, 'bin', 'tidemark.mjs'), 'dataset', '--definitions', 'examples/flights', '--from-log', ...(spine ? ['--spine', spine] : []), '--out', out, '--clickhouse-shards', urls], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(cli.stderr).toBe('');
      expect(cli.status).toBe(0);
      const rows = await datasetRows(out);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows).toEqual(await datasetRows(expected));
    }
  }, 60_000);

  it('negative control: one event of the victim origin moved off its shard changes the results', async () => {
    const owner = shardOfKey([victim.origin], 2);
    const [right, wrong] = [stores.control.shards!.executors[owner]!, stores.control.shards!.executors[1 - owner]!] as [OfflineExecutor, OfflineExecutor];
    const [row] = await right.rows<Record<string, unknown>>(`SELECT * FROM tm_events_flights WHERE __k_origin = {o:String} ORDER BY __ts DESC LIMIT 1`, { o: victim.origin });
    expect(row).toBeDefined();
    await right.command(`ALTER TABLE tm_events_flights DELETE WHERE __k_origin = {o:String} AND __ts = ${Number(row!.__ts)} SETTINGS mutations_sync = 2`, { o: victim.origin });
    await wrong.insert('tm_events_flights', [row!]);
    // origin_delays is the view placed by origin: the one the moved copy changes.
    const expected = single.filter((r) => r.view === 'origin_delays');
    expect(await skewOf(stores.two, ['origin_delays'])).toEqual(expected);
    const moved = await skewOf(stores.control, ['origin_delays']);
    expect(moved).not.toEqual(expected);
    const changed = moved.filter((r, i) => JSON.stringify(r) !== JSON.stringify(expected[i]));
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((r) => r.slice === 'all' || r.slice === `airport=${victim.origin}`)).toBe(true);
  });
});

describe('fields that are not all integers', () => {
  // Random floats: sums, means and a stddev computed in ClickHouse (no exact integer path), each
  // logged read's offline value on its key's shard.
  const trips = source({ name: 'trips', topic: 'trips', schema: z.object({ ts: eventTime(), user: z.string(), x: z.number() }), eventTimeField: 'ts' });
  const user = entity({ name: 'user', joinKeys: ['user'] });
  const byUser = featureView({
    name: 'by_user',
    source: trips,
    entity: user,
    features: { x_sum_2h: { agg: 'sum', field: 'x', window: '2h' }, x_mean_3h: { agg: 'mean', field: 'x', window: '3h' }, x_std_3h: { agg: 'stddev', field: 'x', window: '3h' }, x_var_1h: { agg: 'var', field: 'x', window: '1h' } },
  });
  const defs = compileOrThrow({ trips, user, byUser });
  const T0 = Date.UTC(2026, 2, 1);
  const USERS = Array.from({ length: 24 }, (_, i) => `user-${i}`);

  it('1 node and 2 shards give the same results: bit for bit but for a variance\'s last bits', async () => {
    const rand = mulberry32(7);
    const events = Array.from({ length: 3000 }, () => ({ ts: T0 + Math.floor(rand() * 12 * HOUR), user: USERS[Math.floor(rand() * USERS.length)]!, x: (rand() - 0.5) * 1e4 + rand() * 1e-7 }));
    const path = writeNdjson(join(root, 'trips.ndjson'), events);
    const floatStores = [
      await OfflineStore.open(defs, { clickhouseUrl: (await databaseUrls(cluster.urls.slice(0, 1), 'tm_skew_float_single'))[0]! }),
      await OfflineStore.open(defs, { clickhouseShards: await databaseUrls(cluster.urls.slice(0, 2), 'tm_skew_float_two') }),
    ];
    let server: FastifyInstance | undefined;
    try {
      for (const store of floatStores) await store.loadEvents('trips', path);
      // The online store has every event but one per user's last hour: mismatches at every key read late.
      const online = new MemoryOnlineStore(defs.registry);
      const decoder = new EventDecoder(defs, 'trips');
      const skipped = new Set<string>();
      const served = [...events].sort((a, b) => b.ts - a.ts).filter((e) => {
        if (e.ts < T0 + 11 * HOUR || skipped.has(e.user) || rand() < 0.5) return true;
        skipped.add(e.user);
        return false;
      });
      await online.apply(new TileBatchBuilder(defs.registry).build(served.map((e) => {
        const d = decoder.decodeValue(e);
        if (!d.ok) throw new Error(d.bad.reason);
        return d.event;
      })));
      const logged = await loggingServer(defs, online, new TeeSink(floatStores.map((s) => new OfflineFeatureLogSink(s.executor))));
      server = logged.app;
      for (const at of [T0 + 4 * HOUR, T0 + 8 * HOUR + 1, T0 + 12 * HOUR]) {
        const res = await server.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['by_user:x_sum_2h', 'by_user:x_mean_3h', 'by_user:x_std_3h', 'by_user:x_var_1h'], entities: { user: USERS }, at } });
        expect(res.statusCode, res.body).toBe(200);
      }
      await logged.queue.flush();
      const [one, ...sharded] = await Promise.all(floatStores.map((s) => evaluateSkew(s.executor, defs.registry, { sliceBy: 'user', shards: s.shards })));
      expect(one!.find((r) => r.feature === 'x_std_3h' && r.slice === 'all')).toMatchObject({ compared: 72 });
      expect(one!.some((r) => r.mismatches > 0)).toBe(true);
      for (const results of sharded) {
        expect(results.length).toBe(one!.length);
        results.forEach((r, i) => {
          const single = one![i]!;
          if (r.agg !== 'stddev' && r.agg !== 'var') return expect(r, `${r.feature} ${r.slice}`).toEqual(single);
          // A variance's last bits follow the order ClickHouse folds a key's squared deviations in,
          // which depends on the other keys of the query (README, "At scale"): the decisions are
          // the single node's, the differences within 1e-12 relative.
          const close = (a: number | null, b: number | null) => (a === null || b === null ? a === b : Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(a), Math.abs(b)));
          expect({ ...r, smape: null, maxAbsDiff: null, sample: r.sample.map((m) => ({ ...m, offline: null })) }, `${r.feature} ${r.slice}`).toEqual({ ...single, smape: null, maxAbsDiff: null, sample: single.sample.map((m) => ({ ...m, offline: null })) });
          expect(close(r.smape, single.smape) && close(r.maxAbsDiff, single.maxAbsDiff), `${r.feature} ${r.slice}`).toBe(true);
          r.sample.forEach((m, j) => expect(close(m.offline as number, single.sample[j]!.offline as number), `${r.feature} ${r.slice} ${JSON.stringify(m)}`).toBe(true));
        });
      }
    } finally {
      await server?.close();
      for (const store of floatStores) await store.close();
    }
  }, 60_000);
});
