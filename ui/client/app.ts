// The dashboard's browser code: pages are rendered on the server; this adds the interactive charts
// (each fetches aggregated JSON from the API when scrolled into view), the heatmap, the table
// filter, the live "try it" read and the consistency probe. All state stays in the URL.
import { fillNumbers, formatNumber, isoMinute, timeChart, type Series } from './charts.js';
import { drawHeatmap, type HeatmapData } from './heatmap.js';

const COLORS = { psi: '#1f5fbf', ks: '#8a5cc2', threshold: '#c0392b', drift: '#c0392b', ok: '#1f5fbf', none: '#999999', ref: '#777777', cur: '#1f5fbf', long: '#c0392b', short: '#e67e22', good: '#2e8b57', bad: '#c0392b', n: '#9bb7e0' };

const cache = new Map<string, Promise<unknown>>();
/** JSON from the API, fetched once per URL per page. */
function getJson<T>(url: string): Promise<T> {
  let p = cache.get(url);
  if (!p) {
    p = fetch(url, { headers: { accept: 'application/json' } }).then(async (r) => {
      const body = (await r.json()) as { message?: string };
      if (!r.ok) throw new Error(body.message ?? `${r.status} from ${url}`);
      return body;
    });
    cache.set(url, p);
  }
  return p as Promise<T>;
}

/** Metric rows, oldest first, from /monitor/metrics ({metrics}) or /monitor/drift ({drift}). */
async function metricRows(url: string): Promise<MetricRecord[]> {
  const body = await getJson<{ metrics?: MetricRecord[]; drift?: MetricRecord[] }>(url);
  return [...(body.metrics ?? body.drift ?? [])].reverse();
}

interface MetricRecord {
  window_end: string;
  value: number | null;
  ks: number | null;
  n_cur: number;
  n_ref: number;
  drift: boolean | null;
  q_value: number | null;
  detail: { note?: string };
}

/** Set URL parameters and load that page (all state lives in the URL). */
function navigate(params: Record<string, string>): void {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.toString());
}

function showError(el: HTMLElement, e: unknown): void {
  el.classList.add('chart-error');
  el.textContent = `could not draw this chart: ${(e as Error).message}`;
}

const renderers: Record<string, (el: HTMLElement) => Promise<void>> = {
  /** PSI (step) and KS over time for one (feature, slice, window), with the decision markers. */
  async psi(el) {
    const rows = await metricRows(el.dataset.src!);
    const t = rows.map((r) => Date.parse(r.window_end));
    const threshold = Number(el.dataset.threshold);
    const mark = (want: boolean | null): (number | null)[] => rows.map((r) => (r.drift === want ? (r.value ?? 0) : null));
    const series: Series[] = [
      { label: 'PSI', values: rows.map((r) => r.value), stroke: COLORS.psi, kind: 'step' },
      { label: `PSI floor ${threshold}`, values: rows.map(() => threshold), stroke: COLORS.threshold, dash: [6, 4], width: 1 },
      { label: 'drift', values: mark(true), stroke: COLORS.drift, fill: COLORS.drift, kind: 'points' },
      { label: 'no drift', values: mark(false), stroke: COLORS.ok, fill: '#ffffff', kind: 'points' },
      { label: 'no decision', values: mark(null), stroke: COLORS.none, fill: COLORS.none, kind: 'points' },
      { label: 'KS', values: rows.map((r) => r.ks), stroke: COLORS.ks, scale: 'y2', dash: [2, 2], width: 1 },
    ];
    const at = el.dataset.at ? Date.parse(el.dataset.at) : null;
    timeChart(el, { t, series, yLabel: 'PSI', y2Label: 'KS', markers: at === null ? [] : [{ atMs: at, label: 'shown below', stroke: '#333' }], onClick: (ms) => navigate({ at: new Date(ms).toISOString() }) });
    fillNumbers(el, ['window end', 'PSI', 'KS', 'q (BH)', 'decision', 'n_ref', 'n_cur'], rows.map((r) => [isoMinute(Date.parse(r.window_end)), r.value, r.ks, r.q_value, decision(r), r.n_ref, r.n_cur]));
  },

  /** Current-window row counts: low volume explains a missing decision. */
  async ncur(el) {
    const rows = await metricRows(el.dataset.src!);
    timeChart(el, { t: rows.map((r) => Date.parse(r.window_end)), height: 140, yLabel: 'n_cur', series: [{ label: 'rows in the window', values: rows.map((r) => r.n_cur), stroke: COLORS.n, fill: COLORS.n, kind: 'bars' }] });
    fillNumbers(el, ['window end', 'n_cur'], rows.map((r) => [isoMinute(Date.parse(r.window_end)), r.n_cur]));
  },

  /** A label metric (AUC, log loss, ...) over time against the SLO's bound, with labelled counts. */
  async labels(el) {
    const rows = await metricRows(el.dataset.src!);
    const bound = el.dataset.bound === undefined ? null : Number(el.dataset.bound);
    const series: Series[] = [{ label: el.dataset.metric ?? 'metric', values: rows.map((r) => r.value), stroke: COLORS.psi, kind: 'step' }];
    if (bound !== null) series.push({ label: `SLO bound ${bound}`, values: rows.map(() => bound), stroke: COLORS.threshold, dash: [6, 4], width: 1 });
    series.push({ label: 'labelled', values: rows.map((r) => r.n_cur), stroke: COLORS.n, fill: 'rgba(155,183,224,0.5)', kind: 'bars', scale: 'y2' });
    timeChart(el, { t: rows.map((r) => Date.parse(r.window_end)), series, yLabel: el.dataset.metric ?? '', y2Label: 'labelled' });
    fillNumbers(el, ['window end', el.dataset.metric ?? 'value', 'labelled'], rows.map((r) => [isoMinute(Date.parse(r.window_end)), r.value, r.n_cur]));
  },

  /** One burn-rate chart per policy rule, the indicator, and the error budget, on one synced cursor. */
  async slo(el) {
    const s = await getJson<SloSeries>(el.dataset.src!);
    const start = el.dataset.start ? Date.parse(el.dataset.start) : null;
    const end = el.dataset.end ? Date.parse(el.dataset.end) : null;
    const markers = [...(start === null ? [] : [{ atMs: start, label: 'alert start', stroke: '#c0392b' }]), ...(end === null ? [] : [{ atMs: end, label: 'resolved', stroke: '#2e8b57' }])];
    const box = (title: string): HTMLElement => {
      const fig = document.createElement('figure');
      fig.className = 'chart-box';
      fig.appendChild(document.createElement('figcaption')).textContent = title;
      const chart = fig.appendChild(document.createElement('div'));
      chart.className = 'chart drawn';
      chart.dataset.title = title;
      el.appendChild(fig);
      return chart;
    };
    for (const rule of s.rules) {
      const c = box(`${rule.severity}: burn rate over ${rule.long} and ${rule.short}, threshold ${rule.threshold}`);
      const bands = firingSpans(s.t, rule.firing).map(([a, b]) => ({ fromMs: a, toMs: b, fill: 'rgba(192,57,43,0.15)' }));
      timeChart(c, {
        t: s.t,
        bands,
        markers,
        yLabel: 'burn rate',
        series: [
          { label: `long ${rule.long}`, values: rule.longBurn, stroke: COLORS.long, kind: 'step' },
          { label: `short ${rule.short}`, values: rule.shortBurn, stroke: COLORS.short, kind: 'step' },
          { label: `threshold ${rule.threshold}`, values: s.t.map(() => rule.threshold), stroke: '#333', dash: [6, 4], width: 1 },
        ],
      });
      fillNumbers(c, ['window end', `long ${rule.long}`, `short ${rule.short}`, 'threshold', 'firing'], s.t.map((t, i) => [isoMinute(t), rule.longBurn[i] ?? null, rule.shortBurn[i] ?? null, rule.threshold, rule.firing[i] ? 'yes' : 'no']));
    }
    const name = s.slo.indicator;
    const bound = s.slo.min ?? s.slo.max;
    const ind = box(`indicator: ${name}${bound === null ? '' : ` (bad ${s.slo.min !== null ? 'below' : 'above'} ${bound})`}`);
    const indicatorSeries: Series[] = [
      { label: name, values: s.indicator, stroke: COLORS.psi, kind: 'step' },
      { label: 'bad', values: s.bad.map((b, i) => (b !== null && b > 0 ? (s.indicator[i] ?? null) : null)), stroke: COLORS.bad, fill: COLORS.bad, kind: 'points' },
    ];
    if (bound !== null) indicatorSeries.push({ label: `bound ${bound}`, values: s.t.map(() => bound), stroke: COLORS.threshold, dash: [6, 4], width: 1 });
    timeChart(ind, { t: s.t, markers, yLabel: name, series: indicatorSeries });
    fillNumbers(ind, ['window end', name, 'observation'], s.t.map((t, i) => [isoMinute(t), s.indicator[i] ?? null, s.bad[i] === null ? 'none' : (s.bad[i] ?? 0) > 0 ? 'bad' : 'good']));
    const budget = box(`error budget left (budget period ${s.budgetPeriod})`);
    timeChart(budget, {
      t: s.t,
      markers,
      yLabel: 'budget left',
      series: [
        { label: `rolling ${s.budgetPeriod}`, values: s.budget, stroke: COLORS.good, fill: 'rgba(46,139,87,0.2)' },
        { label: 'overspent', values: s.budget.map((b) => (b !== null && b < 0 ? b : null)), stroke: COLORS.bad, fill: 'rgba(192,57,43,0.3)' },
        { label: 'burn-down this period', values: s.periodBudget, stroke: '#1f5fbf', kind: 'step', width: 1 },
        { label: 'ideal', values: s.ideal, stroke: '#555', dash: [4, 4], width: 1 },
      ],
    });
    fillNumbers(budget, ['window end', `rolling ${s.budgetPeriod}`, 'burn-down this period', 'ideal'], s.t.map((t, i) => [isoMinute(t), s.budget[i] ?? null, s.periodBudget[i] ?? null, s.ideal[i] ?? null]));
  },

  /** The materializer tile of the overview: what GET /status/materializer reports. */
  async status(el) {
    const s = await getJson<MaterializerStatus>(el.dataset.src!);
    const lines: string[] = [];
    const m = s.materializer;
    if (m === null) lines.push('no materializer metrics here: start serve with --materializer-metrics-url');
    else if (m.kind === 'replay') lines.push(`${m.rebuilt ? 'rebuilt from the offline store' : 'replayed'}: ${m.events.toLocaleString('en-US')} events in ${formatNumber(m.seconds)} s; ${m.badEvents} bad events, ${m.lateTileEvents} late tile updates`);
    else if (!m.reachable) lines.push(`materializer metrics unreachable: ${m.error}`);
    else {
      lines.push(`materializer ${m.healthy === false ? 'UNHEALTHY' : 'healthy'}; freshness p99 ≤ ${m.freshnessSeconds.p99AtMost === null ? '-' : `${formatNumber(m.freshnessSeconds.p99AtMost)} s`}`);
      lines.push(`commit lag ${m.commitLag.total.toLocaleString('en-US')} records; ${m.deadLetters} dead letters; ${m.events.toLocaleString('en-US')} events`);
    }
    const notReady = s.views.filter((v) => v.status !== 'ready');
    lines.push(notReady.length === 0 ? `all ${s.views.length} view versions ready` : `not ready: ${notReady.map((v) => `${v.view} (${v.status})`).join(', ')}`);
    if (s.storeError) lines.push(`store error: ${s.storeError}`);
    el.replaceChildren(...lines.map((text) => Object.assign(document.createElement('div'), { textContent: text })));
    if (s.storeError || notReady.length > 0 || (m !== null && m.kind === 'metrics' && (!m.reachable || m.healthy === false))) el.closest('.tile')?.classList.replace('good', 'bad');
  },

  async heatmap(el) {
    const c = await getJson<DriftColumns>(el.dataset.src!);
    // The query names one slice and one window: one series per feature.
    const data: HeatmapData = { features: c.feature, t: c.window_end.map((e) => Date.parse(e)), psi: c.psi, drift: c.drift };
    drawHeatmap(el, data, (feature, endMs) => {
      const url = new URL(el.dataset.featureHref!.replace('FEATURE', encodeURIComponent(feature)), location.href);
      url.searchParams.set('at', new Date(endMs).toISOString());
      location.assign(url.toString());
    });
  },
};

/** GET /monitor/slo (monitor/slo-series.ts). */
export interface SloSeries {
  slo: { name: string; indicator: string; min: number | null; max: number | null };
  budgetPeriod: string;
  t: number[];
  indicator: (number | null)[];
  bad: (number | null)[];
  rules: { severity: string; long: string; short: string; threshold: number; longBurn: (number | null)[]; shortBurn: (number | null)[]; firing: boolean[] }[];
  budget: (number | null)[];
  periodBudget: number[];
  ideal: number[];
}

/** GET /monitor/drift?format=columns (monitor/drift-columns.ts). */
interface DriftColumns {
  window_end: string[];
  feature: string[];
  psi: (number | null)[][];
  drift: (boolean | null)[][];
}

function decision(r: MetricRecord): string {
  return r.drift === null ? `no decision (${r.detail.note ?? 'none'})` : r.drift ? 'drift' : 'no drift';
}

/** [first, last] evaluation time of each run of firing evaluations. */
function firingSpans(t: number[], firing: boolean[]): [number, number][] {
  const out: [number, number][] = [];
  let from: number | null = null;
  firing.forEach((f, i) => {
    if (f && from === null) from = t[i]!;
    if (!f && from !== null) {
      out.push([from, t[i - 1]!]);
      from = null;
    }
  });
  if (from !== null) out.push([from, t[t.length - 1]!]);
  return out;
}

/** Draw each chart when it scrolls into view. */
function drawCharts(): void {
  const pending = [...document.querySelectorAll<HTMLElement>('[data-chart]')];
  const draw = (el: HTMLElement): void => {
    const render = renderers[el.dataset.chart!];
    if (!render || el.classList.contains('drawn')) return;
    el.classList.add('drawn');
    render(el).then(
      () => el.setAttribute('data-ready', 'true'),
      (e: unknown) => showError(el, e),
    );
  };
  if (!('IntersectionObserver' in window)) return pending.forEach(draw);
  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      io.unobserve(e.target);
      draw(e.target as HTMLElement);
    }
  }, { rootMargin: '200px' });
  pending.forEach((el) => io.observe(el));
}

/** Type-ahead filter of a table: rows whose text contains every word; the query is kept in the URL. */
function tableFilters(): void {
  for (const input of document.querySelectorAll<HTMLInputElement>('input[data-filter]')) {
    const table = document.getElementById(input.dataset.filter!);
    if (!table) continue;
    const apply = (): void => {
      const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      for (const row of table.querySelectorAll<HTMLTableRowElement>('tbody tr')) row.hidden = !words.every((w) => row.textContent!.toLowerCase().includes(w));
      const url = new URL(location.href);
      if (input.value) url.searchParams.set('q', input.value);
      else url.searchParams.delete('q');
      history.replaceState(null, '', url);
    };
    input.addEventListener('input', apply);
    apply();
  }
}

/** The live read of a view's features, shown with the curl line that makes the same request. */
function tryIt(): void {
  const form = document.querySelector<HTMLFormElement>('form#try-it');
  if (!form) return;
  const out = document.getElementById('try-it-result')!;
  const curl = document.getElementById('try-it-curl')!;
  const features = JSON.parse(form.dataset.features!) as string[];
  const update = (): { features: string[]; entities: Record<string, (string | number)[]> } => {
    const entities: Record<string, (string | number)[]> = {};
    for (const input of form.querySelectorAll<HTMLInputElement>('input[data-join-key]')) {
      const values = input.value.split(',').map((v) => v.trim()).filter(Boolean);
      entities[input.dataset.joinKey!] = values.map((v) => (input.dataset.kind === 'number' && v !== '' && !Number.isNaN(Number(v)) ? Number(v) : v));
    }
    const body = { features, entities };
    curl.textContent = `curl -s ${location.origin}/get-online-features -H 'content-type: application/json' -d '${JSON.stringify(body)}'`;
    return body;
  };
  form.addEventListener('input', update);
  update();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = update();
    out.textContent = 'reading…';
    fetch('/get-online-features', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      .then(async (r) => {
        const json = (await r.json()) as { metadata?: { feature_names: string[] }; results?: { values: unknown[]; statuses: string[]; event_timestamps: string[] }[]; message?: string };
        if (!r.ok || !json.results || !json.metadata) throw new Error(json.message ?? `HTTP ${r.status}`);
        const names = json.metadata.feature_names;
        const table = document.createElement('table');
        table.id = 'try-it-table';
        const head = table.createTHead().insertRow();
        for (const h of ['feature', 'value', 'status', 'event timestamp']) head.appendChild(document.createElement('th')).textContent = h;
        const tbody = table.createTBody();
        const rowsPerKey = json.results[0]!.values.length;
        for (let k = 0; k < rowsPerKey; k++) {
          names.forEach((name, i) => {
            const res = json.results![i]!;
            const tr = tbody.insertRow();
            for (const v of [i === 0 ? `${name} (key)` : name, formatValue(res.values[k]), res.statuses[k] ?? '', res.event_timestamps[k] ?? '']) tr.insertCell().textContent = v;
          });
        }
        out.replaceChildren(table);
      })
      .catch((err: unknown) => (out.textContent = `error: ${(err as Error).message}`));
  });
}

function formatValue(v: unknown): string {
  return typeof v === 'number' ? formatNumber(v) : v === null ? 'null' : String(v);
}

/** The live online/offline consistency probe of a view. */
function consistencyProbe(): void {
  const button = document.querySelector<HTMLButtonElement>('button#consistency-run');
  if (!button) return;
  const out = document.getElementById('consistency-result')!;
  button.addEventListener('click', () => {
    out.textContent = 'sampling keys and reading both paths…';
    const sample = Number((document.getElementById('consistency-sample') as HTMLInputElement | null)?.value ?? 100);
    fetch('/consistency/sample', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ view: button.dataset.view, sample }) })
      .then(async (r) => {
        const json = (await r.json()) as ConsistencyReport & { message?: string };
        if (!r.ok) throw new Error(json.message ?? `HTTP ${r.status}`);
        const table = document.createElement('table');
        table.id = 'consistency-table';
        const head = table.createTHead().insertRow();
        for (const h of ['feature', 'aggregation', 'agree (within tolerance)', 'bit-identical', 'max |diff|', 'mismatches']) head.appendChild(document.createElement('th')).textContent = h;
        const tbody = table.createTBody();
        const rate = (x: number | null): string => (x === null ? '-' : `${formatNumber(x * 100)}%`);
        for (const f of json.features) {
          const tr = tbody.insertRow();
          tr.dataset.feature = f.feature;
          for (const v of [f.feature, `${f.agg}${f.tolerance > 0 ? ` (tolerance ${f.tolerance})` : ''}`, rate(f.agreementRate), rate(f.exactMatchRate), f.maxAbsDiff === null ? '-' : formatNumber(f.maxAbsDiff), String(f.mismatches)]) tr.insertCell().textContent = v;
        }
        const summary = document.createElement('p');
        summary.id = 'consistency-summary';
        const bad = json.mismatches.length + json.mismatchesOmitted;
        summary.textContent = `${json.keysCompared} keys (${json.keysFrom}) compared at ${json.at}: ${bad === 0 ? 'online and offline agree on every value' : `${bad} values differ`}`;
        const parts: Node[] = [summary, table];
        if (json.mismatches.length > 0) {
          const list = document.createElement('table');
          list.id = 'consistency-mismatches';
          const h = list.createTHead().insertRow();
          for (const x of ['key', 'feature', 'online', 'offline']) h.appendChild(document.createElement('th')).textContent = x;
          const body = list.createTBody();
          for (const m of json.mismatches) {
            const tr = body.insertRow();
            for (const v of [JSON.stringify(m.key), m.feature, formatValue(m.online), formatValue(m.offline)]) tr.insertCell().textContent = v;
          }
          parts.push(list);
        }
        out.replaceChildren(...parts);
      })
      .catch((err: unknown) => (out.textContent = `error: ${(err as Error).message}`));
  });
}

/** GET /status/materializer (api/materializer-status.ts). */
interface MaterializerStatus {
  views: { view: string; status: string }[];
  storeError?: string;
  materializer:
    | null
    | { kind: 'replay'; rebuilt: boolean; events: number; badEvents: number; lateTileEvents: number; seconds: number }
    | { kind: 'metrics'; reachable: false; error: string }
    | { kind: 'metrics'; reachable: true; healthy: boolean | null; freshnessSeconds: { p99AtMost: number | null }; commitLag: { total: number }; deadLetters: number; events: number };
}

/** POST /consistency/sample (api/consistency.ts). */
interface ConsistencyReport {
  at: string;
  keysCompared: number;
  keysFrom: string;
  features: { feature: string; agg: string; tolerance: number; exactMatchRate: number | null; agreementRate: number | null; maxAbsDiff: number | null; mismatches: number }[];
  mismatches: { key: unknown; feature: string; online: unknown; offline: unknown }[];
  mismatchesOmitted: number;
}

/** Copy buttons next to code snippets. */
function copyButtons(): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>('button[data-copy]')) {
    button.addEventListener('click', () => {
      const text = document.getElementById(button.dataset.copy!)?.textContent ?? '';
      void navigator.clipboard?.writeText(text).then(() => (button.textContent = 'copied'));
    });
  }
}

drawCharts();
tableFilters();
tryIt();
consistencyProbe();
copyButtons();
