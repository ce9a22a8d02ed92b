// Where alert notifications go: an Alertmanager-compatible webhook (the payload Alertmanager's
// own webhook notifier posts, version 4), a Kafka topic (the same JSON, keyed by fingerprint),
// or a structured log line. Delivery is at-least-once: a notification is marked delivered in
// the state store only after its sink took it, so a crash in between sends it again. Receivers
// deduplicate by (fingerprint, status, startsAt), which a re-send repeats exactly.
import { TidemarkError } from '../definitions/index.js';
import { formatAlertTime, type AlertLabels, type AlertNotification, type AlertStatus } from './alerts.js';

export interface AlertSink {
  /** Unique among the sinks of one delivery, recorded with each notification it took; never holds credentials. */
  readonly name: string;
  /** Deliver every notification or throw (TM_ALERT_DELIVERY_FAILED); a throw means the whole batch is sent again later. */
  send(notifications: readonly AlertNotification[]): Promise<void>;
}

// ---- the Alertmanager webhook payload --------------------------------------------------------

/** One alert as Alertmanager's template.Alert marshals it. */
export interface WebhookAlert {
  status: AlertStatus;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** RFC 3339. */
  startsAt: string;
  /** RFC 3339; `0001-01-01T00:00:00Z` while the alert has not resolved. */
  endsAt: string;
  generatorURL: string;
  /** 16 hex digits. */
  fingerprint: string;
}

/** Alertmanager's webhook.Message: template.Data plus version, groupKey and truncatedAlerts, in Go's field order. */
export interface AlertmanagerWebhookMessage {
  receiver: string;
  /** firing when any alert of the message fires. */
  status: AlertStatus;
  alerts: WebhookAlert[];
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  version: '4';
  groupKey: string;
  truncatedAlerts: number;
}

export interface WebhookMessageOptions {
  /** The receiver name receivers see; default `tidemark`. */
  receiver?: string;
  /** Base URL of tidemark's API. */
  externalURL: string;
  /** Labels that group alerts into one message (Alertmanager's group_by); default DEFAULT_GROUP_BY. */
  groupBy?: readonly string[];
  /** At most this many alerts per message (more make more messages, so truncatedAlerts stays 0); 0 for no limit. */
  maxAlertsPerMessage?: number;
}

export const DEFAULT_GROUP_BY: readonly string[] = ['alertname', 'slo', 'severity'];
export const DEFAULT_RECEIVER = 'tidemark';

function sortedRecord(record: Readonly<Record<string, string>>): Record<string, string> {
  // Go marshals maps with sorted keys; the same order keeps payloads byte-comparable.
  const out: Record<string, string> = {};
  for (const k of Object.keys(record).sort()) out[k] = record[k]!;
  return out;
}

/** Key-value pairs every record has with equal values (Alertmanager's commonLabels/commonAnnotations). */
function common(records: readonly Readonly<Record<string, string>>[]): Record<string, string> {
  if (records.length === 0) return {};
  const out: Record<string, string> = { ...records[0] };
  for (const r of records.slice(1)) for (const k of Object.keys(out)) if (r[k] !== out[k]) delete out[k];
  return sortedRecord(out);
}

/** `{}:{alertname="...", severity="..."}`: Alertmanager's group key for its root route. */
function groupKeyOf(groupLabels: Readonly<Record<string, string>>): string {
  const pairs = Object.keys(groupLabels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(groupLabels[k])}`);
  return `{}:{${pairs.join(', ')}}`;
}

export function webhookAlert(n: AlertNotification): WebhookAlert {
  return {
    status: n.status,
    labels: sortedRecord(n.labels),
    annotations: sortedRecord(n.annotations),
    startsAt: formatAlertTime(n.startsAtMs),
    endsAt: formatAlertTime(n.status === 'resolved' ? n.endsAtMs : null),
    generatorURL: n.generatorURL,
    fingerprint: n.fingerprint,
  };
}

/** The webhook messages for a batch: one per group_by group (and per maxAlertsPerMessage alerts), in first-seen order. */
export function alertmanagerMessages(notifications: readonly AlertNotification[], options: WebhookMessageOptions): AlertmanagerWebhookMessage[] {
  const groupBy = options.groupBy ?? DEFAULT_GROUP_BY;
  const max = options.maxAlertsPerMessage ?? 0;
  const groups = new Map<string, { labels: Record<string, string>; alerts: AlertNotification[] }>();
  for (const n of notifications) {
    const labels: Record<string, string> = {};
    for (const name of groupBy) if (n.labels[name] !== undefined) labels[name] = n.labels[name]!;
    const key = groupKeyOf(labels);
    const group = groups.get(key) ?? { labels, alerts: [] };
    group.alerts.push(n);
    groups.set(key, group);
  }
  const messages: AlertmanagerWebhookMessage[] = [];
  for (const [groupKey, group] of groups) {
    const chunkSize = max > 0 ? max : group.alerts.length;
    for (let i = 0; i < group.alerts.length; i += chunkSize) {
      const chunk = group.alerts.slice(i, i + chunkSize);
      messages.push({
        receiver: options.receiver ?? DEFAULT_RECEIVER,
        status: chunk.some((n) => n.status === 'firing') ? 'firing' : 'resolved',
        alerts: chunk.map(webhookAlert),
        groupLabels: sortedRecord(group.labels),
        commonLabels: common(chunk.map((n) => n.labels as Record<string, string>)),
        commonAnnotations: common(chunk.map((n) => n.annotations as Record<string, string>)),
        externalURL: options.externalURL,
        version: '4',
        groupKey,
        truncatedAlerts: 0,
      });
    }
  }
  return messages;
}

// ---- Alertmanager webhook over HTTP ----------------------------------------------------------

export interface AlertmanagerWebhookSinkOptions extends WebhookMessageOptions {
  /** Where to POST. Credentials in it (user:password@) go in an Authorization header and never into messages. */
  url: string;
  /** Default `alertmanager:<host><path>`. */
  name?: string;
  /** Per request, default 10 s. */
  timeoutMs?: number;
  /** Attempts per message, default 5. */
  maxAttempts?: number;
  /** No retry starts after this long since the first attempt, default 60 s. */
  maxElapsedMs?: number;
  /** First backoff, doubled per retry, default 500 ms, capped at maxBackoffMs (default 30 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Extra request headers (e.g. Authorization); their values are never logged. */
  headers?: Record<string, string>;
  /** Jitter source in [0, 1), default Math.random. */
  random?: () => number;
  /** Told about every retry, with the URL stripped of credentials. */
  onRetry?: (info: { url: string; attempt: number; delayMs: number; reason: string }) => void;
}

type AttemptOutcome = { ok: true } | { ok: false; retryable: boolean; reason: string; status?: number; retryAfterMs?: number };

/** A URL for messages: no user info, query values masked (tokens often travel there). */
export function redactURL(url: URL): string {
  const safe = new URL(url.toString());
  safe.username = '';
  safe.password = '';
  const keys = [...new Set(safe.searchParams.keys())];
  safe.search = keys.map((k) => `${encodeURIComponent(k)}=***`).join('&');
  return safe.toString();
}

/**
 * POSTs Alertmanager's webhook payload. Retries, with exponential backoff and jitter, on 5xx,
 * 429 and 408 answers, timeouts and connection errors, honouring Retry-After; other 4xx answers
 * mean the request itself is wrong and fail at once, naming the URL and the status.
 */
export class AlertmanagerWebhookSink implements AlertSink {
  readonly name: string;
  /** The URL without credentials or query values, for messages. */
  readonly safeURL: string;
  private readonly target: string;
  private readonly headers: Record<string, string>;
  private readonly options: AlertmanagerWebhookSinkOptions;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly maxElapsedMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly random: () => number;

  constructor(options: AlertmanagerWebhookSinkOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      // The text may hold credentials: not repeated in the message.
      throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', 'the Alertmanager webhook URL is not a valid absolute URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', `the Alertmanager webhook URL must be http or https, not ${url.protocol}`);
    }
    this.options = options;
    this.safeURL = redactURL(url);
    this.headers = { 'content-type': 'application/json', 'user-agent': 'tidemark-monitor', ...options.headers };
    if (url.username || url.password) {
      // fetch refuses URLs with credentials; Alertmanager's Go client sends them as basic auth.
      const user = decodeURIComponent(url.username);
      const password = decodeURIComponent(url.password);
      this.headers.authorization ??= `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      url.username = '';
      url.password = '';
    }
    this.target = url.toString();
    this.name = options.name ?? `alertmanager:${url.host}${url.pathname}`;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 5);
    this.maxElapsedMs = options.maxElapsedMs ?? 60_000;
    this.initialBackoffMs = options.initialBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.random = options.random ?? Math.random;
  }

  async send(notifications: readonly AlertNotification[]): Promise<void> {
    for (const message of alertmanagerMessages(notifications, this.options)) await this.post(message);
  }

  /** POST one message, retrying as documented; throws TM_ALERT_DELIVERY_FAILED when it gives up. */
  async post(message: AlertmanagerWebhookMessage): Promise<void> {
    // Go's json.Encoder ends the document with a newline; so does this.
    const body = `${JSON.stringify(message)}\n`;
    const startedMs = Date.now();
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(body);
      if (outcome.ok) return;
      const details = { url: this.safeURL, status: outcome.status ?? null, attempts: attempt, retryable: outcome.retryable, groupKey: message.groupKey };
      if (!outcome.retryable) {
        throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', `Alertmanager webhook ${this.safeURL} ${outcome.reason}; not retried: a 4xx answer means the request itself is refused`, details);
      }
      const backoffMs = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** (attempt - 1));
      // "Equal jitter": half fixed, half random, so retries of many monitors spread out.
      let delayMs = Math.round(backoffMs / 2 + (this.random() * backoffMs) / 2);
      if (outcome.retryAfterMs !== undefined) delayMs = Math.max(delayMs, Math.min(outcome.retryAfterMs, this.maxBackoffMs));
      if (attempt >= this.maxAttempts || Date.now() - startedMs + delayMs > this.maxElapsedMs) {
        throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', `Alertmanager webhook ${this.safeURL}: gave up after ${attempt} attempt(s), last: ${outcome.reason}`, details);
      }
      this.options.onRetry?.({ url: this.safeURL, attempt, delayMs, reason: outcome.reason });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }

  private async attempt(body: string): Promise<AttemptOutcome> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      const response = await fetch(this.target, { method: 'POST', headers: this.headers, body, signal: controller.signal });
      // Read the answer under the same timeout, so the connection can be reused.
      const text = await response.text();
      if (response.status >= 200 && response.status < 300) return { ok: true };
      const status = response.status;
      const snippet = text.trim().slice(0, 200);
      const reason = `answered ${status} ${response.statusText}${snippet ? `: ${snippet}` : ''}`;
      const retryable = status >= 500 || status === 429 || status === 408;
      return { ok: false, retryable, reason, status, retryAfterMs: retryAfterMs(response.headers.get('retry-after')) };
    } catch (e) {
      if (controller.signal.aborted) return { ok: false, retryable: true, reason: `no answer within ${this.timeoutMs} ms` };
      const cause = e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e);
      return { ok: false, retryable: true, reason: `request failed: ${cause.replaceAll(this.target, this.safeURL)}` };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

// ---- Kafka -----------------------------------------------------------------------------------

/** The part of a producer the sink uses; a kafkajs Producer satisfies it. */
export interface AlertProducer {
  send(record: { topic: string; messages: { key?: string | null; value: string | null; headers?: Record<string, string> }[] }): Promise<unknown>;
}

export interface KafkaAlertSinkOptions extends Omit<WebhookMessageOptions, 'groupBy' | 'maxAlertsPerMessage'> {
  producer: AlertProducer;
  topic: string;
  /** Default `kafka:<topic>`. */
  name?: string;
}

/**
 * Produces one record per notification: the webhook message of that one alert as JSON, keyed by
 * fingerprint, so every update of an alert lands in one partition, in order.
 */
export class KafkaAlertSink implements AlertSink {
  readonly name: string;

  constructor(private readonly options: KafkaAlertSinkOptions) {
    this.name = options.name ?? `kafka:${options.topic}`;
  }

  async send(notifications: readonly AlertNotification[]): Promise<void> {
    if (notifications.length === 0) return;
    const messages = notifications.map((n) => {
      const [message] = alertmanagerMessages([n], { receiver: this.options.receiver, externalURL: this.options.externalURL });
      return {
        key: n.fingerprint,
        value: JSON.stringify(message),
        headers: { 'content-type': 'application/json', 'alert-status': n.status, 'alert-fingerprint': n.fingerprint, 'notification-id': n.id },
      };
    });
    try {
      await this.options.producer.send({ topic: this.options.topic, messages });
    } catch (e) {
      throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', `Kafka topic ${this.options.topic}: ${e instanceof Error ? e.message : String(e)}`, {
        topic: this.options.topic,
        notifications: notifications.length,
      });
    }
  }
}

// ---- log -------------------------------------------------------------------------------------

export interface LogAlertSinkOptions {
  /** Where a line goes; default stdout. */
  write?: (line: string) => void;
  name?: string;
}

/** One JSON line per notification, for embedded runs and as a trail next to the other sinks. */
export class LogAlertSink implements AlertSink {
  readonly name: string;
  private readonly write: (line: string) => void;

  constructor(options: LogAlertSinkOptions = {}) {
    this.name = options.name ?? 'log';
    this.write = options.write ?? ((line) => void process.stdout.write(`${line}\n`));
  }

  async send(notifications: readonly AlertNotification[]): Promise<void> {
    for (const n of notifications) {
      const labels: AlertLabels = n.labels;
      this.write(
        JSON.stringify({
          level: n.status === 'firing' ? 'warn' : 'info',
          msg: `alert ${n.kind === 'repeat' ? 'still firing' : n.status}`,
          alertname: labels.alertname,
          severity: labels.severity,
          slo: labels.slo,
          fingerprint: n.fingerprint,
          status: n.status,
          startsAt: formatAlertTime(n.startsAtMs),
          endsAt: formatAlertTime(n.status === 'resolved' ? n.endsAtMs : null),
          labels: sortedRecord(labels),
          summary: n.annotations.summary,
          dashboard: n.annotations.dashboard ?? n.generatorURL,
        }),
      );
    }
  }
}

// ---- delivery --------------------------------------------------------------------------------

/** What delivery needs of the alerts (BurnRateAlerts fits). */
export interface DeliverySource {
  pending(forSink?: string): AlertNotification[];
  markDelivered(ids: readonly string[], sink: string, atMs: number, requiredSinks?: readonly string[]): void;
  save(): Promise<void>;
}

export interface DeliveryReport {
  /** Per sink, how many notifications it took in this round. */
  sent: Record<string, number>;
  /** Sinks that failed; their notifications stay pending and go again next round. */
  failures: { sink: string; error: TidemarkError }[];
}

/**
 * Sends pending notifications to every sink and marks each one delivered once all sinks took
 * it. Order per round: save (the transitions are durable before anyone hears of them), send,
 * mark, save. A crash after a send and before the last save sends again on restart: at-least-
 * once per sink; receivers deduplicate by (fingerprint, status, startsAt). A failing sink does
 * not hold back the others; its error is returned, never swallowed.
 */
export class AlertDelivery {
  private readonly names: string[];

  constructor(
    private readonly source: DeliverySource,
    private readonly sinks: readonly AlertSink[],
  ) {
    this.names = sinks.map((s) => s.name);
    const duplicate = this.names.find((n, i) => this.names.indexOf(n) !== i);
    if (duplicate !== undefined) throw new TidemarkError('TM_ALERT_DELIVERY_FAILED', `two alert sinks are named ${duplicate}; give one a name`, { sink: duplicate });
  }

  async deliver(nowMs: number): Promise<DeliveryReport> {
    await this.source.save();
    const report: DeliveryReport = { sent: {}, failures: [] };
    for (const sink of this.sinks) {
      const batch = this.source.pending(sink.name);
      report.sent[sink.name] = 0;
      if (batch.length === 0) continue;
      try {
        await sink.send(batch);
      } catch (e) {
        const error = e instanceof TidemarkError ? e : new TidemarkError('TM_ALERT_DELIVERY_FAILED', `sink ${sink.name}: ${e instanceof Error ? e.message : String(e)}`, { sink: sink.name });
        report.failures.push({ sink: sink.name, error });
        continue;
      }
      this.source.markDelivered(
        batch.map((n) => n.id),
        sink.name,
        nowMs,
        this.names,
      );
      report.sent[sink.name] = batch.length;
      await this.source.save();
    }
    return report;
  }
}
