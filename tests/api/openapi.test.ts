// GET /openapi.json and the /docs page: every route the server declares (collected with fastify's
// onRoute hook, the push route and the offline routes included) is in the document; the document
// validates as OpenAPI 3 (@seriousme/openapi-schema-validator, the JSON schemas of the OpenAPI
// Initiative); error responses list their codes; and the page's scripts, styles and icons are all
// served by this server (no CDN).
import { Validator } from '@seriousme/openapi-schema-validator';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { pushRoutes } from '../../api/push-routes.js';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import { OfflineFeatureLogSink, OfflineStore } from '../../offline/index.js';
import { FeatureLogQueue } from '../../ingest/index.js';

interface Operation {
  tags?: string[];
  responses: Record<string, { description: string; content?: Record<string, { schema?: { properties?: Record<string, { enum?: string[] }> } }> }>;
}
interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
}

const dir = mkdtempSync(join(tmpdir(), 'tidemark-openapi-'));
const routes: RouteOptions[] = [];
let app: FastifyInstance;
let offline: OfflineStore;
let doc: OpenApiDocument;

beforeAll(async () => {
  const compiled = compileOrThrow(flightsDefinitions);
  const store = new MemoryOnlineStore(compiled.registry);
  offline = await OfflineStore.open(compiled, { dataDir: dir });
  // Every area of the API: online reads, the offline routes, and the push route (as `tidemark serve` adds it).
  // Feature logging on too (serve --log-features): POST /feature-log/predictions and GET /metrics.
  const featureLog = new FeatureLogQueue(new OfflineFeatureLogSink(offline.executor), { sampleRate: 1 });
  app = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark'), offline, onRoute: (r) => routes.push(r), registryHistory: async () => [], featureLog });
  await app.register(pushRoutes, { compiled, store });
  await app.ready();
  const res = await app.inject({ method: 'GET', url: '/openapi.json' });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  doc = res.json() as OpenApiDocument;
}, 120_000);

afterAll(async () => {
  await app?.close();
  await offline?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** fastify's `/push/:source` as OpenAPI writes it: `/push/{source}`. */
const openApiPath = (url: string): string => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
const isHidden = (r: RouteOptions): boolean => (r.schema as { hide?: boolean } | undefined)?.hide === true;
/** fastify adds a HEAD route for each GET; the document lists the GET. */
const methodsOf = (r: RouteOptions): string[] => (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD');

describe('GET /openapi.json', () => {
  it('lists every route the server declares, each with its method', () => {
    const api = routes.filter((r) => !isHidden(r));
    expect(api.length).toBeGreaterThanOrEqual(8);
    const missing: string[] = [];
    for (const r of api) {
      for (const method of methodsOf(r)) {
        if (doc.paths[openApiPath(r.url)]?.[method.toLowerCase()] === undefined) missing.push(`${method} ${r.url}`);
      }
    }
    expect(missing).toEqual([]);
    // The known API, so a route dropped from the server (or hidden) fails here too.
    const listed = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(listed.sort()).toEqual(
      ['GET /alerts', 'GET /alerts/history', 'GET /healthz', 'GET /monitor/distribution', 'GET /monitor/drift', 'GET /monitor/metrics', 'GET /monitor/plans', 'GET /monitor/slo', 'GET /registry', 'GET /registry/history', 'GET /status/materializer', 'POST /consistency/sample', 'POST /datasets/historical', 'POST /get-online-features', 'POST /push/{source}', 'POST /feature-log/predictions', 'GET /metrics'].sort(),
    );
  });

  it('hides only its own routes and the HTML of the dashboard: the document, the /docs page, /ui and the /monitor alert link', () => {
    const hidden = routes.filter(isHidden).map((r) => r.url);
    expect(hidden.length).toBeGreaterThan(0);
    expect(hidden).toContain('/ui/');
    for (const url of hidden) expect(url === '/openapi.json' || url === '/docs' || url.startsWith('/docs/') || url === '/ui' || url.startsWith('/ui/') || url === '/monitor', url).toBe(true);
  });

  it('validates as OpenAPI 3', async () => {
    expect(doc.openapi).toMatch(/^3\./);
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    // The validator does reject a broken document (a response without its required description).
    const broken = structuredClone(doc);
    delete (broken.paths['/registry']!.get!.responses['200'] as { description?: string }).description;
    expect((await new Validator().validate(broken as unknown as Record<string, unknown>)).valid).toBe(false);
  });

  it('lists the error codes of each error response', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${path}`;
        expect(Object.keys(op.responses), where).toContain('500');
        for (const [status, response] of Object.entries(op.responses)) {
          expect(response.description, `${where} ${status}`).toBeTruthy();
          if (Number(status) < 400 || (path === '/healthz' && status === '503')) continue; // /healthz's 503 is its health report
          const codes = response.content?.['application/json']?.schema?.properties?.code?.enum;
          expect(codes, `${where} ${status}: codes`).toBeDefined();
          expect(codes!.length, `${where} ${status}: codes`).toBeGreaterThan(0);
          for (const code of codes!) expect(code).toMatch(/^TM_[A-Z_]+$/);
        }
      }
    }
    const readErrors = doc.paths['/get-online-features']!.post!.responses['400']!.content!['application/json']!.schema!.properties!.code!.enum!;
    expect(readErrors).toEqual(expect.arrayContaining(['TM_READ_UNKNOWN_FEATURE', 'TM_READ_MISSING_JOIN_KEY', 'TM_READ_INSIDE_OPEN_TILE', 'TM_READ_BAD_REQUEST']));
    expect(Object.keys(doc.paths['/datasets/historical']!.post!.responses)).toEqual(expect.arrayContaining(['200', '400', '413', '415', '500', '503']));
    expect(doc.paths['/push/{source}']!.post!.responses['503']!.content!['application/json']!.schema!.properties!.code!.enum).toEqual(['TM_PUSH_UNAVAILABLE']);
  });

  it('documents what the server really answers: a coded 400 carries a listed code', async () => {
    const res = await app.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['nope:nope'], entities: { airport: ['SFO'] } } });
    expect(res.statusCode).toBe(400);
    const body = res.json() as { code: string; validFeatures?: string[] };
    expect(body.code).toBe('TM_READ_UNKNOWN_FEATURE');
    // Response schemas are documentation: the error's own fields are still sent.
    expect(body.validFeatures?.length).toBeGreaterThan(0);
  });
});

describe('GET /docs', () => {
  it('answers an HTML page whose scripts, styles and icons this server serves', async () => {
    let res = await app.inject({ method: 'GET', url: '/docs' });
    let base = '/docs';
    if (res.statusCode >= 300 && res.statusCode < 400) {
      base = String(res.headers.location);
      res = await app.inject({ method: 'GET', url: base });
    }
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    const html = res.body;
    const urls = [...html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(urls.some((u) => u.endsWith('.js'))).toBe(true);
    expect(urls.some((u) => u.endsWith('.css'))).toBe(true);
    // Nothing from another origin: no absolute or protocol-relative URL anywhere in the page.
    expect(html).not.toMatch(/(?:src|href)="(?:[a-z]+:)?\/\//i);
    const pageUrl = new URL(base.endsWith('/') ? base : `${base}/`, 'http://tidemark.test');
    for (const url of urls) {
      const resolved = new URL(url, pageUrl);
      expect(resolved.origin, url).toBe('http://tidemark.test');
      const asset = await app.inject({ method: 'GET', url: resolved.pathname + resolved.search });
      expect(asset.statusCode, url).toBe(200);
      expect(asset.body.length, url).toBeGreaterThan(0);
      // Styles load nothing from elsewhere either (fonts, images, imports).
      if (resolved.pathname.endsWith('.css')) expect(asset.body, url).not.toMatch(/(?:url\(\s*['"]?|@import\s+['"]?)(?:[a-z]+:)?\/\/(?!\s)/i);
    }
  });

  it('points Swagger UI at the same document, served here', async () => {
    const init = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    expect(init.statusCode).toBe(200);
    // The spec is fetched from ./json beside the page; no URL of another origin outside comments.
    expect(init.body).toContain("url: resolveUrl('./json')");
    expect(init.body.replace(/^\s*\/\/.*$/gm, '')).not.toMatch(/https?:\/\//);
    const json = await app.inject({ method: 'GET', url: '/docs/json' });
    expect(json.statusCode).toBe(200);
    expect(json.json()).toEqual(doc);
  });
});
