// What a served get-online-features read is logged as (ingest/feature-log.ts has the format): the
// request id, the read time, the entity keys as the request gave them, every value with its status
// and event time, and, through its feature set, the `view:feature` refs and the registry version
// (format version 3: the refs named once per feature set, statuses as letters, event times as ages
// before the read, values flat). `encodeLoggedRead` writes the same JSON text as
// JSON.stringify(loggedReadOf(...).read) without building the record first: it is the serving
// path's share of the logging cost.
import { createHash } from 'node:crypto';
import { FEATURE_LOG_READ_VERSION, STATUS_LETTERS, type EncodedFeatureLogRecord, type EncodedFeatureSet, type FeatureLogQueue, type FeatureSetRecord, type FeatureStatus, type LoggedReadV3Record } from '../ingest/index.js';
import type { OnlineFeaturesRequest, OnlineFeaturesResponse } from './serve.js';

/** Event time (ms) of an event_timestamps entry: null for a value with no event behind it. */
function eventTimeMsOf(status: string, text: string): number | null {
  if (status !== 'PRESENT') return null;
  // A read's values share few event times, and reads share them too: parse each text once.
  let ms = parsedTimes.get(text);
  if (ms === undefined) {
    if (parsedTimes.size >= CACHE_LIMIT) parsedTimes.clear();
    ms = Date.parse(text);
    parsedTimes.set(text, ms);
  }
  return Number.isFinite(ms) && ms !== 0 ? ms : null;
}
const parsedTimes = new Map<string, number>();
/** Entries kept in each cache before it starts over: bounded memory whatever the traffic. */
const CACHE_LIMIT = 10_000;

/** Read time minus a value's event time: null for a value with no event behind it. */
function ageMsOf(atMs: number, status: string, text: string): number | null {
  const eventMs = eventTimeMsOf(status, text);
  return eventMs === null ? null : atMs - eventMs;
}

/** ageMsOf from the event time in ms the text was formatted from (the service's): the same age, without parsing the text. */
function ageMsOfTime(atMs: number, status: string, eventMs: number | null): number | null {
  if (status !== 'PRESENT' || eventMs === null) return null;
  // The text holds whole ms (a Date truncates), and the epoch stands for no event.
  const ms = Math.trunc(eventMs);
  return ms !== 0 ? atMs - ms : null;
}

interface FeatureSetEntry {
  record: FeatureSetRecord;
  encoded: EncodedFeatureSet;
}
const featureSets = new Map<string, FeatureSetEntry>();

/** The feature set of a registry version and refs (the same object each time): its id is a hash of both, so every process names it alike. */
function featureSetOf(registryVersion: string, features: readonly string[]): FeatureSetEntry {
  // Clients mostly send the same refs read after read: compare with the last set before building a key.
  const last = lastSet;
  if (last !== null && last.record.registry_version === registryVersion && sameRefs(last.record.features, features)) return last;
  const key = `${registryVersion}\n${features.join('\n')}`;
  let entry = featureSets.get(key);
  if (entry === undefined) {
    if (featureSets.size >= CACHE_LIMIT) featureSets.clear();
    const id = createHash('sha256').update(key).digest('hex').slice(0, 16);
    const record: FeatureSetRecord = { kind: 'features', v: FEATURE_LOG_READ_VERSION, features_id: id, registry_version: registryVersion, features: [...features] };
    entry = { record, encoded: { id, json: JSON.stringify(record) } };
    featureSets.set(key, entry);
  }
  lastSet = entry;
  return entry;
}
let lastSet: FeatureSetEntry | null = null;

function sameRefs(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The feature-log record of one answered read (format version 3) and its feature set. */
export function loggedReadOf(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string): { read: LoggedReadV3Record; features: FeatureSetRecord } {
  const joinKeys = Object.keys(request.entities).length;
  const columns = request.features.map((_, i) => response.results[joinKeys + i]!);
  const features = featureSetOf(registryVersion, request.features).record;
  return {
    read: {
      kind: 'read',
      v: FEATURE_LOG_READ_VERSION,
      request_id: requestId,
      read_time_ms: atMs,
      features_id: features.features_id,
      entities: request.entities,
      values: columns.flatMap((c) => c.values as (string | number | boolean | null)[]),
      statuses: columns.map((c) => c.statuses.map((s) => STATUS_LETTERS[s as FeatureStatus]).join('')).join(''),
      ages_ms: columns.flatMap((c) => c.statuses.map((s, row) => ageMsOf(atMs, s, c.event_timestamps[row]!))),
    },
    features,
  };
}

/** A value as JSON.stringify writes it. */
function valueJson(v: unknown): string {
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (v === null || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/**
 * The feature-log record of one answered read, encoded: its JSON text is JSON.stringify(loggedReadOf(...).read), byte for byte.
 * `eventTimesMs` (getOnlineFeatures' with eventTimes): the ages come from them instead of the response's texts, to the same result.
 */
export function encodeLoggedRead(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string, eventTimesMs?: readonly (readonly (number | null)[])[]): EncodedFeatureLogRecord & { json: string } {
  const set = featureSetOf(registryVersion, request.features);
  return { kind: 'read', requestId, timeMs: atMs, json: readJson(request, response, atMs, requestId, set.encoded.id, eventTimesMs), features: set.encoded };
}

/** Queue one answered read to the feature log as encodeLoggedRead's text (no record object: the queue holds the bytes); false when the queue dropped it. */
export function offerLoggedRead(queue: FeatureLogQueue, request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, registryVersion: string, eventTimesMs?: readonly (readonly (number | null)[])[]): boolean {
  const set = featureSetOf(registryVersion, request.features);
  return queue.offerRead(readJson(request, response, atMs, requestId, set.encoded.id, eventTimesMs), atMs, set.encoded);
}

function readJson(request: OnlineFeaturesRequest, response: OnlineFeaturesResponse, atMs: number, requestId: string, featuresId: string, eventTimesMs: readonly (readonly (number | null)[])[] | undefined): string {
  const joinKeys = Object.keys(request.entities).length;
  let values = '';
  let statuses = '';
  let ages = '';
  for (let i = 0; i < request.features.length; i++) {
    const column = response.results[joinKeys + i]!;
    const times = eventTimesMs?.[i];
    for (let row = 0; row < column.statuses.length; row++) {
      const status = column.statuses[row]!;
      const sep = i === 0 && row === 0 ? '' : ',';
      values += sep + valueJson(column.values[row]);
      statuses += STATUS_LETTERS[status as FeatureStatus];
      ages += sep + ((times === undefined ? ageMsOf(atMs, status, column.event_timestamps[row]!) : ageMsOfTime(atMs, status, times[row]!)) ?? 'null');
    }
  }
  return (
    `{"kind":"read","v":${FEATURE_LOG_READ_VERSION},"request_id":${JSON.stringify(requestId)},"read_time_ms":${valueJson(atMs)},"features_id":"${featuresId}",` +
    `"entities":${JSON.stringify(request.entities)},"values":[${values}],"statuses":"${statuses}","ages_ms":[${ages}]}`
  );
}
