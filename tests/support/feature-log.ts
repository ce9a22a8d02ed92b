// Shared plumbing of the feature-log tests: the first N flights loaded into a chDB offline store
// and replayed into an online store (in-memory or Redis) through the materializer core, and an API
// server whose reads are logged through a FeatureLogQueue into the sink given.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { compileOrThrow, monitor, type CompiledDefinitions } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { buildServer } from '../../api/index.js';
import { FeatureLogQueue, replayParquetFile, type FeatureLogQueueOptions, type FeatureLogSink } from '../../ingest/index.js';
import { FEATURE_LOG_LINES_TABLE, FEATURE_LOG_TABLE, featureLogTablesOf, OfflineStore, type OfflineExecutor } from '../../offline/index.js';
import { OnlineFeatureService, type OnlineStore } from '../../online/index.js';
import { writeFlightFiles } from './offline-fixtures.js';

export const FEATURES = ['origin_delays:flights_1h', 'origin_delays:delay_mean_1h', 'origin_delays:delay_max_1d', 'origin_delays:delay_stddev_7d', 'origin_delays:distance_sum_1d', 'origin_delays:last_delay', 'dest_delays:delay_mean_1d'];

/** The first `limit` flights in a new chDB offline store (in a temporary folder). */
export async function offlineFlights(limit: number): Promise<{ compiled: CompiledDefinitions; offline: OfflineStore; dir: string; airports: string[]; maxTs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-feature-log-'));
  const files = await writeFlightFiles(dir, limit);
  const offline = await OfflineStore.open(files.compiled, { dataDir: join(dir, 'chdb') });
  await offline.loadEvents('flights', files.ndjson);
  const counts = new Map<string, number>();
  for (const e of files.events) counts.set(e.fields.origin as string, (counts.get(e.fields.origin as string) ?? 0) + 1);
  // Busiest first: their windows hold events at any read time near the end.
  const airports = [...counts].sort((a, b) => b[1] - a[1]).map(([a]) => a);
  return { compiled: files.compiled, offline, dir, airports, maxTs: files.maxTs };
}

/** Replay the first `limit` flights into `store` through the materializer core. */
export async function replayFlights(compiled: CompiledDefinitions, store: OnlineStore & { apply: OnlineStore['apply'] }, limit: number): Promise<void> {
  await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.apply(b) }, { source: 'flights', limit });
}

/** Empty the feature log of an offline store: the records table, and chDB's lines. */
export async function clearFeatureLog(executor: OfflineExecutor): Promise<void> {
  await executor.command(`TRUNCATE TABLE ${FEATURE_LOG_TABLE}`);
  if (featureLogTablesOf(executor).lines) await executor.command(`TRUNCATE TABLE ${FEATURE_LOG_LINES_TABLE}`);
}

/**
 * The flights' definitions with a monitor `name` of the flights source that watches skew with an
 * SLO paging through the burn-rate policy (reference the first 6 h of 2001, evaluated hourly),
 * optionally sliced by origin.
 */
export function flightsWithSkewMonitor(name: string, opts: { byOrigin?: boolean } = {}): CompiledDefinitions {
  return compileOrThrow({
    ...flightsDefinitions,
    skewMonitor: monitor({
      name,
      source: flightsDefinitions.flights,
      features: ['delay'],
      ...(opts.byOrigin ? { slices: { origin: { field: 'origin' } } } : {}),
      reference: { from: '2001-01-01T00:00:00Z', to: '2001-01-01T06:00:00Z' },
      interval: '1h',
      slos: { served_equals_offline: { indicator: 'skew', min: 0.999, objective: 0.99, policy: [{ severity: 'page', long: '2h', short: '1h', burnRate: 14.4 }] } },
    }),
  });
}

export function flightsCompiled(): CompiledDefinitions {
  return compileOrThrow(flightsDefinitions);
}

/** An API server over `store` (watermark clock) logging reads through a queue into `sink`. */
export async function loggingServer(compiled: CompiledDefinitions, store: OnlineStore, sink: FeatureLogSink, options: Partial<FeatureLogQueueOptions> = {}): Promise<{ app: FastifyInstance; queue: FeatureLogQueue }> {
  const queue = new FeatureLogQueue(sink, { sampleRate: 1, ...options });
  const app = await buildServer({ service: new OnlineFeatureService(compiled.registry, store, 'watermark'), featureLog: queue });
  return { app, queue };
}

export interface ReadAnswer {
  status: number;
  requestId: string | undefined;
  body: { metadata: { feature_names: string[]; request_id?: string }; results: { values: unknown[]; statuses: string[] }[] };
}

/** POST /get-online-features for `airports` (origin_delays and dest_delays share the airport join key). */
export async function readAirports(app: FastifyInstance, airports: readonly string[], extra: { request_id?: string; at?: number; headers?: Record<string, string>; features?: string[] } = {}): Promise<ReadAnswer> {
  const { headers, features, ...body } = extra;
  const res = await app.inject({ method: 'POST', url: '/get-online-features', headers: headers ?? {}, payload: { features: features ?? FEATURES, entities: { airport: airports }, ...body } });
  return { status: res.statusCode, requestId: res.headers['x-request-id'] as string | undefined, body: res.json() };
}
