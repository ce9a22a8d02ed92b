// HTTP error mapping: every error leaves as JSON with a stable code; coded client errors take their
// status from one table (400 naming the bad field, 401/403 auth, 413 limits), anything unexpected
// is a logged 500.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
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
  TM_MONITOR_UNKNOWN: 400,
  TM_LIMIT_EXCEEDED: 413,
  TM_LIMIT_RATE: 429,
  // The backing store is down: the request may work later.
  TM_OFFLINE_UNREACHABLE: 503,
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
