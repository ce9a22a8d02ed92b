// The status plugin, for the dashboard's overview and registry pages: GET /status/materializer (the
// online store's clock, watermark, freshness and view versions, plus what the materializer
// reports) and POST /consistency/sample (the live online/offline consistency probe).
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { OfflineStore } from '../offline/index.js';
import type { OnlineFeatureService } from '../online/index.js';
import { DEFAULT_SAMPLE_KEYS, MISMATCH_ROWS_SHOWN, runConsistencyProbe } from './consistency.js';
import { errorBody, errorResponses } from './errors.js';
import type { ApiLimits } from './limits.js';
import { onlineStoreStatus, type MaterializerReport } from './materializer-status.js';

const KeyValue = z.union([z.string(), z.number(), z.boolean()]);
const FeatureValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const MaterializerMetrics = z.object({
  kind: z.literal('metrics'),
  url: z.string().describe("the materializer's /metrics (serve --materializer-metrics-url)"),
  reachable: z.literal(true),
  scrapedAt: z.string(),
  healthy: z.boolean().nullable().describe('tidemark_materializer_healthy'),
  watermarkMs: z.number().nullable().describe('tidemark_materializer_watermark_ms; null before its first batch'),
  watermark: z.string().nullable(),
  freshnessMs: z.number().nullable().describe('wall clock now minus that watermark'),
  freshnessSeconds: z
    .object({ count: z.number(), mean: z.number().nullable(), p50AtMost: z.number().nullable(), p99AtMost: z.number().nullable() })
    .describe('tidemark_materializer_freshness_seconds since the materializer started: mean, and the upper bounds of the buckets holding p50 and p99 (null past the last bucket)'),
  commitLag: z.object({ total: z.number(), partitions: z.array(z.object({ topic: z.string(), partition: z.string(), lag: z.number() })) }).describe('tidemark_materializer_commit_lag'),
  events: z.number().describe('tidemark_materializer_events_total'),
  deadLetters: z.number().describe('tidemark_materializer_bad_events_total'),
  lateTileEvents: z.number().describe('tidemark_materializer_late_tile_events_total'),
  batchesInFlight: z.number().nullable(),
});

const MaterializerBody = z
  .union([
    z.object({ kind: z.literal('replay'), rebuilt: z.boolean().describe('rebuilt from the offline store instead of replayed from the file'), events: z.number(), badEvents: z.number(), lateTileEvents: z.number(), seconds: z.number() }).describe('the embedded replay (quickstart) that built the in-memory store'),
    MaterializerMetrics,
    z.object({ kind: z.literal('metrics'), url: z.string(), reachable: z.literal(false), error: z.string().describe('why the scrape failed') }),
    z.null().describe('nothing known: serve was started without --materializer-metrics-url'),
  ])
  .describe("what the materializer reports: the quickstart's replay, or the scraped gauges of a stream materializer");

const StatusBody = z.object({
  store: z.object({ kind: z.enum(['memory', 'redis', 'other']), prefix: z.string().nullable() }),
  registryVersion: z.string(),
  clock: z.enum(['wall', 'watermark']),
  now: z.string().describe('wall clock of the server (ISO-8601)'),
  readTime: z.string().describe('the time a read without `at` uses now'),
  watermark: z.string().nullable().describe('greatest materialized event time (ISO-8601), null before any'),
  watermarkMs: z.number().nullable(),
  freshnessMs: z.number().nullable().describe('wall clock now minus the watermark (ms)'),
  freshness: z.string().describe('what freshnessMs measures under this clock'),
  views: z.array(
    z.object({
      view: z.string(),
      namespace: z.string().describe('the key namespace <view>@<version id> these definitions read'),
      status: z.enum(['pending', 'bootstrapping', 'ready', 'unrecorded']).describe('Redis: the version status in the meta hash (unrecorded: none); memory: ready'),
      keys: z.number().nullable(),
      bootstrap: z
        .object({ startedAt: z.string(), finishedAt: z.string().nullable(), keys: z.number(), tiles: z.number(), events: z.number(), checkpoint: z.string().nullable() })
        .nullable()
        .describe("the version's bootstrap progress (tidemark bootstrap)"),
    }),
  ),
  storeError: z.string().optional().describe('why the online store could not answer'),
  materializer: MaterializerBody,
});

const ConsistencyBody = z.object({
  view: z.string().describe('the feature view to probe'),
  keys: z
    .union([z.array(z.array(KeyValue)).describe('one list of join key values per entity, in join key order'), z.record(z.string(), z.array(KeyValue)).describe('join key -> one value per entity')])
    .optional()
    .describe('the entities to compare (default: a sample)'),
  sample: z.number().int().min(1).optional().describe(`keys to sample from the offline store's events inside the view's retention, by hash of the key (default ${DEFAULT_SAMPLE_KEYS}; at most the server's --max-consistency-keys)`),
  at: z.union([z.number().int(), z.string()]).optional().describe("the instant compared: epoch ms or ISO-8601 (default: the store clock's read time now)"),
});

const ConsistencyAnswer = z.object({
  view: z.string(),
  at: z.string(),
  atMs: z.number(),
  keysFrom: z.enum(['request', 'sample']),
  keysCompared: z.number(),
  joinKeys: z.array(z.string()),
  keys: z.array(z.array(KeyValue)).describe('the keys compared, each as its values in join key order'),
  features: z.array(
    z.object({
      feature: z.string(),
      agg: z.string(),
      tolerance: z.number().describe('relative tolerance of the comparison (docs/semantics.md); 0: exact'),
      exactMatchRate: z.number().nullable().describe('share of keys with identical values'),
      agreementRate: z.number().nullable().describe('share of keys whose values agree within the tolerance'),
      maxAbsDiff: z.number().nullable().describe('largest |online - offline| where both are numbers'),
      mismatches: z.number().describe('keys whose values do not agree'),
    }),
  ),
  mismatches: z.array(z.object({ key: z.record(z.string(), KeyValue), feature: z.string(), online: FeatureValue, offline: FeatureValue })).describe(`the first ${MISMATCH_ROWS_SHOWN} mismatching (key, feature) pairs`),
  mismatchesOmitted: z.number(),
});

export const statusRoutes: FastifyPluginAsyncZod<{ service: OnlineFeatureService; offline: OfflineStore | null; limits: ApiLimits; materializerStatus?: () => Promise<MaterializerReport> }> = async (
  app,
  { service, offline, limits, materializerStatus },
) => {
  const statusSchema = {
    tags: ['status'],
    summary: 'Materializer status for on-call: store, clock, watermark, freshness, view versions, materializer gauges',
    description: 'Always 200 when the server is up: an online store that cannot answer is named in storeError, an unreachable materializer in materializer.error.',
    response: { 200: StatusBody.describe('The status'), ...errorResponses() },
  };
  app.get('/status/materializer', { schema: statusSchema, config: { scope: 'metrics:read' } }, async () => {
    const [store, materializer] = await Promise.all([onlineStoreStatus(service, Date.now()), materializerStatus ? materializerStatus() : Promise.resolve(null)]);
    return { ...store, materializer };
  });

  const consistencySchema = {
    tags: ['status'],
    summary: 'Compare online reads with offline point-in-time values for K keys of a view at one instant',
    body: ConsistencyBody,
    response: {
      200: ConsistencyAnswer.describe('Per feature: exact-match and agreement rates, max |diff|, mismatches; and the mismatching rows'),
      ...errorResponses({
        badRequest: ['TM_READ_BAD_REQUEST', 'TM_CONSISTENCY_BAD_REQUEST', 'TM_READ_BAD_KEY', 'TM_READ_BEFORE_RETENTION', 'TM_READ_INSIDE_OPEN_TILE'],
        unavailable: ['TM_OFFLINE_UNREACHABLE', 'TM_OFFLINE_SHARD_UNREACHABLE', 'TM_STORE_UNREACHABLE', 'TM_STORE_NEEDS_BOOTSTRAP', 'TM_STORE_STATE_LOST'],
        serverError: ['TM_OFFLINE_QUERY', 'TM_STORE_LAYOUT_MISMATCH'],
        body: true,
      }),
      404: errorBody(404, ['TM_CONSISTENCY_UNKNOWN_VIEW'], 'No such view (validViews lists them)'),
      501: errorBody(501, ['TM_CONSISTENCY_NO_OFFLINE'], 'The server has no offline store (start tidemark serve with --clickhouse-url, --clickhouse-shards or --data-dir)'),
    },
  };
  app.post('/consistency/sample', { schema: consistencySchema, config: { scope: 'datasets:read', bodyLimitName: 'readBodyBytes' }, bodyLimit: limits.readBodyBytes }, async (request) =>
    runConsistencyProbe(service, offline, request.body, limits.consistencyKeys),
  );
};
