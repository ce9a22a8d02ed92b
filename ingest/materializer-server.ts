// The materializer's own small HTTP server, for probes and scrapes: GET /healthz (200 ok, 503
// degraded, with the reasons) and GET /metrics (Prometheus text format, from prom-client).
// `prepare` runs before the routes are added: the CLI installs its token check there (api/ owns
// authentication; both routes are on its open list, protected only with --protect-metrics).
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { ErrorCode } from '../definitions/index.js';
import type { Materializer } from './kafka-materializer.js';

export async function buildMaterializerServer(
  materializer: Materializer,
  details: () => Promise<Record<string, unknown>> | Record<string, unknown> = () => ({}),
  prepare?: (app: FastifyInstance) => void,
): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    // A malformed URL is refused by the router before any route: give it a code like every answer.
    frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      void reply.status(400).send({ statusCode: 400, error: 'Bad Request', code: 'TM_READ_BAD_REQUEST' satisfies ErrorCode, message: error.message, cause: error.code ?? null });
    },
  });
  prepare?.(app);
  app.get('/healthz', async (_request, reply) => {
    const health = materializer.health();
    const extra = await Promise.resolve(details()).catch((e: unknown) => ({ detailsError: e instanceof Error ? e.message : String(e) }));
    return reply.status(health.status === 'ok' ? 200 : 503).send({ ...health, ...extra, stats: materializer.stats() });
  });
  app.get('/metrics', async (_request, reply) => {
    const registry = materializer.metrics.registry;
    return reply.type(registry.contentType).send(await registry.metrics());
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ statusCode: 404, error: 'Not Found', code: 'TM_NOT_FOUND' satisfies ErrorCode, message: `no route ${request.method} ${request.url} (this is the materializer: /healthz, /metrics)` });
  });
  return app;
}
