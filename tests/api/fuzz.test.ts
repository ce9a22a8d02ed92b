// Fuzzing every route of the API (and the materializer's server) through fastify.inject(): fast-check
// sends arbitrary and adversarial bodies, query strings, path parameters and headers (oversized
// numbers, deep JSON, __proto__/constructor keys, lone surrogates, NaN-like strings, huge arrays,
// wrong content types, tokens and JWTs, `alg: none` included). Required: never a 5xx, never a
// crash, every 4xx with a `code`. The routes come from app.routeScopes, so a new route is fuzzed
// without touching this file. The offline store is a real chDB holding flights and monitor
// metrics, so the SQL paths run for real.
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { installAuth, parseAuthTokens } from '../../api/auth.js';
import { pushRoutes } from '../../api/push-routes.js';
import { buildMaterializerServer, FeatureLogQueue, type Materializer } from '../../ingest/index.js';
import { OfflineFeatureLogSink } from '../../offline/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import { flightsStoreWithMetrics } from '../support/offline-fixtures.js';

const RUNS_PER_ROUTE = Number(process.env.TIDEMARK_FUZZ_RUNS ?? 150);
const sha = (token: string): string => createHash('sha256').update(token).digest('hex');
const tokens = parseAuthTokens(JSON.stringify([
  { name: 'root', sha256: sha('root-secret'), scopes: ['admin'] },
  { name: 'reader', sha256: sha('reader-secret'), scopes: ['features:read'] },
]));

let fixture: Awaited<ReturnType<typeof flightsStoreWithMetrics>>;
let validJwt = '';
let api: FastifyInstance;
let materializerServer: FastifyInstance;

beforeAll(async () => {
  fixture = await flightsStoreWithMetrics('tidemark-fuzz-', 2_000);
  const { files, offline } = fixture;
  const store = new MemoryOnlineStore(files.compiled.registry);
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwt = { issuer: 'https://idp.example', audience: 'tidemark', keys: createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256' }] }) };
  validJwt = await new SignJWT({ scope: 'features:read datasets:read' }).setProtectedHeader({ alg: 'ES256' }).setIssuer(jwt.issuer).setAudience(jwt.audience).setSubject('fuzz').setExpirationTime('1h').sign(privateKey);
  api = await buildServer({
    service: new OnlineFeatureService(files.compiled.registry, store, 'watermark'),
    offline,
    auth: { tokens, protectMetrics: false, jwt },
    corsOrigins: ['https://ui.example'],
    securityHeaders: true,
    registryHistory: async () => [{ version: 1, registryVersion: files.compiled.registry.version, appliedAt: new Date(0).toISOString(), definitions: 'examples/flights', views: {}, changes: [] }],
    // Feature logging into the same chDB store: POST /feature-log/predictions and GET /metrics are fuzzed too.
    featureLog: new FeatureLogQueue(new OfflineFeatureLogSink(offline.executor), { sampleRate: 1 }),
  });
  await api.register(pushRoutes, { compiled: files.compiled, store });
  await api.ready();
  const materializer = { health: () => ({ status: 'ok' }), stats: () => ({}), metrics: { registry: new Registry() } } as unknown as Materializer;
  materializerServer = await buildMaterializerServer(materializer, () => ({}), (app) => installAuth(app, { tokens, protectMetrics: true }));
  await materializerServer.ready();
}, 180_000);

afterAll(async () => {
  await api?.close();
  await materializerServer?.close();
  await fixture?.close();
});

// ---- adversarial values ---------------------------------------------------------------------

const NASTY_STRINGS = [
  '', ' ', 'NaN', '-NaN', 'Infinity', '-Infinity', 'undefined', 'null', 'true', '1e309', '-1e309', '0x1F', '1_000', ' 1 ', '-0', '9007199254740993',
  '__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString',
  '\ud800', '\udfff', 'a\ud83dz', '\u0000', '\u202e', '\ufeff', '𝕏', 'ﷺ', 'e\u0301', '\n', '\r\n', '\t',
  "' OR 1=1 --", '"; DROP TABLE tm_events_flights; --', '{limit:UInt32}', '%00', '%', '../../etc/passwd', '$(reboot)', '`id`',
  'origin_delays:flights_1h', 'origin_delays:', ':', 'origin_delays:flights_1h:extra', 'origin=ORD', '7d', '0d', '-1d', '1e3d', '2001-01-01', '2001-13-45T99:99:99Z',
  'flights', 'ORD', 'x'.repeat(10_000),
];
const nastyString = fc.oneof(fc.constantFrom(...NASTY_STRINGS), fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }));
const NASTY_NUMBERS = [0, -0, 1, -1, 0.5, 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 2, -Number.MAX_SAFE_INTEGER - 2, 2 ** 63, 978_307_200_000, 1e21];
const nastyNumber = fc.oneof(fc.constantFrom(...NASTY_NUMBERS), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer());
const leaf: fc.Arbitrary<unknown> = fc.oneof(nastyString, nastyNumber, fc.boolean(), fc.constant(null));
const nastyKey = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('airport', 'origin', 'destination', 'ts', 'label', '__row', '__t', '__j_airport', 'a b', 'a;b', "a'b", 'a`b', '') },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype') },
  { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
);
const nastyValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(nastyKey, tie('v'), { maxKeys: 4 })),
})).v;

/** Raw JSON texts JSON.stringify would never write: numbers out of range, deep nesting, pollution keys, escapes. */
const RAW_BODIES = [
  '{"features": ["origin_delays:flights_1h"], "entities": {"airport": [1e400]}}',
  '{"features": ["origin_delays:flights_1h"], "entities": {"airport": ["\\ud800"]}, "at": 1e400}',
  '{"features": ["origin_delays:flights_1h"], "entities": {"airport": ["ORD"]}, "at": 123456789012345678901234567890}',
  '{"__proto__": {"polluted": true}, "features": ["origin_delays:flights_1h"], "entities": {"airport": ["ORD"]}}',
  '{"constructor": {"prototype": {"polluted": true}}, "features": ["origin_delays:flights_1h"], "entities": {"airport": ["ORD"]}}',
  '{"features": ["origin_delays:flights_1h"], "spine": [{"airport": "ORD", "ts": 1e400, "__proto__": {"x": 1}}]}',
  '{"features": ["origin_delays:flights_1h"], "spine": [{"airport": "\\udc00", "ts": "2001-01-01T00:00:00Z", "label": "\\ud800\\u0000"}]}',
  '{"events": [{"date": 1e400, "delay": 1e400, "distance": -0, "origin": "\\ud800", "destination": "LAX"}]}',
  '{"df": {"__proto__": [1], "date": [1]}}',
  '{"df": {"date": [978307200000], "delay": [1], "distance": [1], "origin": ["\\ud800"], "destination": ["\\u0000"]}}',
  '[', '{', '{"a":', 'null', '[]', '""', '0', 'NaN', '{"a": NaN}', '{"a": Infinity}', '{"a": 01}', "{'a': 1}", '\u0000', '\ufeff{}', '{"a": "\\x41"}', '{"a": 1,}',
  '['.repeat(20_000) + ']'.repeat(20_000),
  '{"a":'.repeat(5_000) + '1' + '}'.repeat(5_000),
  `{"features": ["origin_delays:flights_1h"], "entities": {"airport": [${'"A",'.repeat(5_000)}"B"]}}`,
  `{"events": [${'{},'.repeat(20_000)}{}]}`,
  `{"features": [${'"origin_delays:flights_1h",'.repeat(5_000)}"x"], "spine": [{"airport": "ORD", "ts": 1}]}`,
  `{"features": ["origin_delays:flights_1h"], "spine": [${'{"airport": "ORD", "ts": 978307200000},'.repeat(3_000)}{"airport": "ORD", "ts": 1}]}`,
];

/** Mostly `good`, sometimes anything: near-valid bodies get past validation so the handlers run. */
const mostly = <T,>(good: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => fc.oneof({ weight: 9, arbitrary: good }, { weight: 1, arbitrary: nastyValue });
const FEATURES = ['origin_delays:flights_1h', 'origin_delays:delay_mean_1d', 'origin_delays:last_delay', 'route_delays:flights_7d', 'dest_delays:delay_mean_1d'];
const featureList = mostly(fc.array(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...FEATURES) }, { weight: 1, arbitrary: nastyString }), { minLength: 1, maxLength: 3 }));
const keyValue = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('ORD', 'SFO', 'LAX', 'ATL') }, { weight: 1, arbitrary: leaf });
const timeValue = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 978_307_200_000, max: 978_600_000_000 }) }, { weight: 1, arbitrary: fc.constantFrom('2001-01-02T00:00:00Z', '2001-01-02 00:00:00', '2001-01-02T00:00:00+05:00') }, { weight: 1, arbitrary: leaf });

const SHAPED: Record<string, fc.Arbitrary<unknown>> = {
  '/get-online-features': fc.record({
    features: featureList,
    entities: mostly(fc.oneof(
      fc.record({ airport: fc.array(keyValue, { maxLength: 4 }) }),
      fc.record({ origin: fc.array(keyValue, { maxLength: 3 }), destination: fc.array(keyValue, { maxLength: 3 }) }),
      fc.dictionary(nastyKey, fc.array(leaf, { maxLength: 3 }), { maxKeys: 3 }),
    )),
    full_feature_names: mostly(fc.boolean()),
    at: mostly(timeValue),
  }, { requiredKeys: ['features', 'entities'] }),
  '/datasets/historical': fc.record({
    features: featureList,
    spine: mostly(fc.array(fc.oneof(
      { weight: 4, arbitrary: fc.record({ airport: keyValue, origin: keyValue, destination: keyValue, ts: timeValue, label: nastyValue }, { requiredKeys: ['airport', 'ts'] }) },
      { weight: 1, arbitrary: fc.dictionary(nastyKey, leaf, { maxKeys: 4 }) },
    ), { minLength: 1, maxLength: 5 })),
    format: fc.oneof(fc.constantFrom('arrow', 'json'), nastyString),
  }, { requiredKeys: ['features', 'spine'] }),
  '/push/:source': fc.oneof(
    fc.record({ events: mostly(fc.array(mostly(fc.record({ date: timeValue, delay: mostly(fc.double()), distance: mostly(fc.integer()), origin: keyValue, destination: keyValue }, { requiredKeys: [] })), { minLength: 1, maxLength: 5 })) }),
    fc.record({ df: mostly(fc.dictionary(fc.oneof(fc.constantFrom('date', 'delay', 'distance', 'origin', 'destination'), nastyKey), fc.array(leaf, { maxLength: 3 }), { maxKeys: 5 })), push_source_name: leaf }, { requiredKeys: ['df'] }),
  ),
};

const bodyFor = (url: string): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { weight: 6, arbitrary: (SHAPED[url] ?? nastyValue).map((b) => JSON.stringify(b) ?? 'null') },
    { weight: 1, arbitrary: fc.constantFrom(...Object.values(SHAPED)).chain((a) => a).map((b) => JSON.stringify(b) ?? 'null') },
    { weight: 1, arbitrary: nastyValue.map((b) => JSON.stringify(b) ?? 'null') },
    { weight: 1, arbitrary: fc.constantFrom(...RAW_BODIES) },
    { weight: 1, arbitrary: fc.oneof(nastyString, fc.constant(undefined)) },
  );

const QUERY_KEYS = ['monitor', 'metric', 'feature', 'slice', 'window', 'from', 'to', 'limit', 'drifted', 'status', 'severity', '__proto__', 'constructor', 'a[b]', 'limit[]'];
const QUERY_VALUES = ['flight_delays', 'drift', 'delay', 'origin=ORD', 'all', '7d', '2001-01-01', '978307200000', '10', '0', '-1', '1e309', '100000000000', 'true', 'firing', 'page', 'NaN', ''];
const queryString: fc.Arbitrary<string> = fc.oneof(
  fc.array(fc.tuple(fc.oneof(fc.constantFrom(...QUERY_KEYS), nastyString), fc.oneof(fc.constantFrom(...QUERY_VALUES), nastyString)), { maxLength: 5 }).map((pairs) =>
    pairs.map(([k, v]) => `${encodeURIComponent(safeForUri(k))}=${encodeURIComponent(safeForUri(v))}`).join('&'),
  ),
  fc.constantFrom('%', '%E0%A4%A', 'a=%ZZ', 'limit=1&limit=2', 'from=1&from=2', '&&&', '=', 'a==b', '%00=%00', 'slice=%27%20OR%201%3D1%20--'),
);

/** encodeURIComponent throws on lone surrogates: they go in as U+FFFD (raw ones are in the bodies). */
function safeForUri(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

const headers = fc.record({
  'content-type': fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8') },
    { weight: 2, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', ';;;') },
    { weight: 1, arbitrary: fc.constant(undefined) },
  ),
  authorization: fc.oneof(
    { weight: 6, arbitrary: fc.constant('Bearer root-secret') },
    { weight: 1, arbitrary: fc.constant('Bearer reader-secret') },
    { weight: 1, arbitrary: fc.constant('jwt') },
    { weight: 1, arbitrary: fc.constantFrom('Bearer ', 'Bearer x', 'Basic cm9vdDpyb290', 'bearer ROOT-SECRET', 'Bearer root-secret extra', `Bearer ${'a'.repeat(10_000)}`, '\u00e9') },
    { weight: 1, arbitrary: fc.constantFrom('Bearer a.b.c', 'Bearer e30.e30.', 'Bearer eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImFkbWluIn0.', `Bearer ${'e30.'.repeat(2)}${'A'.repeat(5_000)}`, 'Bearer ..') },
    { weight: 1, arbitrary: fc.constant(undefined) },
  ),
  accept: fc.oneof(fc.constantFrom('application/vnd.apache.arrow.stream', 'application/json', '*/*', 'text/html;q=0.1, */*;q=0'), fc.constant(undefined)),
  origin: fc.oneof(fc.constantFrom('https://ui.example', 'https://evil.example', 'null'), fc.constant(undefined)),
});

/** Broken tails for a path: bad percent-encoding, traversal, NUL, doubled slashes. */
const BAD_TAILS = ['%', '%zz', '%E0%A4%A', '/..%2f..%2f', '%00', '//', '/.', ';jsessionid=1', '%2F'];

/** The path of a route with its parameters filled (a real source most of the time, nasty otherwise), now and then with a broken tail. */
const pathFor = (url: string): fc.Arbitrary<string> =>
  fc.tuple(
    url === '*'
      ? fc.constantFrom('/get-online-features', '/registry', '/nope', '/push/flights')
      : fc.oneof({ weight: 3, arbitrary: fc.constant('flights') }, { weight: 2, arbitrary: nastyString }).map((source) => url.replace(':source', encodeURIComponent(safeForUri(source)) || '%20')),
    fc.oneof({ weight: 9, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(...BAD_TAILS) }),
  ).map(([path, tail]) => path + tail);

// ---- the property ---------------------------------------------------------------------------

interface Tally {
  sent: number;
  byStatus: Record<number, number>;
  byCode: Record<string, number>;
}

async function fuzzRoute(app: FastifyInstance, route: string, tally: Tally): Promise<void> {
  const [method, url] = route.split(' ') as [InjectOptions['method'], string];
  const hasBody = method === 'POST' || method === 'OPTIONS';
  await fc.assert(
    fc.asyncProperty(pathFor(url), queryString, headers, hasBody ? bodyFor(url) : fc.constant(undefined), async (path, query, rawHeaders, body) => {
      const sentHeaders = Object.fromEntries(Object.entries(rawHeaders).filter(([, v]) => v !== undefined)) as Record<string, string>;
      if (sentHeaders.authorization === 'jwt') sentHeaders.authorization = `Bearer ${validJwt}`;
      if (method === 'OPTIONS') sentHeaders['access-control-request-method'] = 'POST';
      const res = await app.inject({ method, url: query ? `${path}?${query}` : path, headers: sentHeaders, ...(body === undefined ? {} : { payload: body }) });
      tally.sent++;
      tally.byStatus[res.statusCode] = (tally.byStatus[res.statusCode] ?? 0) + 1;
      const context = `${method} ${path}?${query.slice(0, 200)} ${JSON.stringify(sentHeaders).slice(0, 200)} body ${String(body).slice(0, 300)} -> ${res.statusCode} ${res.body.slice(0, 500)}`;
      expect(res.statusCode, context).toBeLessThan(500);
      // HEAD answers carry no body to hold the code.
      // The dashboard's pages answer people: an HTML page that names what is unknown, its code in a header.
      if (res.statusCode >= 400 && String(res.headers['content-type']).startsWith('text/html')) {
        expect(res.statusCode, context).toBe(404);
        if (method !== 'HEAD') expect(res.body, context).toContain('data-unknown=');
        expect(res.headers['x-tidemark-code'], context).toBe('TM_UI_NOT_FOUND');
        tally.byCode.TM_UI_NOT_FOUND = (tally.byCode.TM_UI_NOT_FOUND ?? 0) + 1;
      } else if (res.statusCode >= 400 && method !== 'HEAD') {
        let json: { code?: unknown } = {};
        try {
          json = JSON.parse(res.body) as { code?: unknown };
        } catch {
          expect.fail(`a 4xx that is not JSON: ${context}`);
        }
        expect(typeof json.code, context).toBe('string');
        tally.byCode[String(json.code)] = (tally.byCode[String(json.code)] ?? 0) + 1;
        if (process.env.TIDEMARK_FUZZ_DEBUG) console.log(context.slice(0, 600));
        expect(json.code, context).toMatch(/^TM_[A-Z_]+$/);
      }
    }),
    { numRuns: RUNS_PER_ROUTE, seed: Number(process.env.TIDEMARK_FUZZ_SEED ?? 20261206), endOnFailure: true },
  );
}

describe('fuzzing every route', () => {
  it('never answers a 5xx, never crashes, and gives every 4xx a code', async () => {
    const report: string[] = [];
    const servers: [string, FastifyInstance][] = [['api', api], ['materializer', materializerServer]];
    for (const [name, app] of servers) {
      expect(app.routeScopes.size).toBeGreaterThan(0);
      for (const route of app.routeScopes.keys()) {
        const tally: Tally = { sent: 0, byStatus: {}, byCode: {} };
        await fuzzRoute(app, route, tally);
        const statuses = Object.entries(tally.byStatus).map(([s, n]) => `${s}x${n}`).join(' ');
        report.push(`  ${name.padEnd(12)} ${route.padEnd(28)} ${String(tally.sent).padStart(5)} requests, none gave a 5xx (${statuses})`);
      }
    }
    console.log(`fuzzed every route (${RUNS_PER_ROUTE} runs each):\n${report.join('\n')}`);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
  }, 600_000);
});
