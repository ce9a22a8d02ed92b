// Request limits of the HTTP API: each has a default, a flag that raises it, and one coded refusal
// naming the limit and the flag (413 TM_LIMIT_EXCEEDED for sizes and counts, 429 TM_LIMIT_RATE for
// the rate), so a client knows what to change and an operator knows what to raise.
import { TidemarkError } from '../definitions/index.js';

export interface ApiLimits {
  /** Body bytes of POST /get-online-features. */
  readBodyBytes: number;
  /** Body bytes of POST /push/:source. */
  pushBodyBytes: number;
  /** Body bytes of POST /datasets/historical. */
  datasetBodyBytes: number;
  /** Entity rows per online read. */
  entitiesPerRead: number;
  /** Events per push. */
  eventsPerPush: number;
  /** Spine rows per HTTP dataset request (larger spines: `tidemark dataset --spine <file>`). */
  spineRowsPerRequest: number;
  /** Greatest `limit` of the monitor queries. */
  queryLimit: number;
  /** Entity keys one consistency probe compares (POST /consistency/sample). */
  consistencyKeys: number;
  /** Longest a client may take to send a whole request (ms); 0: no limit. */
  requestTimeoutMs: number;
  /** Requests per minute per token (per client address without one); 0: no limit. */
  requestsPerMinute: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_LIMITS: Readonly<ApiLimits> = {
  readBodyBytes: 1 * MiB,
  pushBodyBytes: 16 * MiB,
  datasetBodyBytes: 64 * MiB,
  entitiesPerRead: 1_000,
  eventsPerPush: 10_000,
  spineRowsPerRequest: 100_000,
  queryLimit: 10_000,
  // Each key is one online read row and one spine row of a point-in-time query.
  consistencyKeys: 1_000,
  // Long enough for a 64 MiB spine at 10 Mbit/s; short enough to drop slow-drip (slowloris) senders.
  requestTimeoutMs: 60_000,
  requestsPerMinute: 0,
};

/** The flag that sets each limit (the CLI defines them from this table). */
export const LIMIT_FLAGS: Readonly<Record<keyof ApiLimits, { flag: string; description: string }>> = {
  readBodyBytes: { flag: '--max-read-body', description: 'most bytes in a POST /get-online-features body' },
  pushBodyBytes: { flag: '--max-push-body', description: 'most bytes in a POST /push/:source body' },
  datasetBodyBytes: { flag: '--max-dataset-body', description: 'most bytes in a POST /datasets/historical body' },
  entitiesPerRead: { flag: '--max-entities', description: 'most entity rows per online read' },
  eventsPerPush: { flag: '--max-push-events', description: 'most events per push' },
  spineRowsPerRequest: { flag: '--max-spine-rows', description: 'most spine rows per HTTP dataset request (use tidemark dataset for more)' },
  queryLimit: { flag: '--max-query-limit', description: 'greatest limit of GET /monitor/metrics and /monitor/drift' },
  consistencyKeys: { flag: '--max-consistency-keys', description: 'most entity keys one POST /consistency/sample compares' },
  requestTimeoutMs: { flag: '--request-timeout', description: 'ms a client may take to send a whole request (0: no limit)' },
  requestsPerMinute: { flag: '--rate-limit', description: 'requests per minute per token, or per client address without one (0: no limit)' },
};

export function resolveLimits(given: Partial<ApiLimits> | undefined): ApiLimits {
  return { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(given ?? {}).filter(([, v]) => v !== undefined)) };
}

/** The refusal for `got` (null: unknown) over the limit `name` of `max`; `what` says what is counted (e.g. "entity rows"). */
export function limitExceeded(name: keyof ApiLimits, max: number, got: number | null, what: string): TidemarkError {
  const { flag } = LIMIT_FLAGS[name];
  return new TidemarkError('TM_LIMIT_EXCEEDED', `${got === null ? 'more' : got} ${what} ${got === null ? 'than' : 'is over'} the limit of ${max} (${name}); the server's operator can raise it with ${flag}`, { limit: name, max, got, flag });
}

/** Throws TM_LIMIT_EXCEEDED when `got` is over the limit. */
export function checkLimit(name: keyof ApiLimits, limits: ApiLimits, got: number, what: string): void {
  if (got > limits[name]) throw limitExceeded(name, limits[name], got, what);
}
