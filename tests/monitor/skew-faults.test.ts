// The skew check against two serving faults, on real services (Redis online stores, a chDB
// offline store holding every event, reads logged into it):
//  - a materializer that skipped a partition: the flights stream keyed by origin in 4 partitions,
//    the events of one partition never applied to Redis;
//  - a stale Redis snapshot: Redis holds the events up to 2 h before the last one, and serving
//    reads at the time after the last event (as a wall clock would), not at the snapshot's clock.
// Each is found at exactly the keys it touches (per airport slice), in the views it touches, and
// a monitor with a skew SLO pages through the burn-rate policy for the skewed features.
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, monitor } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { EventDecoder, TileBatchBuilder } from '../../ingest/index.js';
import { evaluateSkew, MonitorRunner, type FeatureSkew } from '../../monitor/index.js';
import { OfflineFeatureLogSink, OfflineStore } from '../../offline/index.js';
import { createRedisClient, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { writeFlightFiles, type FlightFiles } from '../support/offline-fixtures.js';
import { clearFeatureLog, loggingServer, readAirports } from '../support/feature-log.js';
import { testRedisUrl } from '../support/redis.js';

const LIMIT = 4_000;
const PARTITIONS = 4;
const SKIPPED = 1;
let files: FlightFiles;
let offline: OfflineStore;
let dir: string;
let client: RedisClient;
let served: string[];

/** The partition of an origin in the test's stream (a stable hash of the key, as Kafka's partitioner is). */
const partitionOf = (origin: string): number => createHash('sha256').update(origin).digest().readUInt32BE(0) % PARTITIONS;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-skew-faults-'));
  files = await writeFlightFiles(dir, LIMIT);
  offline = await OfflineStore.open(files.compiled, { dataDir: join(dir, 'chdb') });
  await offline.loadEvents('flights', files.ndjson);
  const counts = new Map<string, number>();
  for (const e of files.events) counts.set(e.fields.origin as string, (counts.get(e.fields.origin as string) ?? 0) + 1);
  served = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([a]) => a);
  client = createRedisClient(testRedisUrl());
}, 120_000);

afterAll(async () => {
  await client?.quit();
  await offline?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A Redis store holding the events `keep` accepts, applied through the materializer core. */
async function redisWith(keep: (fields: Record<string, unknown>, eventTimeMs: number) => boolean): Promise<RedisOnlineStore> {
  const store = new RedisOnlineStore(files.compiled.registry, client, { prefix: `skew-fault-${randomUUID().slice(0, 8)}` });
  const decoder = new EventDecoder(files.compiled, 'flights');
  const events = files.events.filter((e) => keep(e.fields, e.eventTimeMs)).map((e) => {
    const d = decoder.decodeValue({ ...e.fields, date: e.eventTimeMs });
    if (!d.ok) throw new Error(d.bad.reason);
    return d.event;
  });
  await store.apply(new TileBatchBuilder(files.compiled.registry).build(events));
  return store;
}

/** Serve the 30 busiest airports at `at` (three requests of 10) from `store`, log them into a fresh log, and check the skew by airport. */
async function serveLogAndCheck(store: RedisOnlineStore, at: number): Promise<FeatureSkew[]> {
  await clearFeatureLog(offline.executor);
  const { app, queue } = await loggingServer(files.compiled, store, new OfflineFeatureLogSink(offline.executor));
  try {
    for (let i = 0; i < served.length; i += 10) {
      const res = await readAirports(app, served.slice(i, i + 10), { at });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    await queue.flush();
  } finally {
    await app.close();
    await queue.close();
  }
  return evaluateSkew(offline.executor, files.compiled.registry, { sliceBy: 'airport' });
}

/** Airports (slices) with mismatches in a view. */
const skewedAirports = (results: FeatureSkew[], view: string): string[] =>
  [...new Set(results.filter((r) => r.view === view && r.slice !== 'all' && r.mismatches > 0).map((r) => r.slice.replace('airport=', '')))].sort();

/** A monitor with a skew SLO over the logged reads; the features it paged for. */
async function pagedFeatures(name: string): Promise<Set<string>> {
  const withMonitor = compileOrThrow({
    ...flightsDefinitions,
    skewMonitor: monitor({
      name,
      source: flightsDefinitions.flights,
      features: ['delay'],
      reference: { from: '2001-01-01T00:00:00Z', to: '2001-01-01T06:00:00Z' },
      interval: '1h',
      // An SLO name of its own: alerts are deduplicated by (slo, feature, slice, severity) across monitors.
      slos: { [`served_equals_offline_${name}`]: { indicator: 'skew', min: 0.999, objective: 0.99, policy: [{ severity: 'page', long: '2h', short: '1h', burnRate: 14.4 }] } },
    }),
  });
  const plan = withMonitor.monitors.find((m) => m.name === name)!;
  const runner = await MonitorRunner.open(offline.executor, withMonitor, name);
  const evaluations = await runner.evaluate(plan.reference.toMs, Date.UTC(2001, 0, 1, 12));
  return new Set(evaluations.flatMap((e) => e.notifications).filter((n) => n.status === 'firing' && n.labels.severity === 'page').map((n) => n.labels.feature!));
}

describe('skew from serving faults', () => {
  it('a materializer that skipped a partition: mismatches at exactly the airports of that partition, and a page', async () => {
    const store = await redisWith((fields) => partitionOf(fields.origin as string) !== SKIPPED);
    const results = await serveLogAndCheck(store, files.maxTs + 1);
    const expected = served.filter((a) => partitionOf(a) === SKIPPED).sort();
    expect(expected.length).toBeGreaterThan(0);
    // origin_delays is keyed by the partition key: every served airport of the skipped partition, and no other.
    expect(skewedAirports(results, 'origin_delays')).toEqual(expected);
    for (const r of results.filter((x) => x.view === 'origin_delays' && x.slice !== 'all' && x.mismatches > 0)) {
      for (const row of r.sample) expect(partitionOf(row.key.airport!)).toBe(SKIPPED);
    }
    // Redis never saw a skipped airport: its 7-day stddev (over every event of the test) is null online, a number offline.
    const flights7d = results.find((r) => r.view === 'origin_delays' && r.feature === 'delay_stddev_7d' && r.slice === 'all')!;
    expect(flights7d.mismatches).toBe(expected.length);
    const paged = await pagedFeatures('skipped_partition');
    expect(paged.has('origin_delays:delay_stddev_7d')).toBe(true);
    expect(paged.has('origin_delays:distance_sum_1d')).toBe(true);
  });

  it('a stale Redis snapshot read at the current time: mismatches at exactly the airports with events after the snapshot, and a page', async () => {
    const cutoff = files.maxTs - 2 * 3_600_000;
    const store = await redisWith((_, eventTimeMs) => eventTimeMs < cutoff);
    const results = await serveLogAndCheck(store, files.maxTs + 1);
    // distance_sum_1d covers every event since the snapshot: the airports with a flight after it differ, no other.
    const late = new Set(files.events.filter((e) => e.eventTimeMs >= cutoff && e.fields.distance !== null && e.fields.distance !== undefined).map((e) => e.fields.origin as string));
    const expected = served.filter((a) => late.has(a)).sort();
    expect(expected.length).toBeGreaterThan(0);
    const distance = results.filter((r) => r.view === 'origin_delays' && r.feature === 'distance_sum_1d' && r.slice !== 'all' && r.mismatches > 0).map((r) => r.slice.replace('airport=', '')).sort();
    expect(distance).toEqual(expected);
    // No feature differs at an airport without a flight after the snapshot.
    for (const airport of skewedAirports(results, 'origin_delays')) expect(late.has(airport), airport).toBe(true);
    const paged = await pagedFeatures('stale_snapshot');
    expect(paged.has('origin_delays:distance_sum_1d')).toBe(true);
  });
});
