// HTTP error mapping: every error leaves as JSON with a stable code; coded client errors are 400s
// that name the bad field, anything unexpected is a logged 500.
import type { FastifyError, FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
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
