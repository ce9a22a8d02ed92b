// Bench worker: the dashboard's page weights and first paint in Chromium, next to a constant
// HTML page served by the same kind of fastify server (the baseline: what a page costs with no
// work behind it). Pages: the flights monitor's drift page and its other pages (from npm start's
// data: the quickstart, run once into a data dir kept between bench runs), and the drift page of a
// wide monitor (500 features x 5 slices, stored metrics written directly). First paint is the
// median of 5 loads of Chromium's first-contentful-paint; bytes are the response bodies the page
// loaded. Prints one JSON line.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Browser } from 'playwright-core';
import { runQuickstart } from '../api/quickstart.js';
import { buildServer } from '../api/server.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../online/index.js';
import { clientBundle } from '../ui/index.js';
import { launchChromium } from '../tests/support/browser.js';
import { openWideMonitorStore } from '../tests/support/wide-monitor.js';

const LOADS = 5;
/** BENCH_SCREENSHOTS=<dir>: also save a full-page screenshot of each page there (the README's images). */
const SCREENSHOTS = process.env.BENCH_SCREENSHOTS;
const FLIGHTS_DEFINITIONS = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'flights');

interface PageFigures {
  firstPaintMs: number;
  chartsReadyMs: number;
  htmlBytes: number;
  totalBytes: number;
  requests: number;
}

async function measure(browser: Browser, url: string, shot?: string): Promise<PageFigures> {
  const runs: PageFigures[] = [];
  for (let i = 0; i < LOADS; i++) {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const bodies: Promise<number>[] = [];
    let htmlBytes = 0;
    page.on('response', (r) => {
      const size = r.body().then((b) => b.length, () => 0);
      if (r.request().resourceType() === 'document' && r.status() === 200) void size.then((n) => (htmlBytes = n));
      bodies.push(size);
    });
    const started = Date.now();
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForFunction(() => [...document.querySelectorAll('[data-chart]')].every((el) => el.getAttribute('data-ready') === 'true' || el.classList.contains('chart-error') || el.getBoundingClientRect().top > innerHeight + 200), null, { timeout: 30_000 });
    const chartsReadyMs = Date.now() - started;
    const fcp = await page.evaluate(() => performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint')?.startTime ?? -1);
    const sizes = await Promise.all(bodies);
    if (SCREENSHOTS && shot && i === 0) {
      for (const chart of await page.locator('[data-chart]').all()) await chart.scrollIntoViewIfNeeded();
      await page.waitForFunction(() => [...document.querySelectorAll('[data-chart]')].every((el) => el.getAttribute('data-ready') === 'true' || el.classList.contains('chart-error')), null, { timeout: 30_000 });
      await page.screenshot({ path: join(SCREENSHOTS, `${shot}.png`), fullPage: true });
    }
    runs.push({ firstPaintMs: fcp, chartsReadyMs, htmlBytes, totalBytes: sizes.reduce((s, n) => s + n, 0), requests: sizes.length });
    await context.close();
  }
  runs.sort((a, b) => a.firstPaintMs - b.firstPaintMs);
  return runs[Math.floor(runs.length / 2)]!;
}

const browser = await launchChromium();
const out: Record<string, number> = {};
try {
  // Baseline: a constant page from a bare fastify server.
  const bare = Fastify();
  bare.get('/', async (_r, reply) => reply.type('text/html').send('<!doctype html><html><head><title>constant</title></head><body><h1>constant page</h1><p>no work behind it</p></body></html>'));
  await bare.listen({ host: '127.0.0.1', port: 0 });
  const baseline = await measure(browser, `http://127.0.0.1:${(bare.server.address() as AddressInfo).port}/`);
  await bare.close();
  out.baselineFirstPaintMs = baseline.firstPaintMs;

  const js = (await clientBundle()).body;
  out.jsBytes = Buffer.byteLength(js);
  out.jsGzipBytes = gzipSync(js).length;

  // The flights monitor, as npm start leaves it (first bench run: the quickstart builds it, about 2 minutes).
  const quick = await runQuickstart({ definitions: FLIGHTS_DEFINITIONS, file: FLIGHTS_PARQUET_PATH, port: 0, host: '127.0.0.1', serve: true, progress: false, dataDir: join(tmpdir(), 'tidemark-bench-dashboard'), log: () => {} });
  // A first run evaluates the monitor after the API is up: the pages are measured once it is done.
  await quick.monitorInBackground;
  const base = quick.url!;
  const alerts = (await (await fetch(`${base}/alerts?status=all`)).json()) as { alerts: { fingerprint: string }[] };
  const pages: [string, string][] = [
    ['overview', '/ui/'],
    ['drift', '/ui/monitor?monitor=flight_delays'],
    ['alert-link', '/monitor?slo=delay_distribution&slice=origin%3DORD&feature=delay&monitor=flight_delays'],
    ['feature', '/ui/monitor/flight_delays/features/delay?slice=origin%3DORD&window=7d'],
    ['view', '/ui/views/origin_delays'],
    ...(alerts.alerts[0] ? [['alert', `/ui/alerts/${alerts.alerts[0].fingerprint}`] as [string, string]] : []),
  ];
  for (const [name, path] of pages) {
    const f = await measure(browser, `${base}${path}`, name);
    for (const [k, v] of Object.entries(f)) out[`${name}.${k}`] = v;
  }
  await quick.server!.close();
  await quick.offline?.close();

  const wide = await openWideMonitorStore(500, 5, 21);
  const server = await buildServer({ service: new OnlineFeatureService(wide.compiled.registry, new MemoryOnlineStore(wide.compiled.registry), 'wall'), offline: wide.offline, monitors: wide.compiled });
  await server.listen({ host: '127.0.0.1', port: 0 });
  const f = await measure(browser, `http://127.0.0.1:${(server.server.address() as AddressInfo).port}/ui/monitor?monitor=wide`);
  for (const [k, v] of Object.entries(f)) out[`wide.${k}`] = v;
  await server.close();
  await wide.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
