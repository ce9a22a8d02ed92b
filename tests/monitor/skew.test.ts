// The skew check (monitor/skew.ts) on real services: flights replayed into Redis through the
// materializer core and loaded into a chDB offline store; reads served from Redis with feature
// logging on (into the offline store); the logged values compared with the offline point-in-time
// values at the logged read times and keys. Clean data: every value matches. Then one airport's
// Redis tiles are corrupted (an event applied to Redis only, never to the offline store): the check
// finds the mismatches at that key, in the features the event changes, and nowhere else.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledDefinitions } from '../../definitions/index.js';
import { EventDecoder, TileBatchBuilder, type FeatureLogQueue } from '../../ingest/index.js';
import { compareLoggedValues, evaluateSkew, MonitorRunner, queryMetrics, sloSeries, type FeatureSkew } from '../../monitor/index.js';
import { OfflineFeatureLogSink, type OfflineStore } from '../../offline/index.js';
import { createRedisClient, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { testRedisUrl } from '../support/redis.js';
import { clearFeatureLog, FEATURES, flightsWithSkewMonitor, loggingServer, offlineFlights, readAirports, replayFlights } from '../support/feature-log.js';

const LIMIT = 4_000;
let compiled: CompiledDefinitions;
let offline: OfflineStore;
let dir: string;
let airports: string[];
let maxTs: number;
let client: RedisClient;
let store: RedisOnlineStore;
let app: FastifyInstance;
let queue: FeatureLogQueue;

beforeAll(async () => {
  ({ compiled, offline, dir, airports, maxTs } = await offlineFlights(LIMIT));
  client = createRedisClient(testRedisUrl());
  store = new RedisOnlineStore(compiled.registry, client, { prefix: `skew-${randomUUID().slice(0, 8)}` });
  await replayFlights(compiled, store, LIMIT);
  ({ app, queue } = await loggingServer(compiled, store, new OfflineFeatureLogSink(offline.executor)));
}, 120_000);

afterAll(async () => {
  await app?.close();
  await client?.quit();
  await offline?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Serve the 30 busiest airports (three requests of 10) at the watermark clock and at an earlier tile edge, and log them. */
async function serveAndLog(): Promise<void> {
  const busiest = airports.slice(0, 30);
  for (let i = 0; i < busiest.length; i += 10) {
    const res = await readAirports(app, busiest.slice(i, i + 10));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
  const earlier = await readAirports(app, busiest.slice(0, 5), { at: Math.floor((maxTs - 6 * 3_600_000) / 3_600_000) * 3_600_000 });
  expect(earlier.status, JSON.stringify(earlier.body)).toBe(200);
  await queue.flush();
  expect(queue.stats.droppedQueueFull + queue.stats.droppedWriteFailed).toBe(0);
}

const all = (results: FeatureSkew[]): FeatureSkew[] => results.filter((r) => r.slice === 'all');

describe('skew of logged reads', () => {
  it('reports a 100% match on clean data, for every logged feature', async () => {
    await serveAndLog();
    const results = await evaluateSkew(offline.executor, compiled.registry, { sliceBy: 'airport' });
    const overall = all(results);
    expect(overall.map((r) => `${r.view}:${r.feature}`).sort()).toEqual([...FEATURES].sort());
    for (const r of overall) {
      expect(r.compared, `${r.view}:${r.feature}`).toBe(35);
      expect(r, `${r.view}:${r.feature}: ${JSON.stringify(r.sample)}`).toMatchObject({ exactMatchRate: 1, mismatches: 0, sample: [] });
      expect(r.smape === null || r.smape < 1e-9).toBe(true);
    }
    // and per airport slice (30 airports x 7 features)
    expect(results.filter((r) => r.slice.startsWith('airport=')).length).toBe(30 * FEATURES.length);
  });

  it("finds a key whose Redis tiles were corrupted, at that key and at the features the stray event changes", async () => {
    await clearFeatureLog(offline.executor);
    const victim = airports[3]!;
    const decoded = new EventDecoder(compiled, 'flights').decodeValue({ date: maxTs - 10 * 60_000, delay: 999, distance: 12_345, origin: victim, destination: 'ZZZ' });
    if (!decoded.ok) throw new Error(decoded.bad.reason);
    await store.apply(new TileBatchBuilder(compiled.registry).build([decoded.event]));
    await serveAndLog();
    const results = await evaluateSkew(offline.executor, compiled.registry, { sliceBy: 'airport' });
    const mismatching = all(results).filter((r) => r.mismatches > 0);
    // The stray event adds one flight, a delay of 999 and a distance inside every window ending at the watermark.
    expect(mismatching.map((r) => r.feature).sort()).toEqual(expect.arrayContaining(['delay_max_1d', 'delay_mean_1h', 'delay_stddev_7d', 'distance_sum_1d', 'flights_1h']));
    for (const r of mismatching) {
      expect(r.view, r.feature).toBe('origin_delays');
      expect(r.sample.length).toBeGreaterThan(0);
      for (const row of r.sample) expect(row.key).toEqual({ airport: victim });
      expect(r.exactMatchRate).toBeLessThan(1);
    }
    // dest_delays reads the same airports by destination: the event's destination ZZZ is not one of them
    expect(all(results).find((r) => r.view === 'dest_delays')).toMatchObject({ mismatches: 0 });
    // Per slice: the victim is the only airport with mismatches.
    const slices = new Set(results.filter((r) => r.slice !== 'all' && r.mismatches > 0).map((r) => r.slice));
    expect([...slices]).toEqual([`airport=${victim}`]);
    const count = results.find((r) => r.feature === 'flights_1h' && r.slice === `airport=${victim}`)!;
    // Two logged reads of the victim: at the watermark (the stray event is inside the window) and
    // 6 h earlier (before the stray event: online and offline agree there).
    expect(count).toMatchObject({ compared: 2, mismatches: 1 });
    expect(count.sample).toHaveLength(1);
    expect(count.sample[0]!.readMs).toBeGreaterThan(maxTs);
    expect(count.sample[0]!.online).toBe((count.sample[0]!.offline as number) + 1);
    const distance = results.find((r) => r.feature === 'distance_sum_1d' && r.slice === 'all')!;
    expect(distance.maxAbsDiff).toBeCloseTo(12_345, 6);
    expect(distance.smape).toBeGreaterThan(0);
  });

  it('a monitor with a skew SLO stores the skew metrics each evaluation and pages through the burn-rate policy at the skewed features only', async () => {
    // The logged reads of the test above: the corrupted airport's, at the watermark clock (10:43 on 2001-01-01).
    const withMonitor = flightsWithSkewMonitor('serving_skew');
    const plan = withMonitor.monitors[0]!;
    expect(plan.skew).toEqual({ views: ['origin_delays', 'route_delays', 'dest_delays'] });
    const runner = await MonitorRunner.open(offline.executor, withMonitor, 'serving_skew');
    const evaluations = await runner.evaluate(plan.reference.toMs, Date.UTC(2001, 0, 1, 12));
    expect(evaluations.map((e) => new Date(e.windowEndMs).toISOString().slice(11, 16))).toEqual(['07:00', '08:00', '09:00', '10:00', '11:00', '12:00']);
    const skew = await queryMetrics(offline.executor, { monitor: 'serving_skew', metric: 'skew', limit: 1_000 });
    // Only the window holding the logged reads' read time has values to compare.
    expect(new Set(skew.map((r) => r.window_end))).toEqual(new Set(['2001-01-01T11:00:00.000Z']));
    const byFeature = new Map(skew.filter((r) => r.slice === 'all').map((r) => [r.feature, r]));
    expect([...byFeature.keys()].sort()).toEqual([...FEATURES].sort());
    expect(byFeature.get('origin_delays:flights_1h')).toMatchObject({ value: 1 - 1 / 30, n_cur: 30 });
    expect(byFeature.get('origin_delays:flights_1h')!.detail).toMatchObject({ mismatches: 1, sample: [{ key: { airport: airports[3] } }] });
    expect(byFeature.get('dest_delays:delay_mean_1d')).toMatchObject({ value: 1, n_cur: 30 });
    const pages = evaluations.flatMap((e) => e.notifications).filter((n) => n.status === 'firing');
    const paged = new Set(pages.map((n) => n.labels.feature));
    expect(paged.has('origin_delays:flights_1h')).toBe(true);
    expect(paged.has('dest_delays:delay_mean_1d')).toBe(false);
    expect(pages.every((n) => n.labels.slo === 'served_equals_offline' && n.labels.severity === 'page')).toBe(true);
    // The SLO's series (GET /monitor/slo): the match rate at 11:00, judged bad, and the page rule firing from then on.
    const series = await sloSeries(offline.executor, plan, 'served_equals_offline', { feature: 'origin_delays:flights_1h' });
    expect(series.labels).toEqual({ feature: 'origin_delays:flights_1h', slice: 'all' });
    expect(series.t).toEqual([Date.UTC(2001, 0, 1, 11)]);
    expect(series.indicator).toEqual([1 - 1 / 30]);
    expect(series.bad).toEqual([1]);
    expect(series.rules[0]!.firing).toEqual([true]);
    await expect(sloSeries(offline.executor, plan, 'served_equals_offline')).rejects.toMatchObject({ code: 'TM_MONITOR_UNKNOWN_FEATURE' });
  });

  it('slices the skew metrics as drift slices view features, and pages at the skewed slice only', async () => {
    // The same logged reads; the monitor slices by origin (origin_delays' key field, not dest_delays').
    const sliced = flightsWithSkewMonitor('serving_skew_by_origin', { byOrigin: true });
    const plan = sliced.monitors[0]!;
    const runner = await MonitorRunner.open(offline.executor, sliced, 'serving_skew_by_origin');
    const evaluations = await runner.evaluate(plan.reference.toMs, Date.UTC(2001, 0, 1, 12));
    const skew = await queryMetrics(offline.executor, { monitor: 'serving_skew_by_origin', metric: 'skew', limit: 10_000 });
    const victim = airports[3]!;
    // origin_delays: all, and one slice per served airport (30); dest_delays: all only.
    const origin = skew.filter((r) => r.feature === 'origin_delays:flights_1h');
    expect(origin.map((r) => r.slice).sort()).toEqual(['all', ...airports.slice(0, 30).map((a) => `origin=${a}`)].sort());
    expect(skew.filter((r) => r.feature === 'dest_delays:delay_mean_1d').map((r) => r.slice)).toEqual(['all']);
    expect(origin.find((r) => r.slice === `origin=${victim}`)).toMatchObject({ value: 0, n_cur: 1 });
    for (const r of origin.filter((x) => x.slice !== 'all' && x.slice !== `origin=${victim}`)) expect(r, r.slice).toMatchObject({ value: 1, n_cur: 1 });
    // The page goes out for the victim's slice (and for all), at the skewed features; no other airport pages.
    // (The same SLO name as serving_skew's, in the same store: that monitor's progress must not mute this one.)
    const pages = evaluations.flatMap((e) => e.notifications).filter((n) => n.status === 'firing');
    expect(pages.every((n) => n.labels.monitor === 'serving_skew_by_origin')).toBe(true);
    expect(new Set(pages.map((n) => n.labels.slice))).toEqual(new Set(['all', `origin=${victim}`]));
    expect(pages.some((n) => n.labels.slice === `origin=${victim}` && n.labels.feature === 'origin_delays:flights_1h')).toBe(true);
    const series = await sloSeries(offline.executor, plan, 'served_equals_offline', { feature: 'origin_delays:flights_1h', slice: `origin=${victim}` });
    expect(series.indicator).toEqual([0]);
    expect(series.rules[0]!.firing).toEqual([true]);
  });
});

describe('compareLoggedValues', () => {
  it('applies the tolerances of docs/semantics.md: exact for counts, 1e-9 relative for means, and computes SMAPE over number pairs', () => {
    const pair = (feature: string, online: number | null, offline: number | null) => ({ requestId: 'r', entityRow: 0, readMs: 1, key: ['ORD'], view: 'origin_delays', feature, status: 'PRESENT', online, offline });
    const results = compareLoggedValues(
      [pair('delay_mean_1h', 10 * (1 + 5e-10), 10), pair('delay_mean_1h', 10 * (1 + 5e-9), 10), pair('flights_1h', 4, 4), pair('flights_1h', 5, 4), pair('flights_1h', 0, 0), pair('last_delay', null, 3)],
      compiled.registry,
    );
    const by = (f: string) => results.find((r) => r.feature === f)!;
    expect(by('delay_mean_1h')).toMatchObject({ compared: 2, mismatches: 1, exactMatchRate: 0.5 });
    expect(by('flights_1h')).toMatchObject({ compared: 3, mismatches: 1, maxAbsDiff: 1 });
    // SMAPE: (0 + 1/4.5 + 0) / 3
    expect(by('flights_1h').smape).toBeCloseTo(1 / 4.5 / 3, 12);
    // a null against a number is a mismatch, outside SMAPE and the largest difference
    expect(by('last_delay')).toMatchObject({ compared: 1, mismatches: 1, smape: null, maxAbsDiff: null, sample: [{ online: null, offline: 3, key: { airport: 'ORD' } }] });
  });
});
