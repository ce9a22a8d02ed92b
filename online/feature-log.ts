// What a served get-online-features read is logged as (ingest/feature-log.ts has the format): the
// request id, the read time, the entity keys as the request gave them, every value with its status
// and event time, and the registry version.
import { FEATURE_LOG_FORMAT_VERSION, type LoggedReadRecord } from '../ingest/index.js';
import type { OnlineFeaturesRequest, OnlineFeaturesResponse } from './serve.js';

/** Event time (ms) of an event_timestamps entry: null for a value with no event behind it. */
function eventTimeMsOf(status: string, text: string): number | null {
  if (status !== 'PRESENT') return null;
  const ms = Date.parse(text);
  return Number.isFinite(ms) && ms !== 0 ? ms : null;
}

/** The feature-log record of one answered read. */
export function loggedReadOf(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string): LoggedReadRecord {
  const joinKeys = Object.keys(request.entities);
  return {
    kind: 'read',
    v: FEATURE_LOG_FORMAT_VERSION,
    request_id: requestId,
    read_time_ms: atMs,
    registry_version: registryVersion,
    entities: request.entities,
    features: request.features.map((ref, i) => {
      const column = response.results[joinKeys.length + i]!;
      const [view, feature] = ref.split(':') as [string, string];
      return {
        view,
        feature,
        values: column.values as (string | number | boolean | null)[],
        statuses: column.statuses,
        event_times_ms: column.statuses.map((s, row) => eventTimeMsOf(s, column.event_timestamps[row]!)),
      };
    }),
  };
}
