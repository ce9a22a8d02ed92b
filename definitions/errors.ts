// Coded errors shared by every layer: the API, the CLI and the logs print the same stable code.

export type ErrorCode =
  // definitions
  | 'TM_DEF_BAD_DURATION'
  | 'TM_DEF_UNKNOWN_FIELD'
  | 'TM_DEF_NON_NUMERIC_FIELD'
  | 'TM_DEF_UNORDERED_FIELD'
  | 'TM_DEF_HOP_NOT_DIVIDING'
  | 'TM_DEF_DUPLICATE_NAME'
  | 'TM_DEF_MISSING_KEY_FIELD'
  | 'TM_DEF_TOO_MANY_TILES'
  | 'TM_DEF_EVENT_TIME'
  | 'TM_DEF_BAD_FEATURE'
  | 'TM_DEF_BAD_QUANTILE'
  | 'TM_DEF_BAD_NAME'
  | 'TM_DEF_LOAD'
  | 'TM_DEF_EMPTY'
  | 'TM_DEF_BAD_MONITOR'
  | 'TM_DEF_SLICE_NOT_KEY'
  // events
  | 'TM_EVENT_INVALID_JSON'
  | 'TM_EVENT_SCHEMA'
  | 'TM_EVENT_TIME'
  | 'TM_EVENT_FUTURE'
  | 'TM_EVENT_MISSING_KEY'
  // online reads
  | 'TM_READ_UNKNOWN_FEATURE'
  | 'TM_READ_UNKNOWN_ENTITY'
  | 'TM_READ_MISSING_JOIN_KEY'
  | 'TM_READ_BAD_KEY'
  | 'TM_READ_BAD_REQUEST'
  | 'TM_READ_BEFORE_RETENTION'
  | 'TM_READ_INSIDE_OPEN_TILE'
  // online stores
  | 'TM_STORE_LAYOUT_MISMATCH'
  | 'TM_STORE_BAD_UPDATE'
  | 'TM_STORE_BAD_CONFIG'
  | 'TM_STORE_UNREACHABLE'
  | 'TM_STORE_SLOT_MIGRATING'
  // the Redis TLS handshake failed (certificate not trusted, not TLS at all), or Redis refused the user and password
  | 'TM_STORE_TLS'
  | 'TM_STORE_AUTH'
  // a view version whose tiles are not built yet (tidemark bootstrap), or a store that lost them
  | 'TM_STORE_NEEDS_BOOTSTRAP'
  | 'TM_STORE_STATE_LOST'
  // tidemark plan
  | 'TM_PLAN_UNKNOWN_VIEW'
  // tidemark apply / bootstrap
  | 'TM_APPLY_NOT_APPLIED'
  | 'TM_BOOTSTRAP_FAILED'
  // stream ingest (the Kafka materializer)
  | 'TM_INGEST_FENCE_CONTENTION'
  // connection settings of a service: a CA or password file that cannot be read, SASL without a user
  | 'TM_SERVICE_CONFIG'
  // files
  | 'TM_FILE_READ'
  // offline store and datasets
  | 'TM_OFFLINE_QUERY'
  | 'TM_OFFLINE_UNREACHABLE'
  | 'TM_OFFLINE_TLS'
  | 'TM_OFFLINE_AUTH'
  // a shard of a sharded offline store (--clickhouse-shards) is down: the message and details name its URL
  | 'TM_OFFLINE_SHARD_UNREACHABLE'
  // a sharded offline store asked for something only a single node does (yet)
  | 'TM_OFFLINE_SHARDS_UNSUPPORTED'
  | 'TM_SPINE_MISSING_COLUMN'
  | 'TM_SPINE_BAD_COLUMN'
  | 'TM_SPINE_BAD_TIME'
  | 'TM_SPINE_BAD_KEY'
  | 'TM_SPINE_EMPTY'
  | 'TM_DATASET_UNKNOWN_FEATURE'
  | 'TM_DATASET_BAD_OUTPUT'
  // monitor: statistics (PSI, KS, calibration, label metrics) given invalid input
  | 'TM_MONITOR_BAD_INPUT'
  // monitor
  | 'TM_MONITOR_UNKNOWN'
  | 'TM_MONITOR_BAD_REQUEST'
  // monitor: what an API request names is not in the monitor's plan or stored results (the details list the valid choices)
  | 'TM_MONITOR_NOT_CONFIGURED'
  | 'TM_MONITOR_UNKNOWN_FEATURE'
  | 'TM_MONITOR_UNKNOWN_SLICE'
  | 'TM_MONITOR_UNKNOWN_WINDOW'
  | 'TM_MONITOR_UNKNOWN_SLO'
  | 'TM_MONITOR_NO_EVALUATION'
  | 'TM_ALERT_UNKNOWN'
  // the online/offline consistency probe (POST /consistency/sample)
  | 'TM_CONSISTENCY_UNKNOWN_VIEW'
  | 'TM_CONSISTENCY_BAD_REQUEST'
  | 'TM_CONSISTENCY_NO_OFFLINE'
  // monitor: burn-rate alerts
  | 'TM_SLO_BAD_POLICY'
  | 'TM_SLO_BAD_OBSERVATION'
  | 'TM_SLO_OUT_OF_ORDER'
  | 'TM_ALERT_BAD_LABEL'
  | 'TM_ALERT_STORE'
  | 'TM_ALERT_DELIVERY_FAILED'
  // ui: a dashboard chart builder given input it cannot draw truthfully (negative counts, mismatched bins)
  | 'TM_UI_BAD_CHART_INPUT'
  // ui: a dashboard page or asset the URL names does not exist (pages answer HTML listing the valid choices, with this code in x-tidemark-code)
  | 'TM_UI_NOT_FOUND'
  // feature logging: a feature-log record that fails its format (dead-lettered), a prediction the full queue could not take, a --from-log dataset with no logged reads
  | 'TM_LOG_BAD_RECORD'
  | 'TM_LOG_UNAVAILABLE'
  | 'TM_LOG_EMPTY'
  // HTTP (api/, the materializer's server)
  | 'TM_PUSH_UNAVAILABLE'
  | 'TM_AUTH_REQUIRED'
  | 'TM_AUTH_FORBIDDEN'
  | 'TM_AUTH_BAD_CONFIG'
  | 'TM_LIMIT_EXCEEDED'
  | 'TM_LIMIT_RATE'
  | 'TM_NOT_FOUND'
  | 'TM_INTERNAL';

/** An error value with a stable code, a message, and where it happened. */
export class TidemarkError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'TidemarkError';
    this.code = code;
    this.details = details;
  }
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.details };
  }
}

/** One problem found in the definitions; the compiler reports all of them together. */
export interface DefinitionError {
  code: ErrorCode;
  /** e.g. `featureView origin_delays` */
  definition: string;
  feature?: string;
  message: string;
  /** How to fix it. */
  hint: string;
}

export function formatDefinitionError(e: DefinitionError): string {
  const where = e.feature ? `${e.definition}, feature ${e.feature}` : e.definition;
  return `${e.code} ${where}: ${e.message}\n    fix: ${e.hint}`;
}

/** Thrown by compileOrThrow: carries every definition error at once. */
export class DefinitionErrors extends Error {
  readonly errors: DefinitionError[];
  constructor(errors: DefinitionError[]) {
    super(`${errors.length} definition error(s):\n${errors.map(formatDefinitionError).join('\n')}`);
    this.name = 'DefinitionErrors';
    this.errors = errors;
  }
}
