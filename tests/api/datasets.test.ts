// POST /datasets/historical and the backfill/dataset commands: a user's path from an event file
// and a spine to Arrow, Parquet or JSON, with coded errors for bad spines.
import { tableFromIPC } from 'apache-arrow';
import { spawnSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { referenceViewValues, valuesAgree } from '../../definitions/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import { OfflineStore } from '../../offline/index.js';
import { writeFlightFiles, writeNdjson, type FlightFiles } from '../support/offline-fixtures.js';

const ROOT = join(import.meta.dirname, '..', '..');
let dir: string;
let files: FlightFiles;
let offline: OfflineStore;
let app: FastifyInstance;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-datasets-'));
  files = await writeFlightFiles(dir, 10_000);
  offline = await OfflineStore.open(files.compiled, { dataDir: dir });
  await offline.loadEvents('flights', files.ndjson);
  const service = new OnlineFeatureService(files.compiled.registry, new MemoryOnlineStore(files.compiled.registry), 'watermark');
  app = await buildServer({ service, offline });
}, 120_000);

afterAll(async () => {
  await app?.close();
  await offline?.close();
});

const spine = (): Record<string, unknown>[] => [
  { airport: 'ORD', ts: files.minTs + 5 * 3_600_000, label: 1 },
  { airport: 'SFO', ts: new Date(files.maxTs).toISOString(), label: 0 },
  { airport: 'ATL', ts: files.maxTs + 1, label: 1 },
];
const features = ['origin_delays:delay_mean_1d', 'origin_delays:flights_1h', 'origin_delays:last_delay'];

function expectReference(rows: Record<string, unknown>[]): void {
  const view = files.compiled.registry.views.find((v) => v.name === 'origin_delays')!;
  rows.forEach((row, i) => {
    const s = spine()[i]!;
    expect(Number(row.label)).toBe(s.label); // Int64 reads back as bigint from Arrow and Parquet
    const t = typeof s.ts === 'number' ? s.ts : Date.parse(String(s.ts));
    const expected = referenceViewValues(view, files.events, [String(s.airport)], t);
    for (const f of view.features.filter((x) => features.includes(`origin_delays:${x.name}`))) {
      const got = row[`origin_delays__${f.name}`];
      expect(valuesAgree(f.agg, typeof got === 'bigint' ? Number(got) : (got as number), expected[f.name]!), `${f.name} row ${i}`).toBe(true);
    }
  });
}

describe('POST /datasets/historical', () => {
  it('streams JSON lines equal to the reference, in spine order', async () => {
    const res = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features, spine: spine() } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/x-ndjson');
    expect(res.headers['x-tidemark-rows']).toBe('3');
    expectReference(res.body.trim().split('\n').map((l) => JSON.parse(l)));
  });

  it('streams Arrow IPC when asked', async () => {
    const res = await app.inject({ method: 'POST', url: '/datasets/historical', headers: { accept: 'application/vnd.apache.arrow.stream' }, payload: { features, spine: spine() } });
    expect(res.statusCode).toBe(200);
    const table = tableFromIPC(res.rawPayload);
    expect(table.numRows).toBe(3);
    expect(table.schema.fields.map((f) => f.name)).toEqual(['airport', 'ts', 'label', ...features.map((f) => f.replace(':', '__'))]);
    expectReference(table.toArray().map((r) => r.toJSON() as Record<string, unknown>));
  });

  it('answers bad spines and features with coded 400s', async () => {
    const missing = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features, spine: [{ ts: 1 }] } });
    expect(missing.statusCode).toBe(400);
    expect(missing.json()).toMatchObject({ code: 'TM_SPINE_MISSING_COLUMN', missing: ['airport'] });
    const badTime = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features, spine: [{ airport: 'ORD', ts: 'soon' }] } });
    expect(badTime.json()).toMatchObject({ code: 'TM_SPINE_BAD_TIME', row: 1, column: 'ts' });
    const unknown = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features: ['origin_delays:nope'], spine: spine() } });
    expect(unknown.json().code).toBe('TM_DATASET_UNKNOWN_FEATURE');
    expect(unknown.json().validFeatures).toContain('route_delays:flights_7d');
    const empty = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features, spine: [] } });
    expect(empty.statusCode).toBe(400);
    expect(empty.json().field).toBe('spine');
  });
});

describe('tidemark backfill and tidemark dataset', () => {
  // a separate chDB folder: this process's chDB is bound to `dir` by the store above
  const cli = (args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'tidemark.mjs'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });

  it('loads a file once, then writes a Parquet dataset from a spine file', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tidemark-cli-'));
    const common = ['--definitions', 'examples/flights', '--data-dir', dataDir];
    const first = cli(['backfill', ...common, '--from', files.ndjson]);
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(/loaded 10,000 events of source flights from .* in [\d.]+ s/);
    const again = cli(['backfill', ...common, '--from', files.ndjson]);
    expect(again.stdout).toMatch(/was already loaded .* \(10,000 events\): nothing to do/);

    const spinePath = writeNdjson(join(dataDir, 'spine.ndjson'), spine());
    const out = join(dataDir, 'train.parquet');
    const made = cli(['dataset', ...common, '--spine', spinePath, '--features', features.join(','), '--out', out]);
    expect(made.stderr).toBe('');
    expect(made.stdout).toContain('wrote 3 rows x 6 columns');
    expectReference((await parquetReadObjects({ file: await asyncBufferFromFile(out), compressors })) as Record<string, unknown>[]);

    const bad = cli(['dataset', ...common, '--spine', spinePath, '--features', 'origin_delays:nope', '--out', join(dataDir, 'x.parquet')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/TM_DATASET_UNKNOWN_FEATURE: unknown feature "origin_delays:nope"/);
  });
});
