// The monitor pages, for ML engineers and on-call: drift (heatmap, drift table with reference and
// current on the same bins, slice matrix, and, from an alert link, the SLO's burn rates), one
// feature over time, the label metrics, and the overview. Tables are rendered here; the charts
// fetch their JSON from the API (ui/client) when scrolled into view.
import { formatDurationMs, type MonitorPlan, type SloPlan } from '../definitions/index.js';
import { ALL_SLICE, type AlertState } from '../monitor/index.js';
import { contributionBars, overlaidHistogram, sparkline } from './svg.js';
import { html, isoMinute, num, numbersTable, page, query, raw, type Raw } from './html.js';
import { currentBins, decisionText, type DistributionBins, type DriftRow, type HistoryPoint, type ReferenceBins } from './monitor-data.js';

export const PAGE_ROWS = 50;

export interface DriftPageData {
  plan: MonitorPlan;
  plans: MonitorPlan[];
  windowMs: number;
  /** The evaluation shown (newest unless `at` chose another), null before any. */
  endMs: number | null;
  /** Every (feature, slice) row of that evaluation. */
  rows: DriftRow[];
  table: DriftTable;
  /** PSI history and reference bins of the rows shown. */
  history: Map<string, HistoryPoint[]>;
  reference: Map<string, ReferenceBins>;
  params: DriftParams;
  /** The SLO named by an alert link, with the alerts of its series. */
  slo: { plan: SloPlan; alerts: AlertState[] } | null;
}

export interface DriftParams {
  slice?: string;
  feature?: string;
  slo?: string;
  drifted?: boolean;
  page: number;
}

export interface DriftTable {
  /** Rows of the page, sorted by q then PSI. */
  shown: DriftRow[];
  /** Rows matching the filters. */
  total: number;
  pageNo: number;
  pages: number;
  decided: number;
  drifted: number;
  undecided: number;
}

/** The drift table's rows: filtered by slice and feature (and drifted), sorted by q then PSI, one page. */
export function driftTable(rows: readonly DriftRow[], params: DriftParams): DriftTable {
  const matching = rows.filter((r) => (params.slice === undefined || r.slice === params.slice) && (params.feature === undefined || r.feature === params.feature));
  const decided = matching.filter((r) => r.drift !== null);
  const drifted = decided.filter((r) => r.drift === true);
  const listed = [...(params.drifted ? drifted : matching)].sort(compareDriftRows);
  const pages = Math.max(1, Math.ceil(listed.length / PAGE_ROWS));
  const pageNo = Math.min(Math.max(1, params.page), pages);
  return { shown: listed.slice((pageNo - 1) * PAGE_ROWS, pageNo * PAGE_ROWS), total: listed.length, pageNo, pages, decided: decided.length, drifted: drifted.length, undecided: matching.length - decided.length };
}

function monitorHref(p: Record<string, string | number | boolean | undefined>): string {
  return `/ui/monitor${query(p)}`;
}

export function featureHref(monitor: string, feature: string, p: Record<string, string | number | undefined> = {}): string {
  return `/ui/monitor/${encodeURIComponent(monitor)}/features/${encodeURIComponent(feature)}${query(p)}`;
}

function badge(r: Pick<DriftRow, 'drift' | 'detail'>): Raw {
  const cls = r.drift === null ? 'none' : r.drift ? 'drift' : 'ok';
  return html`<span class="badge ${cls}">${decisionText(r)}</span>`;
}

/** Sort key of the drift table: q ascending (most significant first), then PSI descending. */
export function compareDriftRows(a: DriftRow, b: DriftRow): number {
  const qa = a.q_value ?? Number.POSITIVE_INFINITY;
  const qb = b.q_value ?? Number.POSITIVE_INFINITY;
  return qa - qb || (b.value ?? -1) - (a.value ?? -1) || (a.feature < b.feature ? -1 : a.feature > b.feature ? 1 : a.slice < b.slice ? -1 : 1);
}

/** The drift decision rule in one paragraph (what "drift", "no drift" and "no decision" mean here). */
export function decisionRule(plan: MonitorPlan): Raw {
  const d = plan.drift;
  return html`<p class="explain">How drift is decided: each (feature, slice, window) compares the current window with the reference ${isoMinute(plan.reference.fromMs)} .. ${isoMinute(plan.reference.toMs)} on the reference's own bins (10 deciles for numbers, the reference's categories plus "unseen").
${d.mode === 'calibrated' ? `A test is drift when its p-value (PSI and binned KS, Bonferroni) survives Benjamini-Hochberg at FDR ${d.fdr} across all tests of the evaluation (its q ≤ ${d.fdr}) and its PSI is at least ${d.psiFloor}.` : `A test is drift when its PSI is above the fixed threshold.`}
With fewer than ${d.minSamples} rows on either side, or no reference for the slice, there is no decision: it is shown as such, never as drift.</p>`;
}

function sloPanel(data: DriftPageData): Raw {
  if (!data.slo) return html``;
  const { plan: slo, alerts } = data.slo;
  const feature = data.params.feature;
  const slice = data.params.slice;
  const firing = alerts.filter((a) => a.status === 'firing');
  const first = [...alerts].sort((a, b) => a.startsAtMs - b.startsAtMs)[0];
  const latest = alerts[0];
  const src = `/monitor/slo${query({ monitor: data.plan.name, slo: slo.name, feature, slice })}`;
  const rules = slo.policy.map((r) => `${r.severity}: ${formatDurationMs(r.longWindowMs)} and ${formatDurationMs(r.shortWindowMs)} above ${r.burnRate}x`).join('; ');
  return html`<section id="slo-panel"><h2>Why it fired: SLO ${slo.name}</h2>
<p>Objective ${num(slo.objective * 100)}% of evaluations good (indicator <b>${slo.indicator}</b>${slo.feature ? html` on <code>${slo.feature}</code>` : ''}${slo.max !== null ? `, bad above ${slo.max}` : ''}${slo.min !== null ? `, bad below ${slo.min}` : ''}) over ${formatDurationMs(slo.windowMs)} windows; error budget ${num((1 - slo.objective) * 100)}%. Alert rules: ${rules}.</p>
${alerts.length === 0
  ? html`<p class="muted">No alert has been raised for this series.</p>`
  : html`<p>${firing.length > 0 ? html`<span class="badge firing">firing</span>` : html`<span class="badge resolved">resolved</span>`} since <b>${isoMinute(first!.startsAtMs)} UTC</b>${latest?.annotations.summary ? html`: ${latest.annotations.summary}` : ''}. <a href="/ui/alerts/${latest!.fingerprint}">alert details</a></p>`}
<div class="chart" data-chart="slo" data-title="SLO ${slo.name}" data-src="${src}" data-start="${first ? new Date(first.startsAtMs).toISOString() : ''}" data-end="${first?.endsAtMs ? new Date(first.endsAtMs).toISOString() : ''}"></div>
</section>`;
}

/** The reference vs current mini chart of a row, on the reference's bins. */
function miniDistribution(row: DriftRow, reference: ReferenceBins | undefined): Raw {
  const cur = currentBins(row);
  if (!reference || !cur) return html`<span class="muted">-</span>`;
  return raw(overlaidHistogram(reference.counts, cur, { width: 120, height: 32, labels: reference.labels }));
}

function psiSparkline(history: HistoryPoint[] | undefined, floor: number): Raw {
  if (!history || history.length === 0) return html``;
  return raw(sparkline(history.map((r) => r.value), { width: 120, height: 28, threshold: floor, markers: history.map((r) => (r.drift === null ? 'none' : r.drift ? 'drift' : 'ok')) }));
}

export function driftPage(data: DriftPageData): string {
  const { plan, windowMs, endMs, params } = data;
  const window = formatDurationMs(windowMs);
  const slices = [...new Set(data.rows.map((r) => r.slice))].sort((a, b) => (a === ALL_SLICE ? -1 : b === ALL_SLICE ? 1 : a < b ? -1 : 1));
  const { shown, total, pageNo, pages } = data.table;
  const base = { monitor: plan.name, window, slice: params.slice, feature: params.feature, slo: params.slo, drifted: params.drifted ? 'true' : undefined, at: endMs === null ? undefined : new Date(endMs).toISOString() };
  const filters = html`<form class="filters" method="get" action="/ui/monitor">
<label>monitor<select name="monitor">${data.plans.map((p) => html`<option${raw(p.name === plan.name ? ' selected' : '')}>${p.name}</option>`)}</select></label>
<label>window<select name="window">${plan.windowsMs.map((w) => html`<option${raw(w === windowMs ? ' selected' : '')}>${formatDurationMs(w)}</option>`)}</select></label>
<label>slice<select name="slice"><option value="">every slice</option>${slices.map((s) => html`<option${raw(s === params.slice ? ' selected' : '')}>${s}</option>`)}</select></label>
<label>feature<select name="feature"><option value="">every feature</option>${plan.features.map((f) => html`<option${raw(f.name === params.feature ? ' selected' : '')}>${f.name}</option>`)}</select></label>
<label>only drifted<select name="drifted"><option value="">no</option><option value="true"${raw(params.drifted ? ' selected' : '')}>yes</option></select></label>
${params.slo ? html`<input type="hidden" name="slo" value="${params.slo}">` : ''}<button type="submit">Show</button>
${plan.labels ? html`<a href="/ui/monitor/${encodeURIComponent(plan.name)}/labels">label metrics of this monitor</a>` : ''}</form>`;
  if (endMs === null) {
    return page({ title: `Drift: ${plan.name}`, section: 'monitor', body: html`${filters}<p>This monitor has not been evaluated yet: run <code>tidemark monitor</code>.</p>${decisionRule(plan)}` });
  }
  const heatSlice = params.slice ?? ALL_SLICE;
  const table = html`<table id="drift-table"><thead><tr><th>feature</th><th>slice</th><th>kind</th><th class="num">PSI</th><th class="num">KS ± bound</th><th class="num">p</th><th class="num">q (BH)</th><th>decision</th><th class="num">n_ref</th><th class="num">n_cur</th><th>reference vs current</th><th>PSI, last evaluations</th></tr></thead>
<tbody>${shown.map(
    (r) => html`<tr data-feature="${r.feature}" data-slice="${r.slice}"><td><a href="${featureHref(plan.name, r.feature, { slice: r.slice, window, at: new Date(endMs).toISOString() })}">${r.feature}</a></td><td><a href="${monitorHref({ ...base, slice: r.slice, page: undefined })}">${r.slice}</a></td>
<td>${String((r.detail as { kind?: string }).kind ?? '')}</td><td class="num">${num(r.value)}</td><td class="num">${r.ks === null ? '-' : `${num(r.ks)} ± ${num(r.ks_error_bound)}`}</td><td class="num">${num(r.p_value)}</td><td class="num">${num(r.q_value)}</td><td>${badge(r)}</td>
<td class="num">${r.n_ref}</td><td class="num">${r.n_cur}</td><td>${miniDistribution(r, data.reference.get(`${r.feature}\u0000${r.slice}`))}</td><td>${psiSparkline(data.history.get(`${r.feature}\u0000${r.slice}`), plan.drift.psiFloor)}</td></tr>`,
  )}</tbody></table>
<p class="pager">${pageNo > 1 ? html`<a href="${monitorHref({ ...base, page: pageNo - 1 })}" rel="prev">previous</a>` : ''} page ${pageNo} of ${pages} (${total} rows) ${pageNo < pages ? html`<a href="${monitorHref({ ...base, page: pageNo + 1 })}" rel="next">next</a>` : ''}</p>`;
  const body = html`${filters}
${sloPanel(data)}
<h2 id="drift-title">Drift is decided for ${data.table.drifted} of ${data.table.decided} tests (BH q ≤ ${plan.drift.fdr}) at ${isoMinute(endMs)} UTC, ${window} window${data.table.undecided > 0 ? `; ${data.table.undecided} without a decision` : ''}</h2>
${table}
<h2>Heatmap: PSI per feature and evaluation (slice ${heatSlice})</h2>
<div class="chart" data-chart="heatmap" data-title="PSI heatmap" data-src="/monitor/drift${query({ monitor: plan.name, window, slice: heatSlice, format: 'columns', from: new Date(endMs - heatmapEvaluations(plan) * plan.intervalMs + 1).toISOString(), to: new Date(endMs).toISOString(), limit: HEATMAP_CELLS })}" data-feature-href="${featureHref(plan.name, 'FEATURE', { slice: heatSlice, window })}"></div>
${sliceMatrix(data, slices, base)}
${decisionRule(plan)}`;
  return page({ title: `Drift: ${plan.name}`, section: 'monitor', body });
}

/** At most this many heatmap cells are fetched (the API's default row limit cap). */
export const HEATMAP_CELLS = 10_000;

/** Evaluations the heatmap shows: 30, fewer when the monitor has so many features that the cells would pass HEATMAP_CELLS. */
export function heatmapEvaluations(plan: MonitorPlan): number {
  return Math.max(1, Math.min(30, Math.floor(HEATMAP_CELLS / plan.features.length)));
}

/** The slice matrix shows at most this many slice values (columns) and features (rows): a page stays small whatever the monitor's width. */
export const MATRIX_SLICES = 40;
export const MATRIX_FEATURES = 50;

/**
 * Feature x slice value, coloured by the evaluation's PSI (n in the title); a cell drills into that
 * slice. Columns are the slice values with the highest PSI first (where it drifted is what on-call
 * looks for), at most MATRIX_SLICES; rows are the monitor's features, or, past MATRIX_FEATURES, the
 * features of the drift table's page. The filters above reach every other slice.
 */
function sliceMatrix(data: DriftPageData, slices: string[], base: Record<string, string | undefined>): Raw {
  const sliceValues = slices.filter((s) => s !== ALL_SLICE);
  if (sliceValues.length === 0) return html``;
  const byKey = new Map(data.rows.map((r) => [`${r.feature}\u0000${r.slice}`, r]));
  const all = data.plan.features.map((f) => f.name);
  // Past MATRIX_FEATURES (and with no feature filter), the rows are the table page's features.
  const paged = !data.params.feature && all.length > MATRIX_FEATURES;
  const features = data.params.feature ? [data.params.feature] : paged ? [...new Set(data.table.shown.map((r) => r.feature))] : all;
  const worst = new Map<string, number>();
  for (const s of sliceValues) worst.set(s, Math.max(-1, ...features.map((f) => byKey.get(`${f}\u0000${s}`)?.value ?? -1)));
  const columns = [...sliceValues].sort((a, b) => worst.get(b)! - worst.get(a)! || (a < b ? -1 : 1)).slice(0, MATRIX_SLICES);
  const note =
    columns.length < sliceValues.length || paged
      ? html`<p class="muted">The ${columns.length} of ${sliceValues.length} slice values with the highest PSI${paged ? html`, for the ${features.length} features of this page of the table (${all.length} in all)` : ''}; pick a slice or a feature above for any other.</p>`
      : html`<p class="muted">Slice values with the highest PSI first.</p>`;
  return html`<h2>Slices: PSI per feature and slice value</h2>
${note}
<div class="matrix-wrap"><table id="slice-matrix" class="matrix"><thead><tr><th>feature</th>${columns.map((s) => html`<th title="${s}">${s.replace(/^[^=]*=/, '')}</th>`)}</tr></thead><tbody>
${features.map(
  (f) => html`<tr><th>${f}</th>${columns.map((s) => {
    const r = byKey.get(`${f}\u0000${s}`);
    if (!r || r.value === null) return html`<td class="cell none">-</td>`;
    return html`<td class="cell${r.drift ? ' drifted' : ''}" style="background:${heatColor(r.value)}" title="${f} ${s}: PSI ${num(r.value)}, n ${r.n_cur}, ${decisionText(r)}"><a href="${monitorHref({ ...base, slice: s, feature: f, page: undefined })}">${num(r.value, 2)}</a></td>`;
  })}</tr>`,
)}</tbody></table></div>`;
}

/** The heatmap's colour scale (white -> red over PSI 0..0.5), shared with the canvas heatmap. */
export function heatColor(psi: number): string {
  const x = Math.max(0, Math.min(1, psi / 0.5));
  return `rgb(255,${Math.round(255 - 180 * x)},${Math.round(255 - 230 * Math.min(1, x * 1.6))})`;
}

export interface FeaturePageData {
  plan: MonitorPlan;
  feature: string;
  slice: string;
  windowMs: number;
  /** The evaluation the distribution shows. */
  atMs: number | null;
  row: DriftRow | null;
  /** Every slice's row at atMs, for the breakdown. */
  slices: DriftRow[];
  distribution: DistributionBins | null;
}

export function featurePage(d: FeaturePageData): string {
  const window = formatDurationMs(d.windowMs);
  const src = `/monitor/drift${query({ monitor: d.plan.name, feature: d.feature, slice: d.slice, window, limit: 10_000 })}`;
  const b = d.distribution;
  const distribution =
    d.row && b
      ? html`<div class="two"><figure><figcaption>Reference vs current on the reference's bins (proportions)</figcaption>${raw(overlaidHistogram(b.counts, b.current, { width: 560, height: 220, labels: b.labels }))}</figure>
<figure><figcaption>Each bin's term of the PSI (${num(d.row.value)})</figcaption>${raw(contributionBars(b.contributions, { width: 560, height: 220, labels: b.labels }))}</figure></div>
${numbersTable('Distribution', ['bin', 'reference', 'reference %', 'current', 'current %', 'PSI term'], b.labels.map((label, i) => [label, b.counts[i] ?? 0, pct(b.counts, i), b.current[i] ?? 0, pct(b.current, i), b.contributions[i] ?? null]))}`
      : html`<p class="muted">No distribution stored for this evaluation${d.row?.drift === null ? ` (${decisionText(d.row)})` : ''}.</p>`;
  const breakdown = [...d.slices].sort(compareDriftRows);
  const body = html`<form class="filters" method="get"><label>slice<select name="slice">${[...new Set([ALL_SLICE, ...d.slices.map((s) => s.slice)])].map((s) => html`<option${raw(s === d.slice ? ' selected' : '')}>${s}</option>`)}</select></label>
<label>window<select name="window">${d.plan.windowsMs.map((w) => html`<option${raw(w === d.windowMs ? ' selected' : '')}>${formatDurationMs(w)}</option>`)}</select></label><button type="submit">Show</button></form>
<h2>PSI and KS over time</h2><p class="muted">Filled red: drift; hollow: no drift; grey: no decision. Click a point to show its distribution below.</p>
<div class="chart" data-chart="psi" data-title="PSI over time" data-src="${src}" data-threshold="${d.plan.drift.psiFloor}" data-at="${d.atMs === null ? '' : new Date(d.atMs).toISOString()}"></div>
<h2>Rows in the window</h2><div class="chart" data-chart="ncur" data-title="Rows per window" data-src="${src}"></div>
<h2 id="distribution">Distribution at ${isoMinute(d.atMs)} UTC${d.row ? html`: PSI ${num(d.row.value)}, ${badge(d.row)}, q ${num(d.row.q_value)}, n_ref ${d.row.n_ref}, n_cur ${d.row.n_cur}` : ''}</h2>
${distribution}
<h2>Slices at ${isoMinute(d.atMs)} UTC</h2>
<table id="slice-breakdown"><thead><tr><th>slice</th><th class="num">PSI</th><th class="num">q</th><th>decision</th><th class="num">n_cur</th></tr></thead><tbody>${breakdown.slice(0, 200).map(
    (r) => html`<tr><td><a href="${featureHref(d.plan.name, d.feature, { slice: r.slice, window, at: d.atMs === null ? undefined : new Date(d.atMs).toISOString() })}">${r.slice}</a></td><td class="num">${num(r.value)}</td><td class="num">${num(r.q_value)}</td><td>${badge(r)}</td><td class="num">${r.n_cur}</td></tr>`,
  )}</tbody></table>${breakdown.length > 200 ? html`<p class="muted">the 200 most significant of ${breakdown.length} slices</p>` : ''}
${decisionRule(d.plan)}`;
  return page({ title: `${d.feature} (${d.slice}, ${window})`, section: 'monitor', crumbs: [['Drift', monitorHref({ monitor: d.plan.name, window })]], body });
}

function pct(counts: readonly number[], i: number): string {
  const total = counts.reduce((s, c) => s + c, 0);
  return total > 0 ? `${num(((counts[i] ?? 0) / total) * 100, 3)}%` : '-';
}

export interface LabelsPageData {
  plan: MonitorPlan;
  metric: string;
  metrics: string[];
  slice: string;
  slices: string[];
  windowMs: number;
  /** Unlabelled predictions and labels without a prediction at the latest evaluation. */
  backlog: { atMs: number; labelled: number; unlabelled: number; orphans: number | null } | null;
}

export function labelsPage(d: LabelsPageData): string {
  const window = formatDurationMs(d.windowMs);
  const slo = d.plan.slos.find((s) => s.indicator === d.metric);
  const bound = slo ? (slo.min ?? slo.max) : null;
  const src = `/monitor/metrics${query({ monitor: d.plan.name, metric: d.metric, slice: d.slice, window, limit: 10_000 })}`;
  const body = html`<form class="filters" method="get"><label>metric<select name="metric">${d.metrics.map((m) => html`<option${raw(m === d.metric ? ' selected' : '')}>${m}</option>`)}</select></label>
<label>slice<select name="slice">${d.slices.map((s) => html`<option${raw(s === d.slice ? ' selected' : '')}>${s}</option>`)}</select></label>
<label>window<select name="window">${d.plan.windowsMs.map((w) => html`<option${raw(w === d.windowMs ? ' selected' : '')}>${formatDurationMs(w)}</option>`)}</select></label><button type="submit">Show</button></form>
<h2>${d.metric} over time (${d.slice}, ${window} windows)</h2>
${slo ? html`<p>SLO <a href="${monitorHref({ monitor: d.plan.name, slo: slo.name, slice: d.slice === ALL_SLICE ? undefined : d.slice })}">${slo.name}</a>: ${slo.min !== null ? `bad below ${slo.min}` : `bad above ${slo.max}`}, objective ${num(slo.objective * 100)}%.</p>` : ''}
<div class="chart" data-chart="labels" data-title="${d.metric} over time" data-metric="${d.metric}" data-src="${src}"${raw(bound === null ? '' : ` data-bound="${bound}"`)}></div>
<h2>Label backlog</h2>
${d.backlog
  ? html`<p>At ${isoMinute(d.backlog.atMs)} UTC: ${d.backlog.labelled} predictions labelled, ${d.backlog.unlabelled} still waiting for a label (the label delay is ${d.plan.labels ? formatDurationMs(d.plan.labels.labelDelayMs) : '-'})${d.backlog.orphans === null ? '' : `, ${d.backlog.orphans} labels without a prediction`}.</p>`
  : html`<p class="muted">No label metrics stored yet.</p>`}`;
  return page({ title: `Labels: ${d.plan.name}`, section: 'monitor', crumbs: [['Drift', monitorHref({ monitor: d.plan.name })]], body });
}
