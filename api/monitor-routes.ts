// The monitor plugin: the metrics time series (GET /monitor/metrics, GET /monitor/drift) and the
// alerts (GET /alerts), read from the offline store so they answer whichever process evaluated.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { parseDurationMs, parseTimeMs, TidemarkError, type CompiledDefinitions } from '../definitions/index.js';
import { OfflineAlertStateStore, queryMetrics, type MetricQuery } from '../monitor/index.js';
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

const AlertFiltersErrors = errorResponses({ badRequest: ['TM_READ_BAD_REQUEST'], unavailable: ['TM_OFFLINE_UNREACHABLE'], serverError: ['TM_OFFLINE_QUERY'] });

const Alert = z.object({
  fingerprint: z.string(),
  status: z.enum(['firing', 'resolved']),
  labels: z.record(z.string(), z.string()),
  annotations: z.record(z.string(), z.string()),
  startsAt: z.string(),
  endsAt: z.string().nullable(),
  generatorURL: z.string(),
});

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

export const monitorRoutes: FastifyPluginAsyncZod<{ offline: OfflineStore; limits: ApiLimits; monitors: CompiledDefinitions | null }> = async (app, { offline, limits }) => {
  const config = { scope: 'monitor:read' } as const;
  const metricsSchema = {
    tags: ['monitor'],
    summary: 'The metrics series (drift, label metrics, freshness, label counts), filtered',
    querystring: MetricFilters,
    response: { 200: z.object({ metrics: z.array(MetricRecord) }).describe('Matching metric rows'), ...MonitorErrors },
  };
  app.get('/monitor/metrics', { schema: metricsSchema, config }, async (request) => ({ metrics: await queryMetrics(offline.executor, toQuery(request.query, limits)) }));

  const driftSchema = {
    tags: ['monitor'],
    summary: 'The drift rows of the metrics series, optionally only the drifted ones',
    querystring: DriftFilters,
    response: { 200: z.object({ drift: z.array(MetricRecord) }).describe('Matching drift rows'), ...MonitorErrors },
  };
  app.get('/monitor/drift', { schema: driftSchema, config }, async (request) => {
    const { drifted, ...filters } = request.query;
    return { drift: await queryMetrics(offline.executor, { ...toQuery(filters, limits), metric: 'drift', driftOnly: drifted === 'true' }) };
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
      .map((a) => ({
        fingerprint: a.fingerprint,
        status: a.status,
        labels: a.labels,
        annotations: a.annotations,
        startsAt: new Date(a.startsAtMs).toISOString(),
        endsAt: a.endsAtMs === null ? null : new Date(a.endsAtMs).toISOString(),
        generatorURL: a.generatorURL,
      }));
    const pending = snapshot.notifications.filter((n) => n.deliveredAtMs === null && n.supersededBy === null).length;
    return { alerts, pendingNotifications: pending };
  });
};
