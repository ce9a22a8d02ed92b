// The dashboard's routes, served by the API's own fastify server: HTML pages under /ui/, their
// assets under /ui/assets/, and GET /monitor (the alerts' dashboard links), which redirects to the
// drift page with the same query. A URL naming an unknown monitor, feature, slice, view or alert
// gets a 404 page that says what is unknown and lists the valid choices.
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { formatDurationMs, parseDurationMs, parseTimeMs, TidemarkError, type CompiledDefinitions, type MonitorPlan } from '../definitions/index.js';
import { ALL_SLICE, driftDistribution, loadProfile, OfflineAlertStateStore, queryMetrics, sloSeries } from '../monitor/index.js';
import { tableExists, type OfflineStore } from '../offline/index.js';
import type { OnlineFeatureService } from '../online/index.js';
import { alertPage, alertsPage, overviewPage, type AlertPageData, type OverviewData } from './alerts-pages.js';
import { clientBundle, stylesheet, STYLESHEETS } from './assets.js';
import { unknownPage } from './html.js';
import { distributionBins, driftHistory, driftRowsAt, latestDriftEnd, loadAlerts, referenceBins, type DriftRow } from './monitor-data.js';
import { driftPage, driftTable, featureHref, featurePage, labelsPage } from './monitor-pages.js';
import { viewPage, viewsPage, type ViewsContext } from './views-pages.js';

export interface DashboardOptions {
  service: OnlineFeatureService;
  offline: OfflineStore | null;
  /** The compiled definitions holding the monitors; null: no monitor pages beyond "none configured". */
  monitors: CompiledDefinitions | null;
  /** Entity keys to prefill a view's live read with (a store that lists keys cheaply). */
  sampleKeys?: (view: string) => string[];
  /** Alertmanager's base URL, for the alert page's silence/status link. */
  alertmanagerUrl?: string | null;
}

type Query = Record<string, string | undefined>;

const HTML = 'text/html; charset=utf-8';
/** HTML pages are not API: kept out of the OpenAPI document. */
const PAGE_SCHEMA = { hide: true };

export const dashboardRoutes: FastifyPluginAsync<DashboardOptions> = async (app, opts) => {
  const plans = (): MonitorPlan[] => opts.monitors?.monitors ?? [];
  const registry = opts.service.registry;
  // A 404 page is HTML for people; its code rides in a header for scripts, as every other 4xx carries one.
  const send = (reply: FastifyReply, body: string, status = 200): FastifyReply => (status === 404 ? reply.header('x-tidemark-code', 'TM_UI_NOT_FOUND') : reply).status(status).type(HTML).send(body);
  const monitorChoices = (): { text: string; href: string }[] => plans().map((p) => ({ text: p.name, href: `/ui/monitor?monitor=${encodeURIComponent(p.name)}` }));
  const monitorsEvaluated = async (): Promise<boolean> => opts.offline !== null && (await tableExists(opts.offline.executor, 'tm_monitor_metrics'));

  const pageConfig = (scope: 'monitor:read' | 'features:read') => ({ schema: PAGE_SCHEMA, config: { scope } });

  app.get('/ui/assets/app.js', { schema: PAGE_SCHEMA }, async (_request, reply) => {
    const asset = await clientBundle();
    return reply.type(asset.contentType).header('cache-control', 'no-cache').send(asset.body);
  });
  app.get<{ Params: { name: string } }>('/ui/assets/:name', { schema: PAGE_SCHEMA }, async (request, reply) => {
    const asset = stylesheet(request.params.name);
    if (!asset) throw new TidemarkError('TM_UI_NOT_FOUND', `the dashboard has no asset ${JSON.stringify(request.params.name)}`, { validAssets: ['app.js', ...STYLESHEETS] });
    return reply.type(asset.contentType).header('cache-control', 'no-cache').send(asset.body);
  });

  // The alerts' generatorURL: /monitor?slo=&slice=&feature=&monitor= lands on the drift page with the same filters.
  app.get('/monitor', pageConfig('monitor:read'), async (request, reply) => {
    const search = new URL(request.url, 'http://x').search;
    return reply.redirect(`/ui/monitor${search}`, 302);
  });
  app.get('/ui', pageConfig('monitor:read'), async (_request, reply) => reply.redirect('/ui/', 302));

  app.get('/ui/', pageConfig('monitor:read'), async (_request, reply) => {
    let watermarkMs: number | null = null;
    let error: string | null = null;
    try {
      watermarkMs = await opts.service.store.watermarkMs();
    } catch (e) {
      error = (e as Error).message;
    }
    const evaluated = await monitorsEvaluated();
    const drift: OverviewData['drift'] = [];
    for (const plan of plans()) {
      const windowMs = Math.min(...plan.windowsMs);
      const endMs = evaluated ? await latestDriftEnd(opts.offline!.executor, plan.name, windowMs) : null;
      drift.push({ plan, windowMs, endMs, rows: endMs === null ? [] : await driftRowsAt(opts.offline!.executor, plan.name, windowMs, endMs) });
    }
    const data: OverviewData = {
      store: { kind: opts.service.store.constructor.name.replace(/OnlineStore$/, '').toLowerCase() || 'store', clock: opts.service.clock, watermarkMs, error, nowMs: Date.now() },
      views: registry.views.length,
      alerts: opts.offline && (await tableExists(opts.offline.executor, 'tm_monitor_alerts')) ? await loadAlerts(opts.offline.executor) : null,
      drift,
    };
    return send(reply, overviewPage(data));
  });

  const viewsContext = async (): Promise<ViewsContext> => ({
    registry,
    watermarkMs: await opts.service.store.watermarkMs().catch(() => null),
    sampleKeys: (view) => opts.sampleKeys?.(view.name).slice(0, 2) ?? [],
    offline: opts.offline !== null,
    watchedBy: (view) => plans().filter((p) => p.features.some((f) => f.view === view)).map((p) => p.name),
    monitorsOf: (source) => Object.fromEntries(plans().filter((p) => p.source === source).map((p) => [p.name, [...new Set(p.features.flatMap((f) => (f.view ? [f.view] : [])))]])),
  });
  app.get<{ Querystring: Query }>('/ui/views', pageConfig('features:read'), async (request, reply) => send(reply, viewsPage(await viewsContext(), request.query.q ?? '')));
  app.get<{ Params: { name: string } }>('/ui/views/:name', pageConfig('features:read'), async (request, reply) => {
    const view = registry.views.find((v) => v.name === request.params.name);
    if (!view) return send(reply, unknownPage('views', 'view', request.params.name, registry.views.map((v) => ({ text: v.name, href: `/ui/views/${encodeURIComponent(v.name)}` }))), 404);
    return send(reply, viewPage(await viewsContext(), view));
  });

  /** The monitor a page names (or the only one), else the reply with the 404 page. */
  const pickPlan = (name: string | undefined): MonitorPlan | string => {
    const all = plans();
    if (name === undefined || name === '') {
      if (all.length > 0) return all[0]!;
      return unknownPage('monitor', 'monitor', '(none given)', []);
    }
    return all.find((p) => p.name === name) ?? unknownPage('monitor', 'monitor', name, monitorChoices());
  };
  const pickWindow = (plan: MonitorPlan, text: string | undefined, href: (w: string) => string): number | string => {
    if (text === undefined || text === '') return Math.min(...plan.windowsMs);
    const ms = parseDurationMs(text);
    if (ms !== null && plan.windowsMs.includes(ms)) return ms;
    return unknownPage('monitor', 'window', text, plan.windowsMs.map((w) => ({ text: formatDurationMs(w), href: href(formatDurationMs(w)) })));
  };
  const pickTime = (text: string | undefined): number | null => (text === undefined || text === '' ? null : parseTimeMs(text));

  app.get<{ Querystring: Query }>('/ui/monitor', pageConfig('monitor:read'), async (request, reply) => {
    const q = request.query;
    const plan = pickPlan(q.monitor);
    if (typeof plan === 'string') return send(reply, plan, 404);
    const windowMs = pickWindow(plan, q.window, (w) => `/ui/monitor?monitor=${encodeURIComponent(plan.name)}&window=${w}`);
    if (typeof windowMs === 'string') return send(reply, windowMs, 404);
    const feature = q.feature || undefined;
    if (feature !== undefined && !plan.features.some((f) => f.name === feature)) {
      return send(reply, unknownPage('monitor', 'feature', feature, plan.features.map((f) => ({ text: f.name, href: `/ui/monitor?monitor=${encodeURIComponent(plan.name)}&feature=${encodeURIComponent(f.name)}` }))), 404);
    }
    const sloName = q.slo || undefined;
    const slo = sloName === undefined ? null : plan.slos.find((s) => s.name === sloName);
    if (slo === undefined) return send(reply, unknownPage('monitor', 'SLO', sloName!, plan.slos.map((s) => ({ text: s.name, href: `/ui/monitor?monitor=${encodeURIComponent(plan.name)}&slo=${encodeURIComponent(s.name)}` }))), 404);
    // An SLO on another window (freshness, a 7d SLO on a 28d page) shows its own window's rows.
    const shownWindow = slo && q.window === undefined && plan.windowsMs.includes(slo.windowMs) ? slo.windowMs : windowMs;
    const ex = opts.offline?.executor;
    const evaluated = await monitorsEvaluated();
    const endMs = evaluated ? (pickTime(q.at) ?? (await latestDriftEnd(ex!, plan.name, shownWindow))) : null;
    const rows: DriftRow[] = endMs === null ? [] : await driftRowsAt(ex!, plan.name, shownWindow, endMs);
    const slice = q.slice || undefined;
    if (slice !== undefined && endMs !== null && !rows.some((r) => r.slice === slice)) {
      const slices = [...new Set(rows.map((r) => r.slice))].sort();
      return send(reply, unknownPage('monitor', 'slice', slice, slices.map((s) => ({ text: s, href: `/ui/monitor?monitor=${encodeURIComponent(plan.name)}&slice=${encodeURIComponent(s)}` }))), 404);
    }
    const alerts =
      slo && ex && (await tableExists(ex, 'tm_monitor_alerts'))
        ? (await loadAlerts(ex)).alerts.filter((a) => a.labels.monitor === plan.name && a.labels.slo === slo.name && (slice === undefined || a.labels.slice === slice) && (feature === undefined || a.labels.feature === feature))
        : [];
    const params = { ...(slice ? { slice } : {}), ...(feature ? { feature } : {}), ...(sloName ? { slo: sloName } : {}), drifted: q.drifted === 'true', page: Number.parseInt(q.page ?? '1', 10) || 1 };
    const table = driftTable(rows, params);
    // Sparklines and mini distributions only for the rows shown: bounded whatever the monitor's width.
    const history = endMs === null ? new Map() : await driftHistory(ex!, plan, shownWindow, endMs, table.shown);
    const reference = endMs === null ? new Map() : await referenceBins(ex!, plan, table.shown);
    return send(
      reply,
      driftPage({
        plan,
        plans: plans(),
        windowMs: shownWindow,
        endMs,
        rows,
        table,
        history,
        reference,
        params,
        slo: slo ? { plan: slo, alerts } : null,
      }),
    );
  });

  app.get<{ Params: { monitor: string; feature: string }; Querystring: Query }>('/ui/monitor/:monitor/features/:feature', pageConfig('monitor:read'), async (request, reply) => {
    const plan = pickPlan(request.params.monitor);
    if (typeof plan === 'string') return send(reply, plan, 404);
    const feature = request.params.feature;
    if (!plan.features.some((f) => f.name === feature)) {
      return send(reply, unknownPage('monitor', 'feature', feature, plan.features.map((f) => ({ text: f.name, href: featureHref(plan.name, f.name) }))), 404);
    }
    const q = request.query;
    const windowMs = pickWindow(plan, q.window, (w) => featureHref(plan.name, feature, { window: w }));
    if (typeof windowMs === 'string') return send(reply, windowMs, 404);
    const slice = q.slice || ALL_SLICE;
    const ex = opts.offline?.executor;
    const evaluated = await monitorsEvaluated();
    const atMs = evaluated ? (pickTime(q.at) ?? (await latestDriftEnd(ex!, plan.name, windowMs))) : null;
    const slices = atMs === null ? [] : (await driftRowsAt(ex!, plan.name, windowMs, atMs)).filter((r) => r.feature === feature);
    const row = slices.find((r) => r.slice === slice) ?? null;
    if (atMs !== null && row === null && slice !== ALL_SLICE) {
      return send(reply, unknownPage('monitor', 'slice', slice, slices.map((r) => ({ text: r.slice, href: featureHref(plan.name, feature, { slice: r.slice, window: formatDurationMs(windowMs) }) }))), 404);
    }
    const distribution = row === null ? null : await driftDistribution(ex!, await loadProfile(ex!, plan, { feature, slice }), plan, { feature, slice, windowMs, windowEndMs: atMs! });
    return send(reply, featurePage({ plan, feature, slice, windowMs, atMs, row, slices, distribution: distribution === null ? null : distributionBins(distribution) }));
  });

  app.get<{ Params: { monitor: string }; Querystring: Query }>('/ui/monitor/:monitor/labels', pageConfig('monitor:read'), async (request, reply) => {
    const plan = pickPlan(request.params.monitor);
    if (typeof plan === 'string') return send(reply, plan, 404);
    const q = request.query;
    const windowMs = pickWindow(plan, q.window, (w) => `/ui/monitor/${encodeURIComponent(plan.name)}/labels?window=${w}`);
    if (typeof windowMs === 'string') return send(reply, windowMs, 404);
    const metrics = plan.labels === null ? [] : plan.labels.kind === 'binary' ? ['auc', 'log_loss', 'precision', 'recall', 'f1', 'accuracy'] : ['mae', 'rmse'];
    const metric = q.metric || metrics[0];
    if (metric === undefined || !metrics.includes(metric)) {
      return send(reply, unknownPage('monitor', 'label metric', metric ?? '(none: this monitor has no labels)', metrics.map((m) => ({ text: m, href: `/ui/monitor/${encodeURIComponent(plan.name)}/labels?metric=${m}` }))), 404);
    }
    const ex = opts.offline?.executor;
    const evaluated = await monitorsEvaluated();
    const latest = evaluated ? await queryMetrics(ex!, { monitor: plan.name, metric: 'labels', windowMs, limit: 1 }) : [];
    const endMs = latest[0] ? Date.parse(latest[0].window_end) : null;
    const atEnd = endMs === null ? [] : await queryMetrics(ex!, { monitor: plan.name, metric, windowMs, fromMs: endMs, toMs: endMs, limit: 100_000 });
    const slices = [...new Set([ALL_SLICE, ...atEnd.map((r) => r.slice)])].sort((a, b) => (a === ALL_SLICE ? -1 : b === ALL_SLICE ? 1 : a < b ? -1 : 1));
    const slice = q.slice || ALL_SLICE;
    if (!slices.includes(slice)) return send(reply, unknownPage('monitor', 'slice', slice, slices.map((s) => ({ text: s, href: `/ui/monitor/${encodeURIComponent(plan.name)}/labels?metric=${metric}&slice=${encodeURIComponent(s)}` }))), 404);
    const backlogRow = endMs === null ? undefined : (await queryMetrics(ex!, { monitor: plan.name, metric, slice, windowMs, fromMs: endMs, toMs: endMs, limit: 1 }))[0];
    const orphans = endMs === null ? undefined : (await queryMetrics(ex!, { monitor: plan.name, metric: 'labels_without_prediction', windowMs, fromMs: endMs, toMs: endMs, limit: 1 }))[0];
    const detail = backlogRow?.detail as { labelled?: number; unlabelled?: number } | undefined;
    return send(
      reply,
      labelsPage({
        plan,
        metric,
        metrics,
        slice,
        slices,
        windowMs,
        backlog: endMs === null || !detail ? null : { atMs: endMs, labelled: detail.labelled ?? 0, unlabelled: detail.unlabelled ?? 0, orphans: orphans?.value ?? null },
      }),
    );
  });

  app.get<{ Querystring: Query }>('/ui/alerts', pageConfig('monitor:read'), async (request, reply) => {
    const status = request.query.status === 'firing' || request.query.status === 'resolved' ? request.query.status : 'all';
    const ex = opts.offline?.executor;
    const snapshot = ex && (await tableExists(ex, 'tm_monitor_alerts')) ? await loadAlerts(ex) : { alerts: [], pendingNotifications: 0 };
    return send(reply, alertsPage(snapshot, status));
  });

  app.get<{ Params: { fingerprint: string } }>('/ui/alerts/:fingerprint', pageConfig('monitor:read'), async (request, reply) => {
    const ex = opts.offline?.executor;
    const snapshot = ex && (await tableExists(ex, 'tm_monitor_alerts')) ? await loadAlerts(ex) : { alerts: [], pendingNotifications: 0 };
    const alert = snapshot.alerts.find((a) => a.fingerprint === request.params.fingerprint);
    if (!alert) {
      return send(reply, unknownPage('alerts', 'alert', request.params.fingerprint, snapshot.alerts.map((a) => ({ text: `${a.fingerprint}: ${a.annotations.summary ?? ''}`, href: `/ui/alerts/${a.fingerprint}` }))), 404);
    }
    const plan = plans().find((p) => p.name === alert.labels.monitor);
    const { notifications } = await (await OfflineAlertStateStore.open(ex!)).history(alert.fingerprint);
    const history = notifications.map((n) => ({ kind: n.kind, atMs: n.createdAtMs, startsAtMs: n.startsAtMs, delivered: n.deliveredAtMs !== null, superseded: n.supersededBy !== null }));
    let budget: AlertPageData['budget'] = null;
    const slo = plan?.slos.find((x) => x.name === alert.labels.slo);
    if (plan && slo && (await monitorsEvaluated())) {
      const series = await sloSeries(ex!, plan, slo.name, { ...(alert.labels.feature ? { feature: alert.labels.feature } : {}), ...(alert.labels.slice ? { slice: alert.labels.slice } : {}) });
      const last = series.t.length - 1;
      // The longest rule's long window is the budget period: its burn rate is the one that spends it.
      const longest = [...slo.policy].sort((a, b) => b.longWindowMs - a.longWindowMs)[0]!;
      const rule = series.rules.find((r) => r.long === formatDurationMs(longest.longWindowMs) && r.severity === longest.severity);
      if (last >= 0 && series.budget[last] !== null) budget = { remaining: series.budget[last]!, burnRate: rule?.longBurn[last] ?? null, periodMs: longest.longWindowMs, atMs: series.t[last]! };
    }
    return send(reply, alertPage({ alert, history, budget, alertmanagerUrl: opts.alertmanagerUrl ?? null }, plan));
  });

};
