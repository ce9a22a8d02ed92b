// The datasets plugin: POST /datasets/historical computes a point-in-time dataset for a spine
// given inline and streams it as Arrow IPC (stream format) or newline-delimited JSON.
import { RecordBatchStreamWriter, type RecordBatch } from 'apache-arrow';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { Readable } from 'node:stream';
import { z } from 'zod';
import type { OfflineStore } from '../offline/index.js';
import { errorResponses } from './errors.js';
import { checkLimit, type ApiLimits } from './limits.js';

const ARROW_STREAM = 'application/vnd.apache.arrow.stream';

const HistoricalBody = z.object({
  features: z.array(z.string()).min(1),
  /** Rows with the entity's join keys, `ts` (epoch ms or ISO-8601) and any passthrough columns. */
  spine: z.array(z.record(z.string(), z.unknown())).min(1),
  /** Default: Arrow when the Accept header asks for it, else JSON lines. */
  format: z.enum(['arrow', 'json']).optional(),
});

const DatasetErrors = errorResponses({
  badRequest: ['TM_READ_BAD_REQUEST', 'TM_DATASET_UNKNOWN_FEATURE', 'TM_SPINE_MISSING_COLUMN', 'TM_SPINE_BAD_COLUMN', 'TM_SPINE_BAD_TIME', 'TM_SPINE_BAD_KEY'],
  unavailable: ['TM_OFFLINE_UNREACHABLE', 'TM_OFFLINE_SHARD_UNREACHABLE'],
  serverError: ['TM_OFFLINE_QUERY'],
  body: true,
});

const historicalSchema = {
  tags: ['datasets'],
  summary: 'A point-in-time dataset for an inline spine',
  description:
    'Each spine row gets the feature values as of its `ts`. The answer streams; x-tidemark-rows and x-tidemark-columns give its row count and columns. ' +
    'Errors in the spine or the features, and a shard of a sharded offline store that cannot be reached, are answered before any byte of the dataset; ' +
    'a failure after the first bytes cuts the stream (no complete answer).',
  body: HistoricalBody,
  response: {
    200: {
      description: 'The dataset: JSON lines (one object per spine row), or an Arrow IPC stream',
      content: {
        'application/x-ndjson': { schema: z.string().describe('one JSON object per line: the spine columns and one column per feature') },
        [ARROW_STREAM]: { schema: z.string().describe('Arrow IPC stream format (binary)') },
      },
    },
    ...DatasetErrors,
  },
};

export const datasetRoutes: FastifyPluginAsyncZod<{ offline: OfflineStore; limits: ApiLimits }> = async (app, { offline, limits }) => {
  const config = { scope: 'datasets:read', bodyLimitName: 'datasetBodyBytes' } as const;
  app.post('/datasets/historical', { schema: historicalSchema, config, bodyLimit: limits.datasetBodyBytes }, async (request, reply) => {
    checkLimit('spineRowsPerRequest', limits, request.body.spine.length, 'spine rows');
    const format = request.body.format ?? (request.headers.accept?.includes(ARROW_STREAM) ? 'arrow' : 'json');
    // Spine and feature errors, and a shard that cannot be reached, are raised here, as coded errors, before any byte is sent.
    const prepared = await offline.streamDataset(request.body.spine, request.body.features);
    // The query starts (on a sharded store, every shard's) and its first rows come before the status
    // line, so a query or a shard that fails at once is a coded error too.
    const source = format === 'json' ? prepared.jsonLines()[Symbol.asyncIterator]() : prepared.arrowBatches()[Symbol.asyncIterator]();
    let first: IteratorResult<Uint8Array | RecordBatch>;
    try {
      first = await source.next();
    } catch (e) {
      await prepared.release();
      throw e;
    }
    reply.header('x-tidemark-rows', String(prepared.rows));
    reply.header('x-tidemark-columns', prepared.columns.join(','));
    if (format === 'json') {
      const lines = source as AsyncIterator<Uint8Array>;
      async function* body(): AsyncIterable<Uint8Array> {
        try {
          for (let step = first as IteratorResult<Uint8Array>; !step.done; step = await lines.next()) yield step.value;
        } catch (e) {
          // the status line is sent: the client sees the stream cut; the log says why
          request.log.error({ err: e }, 'dataset stream failed');
          throw e;
        } finally {
          await lines.return?.();
          await prepared.release();
        }
      }
      return reply.type('application/x-ndjson').send(Readable.from(body()));
    }
    const batches = source as AsyncIterator<RecordBatch>;
    const writer = new RecordBatchStreamWriter();
    const body = writer.toNodeStream();
    void (async () => {
      try {
        for (let step = first as IteratorResult<RecordBatch>; !step.done; step = await batches.next()) writer.write(step.value);
        writer.finish();
      } catch (e) {
        request.log.error({ err: e }, 'dataset stream failed');
        body.destroy(e as Error);
      } finally {
        await batches.return?.();
        await prepared.release();
      }
    })();
    return reply.type(ARROW_STREAM).send(body);
  });
};
