// The online plugin: POST /get-online-features in Feast's feature-server JSON shape (plus an
// optional `at`), GET /registry.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TidemarkError } from '../definitions/index.js';
import type { JoinKeyValue, OnlineFeatureService } from '../online/index.js';
import { checkLimit, type ApiLimits } from './limits.js';

const GetOnlineFeaturesBody = z.object({
  features: z.array(z.string()).optional(),
  feature_service: z.string().optional(),
  // Values are checked by the service, which names the expected type of each join key.
  entities: z.record(z.string(), z.array(z.unknown())),
  full_feature_names: z.boolean().optional(),
  at: z.number().int().optional(),
});

export const onlineRoutes: FastifyPluginAsyncZod<{ service: OnlineFeatureService; limits: ApiLimits }> = async (app, { service, limits }) => {
  const config = { scope: 'features:read', bodyLimitName: 'readBodyBytes' } as const;
  app.post('/get-online-features', { schema: { body: GetOnlineFeaturesBody }, config, bodyLimit: limits.readBodyBytes }, async (request, reply) => {
    const body = request.body;
    for (const values of Object.values(body.entities)) checkLimit('entitiesPerRead', limits, values.length, 'entity rows');
    if (body.feature_service !== undefined || body.features === undefined) {
      throw new TidemarkError(
        'TM_READ_BAD_REQUEST',
        body.feature_service !== undefined ? 'feature services are not supported: list the features as view:feature' : 'features is required: list the features as view:feature',
        { field: body.feature_service !== undefined ? 'feature_service' : 'features', validFeatures: service.featureRefs() },
      );
    }
    const request_ = { features: body.features, entities: body.entities as Record<string, JoinKeyValue[]>, full_feature_names: body.full_feature_names ?? false };
    const { response, atMs } = await service.getOnlineFeatures(body.at === undefined ? request_ : { ...request_, at: body.at });
    reply.header('x-tidemark-read-time', String(atMs));
    return response;
  });

  app.get('/registry', { config: { scope: 'features:read' } }, async () => service.registry);
};
