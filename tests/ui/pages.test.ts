// The dashboard's server-side pieces without a browser: HTML escaping, the drift table's order,
// filters and pages, the time-to-exhaustion sentence, and the pages over a wide monitor (500
// features x 5 slices) staying bounded in size, with the drift table's title counting every test.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/server.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import { exhaustionSentence } from '../../ui/alerts-pages.js';
import { escapeHtml, html, raw } from '../../ui/html.js';
import type { DriftRow } from '../../ui/monitor-data.js';
import { driftTable, MATRIX_SLICES, PAGE_ROWS } from '../../ui/monitor-pages.js';
import { openWideMonitorStore, type WideMonitorStore } from '../support/wide-monitor.js';

describe('html', () => {
  it('escapes every interpolated value and keeps raw markup', () => {
    const name = `<script>alert("x")</script>&'`;
    expect(html`<td>${name}</td>`.text).toBe(`<td>${escapeHtml(name)}</td>`);
    expect(html`<td>${name}</td>`.text).not.toContain('<script>');
    expect(html`<p>${raw('<b>bold</b>')}</p>`.text).toBe('<p><b>bold</b></p>');
    expect(html`<p>${[1, html`<i>${'<'}</i>`]}${null}${undefined}${false}</p>`.text).toBe('<p>1<i>&lt;</i></p>');
  });
});

const row = (feature: string, slice: string, value: number | null, q: number | null, drift: boolean | null): DriftRow =>
  ({ monitor: 'm', version: 'v', metric: 'drift', feature, slice, window_ms: 1, window_end: '2026-01-01T00:00:00.000Z', endMs: 0, value, n_ref: 1, n_cur: 1, ks: null, ks_error_bound: null, p_value: q, q_value: q, drift, detail: {} }) as DriftRow;

describe('driftTable', () => {
  const rows = [row('a', 'all', 0.05, 0.5, false), row('b', 'all', 0.3, 0.001, true), row('c', 'all', 0.9, 0.001, true), row('d', 'all', null, null, null), row('a', 's=1', 0.2, 0.01, true)];

  it('sorts by q, then PSI descending, undecided last, and counts decisions', () => {
    const t = driftTable(rows, { page: 1 });
    expect(t.shown.map((r) => `${r.feature}/${r.slice}`)).toEqual(['c/all', 'b/all', 'a/s=1', 'a/all', 'd/all']);
    expect([t.decided, t.drifted, t.undecided, t.total]).toEqual([4, 3, 1, 5]);
  });

  it('filters by slice, feature and drifted', () => {
    expect(driftTable(rows, { page: 1, slice: 's=1' }).shown.map((r) => r.feature)).toEqual(['a']);
    expect(driftTable(rows, { page: 1, feature: 'a' }).shown.map((r) => r.slice)).toEqual(['s=1', 'all']);
    expect(driftTable(rows, { page: 1, drifted: true }).shown.map((r) => r.feature)).toEqual(['c', 'b', 'a']);
  });

  it('pages by PAGE_ROWS and clamps the page number', () => {
    const many = Array.from({ length: PAGE_ROWS * 2 + 3 }, (_, i) => row(`f${i}`, 'all', i / 1000, 0.5, false));
    const last = driftTable(many, { page: 99 });
    expect([last.pageNo, last.pages, last.shown.length]).toEqual([3, 3, 3]);
    expect(driftTable(many, { page: 0 }).pageNo).toBe(1);
  });
});

describe('exhaustionSentence', () => {
  it('divides the budget left by the burn rate over the budget period', () => {
    // Half the budget left, burning at 2x over a 28-day period: 0.5 x 28d / 2 = 7d.
    expect(exhaustionSentence({ remaining: 0.5, burnRate: 2, periodMs: 28 * 86_400_000 })).toContain('exhausted in 7d');
    expect(exhaustionSentence({ remaining: -0.2, burnRate: 3, periodMs: 86_400_000 })).toContain('is exhausted');
    expect(exhaustionSentence({ remaining: 0.8, burnRate: 0, periodMs: 86_400_000 })).toContain('nothing is burning');
  });
});

/** In a describe block: a server over a wide monitor's stored results (tests/support/wide-monitor.ts), for its tests. */
function serveWideMonitor(features: number, sliceValues: number, evaluations: number): () => FastifyInstance {
  let wide: WideMonitorStore;
  let server: FastifyInstance;
  beforeAll(async () => {
    wide = await openWideMonitorStore(features, sliceValues, evaluations);
    server = await buildServer({ service: new OnlineFeatureService(wide.compiled.registry, new MemoryOnlineStore(wide.compiled.registry), 'wall'), offline: wide.offline, monitors: wide.compiled });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await wide?.close();
  });
  return () => server;
}

/** The slice matrix's table in a drift page. */
function sliceMatrixHtml(body: string): string {
  const start = body.indexOf('id="slice-matrix"');
  return body.slice(start, body.indexOf('</table>', start));
}

describe('pages of a wide monitor (500 features x 5 slices)', () => {
  const wideServer = serveWideMonitor(500, 5, 3);

  it('the drift page counts all 3,000 tests, shows one page of rows and stays small', async () => {
    const r = await wideServer().inject({ method: 'GET', url: '/ui/monitor?monitor=wide&window=1d' });
    expect(r.statusCode).toBe(200);
    const decided = (await wideServer().inject({ method: 'GET', url: '/monitor/drift?monitor=wide&window=1d&limit=10000' })).json() as { drift: { window_end: string; drift: boolean | null }[] };
    const latest = decided.drift.filter((d) => d.window_end === decided.drift[0]!.window_end);
    expect(latest.length).toBe(500 * 6);
    expect(r.body).toContain(`Drift is decided for ${latest.filter((d) => d.drift).length} of ${latest.length} tests`);
    expect(r.body.match(/<tr data-feature=/g)!.length).toBe(PAGE_ROWS);
    // Nothing embeds raw rows: the page is bounded by one page of rows and the slice matrix.
    expect(r.body.length).toBeLessThan(500_000);
    // The slice matrix: past 50 features, the features of the table's page only; every slice value (5 <= 40).
    const shownFeatures = new Set([...r.body.matchAll(/<tr data-feature="([^"]+)"/g)].map((m) => m[1]));
    const matrix = sliceMatrixHtml(r.body);
    expect(matrix.slice(matrix.indexOf('<tbody>')).match(/<tr><th>/g)!.length).toBe(shownFeatures.size);
    expect(matrix.slice(0, matrix.indexOf('</thead>')).match(/<th title=/g)!.length).toBe(5);
    expect(r.body).toContain(`for the ${shownFeatures.size} features of this page of the table (500 in all)`);
  });
});

describe('the slice matrix of a monitor with many slice values (3 features x 60)', () => {
  const manyServer = serveWideMonitor(3, 60, 2);

  it('shows the MATRIX_SLICES slice values with the highest PSI, highest first, and says so', async () => {
    const r = await manyServer().inject({ method: 'GET', url: '/ui/monitor?monitor=wide&window=1d' });
    expect(r.statusCode).toBe(200);
    const matrix = sliceMatrixHtml(r.body);
    const columns = [...matrix.slice(0, matrix.indexOf('</thead>')).matchAll(/<th title="([^"]+)"/g)].map((m) => m[1]!);
    expect(columns.length).toBe(MATRIX_SLICES);
    expect(r.body).toContain(`The ${MATRIX_SLICES} of 60 slice values with the highest PSI`);
    const { drift } = (await manyServer().inject({ method: 'GET', url: '/monitor/drift?monitor=wide&window=1d&limit=10000' })).json() as { drift: { window_end: string; slice: string; value: number | null }[] };
    const latest = drift.filter((d) => d.window_end === drift[0]!.window_end && d.slice !== 'all');
    const worst = new Map<string, number>();
    for (const d of latest) worst.set(d.slice, Math.max(worst.get(d.slice) ?? -1, d.value ?? -1));
    const expected = [...worst.keys()].sort((a, b) => worst.get(b)! - worst.get(a)! || (a < b ? -1 : 1)).slice(0, MATRIX_SLICES);
    expect(columns).toEqual(expected);
    expect(matrix.slice(matrix.indexOf('<tbody>')).match(/<tr><th>/g)!.length).toBe(3);
  });

  it('filtered to one feature, the matrix has that feature row only and does not call it a table page', async () => {
    const r = await manyServer().inject({ method: 'GET', url: '/ui/monitor?monitor=wide&window=1d&feature=f1' });
    expect(r.statusCode).toBe(200);
    const matrix = sliceMatrixHtml(r.body);
    expect([...matrix.slice(matrix.indexOf('<tbody>')).matchAll(/<tr><th>([^<]+)<\/th>/g)].map((m) => m[1])).toEqual(['f1']);
    expect(r.body).toContain(`The ${MATRIX_SLICES} of 60 slice values with the highest PSI; pick a slice`);
    expect(r.body).not.toContain('features of this page of the table');
  });
});
