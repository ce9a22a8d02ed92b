// What a served get-online-features read is logged as (ingest/feature-log.ts has the format): the
// request id, the read time, the entity keys as the request gave them, every value with its status
// and event time, and the registry version (format version 2: each name once, statuses as letters,
// event times as ages before the read). `encodeLoggedRead` writes the same JSON text as
// JSON.stringify(loggedReadOf(...)) without building the record first: it is the serving path's
// share of the logging cost.
import { FEATURE_LOG_READ_VERSION, STATUS_LETTERS, type EncodedFeatureLogRecord, type FeatureStatus, type LoggedReadV2Record } from '../ingest/index.js';
import type { OnlineFeaturesRequest, OnlineFeaturesResponse } from './serve.js';

/** Event time (ms) of an event_timestamps entry: null for a value with no event behind it. */
function eventTimeMsOf(status: string, text: string): number | null {
  if (status !== 'PRESENT') return null;
  // The features of a read share few event times (formatEventTimestamp hands out the same text):
  // parse each once.
  if (text !== lastParsed.text) lastParsed = { text, ms: Date.parse(text) };
  const ms = lastParsed.ms;
  return Number.isFinite(ms) && ms !== 0 ? ms : null;
}
let lastParsed = { text: '', ms: Number.NaN };

/** The feature-log record of one answered read (format version 2). */
export function loggedReadOf(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string): LoggedReadV2Record {
  const joinKeys = Object.keys(request.entities).length;
  const columns = request.features.map((_, i) => response.results[joinKeys + i]!);
  return {
    kind: 'read',
    v: FEATURE_LOG_READ_VERSION,
    request_id: requestId,
    read_time_ms: atMs,
    registry_version: registryVersion,
    entities: request.entities,
    features: [...request.features],
    values: columns.map((c) => c.values as (string | number | boolean | null)[]),
    statuses: columns.map((c) => c.statuses.map((s) => STATUS_LETTERS[s as FeatureStatus]).join('')),
    ages_ms: columns.map((c) => c.statuses.map((s, row) => ageMsOf(atMs, s, c.event_timestamps[row]!))),
  };
}

/** Read time minus a value's event time: null for a value with no event behind it. */
function ageMsOf(atMs: number, status: string, text: string): number | null {
  const eventMs = eventTimeMsOf(status, text);
  return eventMs === null ? null : atMs - eventMs;
}

/** The feature-log record of one answered read, encoded: its JSON text is JSON.stringify(loggedReadOf(...)), byte for byte. */
export function encodeLoggedRead(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string): EncodedFeatureLogRecord & { json: string } {
  const joinKeys = Object.keys(request.entities).length;
  let values = '';
  let statuses = '';
  let ages = '';
  for (let i = 0; i < request.features.length; i++) {
    const column = response.results[joinKeys + i]!;
    let letters = '';
    let rowAges = '';
    for (let row = 0; row < column.statuses.length; row++) {
      const status = column.statuses[row]!;
      letters += STATUS_LETTERS[status as FeatureStatus];
      rowAges += `${row === 0 ? '' : ','}${ageMsOf(atMs, status, column.event_timestamps[row]!) ?? 'null'}`;
    }
    const sep = i === 0 ? '' : ',';
    values += `${sep}${JSON.stringify(column.values)}`;
    statuses += `${sep}"${letters}"`;
    ages += `${sep}[${rowAges}]`;
  }
  const json =
    `{"kind":"read","v":${FEATURE_LOG_READ_VERSION},"request_id":${JSON.stringify(requestId)},"read_time_ms":${JSON.stringify(atMs)},"registry_version":${JSON.stringify(registryVersion)},` +
    `"entities":${JSON.stringify(request.entities)},"features":${JSON.stringify(request.features)},"values":[${values}],"statuses":[${statuses}],"ages_ms":[${ages}]}`;
  return { kind: 'read', requestId, timeMs: atMs, json };
}
