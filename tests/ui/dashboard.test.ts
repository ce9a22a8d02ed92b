/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// The dashboard in a real browser (Debian's chromium via playwright-core) against a real server:
// the sensor monitor evaluated on chDB, the online store built from the same events. Each page
// renders without errors and without a request to another origin; an alert's own generatorURL
// opens the pre-filtered drift page with its burn rates; the charts draw pixels on their canvas;
// the numbers shown equal the JSON API's; clicking a PSI point moves the distribution to it; an
// unknown name in a URL gives a 404 page listing the valid ones. Screenshots go to test-output/ui.
import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/server.js';
import { EventDecoder, TileBatchBuilder } from '../../ingest/index.js';
import { OnlineFeatureService } from '../../online/index.js';
import { guardedPage, launchChromium, type GuardedPage } from '../support/browser.js';
import { openSensorMonitorStore, type SensorMonitorStore } from '../support/sensor-monitor-store.js';

const SCREENSHOTS = join(process.cwd(), 'test-output', 'ui');
const EXTERNAL = 'http://tidemark.test';

let fixture: SensorMonitorStore;
let server: FastifyInstance;
let origin: string;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  fixture = await openSensorMonitorStore(EXTERNAL);
  const service = new OnlineFeatureService(fixture.compiled.registry, fixture.online, 'watermark');
  server = await buildServer({ service, offline: fixture.offline, monitors: fixture.compiled, sampleKeys: (view) => fixture.online.entityKeys(view) });
  await server.listen({ host: '127.0.0.1', port: 0 });
  origin = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await fixture?.close();
});

async function open(path: string, shot?: string): Promise<GuardedPage> {
  const g = await guardedPage(browser, origin);
  const response = await g.page.goto(`${origin}${path}`, { waitUntil: 'load' });
  expect(response?.status(), path).toBe(200);
  // Lazy charts draw when scrolled into view: scroll each in, then wait for every chart to finish.
  for (const chart of await g.page.locator('[data-chart]').all()) await chart.scrollIntoViewIfNeeded();
  await g.page.waitForFunction(() => [...document.querySelectorAll('[data-chart]')].every((el) => el.getAttribute('data-ready') === 'true' || el.classList.contains('chart-error')), null, { timeout: 20_000 });
  if (shot) await g.page.screenshot({ path: join(SCREENSHOTS, `${shot}.png`), fullPage: true });
  return g;
}

async function api<T>(path: string): Promise<T> {
  const r = await server.inject({ method: 'GET', url: path });
  expect(r.statusCode, path).toBe(200);
  return r.json() as T;
}

/** The page's numbers as the server formats them (4 significant digits). */
const shown = (x: number): string => String(Number(x.toPrecision(4)));

describe('dashboard pages in Chromium', () => {
  it('every page renders its charts with no page error and no request to another origin', async () => {
    const { alerts } = await api<{ alerts: { fingerprint: string }[] }>('/alerts');
    const pages: [string, string][] = [
      ['/ui/', 'overview'],
      ['/ui/views', 'views'],
      ['/ui/views/sensor_stats', 'view'],
      ['/ui/monitor?monitor=sensors', 'drift'],
      ['/ui/monitor/sensors/features/value?slice=sensor%3Db&window=1h', 'feature'],
      ['/ui/monitor/sensors/labels?metric=auc', 'labels'],
      ['/ui/alerts', 'alerts'],
      [`/ui/alerts/${alerts[0]!.fingerprint}`, 'alert'],
    ];
    for (const [path, shot] of pages) {
      const g = await open(path, shot);
      expect(g.errors, path).toEqual([]);
      expect(g.outside, path).toEqual([]);
      expect(await g.page.locator('.chart-error').count(), path).toBe(0);
      await g.close();
    }
  });

  it("an alert's generatorURL lands on the drift page filtered to its series, with its burn rates drawn", async () => {
    const { alerts } = await api<{ alerts: { generatorURL: string; labels: Record<string, string> }[] }>('/alerts?status=firing');
    const alert = alerts.find((a) => a.labels.slo === 'value_drift' && a.labels.slice === 'sensor=b')!;
    expect(alert.generatorURL.startsWith(`${EXTERNAL}/monitor?`)).toBe(true);
    const g = await open(alert.generatorURL.slice(EXTERNAL.length), 'alert-link');
    const url = new URL(g.page.url());
    expect(url.pathname).toBe('/ui/monitor');
    expect(Object.fromEntries(url.searchParams)).toMatchObject({ slo: 'value_drift', slice: 'sensor=b', feature: 'value', monitor: 'sensors' });
    await expect(g.page.locator('#slo-panel h2').textContent()).resolves.toContain('value_drift');
    // The drift table shows only the alert's series.
    const rows = g.page.locator('#drift-table tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().getAttribute('data-slice')).toBe('sensor=b');
    expect(await rows.first().getAttribute('data-feature')).toBe('value');
    // One burn-rate chart per rule, the indicator and the budget; the firing span is shaded on the canvas.
    const legends = await g.page.locator('#slo-panel .u-legend').count();
    expect(legends).toBe(3);
    const shaded = await g.page.locator('#slo-panel canvas').first().evaluate((canvas: HTMLCanvasElement) => {
      const ctx = canvas.getContext('2d')!;
      const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      // The firing band: rgba(192,57,43,0.15) on the transparent canvas (alpha 0.15 x 255 = 38;
      // premultiplied storage rounds the colour by a few units).
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i]! - 192) <= 6 && Math.abs(data[i + 1]! - 57) <= 6 && Math.abs(data[i + 2]! - 43) <= 6 && Math.abs(data[i + 3]! - 38) <= 2) n++;
      return n;
    });
    expect(shaded).toBeGreaterThan(500);
    expect(g.errors).toEqual([]);
    await g.close();
  });

  it('the drift table shows the same numbers as GET /monitor/drift', async () => {
    const g = await open('/ui/monitor?monitor=sensors&window=1h');
    const title = await g.page.locator('#drift-title').textContent();
    const end = /at (\d{4}-\d\d-\d\d \d\d:\d\d) UTC/.exec(title!)![1]!;
    const endIso = `${end.replace(' ', 'T')}:00.000Z`;
    const { drift } = await api<{ drift: { feature: string; slice: string; value: number | null; q_value: number | null; n_cur: number; drift: boolean | null }[] }>(`/monitor/drift?monitor=sensors&window=1h&from=${endIso}&to=${endIso}`);
    expect(drift.length).toBeGreaterThan(0);
    const decided = drift.filter((r) => r.drift !== null);
    expect(title).toContain(`Drift is decided for ${decided.filter((r) => r.drift).length} of ${decided.length} tests`);
    const rows = await g.page.locator('#drift-table tbody tr').evaluateAll((trs) =>
      trs.map((tr) => ({ feature: tr.getAttribute('data-feature'), slice: tr.getAttribute('data-slice'), cells: [...tr.querySelectorAll('td')].map((td) => td.textContent!.trim()) })),
    );
    expect(rows.length).toBe(Math.min(50, drift.length));
    for (const row of rows) {
      const r = drift.find((d) => d.feature === row.feature && d.slice === row.slice)!;
      expect(row.cells[3], `${row.feature} ${row.slice} PSI`).toBe(r.value === null ? '-' : shown(r.value));
      expect(row.cells[6], `${row.feature} ${row.slice} q`).toBe(r.q_value === null ? '-' : shown(r.q_value));
      expect(row.cells[9], `${row.feature} ${row.slice} n_cur`).toBe(String(r.n_cur));
    }
    await g.close();
  });

  it('clicking a point of the PSI chart shows the distribution at that evaluation', async () => {
    const g = await open('/ui/monitor/sensors/features/value?slice=sensor%3Db&window=1h');
    const before = await g.page.locator('#distribution').textContent();
    const over = g.page.locator('.chart[data-chart="psi"] .u-over');
    const box = (await over.boundingBox())!;
    // The left part of the chart: an evaluation before the shift, so another time than the latest.
    await over.click({ position: { x: Math.round(box.width * 0.1), y: Math.round(box.height / 2) } });
    await g.page.waitForURL(/at=/);
    const at = new URL(g.page.url()).searchParams.get('at')!;
    await g.page.waitForLoadState('load');
    const after = await g.page.locator('#distribution').textContent();
    expect(after).not.toBe(before);
    expect(after).toContain(at.slice(0, 16).replace('T', ' '));
    const { drift } = await api<{ drift: { value: number }[] }>(`/monitor/drift?monitor=sensors&feature=value&slice=sensor%3Db&window=1h&from=${at}&to=${at}`);
    expect(after).toContain(`PSI ${shown(drift[0]!.value)}`);
    await g.close();
  });

  it("a view's live read shows what POST /get-online-features returns, next to the curl line that asks for it", async () => {
    const g = await open('/ui/views/sensor_stats');
    await g.page.locator('#try-it button[type=submit]').click();
    await g.page.locator('#try-it-table').waitFor();
    const cells = await g.page.locator('#try-it-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent!)));
    const curl = (await g.page.locator('#try-it-curl').textContent())!;
    const body = JSON.parse(/-d '(.*)'$/.exec(curl)![1]!) as { features: string[]; entities: Record<string, string[]> };
    expect(body).toEqual({ features: ['sensor_stats:value_mean_1h'], entities: { sensor: ['a', 'b'] } });
    const r = await server.inject({ method: 'POST', url: '/get-online-features', payload: body });
    const json = r.json() as { results: { values: unknown[] }[] };
    // Per key: the key row, then the feature row; values as the page formats them.
    expect(cells.map((c) => c[1])).toEqual([0, 1].flatMap((k) => json.results.map((res) => (typeof res.values[k] === 'number' ? shown(res.values[k] as number) : String(res.values[k])))));
    expect(g.errors).toEqual([]);
    await g.close();
  });

  it('an unknown monitor, feature, slice or alert gives a 404 page naming it and listing the valid ones', async () => {
    const cases: [string, string, string][] = [
      ['/monitor?monitor=nope', 'monitor', 'sensors'],
      ['/ui/monitor?monitor=sensors&feature=nope', 'feature', 'value'],
      ['/ui/monitor?monitor=sensors&slice=sensor%3Dz', 'slice', 'sensor=b'],
      ['/ui/monitor/sensors/features/nope', 'feature', 'kind'],
      ['/ui/alerts/0000000000000000', 'alert', 'value_drift'],
      ['/ui/views/nope', 'view', 'sensor_stats'],
    ];
    for (const [path, what, valid] of cases) {
      const r = await server.inject({ method: 'GET', url: path });
      const final = r.statusCode === 302 ? await server.inject({ method: 'GET', url: r.headers.location as string }) : r;
      expect(final.statusCode, path).toBe(404);
      expect(final.headers['content-type'], path).toContain('text/html');
      expect(final.body, path).toContain(`data-unknown="${what}"`);
      expect(final.body, path).toContain(valid);
    }
  });

  it('the consistency probe reports full agreement, then names the key an online-only event changed', async () => {
    const g = await open('/ui/views/sensor_stats');
    const run = async (): Promise<string> => {
      await g.page.locator('#consistency-result').evaluate((el) => el.replaceChildren());
      await g.page.locator('#consistency-run').click();
      await g.page.locator('#consistency-summary').waitFor();
      return (await g.page.locator('#consistency-summary').textContent())!;
    };
    expect(await run()).toContain('online and offline agree on every value');
    expect(await g.page.locator('#consistency-table tbody tr[data-feature="value_mean_1h"] td').nth(2).textContent()).toBe('100%');
    // One event that reaches the online store only, for sensor a, at the watermark (the clock does not move).
    const watermarkMs = (await fixture.online.watermarkMs())!;
    const decoded = new EventDecoder(fixture.compiled, 'readings').decodeValue({ t: watermarkMs, sensor: 'a', value: 1000, kind: 'x' });
    if (!decoded.ok) throw new Error(decoded.bad.reason);
    fixture.online.applySync(new TileBatchBuilder(fixture.compiled.registry).build([decoded.event]));
    expect(await run()).toContain('1 values differ');
    const mismatch = await g.page.locator('#consistency-mismatches tbody tr td').allTextContents();
    expect(mismatch.slice(0, 2)).toEqual([JSON.stringify({ sensor: 'a' }), 'value_mean_1h']);
    expect(g.errors).toEqual([]);
    await g.close();
  });
});
