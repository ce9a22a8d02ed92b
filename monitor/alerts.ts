// Alert state for burn-rate alerts: one alert per (SLO series, severity), identified like
// Prometheus identifies it (the label set's FNV-1a fingerprint), moving inactive -> firing ->
// resolved (firing again later is a new episode with a new startsAt). Every transition yields a
// notification to deliver; a still-firing alert is not re-notified on every evaluation. Time is
// always passed in: the monitor's replay drives it by event time, tests by a fake clock.
import { formatDurationMs, TidemarkError } from '../definitions/index.js';
import type { AlertStateStore } from './alert-store.js';
import {
  BurnRateEvaluator,
  errorBudget,
  exceedsBurnRate,
  type AlertSeverity,
  type BurnRatePolicy,
  type RuleEvaluation,
  type SeriesEvaluation,
  type SloObservation,
} from './burn-rate.js';

export type AlertStatus = 'firing' | 'resolved';
export type AlertLabels = Readonly<Record<string, string>>;

export const DEFAULT_ALERT_NAME = 'TidemarkSLOBurnRate';
/** Alertmanager's default repeat_interval: a firing alert is sent again after this much (event) time. */
export const DEFAULT_REPEAT_INTERVAL_MS = 4 * 3_600_000;
/** How Alertmanager writes the endsAt of an alert that has not resolved (Go's zero time). */
export const UNRESOLVED_ENDS_AT = '0001-01-01T00:00:00Z';

// ---- fingerprints ----------------------------------------------------------------------------

const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const utf8 = new TextEncoder();

/** Throws TM_ALERT_BAD_LABEL unless every name is a Prometheus label name. */
export function validateAlertLabels(labels: AlertLabels): void {
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME_RE.test(name)) {
      throw new TidemarkError('TM_ALERT_BAD_LABEL', `alert label name ${JSON.stringify(name)} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)`, { name });
    }
    if (typeof value !== 'string') throw new TidemarkError('TM_ALERT_BAD_LABEL', `alert label ${name} has a value that is not text`, { name, value });
  }
}

/**
 * The label set's fingerprint as Alertmanager prints it (prometheus/common model
 * labelSetToFingerprint, `%016x`): FNV-1a 64 over the UTF-8 bytes of each name and value, names
 * sorted, each followed by a 0xff byte. 64-bit arithmetic in four 16-bit limbs, exact in doubles.
 */
export function alertFingerprint(labels: AlertLabels): string {
  // FNV-1a 64: offset basis 0xcbf29ce484222325, prime 2^40 + 0x1b3.
  let h0 = 0x2325;
  let h1 = 0x8422;
  let h2 = 0x9ce4;
  let h3 = 0xcbf2;
  const addByte = (byte: number): void => {
    h0 ^= byte;
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + (h0 << 8) + (t1 >>> 16);
    const t3 = h3 * 0x1b3 + (h1 << 8) + (t2 >>> 16);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  };
  for (const name of Object.keys(labels).sort(compareBytes)) {
    for (const byte of utf8.encode(name)) addByte(byte);
    addByte(0xff);
    for (const byte of utf8.encode(labels[name]!)) addByte(byte);
    addByte(0xff);
  }
  return [h3, h2, h1, h0].map((limb) => limb.toString(16).padStart(4, '0')).join('');
}

/** Go's sort.Strings order (bytes of UTF-8), which differs from JS's UTF-16 order outside the BMP. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A time as Go marshals a UTC time.Time (RFC 3339, fraction without trailing zeros); null as Go's zero time. */
export function formatAlertTime(ms: number | null): string {
  if (ms === null) return UNRESOLVED_ENDS_AT;
  const iso = new Date(ms).toISOString();
  return iso.replace(/\.(\d{3})Z$/, (_, fraction: string) => {
    const trimmed = fraction.replace(/0+$/, '');
    return trimmed === '' ? 'Z' : `.${trimmed}Z`;
  });
}

// ---- state and notifications -----------------------------------------------------------------

/** One alert's state: the latest episode of one (SLO series, severity). */
export interface AlertState {
  fingerprint: string;
  labels: AlertLabels;
  annotations: Readonly<Record<string, string>>;
  generatorURL: string;
  status: AlertStatus;
  startsAtMs: number;
  /** null while firing. */
  endsAtMs: number | null;
  /** Ids of the burn-rate rules firing at the last transition (restores their hysteresis after a restart). */
  firingRules: string[];
  /** When the last notification for it was created (event time): the repeat interval counts from it. */
  lastNotifiedMs: number;
}

export type NotificationKind = 'firing' | 'resolved' | 'repeat';

/** One message to deliver: the alert as it was at a transition. */
export interface AlertNotification {
  /** `<fingerprint>:<status>:<startsAtMs>`, plus `:<createdAtMs>` for a repeat: the same transition always gets the same id. */
  id: string;
  kind: NotificationKind;
  fingerprint: string;
  status: AlertStatus;
  labels: AlertLabels;
  annotations: Readonly<Record<string, string>>;
  generatorURL: string;
  startsAtMs: number;
  endsAtMs: number | null;
  createdAtMs: number;
  /** Sinks that took it. */
  deliveredTo: string[];
  /** When every sink of the delivery took it; null while pending. */
  deliveredAtMs: number | null;
  /**
   * A later notification for the same alert, created before this one was delivered: this one is
   * then not sent (the later one carries the alert's current state, startsAt included).
   */
  supersededBy: string | null;
}

export function isPending(n: AlertNotification): boolean {
  return n.deliveredAtMs === null && n.supersededBy === null;
}

/** What a store holds: every alert's latest state, the notifications not yet delivered, and how far each SLO was evaluated. */
export interface AlertStoreSnapshot {
  alerts: AlertState[];
  notifications: AlertNotification[];
  /** SLO name -> greatest observation time evaluated. */
  watermarks: Record<string, number>;
}

/** What changed since the last save (alerts and notifications replace earlier versions by key). */
export type AlertStateChanges = AlertStoreSnapshot;

/** A decision about one alert at one time. */
export interface AlertUpdate {
  labels: AlertLabels;
  /** Precomputed alertFingerprint(labels), when the caller caches it. */
  fingerprint?: string;
  firing: boolean;
  timeMs: number;
  firingRules: string[];
  /** Annotations and generator URL, built only when a transition needs them. */
  describe: (status: AlertStatus) => { annotations: Record<string, string>; generatorURL: string };
}

export interface AlertStateMachineOptions {
  /** Re-notify a still-firing alert after this much time; 0 never. Default DEFAULT_REPEAT_INTERVAL_MS (4h). */
  repeatIntervalMs?: number;
  /** State loaded from a store. */
  initial?: AlertStoreSnapshot;
}

/**
 * Alert states keyed by fingerprint, the notifications their transitions created, and what
 * changed since the last `takeChanges` (what a store must save).
 */
export class AlertStateMachine {
  readonly repeatIntervalMs: number;
  private readonly states = new Map<string, AlertState>();
  private readonly notifications = new Map<string, AlertNotification>();
  /** Pending notification id per fingerprint (at most one: later ones supersede it). */
  private readonly pendingByAlert = new Map<string, string>();
  private readonly watermarks = new Map<string, number>();
  private readonly dirtyAlerts = new Set<string>();
  private readonly dirtyNotifications = new Set<string>();
  private readonly dirtyWatermarks = new Set<string>();
  /** Notifications that left the pending set (delivered or superseded) and are not saved yet. */
  private readonly settledUnsaved = new Map<string, AlertNotification>();

  constructor(options: AlertStateMachineOptions = {}) {
    this.repeatIntervalMs = options.repeatIntervalMs ?? DEFAULT_REPEAT_INTERVAL_MS;
    if (!(Number.isFinite(this.repeatIntervalMs) && this.repeatIntervalMs >= 0)) {
      throw new TidemarkError('TM_SLO_BAD_POLICY', `repeatIntervalMs ${this.repeatIntervalMs} must be 0 (never repeat) or a positive number of milliseconds`);
    }
    const initial = options.initial;
    if (initial) {
      for (const a of initial.alerts) this.states.set(a.fingerprint, structuredClone(a));
      for (const n of [...initial.notifications].sort((x, y) => x.createdAtMs - y.createdAtMs)) {
        if (!isPending(n)) continue;
        this.notifications.set(n.id, structuredClone(n));
        this.supersedePending(n.fingerprint, n.id);
      }
      for (const [slo, ms] of Object.entries(initial.watermarks)) this.watermarks.set(slo, ms);
    }
  }

  /** Apply one decision; returns the notification it created, if any. */
  update(u: AlertUpdate): AlertNotification | null {
    const fingerprint = u.fingerprint ?? alertFingerprint(u.labels);
    const state = this.states.get(fingerprint);
    if (u.firing) {
      if (!state || state.status === 'resolved') {
        const { annotations, generatorURL } = u.describe('firing');
        const next: AlertState = {
          fingerprint,
          labels: { ...u.labels },
          annotations,
          generatorURL,
          status: 'firing',
          startsAtMs: u.timeMs,
          endsAtMs: null,
          firingRules: [...u.firingRules],
          lastNotifiedMs: u.timeMs,
        };
        return this.transition(next, 'firing', u.timeMs);
      }
      // Still firing: keep the episode; remember which rules fire (for a restart's hysteresis).
      if (!sameStrings(state.firingRules, u.firingRules)) {
        state.firingRules = [...u.firingRules];
        this.dirtyAlerts.add(fingerprint);
      }
      if (this.repeatIntervalMs > 0 && u.timeMs - state.lastNotifiedMs >= this.repeatIntervalMs) {
        const { annotations, generatorURL } = u.describe('firing');
        return this.transition({ ...state, annotations, generatorURL, lastNotifiedMs: u.timeMs }, 'repeat', u.timeMs);
      }
      return null;
    }
    if (state?.status === 'firing') {
      const { annotations, generatorURL } = u.describe('resolved');
      return this.transition({ ...state, annotations, generatorURL, status: 'resolved', endsAtMs: u.timeMs, firingRules: [], lastNotifiedMs: u.timeMs }, 'resolved', u.timeMs);
    }
    return null;
  }

  private transition(next: AlertState, kind: NotificationKind, timeMs: number): AlertNotification {
    this.states.set(next.fingerprint, next);
    this.dirtyAlerts.add(next.fingerprint);
    const base = `${next.fingerprint}:${next.status}:${next.startsAtMs}`;
    const notification: AlertNotification = {
      id: kind === 'repeat' ? `${base}:${timeMs}` : base,
      kind,
      fingerprint: next.fingerprint,
      status: next.status,
      labels: next.labels,
      annotations: next.annotations,
      generatorURL: next.generatorURL,
      startsAtMs: next.startsAtMs,
      endsAtMs: next.endsAtMs,
      createdAtMs: timeMs,
      deliveredTo: [],
      deliveredAtMs: null,
      supersededBy: null,
    };
    this.notifications.set(notification.id, notification);
    this.dirtyNotifications.add(notification.id);
    this.supersedePending(next.fingerprint, notification.id);
    return notification;
  }

  private supersedePending(fingerprint: string, id: string): void {
    const previous = this.pendingByAlert.get(fingerprint);
    if (previous !== undefined && previous !== id) {
      const old = this.notifications.get(previous);
      if (old) {
        old.supersededBy = id;
        this.notifications.delete(previous);
        this.dirtyNotifications.add(previous);
        this.settledUnsaved.set(previous, old);
      }
    }
    this.pendingByAlert.set(fingerprint, id);
  }

  /** Notifications still to deliver, oldest first; `forSink`: those that sink has not taken yet. */
  pending(forSink?: string): AlertNotification[] {
    const out: AlertNotification[] = [];
    for (const n of this.notifications.values()) {
      if (isPending(n) && (forSink === undefined || !n.deliveredTo.includes(forSink))) out.push(n);
    }
    return out.sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : 1));
  }

  /**
   * Record that `sink` took these notifications; one is delivered (and leaves the pending set)
   * once every sink in `requiredSinks` took it.
   */
  markDelivered(ids: readonly string[], sink: string, atMs: number, requiredSinks: readonly string[] = [sink]): void {
    for (const id of ids) {
      const n = this.notifications.get(id);
      if (!n || !isPending(n)) continue;
      if (!n.deliveredTo.includes(sink)) n.deliveredTo.push(sink);
      if (requiredSinks.every((s) => n.deliveredTo.includes(s))) {
        n.deliveredAtMs = atMs;
        this.notifications.delete(id);
        this.settledUnsaved.set(id, n);
        if (this.pendingByAlert.get(n.fingerprint) === id) this.pendingByAlert.delete(n.fingerprint);
      }
      this.dirtyNotifications.add(id);
    }
  }

  get(fingerprint: string): AlertState | undefined {
    return this.states.get(fingerprint);
  }

  alerts(): AlertState[] {
    return [...this.states.values()];
  }

  firing(): AlertState[] {
    return this.alerts().filter((a) => a.status === 'firing');
  }

  watermark(key: string): number | null {
    return this.watermarks.get(key) ?? null;
  }

  /** Record that observations of `key` (an SLO) up to `timeMs` were evaluated. */
  advanceWatermark(key: string, timeMs: number): void {
    const current = this.watermarks.get(key);
    if (current === undefined || timeMs > current) {
      this.watermarks.set(key, timeMs);
      this.dirtyWatermarks.add(key);
    }
  }

  /** Everything changed since the last call (null when nothing did); clears the change set. */
  takeChanges(): AlertStateChanges | null {
    if (this.dirtyAlerts.size === 0 && this.dirtyNotifications.size === 0 && this.dirtyWatermarks.size === 0) return null;
    const changes: AlertStateChanges = {
      alerts: [...this.dirtyAlerts].map((fp) => structuredClone(this.states.get(fp)!)),
      notifications: [...this.dirtyNotifications].map((id) => structuredClone((this.notifications.get(id) ?? this.settledUnsaved.get(id))!)),
      watermarks: Object.fromEntries([...this.dirtyWatermarks].map((k) => [k, this.watermarks.get(k)!])),
    };
    this.dirtyAlerts.clear();
    this.dirtyNotifications.clear();
    this.dirtyWatermarks.clear();
    this.settledUnsaved.clear();
    return changes;
  }

  /** Put back changes a failed save did not write, so the next save writes them again. */
  restoreChanges(changes: AlertStateChanges): void {
    for (const a of changes.alerts) this.dirtyAlerts.add(a.fingerprint);
    for (const n of changes.notifications) {
      this.dirtyNotifications.add(n.id);
      if (!this.notifications.has(n.id)) this.settledUnsaved.set(n.id, n);
    }
    for (const k of Object.keys(changes.watermarks)) this.dirtyWatermarks.add(k);
  }
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---- SLO burn-rate alerts --------------------------------------------------------------------

/** What the alerts need of an SLO (the monitor's compiled SloPlan fits). */
export interface SloAlertSpec {
  name: string;
  /** e.g. 0.99 */
  objective: number;
  /** What is judged (`psi`, `auc`...), for annotations. */
  indicator?: string;
  /** Bad when the indicator is above max / below min (annotations only). */
  max?: number | null;
  min?: number | null;
  /** Default DEFAULT_BURN_RATE_POLICY. */
  policy?: BurnRatePolicy;
}

/** Labels of an SLO series besides the SLO itself: feature, slice, monitor...; empty ones are left out. */
export type SeriesLabels = Readonly<Record<string, string | null | undefined>>;

export interface BurnRateAlertsOptions {
  slos: readonly SloAlertSpec[];
  /** Base URL of tidemark's API (dashboard links), e.g. http://localhost:8080. */
  externalURL: string;
  /** Value of the `monitor` label when a series does not give one. */
  monitor?: string;
  /** Default DEFAULT_ALERT_NAME. */
  alertname?: string;
  repeatIntervalMs?: number;
}

/** The labels tidemark sets itself; a series may not override them. */
const RESERVED_LABELS = new Set(['alertname', 'slo', 'severity']);

interface SloEntry {
  spec: SloAlertSpec;
  evaluator: BurnRateEvaluator;
}

interface SeriesEntry {
  key: string;
  labels: Record<string, string>;
  /** Per severity: the alert's labels and fingerprint, computed once. */
  alerts: Map<AlertSeverity, { labels: AlertLabels; fingerprint: string }>;
}

/**
 * Burn-rate alerts of a set of SLOs, with their state kept in a store: observe each series'
 * observation, deliver `pending()` (alert-sinks.ts), `save()` between evaluation steps.
 *
 * Restart contract: the burn-rate windows live in memory; the store keeps alert states (with the
 * rules firing), undelivered notifications and, per SLO, the time evaluated so far (its
 * watermark). A restarted monitor replays observations from `warmUpFromMs()`: those at or before
 * the SLO's watermark only refill the windows, later ones are evaluated. So a firing alert is not
 * paged again, and a half-filled window right after a restart does not page either.
 */
export class BurnRateAlerts {
  readonly machine: AlertStateMachine;
  readonly externalURL: string;
  private readonly store: AlertStateStore;
  private readonly slos = new Map<string, SloEntry>();
  private readonly series = new Map<string, SeriesEntry>();
  private readonly seriesByQuickKey = new Map<string, SeriesEntry>();
  private readonly alertname: string;
  private readonly monitor: string | undefined;
  /** Watermarks loaded at open: observations at or before them were evaluated before the restart. */
  private readonly resumeAfterMs = new Map<string, number>();
  private saving: Promise<void> = Promise.resolve();

  private constructor(store: AlertStateStore, options: BurnRateAlertsOptions, initial: AlertStoreSnapshot) {
    this.store = store;
    this.externalURL = options.externalURL.replace(/\/+$/, '');
    this.alertname = options.alertname ?? DEFAULT_ALERT_NAME;
    this.monitor = options.monitor || undefined;
    for (const spec of options.slos) {
      if (this.slos.has(spec.name)) throw new TidemarkError('TM_SLO_BAD_POLICY', `SLO ${spec.name} is listed twice`, { slo: spec.name });
      this.slos.set(spec.name, { spec, evaluator: new BurnRateEvaluator({ objective: spec.objective, policy: spec.policy, name: spec.name }) });
    }
    this.machine = new AlertStateMachine({ repeatIntervalMs: options.repeatIntervalMs, initial });
    // Firing rules of firing alerts: both severities of a series share the evaluator's rule state.
    const firingBySeries = new Map<string, { slo: SloEntry; rules: string[] }>();
    for (const alert of this.machine.firing()) {
      const slo = this.slos.get(alert.labels.slo ?? '');
      if (!slo) continue;
      const { severity: _severity, ...seriesLabels } = alert.labels;
      const key = seriesKey(seriesLabels);
      const entry = firingBySeries.get(key) ?? { slo, rules: [] };
      entry.rules.push(...alert.firingRules);
      firingBySeries.set(key, entry);
    }
    for (const [key, { slo, rules }] of firingBySeries) slo.evaluator.setFiringRules(key, rules);
    for (const slo of this.slos.keys()) {
      // A store written before watermarks were kept per monitor holds them under the SLO's name alone.
      const ms = initial.watermarks[this.watermarkKey(slo)] ?? initial.watermarks[slo];
      if (ms !== undefined) this.resumeAfterMs.set(slo, ms);
    }
  }

  /**
   * The store's watermark key of an SLO: per monitor, since monitors sharing a store may name SLOs
   * alike (one monitor's progress must not mute another's alerts).
   */
  private watermarkKey(slo: string): string {
    return this.monitor === undefined ? slo : `${this.monitor}/${slo}`;
  }

  /** Load the state a store holds (empty on first use) and start from it. */
  static async open(store: AlertStateStore, options: BurnRateAlertsOptions): Promise<BurnRateAlerts> {
    const initial = await store.load();
    return new BurnRateAlerts(store, options, initial);
  }

  private seriesOf(slo: string, labels: SeriesLabels): SeriesEntry {
    // A replay asks for the same series millions of times: look it up by its labels as given
    // (order included) before building and sorting them.
    let quickKey = slo;
    for (const name in labels) quickKey += `\u0000${name}\u0001${labels[name] ?? ''}`;
    const known = this.seriesByQuickKey.get(quickKey);
    if (known) return known;
    const full: Record<string, string> = { alertname: this.alertname, slo };
    if (this.monitor) full.monitor = this.monitor;
    for (const [name, value] of Object.entries(labels)) {
      if (value === null || value === undefined || value === '') continue;
      if (RESERVED_LABELS.has(name)) throw new TidemarkError('TM_ALERT_BAD_LABEL', `series label ${name} is set by tidemark itself`, { slo, name });
      full[name] = value;
    }
    const key = seriesKey(full);
    let entry = this.series.get(key);
    if (!entry) {
      validateAlertLabels(full);
      entry = { key, labels: full, alerts: new Map() };
      this.series.set(key, entry);
    }
    this.seriesByQuickKey.set(quickKey, entry);
    return entry;
  }

  /**
   * One evaluation of one series: returns the notifications it created (also kept as pending
   * until delivered). Observations at or before the SLO's watermark only fill the windows.
   */
  observe(slo: string, labels: SeriesLabels, observation: SloObservation): AlertNotification[] {
    const entry = this.slos.get(slo);
    if (!entry) throw new TidemarkError('TM_SLO_BAD_OBSERVATION', `no SLO named ${slo} was given to the alerts`, { slo, known: [...this.slos.keys()] });
    const series = this.seriesOf(slo, labels);
    entry.evaluator.add(series.key, observation);
    const resumeAfter = this.resumeAfterMs.get(slo);
    if (resumeAfter !== undefined && observation.timeMs <= resumeAfter) return [];
    const evaluation = entry.evaluator.evaluate(series.key, observation.timeMs);
    this.machine.advanceWatermark(this.watermarkKey(slo), observation.timeMs);
    const out: AlertNotification[] = [];
    for (const sev of evaluation.severities) {
      let alert = series.alerts.get(sev.severity);
      if (!alert) {
        const alertLabels = { ...series.labels, severity: sev.severity };
        alert = { labels: alertLabels, fingerprint: alertFingerprint(alertLabels) };
        series.alerts.set(sev.severity, alert);
      }
      const { fingerprint } = alert;
      const firingRules = sev.firing ? sev.rules.filter((r) => r.firing).map((r) => r.id) : [];
      const n = this.machine.update({
        labels: alert.labels,
        fingerprint,
        firing: sev.firing,
        timeMs: observation.timeMs,
        firingRules,
        describe: (status) => this.describe(entry.spec, series.labels, sev.severity, status, evaluation, observation, fingerprint),
      });
      if (n) out.push(n);
    }
    return out;
  }

  /** Where a restarted monitor should start replaying observations: the earliest watermark minus the longest window. */
  warmUpFromMs(): number | null {
    let from: number | null = null;
    for (const [name, { evaluator }] of this.slos) {
      const w = this.machine.watermark(this.watermarkKey(name)) ?? this.resumeAfterMs.get(name) ?? null;
      if (w === null) continue;
      const start = w - evaluator.maxWindowMs;
      if (from === null || start < from) from = start;
    }
    return from;
  }

  watermarkMs(slo: string): number | null {
    return this.machine.watermark(this.watermarkKey(slo)) ?? this.resumeAfterMs.get(slo) ?? null;
  }

  pending(forSink?: string): AlertNotification[] {
    return this.machine.pending(forSink);
  }

  markDelivered(ids: readonly string[], sink: string, atMs: number, requiredSinks?: readonly string[]): void {
    this.machine.markDelivered(ids, sink, atMs, requiredSinks);
  }

  alerts(): AlertState[] {
    return this.machine.alerts();
  }

  /** Write what changed to the store (saves run one at a time; a failed save is retried by the next). */
  save(): Promise<void> {
    const run = this.saving.then(async () => {
      const changes = this.machine.takeChanges();
      if (!changes) return;
      try {
        await this.store.save(changes);
      } catch (e) {
        this.machine.restoreChanges(changes);
        throw e;
      }
    });
    this.saving = run.catch(() => undefined);
    return run;
  }

  private describe(
    spec: SloAlertSpec,
    labels: Readonly<Record<string, string>>,
    severity: AlertSeverity,
    status: AlertStatus,
    evaluation: SeriesEvaluation,
    observation: SloObservation,
    fingerprint: string,
  ): { annotations: Record<string, string>; generatorURL: string } {
    const sev = evaluation.severities.find((s) => s.severity === severity)!;
    // Firing: the rules that fire. Resolved: the rules that were firing, now back under.
    const previous = new Set(this.machine.get(fingerprint)?.firingRules ?? []);
    let rules: RuleEvaluation[] = status === 'firing' ? sev.rules.filter((r) => r.firing) : sev.rules.filter((r) => previous.has(r.id));
    if (rules.length === 0) rules = sev.rules;
    const main = rules[0]!;
    const dashboard = dashboardURL(this.externalURL, labels);
    const where = [labels.feature && `feature ${labels.feature}`, labels.slice && `slice ${labels.slice}`].filter(Boolean).join(', ');
    const sloText = `SLO ${spec.name}${where ? ` (${where})` : ''}`;
    const windows = rules.map((r) => `${formatDurationMs(r.rule.longWindowMs)}/${formatDurationMs(r.rule.shortWindowMs)}`).join(', ');
    const rates = rules.map(describeRule).join('; ');
    const badFraction = fraction(main.long.bad, main.long.good + main.long.bad);
    const budget = errorBudget(spec.objective);
    const bounds = [typeof spec.max === 'number' && `bad above ${spec.max}`, typeof spec.min === 'number' && `bad below ${spec.min}`].filter(Boolean).join(', ');
    const judged = `indicator${spec.indicator ? ` ${spec.indicator}` : ''}${bounds ? ` (${bounds})` : ''}`;
    const lastValue = observation.indicatorValue;
    const valueText = lastValue === null || lastValue === undefined ? '' : ` Last ${spec.indicator ?? 'indicator'} value: ${num(lastValue)}.`;
    const summary =
      status === 'firing'
        ? `${sloText} is burning its error budget ${num(main.long.burnRate ?? 0)}x too fast over ${formatDurationMs(main.rule.longWindowMs)} (${severity})`
        : `${sloText} is back under its burn-rate threshold (${severity})`;
    const description =
      `${status === 'firing' ? 'Firing' : 'Resolved'}: ${rates}. ` +
      `Bad fraction over ${formatDurationMs(main.rule.longWindowMs)}: ${badFraction === null ? 'no data' : pct(badFraction)}; ` +
      `objective ${pct(spec.objective)} (error budget ${pct(budget)}) of ${judged}.${valueText}`;
    const annotations: Record<string, string> = {
      summary,
      description,
      objective: String(spec.objective),
      windows,
      burn_rates: rules.map((r) => `${formatDurationMs(r.rule.longWindowMs)}=${rateText(r.long.burnRate)} ${formatDurationMs(r.rule.shortWindowMs)}=${rateText(r.short.burnRate)}`).join(', '),
      bad_fraction: badFraction === null ? '' : num(badFraction),
      dashboard,
    };
    if (spec.indicator) annotations.indicator = spec.indicator;
    if (lastValue !== null && lastValue !== undefined) annotations.indicator_value = num(lastValue);
    for (const k of Object.keys(annotations)) if (annotations[k] === '') delete annotations[k];
    return { annotations, generatorURL: dashboard };
  }
}

/** A series' identity inside an SLO's evaluator: its labels, sorted. */
function seriesKey(labels: Readonly<Record<string, string | undefined>>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',');
}

/** `<externalURL>/monitor?slo=...&slice=...&feature=...&monitor=...` (the parts a series has). */
export function dashboardURL(externalURL: string, labels: Readonly<Record<string, string>>): string {
  const query = new URLSearchParams();
  for (const name of ['slo', 'slice', 'feature', 'monitor']) {
    const value = labels[name];
    if (value) query.set(name, value);
  }
  return `${externalURL.replace(/\/+$/, '')}/monitor?${query.toString()}`;
}

function describeRule(r: RuleEvaluation): string {
  const long = formatDurationMs(r.rule.longWindowMs);
  const short = formatDurationMs(r.rule.shortWindowMs);
  const rates = `burn rate ${rateText(r.long.burnRate)} over ${long} and ${rateText(r.short.burnRate)} over ${short}`;
  if (!r.firing) return `${rates}; ${short} at or under ${r.rule.burnRate}`;
  // A firing rule holds on its short window alone, so its long window may be back under.
  return exceedsBurnRate(r.long.burnRate, r.rule.burnRate) ? `${rates}, both above ${r.rule.burnRate}` : `${rates}; ${short} still above ${r.rule.burnRate}`;
}

function fraction(part: number, total: number): number | null {
  return total > 0 ? part / total : null;
}

function rateText(rate: number | null): string {
  return rate === null ? 'n/a' : num(rate);
}

/** Four significant digits, no exponent for ordinary values. */
function num(x: number): string {
  return String(Number(x.toPrecision(4)));
}

function pct(x: number): string {
  return `${num(x * 100)}%`;
}
