// The HTTP server: fastify with the zod type provider; one plugin per API area.
import Fastify, { type FastifyInstance } from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { OfflineStore } from '../offline/index.js';
import type { OnlineFeatureService } from '../online/index.js';
import { datasetRoutes } from './dataset-routes.js';
import { registerErrorHandling } from './errors.js';
import { onlineRoutes } from './online-routes.js';

export interface HealthReport {
  status: 'ok' | 'degraded';
  [detail: string]: unknown;
}

export interface ServerOptions {
  service: OnlineFeatureService;
  /** Serves POST /datasets/historical when given. */
  offline?: OfflineStore;
  logger?: boolean;
  /** Extra health details (e.g. replay progress); status 'degraded' answers 503. */
  health?: () => Promise<HealthReport> | HealthReport;
}

export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: opts.logger ?? false }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  // Feast's documented curl examples send JSON without a JSON content type: accept it anyway.
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'text/plain'], { parseAs: 'string' }, app.getDefaultJsonParser('error', 'ignore'));
  registerErrorHandling(app);

  app.get('/healthz', async (_request, reply) => {
    const watermarkMs = await opts.service.store.watermarkMs();
    const extra = opts.health ? await opts.health() : { status: 'ok' as const };
    const report = {
      registryVersion: opts.service.registry.version,
      clock: opts.service.clock,
      watermark: watermarkMs === null ? null : new Date(watermarkMs).toISOString(),
      ...extra,
    };
    return reply.status(report.status === 'ok' ? 200 : 503).send(report);
  });
  await app.register(onlineRoutes, { service: opts.service });
  if (opts.offline) await app.register(datasetRoutes, { offline: opts.offline });
  return app;
}
