// The registry pages, for serving and ML engineers: every view with its entity, keys, source and
// features, and a view's detail: how each feature is computed, the tiles one read merges (drawn),
// the source schema, a live read with its curl line, a training snippet, and the live
// online/offline consistency probe.
import { formatDurationMs, LATEST_GROUP_HOP_MS, type Registry, type ViewPlan } from '../definitions/index.js';
import { lineage, tilePlanStrip } from './svg.js';
import { html, isoMinute, num, page, raw, type Raw } from './html.js';

export interface ViewsContext {
  registry: Registry;
  watermarkMs: number | null;
  /** Entity key values to prefill the live read with, per view. */
  sampleKeys: (view: ViewPlan) => string[];
  /** A consistency probe is possible (the server has an offline store). */
  offline: boolean;
  /** Monitors that watch a view's features: view -> monitor names. */
  watchedBy: (view: string) => string[];
  /** Monitors of a source and the views each reads. */
  monitorsOf: (source: string) => Record<string, string[]>;
}

function duration(ms: number | null): string {
  return ms === null ? '-' : formatDurationMs(ms);
}

function hopGroups(view: ViewPlan): string {
  return view.groups.map((g) => (g.hopMs === LATEST_GROUP_HOP_MS ? 'latest' : formatDurationMs(g.hopMs))).join(', ');
}

export function viewsPage(ctx: ViewsContext, q: string): string {
  const rows = ctx.registry.views.map((v) => {
    const source = ctx.registry.sources.find((s) => s.name === v.source);
    return html`<tr><td><a href="/ui/views/${encodeURIComponent(v.name)}">${v.name}</a></td><td>${v.entity}</td><td>${v.joinKeys.join(', ')}</td><td>${v.source}${source ? html` <span class="muted">(topic ${source.topic})</span>` : ''}</td>
<td class="num">${v.features.length}</td><td>${hopGroups(v)}</td><td>${duration(v.retentionMs)}</td><td>${ctx.watchedBy(v.name).join(', ') || '-'}</td></tr>`;
  });
  const body = html`<p>Registry version <code>${ctx.registry.version}</code>: ${ctx.registry.views.length} views over ${ctx.registry.sources.length} sources. Watermark (freshest materialized event): ${isoMinute(ctx.watermarkMs)} UTC.</p>
<div class="filters"><label>filter<input type="search" data-filter="views-table" value="${q}" placeholder="view, entity, key, source…" autofocus></label></div>
<table id="views-table"><thead><tr><th>view</th><th>entity</th><th>join keys</th><th>source</th><th class="num">features</th><th>hop groups</th><th>retention</th><th>monitored by</th></tr></thead>
<tbody>${rows}</tbody></table>`;
  return page({ title: 'Feature views', section: 'views', body });
}

export function viewPage(ctx: ViewsContext, view: ViewPlan): string {
  const source = ctx.registry.sources.find((s) => s.name === view.source)!;
  const features = view.features.map(
    (f) => html`<tr><td><code>${view.name}:${f.name}</code></td><td>${f.agg}${f.quantile === undefined ? '' : ` q=${f.quantile}`}</td><td>${f.field ?? '-'}</td><td>${duration(f.windowMs)}</td>
<td>${f.hopMs === LATEST_GROUP_HOP_MS ? 'latest' : formatDurationMs(f.hopMs)}</td><td class="num">${f.tilesPerWindow === null ? '-' : f.tilesPerWindow + 1}</td><td>${duration(f.ttlMs)}</td><td>${f.valueKind}</td></tr>`,
  );
  const refs = view.features.map((f) => `${view.name}:${f.name}`);
  const keys = ctx.sampleKeys(view);
  const kindOf = (i: number): string => source.fields[view.keyFields[i]!]?.kind ?? 'string';
  const tryIt = html`<form id="try-it" data-features="${JSON.stringify(refs)}">
${view.joinKeys.map((k, i) => html`<label>${k} <input name="${k}" data-join-key="${k}" data-kind="${kindOf(i)}" value="${keys.map((key) => key.split('\u0000')[i] ?? '').join(',')}" size="30"></label> `)}
<button type="submit">Read online</button> <span class="muted">comma-separate several keys</span></form>
<p>The same request from a shell <button type="button" data-copy="try-it-curl">copy</button></p><pre id="try-it-curl"></pre>
<div id="try-it-result" aria-live="polite"></div>`;
  const spineKey = Object.fromEntries(view.joinKeys.map((k, i) => [k, keys[0]?.split('\u0000')[i] ?? '…']));
  const training = JSON.stringify({ features: refs, spine: [{ ...spineKey, ts: ctx.watermarkMs === null ? 0 : ctx.watermarkMs + 1, label: 1 }] });
  const body = html`<p>Entity <b>${view.entity}</b> keyed by ${view.joinKeys.map((k, i) => html`<code>${k}</code> (field <code>${view.keyFields[i]}</code>)`)}; source <b>${view.source}</b> (topic <code>${source.topic}</code>, event time <code>${source.eventTimeField}</code>); allowed lateness ${duration(view.allowedLatenessMs)}; retention ${duration(view.retentionMs)}.
${ctx.watchedBy(view.name).length > 0 ? html` Monitored by ${ctx.watchedBy(view.name).map((m) => html`<a href="/ui/monitor?monitor=${encodeURIComponent(m)}">${m}</a> `)}.` : ''}</p>
<h2>Features</h2>
<table id="features-table"><thead><tr><th>feature</th><th>aggregation</th><th>field</th><th>window</th><th>hop</th><th class="num">tiles per read</th><th>ttl</th><th>value kind</th></tr></thead><tbody>${features}</tbody></table>
<h2>Lineage</h2>
<figure class="svg-chart">${raw(lineage(view.source, source.views, Object.keys(ctx.monitorsOf(view.source)), { width: 720, monitorViews: ctx.monitorsOf(view.source) }))}</figure>
<h2>Tile plan</h2>
<p class="muted">What one read merges for the longest window of each hop group: the partial head tile plus the whole tiles behind it, within the retention kept for late events.</p>
<figure class="svg-chart">${raw(tilePlanStrip(view, { width: 900 }))}</figure>
<h2>Try it</h2>${tryIt}
<h2>Training data</h2>
<p>A point-in-time dataset of these features (one spine row shown; send thousands):</p>
<pre id="training-curl">curl -s ${'$TIDEMARK_URL'}/datasets/historical -H 'content-type: application/json' -d '${training}'</pre>
<h2>Online/offline consistency</h2>
${ctx.offline
  ? html`<p>Sample keys, read each online and compute the offline point-in-time value at the same instant; every value must agree (docs/semantics.md).</p>
<p><label>keys <input id="consistency-sample" type="number" min="1" max="1000" value="100"></label> <button type="button" id="consistency-run" data-view="${view.name}">Run the probe</button></p><div id="consistency-result" aria-live="polite"></div>`
  : html`<p class="muted">This server has no offline store: start it with --clickhouse-url or --data-dir to compare online values with offline ones.</p>`}
<h2>Source schema</h2>${sourceSchema(source.fields, source.jsonSchema)}`;
  return page({ title: `View ${view.name}`, section: 'views', crumbs: [['Views', '/ui/views']], body });
}

function sourceSchema(fields: Registry['sources'][number]['fields'], jsonSchema: unknown): Raw {
  return html`<table id="schema-table"><thead><tr><th>field</th><th>kind</th><th>nullable</th></tr></thead><tbody>${Object.entries(fields).map(
    ([name, f]) => html`<tr><td><code>${name}</code></td><td>${f.kind}</td><td>${f.nullable ? 'yes' : 'no'}</td></tr>`,
  )}</tbody></table>
${jsonSchema === null ? '' : html`<details><summary>JSON Schema</summary><pre>${JSON.stringify(jsonSchema, null, 2)}</pre></details>`}`;
}
