// Fixtures for the offline suites: the first N flights as NDJSON and CSV event files, their decoded
// events for the reference, and small helpers to write spines and read datasets back.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, source, type CompiledDefinitions, type ReferenceEvent, type Scalar } from '../../definitions/index.js';
import { OfflineStore } from '../../offline/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { EventDecoder, readParquetBatches } from '../../ingest/index.js';
import { ensureMetricsTable, writeMetrics } from '../../monitor/index.js';

export interface FlightFiles {
  compiled: CompiledDefinitions;
  ndjson: string;
  csv: string;
  events: ReferenceEvent[];
  minTs: number;
  maxTs: number;
}

export async function writeFlightFiles(dir: string, limit: number): Promise<FlightFiles> {
  const compiled = compileOrThrow(flightsDefinitions);
  const decoder = new EventDecoder(compiled, 'flights');
  const lines: string[] = [];
  const csv: string[] = ['date,delay,distance,origin,destination'];
  const events: ReferenceEvent[] = [];
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit })) {
    for (const row of batch.rows) {
      lines.push(JSON.stringify(row));
      // CSV carries time as ISO-8601 text, the other form the source accepts
      csv.push([new Date(row.date as number).toISOString(), row.delay, row.distance, row.origin, row.destination].join(','));
      const d = decoder.decodeValue(row);
      if (!d.ok) throw new Error(d.bad.reason);
      events.push({ eventTimeMs: d.event.eventTimeMs, fields: d.event.fields });
    }
  }
  const ndjson = join(dir, 'flights.ndjson');
  const csvPath = join(dir, 'flights.csv');
  writeFileSync(ndjson, `${lines.join('\n')}\n`);
  writeFileSync(csvPath, `${csv.join('\n')}\n`);
  const times = events.map((e) => e.eventTimeMs);
  return { compiled, ndjson, csv: csvPath, events, minTs: Math.min(...times), maxTs: Math.max(...times) };
}

export function writeNdjson(path: string, rows: readonly Record<string, unknown>[]): string {
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : ''));
  return path;
}

/** Every feature of every view of a registry, as view:feature. */
export function allFeatureRefs(compiled: CompiledDefinitions): string[] {
  return compiled.registry.views.flatMap((v) => v.features.map((f) => `${v.name}:${f.name}`));
}

/**
 * For one test file: a chDB offline store in a temporary folder holding `rows` of one source,
 * opened before its tests and closed and removed after them. `dataset` writes a spine and returns
 * the point-in-time rows of `features` (view:feature) in spine order; `store` and `dir` are the
 * store and its folder, for other outputs and queries.
 */
export function offlineStoreWith(
  compiled: CompiledDefinitions,
  sourceName: string,
  rows: readonly Record<string, unknown>[],
): { dataset(spine: readonly Record<string, unknown>[], features: readonly string[]): Promise<Record<string, Scalar>[]>; store(): OfflineStore; dir(): string } {
  let dir: string;
  let store: OfflineStore | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `tidemark-${sourceName}-`));
    store = await OfflineStore.open(compiled, { dataDir: dir });
    await store.loadEvents(sourceName, writeNdjson(join(dir, `${sourceName}.ndjson`), rows));
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    async dataset(spine, features) {
      const out = join(dir, 'out.ndjson');
      await store!.writeDataset(writeNdjson(join(dir, 'spine.ndjson'), spine), [...features], out);
      return readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, Scalar>);
    },
    store: () => store!,
    dir: () => dir,
  };
}

/** Drift rows of the monitor flight_delays (feature delay; slices all, origin=ORD, origin=SFO; the last one drifted). */
export const DRIFT_SLICES = ['all', 'origin=ORD', 'origin=SFO'];

/**
 * For the API suites: a chDB store in a new temporary folder holding the first `limit` flights and
 * one drift row per DRIFT_SLICES entry, so every offline route has something to read.
 */
export async function flightsStoreWithMetrics(prefix: string, limit: number): Promise<{ dir: string; files: FlightFiles; offline: OfflineStore; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const files = await writeFlightFiles(dir, limit);
  const offline = await OfflineStore.open(files.compiled, { dataDir: dir });
  await offline.loadEvents('flights', files.ndjson);
  await ensureMetricsTable(offline.executor);
  await writeMetrics(offline.executor, DRIFT_SLICES.map((slice, i) => ({
    monitor: 'flight_delays', version: 'v1', metric: 'drift', feature: 'delay', slice, window_ms: 604_800_000, window_end: files.maxTs - i * 3_600_000,
    value: 0.1 * i, n_ref: 100, n_cur: 100, ks: 0.1, ks_error_bound: 0.01, p_value: 0.5, q_value: 0.5, drift: i === 2, detail: '{}',
  })));
  return {
    dir,
    files,
    offline,
    async close() {
      await offline.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The float-sum suites' times and source (cancellation.test.ts, prefix-sums.test.ts): payments of
// accounts, x a nullable number.
export const MIN = 60_000;
export const HOUR = 60 * MIN;
/** An hour edge to start events at. */
export const T0 = 1_700_000_000_000 - (1_700_000_000_000 % HOUR);
export const account = entity({ name: 'account', joinKeys: ['k'] });
export const payments = source({
  name: 'payments',
  topic: 'payments',
  schema: z.object({ ts: eventTime(), k: z.string(), x: z.number().nullable() }),
  eventTimeField: 'ts',
});
