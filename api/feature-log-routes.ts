// The feature-log plugin (tidemark serve / quickstart with --log-features): POST
// /feature-log/predictions logs a model's score under the request id of a logged read, so that a
// training set or the monitor can join it to the values served; GET /metrics serves the log's
// Prometheus metrics (records written, dropped because the queue was full or the write failed,
// sampled out, queue depth).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { FEATURE_LOG_FORMAT_VERSION, type FeatureLogQueue } from '../ingest/index.js';
import { TidemarkError } from '../definitions/index.js';
import { errorResponses } from './errors.js';

const PredictionBody = z.strictObject({
  request_id: z.string().min(1).max(200).describe('the request id of the read the prediction was made from (x-request-id of POST /get-online-features)'),
  score: z.number().finite().describe("the model's output"),
  model: z.string().min(1).max(200).optional().describe('model name (and version)'),
  at: z.number().int().optional().describe('prediction time in epoch ms (default: now)'),
});

const PredictionAnswer = z.object({
  request_id: z.string(),
  destination: z.string().describe('kafka:<prefix>.feature_log, or the offline store in embedded mode'),
  status: z.literal('written').describe('written to the destination (Kafka acknowledged it, or the offline store holds it)'),
});

export const featureLogRoutes: FastifyPluginAsyncZod<{ featureLog: FeatureLogQueue; nowMs?: () => number }> = async (app, { featureLog, nowMs = Date.now }) => {
  const predictionSchema = {
    tags: ['feature-log'],
    summary: "Log a model's score for a request id (stored in tm_prediction_log); answered once written",
    description:
      'The request id is not checked against the logged reads: the read may be written later, by another server, or not sampled. ' +
      "The monitor's label metrics (predictions: 'feature_log') count a prediction whose read is not logged under `without_read`, in `all` and in `<slice>=(null)`.",
    body: PredictionBody,
    response: { 200: PredictionAnswer.describe('Written'), ...errorResponses({ badRequest: ['TM_READ_BAD_REQUEST'], unavailable: ['TM_LOG_UNAVAILABLE'], body: true }) },
  };
  app.post('/feature-log/predictions', { schema: predictionSchema, config: { scope: 'log:write' } }, async (request, reply) => {
    const body = request.body;
    // Answered once written, so an accepted prediction is never lost: the label metrics are computed from these.
    try {
      await featureLog.offerAndWait({ kind: 'prediction', v: FEATURE_LOG_FORMAT_VERSION, request_id: body.request_id, score: body.score, model: body.model ?? null, at_ms: body.at ?? nowMs() });
    } catch (e) {
      throw new TidemarkError('TM_LOG_UNAVAILABLE', `prediction for request ${body.request_id} not logged (${(e as Error).message}); retry later`, { request_id: body.request_id, destination: featureLog.sink.destination });
    }
    return reply.status(200).send({ request_id: body.request_id, destination: featureLog.sink.destination, status: 'written' as const });
  });

  const metricsSchema = { tags: ['health'], summary: "The feature log's Prometheus metrics (text format 0.0.4)", response: { 200: z.string().describe('Prometheus text'), ...errorResponses() } };
  app.get('/metrics', { schema: metricsSchema }, async (_request, reply) => {
    const registry = featureLog.metrics.registry;
    return reply.type(registry.contentType).send(await registry.metrics());
  });
};
