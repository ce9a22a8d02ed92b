// `dataset --from-log` (offline/feature-log.ts): reads served by the API with feature logging on,
// written straight to a chDB offline store (embedded mode), come back as a dataset of the values
// actually served: request_id, ts (the read time), the join keys, one <view>__<feature> column per
// logged feature; with a labels spine, its rows in order, each joined to its request's logged rows.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkError, type CompiledDefinitions } from '../../definitions/index.js';
import { FeatureLogQueue, readParquetBatches } from '../../ingest/index.js';
import { checkFeatureLogRecord, OfflineFeatureLogSink, OfflineStore, writeLogDataset } from '../../offline/index.js';
import { MemoryOnlineStore } from '../../online/index.js';
import { FEATURES, loggingServer, offlineFlights, readAirports, replayFlights, type ReadAnswer } from '../support/feature-log.js';

const LIMIT = 4_000;
let compiled: CompiledDefinitions;
let offline: OfflineStore;
let dir: string;
let airports: string[];
let maxTs: number;
let app: FastifyInstance;
let queue: FeatureLogQueue;
const answers = new Map<string, ReadAnswer>();

beforeAll(async () => {
  ({ compiled, offline, dir, airports, maxTs } = await offlineFlights(LIMIT));
  const store = new MemoryOnlineStore(compiled.registry);
  await replayFlights(compiled, store, LIMIT);
  ({ app, queue } = await loggingServer(compiled, store, new OfflineFeatureLogSink(offline.executor)));
  answers.set('req-body', await readAirports(app, [airports[0]!, airports[1]!], { request_id: 'req-body', headers: { 'x-request-id': 'ignored-header' } }));
  answers.set('req-header', await readAirports(app, [airports[2]!], { headers: { 'x-request-id': 'req-header' } }));
  // at a tile edge (every hop divides 1 h): the online store reads there exactly
  const generated = await readAirports(app, [airports[0]!], { at: Math.floor((maxTs - 3 * 3_600_000) / 3_600_000) * 3_600_000 });
  expect(generated.status, JSON.stringify(generated.body)).toBe(200);
  answers.set(generated.requestId!, generated);
  await queue.flush();
}, 120_000);

afterAll(async () => {
  await app?.close();
  await offline?.close();
  rmSync(dir, { recursive: true, force: true });
});

const readNdjson = (path: string): Record<string, unknown>[] => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
const columnOf = (ref: string): string => ref.replace(':', '__');

describe('request ids', () => {
  it('come from the body, else the x-request-id header, else are generated; each answer carries its own', () => {
    const [body, header, generated] = [...answers.values()];
    expect(body!.status).toBe(200);
    expect(body!.requestId).toBe('req-body');
    expect(body!.body.metadata.request_id).toBe('req-body');
    expect(header!.requestId).toBe('req-header');
    expect(header!.body.metadata.request_id).toBe('req-header');
    expect(generated!.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(queue.stats).toMatchObject({ queued: 3, written: 3, droppedQueueFull: 0, droppedWriteFailed: 0 });
  });

  it('refuses an x-request-id header over 200 characters with a coded 400 naming the header', async () => {
    const res = await readAirports(app, [airports[0]!], { headers: { 'x-request-id': 'x'.repeat(201) } });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'TM_READ_BAD_REQUEST', field: 'x-request-id' });
  });
});

describe('dataset --from-log', () => {
  it('holds the values served, one row per (request, entity row) in read-time order, one column per logged feature', async () => {
    const out = join(dir, 'log.ndjson');
    const result = await writeLogDataset(offline.executor, out);
    const sortedFeatureColumns = FEATURES.map(columnOf).sort();
    expect(result.columns).toEqual(['request_id', 'ts', 'airport', ...sortedFeatureColumns]);
    const rows = readNdjson(out);
    expect(rows).toHaveLength(4);
    expect(result.rows).toBe(4);
    // read-time order: the generated request read 3 h before the watermark comes first
    expect(rows[0]!.request_id).toBe([...answers.keys()][2]);
    expect(rows.map((r) => Number(r.ts))).toEqual([...rows.map((r) => Number(r.ts))].sort((a, b) => a - b));
    let compared = 0;
    for (const row of rows) {
      const answer = answers.get(row.request_id as string)!;
      const entityRow = answer.body.results[0]!.values.indexOf(row.airport);
      expect(entityRow, `${row.request_id} ${row.airport}`).toBeGreaterThanOrEqual(0);
      FEATURES.forEach((ref, i) => {
        expect(row[columnOf(ref)], `${row.request_id} ${row.airport} ${ref}`).toEqual(answer.body.results[1 + i]!.values[entityRow]);
        compared++;
      });
    }
    expect(compared).toBe(4 * FEATURES.length);
  });

  it('keeps only the features asked for, and writes the dataset formats (Parquet here)', async () => {
    const out = join(dir, 'log.parquet');
    const result = await writeLogDataset(offline.executor, out, { features: ['origin_delays:flights_1h'] });
    expect(result.columns).toEqual(['request_id', 'ts', 'airport', 'origin_delays__flights_1h']);
    const rows: Record<string, unknown>[] = [];
    for await (const batch of readParquetBatches(out)) rows.push(...batch.rows);
    expect(rows).toHaveLength(4);
    const body = rows.filter((r) => r.request_id === 'req-body');
    expect(body.map((r) => Number(r.origin_delays__flights_1h))).toEqual(answers.get('req-body')!.body.results[1]!.values);
    await expect(writeLogDataset(offline.executor, join(dir, 'x.csv'), { features: ['origin_delays:nope'] })).rejects.toMatchObject({ code: 'TM_DATASET_UNKNOWN_FEATURE' });
  });

  it('with a labels spine: its rows in order, joined by request id (an unlogged request keeps its row, features null)', async () => {
    const spine = join(dir, 'labels.csv');
    writeFileSync(spine, 'request_id,label\nreq-header,1\nnever-served,0\nreq-body,1\n');
    const out = join(dir, 'labelled.ndjson');
    const result = await writeLogDataset(offline.executor, out, { spine });
    expect(result.columns).toEqual(['request_id', 'ts', 'airport', ...FEATURES.map(columnOf).sort(), 'label']);
    const rows = readNdjson(out);
    expect(rows.map((r) => [r.request_id, r.label])).toEqual([['req-header', '1'], ['never-served', '0'], ['req-body', '1'], ['req-body', '1']]);
    expect(rows[1]!.origin_delays__flights_1h).toBeNull();
    expect(rows[1]!.ts).toBeNull();
    expect(rows[0]!.airport).toBe(airports[2]);
    expect(rows[0]!.origin_delays__flights_1h).toEqual(answers.get('req-header')!.body.results[1]!.values[0]);
    expect(rows.slice(2).map((r) => r.airport)).toEqual([airports[0], airports[1]]);
  });

  it('refuses a labels spine without request_id or with a clashing column, and an empty log, with coded errors', async () => {
    const noId = join(dir, 'no-id.csv');
    writeFileSync(noId, 'id,label\nreq-body,1\n');
    await expect(writeLogDataset(offline.executor, join(dir, 'a.csv'), { spine: noId })).rejects.toMatchObject({ code: 'TM_SPINE_MISSING_COLUMN', message: expect.stringContaining('lacks column request_id') });
    const clash = join(dir, 'clash.csv');
    writeFileSync(clash, 'request_id,ts\nreq-body,1\n');
    await expect(writeLogDataset(offline.executor, join(dir, 'b.csv'), { spine: clash })).rejects.toMatchObject({ code: 'TM_SPINE_BAD_COLUMN', message: expect.stringContaining('ts clashes') });
    const empty = await writeLogDataset(offline.executor, join(dir, 'c.csv'), { fromMs: maxTs + 86_400_000 }).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(TidemarkError);
    expect(empty).toMatchObject({ code: 'TM_LOG_EMPTY' });
  });
});

describe('feature-log records checked against the registry', () => {
  const read = (entities: Record<string, string[]>, view = 'origin_delays', feature = 'flights_1h') => ({
    kind: 'read' as const,
    v: 1 as const,
    request_id: 'r',
    read_time_ms: 10,
    registry_version: 'x',
    entities,
    features: [{ view, feature, values: entities[Object.keys(entities)[0]!]!.map(() => 1), statuses: entities[Object.keys(entities)[0]!]!.map(() => 'PRESENT' as const), event_times_ms: entities[Object.keys(entities)[0]!]!.map(() => 5) }],
  });

  it('accepts a read of the registry, and refuses unknown features, missing and extra join keys, naming the field', () => {
    expect(checkFeatureLogRecord(read({ airport: ['ORD', 'SFO'] }), compiled.registry)).toEqual({ ok: true });
    expect(checkFeatureLogRecord(read({ airport: ['ORD'] }, 'origin_delays', 'nope'), compiled.registry)).toMatchObject({ ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: 'features.0' } });
    expect(checkFeatureLogRecord(read({ origin: ['ORD'] }, 'route_delays', 'flights_7d'), compiled.registry)).toMatchObject({ ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: 'entities.destination' } });
    expect(checkFeatureLogRecord(read({ airport: ['ORD'], 'a b': ['x'] }), compiled.registry)).toMatchObject({ ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: 'entities.a b' } });
  });
});
