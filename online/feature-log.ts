// What a served get-online-features read is logged as (ingest/feature-log.ts has the format): the
// request id, the read time, the entity keys as the request gave them, every value with its status
// and event time, and the registry version. `encodeLoggedRead` writes the same JSON text as
// JSON.stringify(loggedReadOf(...)) without building the record first: it is the serving path's
// share of the logging cost.
import { FEATURE_LOG_FORMAT_VERSION, type EncodedFeatureLogRecord, type LoggedReadRecord } from '../ingest/index.js';
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

/** `{"view":...,"feature":...,"values":` of a feature ref, kept (refs are the registry's: a bounded set). */
const featureJsonPrefixes = new Map<string, string>();

function featureJsonPrefix(ref: string): string {
  let prefix = featureJsonPrefixes.get(ref);
  if (prefix === undefined) {
    const [view, feature] = ref.split(':') as [string, string];
    prefix = `{"view":${JSON.stringify(view)},"feature":${JSON.stringify(feature)},"values":`;
    featureJsonPrefixes.set(ref, prefix);
  }
  return prefix;
}

/** The feature-log record of one answered read, encoded: its JSON text is JSON.stringify(loggedReadOf(...)), byte for byte. */
export function encodeLoggedRead(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string): EncodedFeatureLogRecord {
  const joinKeys = Object.keys(request.entities).length;
  let json = `{"kind":"read","v":${FEATURE_LOG_FORMAT_VERSION},"request_id":${JSON.stringify(requestId)},"read_time_ms":${JSON.stringify(atMs)},"registry_version":${JSON.stringify(registryVersion)},"entities":${JSON.stringify(request.entities)},"features":[`;
  for (let i = 0; i < request.features.length; i++) {
    const column = response.results[joinKeys + i]!;
    let times = '';
    for (let row = 0; row < column.statuses.length; row++) times += `${row === 0 ? '' : ','}${eventTimeMsOf(column.statuses[row]!, column.event_timestamps[row]!) ?? 'null'}`;
    json += `${i === 0 ? '' : ','}${featureJsonPrefix(request.features[i]!)}${JSON.stringify(column.values)},"statuses":${JSON.stringify(column.statuses)},"event_times_ms":[${times}]}`;
  }
  return { kind: 'read', requestId, timeMs: atMs, json: `${json}]}` };
}
