// Alert sinks against an Alertmanager-compatible receiver: a real HTTP server on 127.0.0.1 that
// records every body and checks every field of the webhook payload (version 4, the shape of
// Alertmanager's notify/webhook Message and template Data/Alert). Retries on 5xx and timeouts
// deliver exactly once, a 400 fails at once with a coded error, credentials never leak; the
// Kafka and log sinks, and delivery marking notifications only after the sink took them.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Producer } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { TidemarkError } from '../../definitions/index.js';
import {
  AlertDelivery,
  alertmanagerMessages,
  AlertmanagerWebhookSink,
  KafkaAlertSink,
  LogAlertSink,
  type AlertmanagerWebhookMessage,
  type AlertProducer,
  type AlertSink,
} from '../../monitor/alert-sinks.js';
import { MemoryAlertStateStore } from '../../monitor/alert-store.js';
import { alertFingerprint, AlertStateMachine, BurnRateAlerts, type AlertNotification, type AlertStateChanges } from '../../monitor/alerts.js';

const STEP = 5 * 60_000;
const T0 = Date.UTC(2026, 3, 1, 12);
const EXTERNAL = 'http://tidemark.test:8080';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

// ---- an Alertmanager-compatible receiver -------------------------------------------------------

type Answer = number | 'hang';

interface Received {
  body: string;
  path: string;
  headers: IncomingMessage['headers'];
  answer: Answer;
}

interface Receiver {
  url: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}

const receivers: Receiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

/** Answers request n (0-based) with answers[n] (the last one from then on); 'hang' never answers. */
async function startReceiver(answers: Answer[], extraHeaders: Record<string, string> = {}): Promise<Receiver> {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = answers[Math.min(received.length, answers.length - 1)]!;
      received.push({ body: Buffer.concat(chunks).toString('utf8'), path: req.url ?? '', headers: req.headers, answer });
      if (answer === 'hang') {
        hanging.push(res);
        return;
      }
      res.writeHead(answer, { 'content-type': 'text/plain', ...extraHeaders });
      res.end(answer >= 400 ? `status ${answer} from the test receiver` : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}/api/alerts`,
    port,
    received,
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  receivers.push(receiver);
  return receiver;
}

const isStringMap = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x) && Object.values(x).every((v) => typeof v === 'string');

/** Every field of Alertmanager's webhook payload, its type, and Go's field order. */
function checkPayload(body: string): AlertmanagerWebhookMessage {
  expect(body.endsWith('\n')).toBe(true);
  const m = JSON.parse(body) as AlertmanagerWebhookMessage;
  expect(Object.keys(m)).toEqual(['receiver', 'status', 'alerts', 'groupLabels', 'commonLabels', 'commonAnnotations', 'externalURL', 'version', 'groupKey', 'truncatedAlerts']);
  expect(m.version).toBe('4');
  expect(typeof m.groupKey).toBe('string');
  expect(m.groupKey).toMatch(/^\{\}:\{.*\}$/);
  expect(m.truncatedAlerts).toBe(0);
  expect(typeof m.receiver).toBe('string');
  expect(m.externalURL).toBe(EXTERNAL);
  for (const map of [m.groupLabels, m.commonLabels, m.commonAnnotations]) expect(isStringMap(map)).toBe(true);
  expect(Array.isArray(m.alerts)).toBe(true);
  expect(m.alerts.length).toBeGreaterThan(0);
  expect(m.status).toBe(m.alerts.some((a) => a.status === 'firing') ? 'firing' : 'resolved');
  for (const a of m.alerts) {
    expect(Object.keys(a)).toEqual(['status', 'labels', 'annotations', 'startsAt', 'endsAt', 'generatorURL', 'fingerprint']);
    expect(['firing', 'resolved']).toContain(a.status);
    expect(isStringMap(a.labels)).toBe(true);
    expect(isStringMap(a.annotations)).toBe(true);
    expect(a.startsAt).toMatch(RFC3339);
    if (a.status === 'firing') expect(a.endsAt).toBe('0001-01-01T00:00:00Z');
    else expect(Date.parse(a.endsAt)).toBeGreaterThan(Date.parse(a.startsAt));
    expect(a.endsAt).toMatch(RFC3339);
    expect(a.generatorURL.startsWith(`${EXTERNAL}/monitor?`)).toBe(true);
    expect(a.fingerprint).toBe(alertFingerprint(a.labels));
    // Group labels are shared by every alert of the message, and so are common labels.
    for (const [k, v] of Object.entries(m.groupLabels)) expect(a.labels[k]).toBe(v);
    for (const [k, v] of Object.entries(m.commonLabels)) expect(a.labels[k]).toBe(v);
    for (const [k, v] of Object.entries(m.commonAnnotations)) expect(a.annotations[k]).toBe(v);
  }
  return m;
}

/** Real notifications: series origin=SFO pages and tickets on its first bad evaluation. */
async function firingNotifications(): Promise<AlertNotification[]> {
  const alerts = await BurnRateAlerts.open(new MemoryAlertStateStore(), {
    slos: [{ name: 'delay_psi', objective: 0.99, indicator: 'psi', max: 0.2 }],
    externalURL: EXTERNAL,
    monitor: 'flights',
  });
  return alerts.observe('delay_psi', { feature: 'delay', slice: 'origin=SFO' }, { timeMs: T0, good: 0, bad: 1, indicatorValue: 0.42 });
}

/** A firing and then a resolved notification of one alert, and a firing one of another slice. */
function mixedNotifications(): AlertNotification[] {
  const m = new AlertStateMachine({ repeatIntervalMs: 0 });
  const labels = (slice: string) => ({ alertname: 'TidemarkSLOBurnRate', slo: 'auc_floor', slice, severity: 'page' });
  const describe = (slice: string) => (status: string) => ({ annotations: { summary: `auc_floor ${slice} ${status}`, runbook: 'same for all' }, generatorURL: `${EXTERNAL}/monitor?slo=auc_floor&slice=${slice}` });
  const a = m.update({ labels: labels('a'), firing: true, timeMs: T0, firingRules: ['r'], describe: describe('a') })!;
  const b = m.update({ labels: labels('b'), firing: true, timeMs: T0 + STEP, firingRules: ['r'], describe: describe('b') })!;
  const aResolved = m.update({ labels: labels('a'), firing: false, timeMs: T0 + 2 * STEP + 1500, firingRules: [], describe: describe('a') })!;
  return [a, b, aResolved];
}

const fast = { initialBackoffMs: 20, maxBackoffMs: 200, random: () => 0.5 };

async function rejection(promise: Promise<unknown>): Promise<TidemarkError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TidemarkError);
  return error as TidemarkError;
}

describe('Alertmanager webhook sink', () => {
  it('retries 500s and delivers exactly once; every payload field has Alertmanager shape', async () => {
    const receiver = await startReceiver([500, 500, 200]);
    const retries: string[] = [];
    const sink = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, groupBy: ['alertname', 'slo'], ...fast, onRetry: (r) => retries.push(`${r.attempt} ${r.reason}`) });
    const notes = await firingNotifications();
    expect(notes.map((n) => n.labels.severity)).toEqual(['page', 'ticket']);
    await sink.send(notes);
    expect(receiver.received.map((r) => r.answer)).toEqual([500, 500, 200]);
    expect(new Set(receiver.received.map((r) => r.body)).size).toBe(1);
    expect(retries).toEqual(['1 answered 500 Internal Server Error: status 500 from the test receiver', '2 answered 500 Internal Server Error: status 500 from the test receiver']);
    const m = checkPayload(receiver.received[2]!.body);
    expect(receiver.received[2]!.headers['content-type']).toBe('application/json');
    expect(m).toMatchObject({
      receiver: 'tidemark',
      status: 'firing',
      groupLabels: { alertname: 'TidemarkSLOBurnRate', slo: 'delay_psi' },
      commonLabels: { alertname: 'TidemarkSLOBurnRate', monitor: 'flights', slo: 'delay_psi', feature: 'delay', slice: 'origin=SFO' },
      groupKey: '{}:{alertname="TidemarkSLOBurnRate", slo="delay_psi"}',
    });
    expect(m.alerts.map((a) => [a.labels.severity, a.status, a.startsAt, a.endsAt])).toEqual([
      ['page', 'firing', '2026-04-01T12:00:00Z', '0001-01-01T00:00:00Z'],
      ['ticket', 'firing', '2026-04-01T12:00:00Z', '0001-01-01T00:00:00Z'],
    ]);
    expect(m.commonAnnotations).toMatchObject({ indicator: 'psi', indicator_value: '0.42', objective: '0.99' });
  });

  it('a 400 is not retried and fails with a coded error naming the URL and the status', async () => {
    const receiver = await startReceiver([400]);
    const sink = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, ...fast });
    const error = await rejection(sink.send(await firingNotifications()));
    expect(error.code).toBe('TM_ALERT_DELIVERY_FAILED');
    expect(error.message).toContain(receiver.url);
    expect(error.message).toContain('400 Bad Request');
    expect(error.details).toMatchObject({ url: receiver.url, status: 400, attempts: 1, retryable: false });
    expect(receiver.received).toHaveLength(1);
  });

  it('a hanging receiver hits the per-request timeout and the retry delivers', async () => {
    const receiver = await startReceiver(['hang', 200]);
    const sink = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, timeoutMs: 300, ...fast });
    const started = performance.now();
    await sink.send(mixedNotifications());
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(receiver.received.map((r) => r.answer)).toEqual(['hang', 200]);
    const m = checkPayload(receiver.received[1]!.body);
    // Default group_by (alertname, slo, severity): one message; slice a fired and resolved,
    // slice b fires, so the message is firing.
    expect(m.status).toBe('firing');
    expect(m.alerts.map((a) => [a.labels.slice, a.status])).toEqual([
      ['a', 'firing'],
      ['b', 'firing'],
      ['a', 'resolved'],
    ]);
    expect(m.alerts[2]).toMatchObject({ startsAt: '2026-04-01T12:00:00Z', endsAt: '2026-04-01T12:10:01.5Z' });
    expect(m.commonLabels).toEqual({ alertname: 'TidemarkSLOBurnRate', severity: 'page', slo: 'auc_floor' });
    expect(m.commonAnnotations).toEqual({ runbook: 'same for all' });
  });

  it('gives up after maxAttempts on 5xx, and retries connection errors, with coded errors', async () => {
    const receiver = await startReceiver([503]);
    const sink = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, maxAttempts: 3, ...fast });
    const error = await rejection(sink.send(await firingNotifications()));
    expect(error.code).toBe('TM_ALERT_DELIVERY_FAILED');
    expect(error.message).toContain('gave up after 3 attempt(s)');
    expect(error.details).toMatchObject({ status: 503, attempts: 3, retryable: true });
    expect(receiver.received).toHaveLength(3);

    const closed = await startReceiver([200]);
    await closed.close();
    const refused = new AlertmanagerWebhookSink({ url: closed.url, externalURL: EXTERNAL, maxAttempts: 2, ...fast });
    const refusedError = await rejection(refused.send(await firingNotifications()));
    expect(refusedError.code).toBe('TM_ALERT_DELIVERY_FAILED');
    expect(refusedError.details).toMatchObject({ attempts: 2, retryable: true, status: null });
    expect(refusedError.message).toMatch(/request failed/);
  });

  it('honours Retry-After on 429', async () => {
    const receiver = await startReceiver([429, 200], { 'retry-after': '1' });
    const sink = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, groupBy: ['slo'], ...fast, maxBackoffMs: 5000 });
    const started = performance.now();
    await sink.send(await firingNotifications());
    expect(performance.now() - started).toBeGreaterThanOrEqual(990);
    expect(receiver.received.map((r) => r.answer)).toEqual([429, 200]);
  });

  it('credentials in the URL go as basic auth and never into names or errors', async () => {
    const receiver = await startReceiver([401]);
    const url = `http://alert-user:s3cr%40t@127.0.0.1:${receiver.port}/hook?token=abc123`;
    const sink = new AlertmanagerWebhookSink({ url, externalURL: EXTERNAL, ...fast });
    const error = await rejection(sink.send(await firingNotifications()));
    expect(receiver.received[0]!.headers.authorization).toBe(`Basic ${Buffer.from('alert-user:s3cr@t').toString('base64')}`);
    expect(receiver.received[0]!.path).toBe('/hook?token=abc123');
    const visible = [sink.name, sink.safeURL, error.message, JSON.stringify(error.toJSON())].join(' ');
    expect(visible).not.toMatch(/s3cr|abc123|alert-user/);
    expect(sink.safeURL).toBe(`http://127.0.0.1:${receiver.port}/hook?token=***`);
    expect(() => new AlertmanagerWebhookSink({ url: 'not a url s3cret', externalURL: EXTERNAL })).toThrow(/not a valid absolute URL/);
  });

  it('splits messages by group and by maxAlertsPerMessage, truncating nothing', () => {
    const notes = mixedNotifications();
    const bySlice = alertmanagerMessages(notes, { externalURL: EXTERNAL, groupBy: ['slo', 'slice'] });
    expect(bySlice.map((m) => [m.groupKey, m.status, m.alerts.length])).toEqual([
      ['{}:{slice="a", slo="auc_floor"}', 'firing', 2],
      ['{}:{slice="b", slo="auc_floor"}', 'firing', 1],
    ]);
    const small = alertmanagerMessages(notes, { externalURL: EXTERNAL, maxAlertsPerMessage: 2 });
    expect(small.map((m) => [m.alerts.length, m.status, m.truncatedAlerts])).toEqual([
      [2, 'firing', 0],
      [1, 'resolved', 0],
    ]);
    for (const m of [...bySlice, ...small]) checkPayload(`${JSON.stringify(m)}\n`);
  });
});

describe('Kafka and log sinks', () => {
  it('Kafka: one record per notification, keyed by fingerprint, the webhook JSON of that alert', async () => {
    const sent: Parameters<AlertProducer['send']>[0][] = [];
    const producer: AlertProducer = { send: async (record) => void sent.push(record) };
    // A kafkajs producer fits the interface (checked by tsc).
    const fromKafkajs = (p: Producer): AlertProducer => p;
    expect(typeof fromKafkajs).toBe('function');
    const sink = new KafkaAlertSink({ producer, topic: 'tidemark.alerts', externalURL: EXTERNAL });
    expect(sink.name).toBe('kafka:tidemark.alerts');
    const notes = mixedNotifications();
    await sink.send(notes);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.topic).toBe('tidemark.alerts');
    expect(sent[0]!.messages.map((m) => m.key)).toEqual(notes.map((n) => n.fingerprint));
    sent[0]!.messages.forEach((m, i) => {
      const message = checkPayload(`${m.value}\n`);
      expect(message.alerts).toHaveLength(1);
      expect(message.alerts[0]!.status).toBe(notes[i]!.status);
      expect(m.headers).toMatchObject({ 'alert-status': notes[i]!.status, 'alert-fingerprint': notes[i]!.fingerprint, 'notification-id': notes[i]!.id });
    });
    const failing = new KafkaAlertSink({ producer: { send: async () => Promise.reject(new Error('broker down')) }, topic: 't', externalURL: EXTERNAL });
    const error = await rejection(failing.send(notes));
    expect(error.code).toBe('TM_ALERT_DELIVERY_FAILED');
    expect(error.message).toBe('Kafka topic t: broker down');
  });

  it('log: one structured line per notification', async () => {
    const lines: string[] = [];
    await new LogAlertSink({ write: (l) => lines.push(l) }).send(mixedNotifications());
    expect(lines).toHaveLength(3);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.map((p) => [p.level, p.msg, (p.labels as Record<string, string>).slice, p.endsAt])).toEqual([
      ['warn', 'alert firing', 'a', '0001-01-01T00:00:00Z'],
      ['warn', 'alert firing', 'b', '0001-01-01T00:00:00Z'],
      ['info', 'alert resolved', 'a', '2026-04-01T12:10:01.5Z'],
    ]);
    expect(parsed[0]).toMatchObject({ alertname: 'TidemarkSLOBurnRate', severity: 'page', slo: 'auc_floor', summary: 'auc_floor a firing' });
  });
});

describe('delivery', () => {
  /** A store whose next save can be made to fail: a crash after the sink took the batch. */
  class FlakyStore extends MemoryAlertStateStore {
    failSaves = false;
    override async save(changes: AlertStateChanges): Promise<void> {
      if (this.failSaves) throw new Error('disk gone');
      return super.save(changes);
    }
  }

  const slo = { name: 'delay_psi', objective: 0.99 };
  const open = (store: MemoryAlertStateStore) => BurnRateAlerts.open(store, { slos: [slo], externalURL: EXTERNAL });

  it('marks a notification delivered only after every sink took it; a failing sink is retried later', async () => {
    const store = new MemoryAlertStateStore();
    const alerts = await open(store);
    const receiver = await startReceiver([500, 500, 200]);
    const webhook = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, maxAttempts: 2, ...fast });
    const lines: string[] = [];
    const delivery = new AlertDelivery(alerts, [webhook, new LogAlertSink({ write: (l) => lines.push(l) })]);
    alerts.observe(slo.name, { slice: 'x' }, { timeMs: T0, good: 0, bad: 1 });

    const first = await delivery.deliver(T0);
    expect(first.failures.map((f) => [f.sink, f.error.code])).toEqual([[webhook.name, 'TM_ALERT_DELIVERY_FAILED']]);
    expect(first.sent).toEqual({ [webhook.name]: 0, log: 2 });
    // Pending for the webhook only; saved as pending in the store.
    expect(alerts.pending(webhook.name)).toHaveLength(2);
    expect(alerts.pending('log')).toHaveLength(0);
    expect((await store.load()).notifications.map((n) => n.deliveredTo)).toEqual([['log'], ['log']]);

    const second = await delivery.deliver(T0 + STEP);
    expect(second).toEqual({ sent: { [webhook.name]: 2, log: 0 }, failures: [] });
    expect(alerts.pending()).toEqual([]);
    expect((await store.load()).notifications).toEqual([]);
    expect(store.allNotifications().map((n) => [n.deliveredTo, n.deliveredAtMs])).toEqual([
      [['log', webhook.name], T0 + STEP],
      [['log', webhook.name], T0 + STEP],
    ]);
    expect(lines).toHaveLength(2);
    // Default group_by splits page and ticket into two messages: the first failed twice, then
    // both went through.
    expect(receiver.received.map((r) => [r.answer, (JSON.parse(r.body) as AlertmanagerWebhookMessage).groupLabels.severity])).toEqual([
      [500, 'page'],
      [500, 'page'],
      [200, 'page'],
      [200, 'ticket'],
    ]);
    expect(() => new AlertDelivery(alerts, [new LogAlertSink(), new LogAlertSink()])).toThrow(/two alert sinks are named log/);
  });

  it('a crash after the sink took a batch but before it was marked sends it again after the restart', async () => {
    const store = new FlakyStore();
    const receiver = await startReceiver([200]);
    const sink: AlertSink = new AlertmanagerWebhookSink({ url: receiver.url, externalURL: EXTERNAL, ...fast });
    {
      const alerts = await open(store);
      alerts.observe(slo.name, { slice: 'x' }, { timeMs: T0, good: 0, bad: 1 });
      await alerts.save();
      store.failSaves = true;
      await expect(new AlertDelivery(alerts, [sink]).deliver(T0)).rejects.toThrow('disk gone');
      // Page and ticket, one message each (default group_by has severity).
      expect(receiver.received).toHaveLength(2);
    }
    store.failSaves = false;
    const alerts = await open(store);
    expect(alerts.pending()).toHaveLength(2);
    await new AlertDelivery(alerts, [sink]).deliver(T0 + STEP);
    // At-least-once: the receiver saw the batch twice, identical, so it deduplicates by
    // (fingerprint, status, startsAt).
    expect(receiver.received).toHaveLength(4);
    expect(receiver.received.slice(2).map((r) => r.body)).toEqual(receiver.received.slice(0, 2).map((r) => r.body));
    expect(alerts.pending()).toEqual([]);
    expect((await store.load()).notifications).toEqual([]);
  });
});
