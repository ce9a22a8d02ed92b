// The monitor plugin: the metrics time series (GET /monitor/metrics, GET /monitor/drift), the
// dashboard's data (GET /monitor/plans, /monitor/distribution, /monitor/slo) and the alerts
// (GET /alerts, /alerts/history), read from the offline store so they answer whichever process evaluated.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { parseDurationMs, parseTimeMs, TidemarkError, type CompiledDefinitions } from '../definitions/index.js';
import {
  ALL_SLICE,
  configuredMonitors,
  describeMonitor,
  driftColumns,
  driftDistribution,
  ensureMetricsTable,
  ensureMonitorTables,
  findFeature,
  findMonitor,
  findWindowMs,
  loadProfile,
  OfflineAlertStateStore,
  queryMetrics,
  sloSeries,
  type AlertState,
  type MetricQuery,
} from '../monitor/index.js';
import type { OfflineStore } from '../offline/index.js';
import { errorResponses } from './errors.js';
import { checkLimit, type ApiLimits } from './limits.js';

const MetricFilters = z.object({
  monitor: z.string().optional().describe('monitor name'),
  metric: z.string().optional().describe('a metric name, e.g. drift (value = PSI), auc, log_loss, freshness, labels'),
  feature: z.string().optional().describe('an event field or view:feature the monitor watches'),
  /** `all`, or `<slice>=<value>` such as `origin=ATL`. */
  slice: z.string().optional().describe('`all`, or `<slice>=<value>` such as `origin=ATL`'),
  /** A duration: 1d, 7d. */
  window: z.string().optional().describe('a window duration such as 1d or 7d'),
  /** ISO-8601 or epoch ms: window ends at or after. */
  from: z.string().optional().describe('window ends at or after this time (ISO-8601 UTC or epoch ms)'),
  to: z.string().optional().describe('window ends at or before this time (ISO-8601 UTC or epoch ms)'),
  limit: z.coerce.number().int().min(1).optional().describe("most rows returned (default 1000; at most the server's --max-query-limit, default 10 000)"),
});

const DriftFilters = MetricFilters.omit({ metric: true }).extend({
  /** Only the (feature, slice, window) tests the drift decision flagged. */
  drifted: z.enum(['true', 'false']).optional().describe('true: only the tests the drift decision flagged'),
  format: z.enum(['rows', 'columns']).optional().describe('rows (default): one object per row, newest first; columns: series x window-end matrices (for a heatmap)'),
});

const DistributionQuery = z.object({
  monitor: z.string().optional().describe('monitor name (optional when the server has one monitor)'),
  feature: z.string().describe('a feature the monitor watches'),
  slice: z.string().optional().describe('`all` (default) or `<slice>=<value>`'),
  window: z.string().optional().describe("one of the monitor's windows, e.g. 1h (default: its first)"),
  at: z.string().optional().describe('the evaluation at or before this window end (ISO-8601 UTC or epoch ms); default the latest'),
});

const SloQuery = z.object({
  monitor: z.string().optional().describe('monitor name (optional when the server has one monitor)'),
  slo: z.string().describe('an SLO of the monitor'),
  feature: z.string().optional().describe('drift SLOs: the feature of the series (default: the feature the SLO names)'),
  slice: z.string().optional().describe('drift and label SLOs: `all` (default) or `<slice>=<value>`'),
  from: z.string().optional().describe('evaluations at or after this time (ISO-8601 UTC or epoch ms)'),
  to: z.string().optional().describe('evaluations at or before this time (ISO-8601 UTC or epoch ms)'),
});

const AlertFilters = z.object({
  status: z.enum(['firing', 'resolved', 'all']).optional(),
  monitor: z.string().optional(),
  severity: z.enum(['page', 'ticket']).optional(),
});

const MonitorErrors = errorResponses({ badRequest: ['TM_READ_BAD_REQUEST', 'TM_MONITOR_BAD_REQUEST'], unavailable: ['TM_OFFLINE_UNREACHABLE'], serverError: ['TM_OFFLINE_QUERY'] });

const MetricRecord = z
  .looseObject({ monitor: z.string(), metric: z.string(), feature: z.string(), slice: z.string() })
  .describe('one row of the metrics series (tm_monitor_metrics): window, value, sample sizes, test statistics');

const AlertFiltersErrors = { ...errorResponses({ badRequest: ['TM_READ_BAD_REQUEST'], unavailable: ['TM_OFFLINE_UNREACHABLE'], serverError: ['TM_OFFLINE_QUERY'] }) };

const NotFoundErrors = { ...errorResponses({
  badRequest: ['TM_READ_BAD_REQUEST', 'TM_MONITOR_BAD_REQUEST'],
  notFound: ['TM_MONITOR_NOT_CONFIGURED', 'TM_MONITOR_UNKNOWN', 'TM_MONITOR_UNKNOWN_FEATURE', 'TM_MONITOR_UNKNOWN_SLICE', 'TM_MONITOR_UNKNOWN_WINDOW', 'TM_MONITOR_UNKNOWN_SLO', 'TM_MONITOR_NO_EVALUATION'],
  unavailable: ['TM_OFFLINE_UNREACHABLE'],
  serverError: ['TM_OFFLINE_QUERY'],
}) };

const nums = z.array(z.number().nullable());
const numMatrix = z.array(nums);

const DriftColumns = z
  .object({
    format: z.literal('columns'),
    window_end: z.array(z.string()).describe('window ends, oldest first: the columns of every matrix'),
    feature: z.array(z.string()).describe('feature of each series (matrix row)'),
    slice: z.array(z.string()),
    window_ms: z.array(z.number()),
    psi: numMatrix.describe('[series][window end]; null where the series has no row then'),
    ks: numMatrix,
    p_value: numMatrix,
    q_value: numMatrix,
    drift: z.array(z.array(z.boolean().nullable())),
    n_ref: numMatrix,
    n_cur: numMatrix,
    note: z.array(z.array(z.string().nullable())).describe('no_reference or too_few_rows where there is no decision'),
  })
  .describe('The drift rows as series x window-end matrices');

const Binned = {
  ref: z.array(z.number()).describe('reference counts per bin'),
  cur: z.array(z.number()).describe('current window counts per bin'),
  refFraction: z.array(z.number()).describe('reference fraction per bin as PSI takes it (an empty bin 0.0001)'),
  curFraction: z.array(z.number()),
  contribution: z.array(z.number()).describe("each bin's PSI term; they sum to psi"),
};

const Distribution = z
  .looseObject({
    monitor: z.string(),
    version: z.string(),
    feature: z.string(),
    slice: z.string(),
    kind: z.enum(['numeric', 'categorical']),
    window: z.string(),
    windowMs: z.number(),
    windowEnd: z.string(),
    psi: z.number().nullable(),
    ks: z.number().nullable(),
    ksErrorBound: z.number().nullable(),
    pValue: z.number().nullable(),
    qValue: z.number().nullable(),
    psiPValue: z.number().nullable(),
    ksPValue: z.number().nullable(),
    drift: z.boolean().nullable(),
    note: z.string().nullable(),
    nRef: z.number(),
    nCur: z.number(),
    deciles: z
      .object({ edges: z.array(z.number()).describe('the 9 inner decile edges of the reference'), ...Binned })
      .nullable()
      .optional()
      .describe('numeric: the 10 bins PSI compares (null without a reference)'),
    fine: z.object({ edges: z.array(z.number()), ref: z.array(z.number()) }).nullable().optional().describe("numeric: the reference's 100 fine bins (99 percentile edges)"),
    bins: z
      .object({ categories: z.array(z.string()).describe('bin i + 1 is category i; bin 0 is every category unseen in the reference'), ...Binned })
      .nullable()
      .optional()
      .describe('categorical: per reference category, bin 0 unseen'),
    unseen: z
      .object({ total: z.number(), top: z.array(z.object({ category: z.string(), count: z.number() })) })
      .nullable()
      .optional()
      .describe('categorical: current rows in categories the reference never saw, and the most frequent of them'),
  })
  .describe('One stored drift result with the reference and current distributions on the same bins');

const SloSeries = z
  .object({
    monitor: z.string(),
    version: z.string(),
    slo: z.object({ name: z.string(), indicator: z.string(), objective: z.number(), window: z.string(), feature: z.string().nullable(), min: z.number().nullable(), max: z.number().nullable() }),
    labels: z.record(z.string(), z.string()).describe('the series, as its alerts label it'),
    budgetPeriod: z.string().describe("the error budget's period: the policy's longest window"),
    t: z.array(z.number()).describe('evaluation times, epoch ms, ascending: every other array is aligned on it'),
    indicator: nums.describe("the indicator's value (PSI, KS, AUC, freshness ms...)"),
    good: nums.describe('the observation at t (null: none, e.g. no drift decision)'),
    bad: nums,
    rules: z.array(
      z.object({
        severity: z.enum(['page', 'ticket']),
        long: z.string(),
        short: z.string(),
        threshold: z.number(),
        longBurn: nums.describe('burn rate over the long window (null where nothing was observed)'),
        shortBurn: nums,
        firing: z.array(z.boolean()).describe('whether the rule fires after the evaluation at t'),
      }),
    ),
    budget: nums.describe('error budget left over the rolling budget period: 1 - bad fraction / (1 - objective)'),
    periodBudget: z.array(z.number()).describe('budget left within fixed periods of budgetPeriod (burn-down)'),
    ideal: z.array(z.number()).describe('the linear burn-down: 1 at a period start, 0 at its end'),
  })
  .describe("One SLO series' indicator, burn rates per rule and error budget, column-oriented");

const Notification = z
  .looseObject({
    id: z.string(),
    kind: z.enum(['firing', 'repeat', 'resolved']),
    status: z.enum(['firing', 'resolved']),
    startsAt: z.string(),
    endsAt: z.string().nullable(),
    createdAt: z.string().describe('when the transition happened (evaluation time)'),
    deliveredTo: z.array(z.string()),
    deliveredAt: z.string().nullable().describe('null while pending or when superseded'),
    supersededBy: z.string().nullable().describe('a later notification sent in its place'),
    annotations: z.record(z.string(), z.string()),
  })
  .describe('one notification of the alert');

const Alert = z.object({
  fingerprint: z.string(),
  status: z.enum(['firing', 'resolved']),
  labels: z.record(z.string(), z.string()),
  annotations: z.record(z.string(), z.string()),
  startsAt: z.string(),
  endsAt: z.string().nullable(),
  generatorURL: z.string(),
});

function alertJson(a: AlertState): z.infer<typeof Alert> {
  return {
    fingerprint: a.fingerprint,
    status: a.status,
    labels: { ...a.labels },
    annotations: { ...a.annotations },
    startsAt: new Date(a.startsAtMs).toISOString(),
    endsAt: a.endsAtMs === null ? null : new Date(a.endsAtMs).toISOString(),
    generatorURL: a.generatorURL,
  };
}

function timeParam(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseTimeMs(text);
  if (ms === null) throw new TidemarkError('TM_MONITOR_BAD_REQUEST', `${name} ${JSON.stringify(text)} is not a time: give ISO-8601 UTC or epoch milliseconds`, { field: name });
  return ms;
}

function toQuery(q: z.infer<typeof MetricFilters>, limits: ApiLimits): MetricQuery {
  if (q.limit !== undefined) checkLimit('queryLimit', limits, q.limit, 'rows asked for with limit');
  let windowMs: number | undefined;
  if (q.window !== undefined) {
    const ms = parseDurationMs(q.window);
    if (ms === null) throw new TidemarkError('TM_MONITOR_BAD_REQUEST', `window ${JSON.stringify(q.window)} is not a duration such as 1d or 7d`, { field: 'window' });
    windowMs = ms;
  }
  return { monitor: q.monitor, metric: q.metric, feature: q.feature, slice: q.slice, windowMs, fromMs: timeParam('from', q.from), toMs: timeParam('to', q.to), limit: q.limit };
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export const monitorRoutes: FastifyPluginAsyncZod<{ offline: OfflineStore; limits: ApiLimits; monitors: CompiledDefinitions | null }> = async (app, { offline, limits, monitors }) => {
  const config = { scope: 'monitor:read' } as const;
  // On a sharded store offline.executor is the home shard: the monitor (tidemark monitor
  // --clickhouse-shards) keeps its profiles, metrics and alert state there.
  // The routes read these tables before any monitor has run here: a fresh offline store answers
  // empty lists, not a 500 for a missing table.
  await ensureMetricsTable(offline.executor);
  await ensureMonitorTables(offline.executor);
  const metricsSchema = {
    tags: ['monitor'],
    summary: 'The metrics series (drift, label metrics, freshness, label counts), filtered',
    querystring: MetricFilters,
    response: { 200: z.object({ metrics: z.array(MetricRecord) }).describe('Matching metric rows'), ...MonitorErrors },
  };
  app.get('/monitor/metrics', { schema: metricsSchema, config }, async (request) => ({ metrics: await queryMetrics(offline.executor, toQuery(request.query, limits)) }));

  const driftSchema = {
    tags: ['monitor'],
    summary: 'The drift rows of the metrics series, optionally only the drifted ones; format=columns gives series x window-end matrices',
    querystring: DriftFilters,
    response: { 200: z.union([z.object({ drift: z.array(MetricRecord) }).describe('Matching drift rows, newest first'), DriftColumns]), ...MonitorErrors },
  };
  app.get('/monitor/drift', { schema: driftSchema, config }, async (request) => {
    const { drifted, format, ...filters } = request.query;
    const rows = await queryMetrics(offline.executor, { ...toQuery(filters, limits), metric: 'drift', driftOnly: drifted === 'true' });
    return format === 'columns' ? { format: 'columns' as const, ...driftColumns(rows) } : { drift: rows };
  });

  const plansSchema = {
    tags: ['monitor'],
    summary: 'The monitor plans: features, slices, windows, drift rule, labels, SLOs and their burn-rate rules',
    response: {
      200: z.object({ monitors: z.array(z.looseObject({ name: z.string(), source: z.string(), version: z.string() })) }).describe('Every monitor of the definitions (see MonitorSummary in monitor/plan-summary.ts)'),
      ...NotFoundErrors,
    },
  };
  app.get('/monitor/plans', { schema: plansSchema, config }, async () => {
    return { monitors: configuredMonitors(monitors).map((plan) => describeMonitor(plan, monitors!)) };
  });

  const distributionSchema = {
    tags: ['monitor'],
    summary: 'Reference and current distributions behind one drift result, on the same bins, with per-bin PSI terms',
    querystring: DistributionQuery,
    response: { 200: Distribution, ...NotFoundErrors },
  };
  app.get('/monitor/distribution', { schema: distributionSchema, config }, async (request) => {
    const q = request.query;
    const plan = findMonitor(monitors, q.monitor);
    const feature = findFeature(plan, q.feature).name;
    const windowMs = findWindowMs(plan, q.window);
    const slice = q.slice ?? ALL_SLICE;
    const profile = await loadProfile(offline.executor, plan, { feature, slice });
    return driftDistribution(offline.executor, profile, plan, { feature, slice, windowMs, windowEndMs: timeParam('at', q.at) });
  });

  const sloSchema = {
    tags: ['monitor'],
    summary: "One SLO series over time: indicator, each rule's long and short burn rates and firing, error budget left",
    querystring: SloQuery,
    response: { 200: SloSeries, ...NotFoundErrors },
  };
  app.get('/monitor/slo', { schema: sloSchema, config }, async (request) => {
    const q = request.query;
    const plan = findMonitor(monitors, q.monitor);
    return sloSeries(offline.executor, plan, q.slo, { feature: q.feature, slice: q.slice, fromMs: timeParam('from', q.from), toMs: timeParam('to', q.to) });
  });

  const historySchema = {
    tags: ['monitor'],
    summary: "An alert's current state and every notification it ever had (firing, repeat, resolved), oldest first",
    querystring: z.object({ fingerprint: z.string().describe("the alert's fingerprint (16 hex digits, as in GET /alerts)") }),
    response: {
      200: z.object({ alert: Alert, notifications: z.array(Notification) }).describe('The alert and its notifications'),
      ...errorResponses({ badRequest: ['TM_READ_BAD_REQUEST'], notFound: ['TM_ALERT_UNKNOWN'], unavailable: ['TM_OFFLINE_UNREACHABLE'], serverError: ['TM_OFFLINE_QUERY', 'TM_ALERT_STORE'] }),
    },
  };
  app.get('/alerts/history', { schema: historySchema, config }, async (request) => {
    const store = await OfflineAlertStateStore.open(offline.executor);
    const { alert, notifications } = await store.history(request.query.fingerprint);
    if (!alert) {
      const known = (await store.load()).alerts.map((a) => a.fingerprint);
      throw new TidemarkError('TM_ALERT_UNKNOWN', `no alert with fingerprint ${JSON.stringify(request.query.fingerprint)}`, { field: 'fingerprint', validFingerprints: known.slice(0, 100) });
    }
    return {
      alert: alertJson(alert),
      notifications: notifications.map((n) => ({
        id: n.id,
        kind: n.kind,
        status: n.status,
        startsAt: iso(n.startsAtMs)!,
        endsAt: iso(n.endsAtMs),
        createdAt: iso(n.createdAtMs)!,
        deliveredTo: n.deliveredTo,
        deliveredAt: iso(n.deliveredAtMs),
        supersededBy: n.supersededBy,
        annotations: n.annotations,
      })),
    };
  });

  const alertsSchema = {
    tags: ['monitor'],
    summary: 'Burn-rate alerts, firing first',
    querystring: AlertFilters,
    response: {
      200: z.object({ alerts: z.array(Alert), pendingNotifications: z.number().int().describe('notifications not yet delivered to a sink') }).describe('The alerts'),
      ...AlertFiltersErrors,
    },
  };
  app.get('/alerts', { schema: alertsSchema, config }, async (request) => {
    const { status = 'all', monitor, severity } = request.query;
    const snapshot = await (await OfflineAlertStateStore.open(offline.executor)).load();
    const alerts = snapshot.alerts
      .filter((a) => (status === 'all' || a.status === status) && (monitor === undefined || a.labels.monitor === monitor) && (severity === undefined || a.labels.severity === severity))
      .sort((a, b) => (a.status === b.status ? b.startsAtMs - a.startsAtMs : a.status === 'firing' ? -1 : 1))
      .map(alertJson);
    const pending = snapshot.notifications.filter((n) => n.deliveredAtMs === null && n.supersededBy === null).length;
    return { alerts, pendingNotifications: pending };
  });
};
