// The HTTP server: fastify with the zod type provider; one plugin per API area. Security is opt-in
// per flag (tokens or JWTs, CORS, headers, a rate limit); every route declares the scope it needs
// (api/auth.ts) and the limits come from one table (api/limits.ts).
import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TidemarkError, type CompiledDefinitions } from '../definitions/index.js';
import type { OfflineStore } from '../offline/index.js';
import type { OnlineFeatureService, RegistryHistoryEntry } from '../online/index.js';
import { datasetRoutes } from './dataset-routes.js';
import { monitorRoutes } from './monitor-routes.js';
import { declareRouteScopes, requireTokens, type AuthConfig } from './auth.js';
import { errorResponses, frameworkErrorReply, registerErrorHandling } from './errors.js';
import { LIMIT_FLAGS, resolveLimits, type ApiLimits } from './limits.js';
import { registerOpenApi } from './openapi.js';
import { onlineRoutes } from './online-routes.js';
import { featureLogRoutes } from './feature-log-routes.js';
import type { FeatureLogQueue } from '../ingest/index.js';
import { dashboardRoutes } from '../ui/index.js';
import type { MaterializerReport } from './materializer-status.js';
import { statusRoutes } from './status-routes.js';

const HealthBody = z.looseObject({
  status: z.enum(['ok', 'degraded']),
  registryVersion: z.string(),
  clock: z.string().describe('the store clock: wall or watermark'),
  watermark: z.string().nullable().describe('greatest materialized event time (ISO-8601), null before any'),
  storeError: z.string().optional().describe('why the online store could not answer'),
});

export interface HealthReport {
  status: 'ok' | 'degraded';
  [detail: string]: unknown;
}

export interface ServerOptions {
  service: OnlineFeatureService;
  /** Serves POST /datasets/historical, /monitor/* and /alerts when given, and POST /consistency/sample compares with it. */
  offline?: OfflineStore;
  /** The compiled definitions that hold the monitors (their plans, SLOs and views): the monitor routes and the dashboard describe them. */
  monitors?: CompiledDefinitions;
  logger?: boolean;
  /** Extra health details (e.g. replay progress); status 'degraded' answers 503. */
  health?: () => Promise<HealthReport> | HealthReport;
  /**
   * What GET /status/materializer reports of the materializer: the quickstart's replay stats, or a
   * scrape of a stream materializer's /metrics (serve --materializer-metrics-url); absent: null.
   */
  materializerStatus?: () => Promise<MaterializerReport>;
  /** GET /registry/history: the registries applied to the online store (tidemark apply), oldest first. */
  registryHistory?: () => Promise<RegistryHistoryEntry[]>;
  /** Called for every route declared on the server, before the first (the OpenAPI test lists them). */
  onRoute?: (route: RouteOptions) => void;
  /** Tokens and scopes; absent or null: every route is open. */
  auth?: AuthConfig | null;
  /** Defaults: DEFAULT_LIMITS. */
  limits?: Partial<ApiLimits>;
  /** Origins allowed to call the API from a browser; absent or empty: no CORS headers. */
  corsOrigins?: readonly string[];
  /** Send helmet's security headers (CSP, HSTS, nosniff, frame options, ...). */
  securityHeaders?: boolean;
  /** Entity keys to prefill the dashboard's live read with (a store that lists keys cheaply). */
  sampleKeys?: (view: string) => string[];
  /** Alertmanager's base URL: the dashboard's alert pages link to it. */
  alertmanagerUrl?: string;
  /**
   * Feature logging (--log-features): reads get a request id and a sample is queued to the log;
   * POST /feature-log/predictions and GET /metrics (the log's metrics) are served.
   */
  featureLog?: FeatureLogQueue;
}

export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const limits = resolveLimits(opts.limits);
  const app = Fastify({ logger: opts.logger ?? false, requestTimeout: limits.requestTimeoutMs, frameworkErrors: frameworkErrorReply }).withTypeProvider<ZodTypeProvider>();
  if (opts.onRoute) app.addHook('onRoute', opts.onRoute);
  app.setValidatorCompiler(validatorCompiler);
  // Feast's documented curl examples send JSON without a JSON content type: accept it anyway.
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, app.getDefaultJsonParser('error', 'ignore'));
  registerErrorHandling(app);
  declareRouteScopes(app);
  // Before any route: the OpenAPI document lists the routes declared after it.
  await registerOpenApi(app);
  if (opts.corsOrigins && opts.corsOrigins.length > 0) {
    // strictPreflight off: a malformed preflight gets an empty 204 rather than the plugin's uncoded
    // text 400 (every 4xx of the API carries a code); browsers never send one.
    await app.register(cors, { origin: [...opts.corsOrigins], strictPreflight: false, allowedHeaders: ['authorization', 'content-type', 'accept', 'x-request-id'], exposedHeaders: ['x-tidemark-read-time', 'x-tidemark-rows', 'x-tidemark-columns', 'x-request-id'], maxAge: 600 });
  }
  if (opts.securityHeaders) await app.register(helmet);
  requireTokens(app, opts.auth ?? null);
  if (limits.requestsPerMinute > 0) {
    // Its hooks are route-level, so they run after the token check and can count per token.
    await app.register(rateLimit, {
      max: limits.requestsPerMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => (request.tokenName === null ? `address ${request.ip}` : `token ${request.tokenName}`),
      errorResponseBuilder: (request, context) =>
        new TidemarkError('TM_LIMIT_RATE', `more than ${context.max} requests per minute from ${request.tokenName === null ? `address ${request.ip}` : `token ${request.tokenName}`} (requestsPerMinute); retry after ${context.after}, or the server's operator can raise it with ${LIMIT_FLAGS.requestsPerMinute.flag}`, {
          limit: 'requestsPerMinute',
          max: context.max,
          retryAfterMs: context.ttl,
          flag: LIMIT_FLAGS.requestsPerMinute.flag,
        }),
    });
  }

  const healthSchema = {
    tags: ['health'],
    summary: 'Server status, registry version, store clock and watermark',
    response: {
      200: HealthBody.describe('The server and its online store answer'),
      503: HealthBody.describe('Degraded: the online store cannot answer (storeError says why), or a start-up step is still running'),
      ...errorResponses(),
    },
  };
  app.get('/healthz', { schema: healthSchema }, async (_request, reply) => {
    const extra: HealthReport = opts.health ? await opts.health() : { status: 'ok' };
    // A store that cannot answer (Redis down) makes the server degraded, not broken: 503, not 500.
    let watermark: string | null = null;
    let storeError: string | undefined;
    try {
      const watermarkMs = await opts.service.store.watermarkMs();
      watermark = watermarkMs === null ? null : new Date(watermarkMs).toISOString();
    } catch (e) {
      storeError = `online store unavailable: ${(e as Error).message}`;
    }
    const report = {
      registryVersion: opts.service.registry.version,
      clock: opts.service.clock,
      watermark,
      ...extra,
      ...(storeError === undefined ? {} : { status: 'degraded' as const, storeError }),
    };
    return reply.status(report.status === 'ok' ? 200 : 503).send(report);
  });
  await app.register(onlineRoutes, { service: opts.service, limits, ...(opts.registryHistory ? { registryHistory: opts.registryHistory } : {}), ...(opts.featureLog ? { featureLog: opts.featureLog } : {}) });
  if (opts.featureLog) await app.register(featureLogRoutes, { featureLog: opts.featureLog });
  await app.register(statusRoutes, { service: opts.service, offline: opts.offline ?? null, limits, ...(opts.materializerStatus ? { materializerStatus: opts.materializerStatus } : {}) });
  if (opts.offline) {
    await app.register(datasetRoutes, { offline: opts.offline, limits });
    await app.register(monitorRoutes, { offline: opts.offline, limits, monitors: opts.monitors ?? null });
  }
  await app.register(dashboardRoutes, {
    service: opts.service,
    offline: opts.offline ?? null,
    monitors: opts.monitors ?? null,
    ...(opts.sampleKeys ? { sampleKeys: opts.sampleKeys } : {}),
    alertmanagerUrl: opts.alertmanagerUrl ?? null,
  });
  return app;
}
