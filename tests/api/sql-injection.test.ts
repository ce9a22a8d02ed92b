// SQL injection through every string of the HTTP API that reaches ClickHouse (a real chDB): the
// monitor filters (monitor, metric, feature, slice; window, from, to and limit are parsed first),
// the spine's join key values, passthrough values and column names, the feature references and
// the format. Each payload must give a coded 4xx or the correct result: bound parameters compare
// it as a plain value (no row matches it, or the row carries it back unchanged), identifiers are
// registry names or refused, and no table is dropped or changed.
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { referenceViewValues } from '../../definitions/index.js';
import type { OfflineStore } from '../../offline/index.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import { flightsStoreWithMetrics, type FlightFiles } from '../support/offline-fixtures.js';

const PAYLOADS = [
  "' OR '1'='1",
  "' OR 1=1 --",
  "x' OR 1=1 #",
  "'; DROP TABLE tm_monitor_metrics; --",
  "'); DROP TABLE tm_events_flights; --",
  "\\' OR 1=1 --",
  '" OR ""="',
  '` OR 1=1 --',
  "ORD' UNION ALL SELECT name, name, name, name, name, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '' FROM system.tables --",
  "origin=ORD' OR slice != '",
  '{slice:String}',
  '{limit:UInt32}',
  "1; SELECT * FROM system.users",
  '\\',
  "\\'",
  'ORD\u0000\' OR 1=1 --',
  "$$ OR 1=1 $$",
  '/* */ OR /* */ 1=1',
  "' || (SELECT name FROM system.tables LIMIT 1) || '",
  "' AND sleep(3) AND '",
  'ORD%27%20OR%201%3D1',
];

let fixture: Awaited<ReturnType<typeof flightsStoreWithMetrics>>;
let files: FlightFiles;
let offline: OfflineStore;
let app: FastifyInstance;
let tablesBefore: string[];

/** The store's tables with their row counts (the spines' temporary tables aside). */
async function userTables(): Promise<string[]> {
  const rows = await offline.executor.rows<{ name: string; n: number | null }>('SELECT name, total_rows AS n FROM system.tables WHERE database = currentDatabase() ORDER BY name');
  return rows.filter((r) => !r.name.startsWith('tm_spine_')).map((r) => `${r.name}: ${r.n}`);
}

beforeAll(async () => {
  fixture = await flightsStoreWithMetrics('tidemark-sqli-', 2_000);
  ({ files, offline } = fixture);
  app = await buildServer({ service: new OnlineFeatureService(files.compiled.registry, new MemoryOnlineStore(files.compiled.registry), 'watermark'), offline });
  await app.inject({ method: 'GET', url: '/alerts' }); // creates the alerts table
  tablesBefore = await userTables();
}, 120_000);

afterAll(async () => {
  await app?.close();
  await fixture?.close();
});

const get = async (url: string) => {
  const res = await app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() as Record<string, any> };
};

/** A coded 4xx. */
function expectCodedRefusal(res: { status: number; body: Record<string, any> }, context: string): void {
  expect(res.status, context).toBeGreaterThanOrEqual(400);
  expect(res.status, context).toBeLessThan(500);
  expect(res.body.code, context).toMatch(/^TM_[A-Z_]+$/);
}

async function datasetRows(spine: Record<string, unknown>[], features: string[]) {
  const res = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features, spine, format: 'json' } });
  return { status: res.statusCode, text: res.body, rows: res.statusCode === 200 ? res.body.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>) : [] };
}

describe('SQL injection', () => {
  it('monitor filters compare every payload as a plain value: no row matches, nothing else changes', async () => {
    const all = await get('/monitor/metrics');
    expect(all.status).toBe(200);
    expect(all.body.metrics).toHaveLength(3);
    expect((await get('/monitor/metrics?slice=origin%3DORD')).body.metrics.map((m: { slice: string }) => m.slice)).toEqual(['origin=ORD']);
    for (const route of ['/monitor/metrics', '/monitor/drift']) {
      for (const field of ['monitor', 'metric', 'feature', 'slice']) {
        if (field === 'metric' && route === '/monitor/drift') continue; // not a filter there: always drift
        for (const payload of PAYLOADS) {
          for (const value of [payload, `origin=ORD${payload}`, `flight_delays${payload}`]) {
            const res = await get(`${route}?${field}=${encodeURIComponent(value)}`);
            const context = `${route} ${field}=${JSON.stringify(value)}: ${JSON.stringify(res.body).slice(0, 300)}`;
            if (res.status !== 200) expectCodedRefusal(res, context);
            else expect(res.body.metrics ?? res.body.drift, context).toEqual([]);
          }
        }
      }
      // parsed parameters refuse anything that is not a duration, a time, a count or a flag
      for (const field of ['window', 'from', 'to', 'limit', 'drifted']) {
        for (const payload of PAYLOADS) {
          if (field === 'drifted' && route === '/monitor/metrics') continue; // not a filter there: ignored
          expectCodedRefusal(await get(`${route}?${field}=${encodeURIComponent(payload)}`), `${route} ${field}=${payload}`);
        }
      }
    }
    for (const payload of PAYLOADS) {
      const alerts = await get(`/alerts?monitor=${encodeURIComponent(payload)}`);
      expect(alerts.status).toBe(200);
      expect(alerts.body.alerts).toEqual([]);
      expectCodedRefusal(await get(`/alerts?status=${encodeURIComponent(payload)}`), `alerts status=${payload}`);
    }
    expect((await get('/monitor/metrics')).body.metrics).toEqual(all.body.metrics);
    expect(await userTables()).toEqual(tablesBefore);
  }, 120_000);

  it('spine join keys and passthrough values come back unchanged, next to the correct features', async () => {
    const ts = files.minTs + 30 * 86_400_000;
    const features = ['origin_delays:flights_1h', 'origin_delays:delay_mean_1d', 'route_delays:flights_7d'];
    const alone = await datasetRows([{ airport: 'ORD', origin: 'ORD', destination: 'LAX', ts }], features);
    expect(alone.status, alone.text).toBe(200);
    const view = files.compiled.registry.views.find((v) => v.name === 'origin_delays')!;
    const expected = referenceViewValues(view, files.events, ['ORD'], ts);
    expect(alone.rows[0]!['origin_delays__flights_1h']).toBe(expected.flights_1h);

    const spine = [{ airport: 'ORD', origin: 'ORD', destination: 'LAX', ts, label: 'control' }, ...PAYLOADS.map((p) => ({ airport: p, origin: p, destination: p, ts, label: p }))];
    const res = await datasetRows(spine, features);
    expect(res.status, res.text).toBe(200);
    expect(res.rows).toHaveLength(spine.length);
    expect(res.rows[0]).toEqual({ ...alone.rows[0], label: 'control' });
    res.rows.slice(1).forEach((row, i) => {
      const payload = PAYLOADS[i]!;
      expect(row, payload).toMatchObject({ airport: payload, origin: payload, destination: payload, label: payload });
      // a key never seen: count 0, mean null (docs/semantics.md), as for any unknown key
      expect(row['origin_delays__flights_1h'], payload).toBe(0);
      expect(row['origin_delays__delay_mean_1d'], payload).toBeNull();
      expect(row['route_delays__flights_7d'], payload).toBe(0);
    });
    expect(await userTables()).toEqual(tablesBefore);
  }, 120_000);

  it('spine column names, times, feature references and the format refuse payloads with a code', async () => {
    const ts = files.minTs + 86_400_000;
    for (const payload of PAYLOADS) {
      const column = await datasetRows([{ airport: 'ORD', ts, [payload]: 1 }], ['origin_delays:flights_1h']);
      expect(column.status, payload).toBe(400);
      expect(JSON.parse(column.text).code, payload).toBe('TM_SPINE_BAD_COLUMN');
      const time = await datasetRows([{ airport: 'ORD', ts: payload }], ['origin_delays:flights_1h']);
      expect(time.status, payload).toBe(400);
      expect(JSON.parse(time.text).code, payload).toBe('TM_SPINE_BAD_TIME');
      for (const feature of [payload, `origin_delays:${payload}`, `${payload}:flights_1h`]) {
        const ref = await datasetRows([{ airport: 'ORD', ts }], [feature]);
        expect(ref.status, feature).toBe(400);
        expect(JSON.parse(ref.text).code, feature).toBe('TM_DATASET_UNKNOWN_FEATURE');
      }
      const format = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features: ['origin_delays:flights_1h'], spine: [{ airport: 'ORD', ts }], format: payload } });
      expect(format.statusCode, payload).toBe(400);
      expect(format.json().code).toBe('TM_READ_BAD_REQUEST');
    }
    expect(await userTables()).toEqual(tablesBefore);
  }, 120_000);
});
