// Label metrics over logged predictions (labels: { predictions: 'feature_log' }) on chDB: the
// sensor fixture's model scores logged with the feature log (a read and a prediction per request
// id, written by the embedded sink), labels arriving later with the request id. Every label metric
// of every evaluation, window and slice, and the alerts the burn-rate policy raises, equal those of
// the same monitor reading the same scores from a predictions source; another model's predictions
// in the same log are left out. Through the API: predictions posted to POST /feature-log/predictions
// after logged reads, a prediction for a request id never read (counted as without_read, in `all`
// and `sensor=(null)`), and malformed ones refused with a coded error.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { compileOrThrow, monitor, type CompiledDefinitions } from '../../definitions/index.js';
import { encodeFeatureLogRecord, FeatureLogQueue, FEATURE_LOG_FORMAT_VERSION, type EncodedFeatureLogRecord } from '../../ingest/index.js';
import { ALL_SLICE, evaluateLabels, MonitorRunner, queryMetrics, type MetricRecord } from '../../monitor/index.js';
import { binaryMetrics } from '../../monitor/label-metrics.js';
import { OfflineFeatureLogSink, OfflineStore, PREDICTION_LOG_TABLE } from '../../offline/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import * as loggedDefinitions from '../fixtures/sensor-logged-monitor.js';
import { LOGGED_MODEL } from '../fixtures/sensor-logged-monitor.js';
import { END_HOUR, HOUR, REFERENCE_HOURS, T0, labels as labelsSource, readings, sensorData } from '../fixtures/sensor-monitor.js';

const LABEL_METRICS = ['auc', 'log_loss', 'brier', 'precision', 'recall', 'f1', 'accuracy'];
let dir: string;
let compiled: CompiledDefinitions;
let store: OfflineStore;
const data = sensorData();

/** A logged read of one sensor (the request's entity row), as the serving path writes it. */
function loggedRead(requestId: string, sensor: string, atMs: number): EncodedFeatureLogRecord {
  return encodeFeatureLogRecord({
    kind: 'read',
    v: FEATURE_LOG_FORMAT_VERSION,
    request_id: requestId,
    read_time_ms: atMs,
    registry_version: compiled.registry.version,
    entities: { sensor: [sensor] },
    features: [{ view: 'sensor_stats', feature: 'value_mean_1h', values: [0.5], statuses: ['PRESENT'], event_times_ms: [atMs - 1_000] }],
  });
}

function loggedPrediction(requestId: string, score: number, model: string, atMs: number): EncodedFeatureLogRecord {
  return encodeFeatureLogRecord({ kind: 'prediction', v: FEATURE_LOG_FORMAT_VERSION, request_id: requestId, score, model, at_ms: atMs });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-logged-predictions-'));
  compiled = compileOrThrow(loggedDefinitions);
  const write = (name: string, rows: readonly unknown[]): string => {
    const path = join(dir, `${name}.ndjson`);
    writeFileSync(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    return path;
  };
  store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  await store.loadEvents('readings', write('readings', data.readings));
  await store.loadEvents('predictions', write('predictions', data.predictions));
  await store.loadEvents('labels', write('labels', data.labels));
  // The same scores in the feature log: each request's read, then its prediction by model m1; a
  // second model scores the same requests the other way round (it must not count).
  const sink = new OfflineFeatureLogSink(store.executor);
  const records: EncodedFeatureLogRecord[] = [];
  for (const p of data.predictions) {
    records.push(loggedRead(p.id, p.sensor, p.t - 5));
    records.push(loggedPrediction(p.id, p.score, LOGGED_MODEL, p.t));
    records.push(loggedPrediction(p.id, 1 - p.score, 'm2', p.t));
  }
  for (let i = 0; i < records.length; i += 5_000) await sink.write(records.slice(i, i + 5_000));
}, 180_000);

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const key = (r: MetricRecord): string => `${r.window_end} ${r.window_ms} ${r.slice} ${r.metric}`;

describe('label metrics over logged predictions', () => {
  it('equal those of the predictions source, per evaluation, window and slice, with the same alerts', async () => {
    const from = T0 + REFERENCE_HOURS * HOUR;
    const to = T0 + (END_HOUR + 2) * HOUR;
    const sourced = await MonitorRunner.open(store.executor, compiled, 'sensors_sourced');
    const logged = await MonitorRunner.open(store.executor, compiled, 'sensors_logged');
    expect(logged.plan.labels).toMatchObject({ predictions: 'feature_log', predictionIdField: 'request_id', scoreField: 'score', fromLog: { model: LOGGED_MODEL, sliceKeys: { sensor: [{ view: 'sensor_stats', joinKey: 'sensor' }] } } });
    await sourced.evaluate(from, to);
    await logged.evaluate(from, to);
    const rowsOf = async (name: string): Promise<Map<string, MetricRecord>> => {
      const rows = await queryMetrics(store.executor, { monitor: name, limit: 100_000 });
      return new Map(rows.filter((r) => LABEL_METRICS.includes(r.metric) || r.metric === 'labels_without_prediction').map((r) => [key(r), r]));
    };
    const expected = await rowsOf('sensors_sourced');
    const actual = await rowsOf('sensors_logged');
    // Evaluations at hours 25 to 42, windows 1h and 3h, slices all and sensor=a|b|c (more than 16 of them hold labels).
    expect(expected.size).toBeGreaterThan(16 * 2 * 4 * LABEL_METRICS.length);
    expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [k, e] of expected) {
      const a = actual.get(k)!;
      if (e.value === null) expect(a.value, k).toBeNull();
      else expect(Math.abs(a.value! - e.value), k).toBeLessThan(1e-12);
      expect(a.n_cur, k).toBe(e.n_cur);
      if (e.metric !== 'labels_without_prediction') expect(a.detail, k).toEqual({ ...e.detail, without_read: 0 });
    }
    // The model goes blind at hour 32: the AUC SLO tickets on both, for the same series at the same time.
    const alertsOf = (runner: MonitorRunner): string[] =>
      runner.alerts
        .alerts()
        .filter((a) => a.labels.monitor === runner.plan.name)
        .map((a) => `${a.labels.slo} ${a.labels.slice} ${a.labels.severity} ${a.status} ${a.startsAtMs} ${a.endsAtMs}`)
        .sort();
    expect(alertsOf(sourced).some((a) => a.startsWith('auc all ticket'))).toBe(true);
    expect(alertsOf(logged)).toEqual(alertsOf(sourced));
  }, 180_000);

  it('through the API: predictions posted after logged reads, labels later by request id; an unknown request id is counted, malformed ones are refused', async () => {
    const model = 'api-model';
    const apiCompiled = compileOrThrow({
      ...loggedDefinitions,
      sensorsApi: monitor({
        name: 'sensors_api',
        source: readings,
        features: ['value'],
        slices: { sensor: { field: 'sensor' } },
        reference: { from: new Date(T0).toISOString(), to: new Date(T0 + REFERENCE_HOURS * HOUR).toISOString() },
        interval: '1h',
        labels: { predictions: 'feature_log', model, labels: labelsSource, labelId: 'id', label: 'y', kind: 'binary', labelDelay: '1h' },
      }),
    });
    const plan = apiCompiled.monitors.find((m) => m.name === 'sensors_api')!;
    const queue = new FeatureLogQueue(new OfflineFeatureLogSink(store.executor), { sampleRate: 1, lingerMs: 20 });
    const app = await buildServer({ service: new OnlineFeatureService(apiCompiled.registry, new MemoryOnlineStore(apiCompiled.registry), 'wall'), featureLog: queue });
    // Predictions made at hour 60 (after the fixture's data), their labels 20 minutes later.
    const at = T0 + 60 * HOUR + 60_000;
    const made = [
      { id: 'api-1', sensor: 'a', score: 0.9, y: 1 },
      { id: 'api-2', sensor: 'a', score: 0.2, y: 0 },
      { id: 'api-3', sensor: 'a', score: 0.7, y: 0 },
      { id: 'api-4', sensor: 'b', score: 0.6, y: 1 },
      { id: 'api-5', sensor: 'b', score: 0.4, y: 0 },
      { id: 'api-6', sensor: 'b', score: 0.8, y: 1 },
    ];
    try {
      for (const m of made) {
        const read = await app.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['sensor_stats:value_mean_1h'], entities: { sensor: [m.sensor] }, request_id: m.id } });
        expect(read.statusCode, read.body).toBe(200);
        expect(read.headers['x-request-id']).toBe(m.id);
      }
      for (const [i, m] of made.entries()) {
        const res = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload: { request_id: m.id, score: m.score, model, at: at + i } });
        expect(res.statusCode, res.body).toBe(200);
        expect(res.json()).toEqual({ request_id: m.id, destination: `offline store ${store.executor.location}`, status: 'written' });
      }
      // A request id no read was logged under: stored (the read may be on another server, or not sampled) and counted.
      const unknown = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload: { request_id: 'api-never-read', score: 0.3, model, at: at + 10 } });
      expect(unknown.statusCode, unknown.body).toBe(200);
      // Malformed: refused with a coded error naming the field; nothing is logged.
      for (const [payload, field] of [
        [{ request_id: 'api-1', score: 'high', model }, 'score'],
        [{ request_id: 'api-1', score: null, model }, 'score'],
        [{ request_id: '', score: 0.5, model }, 'request_id'],
        [{ score: 0.5, model }, 'request_id'],
        [{ request_id: 'api-1', score: 0.5, model, at: 1.5 }, 'at'],
        [{ request_id: 'api-1', score: 0.5, model, extra: 1 }, 'body'],
      ] as const) {
        const bad = await app.inject({ method: 'POST', url: '/feature-log/predictions', payload });
        expect(bad.statusCode, JSON.stringify(payload)).toBe(400);
        expect(bad.json(), JSON.stringify(payload)).toMatchObject({ code: 'TM_READ_BAD_REQUEST' });
        expect(JSON.stringify(bad.json()), JSON.stringify(payload)).toContain(field === 'body' ? 'extra' : field);
      }
      await queue.flush();
    } finally {
      await app.close();
      await queue.close();
    }
    const stored = await store.executor.rows<{ n: number }>(`SELECT count() AS n FROM ${PREDICTION_LOG_TABLE} WHERE model = {model:String}`, { model });
    expect(Number(stored[0]!.n)).toBe(made.length + 1);

    // Labels arrive later, with the request id (a labels source loaded from a file).
    const labelFile = join(dir, 'api-labels.ndjson');
    writeFileSync(labelFile, `${[...made.map((m) => ({ id: m.id, t: at + 20 * 60_000, y: m.y })), { id: 'api-never-read', t: at + 20 * 60_000, y: 1 }].map((l) => JSON.stringify(l)).join('\n')}\n`);
    await store.loadEvents('labels', labelFile);

    // The evaluation whose 1h window (shifted by the 1h label delay) holds hour 60.
    const T = T0 + 62 * HOUR;
    const results = (await evaluateLabels(store.executor, plan, T - HOUR, T)).get(T)!;
    const bySlice = new Map(results.map((r) => [r.slice, r]));
    const expectMetrics = (slice: string, rows: readonly { score: number; y: number }[]): void => {
      const r = bySlice.get(slice)!;
      const groups = rows.map((m) => ({ score: m.score, positives: m.y, negatives: 1 - m.y }));
      const want = binaryMetrics(groups, 0.5);
      expect(r.labelled, slice).toBe(rows.length);
      expect(r.unlabelled, slice).toBe(0);
      for (const [metric, field] of Object.entries({ auc: 'rocAuc', log_loss: 'logLoss', brier: 'brier', precision: 'precision', recall: 'recall', f1: 'f1', accuracy: 'accuracy' } as const)) {
        const value = r.metrics[metric];
        if (Number.isNaN(want[field])) expect(value ?? null, `${slice} ${metric}`).toBeNull();
        else expect(Math.abs(value! - want[field]), `${slice} ${metric}`).toBeLessThan(1e-12);
      }
    };
    expectMetrics(ALL_SLICE, [...made, { score: 0.3, y: 1 }]);
    expectMetrics('sensor=a', made.filter((m) => m.sensor === 'a'));
    expectMetrics('sensor=b', made.filter((m) => m.sensor === 'b'));
    expectMetrics('sensor=(null)', [{ score: 0.3, y: 1 }]);
    expect(bySlice.get(ALL_SLICE)!.withoutRead).toBe(1);
    expect(bySlice.get('sensor=(null)')!.withoutRead).toBe(1);
    expect(bySlice.get('sensor=a')!.withoutRead).toBe(0);
  }, 120_000);

  it('refuses a logged-predictions monitor sliced by a field no view keys on', () => {
    expect(() =>
      compileOrThrow({
        ...loggedDefinitions,
        bad: monitor({
          name: 'bad_slices',
          source: readings,
          features: ['value'],
          slices: { kind: { field: 'kind' } },
          reference: { from: new Date(T0).toISOString(), to: new Date(T0 + REFERENCE_HOURS * HOUR).toISOString() },
          labels: { predictions: 'feature_log', labels: labelsSource, labelId: 'id', label: 'y', kind: 'binary', labelDelay: '1h' },
        }),
      }),
    ).toThrow(/slice kind \(kind\) is not a key field of a view of the monitor's source/);
  });
});
