// Authentication with scopes, limits, CORS and security headers on every HTTP server: the token
// file's coded errors, 401/403 per route and scope, every route declaring its scope, the token
// name on pushed records and in the audit log, 413s naming their limit and flag, and the flags.
import { Command } from 'commander';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { authConfigFrom, installAuth, openServerWarning, parseAuthTokens, type AuthConfig } from '../../api/auth.js';
import { apiSecurityOptions, serverSecurity } from '../../api/cli.js';
import { pushRoutes, TOKEN_HEADER, type PushProducer } from '../../api/push-routes.js';
import { compileOrThrow, TidemarkError } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { buildMaterializerServer, FeatureLogQueue, type EncodedFeatureLogRecord, type Materializer } from '../../ingest/index.js';
import type { OfflineStore } from '../../offline/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import type { ServerOptions } from '../../api/server.js';

const compiled = compileOrThrow(flightsDefinitions);
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const sha = (token: string): string => createHash('sha256').update(token).digest('hex');

const TOKENS = [
  { name: 'reader', sha256: sha('reader-secret'), scopes: ['features:read'] },
  { name: 'trainer', sha256: sha('trainer-secret'), scopes: ['features:read', 'datasets:read'] },
  { name: 'pusher', sha256: sha('pusher-secret'), scopes: ['push:flights'] },
  { name: 'any-pusher', sha256: sha('any-pusher-secret'), scopes: ['push:*'] },
  { name: 'other-pusher', sha256: sha('other-pusher-secret'), scopes: ['push:trips'] },
  { name: 'oncall', sha256: sha('oncall-secret'), scopes: ['monitor:read'] },
  { name: 'scraper', sha256: sha('scraper-secret'), scopes: ['metrics:read'] },
  { name: 'logger', sha256: sha('logger-secret'), scopes: ['log:write'] },
  { name: 'root', sha256: sha('root-secret'), scopes: ['admin'] },
];
const auth = (protectMetrics = false): AuthConfig => ({ tokens: parseAuthTokens(JSON.stringify(TOKENS)), protectMetrics });
const bearer = (name: string): Record<string, string> => ({ authorization: `Bearer ${name}-secret` });

/** Offline store stand-in: the auth hook runs before any of it; a passed request reaches a coded 400. */
const fakeOffline = {
  shards: null,
  prepareDataset: async () => {
    throw new TidemarkError('TM_SPINE_EMPTY', 'fake offline store: no rows');
  },
  streamDataset: async () => {
    throw new TidemarkError('TM_SPINE_EMPTY', 'fake offline store: no rows');
  },
  executor: { rows: async () => [], command: async () => undefined },
} as unknown as OfflineStore;

const T0 = Date.UTC(2001, 0, 1, 8, 0);
const flight = (minutes: number, delay: unknown = 10) => ({ date: T0 + minutes * 60_000, delay, distance: 300, origin: 'SFO', destination: 'LAX' });

interface Sent {
  topic: string;
  messages: { key: string; value: string; headers?: Record<string, string> }[];
}

const loggedRecords: EncodedFeatureLogRecord[] = [];

async function apiServer(options: Partial<ServerOptions> = {}, push: { producer?: PushProducer; log?: (level: 'info', message: string, details: Record<string, unknown>) => void } = {}) {
  const store = new MemoryOnlineStore(compiled.registry);
  // Feature logging on (POST /feature-log/predictions, GET /metrics), into an in-process list.
  const featureLog = new FeatureLogQueue({ destination: 'memory', write: async (records) => void loggedRecords.push(...records) }, { sampleRate: 1 });
  const app = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark'), offline: fakeOffline, featureLog, ...options });
  await app.register(pushRoutes, push.producer ? { compiled, producer: push.producer, limits: options.limits, log: push.log } : { compiled, store, limits: options.limits, log: push.log });
  await app.ready();
  return app;
}

const READ = { features: ['origin_delays:flights_1h'], entities: { airport: ['SFO'] } };

/** One request per route that passes the route's own validation when authorized. */
const ROUTE_REQUESTS = {
  'POST /get-online-features': { method: 'POST', url: '/get-online-features', payload: READ },
  'GET /registry': { method: 'GET', url: '/registry' },
  'POST /datasets/historical': { method: 'POST', url: '/datasets/historical', payload: { features: ['origin_delays:flights_1h'], spine: [{ airport: 'SFO', ts: T0 }] } },
  'GET /monitor/metrics': { method: 'GET', url: '/monitor/metrics' },
  'GET /monitor/drift': { method: 'GET', url: '/monitor/drift' },
  'GET /alerts': { method: 'GET', url: '/alerts' },
  'GET /status/materializer': { method: 'GET', url: '/status/materializer' },
  'POST /consistency/sample': { method: 'POST', url: '/consistency/sample', payload: { view: 'origin_delays', keys: [['SFO']] } },
  'POST /push/:source': { method: 'POST', url: '/push/flights', payload: { events: [flight(0)] } },
  'POST /feature-log/predictions': { method: 'POST', url: '/feature-log/predictions', payload: { request_id: 'r-1', score: 0.5 } },
} as const;

describe('the token file', () => {
  const bad = (value: unknown): TidemarkError => {
    try {
      parseAuthTokens(typeof value === 'string' ? value : JSON.stringify(value), 'tokens.json');
    } catch (e) {
      expect(e).toBeInstanceOf(TidemarkError);
      expect((e as TidemarkError).code).toBe('TM_AUTH_BAD_CONFIG');
      return e as TidemarkError;
    }
    throw new Error('expected TM_AUTH_BAD_CONFIG');
  };

  it('reads hashed tokens with their scopes', () => {
    const tokens = parseAuthTokens(JSON.stringify(TOKENS));
    expect(tokens.map((t) => t.name)).toEqual(TOKENS.map((t) => t.name));
    expect([...tokens[1]!.scopes]).toEqual(['features:read', 'datasets:read']);
  });

  it('names the entry and the field of every mistake', () => {
    expect(bad('[{').message).toMatch(/^auth tokens tokens\.json: not JSON/);
    expect(bad({ name: 'x' }).message).toContain('must be a JSON list');
    expect(bad([]).message).toContain('lists no token');
    const badHash = bad([TOKENS[0], { name: 'trainer', sha256: 'abc', scopes: ['datasets:read'] }]);
    expect(badHash.message).toMatch(/entry 1 \(trainer\), field sha256: must be the hex SHA-256/);
    expect(badHash.details).toMatchObject({ entry: 1, name: 'trainer', field: 'sha256' });
    expect(bad([{ name: 'x', sha256: sha('x'), scopes: ['features:write'] }]).message).toMatch(/entry 0 \(x\), field scopes\.0: must be one of features:read, .*push:<source> or push:\*/);
    expect(bad([{ name: 'x', sha256: sha('x'), scopes: [] }]).details).toMatchObject({ field: 'scopes' });
    expect(bad([{ name: 'x', sha256: sha('x') }]).details).toMatchObject({ field: 'scopes' });
    expect(bad([{ name: 'x', sha256: sha('x'), scopes: ['admin'], token: 'plain' }]).message).toMatch(/entry 0 \(x\), field token:/);
    expect(bad([null]).message).toMatch(/entry 0, field entry/);
    expect(bad([TOKENS[0], { ...TOKENS[1], name: 'reader' }]).message).toMatch(/entry 1 \(reader\) repeats the name of entry 0/);
    expect(bad([TOKENS[0], { ...TOKENS[0], name: 'copy' }]).message).toMatch(/entry 1 \(copy\) repeats the sha256 of entry 0/);
  });

  it('comes from --auth-tokens or TIDEMARK_AUTH_TOKENS; --protect-metrics needs it; a missing file is coded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-auth-'));
    const file = join(dir, 'tokens.json');
    writeFileSync(file, JSON.stringify(TOKENS));
    expect(authConfigFrom({ authTokens: file })?.tokens).toHaveLength(TOKENS.length);
    expect(authConfigFrom({})).toBeNull();
    expect(() => authConfigFrom({ protectMetrics: true })).toThrow(/--protect-metrics needs tokens/);
    expect(() => authConfigFrom({ authTokens: join(dir, 'nope.json') })).toThrow(/auth tokens .*nope\.json: cannot read/);

    const parse = (args: string[]) => apiSecurityOptions(new Command('serve').exitOverride().configureOutput({ writeErr: () => undefined })).parse(args, { from: 'user' }).opts();
    const security = serverSecurity(parse(['--auth-tokens', file, '--max-entities', '5', '--request-timeout', '0', '--cors-origins', 'https://a.example, http://b.example:8080', '--security-headers']));
    expect(security.limits).toEqual({ entitiesPerRead: 5, requestTimeoutMs: 0 });
    expect(serverSecurity(parse(['--rate-limit', '600'])).limits).toEqual({ requestsPerMinute: 600 });
    expect(security.corsOrigins).toEqual(['https://a.example', 'http://b.example:8080']);
    expect(security.securityHeaders).toBe(true);
    expect(security.auth?.tokens).toHaveLength(TOKENS.length);
    expect(() => parse(['--max-entities', '0'])).toThrow(/--max-entities must be a whole number from 1 to/);
    expect(() => parse(['--max-query-limit', '100001'])).toThrow(/--max-query-limit must be a whole number from 1 to 100000/);
    expect(() => parse(['--cors-origins', 'https://a.example/path'])).toThrow(/--cors-origins takes origins/);
  });

  it('warns about a server open to the network only', () => {
    expect(openServerWarning('0.0.0.0', null)).toMatch(/without --auth-tokens/);
    expect(openServerWarning('10.0.0.5', null)).toMatch(/without --auth-tokens/);
    expect(openServerWarning('127.0.0.1', null)).toBeNull();
    expect(openServerWarning('localhost', null)).toBeNull();
    expect(openServerWarning('::1', null)).toBeNull();
    expect(openServerWarning('0.0.0.0', auth())).toBeNull();
  });
});

describe('tokens and scopes on the API', () => {
  let app: FastifyInstance;
  const sent: Sent[] = [];
  const audit: Record<string, unknown>[] = [];
  beforeAll(async () => {
    const producer: PushProducer = { send: async (record) => sent.push(record as Sent) };
    app = await apiServer({ auth: auth() }, { producer, log: (_level, message, details) => audit.push({ message, ...details }) });
  });
  afterAll(async () => {
    await app.close();
  });

  it('every route declares a scope or is on the open list', () => {
    // The API description (/openapi.json, the /docs page and its assets) and the dashboard's assets are open.
    const docs = [...app.routeScopes].filter(([, scope]) => scope === 'open:docs').map(([route]) => route);
    expect(docs.length).toBeGreaterThan(1);
    for (const route of docs) expect(route).toMatch(/^(GET|HEAD) \/(openapi\.json$|docs|ui\/assets\/)/);
    expect(Object.fromEntries([...app.routeScopes].filter(([, scope]) => scope !== 'open:docs'))).toEqual({
      'GET /healthz': 'open:health',
      'HEAD /healthz': 'open:health',
      'POST /get-online-features': 'features:read',
      'GET /registry': 'features:read',
      'HEAD /registry': 'features:read',
      'POST /datasets/historical': 'datasets:read',
      'GET /monitor/metrics': 'monitor:read',
      'HEAD /monitor/metrics': 'monitor:read',
      'GET /monitor/drift': 'monitor:read',
      'HEAD /monitor/drift': 'monitor:read',
      'GET /alerts': 'monitor:read',
      'HEAD /alerts': 'monitor:read',
      'GET /alerts/history': 'monitor:read',
      'HEAD /alerts/history': 'monitor:read',
      'GET /monitor/plans': 'monitor:read',
      'HEAD /monitor/plans': 'monitor:read',
      'GET /monitor/distribution': 'monitor:read',
      'HEAD /monitor/distribution': 'monitor:read',
      'GET /monitor/slo': 'monitor:read',
      'HEAD /monitor/slo': 'monitor:read',
      'GET /status/materializer': 'metrics:read',
      'HEAD /status/materializer': 'metrics:read',
      'POST /consistency/sample': 'datasets:read',
      'POST /push/:source': 'push',
      'POST /feature-log/predictions': 'log:write',
      'GET /metrics': 'open:health',
      'HEAD /metrics': 'open:health',
      // The dashboard: a page needs the scope of the JSON it shows.
      'GET /monitor': 'monitor:read',
      'HEAD /monitor': 'monitor:read',
      'GET /ui': 'monitor:read',
      'HEAD /ui': 'monitor:read',
      'GET /ui/': 'monitor:read',
      'HEAD /ui/': 'monitor:read',
      'GET /ui/alerts': 'monitor:read',
      'HEAD /ui/alerts': 'monitor:read',
      'GET /ui/alerts/:fingerprint': 'monitor:read',
      'HEAD /ui/alerts/:fingerprint': 'monitor:read',
      'GET /ui/monitor': 'monitor:read',
      'HEAD /ui/monitor': 'monitor:read',
      'GET /ui/monitor/:monitor/features/:feature': 'monitor:read',
      'HEAD /ui/monitor/:monitor/features/:feature': 'monitor:read',
      'GET /ui/monitor/:monitor/labels': 'monitor:read',
      'HEAD /ui/monitor/:monitor/labels': 'monitor:read',
      'GET /ui/views': 'features:read',
      'HEAD /ui/views': 'features:read',
      'GET /ui/views/:name': 'features:read',
      'HEAD /ui/views/:name': 'features:read',
    });
  });

  it('refuses to add a route that declares no scope', async () => {
    const bare = Fastify();
    installAuth(bare, null);
    expect(() => bare.get('/secret', async () => 'x')).toThrow(/route GET \/secret declares no scope/);
    await bare.close();
  });

  it('401 TM_AUTH_REQUIRED without a token or with an unknown one, on every scoped route', async () => {
    for (const [route, request] of Object.entries(ROUTE_REQUESTS)) {
      for (const headers of [{}, { authorization: 'Bearer not-a-token' }, { authorization: 'Basic cm9vdDpyb290' }, { authorization: 'Bearer ' }]) {
        const res = await app.inject({ ...request, headers });
        expect(res.statusCode, `${route} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.json()).toMatchObject({ code: 'TM_AUTH_REQUIRED' });
        expect(res.headers['www-authenticate']).toBe('Bearer');
      }
    }
    expect(sent).toHaveLength(0);
  });

  it('403 TM_AUTH_FORBIDDEN naming the scope a token lacks; 2xx or a route-level 4xx with it', async () => {
    const needs: Record<keyof typeof ROUTE_REQUESTS, { scope: string; allowed: string[] }> = {
      'POST /get-online-features': { scope: 'features:read', allowed: ['reader', 'trainer', 'root'] },
      'GET /registry': { scope: 'features:read', allowed: ['reader', 'trainer', 'root'] },
      'POST /datasets/historical': { scope: 'datasets:read', allowed: ['trainer', 'root'] },
      'GET /monitor/metrics': { scope: 'monitor:read', allowed: ['oncall', 'root'] },
      'GET /monitor/drift': { scope: 'monitor:read', allowed: ['oncall', 'root'] },
      'GET /alerts': { scope: 'monitor:read', allowed: ['oncall', 'root'] },
      'GET /status/materializer': { scope: 'metrics:read', allowed: ['scraper', 'root'] },
      'POST /consistency/sample': { scope: 'datasets:read', allowed: ['trainer', 'root'] },
      'POST /push/:source': { scope: 'push:flights', allowed: ['pusher', 'any-pusher', 'root'] },
      'POST /feature-log/predictions': { scope: 'log:write', allowed: ['logger', 'root'] },
    };
    for (const [route, request] of Object.entries(ROUTE_REQUESTS) as [keyof typeof ROUTE_REQUESTS, (typeof ROUTE_REQUESTS)[keyof typeof ROUTE_REQUESTS]][]) {
      for (const token of TOKENS.map((t) => t.name)) {
        const res = await app.inject({ ...request, headers: bearer(token) });
        if (needs[route].allowed.includes(token)) {
          expect([200, 202, 400], `${route} as ${token}: ${res.body}`).toContain(res.statusCode);
        } else {
          expect(res.statusCode, `${route} as ${token}`).toBe(403);
          expect(res.json()).toMatchObject({ code: 'TM_AUTH_FORBIDDEN', scope: needs[route].scope, token });
          expect(res.json().message).toContain(`lacks scope ${needs[route].scope}`);
        }
      }
    }
    // push:<source> is per source: push:trips does not push flights, and an unknown source needs push:<it>
    const unknown = await app.inject({ method: 'POST', url: '/push/trips', headers: bearer('other-pusher'), payload: { events: [{}] } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toMatchObject({ code: 'TM_READ_BAD_REQUEST', field: 'source' });
    expect((await app.inject({ method: 'POST', url: '/push/trips', headers: bearer('pusher'), payload: { events: [{}] } })).statusCode).toBe(403);
    // the scheme is case-insensitive
    expect((await app.inject({ method: 'GET', url: '/registry', headers: { authorization: 'bearer reader-secret' } })).statusCode).toBe(200);
  });

  it('leaves /healthz open and unknown routes a 404', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const missing = await app.inject({ method: 'GET', url: '/nope' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('TM_NOT_FOUND');
  });

  it('puts the token name of every push on its records (tidemark-token) and in the audit log', async () => {
    sent.length = 0;
    audit.length = 0;
    const res = await app.inject({ method: 'POST', url: '/push/flights', headers: bearer('pusher'), payload: { events: [flight(1), flight(2, 'late'), flight(3)] } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ accepted: 2, rejected: 1 });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.messages.map((m) => m.headers)).toEqual([{ [TOKEN_HEADER]: 'pusher' }, { [TOKEN_HEADER]: 'pusher' }]);
    expect(audit).toEqual([{ message: 'push', source: 'flights', token: 'pusher', accepted: 2, rejected: 1 }]);
  });
});

describe('--protect-metrics and the materializer server', () => {
  const materializer = { health: () => ({ status: 'ok' }), stats: () => ({}), metrics: { registry: new Registry() } } as unknown as Materializer;

  it('protects /healthz and /metrics with metrics:read, on the API and the materializer', async () => {
    const api = await apiServer({ auth: auth(true) });
    const mat = await buildMaterializerServer(materializer, () => ({}), (app) => installAuth(app, auth(true)));
    try {
      for (const [app, url] of [[api, '/healthz'], [api, '/metrics'], [mat, '/healthz'], [mat, '/metrics']] as const) {
        expect((await app.inject({ method: 'GET', url })).json()).toMatchObject({ code: 'TM_AUTH_REQUIRED', scope: 'metrics:read' });
        expect((await app.inject({ method: 'GET', url, headers: bearer('reader') })).statusCode).toBe(403);
        expect((await app.inject({ method: 'GET', url, headers: bearer('scraper') })).statusCode).toBe(200);
        expect((await app.inject({ method: 'GET', url, headers: bearer('root') })).statusCode).toBe(200);
      }
      expect((await mat.inject({ method: 'GET', url: '/nope' })).statusCode).toBe(404);
    } finally {
      await api.close();
      await mat.close();
    }
  });

  it('leaves the materializer open with tokens but without --protect-metrics', async () => {
    const mat = await buildMaterializerServer(materializer, () => ({}), (app) => installAuth(app, auth()));
    try {
      expect((await mat.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    } finally {
      await mat.close();
    }
  });
});

describe('limits', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await apiServer({ limits: { entitiesPerRead: 3, eventsPerPush: 2, spineRowsPerRequest: 2, queryLimit: 50, readBodyBytes: 2_000, pushBodyBytes: 4_000 } });
  });
  afterAll(async () => {
    await app.close();
  });

  const expectLimit = (res: { statusCode: number; json(): any }, limit: string, flag: string): void => {
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ code: 'TM_LIMIT_EXCEEDED', limit, flag });
    expect(res.json().message).toContain(flag);
  };

  it('refuses each with 413 TM_LIMIT_EXCEEDED naming the limit and the flag that raises it', async () => {
    const read = (n: number) => app.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['origin_delays:flights_1h'], entities: { airport: Array.from({ length: n }, (_, i) => `A${i}`) } } });
    expect((await read(3)).statusCode).toBe(200);
    expectLimit(await read(4), 'entitiesPerRead', '--max-entities');
    expectLimit(await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [flight(0), flight(1), flight(2)] } }), 'eventsPerPush', '--max-push-events');
    expectLimit(await app.inject({ method: 'POST', url: '/push/flights', payload: { df: { date: [T0, T0, T0], delay: [1, 2, 3], distance: [1, 1, 1], origin: ['A', 'A', 'A'], destination: ['B', 'B', 'B'] } } }), 'eventsPerPush', '--max-push-events');
    expect((await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [flight(0), flight(1)] } })).statusCode).toBe(200);
    expectLimit(await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features: ['origin_delays:flights_1h'], spine: [{ airport: 'A', ts: 1 }, { airport: 'A', ts: 2 }, { airport: 'A', ts: 3 }] } }), 'spineRowsPerRequest', '--max-spine-rows');
    expectLimit(await app.inject({ method: 'GET', url: '/monitor/metrics?limit=51' }), 'queryLimit', '--max-query-limit');
    expectLimit(await app.inject({ method: 'GET', url: '/monitor/drift?limit=1000000' }), 'queryLimit', '--max-query-limit');
    expect((await app.inject({ method: 'GET', url: '/monitor/drift?limit=50' })).statusCode).toBe(200);
    const big = await app.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['origin_delays:flights_1h'], entities: { airport: ['x'.repeat(3_000)] } } });
    expectLimit(big, 'readBodyBytes', '--max-read-body');
    expect(big.json()).toMatchObject({ max: 2_000 });
    expectLimit(await app.inject({ method: 'POST', url: '/push/flights', payload: { events: [{ pad: 'x'.repeat(5_000) }] } }), 'pushBodyBytes', '--max-push-body');
  });

  it('limits requests per minute per token with 429 TM_LIMIT_RATE (--rate-limit), per address without a token', async () => {
    for (const withAuth of [true, false]) {
      const limited = await apiServer({ limits: { requestsPerMinute: 3 }, ...(withAuth ? { auth: auth() } : {}) });
      try {
        const registry = (token: string) => limited.inject({ method: 'GET', url: '/registry', headers: withAuth ? bearer(token) : {} });
        for (let i = 0; i < 3; i++) expect((await registry('reader')).statusCode).toBe(200);
        const refused = await registry('reader');
        expect(refused.statusCode).toBe(429);
        expect(refused.json()).toMatchObject({ code: 'TM_LIMIT_RATE', limit: 'requestsPerMinute', max: 3, flag: '--rate-limit' });
        expect(refused.json().message).toContain(withAuth ? 'token reader' : 'address 127.0.0.1');
        expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
        // another token has its own budget; without tokens every client of one address shares one
        expect((await registry('trainer')).statusCode).toBe(withAuth ? 200 : 429);
      } finally {
        await limited.close();
      }
    }
  });

  it('defaults to 1 000 entities per read', async () => {
    const dflt = await apiServer();
    try {
      const res = await dflt.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['origin_delays:flights_1h'], entities: { airport: Array.from({ length: 1_001 }, (_, i) => `A${i}`) } } });
      expectLimit(res, 'entitiesPerRead', '--max-entities');
      expect(res.json()).toMatchObject({ max: 1_000, got: 1_001 });
    } finally {
      await dflt.close();
    }
  });
});

describe('CORS and security headers', () => {
  it('are off by default', async () => {
    const app = await apiServer();
    try {
      const res = await app.inject({ method: 'GET', url: '/registry', headers: { origin: 'https://ui.example' } });
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
      expect(res.headers['x-content-type-options']).toBeUndefined();
      expect((await app.inject({ method: 'OPTIONS', url: '/registry', headers: { origin: 'https://ui.example', 'access-control-request-method': 'GET' } })).statusCode).toBe(404);
    } finally {
      await app.close();
    }
  });

  it('answer allowed origins only, preflights without a token, and refusals with CORS headers', async () => {
    const app = await apiServer({ auth: auth(), corsOrigins: ['https://ui.example'], securityHeaders: true });
    try {
      expect(app.routeScopes.get('OPTIONS *')).toBe('open:preflight');
      const preflight = await app.inject({ method: 'OPTIONS', url: '/get-online-features', headers: { origin: 'https://ui.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
      expect(preflight.statusCode).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe('https://ui.example');
      expect(String(preflight.headers['access-control-allow-headers'])).toContain('authorization');
      const refused = await app.inject({ method: 'GET', url: '/registry', headers: { origin: 'https://ui.example' } });
      expect(refused.statusCode).toBe(401);
      expect(refused.headers['access-control-allow-origin']).toBe('https://ui.example');
      const ok = await app.inject({ method: 'GET', url: '/registry', headers: { origin: 'https://ui.example', ...bearer('reader') } });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers['access-control-allow-origin']).toBe('https://ui.example');
      expect(ok.headers['x-content-type-options']).toBe('nosniff');
      expect(ok.headers['strict-transport-security']).toBeDefined();
      expect(ok.headers['content-security-policy']).toBeDefined();
      const elsewhere = await app.inject({ method: 'GET', url: '/registry', headers: { origin: 'https://evil.example', ...bearer('reader') } });
      expect(elsewhere.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await app.close();
    }
  });
});

describe('JWTs (--jwt-issuer, --jwt-audience, --jwt-jwks)', () => {
  const ISSUER = 'https://idp.example';
  const AUDIENCE = 'tidemark';
  let app: FastifyInstance;
  let sign: (claims: Record<string, unknown>, options?: { issuer?: string; audience?: string; expiresIn?: string; key?: 'other' }) => Promise<string>;
  let jwksFile: string;
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-jwt-'));
  afterAll(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  beforeAll(async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const other = await generateKeyPair('ES256');
    jwksFile = join(dir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }));
    sign = (claims, options = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(options.issuer ?? ISSUER)
        .setAudience(options.audience ?? AUDIENCE)
        .setSubject('alice')
        .setIssuedAt()
        .setExpirationTime(options.expiresIn ?? '5m')
        .sign(options.key === 'other' ? other.privateKey : privateKey);
    const config = authConfigFrom({ jwtIssuer: ISSUER, jwtAudience: AUDIENCE, jwtJwks: jwksFile, authTokens: undefined })!;
    expect(config.tokens).toEqual([]);
    app = await apiServer({ auth: { ...config, tokens: auth().tokens } }, { producer: { send: async () => undefined } });
  });

  it('grants the scopes of the scope (or scp) claim to jwt:<sub>, next to the hashed tokens', async () => {
    const jwt = await sign({ scope: 'features:read push:flights openid' });
    const registry = await app.inject({ method: 'GET', url: '/registry', headers: { authorization: `Bearer ${jwt}` } });
    expect(registry.statusCode).toBe(200);
    const datasets = await app.inject({ ...ROUTE_REQUESTS['POST /datasets/historical'], headers: { authorization: `Bearer ${jwt}` } });
    expect(datasets.statusCode).toBe(403);
    expect(datasets.json()).toMatchObject({ code: 'TM_AUTH_FORBIDDEN', scope: 'datasets:read', token: 'jwt:alice' });
    expect((await app.inject({ ...ROUTE_REQUESTS['POST /push/:source'], headers: { authorization: `Bearer ${jwt}` } })).statusCode).toBe(200);
    const scp = await sign({ scp: ['datasets:read'] });
    expect((await app.inject({ ...ROUTE_REQUESTS['POST /datasets/historical'], headers: { authorization: `Bearer ${scp}` } })).statusCode).toBe(400); // past auth: the fake store's coded 400
    expect((await app.inject({ method: 'GET', url: '/registry', headers: bearer('reader') })).statusCode).toBe(200);
  });

  it('refuses a JWT of another issuer, audience or key, or expired, with 401 and the reason', async () => {
    for (const [jwt, reason] of [
      [await sign({ scope: 'admin' }, { issuer: 'https://evil.example' }), /ERR_JWT_CLAIM_VALIDATION_FAILED.*iss/],
      [await sign({ scope: 'admin' }, { audience: 'someone-else' }), /ERR_JWT_CLAIM_VALIDATION_FAILED.*aud/],
      [await sign({ scope: 'admin' }, { expiresIn: '-1m' }), /ERR_JWT_EXPIRED/],
      [await sign({ scope: 'admin' }, { key: 'other' }), /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/],
      [`${(await sign({ scope: 'admin' })).slice(0, -4)}AAAA`, /ERR_JWS_SIGNATURE_VERIFICATION_FAILED|ERR_JWS_INVALID/],
      ['e30.e30.', /ERR_JW/],
    ] as const) {
      const res = await app.inject({ method: 'GET', url: '/registry', headers: { authorization: `Bearer ${jwt}` } });
      expect(res.statusCode, String(reason)).toBe(401);
      expect(res.json().code).toBe('TM_AUTH_REQUIRED');
      expect(res.json().message, String(reason)).toMatch(reason);
    }
  });

  it('fetches the key set from a URL', async () => {
    const idp = Fastify();
    idp.get('/.well-known/jwks.json', async () => JSON.parse(readFileSync(jwksFile, 'utf8')) as unknown);
    const url = await idp.listen({ port: 0, host: '127.0.0.1' });
    const remote = await apiServer({ auth: authConfigFrom({ jwtIssuer: ISSUER, jwtAudience: AUDIENCE, jwtJwks: `${url}/.well-known/jwks.json` }) });
    try {
      const jwt = await sign({ scope: 'features:read' });
      expect((await remote.inject({ method: 'GET', url: '/registry', headers: { authorization: `Bearer ${jwt}` } })).statusCode).toBe(200);
      expect((await remote.inject({ method: 'GET', url: '/registry', headers: { authorization: `Bearer ${await sign({ scope: 'features:read' }, { key: 'other' })}` } })).statusCode).toBe(401);
    } finally {
      await remote.close();
      await idp.close();
    }
  });

  it('needs the three flags together and a readable key set', () => {
    expect(() => authConfigFrom({ jwtIssuer: ISSUER, jwtJwks: jwksFile })).toThrow(/give --jwt-audience too/);
    expect(() => authConfigFrom({ jwtIssuer: ISSUER, jwtAudience: AUDIENCE, jwtJwks: join(dir, 'nope.json') })).toThrow(/--jwt-jwks .*nope\.json: cannot read/);
    writeFileSync(join(dir, 'not-jwks.json'), '{"kty": "EC"}');
    expect(() => authConfigFrom({ jwtIssuer: ISSUER, jwtAudience: AUDIENCE, jwtJwks: join(dir, 'not-jwks.json') })).toThrow(/not a JWKS/);
    expect(authConfigFrom({ jwtIssuer: ISSUER, jwtAudience: AUDIENCE, jwtJwks: 'https://idp.example/.well-known/jwks.json' })?.jwt?.issuer).toBe(ISSUER);
    expect(openServerWarning('0.0.0.0', authConfigFrom({ jwtIssuer: ISSUER, jwtAudience: AUDIENCE, jwtJwks: jwksFile }))).toBeNull();
  });
});

describe('the commands', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-auth-cli-'));
  const good = join(dir, 'tokens.json');
  const bad = join(dir, 'bad.json');
  writeFileSync(good, JSON.stringify(TOKENS));
  writeFileSync(bad, JSON.stringify([{ name: 'trainer', sha256: 'not-hex', scopes: ['datasets:read'] }]));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });

  it('refuse a bad token file, or --protect-metrics without one, before doing anything else', () => {
    const quickstart = run(['quickstart', '--limit', '1000', '--no-offline', '--no-progress', '--data-dir', dir, '--auth-tokens', bad]);
    expect(quickstart.status).toBe(1);
    expect(quickstart.stderr).toMatch(/TM_AUTH_BAD_CONFIG: auth tokens .*bad\.json: entry 0 \(trainer\), field sha256: must be the hex SHA-256/);
    expect(quickstart.stdout).not.toContain('tidemark quickstart: registry');
    const serve = run(['serve', '--definitions', 'examples/flights', '--protect-metrics'], { TIDEMARK_AUTH_TOKENS: '' });
    expect(serve.status).toBe(1);
    expect(serve.stderr).toContain('TM_AUTH_BAD_CONFIG: --protect-metrics needs tokens');
    const env = run(['serve', '--definitions', 'examples/flights'], { TIDEMARK_AUTH_TOKENS: bad });
    expect(env.status).toBe(1);
    expect(env.stderr).toContain('TM_AUTH_BAD_CONFIG');
  });

  it('quickstart enforces the tokens of TIDEMARK_AUTH_TOKENS', async () => {
    const child = spawn(process.execPath, [BIN, 'quickstart', '--limit', '3000', '--port', '0', '--no-progress', '--no-offline', '--data-dir', dir], { cwd: ROOT, env: { ...process.env, TIDEMARK_AUTH_TOKENS: good } });
    try {
      let out = '';
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /serving the HTTP API on (http:\/\/\S+)/.exec(out);
          if (m && out.includes('curl')) resolve(m[1]!);
        });
        child.on('exit', (c) => reject(new Error(`quickstart exited ${c}: ${out}`)));
      });
      expect(out).toContain('-H "authorization: Bearer $TOKEN"');
      expect(err).not.toContain('warning');
      const read = (headers: Record<string, string>) =>
        fetch(`${url}/get-online-features`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] } }) });
      const refused = await read({});
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { code: string }).code).toBe('TM_AUTH_REQUIRED');
      expect((await read(bearer('oncall'))).status).toBe(403);
      expect((await read(bearer('reader'))).status).toBe(200);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
  }, 120_000);
});
