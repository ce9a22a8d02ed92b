// The on-call pages: the overview (is the materializer healthy and fresh, what is firing, what
// drifted) and the alerts (list, and one alert's page: why it fired, since when, where, and
// whether it happened before).
import { formatDurationMs, type MonitorPlan } from '../definitions/index.js';
import type { AlertState } from '../monitor/index.js';
import { budgetBar } from './svg.js';
import { html, isoMinute, num, page, query, raw, type Raw } from './html.js';
import { decisionText, type AlertsSnapshot, type DriftRow } from './monitor-data.js';
import { featureHref } from './monitor-pages.js';

export interface OverviewData {
  store: { kind: string; clock: string; watermarkMs: number | null; error: string | null; nowMs: number };
  views: number;
  alerts: AlertsSnapshot | null;
  /** Per monitor: its latest evaluation's drift rows (shortest window). */
  drift: { plan: MonitorPlan; windowMs: number; endMs: number | null; rows: DriftRow[] }[];
}

function ago(ms: number): string {
  if (ms < 0) return 'in the future';
  const units: [number, string][] = [[86_400_000, 'd'], [3_600_000, 'h'], [60_000, 'min'], [1000, 's']];
  for (const [size, name] of units) if (ms >= size) return `${num(ms / size, 3)} ${name}`;
  return `${ms} ms`;
}

export function overviewPage(d: OverviewData): string {
  const s = d.store;
  const freshness = s.watermarkMs === null ? null : s.nowMs - s.watermarkMs;
  const firing = d.alerts?.alerts.filter((a) => a.status === 'firing') ?? [];
  const pages = firing.filter((a) => a.labels.severity === 'page').length;
  const storeTile = html`<a class="tile ${s.error ? 'bad' : 'good'}" id="tile-store" href="/ui/views"><div>online store (${s.kind})</div><div class="big">${s.error ? 'unreachable' : 'answering'}</div>
<div>${s.error ?? html`watermark ${isoMinute(s.watermarkMs)} UTC${freshness === null ? '' : html`; ${s.clock === 'watermark' ? 'reads at the watermark (replayed data)' : html`freshness ${ago(freshness)}`}`}`}</div><div class="muted">${d.views} views</div>
<div class="status" data-chart="status" data-title="materializer status" data-src="/status/materializer"></div></a>`;
  const alertTile = d.alerts
    ? html`<a class="tile ${firing.length > 0 ? 'bad' : 'good'}" id="tile-alerts" href="/ui/alerts${query({ status: 'firing' })}"><div>alerts firing</div><div class="big">${firing.length}</div><div>${pages} page, ${firing.length - pages} ticket; ${d.alerts.pendingNotifications} notifications not yet delivered</div></a>`
    : html`<div class="tile"><div>alerts</div><div class="muted">no offline store: the monitor's alerts live there</div></div>`;
  const driftTiles = d.drift.map(({ plan, windowMs, endMs, rows }) => {
    const decided = rows.filter((r) => r.drift !== null);
    const drifted = decided.filter((r) => r.drift === true).sort((a, b) => (a.q_value ?? 1) - (b.q_value ?? 1) || (b.value ?? 0) - (a.value ?? 0));
    return html`<a class="tile ${drifted.length > 0 ? 'bad' : 'good'}" data-monitor="${plan.name}" href="/ui/monitor${query({ monitor: plan.name, window: formatDurationMs(windowMs) })}"><div>monitor ${plan.name}</div>
<div class="big">${drifted.length} / ${decided.length}</div><div>${endMs === null ? 'not evaluated yet' : html`drift decided (BH q ≤ ${plan.drift.fdr}) at ${isoMinute(endMs)} UTC, ${formatDurationMs(windowMs)} window`}</div></a>
${drifted.length > 0 ? html`<div class="tile"><div>top drifted (feature, slice)</div><ol class="top-drifted">${drifted.slice(0, 10).map((r) => html`<li><a href="${featureHref(plan.name, r.feature, { slice: r.slice, window: formatDurationMs(windowMs) })}">${r.feature} · ${r.slice}</a> PSI ${num(r.value, 3)}</li>`)}</ol></div>` : ''}`;
  });
  const body = html`<div class="tiles">${storeTile}${alertTile}${driftTiles}</div>
${firing.length > 0 ? html`<h2>Firing</h2>${alertsTable(firing)}` : ''}
<h2>Where to go</h2><ul><li><a href="/ui/views">Feature views</a>: what each feature is, its tiles, a live read, and the online/offline consistency probe.</li>
<li><a href="/ui/monitor">Drift</a>: every feature and slice against its reference.</li><li><a href="/ui/alerts">Alerts</a>: burn rates, budgets and history.</li><li><a href="/docs">API reference</a>.</li></ul>`;
  return page({ title: 'Overview', section: 'overview', body });
}

function alertsTable(alerts: readonly AlertState[]): Raw {
  return html`<table id="alerts-table"><thead><tr><th>severity</th><th>status</th><th>summary</th><th>SLO</th><th>feature / slice</th><th>started</th><th>duration</th></tr></thead><tbody>${alerts.map(
    (a) => html`<tr data-fingerprint="${a.fingerprint}"><td><span class="badge ${a.labels.severity ?? ''}">${a.labels.severity ?? '-'}</span></td><td><span class="badge ${a.status}">${a.status}</span></td>
<td><a href="/ui/alerts/${a.fingerprint}">${a.annotations.summary ?? a.fingerprint}</a></td><td>${a.labels.slo ?? '-'}</td><td>${[a.labels.feature, a.labels.slice].filter(Boolean).join(' · ') || '-'}</td>
<td>${isoMinute(a.startsAtMs)}</td><td>${a.endsAtMs === null ? 'ongoing' : formatDurationMs(a.endsAtMs - a.startsAtMs)}</td></tr>`,
  )}</tbody></table>`;
}

export function alertsPage(snapshot: AlertsSnapshot, status: 'firing' | 'resolved' | 'all'): string {
  const alerts = snapshot.alerts.filter((a) => status === 'all' || a.status === status);
  const body = html`<form class="filters" method="get"><label>status<select name="status">${(['all', 'firing', 'resolved'] as const).map((s) => html`<option${raw(s === status ? ' selected' : '')}>${s}</option>`)}</select></label><button type="submit">Show</button></form>
<p>${alerts.length} alerts (firing first); ${snapshot.pendingNotifications} notifications not yet delivered to a sink.</p>${alerts.length > 0 ? alertsTable(alerts) : html`<p class="muted">None.</p>`}`;
  return page({ title: 'Alerts', section: 'alerts', body });
}

export interface AlertPageData {
  alert: AlertState;
  /** Earlier and later notifications of the same fingerprint. */
  history: { kind: string; atMs: number; startsAtMs: number; delivered: boolean; superseded: boolean }[];
  /** Error budget left at the latest evaluation, and the burn rate of the longest window then. */
  budget: { remaining: number; burnRate: number | null; periodMs: number; atMs: number } | null;
  alertmanagerUrl: string | null;
}

/** "At the current burn rate, the error budget is exhausted in 3.5 days" (or that it is already). */
export function exhaustionSentence(b: { remaining: number; burnRate: number | null; periodMs: number }): string {
  if (b.remaining <= 0) return `The error budget of the last ${formatDurationMs(b.periodMs)} is exhausted (${num(b.remaining * 100, 3)}% left).`;
  if (b.burnRate === null || b.burnRate <= 0) return `${num(b.remaining * 100, 3)}% of the error budget is left and nothing is burning it now.`;
  // Burn rate 1 spends the whole budget in one period: time left = remaining x period / rate.
  const leftMs = (b.remaining * b.periodMs) / b.burnRate;
  return `${num(b.remaining * 100, 3)}% of the error budget is left; if this burn rate (${num(b.burnRate, 3)}x) continues, it is exhausted in ${formatDurationMs(Math.max(60_000, Math.round(leftMs / 60_000) * 60_000))}.`;
}

export function alertPage(d: AlertPageData, plan: MonitorPlan | undefined): string {
  const a = d.alert;
  const src = `/monitor/slo${query({ monitor: a.labels.monitor, slo: a.labels.slo, feature: a.labels.feature, slice: a.labels.slice })}`;
  const annotations = Object.entries(a.annotations).filter(([k]) => k !== 'summary');
  const driftLink = `/ui/monitor${query({ monitor: a.labels.monitor, slo: a.labels.slo, slice: a.labels.slice, feature: a.labels.feature })}`;
  const body = html`<p><span class="badge ${a.labels.severity ?? ''}">${a.labels.severity}</span> <span class="badge ${a.status}">${a.status}</span> since <b>${isoMinute(a.startsAtMs)} UTC</b>${a.endsAtMs === null ? '' : html`, resolved ${isoMinute(a.endsAtMs)} UTC`}. ${a.annotations.summary ?? ''}</p>
<p>Where: ${Object.entries(a.labels).map(([k, v]) => html`<code>${k}=${v}</code> `)}</p>
<p><a href="${driftLink}">Open the drift page for this series</a>${plan && a.labels.feature ? html` · <a href="${featureHref(plan.name, a.labels.feature, { slice: a.labels.slice })}">the feature over time</a>` : ''}${a.annotations.runbook_url ? html` · <a href="${a.annotations.runbook_url}">runbook</a>` : ''}${d.alertmanagerUrl ? html` · <a href="${d.alertmanagerUrl.replace(/\/+$/, '')}/#/alerts">Alertmanager (silence, status)</a>` : ''}</p>
${d.budget ? html`<h2>Error budget</h2><p id="exhaustion">At the latest evaluation (${isoMinute(d.budget.atMs)} UTC): ${exhaustionSentence(d.budget)}</p>${raw(budgetBar(d.budget.remaining, { width: 400, height: 24 }))}` : ''}
<h2>Burn rates, indicator and budget</h2>
<div class="chart" data-chart="slo" data-title="SLO ${a.labels.slo}" data-src="${src}" data-start="${new Date(a.startsAtMs).toISOString()}" data-end="${a.endsAtMs === null ? '' : new Date(a.endsAtMs).toISOString()}"></div>
<h2>Annotations</h2><table id="annotations"><tbody>${annotations.map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</tbody></table>
<h2>Previous occurrences</h2>
${d.history.length === 0 ? html`<p class="muted">No notification recorded.</p>` : html`<p>${new Set(d.history.map((h) => h.startsAtMs)).size} episode(s) of this alert; every notification, oldest first:</p><table id="alert-history"><thead><tr><th>time</th><th>notification</th><th>episode started</th><th>delivered</th></tr></thead><tbody>${d.history.map((h) => html`<tr><td>${isoMinute(h.atMs)}</td><td>${h.kind}</td><td>${isoMinute(h.startsAtMs)}</td><td>${h.delivered ? 'yes' : h.superseded ? 'superseded by a later one' : 'pending'}</td></tr>`)}</tbody></table>`}`;
  return page({ title: `Alert ${a.labels.slo ?? a.fingerprint}`, section: 'alerts', crumbs: [['Alerts', '/ui/alerts']], body });
}
