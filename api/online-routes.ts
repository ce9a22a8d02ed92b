// The online plugin: POST /get-online-features in Feast's feature-server JSON shape (plus an
// optional `at`), GET /registry. With a feature log, every read gets a request id (x-request-id)
// and a sample of the reads is queued to the log (ingest/feature-log.ts).
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TidemarkError } from '../definitions/index.js';
import type { FeatureLogQueue } from '../ingest/index.js';
import { offerLoggedRead, type JoinKeyValue, type OnlineFeatureService, type RegistryHistoryEntry } from '../online/index.js';
import { errorResponses } from './errors.js';
import { checkLimit, type ApiLimits } from './limits.js';

const REQUEST_ID_MAX = 200;
const WITH_EVENT_TIMES = { eventTimes: true } as const;
const NO_OPTIONS = {} as const;

const GetOnlineFeaturesBody = z.object({
  features: z.array(z.string()).optional().describe('feature references view:feature (required; optional in the schema as in Feast, where feature_service may stand instead)'),
  feature_service: z.string().optional().describe('not supported: answered with TM_READ_BAD_REQUEST'),
  // Values are checked by the service, which names the expected type of each join key.
  entities: z.record(z.string(), z.array(z.unknown())).describe('join key -> one value per entity row'),
  full_feature_names: z.boolean().optional().describe('name features view__feature instead of feature'),
  at: z.number().int().optional().describe('read time in epoch ms (default: the store clock)'),
  request_id: z.string().min(1).max(REQUEST_ID_MAX).optional().describe('with feature logging on: the id the read is logged under (default: the x-request-id header, else a generated UUID)'),
});

const OnlineFeaturesAnswer = z.object({
  metadata: z.object({
    feature_names: z.array(z.string()).describe('join keys first, then the features'),
    request_id: z.string().optional().describe('with feature logging on: the request id (also in the x-request-id header), whether or not this read was sampled'),
  }),
  results: z.array(
    z.object({
      values: z.array(z.union([z.string(), z.number(), z.boolean(), z.null()])).describe('one value per entity row'),
      statuses: z.array(z.enum(['PRESENT', 'NULL_VALUE', 'NOT_FOUND', 'OUTSIDE_MAX_AGE'])),
      event_timestamps: z.array(z.string()).describe('RFC 3339: the latest event time behind each value (1970-01-01T00:00:00Z when none)'),
    }),
  ).describe('one entry per name of metadata.feature_names'),
});

const ReadErrors = errorResponses({
  badRequest: ['TM_READ_BAD_REQUEST', 'TM_READ_UNKNOWN_FEATURE', 'TM_READ_UNKNOWN_ENTITY', 'TM_READ_MISSING_JOIN_KEY', 'TM_READ_BAD_KEY', 'TM_READ_BEFORE_RETENTION', 'TM_READ_INSIDE_OPEN_TILE'],
  // A Redis store whose recorded tile layout differs from these definitions refuses every read.
  serverError: ['TM_STORE_LAYOUT_MISMATCH'],
  // Servers of definitions whose view version is not bootstrapped yet, or a store that lost its data.
  unavailable: ['TM_STORE_NEEDS_BOOTSTRAP', 'TM_STORE_STATE_LOST'],
  body: true,
});

const HistoryEntry = z.object({
  version: z.number().int().describe('1, 2, ... in apply order'),
  registryVersion: z.string().describe("the registry's content hash (definitions hash)"),
  appliedAt: z.string().describe('ISO-8601'),
  definitions: z.string().describe('the definitions path given to tidemark apply'),
  views: z.record(z.string(), z.string()).describe('view -> its version namespace <view>@<id>'),
  changes: z.array(z.string()).describe('one line per view that changed'),
});

/** The request id of a logged read: the body's request_id, else the x-request-id header, else a new UUID. */
function requestIdOf(bodyId: string | undefined, header: string | string[] | undefined): string {
  if (bodyId !== undefined) return bodyId;
  const given = Array.isArray(header) ? header[0] : header;
  if (given === undefined || given === '') return randomUUID();
  if (given.length > REQUEST_ID_MAX) {
    throw new TidemarkError('TM_READ_BAD_REQUEST', `header x-request-id has ${given.length} characters; a request id has at most ${REQUEST_ID_MAX}`, { field: 'x-request-id' });
  }
  return given;
}

export const onlineRoutes: FastifyPluginAsyncZod<{ service: OnlineFeatureService; limits: ApiLimits; registryHistory?: () => Promise<RegistryHistoryEntry[]>; featureLog?: FeatureLogQueue }> = async (app, { service, limits, registryHistory, featureLog }) => {
  const config = { scope: 'features:read', bodyLimitName: 'readBodyBytes' } as const;
  const readSchema = {
    tags: ['online'],
    summary: "Read features of entities (Feast's feature-server JSON, plus `at`)",
    body: GetOnlineFeaturesBody,
    response: { 200: OnlineFeaturesAnswer.describe('The values; the x-tidemark-read-time header holds the read time used (epoch ms)'), ...ReadErrors },
  };
  app.post('/get-online-features', { schema: readSchema, config, bodyLimit: limits.readBodyBytes }, async (request, reply) => {
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
    const requestId = featureLog ? requestIdOf(body.request_id, request.headers['x-request-id']) : null;
    // Drawn before the read: a logged read asks for its event times in ms (its ages), not the texts parsed back.
    const logged = featureLog ? featureLog.draw() : false;
    const { response, atMs, eventTimesMs } = await service.getOnlineFeatures(body.at === undefined ? request_ : { ...request_, at: body.at }, logged ? WITH_EVENT_TIMES : NO_OPTIONS);
    reply.header('x-tidemark-read-time', String(atMs));
    if (featureLog && requestId !== null) {
      reply.header('x-request-id', requestId);
      // Never waits: a full queue drops the record and counts it (GET /metrics).
      if (logged) offerLoggedRead(featureLog, request_, response, atMs, requestId, service.registry.version, eventTimesMs);
      else featureLog.countSampledOut();
      // The response is this read's own: adding the id in place spares copying it per read.
      (response.metadata as { request_id?: string }).request_id = requestId;
      return response;
    }
    return response;
  });

  const registrySchema = {
    tags: ['online'],
    summary: 'The compiled registry: entities, sources, views and their tile plans',
    response: { 200: z.looseObject({ version: z.string().describe('content hash'), entities: z.array(z.unknown()), sources: z.array(z.unknown()), views: z.array(z.unknown()) }).describe('The compiled registry'), ...errorResponses() },
  };
  app.get('/registry', { schema: registrySchema, config: { scope: 'features:read' } }, async () => service.registry);

  if (registryHistory) {
    const historySchema = {
      tags: ['online'],
      summary: 'The registries applied to the online store (tidemark apply), oldest first',
      response: { 200: z.object({ versions: z.array(HistoryEntry) }).describe('The registry history'), ...errorResponses({ unavailable: ['TM_STORE_UNREACHABLE'] }) },
    };
    app.get('/registry/history', { schema: historySchema, config: { scope: 'features:read' } }, async () => ({ versions: await registryHistory() }));
  }
};
