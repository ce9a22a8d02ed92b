// Alert identity, state and persistence: fingerprints equal Prometheus' (values from
// prometheus/common's model tests), transitions notify once per episode, and state kept in
// the offline store (chDB here) survives a restart without paging again, while a notification
// left undelivered is delivered exactly once after it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkError } from '../../definitions/index.js';
import { ChdbExecutor } from '../../offline/chdb.js';
import { AlertDelivery, type AlertSink } from '../../monitor/alert-sinks.js';
import { ALERTS_TABLE, MemoryAlertStateStore, OfflineAlertStateStore, type AlertStateStore } from '../../monitor/alert-store.js';
import {
  alertFingerprint,
  AlertStateMachine,
  BurnRateAlerts,
  dashboardURL,
  formatAlertTime,
  type AlertNotification,
  type AlertStateChanges,
  type AlertUpdate,
} from '../../monitor/alerts.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const STEP = 5 * MINUTE;
const T0 = Date.UTC(2026, 2, 1);

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<TidemarkError> {
  let error: unknown = null;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (e) {
    error = e;
  }
  expect(error, `expected ${code}`).toBeInstanceOf(TidemarkError);
  expect((error as TidemarkError).code).toBe(code);
  return error as TidemarkError;
}

describe('fingerprints', () => {
  // prometheus/common model/signature_test.go: TestLabelsToSignature, TestMetricToFingerprint and
  // the BenchmarkMetricToFingerprint fixtures (decimal there; Alertmanager prints %016x).
  it.each([
    [{}, '14695981039346656037'],
    [{ name: 'garland, briggs', fear: 'love is not enough' }, '5799056148416392346'],
    [{ 'first-label': 'first-label-value' }, '5146282821936882169'],
    [{ 'first-label': 'first-label-value', 'second-label': 'second-label-value' }, '3195800080984914717'],
    [{ 'first-label': 'first-label-value', 'second-label': 'second-label-value', 'third-label': 'third-label-value' }, '13843036195897128121'],
  ])('%o has the fingerprint prometheus/common gives', (labels, decimal) => {
    expect(alertFingerprint(labels)).toBe(BigInt(decimal).toString(16).padStart(16, '0'));
  });

  it('does not depend on label order; names and values are separated', () => {
    expect(alertFingerprint({ a: '1', b: '2' })).toBe(alertFingerprint({ b: '2', a: '1' }));
    expect(alertFingerprint({ a: 'bc' })).not.toBe(alertFingerprint({ ab: 'c' }));
    expect(alertFingerprint({ slice: 'Zürich' })).toMatch(/^[0-9a-f]{16}$/);
  });

  it('times print as Go prints a UTC time.Time; an unresolved endsAt is the zero time', () => {
    expect(formatAlertTime(Date.UTC(2026, 0, 2, 3, 4, 5))).toBe('2026-01-02T03:04:05Z');
    expect(formatAlertTime(Date.UTC(2026, 0, 2, 3, 4, 5, 120))).toBe('2026-01-02T03:04:05.12Z');
    expect(formatAlertTime(null)).toBe('0001-01-01T00:00:00Z');
  });
});

describe('the state machine', () => {
  const labels = { alertname: 'TidemarkSLOBurnRate', slo: 'x', severity: 'page' };
  const update = (timeMs: number, firing: boolean, rules: string[] = firing ? ['r1'] : []): AlertUpdate => ({
    labels,
    firing,
    timeMs,
    firingRules: rules,
    describe: (status) => ({ annotations: { summary: `${status} at ${timeMs}` }, generatorURL: 'http://x/monitor' }),
  });

  it('inactive -> firing -> resolved -> firing again, one notification per transition', () => {
    const m = new AlertStateMachine({ repeatIntervalMs: 0 });
    expect(m.update(update(0, false))).toBeNull();
    const fired = m.update(update(STEP, true))!;
    expect(fired).toMatchObject({ kind: 'firing', status: 'firing', startsAtMs: STEP, endsAtMs: null, fingerprint: alertFingerprint(labels) });
    expect(fired.id).toBe(`${alertFingerprint(labels)}:firing:${STEP}`);
    for (let i = 2; i < 100; i++) expect(m.update(update(i * STEP, true))).toBeNull();
    const resolved = m.update(update(100 * STEP, false))!;
    expect(resolved).toMatchObject({ kind: 'resolved', status: 'resolved', startsAtMs: STEP, endsAtMs: 100 * STEP, annotations: { summary: `resolved at ${100 * STEP}` } });
    expect(m.update(update(101 * STEP, false))).toBeNull();
    const again = m.update(update(200 * STEP, true))!;
    expect(again).toMatchObject({ kind: 'firing', startsAtMs: 200 * STEP });
    expect(again.id).not.toBe(fired.id);
  });

  it('a still-firing alert is sent again after the repeat interval (4h by default), counted from the last notification', () => {
    const m = new AlertStateMachine();
    expect(m.repeatIntervalMs).toBe(4 * HOUR);
    const kinds: [number, string][] = [];
    for (let i = 0; i <= 100; i++) {
      const n = m.update(update(i * STEP, true));
      if (n) kinds.push([i, n.kind]);
    }
    // 4h = 48 evaluations.
    expect(kinds).toEqual([
      [0, 'firing'],
      [48, 'repeat'],
      [96, 'repeat'],
    ]);
  });

  it('a newer notification supersedes an undelivered one of the same alert; delivery needs every sink', () => {
    const m = new AlertStateMachine({ repeatIntervalMs: 0 });
    const fired = m.update(update(0, true))!;
    const resolved = m.update(update(STEP, false))!;
    expect(m.pending().map((n) => n.id)).toEqual([resolved.id]);
    const changes = m.takeChanges()!;
    expect(changes.notifications.find((n) => n.id === fired.id)).toMatchObject({ supersededBy: resolved.id, deliveredAtMs: null });
    m.markDelivered([resolved.id], 'webhook', 1000, ['webhook', 'log']);
    expect(m.pending('webhook')).toEqual([]);
    expect(m.pending('log').map((n) => n.id)).toEqual([resolved.id]);
    m.markDelivered([resolved.id], 'log', 2000, ['webhook', 'log']);
    expect(m.pending()).toEqual([]);
    expect(m.takeChanges()!.notifications).toEqual([expect.objectContaining({ id: resolved.id, deliveredTo: ['webhook', 'log'], deliveredAtMs: 2000 })]);
    expect(m.takeChanges()).toBeNull();
  });
});

describe('burn-rate alerts: labels and annotations', () => {
  const slo = { name: 'delay_psi', objective: 0.99, indicator: 'psi', max: 0.2 };

  it('labels are alertname, monitor, slo, feature, slice, severity (empty ones left out); annotations say what fired', async () => {
    const alerts = await BurnRateAlerts.open(new MemoryAlertStateStore(), { slos: [slo], externalURL: 'http://tidemark.test:8080/', monitor: 'flights' });
    const notes: AlertNotification[] = [];
    for (let i = 0; i < 3; i++) {
      notes.push(...alerts.observe('delay_psi', { feature: 'delay', slice: 'origin=SFO', empty: '', none: null }, { timeMs: T0 + i * STEP, good: 0, bad: 1, indicatorValue: 0.3141 }));
    }
    const page = notes.find((n) => n.labels.severity === 'page')!;
    expect(page.labels).toEqual({ alertname: 'TidemarkSLOBurnRate', monitor: 'flights', slo: 'delay_psi', feature: 'delay', slice: 'origin=SFO', severity: 'page' });
    expect(page.fingerprint).toBe(alertFingerprint(page.labels));
    const dashboard = 'http://tidemark.test:8080/monitor?slo=delay_psi&slice=origin%3DSFO&feature=delay&monitor=flights';
    expect(page.generatorURL).toBe(dashboard);
    expect(page.annotations).toMatchObject({ dashboard, objective: '0.99', indicator: 'psi', indicator_value: '0.3141', bad_fraction: '1' });
    // Both page rules fire on the first bad evaluation (no history: every window is 100% bad).
    expect(page.annotations.windows).toBe('1h/5m, 6h/30m');
    expect(page.annotations.burn_rates).toBe('1h=100 5m=100, 6h=100 30m=100');
    expect(page.annotations.summary).toBe('SLO delay_psi (feature delay, slice origin=SFO) is burning its error budget 100x too fast over 1h (page)');
    expect(page.annotations.description).toContain('burn rate 100 over 1h and 100 over 5m, both above 14.4');
    expect(page.annotations.description).toContain('objective 99% (error budget 1%) of indicator psi (bad above 0.2)');
    expect(page.annotations.description).toContain('Last psi value: 0.3141.');
    expect(dashboardURL('http://x/', { slo: 'a b' })).toBe('http://x/monitor?slo=a+b');
  });

  it('a label tidemark sets itself, a bad label name or an unknown SLO is a coded error', async () => {
    const alerts = await BurnRateAlerts.open(new MemoryAlertStateStore(), { slos: [slo], externalURL: 'http://x' });
    await expectCode(() => alerts.observe('delay_psi', { severity: 'low' }, { timeMs: T0, good: 1, bad: 0 }), 'TM_ALERT_BAD_LABEL');
    await expectCode(() => alerts.observe('delay_psi', { 'bad-name': 'x' }, { timeMs: T0, good: 1, bad: 0 }), 'TM_ALERT_BAD_LABEL');
    await expectCode(() => alerts.observe('nope', {}, { timeMs: T0, good: 1, bad: 0 }), 'TM_SLO_BAD_OBSERVATION');
    await expectCode(BurnRateAlerts.open(new MemoryAlertStateStore(), { slos: [slo, slo], externalURL: 'http://x' }), 'TM_SLO_BAD_POLICY');
  });
});

// ---- stores --------------------------------------------------------------------------------------

// libchdb binds one data directory per process: every chDB test in this file shares it.
let dataDir: string;
let executor: ChdbExecutor | null = null;

beforeAll(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'tidemark-alerts-'));
});

afterAll(async () => {
  await executor?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Close the chDB session (if open) and open it again on the same folder: a monitor restart. */
async function reopenChdb(): Promise<ChdbExecutor> {
  await executor?.close();
  executor = new ChdbExecutor(dataDir);
  return executor;
}

function notification(id: string, patch: Partial<AlertNotification> = {}): AlertNotification {
  return {
    id,
    kind: 'firing',
    fingerprint: id.split(':')[0]!,
    status: 'firing',
    labels: { alertname: 'A' },
    annotations: { summary: 's' },
    generatorURL: 'http://x',
    startsAtMs: 1,
    endsAtMs: null,
    createdAtMs: 1,
    deliveredTo: [],
    deliveredAtMs: null,
    supersededBy: null,
    ...patch,
  };
}

const backends: [string, () => Promise<AlertStateStore>][] = [
  ['memory', async () => new MemoryAlertStateStore()],
  [
    'chDB (offline store)',
    async () => {
      const ex = await reopenChdb();
      await ex.command(`DROP TABLE IF EXISTS ${ALERTS_TABLE}`);
      return OfflineAlertStateStore.open(ex);
    },
  ],
];

describe.each(backends)('alert state store: %s', (_name, open) => {
  it('loads the latest version of each alert, pending notifications only, and watermarks', async () => {
    const store = await open();
    expect(await store.load()).toEqual({ alerts: [], notifications: [], watermarks: {} });
    const alert = {
      fingerprint: 'aaaaaaaaaaaaaaaa',
      labels: { alertname: 'A', slice: 'a\'b"c\\d' },
      annotations: { summary: 'firing' },
      generatorURL: 'http://x',
      status: 'firing' as const,
      startsAtMs: 1,
      endsAtMs: null,
      firingRules: ['page:1h/5m>14.4'],
      lastNotifiedMs: 1,
    };
    const first: AlertStateChanges = {
      alerts: [alert],
      notifications: [notification('aaaaaaaaaaaaaaaa:firing:1'), notification('bbbbbbbbbbbbbbbb:firing:1')],
      watermarks: { slo_a: 100 },
    };
    await store.save(first);
    await store.save({
      alerts: [{ ...alert, status: 'resolved', endsAtMs: 5, firingRules: [], annotations: { summary: 'resolved' } }],
      notifications: [notification('bbbbbbbbbbbbbbbb:firing:1', { deliveredTo: ['log'], deliveredAtMs: 7 }), notification('aaaaaaaaaaaaaaaa:resolved:1', { status: 'resolved', endsAtMs: 5, createdAtMs: 5 })],
      watermarks: { slo_a: 200, slo_b: 50 },
    });
    const loaded = await store.load();
    expect(loaded.alerts).toEqual([{ ...alert, status: 'resolved', endsAtMs: 5, firingRules: [], annotations: { summary: 'resolved' } }]);
    expect(loaded.notifications.map((n) => n.id).sort()).toEqual(['aaaaaaaaaaaaaaaa:firing:1', 'aaaaaaaaaaaaaaaa:resolved:1']);
    expect(loaded.watermarks).toEqual({ slo_a: 200, slo_b: 50 });
    // History: the alert now and every notification it had (delivered or not), each at its latest version, oldest first.
    await store.save({ alerts: [], notifications: [notification('aaaaaaaaaaaaaaaa:resolved:1', { status: 'resolved', endsAtMs: 5, createdAtMs: 5, deliveredTo: ['log'], deliveredAtMs: 9 })], watermarks: {} });
    const history = await store.history('aaaaaaaaaaaaaaaa');
    expect(history.alert).toEqual(loaded.alerts[0]);
    expect(history.notifications.map((n) => [n.id, n.deliveredAtMs])).toEqual([
      ['aaaaaaaaaaaaaaaa:firing:1', null],
      ['aaaaaaaaaaaaaaaa:resolved:1', 9],
    ]);
    expect(await store.history('bbbbbbbbbbbbbbbb')).toEqual({ alert: null, notifications: [notification('bbbbbbbbbbbbbbbb:firing:1', { deliveredTo: ['log'], deliveredAtMs: 7 })] });
    expect(await store.history('cccccccccccccccc')).toEqual({ alert: null, notifications: [] });
  });
});

describe('restart on the offline store (chDB)', () => {
  const slo = { name: 'auc_floor', objective: 0.99, indicator: 'auc', min: 0.7 };
  const labels = { feature: null, slice: 'carrier=AA' };
  /**
   * Good for a day, then bad for 2h, then good. The page fires at s + 1 (2 bad of 12 in 1h);
   * the ticket's 3d window holds only the 288 + k evaluations so far, so it fires at the k-th bad
   * with k / (288 + k) > 1%, k > 2.9: k = 3, s + 2. The page resolves at s + 29 (the 6th good
   * evaluation empties the 30m window); the ticket holds until s + 95 (72 good fill its 6h).
   */
  const s = 288;
  const pattern = (i: number) => (i >= s && i < s + 24 ? { good: 0, bad: 1 } : { good: 1, bad: 0 });

  class RecordingSink implements AlertSink {
    readonly name = 'recording';
    up = true;
    received: AlertNotification[] = [];
    async send(batch: readonly AlertNotification[]): Promise<void> {
      if (!this.up) throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', 'sink down');
      this.received.push(...structuredClone(batch));
    }
  }

  it('does not page again after a restart, and delivers a notification left pending exactly once', async () => {
    await reopenChdb();
    await executor!.command(`DROP TABLE IF EXISTS ${ALERTS_TABLE}`);
    const sink = new RecordingSink();
    const open = async () => BurnRateAlerts.open(await OfflineAlertStateStore.open(executor!), { slos: [slo], externalURL: 'http://tidemark.test', monitor: 'flights', repeatIntervalMs: 0 });

    // Run 1: the page fires at s + 1 while the sink is down; the notification stays pending.
    {
      const alerts = await open();
      sink.up = false;
      for (let i = 0; i <= s + 3; i++) alerts.observe(slo.name, labels, { timeMs: T0 + i * STEP, ...pattern(i) });
      const report = await new AlertDelivery(alerts, [sink]).deliver(Date.now());
      expect(report.failures.map((f) => [f.sink, f.error.code])).toEqual([['recording', 'TM_ALERT_DELIVERY_FAILED']]);
      expect(alerts.pending().map((n) => [n.labels.severity, n.status])).toEqual([
        ['page', 'firing'],
        ['ticket', 'firing'],
      ]);
    }
    // The crash: every object of run 1 is gone; chDB closes and opens again on the same folder.
    await reopenChdb();

    // Run 2: reload, replay from the warm-up point, keep evaluating; the sink is back.
    sink.up = true;
    {
      const alerts = await open();
      const delivery = new AlertDelivery(alerts, [sink]);
      expect(alerts.pending().map((n) => [n.labels.severity, n.status, (n.startsAtMs - T0) / STEP])).toEqual([
        ['page', 'firing', s + 1],
        ['ticket', 'firing', s + 2],
      ]);
      const from = (alerts.warmUpFromMs()! - T0) / STEP;
      expect(from).toBe(s + 3 - 864);
      const created: AlertNotification[] = [];
      for (let i = Math.max(0, from); i <= s + 60; i++) {
        created.push(...alerts.observe(slo.name, labels, { timeMs: T0 + i * STEP, ...pattern(i) }));
        if (i === s + 4) await delivery.deliver(Date.now());
      }
      await delivery.deliver(Date.now());
      // The replayed evaluations up to the restart created nothing; the page did not fire again.
      expect(created.every((n) => n.createdAtMs > T0 + (s + 3) * STEP)).toBe(true);
      expect(created.map((n) => [n.labels.severity, n.status, (n.createdAtMs - T0) / STEP])).toEqual([['page', 'resolved', s + 29]]);
      expect(sink.received.map((n) => [n.labels.severity, n.status, (n.startsAtMs - T0) / STEP])).toEqual([
        ['page', 'firing', s + 1],
        ['ticket', 'firing', s + 2],
        ['page', 'resolved', s + 1],
      ]);
      expect(alerts.pending()).toEqual([]);
    }

    // Run 3: nothing left to send after another restart.
    await reopenChdb();
    const alerts = await open();
    expect(alerts.pending()).toEqual([]);
    expect(alerts.alerts().map((a) => [a.labels.severity, a.status]).sort()).toEqual([
      ['page', 'resolved'],
      ['ticket', 'firing'],
    ]);
    const rows = await executor!.rows<{ n: number }>(`SELECT count() AS n FROM ${ALERTS_TABLE}`);
    expect(rows[0]!.n).toBeGreaterThan(0);
  });

  it("keeps each monitor's SLO watermark apart: one monitor's progress does not mute another's like-named SLO; a store's older per-SLO watermark is still honoured", async () => {
    await reopenChdb();
    await executor!.command(`DROP TABLE IF EXISTS ${ALERTS_TABLE}`);
    const open = async (monitor: string) => BurnRateAlerts.open(await OfflineAlertStateStore.open(executor!), { slos: [slo], externalURL: 'http://tidemark.test', monitor, repeatIntervalMs: 0 });
    const run = async (monitor: string, last: number): Promise<AlertNotification[]> => {
      const alerts = await open(monitor);
      const out: AlertNotification[] = [];
      for (let i = 0; i <= last; i++) out.push(...alerts.observe(slo.name, labels, { timeMs: T0 + i * STEP, ...pattern(i) }));
      await alerts.save();
      return out;
    };
    // Monitor a evaluates past the episode; monitor b, in the same store, with an SLO of the same name, then evaluates the same history.
    const a = await run('a', s + 30);
    const b = await run('b', s + 30);
    const pages = (ns: AlertNotification[]) => ns.filter((n) => n.labels.severity === 'page').map((n) => [n.labels.monitor, n.status, (n.createdAtMs - T0) / STEP]);
    expect(pages(a)).toEqual([['a', 'firing', s + 1], ['a', 'resolved', s + 29]]);
    expect(pages(b)).toEqual([['b', 'firing', s + 1], ['b', 'resolved', s + 29]]);
    // A store written before watermarks were kept per monitor: the SLO's plain name is read as this monitor's.
    await executor!.command(`DROP TABLE IF EXISTS ${ALERTS_TABLE}`);
    const legacy = await OfflineAlertStateStore.open(executor!);
    await legacy.save({ alerts: [], notifications: [], watermarks: { [slo.name]: T0 + (s + 3) * STEP } });
    const reopened = await open('c');
    expect(reopened.watermarkMs(slo.name)).toBe(T0 + (s + 3) * STEP);
    const replayed: AlertNotification[] = [];
    for (let i = 0; i <= s + 3; i++) replayed.push(...reopened.observe(slo.name, labels, { timeMs: T0 + i * STEP, ...pattern(i) }));
    expect(replayed).toEqual([]); // at or before the watermark: windows refilled, nothing paged
  });
});
