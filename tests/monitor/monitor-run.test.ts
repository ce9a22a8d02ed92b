// The monitor loop end to end on chDB: a synthetic sensor source whose sensor `b` shifts at a known
// hour; the drift SLO pages through a real Alertmanager-format HTTP receiver at the evaluation the
// policy predicts; a restarted monitor neither re-evaluates nor re-pages; label metrics over delayed
// labels equal the aggregate-free computation of scikit-learn's definitions; the API serves it all.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, type CompiledDefinitions } from '../../definitions/index.js';
import { AlertmanagerWebhookSink, evaluateLabels, LabelMetricsAhead, MonitorRunner, type AlertmanagerWebhookMessage } from '../../monitor/index.js';
import { binaryMetrics } from '../../monitor/label-metrics.js';
import { OfflineStore } from '../../offline/index.js';
import { buildServer } from '../../api/server.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import * as sensorDefinitions from '../fixtures/sensor-monitor.js';
import { writeNdjson } from '../support/offline-fixtures.js';
import { END_HOUR, HOUR, REFERENCE_HOURS, SHIFT_HOUR, T0, sensorData } from '../fixtures/sensor-monitor.js';

let dir: string;
let compiled: CompiledDefinitions;
let store: OfflineStore;
let receiver: Server;
let receiverUrl: string;
const received: AlertmanagerWebhookMessage[] = [];
const predictionRows: { id: string; t: number; sensor: string; score: number }[] = [];
const labelRows: { id: string; t: number; y: number }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-monitor-'));
  compiled = compileOrThrow(sensorDefinitions);
  const data = sensorData();
  predictionRows.push(...data.predictions);
  labelRows.push(...data.labels);
  store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  await store.loadEvents('readings', writeNdjson(join(dir, 'readings.ndjson'), data.readings));
  await store.loadEvents('predictions', writeNdjson(join(dir, 'predictions.ndjson'), predictionRows));
  await store.loadEvents('labels', writeNdjson(join(dir, 'labels.ndjson'), labelRows));
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push(JSON.parse(body) as AlertmanagerWebhookMessage);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
}, 120_000);

afterAll(async () => {
  await new Promise((r) => receiver?.close(r));
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const open = (): Promise<MonitorRunner> => MonitorRunner.open(store.executor, compiled, 'sensors', { sinks: [new AlertmanagerWebhookSink({ url: receiverUrl, externalURL: 'http://tidemark.test' })], externalURL: 'http://tidemark.test' });
const firingAlerts = (): AlertmanagerWebhookMessage['alerts'] => received.flatMap((m) => m.alerts.filter((a) => a.status === 'firing'));

describe('monitor loop', () => {
  it('flags the shifted sensor and pages at the evaluation the policy predicts', async () => {
    const runner = await open();
    const start = T0 + REFERENCE_HOURS * HOUR;
    // Evaluate up to 2 hours after the shift: hours 30 and 31 drift, so the 3h window holds 2 of 3 bad (> 0.5) at T = 32h.
    const first = await runner.evaluate(start, T0 + (SHIFT_HOUR + 1) * HOUR);
    for (const e of first) {
      const drifted = e.drifted.filter((d) => d.feature === 'value' && d.windowMs === HOUR).map((d) => d.slice);
      if (e.windowEndMs <= T0 + SHIFT_HOUR * HOUR) expect(drifted).toEqual([]);
    }
    expect(firingAlerts()).toEqual([]);
    const second = await runner.evaluate(start, T0 + (SHIFT_HOUR + 2) * HOUR);
    expect(second.map((e) => e.windowEndMs)).toEqual([T0 + (SHIFT_HOUR + 2) * HOUR]); // nothing evaluated twice
    expect(second[0]!.drifted.some((d) => d.feature === 'value' && d.slice === 'sensor=b' && d.windowMs === HOUR)).toBe(true);
    const pages = firingAlerts().filter((a) => a.labels.slo === 'value_drift');
    expect(pages.map((a) => a.labels.slice)).toContain('sensor=b');
    const page = pages.find((a) => a.labels.slice === 'sensor=b')!;
    expect(page.labels).toMatchObject({ alertname: 'TidemarkSLOBurnRate', monitor: 'sensors', slo: 'value_drift', feature: 'value', severity: 'page' });
    expect(page.startsAt).toBe(new Date(T0 + (SHIFT_HOUR + 2) * HOUR).toISOString().replace('.000Z', 'Z'));
    expect(page.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(pages.filter((a) => a.labels.slice === 'sensor=a' || a.labels.slice === 'sensor=c')).toEqual([]);
  });

  it('a restarted monitor resumes without re-evaluating or re-paging', async () => {
    const before = firingAlerts().length;
    const runner = await open();
    expect(await runner.lastEvaluatedMs()).toBe(T0 + (SHIFT_HOUR + 2) * HOUR);
    const more = await runner.evaluate(T0 + REFERENCE_HOURS * HOUR, T0 + END_HOUR * HOUR);
    expect(more[0]!.windowEndMs).toBe(T0 + (SHIFT_HOUR + 3) * HOUR);
    // The episode that paged at 32h is not paged again as new; only Alertmanager-style repeats of it
    // (every 4h of event time while firing: 36h and 40h) go out, exactly as without the restart.
    const original = firingAlerts().find((a) => a.labels.slo === 'value_drift' && a.labels.slice === 'sensor=b')!;
    const newPages = firingAlerts().slice(before).filter((a) => a.labels.slo === 'value_drift' && a.labels.slice === 'sensor=b');
    expect(newPages.map((a) => a.startsAt)).toEqual([original.startsAt, original.startsAt]);
    expect(runner.alerts.alerts().some((a) => a.labels.slice === 'sensor=b' && a.status === 'firing')).toBe(true);
  });

  it('label metrics fetched a few evaluations per query, the next span queued ahead, equal one pass over all of them', async () => {
    const plan = compiled.monitors[0]!;
    const from = T0 + REFERENCE_HOURS * HOUR;
    const to = T0 + END_HOUR * HOUR;
    const all = await evaluateLabels(store.executor, plan, from, to);
    // Spans of 5 evaluations: several queries, each queued when the span before it is first used.
    const ahead = new LabelMetricsAhead(store.executor, plan, from, to, 5);
    ahead.start();
    let compared = 0;
    for (let T = from + plan.intervalMs; T <= to; T += plan.intervalMs) {
      const results = await ahead.at(T);
      expect(results).toEqual(all.get(T) ?? []);
      compared += results.length;
    }
    expect(compared).toBeGreaterThan(0);
  });

  it('label metrics equal the computation over the joined rows', async () => {
    const server = await buildServer({ service: new OnlineFeatureService(compiled.registry, new MemoryOnlineStore(compiled.registry), 'wall'), offline: store });
    const T = T0 + 30 * HOUR;
    const response = await server.inject({ method: 'GET', url: `/monitor/metrics?monitor=sensors&slice=all&window=3h&from=${T}&to=${T}` });
    expect(response.statusCode).toBe(200);
    const metrics = (response.json() as { metrics: { metric: string; value: number | null; detail: { labelled: number; unlabelled: number } }[] }).metrics;
    const auc = metrics.find((m) => m.metric === 'auc')!;
    // Predictions in [T - 1h - 3h, T - 1h) whose first label came within an hour.
    const labelsById = new Map(labelRows.map((l) => [l.id, l]));
    const inWindow = predictionRows.filter((p) => p.t >= T - 4 * HOUR && p.t < T - HOUR);
    const labelled = inWindow.filter((p) => {
      const l = labelsById.get(p.id);
      return l !== undefined && l.t < p.t + HOUR;
    });
    const groups = new Map<number, { score: number; positives: number; negatives: number }>();
    for (const p of labelled) {
      const g = groups.get(p.score) ?? { score: p.score, positives: 0, negatives: 0 };
      if (labelsById.get(p.id)!.y === 1) g.positives++;
      else g.negatives++;
      groups.set(p.score, g);
    }
    const expected = binaryMetrics([...groups.values()], 0.5);
    expect(auc.detail.labelled).toBe(labelled.length);
    expect(auc.detail.unlabelled).toBe(inWindow.length - labelled.length);
    const names = { auc: 'rocAuc', log_loss: 'logLoss', brier: 'brier', precision: 'precision', recall: 'recall', f1: 'f1', accuracy: 'accuracy' } as const;
    for (const [metric, field] of Object.entries(names)) {
      const m = metrics.find((x) => x.metric === metric)!;
      expect(Math.abs(m.value! - expected[field]), metric).toBeLessThan(1e-9);
    }
    const drift = await server.inject({ method: 'GET', url: '/monitor/drift?monitor=sensors&feature=value&slice=sensor%3Db&window=1h&drifted=true' });
    expect((drift.json() as { drift: unknown[] }).drift.length).toBeGreaterThanOrEqual(END_HOUR - SHIFT_HOUR - 1);
    const alerts = await server.inject({ method: 'GET', url: '/alerts?status=firing' });
    expect((alerts.json() as { alerts: { labels: Record<string, string> }[] }).alerts.some((a) => a.labels.slice === 'sensor=b')).toBe(true);
    const bad = await server.inject({ method: 'GET', url: '/monitor/metrics?window=banana' });
    expect(bad.statusCode).toBe(400);
    expect((bad.json() as { code: string }).code).toBe('TM_MONITOR_BAD_REQUEST');
    await server.close();
  });
});
