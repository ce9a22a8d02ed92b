// The HTTP server: fastify with the zod type provider; one plugin per API area.
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { OfflineStore } from '../offline/index.js';
import type { OnlineFeatureService, RegistryHistoryEntry } from '../online/index.js';
import { datasetRoutes } from './dataset-routes.js';
import { monitorRoutes } from './monitor-routes.js';
import { errorResponses, registerErrorHandling } from './errors.js';
import { registerOpenApi } from './openapi.js';
import { onlineRoutes } from './online-routes.js';

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
  /** Serves POST /datasets/historical, /monitor/* and /alerts when given. */
  offline?: OfflineStore;
  logger?: boolean;
  /** Extra health details (e.g. replay progress); status 'degraded' answers 503. */
  health?: () => Promise<HealthReport> | HealthReport;
  /** GET /registry/history: the registries applied to the online store (tidemark apply), oldest first. */
  registryHistory?: () => Promise<RegistryHistoryEntry[]>;
  /** Called for every route declared on the server, before the first (the OpenAPI test lists them). */
  onRoute?: (route: RouteOptions) => void;
}

export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: opts.logger ?? false }).withTypeProvider<ZodTypeProvider>();
  if (opts.onRoute) app.addHook('onRoute', opts.onRoute);
  app.setValidatorCompiler(validatorCompiler);
  // Feast's documented curl examples send JSON without a JSON content type: accept it anyway.
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, app.getDefaultJsonParser('error', 'ignore'));
  registerErrorHandling(app);
  // Before any route: the OpenAPI document lists the routes declared after it.
  await registerOpenApi(app);

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
  await app.register(onlineRoutes, { service: opts.service, ...(opts.registryHistory ? { registryHistory: opts.registryHistory } : {}) });
  if (opts.offline) {
    await app.register(datasetRoutes, { offline: opts.offline });
    await app.register(monitorRoutes, { offline: opts.offline });
  }
  return app;
}
