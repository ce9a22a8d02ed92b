// The drift monitor on a sharded offline store (issue 15, part 3): each shard counts the samples it
// owns (an event field once per event, on the shard of the source's first placement; a view feature
// on its key's shard), the bin counts and reference samples are merged in Node, and the label metrics
// run on the home shard, where the predictions and labels are. On 2 and 3 shard processes (chDB
// serving ClickHouse's HTTP interface: tests/support/clickhouse-shards.ts, not a ClickHouse
// cluster) the same random events, predictions and labels give the single node's profile, metric
// rows (drift, label metrics, freshness) and alerts, every value bit for bit. Negative control: one
// event moved off the shard that counts it changes the rows. A shard down is a coded error naming
// it, and a monitor part that cannot be exact on shards is refused with TM_OFFLINE_SHARDS_UNSUPPORTED.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, monitor, source, TidemarkError, type CompiledDefinitions } from '../../definitions/index.js';
import { loadProfile, MonitorRunner, type MonitorProfile } from '../../monitor/index.js';
import { OfflineStore, type OfflineExecutor } from '../../offline/index.js';
import { shardOfKey } from '../../offline/shards.js';
import { useClickHouseShards } from '../support/clickhouse-shards.js';
import { writeNdjson } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 2, 1);
const REFERENCE_HOURS = 12;
const END_HOUR = 22;
const SHIFT_HOUR = 16;

const trips = source({
  name: 'trips',
  topic: 'trips',
  schema: z.object({ ts: eventTime(), user: z.string(), city: z.string(), amount: z.number().int(), x: z.number().nullable(), channel: z.string() }),
  eventTimeField: 'ts',
});
const user = entity({ name: 'user', joinKeys: ['user'] });
const city = entity({ name: 'city', joinKeys: ['city'] });
const pair = entity({ name: 'pair', joinKeys: ['user', 'city'] });
// First in the registry: trips' first placement is by city, so an event field's sample is counted on
// its city's shard, while the monitored view features live on the user's and the (user, city) shard.
const byCity = featureView({ name: 'by_city', source: trips, entity: city, features: { n_1h: { agg: 'count', window: '1h' } } });
const byUser = featureView({
  name: 'by_user',
  source: trips,
  entity: user,
  features: {
    n_2h: { agg: 'count', window: '2h' },
    amount_sum_2h: { agg: 'sum', field: 'amount', window: '2h' },
    amount_std_3h: { agg: 'stddev', field: 'amount', window: '3h' },
    x_mean_3h: { agg: 'mean', field: 'x', window: '3h' },
    x_max_2h: { agg: 'max', field: 'x', window: '2h' },
    x_p90_3h: { agg: 'approx_percentile', field: 'x', quantile: 0.9, window: '3h' },
  },
});
const byPair = featureView({ name: 'by_pair', source: trips, entity: pair, features: { n_3h: { agg: 'count', window: '3h' }, amount_mean_3h: { agg: 'mean', field: 'amount', window: '3h' } } });
const predictions = source({ name: 'predictions', topic: 'predictions', schema: z.object({ id: z.string(), ts: eventTime(), user: z.string(), score: z.number() }), eventTimeField: 'ts' });
const labels = source({ name: 'labels', topic: 'labels', schema: z.object({ id: z.string(), ts: eventTime(), y: z.number() }), eventTimeField: 'ts' });
const tripMonitor = monitor({
  name: 'trips',
  source: trips,
  features: ['amount', 'x', 'channel', 'by_user:n_2h', 'by_user:amount_sum_2h', 'by_user:amount_std_3h', 'by_user:x_mean_3h', 'by_user:x_max_2h', 'by_user:x_p90_3h', 'by_pair:n_3h', 'by_pair:amount_mean_3h'],
  slices: { user: { field: 'user' } },
  reference: { from: new Date(T0).toISOString(), to: new Date(T0 + REFERENCE_HOURS * HOUR).toISOString() },
  interval: '1h',
  windows: ['1h', '3h'],
  drift: { minSamples: 5 },
  labels: { predictions, labels, predictionId: 'id', labelId: 'id', score: 'score', label: 'y', kind: 'binary', threshold: 0.5, labelDelay: '1h' },
  slos: {
    amount_drift: { indicator: 'drift', feature: 'amount', objective: 0.9, window: '1h', policy: [{ severity: 'page', long: '3h', short: '1h', burnRate: 5 }] },
    auc: { indicator: 'auc', min: 0.6, objective: 0.9, window: '3h', policy: [{ severity: 'ticket', long: '3h', short: '1h', burnRate: 5 }] },
  },
});
const compiled: CompiledDefinitions = compileOrThrow({ trips, user, city, pair, byCity, byUser, byPair, predictions, labels, tripMonitor });

const USERS = ['u1', 'u2', 'u3', 'u4', 'u5', 'é', 'long-user-key-over-thirty-two-bytes'];
const CITIES = ['ams', 'ber', 'cdg', 'dub', 'lis'];
const CHANNELS = ['web', 'app', 'phone', 'kiosk', 'partner', 'mail'];

/** Seeded random trips (u1's amounts shift up from SHIFT_HOUR on, a new channel appears late), predictions and labels. */
function randomData(seed: number): { trips: Record<string, unknown>[]; predictions: Record<string, unknown>[]; labels: Record<string, unknown>[] } {
  const rand = mulberry32(seed);
  const pick = <T,>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  const out = { trips: [] as Record<string, unknown>[], predictions: [] as Record<string, unknown>[], labels: [] as Record<string, unknown>[] };
  for (let i = 0; i < 2500; i++) {
    const ts = T0 + Math.floor(rand() * END_HOUR * HOUR);
    const u = pick(USERS);
    const shifted = u === 'u1' && ts >= T0 + SHIFT_HOUR * HOUR;
    const channel = ts >= T0 + 18 * HOUR && rand() < 0.1 ? 'new-channel' : rand() < 0.02 ? `rare-${Math.floor(rand() * 50)}` : pick(CHANNELS);
    out.trips.push({ ts, user: u, city: pick(CITIES), amount: Math.floor(rand() * 100) + (shifted ? 60 : 0), x: rand() < 0.1 ? null : (rand() - 0.5) * 1e3 + rand() * 1e-6, channel });
  }
  for (let i = 0; i < 1200; i++) {
    const ts = T0 + Math.floor(rand() * END_HOUR * HOUR);
    const score = Math.round(rand() * 1000) / 1000;
    const id = `p${i}`;
    out.predictions.push({ id, ts, user: pick(USERS), score });
    if (rand() < 0.9) out.labels.push({ id, ts: ts + (rand() < 0.15 ? 2 * HOUR : 20 * 60_000), y: Number(score + (rand() - 0.5) * 0.6 > 0.5) });
  }
  return out;
}

const { cluster: shardProcesses, root, freshDatabases, folder } = useClickHouseShards('sharded-monitor', 3);

interface MonitorOutcome {
  profile: MonitorProfile;
  metrics: Record<string, unknown>[];
  alerts: unknown[];
  evaluations: number;
}

/** Every stored metric row (evaluated_at aside), in the table's order. */
function storedMetrics(executor: OfflineExecutor): Promise<Record<string, unknown>[]> {
  return executor.rows<Record<string, unknown>>('SELECT * EXCEPT evaluated_at FROM tm_monitor_metrics FINAL ORDER BY monitor, metric, feature, slice, window_ms, window_end');
}

/** Load the files into a store (1 URL: one node; more: shards), evaluate the monitor over the whole range; `before` runs after the loads. */
async function monitorOn(urls: string[], files: Record<string, string>, before?: (store: OfflineStore) => Promise<void>): Promise<MonitorOutcome> {
  const store = await OfflineStore.open(compiled, urls.length === 1 ? { clickhouseUrl: urls[0]! } : { clickhouseShards: urls });
  try {
    for (const [name, path] of Object.entries(files)) await store.loadEvents(name, path);
    await before?.(store);
    const runner = await MonitorRunner.open(store.executor, compiled, 'trips', { shards: store.shards });
    const evaluations = await runner.evaluate(T0 + REFERENCE_HOURS * HOUR, T0 + END_HOUR * HOUR);
    const plan = compiled.monitors[0]!;
    return { profile: await loadProfile(store.executor, plan), metrics: await storedMetrics(store.executor), alerts: runner.alerts.alerts(), evaluations: evaluations.length };
  } finally {
    await store.close();
  }
}

function writeData(dir: string, seed: number): Record<string, string> {
  const data = randomData(seed);
  return {
    trips: writeNdjson(join(dir, 'trips.ndjson'), data.trips),
    predictions: writeNdjson(join(dir, 'predictions.ndjson'), data.predictions),
    labels: writeNdjson(join(dir, 'labels.ndjson'), data.labels),
  };
}

/** The profile as plain data (typed arrays as arrays), sorted by key. */
function plainProfile(profile: MonitorProfile): unknown[] {
  return [...profile.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, p]) => ({ key, ...p, counts: [...p.counts] }));
}

describe('the monitor on a sharded offline store', () => {
  let single: MonitorOutcome;
  let files: Record<string, string>;

  beforeAll(async () => {
    files = writeData(folder('random'), 15);
    single = await monitorOn(await freshDatabases(1), files);
  }, 120_000);

  it('the single node covers what the shards must reproduce: drift on every feature kind, label metrics, alerts', () => {
    expect(single.evaluations).toBe(END_HOUR - REFERENCE_HOURS);
    const metrics = new Set(single.metrics.map((r) => r.metric));
    for (const m of ['drift', 'auc', 'log_loss', 'freshness', 'labels_without_prediction']) expect(metrics.has(m), m).toBe(true);
    const drift = single.metrics.filter((r) => r.metric === 'drift');
    expect(new Set(drift.map((r) => r.feature))).toEqual(new Set(tripMonitor.features));
    expect(drift.some((r) => r.drift === true)).toBe(true);
    // Unseen categories (the Monte Carlo that is seeded by their counts in category order).
    expect(drift.some((r) => r.feature === 'channel' && String(r.detail).includes('unseen_top'))).toBe(true);
    expect(single.alerts.length).toBeGreaterThan(0);
  });

  for (const shardCount of [2, 3]) {
    it(`${shardCount} shards give the single node's profile, metric rows and alerts, bit for bit`, async () => {
      const sharded = await monitorOn(await freshDatabases(shardCount), files);
      expect(sharded.evaluations).toBe(single.evaluations);
      expect(plainProfile(sharded.profile)).toEqual(plainProfile(single.profile));
      expect(sharded.metrics.length).toBe(single.metrics.length);
      sharded.metrics.forEach((row, i) => expect(row, JSON.stringify(single.metrics[i])).toEqual(single.metrics[i]));
      expect(sharded.alerts).toEqual(single.alerts);
    }, 120_000);
  }

  it('negative control: one event moved off the shard that counts it changes the metric rows', async () => {
    const urls = await freshDatabases(2);
    // A trip of city 'ams' in the evaluated range: its copy on ams's shard (which counts its field samples) moved to the other shard.
    const owner = shardOfKey(['ams'], 2);
    const moved = await monitorOn(urls, files, async (store) => {
      const [right, wrong] = [store.shards!.executors[owner]!, store.shards!.executors[1 - owner]!];
      const [row] = await right.rows<Record<string, unknown>>(`SELECT * FROM tm_events_trips WHERE __k_city = 'ams' AND __ts >= ${T0 + 20 * HOUR} ORDER BY __ts LIMIT 1`);
      expect(row).toBeDefined();
      await right.command(`ALTER TABLE tm_events_trips DELETE WHERE __k_city = 'ams' AND __ts = ${Number(row!.__ts)} SETTINGS mutations_sync = 2`);
      await wrong.insert('tm_events_trips', [row!]);
    });
    expect(moved.metrics.length).toBeGreaterThan(0);
    expect(moved.metrics).not.toEqual(single.metrics);
    const differing = moved.metrics.filter((row, i) => JSON.stringify(row) !== JSON.stringify(single.metrics[i]));
    expect(differing.some((r) => r.metric === 'drift' && (r.feature === 'amount' || r.feature === 'channel'))).toBe(true);
  }, 120_000);
});

describe('what the monitor on shards refuses', () => {
  it('a stddev view feature of a field that is not all integers: TM_OFFLINE_SHARDS_UNSUPPORTED naming it', async () => {
    const floatStd = featureView({ name: 'float_std', source: trips, entity: user, features: { x_std_3h: { agg: 'stddev', field: 'x', window: '3h' } } });
    const m = monitor({
      name: 'float_std',
      source: trips,
      features: ['amount', 'float_std:x_std_3h'],
      reference: { from: new Date(T0).toISOString(), to: new Date(T0 + REFERENCE_HOURS * HOUR).toISOString() },
      interval: '1h',
      windows: ['1h'],
    });
    const defs = compileOrThrow({ trips, user, floatStd, m });
    const store = await OfflineStore.open(defs, { clickhouseShards: await freshDatabases(2) });
    try {
      await store.loadEvents('trips', writeData(folder('float-std'), 3).trips!);
      const error = await MonitorRunner.open(store.executor, defs, 'float_std', { shards: store.shards }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TidemarkError);
      expect(error).toMatchObject({ code: 'TM_OFFLINE_SHARDS_UNSUPPORTED', details: { features: ['float_std:x_std_3h'] } });
    } finally {
      await store.close();
    }
  }, 60_000);

  it('label metrics over predictions a view keys (spread over the shards): TM_OFFLINE_SHARDS_UNSUPPORTED before anything is built', async () => {
    const byPredictionUser = featureView({ name: 'prediction_users', source: predictions, entity: user, features: { n_1h: { agg: 'count', window: '1h' } } });
    const m = monitor({
      name: 'spread_labels',
      source: trips,
      features: ['amount'],
      reference: { from: new Date(T0).toISOString(), to: new Date(T0 + REFERENCE_HOURS * HOUR).toISOString() },
      interval: '1h',
      windows: ['1h'],
      labels: { predictions, labels, predictionId: 'id', labelId: 'id', score: 'score', label: 'y', kind: 'binary', threshold: 0.5, labelDelay: '1h' },
    });
    const defs = compileOrThrow({ trips, user, predictions, labels, byPredictionUser, m });
    const store = await OfflineStore.open(defs, { clickhouseShards: await freshDatabases(2) });
    try {
      const error = await MonitorRunner.open(store.executor, defs, 'spread_labels', { shards: store.shards }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'TM_OFFLINE_SHARDS_UNSUPPORTED', details: { sources: ['predictions'] } });
    } finally {
      await store.close();
    }
  }, 60_000);
});

// Last: it kills a shard process.
describe('a shard down', () => {
  it('is TM_OFFLINE_SHARD_UNREACHABLE naming the shard, in an evaluation and in a profile build', async () => {
    const dir = folder('down');
    const data = writeData(dir, 5);
    // Two stores on the 3 processes, loaded while all are up: one evaluating, one without its profile yet.
    const stores = [await OfflineStore.open(compiled, { clickhouseShards: await freshDatabases(3) }), await OfflineStore.open(compiled, { clickhouseShards: await freshDatabases(3) })];
    try {
      for (const store of stores) for (const [name, path] of Object.entries(data)) await store.loadEvents(name, path);
      const runner = await MonitorRunner.open(stores[0]!.executor, compiled, 'trips', { shards: stores[0]!.shards });
      await runner.evaluate(T0 + REFERENCE_HOURS * HOUR, T0 + (REFERENCE_HOURS + 2) * HOUR);
      shardProcesses().shards[2]!.kill();
      const url = stores[0]!.shards!.executors[2]!.location;
      const inEvaluation = await runner.evaluate(T0 + (REFERENCE_HOURS + 2) * HOUR, T0 + END_HOUR * HOUR).catch((e: unknown) => e);
      expect(inEvaluation).toBeInstanceOf(TidemarkError);
      expect(inEvaluation).toMatchObject({ code: 'TM_OFFLINE_SHARD_UNREACHABLE', details: { shard: 3, shards: 3 } });
      expect((inEvaluation as Error).message).toContain(`shard 3 of 3 (${url})`);
      // The evaluations before stay stored; nothing after them was written.
      expect(await runner.lastEvaluatedMs()).toBe(T0 + (REFERENCE_HOURS + 2) * HOUR);
      const inProfile = await MonitorRunner.open(stores[1]!.executor, compiled, 'trips', { shards: stores[1]!.shards }).catch((e: unknown) => e);
      expect(inProfile).toMatchObject({ code: 'TM_OFFLINE_SHARD_UNREACHABLE', details: { shard: 3, shards: 3 } });
    } finally {
      for (const store of stores) await store.close();
    }
  }, 60_000);
});
