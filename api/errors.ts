// HTTP error mapping: every error leaves as JSON with a stable code; coded client errors take their
// status from one table (400 naming the bad field, 401/403 auth, 404 unknown names, 413 limits), anything unexpected
// is a logged 500.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TidemarkError, type ErrorCode } from '../definitions/index.js';
import { limitExceeded, type ApiLimits } from './limits.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The limit a route's bodyLimit comes from, named in its 413. */
    bodyLimitName?: keyof ApiLimits;
  }
}

/** The HTTP status of each coded error the API answers with; any other code is a logged 500. */
const STATUS: Partial<Record<ErrorCode, number>> = {
  TM_READ_UNKNOWN_FEATURE: 400,
  TM_READ_UNKNOWN_ENTITY: 400,
  TM_READ_MISSING_JOIN_KEY: 400,
  TM_READ_BAD_KEY: 400,
  TM_READ_BAD_REQUEST: 400,
  TM_READ_BEFORE_RETENTION: 400,
  TM_READ_INSIDE_OPEN_TILE: 400,
  TM_SPINE_MISSING_COLUMN: 400,
  TM_SPINE_BAD_COLUMN: 400,
  TM_SPINE_BAD_TIME: 400,
  TM_SPINE_BAD_KEY: 400,
  TM_SPINE_EMPTY: 400,
  TM_DATASET_UNKNOWN_FEATURE: 400,
  TM_DATASET_BAD_OUTPUT: 400,
  TM_MONITOR_BAD_REQUEST: 400,
  // A monitor, feature, slice, window, SLO, evaluation or alert the request names does not exist.
  TM_MONITOR_UNKNOWN: 404,
  TM_MONITOR_NOT_CONFIGURED: 404,
  TM_MONITOR_UNKNOWN_FEATURE: 404,
  TM_MONITOR_UNKNOWN_SLICE: 404,
  TM_MONITOR_UNKNOWN_WINDOW: 404,
  TM_MONITOR_UNKNOWN_SLO: 404,
  TM_MONITOR_NO_EVALUATION: 404,
  TM_ALERT_UNKNOWN: 404,
  TM_UI_NOT_FOUND: 404,
  TM_CONSISTENCY_BAD_REQUEST: 400,
  TM_CONSISTENCY_UNKNOWN_VIEW: 404,
  // The server was started without an offline store: not something a retry fixes.
  TM_CONSISTENCY_NO_OFFLINE: 501,
  TM_LIMIT_EXCEEDED: 413,
  TM_LIMIT_RATE: 429,
  // The backing store is down, or a view version is not built yet: the request may work later.
  TM_OFFLINE_UNREACHABLE: 503,
  TM_OFFLINE_SHARD_UNREACHABLE: 503,
  TM_OFFLINE_SHARDS_UNSUPPORTED: 501,
  TM_STORE_UNREACHABLE: 503,
  TM_STORE_SLOT_MIGRATING: 503,
  TM_STORE_TLS: 503,
  TM_STORE_AUTH: 503,
  TM_OFFLINE_TLS: 503,
  TM_OFFLINE_AUTH: 503,
  TM_STORE_NEEDS_BOOTSTRAP: 503,
  TM_STORE_STATE_LOST: 503,
  // A prediction the feature log could not take (queue full) or write (Kafka or the offline store down).
  TM_LOG_UNAVAILABLE: 503,
  TM_LOG_EMPTY: 400,
};

function statusLabel(status: number): string {
  return STATUS_CODES[status] ?? (status >= 500 ? 'Internal Server Error' : 'Bad Request');
}

/**
 * Errors the router raises before any route runs (a malformed URL, a path parameter over
 * maxParamLength): fastify's `frameworkErrors` option, so that they carry our code too.
 */
export function frameworkErrorReply(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  void reply.status(status).send({ statusCode: status, error: statusLabel(status), code: 'TM_READ_BAD_REQUEST' satisfies ErrorCode, message: error.message, cause: error.code ?? null });
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | TidemarkError, request, reply) => {
    if (error instanceof TidemarkError) {
      const status = STATUS[error.code] ?? 500;
      if (status >= 500) request.log.error({ err: error }, 'coded server error');
      return reply.status(status).send({ statusCode: status, error: statusLabel(status), ...error.toJSON() });
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const name = request.routeOptions.config.bodyLimitName;
      const length = Number(request.headers['content-length']);
      const got = Number.isSafeInteger(length) && length > 0 ? length : null;
      const refusal = name
        ? limitExceeded(name, request.routeOptions.bodyLimit ?? 0, got, 'request body bytes')
        : new TidemarkError('TM_LIMIT_EXCEEDED', `the request body is over the ${request.routeOptions.bodyLimit} bytes this route takes`, { limit: 'bodyLimit', max: request.routeOptions.bodyLimit, got, flag: null });
      return reply.status(413).send({ statusCode: 413, error: statusLabel(413), ...refusal.toJSON() });
    }
    if (hasZodFastifySchemaValidationErrors(error)) {
      const first = error.validation[0]!;
      const field = first.instancePath.replace(/^\//, '').replace(/\//g, '.') || 'body';
      return reply.status(400).send({
        statusCode: 400,
        error: 'Bad Request',
        code: 'TM_READ_BAD_REQUEST',
        message: `${field}: ${first.message}`,
        field,
        problems: error.validation.map((v) => ({ field: v.instancePath.replace(/^\//, '').replace(/\//g, '.') || 'body', message: v.message })),
      });
    }
    const status = typeof error.statusCode === 'number' && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500) request.log.error({ err: error }, 'unexpected error');
    // Body parse errors and the like: keep fastify's status, give them our code.
    return reply.status(status).send({
      statusCode: status,
      error: statusLabel(status),
      code: status >= 500 ? 'TM_INTERNAL' : 'TM_READ_BAD_REQUEST',
      message: status >= 500 ? 'internal error (logged)' : error.message,
      cause: error.code ?? null,
    });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ statusCode: 404, error: 'Not Found', code: 'TM_NOT_FOUND', message: `no route ${request.method} ${request.url}` });
  });
}


type Code = ErrorCode | 'TM_INTERNAL' | 'TM_NOT_FOUND';

/**
 * The JSON of an error answer as the handlers above send it, for a route's response schema (and so
 * the OpenAPI document): `code` is an enum of the codes the route can give with this status; the
 * other fields (validFeatures, validJoinKeys, expected, problems, ...) depend on the code.
 */
export function errorBody(status: number, codes: readonly [Code, ...Code[]], description: string) {
  return z
    .looseObject({
      statusCode: z.literal(status),
      error: z.literal(statusLabel(status)),
      code: z.enum(codes).describe('stable error code'),
      message: z.string(),
      field: z.string().optional().describe('the request field at fault, when one is'),
    })
    .describe(description);
}

/**
 * Response schemas of a route's error answers, by status. `badRequest`: its 400 codes (give
 * TM_READ_BAD_REQUEST where a schema validates the request); `notFound`: its 404 codes; `unavailable`: its 503 codes;
 * `serverError`: the coded server errors it can answer as 500s besides TM_INTERNAL (an unexpected
 * error, such as a failed Redis command); `body`: 413 and 415, which fastify raises for a body over
 * the route's limit or a content type it cannot parse (the handler keeps their status and gives
 * them TM_READ_BAD_REQUEST).
 */
export function errorResponses(opts: { badRequest?: readonly ErrorCode[]; notFound?: readonly ErrorCode[]; unavailable?: readonly ErrorCode[]; serverError?: readonly ErrorCode[]; body?: boolean } = {}) {
  const some = <T>(codes: readonly T[] | undefined): codes is readonly [T, ...T[]] => codes !== undefined && codes.length > 0;
  return {
    ...(some(opts.badRequest) ? { 400: errorBody(400, opts.badRequest, 'Bad request: a coded client error naming the bad field (and the valid choices where there are some)') } : {}),
    ...(some(opts.notFound) ? { 404: errorBody(404, opts.notFound, 'Not found: the monitor, feature, slice, window, SLO, evaluation or alert named does not exist (the details list the valid choices)') } : {}),
    // With --auth-tokens or --jwt-issuer (api/auth.ts); --rate-limit.
    401: errorBody(401, ['TM_AUTH_REQUIRED'], 'No token, or one the server does not know (when the server requires tokens)'),
    403: errorBody(403, ['TM_AUTH_FORBIDDEN'], 'The token lacks the scope the route needs (named in the answer)'),
    429: errorBody(429, ['TM_LIMIT_RATE'], "More requests per minute than the server's --rate-limit"),
    ...(opts.body
      ? {
          413: errorBody(413, ['TM_LIMIT_EXCEEDED', 'TM_READ_BAD_REQUEST'], "The body, or the entities, events or spine rows in it, exceed the route's limit (named in the answer with the flag that raises it)"),
          415: errorBody(415, ['TM_READ_BAD_REQUEST'], 'The content type is not one the server parses as JSON (application/json, text/plain, application/x-www-form-urlencoded)'),
        }
      : {}),
    500: errorBody(500, ['TM_INTERNAL', ...(opts.serverError ?? [])], 'Server error: TM_INTERNAL for an unexpected error (logged), else a coded server error'),
    ...(some(opts.unavailable) ? { 503: errorBody(503, opts.unavailable, 'A backing service is unreachable: the request may work later') } : {}),
  };
}
