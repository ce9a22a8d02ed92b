// HTTP error mapping: every error leaves as JSON with a stable code; coded client errors are 400s
// that name the bad field, anything unexpected is a logged 500.
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TidemarkError, type ErrorCode } from '../definitions/index.js';

const CLIENT_ERRORS = new Set<ErrorCode>([
  'TM_READ_UNKNOWN_FEATURE',
  'TM_READ_UNKNOWN_ENTITY',
  'TM_READ_MISSING_JOIN_KEY',
  'TM_READ_BAD_KEY',
  'TM_READ_BAD_REQUEST',
  'TM_READ_BEFORE_RETENTION',
  'TM_READ_INSIDE_OPEN_TILE',
  'TM_SPINE_MISSING_COLUMN',
  'TM_SPINE_BAD_COLUMN',
  'TM_SPINE_BAD_TIME',
  'TM_SPINE_BAD_KEY',
  'TM_SPINE_EMPTY',
  'TM_DATASET_UNKNOWN_FEATURE',
  'TM_DATASET_BAD_OUTPUT',
  'TM_MONITOR_BAD_REQUEST',
  'TM_MONITOR_UNKNOWN',
]);
/** The backing store is down: the request may work later. */
const UNAVAILABLE = new Set<ErrorCode>(['TM_OFFLINE_UNREACHABLE', 'TM_STORE_UNREACHABLE', 'TM_STORE_NEEDS_BOOTSTRAP', 'TM_STORE_STATE_LOST']);

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | TidemarkError, request, reply) => {
    if (error instanceof TidemarkError) {
      const status = CLIENT_ERRORS.has(error.code) ? 400 : UNAVAILABLE.has(error.code) ? 503 : 500;
      if (status >= 500) request.log.error({ err: error }, 'coded server error');
      const label = status === 400 ? 'Bad Request' : status === 503 ? 'Service Unavailable' : 'Internal Server Error';
      return reply.status(status).send({ statusCode: status, error: label, ...error.toJSON() });
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
      error: status >= 500 ? 'Internal Server Error' : 'Bad Request',
      code: status >= 500 ? 'TM_INTERNAL' : 'TM_READ_BAD_REQUEST',
      message: status >= 500 ? 'internal error (logged)' : error.message,
      cause: error.code ?? null,
    });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ statusCode: 404, error: 'Not Found', code: 'TM_NOT_FOUND', message: `no route ${request.method} ${request.url}` });
  });
}

/** The `error` label the handlers above send with each status. */
function statusLabel(status: number): string {
  return status === 404 ? 'Not Found' : status === 503 ? 'Service Unavailable' : status >= 500 ? 'Internal Server Error' : 'Bad Request';
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
 * TM_READ_BAD_REQUEST where a schema validates the request); `unavailable`: its 503 codes;
 * `serverError`: the coded server errors it can answer as 500s besides TM_INTERNAL (an unexpected
 * error, such as a failed Redis command); `body`: 413 and 415, which fastify raises for a body over
 * the route's limit or a content type it cannot parse (the handler keeps their status and gives
 * them TM_READ_BAD_REQUEST).
 */
export function errorResponses(opts: { badRequest?: readonly ErrorCode[]; unavailable?: readonly ErrorCode[]; serverError?: readonly ErrorCode[]; body?: boolean } = {}) {
  const some = <T>(codes: readonly T[] | undefined): codes is readonly [T, ...T[]] => codes !== undefined && codes.length > 0;
  return {
    ...(some(opts.badRequest) ? { 400: errorBody(400, opts.badRequest, 'Bad request: a coded client error naming the bad field (and the valid choices where there are some)') } : {}),
    ...(opts.body
      ? {
          413: errorBody(413, ['TM_READ_BAD_REQUEST'], "The body is larger than the route's limit"),
          415: errorBody(415, ['TM_READ_BAD_REQUEST'], 'The content type is not one the server parses as JSON (application/json, text/plain, application/x-www-form-urlencoded)'),
        }
      : {}),
    500: errorBody(500, ['TM_INTERNAL', ...(opts.serverError ?? [])], 'Server error: TM_INTERNAL for an unexpected error (logged), else a coded server error'),
    ...(some(opts.unavailable) ? { 503: errorBody(503, opts.unavailable, 'A backing service is unreachable: the request may work later') } : {}),
  };
}
