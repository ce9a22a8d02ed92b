// The push plugin: POST /push/:source, the analogue of Feast's push endpoint. Events are validated
// by the same decoder as the stream path (schema, join keys, event time, future skew); the good
// ones are produced to the source's Kafka topic (services mode), or, with no Kafka, applied to the
// online store through the materializer core (embedded mode). The answer says, per event, whether
// it was accepted, and for a rejected one the code, the failing field and the reason.
//
// Body: `{"events": [{...}, ...]}` (rows), or Feast's columnar `{"df": {"col": [v0, v1, ...], ...}}`.
// Kafka mode produces the event as received (its JSON), keyed by its entity key in the source's
// first view, so one entity's events stay in one partition, in order. If the produce fails the
// answer is a 503 (TM_PUSH_UNAVAILABLE) and no event is reported accepted; a produce that failed
// part-way, or timed out, may still have written some partitions, so a retry can duplicate them
// (Kafka has no multi-partition atomic write without transactions).
//
// With tokens configured the route needs push:<source> (or push:*); the token's name goes into the
// audit log line of the push and, as the `tidemark-token` header, onto every record produced.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TidemarkError, type CompiledDefinitions, type ErrorCode, type TileBatch } from '../definitions/index.js';
import { EventDecoder, TileBatchBuilder, type DecodedEvent } from '../ingest/index.js';
import { errorResponses } from './errors.js';
import { checkLimit, resolveLimits, type ApiLimits } from './limits.js';

/** What the push plugin needs of a Kafka producer (a kafkajs Producer fits). */
export interface PushProducer {
  send(record: { topic: string; acks?: number; messages: { key: string; value: string; headers?: Record<string, string> }[] }): Promise<unknown>;
}

/**
 * Kafka header naming the token that pushed a record; the materializer copies a record's headers
 * onto its dead letter, so a bad record can be traced to who wrote it.
 */
export const TOKEN_HEADER = 'tidemark-token';

export interface PushRoutesOptions {
  compiled: CompiledDefinitions;
  /** Services mode: good events go to the source's topic. */
  producer?: PushProducer;
  /** Embedded mode (no producer): good events are applied to this store directly. */
  store?: { apply(batch: TileBatch): Promise<unknown> | unknown };
  /** Wall time for the future-skew rule. */
  nowMs?: () => number;
  /** Longest a produce may take before the answer is a 503 (kafkajs retries for long); default 10 000 ms. */
  produceTimeoutMs?: number;
  /** eventsPerPush and pushBodyBytes are read; defaults: DEFAULT_LIMITS. */
  limits?: Partial<ApiLimits>;
  /** Audit line per push (who, which source, how many); default: the request's fastify logger. */
  log?: (level: 'info', message: string, details: Record<string, unknown>) => void;
}

export type PushResult = { index: number; status: 'accepted' } | { index: number; status: 'rejected'; code: string; field: string | null; reason: string };

const PushBody = z.union([
  z.object({ events: z.array(z.unknown()).min(1) }),
  z.object({ df: z.record(z.string(), z.array(z.unknown())), push_source_name: z.string().optional(), to: z.string().optional() }),
]);

const PushAnswer = z.object({
  source: z.string(),
  destination: z.string().describe('kafka:<topic>, or online-store in embedded mode'),
  accepted: z.number().int(),
  rejected: z.number().int(),
  results: z.array(
    z.object({
      index: z.number().int(),
      status: z.enum(['accepted', 'rejected']),
      code: z.string().optional().describe('why rejected: TM_EVENT_SCHEMA, TM_EVENT_TIME, TM_EVENT_FUTURE, TM_EVENT_MISSING_KEY, ...'),
      field: z.string().nullable().optional(),
      reason: z.string().optional(),
    }),
  ),
});

const pushSchema = {
  tags: ['push'],
  summary: "Push events of a source (Feast's push endpoint): rows in `events`, or Feast's columnar `df`",
  params: z.object({ source: z.string().describe('source name') }),
  body: PushBody,
  response: {
    200: PushAnswer.describe('Per event, accepted or rejected with the code, field and reason; only the accepted ones were written'),
    ...errorResponses({ badRequest: ['TM_READ_BAD_REQUEST'], unavailable: ['TM_PUSH_UNAVAILABLE'], body: true }),
  },
};

/** Feast's columnar `df` as rows; columns of unequal length are a bad request. */
function rowsOfColumns(df: Record<string, unknown[]>, limits: ApiLimits): Record<string, unknown>[] {
  const columns = Object.entries(df);
  const n = columns[0]?.[1].length ?? 0;
  for (const [name, values] of columns) {
    if (values.length !== n) throw new TidemarkError('TM_READ_BAD_REQUEST', `df.${name} has ${values.length} values, df.${columns[0]![0]} has ${n}: columns must be of equal length`, { field: `df.${name}` });
  }
  if (n === 0) throw new TidemarkError('TM_READ_BAD_REQUEST', 'df must hold at least one row', { field: 'df' });
  checkLimit('eventsPerPush', limits, n, 'events');
  return Array.from({ length: n }, (_, i) => Object.fromEntries(columns.map(([name, values]) => [name, values[i]])));
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  promise.catch(() => undefined); // a late failure after the timeout answered is not unhandled
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const pushRoutes: FastifyPluginAsyncZod<PushRoutesOptions> = async (app, opts) => {
  if (!opts.producer && !opts.store) throw new Error('pushRoutes needs a producer (Kafka mode) or a store (embedded mode)');
  const registry = opts.compiled.registry;
  const decoders = new Map(registry.sources.map((s) => [s.name, new EventDecoder(opts.compiled, s.name, opts.nowMs)]));
  const builder = opts.producer ? null : new TileBatchBuilder(registry);
  const limits = resolveLimits(opts.limits);
  const config = { scope: 'push', bodyLimitName: 'pushBodyBytes' } as const;

  app.post('/push/:source', { schema: pushSchema, config, bodyLimit: limits.pushBodyBytes }, async (request, reply) => {
    const decoder = decoders.get(request.params.source);
    if (!decoder) {
      throw new TidemarkError('TM_READ_BAD_REQUEST', `unknown source ${request.params.source}`, { field: 'source', validSources: [...decoders.keys()] });
    }
    const body = request.body;
    if ('events' in body) checkLimit('eventsPerPush', limits, body.events.length, 'events');
    const events: unknown[] = 'events' in body ? body.events : rowsOfColumns(body.df, limits);
    const results: PushResult[] = [];
    const good: { event: DecodedEvent; value: unknown }[] = [];
    events.forEach((value, index) => {
      const decoded = decoder.decodeValue(value);
      if (decoded.ok) {
        good.push({ event: decoded.event, value });
        results.push({ index, status: 'accepted' });
      } else {
        results.push({ index, status: 'rejected', code: decoded.bad.code, field: decoded.bad.field, reason: decoded.bad.reason });
      }
    });
    const source = decoder.source;
    if (good.length > 0) {
      try {
        if (opts.producer) {
          const headers = typeof request.tokenName !== 'string' ? undefined : { [TOKEN_HEADER]: request.tokenName };
          const sent = opts.producer.send({ topic: source.topic, acks: -1, messages: good.map((g) => ({ key: g.event.viewKeys[0] ?? '', value: JSON.stringify(g.value), ...(headers ? { headers } : {}) })) });
          await withTimeout(sent, opts.produceTimeoutMs ?? 10_000, `no acknowledgement from Kafka within ${opts.produceTimeoutMs ?? 10_000} ms`);
        } else {
          await opts.store!.apply(builder!.build(good.map((g) => g.event)));
        }
      } catch (e) {
        request.log.error({ err: e, token: request.tokenName }, 'push: write failed');
        return reply.status(503).send({
          statusCode: 503,
          error: 'Service Unavailable',
          code: 'TM_PUSH_UNAVAILABLE' satisfies ErrorCode,
          message: `${opts.producer ? `producing to Kafka topic ${source.topic}` : 'applying to the online store'} failed: ${e instanceof Error ? e.message : String(e)}; no event is reported accepted (some may have been written anyway: a retry can duplicate them)`,
          source: source.name,
        });
      }
    }
    const audit = { source: source.name, token: request.tokenName, accepted: good.length, rejected: events.length - good.length };
    if (opts.log) opts.log('info', 'push', audit);
    else request.log.info(audit, 'push');
    return {
      source: source.name,
      destination: opts.producer ? `kafka:${source.topic}` : 'online-store',
      accepted: good.length,
      rejected: events.length - good.length,
      results,
    };
  });
};
