// The dashboard's data on chDB over the sensor fixture (plus a few categories the reference never
// saw): the current bin counts kept with each drift result reproduce the stored PSI exactly; the
// distribution's per-bin PSI terms sum to it; the SLO series' burn rates and firing flags are the
// ones the alert carried; and the routes answer them, with coded 404s listing the valid choices.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/server.js';
import { compileOrThrow, type CompiledDefinitions } from '../../definitions/index.js';
import {
  decileCounts,
  describeMonitor,
  driftColumns,
  driftDistribution,
  loadProfile,
  MonitorRunner,
  OfflineAlertStateStore,
  profileKey,
  queryMetrics,
  sloSeries,
  type CategoricalDistribution,
  type MetricRecord,
  type NumericDistribution,
  windowBurnRate,
} from '../../monitor/index.js';
import { psi } from '../../monitor/psi.js';
import { OfflineStore } from '../../offline/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import * as sensorDefinitions from '../fixtures/sensor-monitor.js';
import { END_HOUR, HOUR, REFERENCE_HOURS, SHIFT_HOUR, T0, sensorData } from '../fixtures/sensor-monitor.js';

let dir: string;
let compiled: CompiledDefinitions;
let store: OfflineStore;
let runner: MonitorRunner;
let driftRows: MetricRecord[];

/** Hour at which sensor a reports kinds the reference never saw (z 3 times as often as w). */
const UNSEEN_HOUR = 34;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-dashboard-'));
  compiled = compileOrThrow(sensorDefinitions);
  const data = sensorData();
  const unseen = Array.from({ length: 40 }, (_, i) => ({ t: T0 + UNSEEN_HOUR * HOUR + i * 60_000 + 7, sensor: 'a', value: 0.1 * (i % 7), kind: i % 4 === 0 ? 'w' : 'z' }));
  const write = (name: string, rows: unknown[]): string => {
    const path = join(dir, `${name}.ndjson`);
    writeFileSync(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    return path;
  };
  store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  await store.loadEvents('readings', write('readings', [...data.readings, ...unseen]));
  await store.loadEvents('predictions', write('predictions', data.predictions));
  await store.loadEvents('labels', write('labels', data.labels));
  runner = await MonitorRunner.open(store.executor, compiled, 'sensors', { externalURL: 'http://tidemark.test' });
  await runner.evaluate(T0 + REFERENCE_HOURS * HOUR, T0 + END_HOUR * HOUR);
  driftRows = await queryMetrics(store.executor, { monitor: 'sensors', metric: 'drift', limit: 100_000 });
}, 180_000);

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('current bins kept with each drift result', () => {
  it('sum to n_cur and give back the stored PSI', () => {
    const withReference = driftRows.filter((r) => r.detail.note !== 'no_reference');
    expect(withReference.length).toBeGreaterThan(100);
    for (const r of withReference) {
      const cur = r.detail.cur_bins as number[];
      const ref = runner.profile.get(profileKey(r.feature, r.slice))!;
      expect(cur.reduce((s, c) => s + c, 0)).toBe(r.n_cur);
      expect(cur.length).toBe(ref.kind === 'numeric' ? 10 : ref.counts.length);
      const refBins = ref.kind === 'numeric' ? decileCounts(ref.counts) : ref.counts;
      expect(psi(refBins, cur)).toBe(r.value);
    }
  });

  it('keep the unseen categories, most frequent first', () => {
    const row = driftRows.find((r) => r.feature === 'kind' && r.slice === 'sensor=a' && r.window_ms === HOUR && Date.parse(r.window_end) === T0 + (UNSEEN_HOUR + 1) * HOUR)!;
    expect(row.detail.unseen_top).toEqual([
      { category: 'z', count: 30 },
      { category: 'w', count: 10 },
    ]);
    expect((row.detail.cur_bins as number[])[0]).toBe(40);
    const before = driftRows.find((r) => r.feature === 'kind' && r.slice === 'sensor=a' && r.window_ms === HOUR && Date.parse(r.window_end) === T0 + UNSEEN_HOUR * HOUR)!;
    expect(before.detail.unseen_top).toEqual([]);
    expect(driftRows.filter((r) => r.feature === 'value').every((r) => r.detail.unseen_top === undefined)).toBe(true);
  });
});

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const closeTo = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-12 * Math.max(Math.abs(a), Math.abs(b));

describe('describeMonitor', () => {
  it('writes the plan with durations as text', () => {
    const summary = describeMonitor(runner.plan, compiled);
    expect(summary).toMatchObject({ name: 'sensors', source: 'readings', interval: '1h', windows: ['1h', '3h'], reference: { from: new Date(T0).toISOString(), to: new Date(T0 + REFERENCE_HOURS * HOUR).toISOString() } });
    expect(summary.features).toEqual([
      { name: 'value', kind: 'numeric', from: 'field', field: 'value', view: null, feature: null, agg: null, window: null },
      { name: 'kind', kind: 'categorical', from: 'field', field: 'kind', view: null, feature: null, agg: null, window: null },
      { name: 'sensor_stats:value_mean_1h', kind: 'numeric', from: 'view', field: null, view: 'sensor_stats', feature: 'value_mean_1h', agg: 'mean', window: '1h' },
    ]);
    expect(summary.slices).toEqual([{ name: 'sensor', field: 'sensor', bands: null, bandLabels: null }]);
    expect(summary.slos.find((x) => x.name === 'value_drift')).toEqual({ name: 'value_drift', indicator: 'drift', objective: 0.9, feature: 'value', min: null, max: null, window: '1h', policy: [{ severity: 'page', long: '3h', short: '1h', burnRate: 5 }] });
    expect(summary.labels).toMatchObject({ predictions: 'predictions', labels: 'labels', kind: 'binary', labelDelay: '1h', threshold: 0.5 });
  });
});

describe('driftDistribution', () => {
  it('numeric: per-bin PSI terms sum to the stored PSI, counts to n_ref and n_cur, at every evaluation', async () => {
    const rows = driftRows.filter((r) => r.feature === 'value' && r.slice === 'sensor=b' && r.window_ms === HOUR);
    expect(rows.length).toBe(END_HOUR - REFERENCE_HOURS);
    const profile = await loadProfile(store.executor, runner.plan, { feature: 'value', slice: 'sensor=b' });
    const fine = runner.profile.get(profileKey('value', 'sensor=b'))!;
    for (const row of rows) {
      const d = (await driftDistribution(store.executor, profile, runner.plan, { feature: 'value', slice: 'sensor=b', windowMs: HOUR, windowEndMs: Date.parse(row.window_end) })) as NumericDistribution;
      expect(d.windowEnd).toBe(row.window_end);
      expect(d.psi).toBe(row.value);
      expect(closeTo(sum(d.deciles!.contribution), d.psi!)).toBe(true);
      expect(sum(d.deciles!.ref)).toBe(d.nRef);
      expect(sum(d.deciles!.cur)).toBe(d.nCur);
      expect(d.deciles!.edges).toEqual([9, 19, 29, 39, 49, 59, 69, 79, 89].map((i) => fine.edges[i]));
      expect(d.fine!.edges).toHaveLength(99);
      expect(sum(d.fine!.ref)).toBe(d.nRef);
      expect(d.deciles!.refFraction.every((f) => f > 0.05 && f < 0.15)).toBe(true);
    }
    // After the shift (+3 sigma) nearly everything lands in the top decile, whose term is then the largest.
    const after = (await driftDistribution(store.executor, profile, runner.plan, { feature: 'value', slice: 'sensor=b', windowMs: HOUR })) as NumericDistribution;
    expect(after.windowEnd).toBe(new Date(T0 + END_HOUR * HOUR).toISOString());
    expect(after.drift).toBe(true);
    expect(after.deciles!.curFraction[9]!).toBeGreaterThan(0.8);
    expect(Math.max(...after.deciles!.contribution)).toBe(after.deciles!.contribution[9]);
    // A time between evaluations gives the one before it.
    const between = await driftDistribution(store.executor, profile, runner.plan, { feature: 'value', slice: 'sensor=b', windowMs: HOUR, windowEndMs: T0 + 30.5 * HOUR });
    expect(between.windowEnd).toBe(new Date(T0 + 30 * HOUR).toISOString());
  });

  it('categorical: reference categories and the unseen bin, whose terms sum to the PSI', async () => {
    const profile = await loadProfile(store.executor, runner.plan, { feature: 'kind', slice: 'sensor=a' });
    const d = (await driftDistribution(store.executor, profile, runner.plan, { feature: 'kind', slice: 'sensor=a', windowMs: HOUR, windowEndMs: T0 + (UNSEEN_HOUR + 1) * HOUR })) as CategoricalDistribution;
    expect(d.kind).toBe('categorical');
    expect(d.bins!.categories).toEqual(['y', 'x']);
    expect(d.bins!.ref[0]).toBe(0);
    expect(d.bins!.cur[0]).toBe(40);
    expect(sum(d.bins!.cur)).toBe(d.nCur);
    expect(sum(d.bins!.ref)).toBe(d.nRef);
    expect(closeTo(sum(d.bins!.contribution), d.psi!)).toBe(true);
    expect(d.unseen).toEqual({ total: 40, top: [{ category: 'z', count: 30 }, { category: 'w', count: 10 }] });
  });

  it('unknown names and times are coded errors listing the choices', async () => {
    const profile = runner.profile;
    const fail = (q: Parameters<typeof driftDistribution>[3]) => driftDistribution(store.executor, profile, runner.plan, q).then(() => null, (e: { code: string; details: Record<string, unknown> }) => e);
    expect(await fail({ feature: 'nope', slice: 'all', windowMs: HOUR })).toMatchObject({ code: 'TM_MONITOR_UNKNOWN_FEATURE', details: { validFeatures: ['value', 'kind', 'sensor_stats:value_mean_1h'] } });
    expect(await fail({ feature: 'value', slice: 'sensor=q', windowMs: HOUR })).toMatchObject({ code: 'TM_MONITOR_UNKNOWN_SLICE', details: { validSlices: ['all', 'sensor=a', 'sensor=b', 'sensor=c'] } });
    expect(await fail({ feature: 'value', slice: 'color=red', windowMs: HOUR })).toMatchObject({ code: 'TM_MONITOR_UNKNOWN_SLICE' });
    expect(await fail({ feature: 'value', slice: 'all', windowMs: HOUR, windowEndMs: T0 })).toMatchObject({ code: 'TM_MONITOR_NO_EVALUATION', details: { latest: new Date(T0 + END_HOUR * HOUR).toISOString() } });
  });
});

describe('sloSeries', () => {
  it('fires where the alert fired, with the burn rate its annotation carries', async () => {
    const alert = runner.alerts.alerts().find((a) => a.labels.slo === 'value_drift' && a.labels.slice === 'sensor=b')!;
    const firedAt = T0 + (SHIFT_HOUR + 2) * HOUR;
    expect(alert.startsAtMs).toBe(firedAt);
    const history = await (await OfflineAlertStateStore.open(store.executor)).history(alert.fingerprint);
    const first = history.notifications[0]!;
    expect(first).toMatchObject({ kind: 'firing', createdAtMs: firedAt });
    // "3h=6.667 1h=10": the rule's long and short burn rates, 4 significant digits.
    const [long, short] = first.annotations.burn_rates!.split(' ').map((x) => Number(x.split('=')[1]));

    const series = await sloSeries(store.executor, runner.plan, 'value_drift', { slice: 'sensor=b' });
    expect(series.labels).toEqual({ feature: 'value', slice: 'sensor=b' });
    expect(series.t).toEqual(Array.from({ length: END_HOUR - REFERENCE_HOURS }, (_, i) => T0 + (REFERENCE_HOURS + 1 + i) * HOUR));
    const rule = series.rules[0]!;
    expect(rule).toMatchObject({ severity: 'page', long: '3h', short: '1h', threshold: 5 });
    const i = series.t.indexOf(firedAt);
    expect(rule.firing[i]).toBe(true);
    expect(rule.firing[i - 1]).toBe(false);
    expect(Number(rule.longBurn[i]!.toPrecision(4))).toBe(long);
    expect(Number(rule.shortBurn[i]!.toPrecision(4))).toBe(short);
    // Each burn rate is the plain definition over the series' own observations.
    const observations = series.t.flatMap((t, k) => (series.bad[k] === null ? [] : [{ timeMs: t, good: series.good[k]!, bad: series.bad[k]! }]));
    series.t.forEach((t, k) => {
      if (rule.longBurn[k] === null) return;
      expect([rule.longBurn[k], rule.shortBurn[k]]).toEqual([windowBurnRate(observations, t, 3 * HOUR, 0.9).burnRate, windowBurnRate(observations, t, HOUR, 0.9).burnRate]);
    });
    // The first evaluation that fires is the first whose rule both windows exceed.
    expect(rule.firing.indexOf(true)).toBe(i);
    expect(series.budget[i]).toBeCloseTo(1 - rule.longBurn[i]!, 12);
    expect(series.indicator[i]).toBe(driftRows.find((r) => r.feature === 'value' && r.slice === 'sensor=b' && r.window_ms === HOUR && Date.parse(r.window_end) === firedAt)!.value);
    // Period burn-down: periods of 3h from the first evaluation; the ideal line reaches 0 at each period's end.
    expect(series.budgetPeriod).toBe('3h');
    expect(series.ideal.slice(0, 3)).toEqual([2 / 3, 1 / 3, 0].map((x) => expect.closeTo(x, 12)));
    const bad = series.bad.slice(0, 3).reduce((a, b) => a! + b!, 0)!;
    expect(series.periodBudget[2]).toBeCloseTo(1 - bad / (0.1 * 3), 9);

    // A window given by from/to: the same values where they overlap (the replay warms up one period earlier).
    const part = await sloSeries(store.executor, runner.plan, 'value_drift', { slice: 'sensor=b', fromMs: firedAt, toMs: firedAt + 2 * HOUR });
    expect(part.t).toEqual([firedAt, firedAt + HOUR, firedAt + 2 * HOUR]);
    expect(part.rules[0]!.longBurn).toEqual(rule.longBurn.slice(i, i + 3));
    expect(part.rules[0]!.firing).toEqual(rule.firing.slice(i, i + 3));
  });

  it('label SLOs read their metric per slice; unknown names are coded', async () => {
    const auc = await sloSeries(store.executor, runner.plan, 'auc');
    expect(auc.labels).toEqual({ slice: 'all' });
    expect(auc.t.length).toBeGreaterThan(0);
    expect(auc.indicator.every((v) => v === null || (v >= 0 && v <= 1))).toBe(true);
    const fail = (slo: string, q = {}) => sloSeries(store.executor, runner.plan, slo, q).then(() => null, (e: { code: string; details: Record<string, unknown> }) => e);
    expect(await fail('nope')).toMatchObject({ code: 'TM_MONITOR_UNKNOWN_SLO', details: { validSlos: ['value_drift', 'auc'] } });
    expect(await fail('value_drift', { feature: 'kind' })).toMatchObject({ code: 'TM_MONITOR_UNKNOWN_FEATURE', details: { validFeatures: ['value'] } });
    expect(await fail('value_drift', { slice: 'sensor=q' })).toMatchObject({ code: 'TM_MONITOR_UNKNOWN_SLICE', details: { validSlices: ['all', 'sensor=a', 'sensor=b', 'sensor=c'] } });
  });
});

describe('driftColumns', () => {
  it('holds the same numbers as the rows', () => {
    const cols = driftColumns(driftRows);
    expect(cols.window_end).toEqual([...cols.window_end].sort());
    for (const r of driftRows) {
      const i = cols.feature.findIndex((f, k) => f === r.feature && cols.slice[k] === r.slice && cols.window_ms[k] === Number(r.window_ms));
      const j = cols.window_end.indexOf(r.window_end);
      expect([cols.psi[i]![j], cols.drift[i]![j], cols.n_cur[i]![j]]).toEqual([r.value, r.drift, Number(r.n_cur)]);
    }
    expect(cols.psi.flat().filter((v) => v !== null)).toHaveLength(driftRows.filter((r) => r.value !== null).length);
  });
});

describe('routes', () => {
  const server = (monitors: CompiledDefinitions | undefined) =>
    buildServer({ service: new OnlineFeatureService(compiled.registry, new MemoryOnlineStore(compiled.registry), 'wall'), offline: store, monitors });

  it('serve plans, distributions, SLO series, drift columns and alert history', async () => {
    const app = await server(compiled);
    const get = async (url: string) => {
      const res = await app.inject({ method: 'GET', url });
      return { status: res.statusCode, body: res.json() as Record<string, any> };
    };
    const plans = await get('/monitor/plans');
    expect(plans.status).toBe(200);
    expect(plans.body).toEqual(JSON.parse(JSON.stringify({ monitors: [describeMonitor(runner.plan, compiled)] })));

    const T = T0 + (SHIFT_HOUR + 2) * HOUR;
    const dist = await get(`/monitor/distribution?feature=value&slice=sensor%3Db&window=1h&at=${new Date(T).toISOString()}`);
    expect(dist.status).toBe(200);
    const direct = await driftDistribution(store.executor, runner.profile, runner.plan, { feature: 'value', slice: 'sensor=b', windowMs: HOUR, windowEndMs: T });
    expect(dist.body).toEqual(JSON.parse(JSON.stringify(direct)));
    const cat = await get(`/monitor/distribution?monitor=sensors&feature=kind&slice=sensor%3Da&at=${T0 + (UNSEEN_HOUR + 1) * HOUR}`);
    expect(cat.body.unseen).toEqual({ total: 40, top: [{ category: 'z', count: 30 }, { category: 'w', count: 10 }] });

    const slo = await get('/monitor/slo?monitor=sensors&slo=value_drift&slice=sensor%3Db');
    expect(slo.status).toBe(200);
    expect(slo.body).toEqual(JSON.parse(JSON.stringify(await sloSeries(store.executor, runner.plan, 'value_drift', { slice: 'sensor=b' }))));

    const rows = await get('/monitor/drift?monitor=sensors&window=1h&slice=sensor%3Db');
    const cols = await get('/monitor/drift?monitor=sensors&window=1h&slice=sensor%3Db&format=columns');
    expect(cols.body).toEqual(JSON.parse(JSON.stringify({ format: 'columns', ...driftColumns(rows.body.drift as MetricRecord[]) })));
    expect(cols.body.feature).toEqual(['kind', 'sensor_stats:value_mean_1h', 'value']);

    const alerts = await get('/alerts?status=firing');
    const fingerprint = (alerts.body.alerts as { fingerprint: string; labels: Record<string, string> }[]).find((a) => a.labels.slice === 'sensor=b')!.fingerprint;
    const history = await get(`/alerts/history?fingerprint=${fingerprint}`);
    expect(history.status).toBe(200);
    expect(history.body.alert).toMatchObject({ fingerprint, status: 'firing', startsAt: new Date(T).toISOString() });
    // Fired at 32h, repeated every 4h of event time while firing (36h, 40h); no sink here, so none delivered.
    expect(history.body.notifications.map((n: { kind: string; createdAt: string }) => [n.kind, n.createdAt])).toEqual([
      ['firing', new Date(T).toISOString()],
      ['repeat', new Date(T + 4 * HOUR).toISOString()],
      ['repeat', new Date(T + 8 * HOUR).toISOString()],
    ]);
    expect(history.body.notifications.map((n: { deliveredAt: string | null }) => n.deliveredAt)).toEqual([null, null, null]);
    expect(history.body.notifications.slice(0, 2).map((n: { supersededBy: string | null }) => n.supersededBy !== null)).toEqual([true, true]);

    const notFound: [string, string, string, unknown][] = [
      ['/monitor/distribution?monitor=nope&feature=value', 'TM_MONITOR_UNKNOWN', 'validMonitors', ['sensors']],
      ['/monitor/distribution?feature=nope', 'TM_MONITOR_UNKNOWN_FEATURE', 'validFeatures', ['value', 'kind', 'sensor_stats:value_mean_1h']],
      ['/monitor/distribution?feature=value&slice=sensor%3Dq', 'TM_MONITOR_UNKNOWN_SLICE', 'validSlices', ['all', 'sensor=a', 'sensor=b', 'sensor=c']],
      ['/monitor/distribution?feature=value&window=2h', 'TM_MONITOR_UNKNOWN_WINDOW', 'validWindows', ['1h', '3h']],
      ['/monitor/distribution?feature=value&at=2020-01-01T00:00:00Z', 'TM_MONITOR_NO_EVALUATION', 'latest', new Date(T0 + END_HOUR * HOUR).toISOString()],
      ['/monitor/slo?slo=nope', 'TM_MONITOR_UNKNOWN_SLO', 'validSlos', ['value_drift', 'auc']],
      ['/alerts/history?fingerprint=0000000000000000', 'TM_ALERT_UNKNOWN', 'validFingerprints', expect.arrayContaining([fingerprint])],
    ];
    for (const [url, code, key, valid] of notFound) {
      const res = await get(url);
      expect([url, res.status, res.body.code, res.body[key] ?? res.body.details?.[key]]).toEqual([url, 404, code, valid]);
    }
    const badTime = await get('/monitor/distribution?feature=value&at=yesterday');
    expect([badTime.status, badTime.body.code]).toEqual([400, 'TM_MONITOR_BAD_REQUEST']);
    await app.close();
  });

  it('answer a coded 404 when the server has no monitors', async () => {
    const app = await server(undefined);
    for (const url of ['/monitor/plans', '/monitor/distribution?feature=value', '/monitor/slo?slo=value_drift']) {
      const res = await app.inject({ method: 'GET', url });
      expect([url, res.statusCode, (res.json() as { code: string }).code]).toEqual([url, 404, 'TM_MONITOR_NOT_CONFIGURED']);
    }
    await app.close();
  });
});
