// POST /get-online-features: Feast's response shape, values equal to the reference, coded 400s
// that name the bad field and list the valid choices, and never a 500 for any JSON body.
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../api/index.js';
import { valuesAgree } from '../../definitions/index.js';
import { OnlineFeatureService } from '../../online/index.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';

let fx: FlightsFixture;
let app: FastifyInstance;
let watermarkMs: number;

beforeAll(async () => {
  fx = await loadFlightsFixture(20_000);
  watermarkMs = (await fx.store.watermarkMs())!;
  app = await buildServer({ service: new OnlineFeatureService(fx.compiled.registry, fx.store, 'watermark') });
});
afterAll(async () => {
  await app.close();
});

const ORIGIN_FEATURES = ['flights_1h', 'delay_mean_1h', 'delay_mean_1d', 'delay_max_1d', 'delay_stddev_7d', 'distance_sum_1d', 'last_delay'];

async function post(body: unknown, contentType = 'application/json') {
  const res = await app.inject({ method: 'POST', url: '/get-online-features', headers: { 'content-type': contentType }, payload: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.statusCode, body: res.json() as Record<string, any>, headers: res.headers };
}

describe('POST /get-online-features', () => {
  it("answers in Feast's shape with values equal to the reference", async () => {
    const { status, body, headers } = await post({
      features: ORIGIN_FEATURES.map((f) => `origin_delays:${f}`),
      entities: { airport: ['ORD', 'SFO', 'NOPE'] },
    });
    expect(status).toBe(200);
    expect(body.metadata.feature_names).toEqual(['airport', ...ORIGIN_FEATURES]);
    expect(body.results).toHaveLength(1 + ORIGIN_FEATURES.length);
    expect(body.results[0]).toEqual({
      values: ['ORD', 'SFO', 'NOPE'],
      statuses: ['PRESENT', 'PRESENT', 'PRESENT'],
      event_timestamps: ['1970-01-01T00:00:00Z', '1970-01-01T00:00:00Z', '1970-01-01T00:00:00Z'],
    });
    const t = Number(headers['x-tidemark-read-time']);
    expect(t).toBe(watermarkMs + 1);
    const view = fx.compiled.registry.views.find((v) => v.name === 'origin_delays')!;
    ['ORD', 'SFO', 'NOPE'].forEach((airport, row) => {
      const expected = fx.reference(view, airport, t);
      ORIGIN_FEATURES.forEach((name, i) => {
        const agg = view.features.find((f) => f.name === name)!.agg;
        expect(valuesAgree(agg, body.results[i + 1].values[row], expected[name]!), `${airport} ${name}`).toBe(true);
      });
    });
    // a key never seen: semantic values (count 0, mean null) with Feast's NOT_FOUND status
    expect(body.results[1].values[2]).toBe(0);
    expect(body.results[1].statuses[2]).toBe('NOT_FOUND');
    expect(body.results[2].values[2]).toBeNull();
    expect(body.results[1].statuses[0]).toBe('PRESENT');
    expect(body.results[1].event_timestamps[0]).toMatch(/^2001-01-0\dT\d\d:\d\d:\d\dZ$/);
  });

  it('names features view__feature with full_feature_names and serves two-key entities', async () => {
    const { status, body } = await post({
      features: ['route_delays:flights_7d', 'route_delays:delay_mean_7d'],
      entities: { origin: ['ORD', 'LAX'], destination: ['LGA', 'SFO'] },
      full_feature_names: true,
    });
    expect(status).toBe(200);
    expect(body.metadata.feature_names).toEqual(['origin', 'destination', 'route_delays__flights_7d', 'route_delays__delay_mean_7d']);
    const view = fx.compiled.registry.views.find((v) => v.name === 'route_delays')!;
    const expected = fx.reference(view, JSON.stringify(['ORD', 'LGA']), watermarkMs + 1);
    expect(body.results[2].values[0]).toBe(expected.flights_7d);
    expect(body.results[2].values[0]).toBeGreaterThan(0);
  });

  it('serves two views of one entity from one airport list', async () => {
    const { status, body } = await post({ features: ['origin_delays:delay_mean_1d', 'dest_delays:delay_mean_1d'], entities: { airport: ['ORD'] }, full_feature_names: true });
    expect(status).toBe(200);
    expect(body.metadata.feature_names).toEqual(['airport', 'origin_delays__delay_mean_1d', 'dest_delays__delay_mean_1d']);
    expect(body.results[1].values[0]).not.toBe(body.results[2].values[0]);
  });

  it('reads at an explicit `at` on a tile edge, equal to the reference', async () => {
    const at = Math.floor(watermarkMs / 3_600_000) * 3_600_000;
    const { status, body, headers } = await post({ features: ['origin_delays:flights_1h', 'origin_delays:delay_mean_1d'], entities: { airport: ['ATL'] }, at });
    expect(status).toBe(200);
    expect(Number(headers['x-tidemark-read-time'])).toBe(at);
    const view = fx.compiled.registry.views.find((v) => v.name === 'origin_delays')!;
    const expected = fx.reference(view, 'ATL', at);
    expect(body.results[1].values[0]).toBe(expected.flights_1h);
    expect(valuesAgree('mean', body.results[2].values[0], expected.delay_mean_1d!)).toBe(true);
  });

  it('accepts the JSON body of curl -d (form content type), as Feast clients send it', async () => {
    const { status } = await post({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] } }, 'application/x-www-form-urlencoded');
    expect(status).toBe(200);
  });
});

describe('bad requests get a coded 400 naming the field', () => {
  it('unknown feature lists the valid ones', async () => {
    const { status, body } = await post({ features: ['origin_delays:nope'], entities: { airport: ['ORD'] } });
    expect(status).toBe(400);
    expect(body.code).toBe('TM_READ_UNKNOWN_FEATURE');
    expect(body.field).toBe('features[0]');
    expect(body.validFeatures).toEqual(ORIGIN_FEATURES.map((f) => `origin_delays:${f}`));
  });

  it('unknown view lists every feature', async () => {
    const { body } = await post({ features: ['nope:x'], entities: { airport: ['ORD'] } });
    expect(body.code).toBe('TM_READ_UNKNOWN_FEATURE');
    expect(body.message).toContain('no view named nope');
    expect(body.validFeatures).toContain('route_delays:flights_7d');
  });

  it('unknown entity key lists the valid join keys', async () => {
    const { status, body } = await post({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'], driver_id: [1] } });
    expect(status).toBe(400);
    expect(body.code).toBe('TM_READ_UNKNOWN_ENTITY');
    expect(body.field).toBe('entities.driver_id');
    expect(body.validJoinKeys).toEqual(['airport']);
  });

  it('missing join key', async () => {
    const { body } = await post({ features: ['route_delays:flights_7d'], entities: { origin: ['ORD'] } });
    expect(body.code).toBe('TM_READ_MISSING_JOIN_KEY');
    expect(body.field).toBe('entities.destination');
  });

  it('key of the wrong type', async () => {
    const { status, body } = await post({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD', 123] } });
    expect(status).toBe(400);
    expect(body.code).toBe('TM_READ_BAD_KEY');
    expect(body.field).toBe('entities.airport[1]');
    expect(body.expected).toEqual(['string']);
  });

  it('null key and ragged entity columns', async () => {
    expect((await post({ features: ['origin_delays:flights_1h'], entities: { airport: [null] } })).body.code).toBe('TM_READ_BAD_KEY');
    const ragged = await post({ features: ['route_delays:flights_7d'], entities: { origin: ['ORD', 'SFO'], destination: ['LGA'] } });
    expect(ragged.body.code).toBe('TM_READ_BAD_REQUEST');
    expect(ragged.body.field).toBe('entities.destination');
  });

  it('schema errors name the field', async () => {
    const { status, body } = await post({ features: ['origin_delays:flights_1h'] });
    expect(status).toBe(400);
    expect(body.code).toBe('TM_READ_BAD_REQUEST');
    expect(body.field).toBe('entities');
    const at = await post({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] }, at: 'yesterday' });
    expect(at.body.field).toBe('at');
  });

  it('malformed JSON', async () => {
    const { status, body } = await post('{"features": [');
    expect(status).toBe(400);
    expect(body.code).toBe('TM_READ_BAD_REQUEST');
  });

  it('a read inside an open tile or before retention is refused with its code', async () => {
    // the latest 5-minute tile of ORD holding events both before and at its last event time
    const [ordTiles] = fx.store.readTilesSync('origin_delays', ['ORD']);
    const split = [...ordTiles!.get(300_000)!.entries()].sort(([a], [b]) => b - a).map(([, tile]) => tile).find((tile) => tile.minTs < tile.maxTs)!;
    const inside = await post({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] }, at: split.maxTs });
    expect(inside.status).toBe(400);
    expect(inside.body.code).toBe('TM_READ_INSIDE_OPEN_TILE');
    const old = await post({ features: ['origin_delays:delay_stddev_7d'], entities: { airport: ['ORD'] }, at: watermarkMs - 30 * 86_400_000 });
    expect(old.body.code).toBe('TM_READ_BEFORE_RETENTION');
  });

  it('feature_service is refused with the features to list instead', async () => {
    const { body } = await post({ feature_service: 'svc', entities: { airport: ['ORD'] } });
    expect(body.code).toBe('TM_READ_BAD_REQUEST');
    expect(body.field).toBe('feature_service');
  });

  it('never answers 500, whatever the JSON body', async () => {
    const featureRef = fc.oneof(fc.constantFrom('origin_delays:flights_1h', 'route_delays:flights_7d', 'dest_delays:delay_mean_1d'), fc.string());
    const keyValue = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.double(), fc.object());
    const body = fc.oneof(
      fc.record({ features: fc.array(featureRef, { maxLength: 3 }), entities: fc.dictionary(fc.constantFrom('airport', 'origin', 'destination', 'x'), fc.array(keyValue, { maxLength: 3 })), at: fc.option(fc.oneof(fc.integer(), fc.double(), fc.string()), { nil: undefined }) }, { requiredKeys: [] }),
      fc.jsonValue(),
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const { status } = await post(b);
        expect(status).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
  });
});

describe('GET /healthz and /registry', () => {
  it('reports the registry version and watermark', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'ok', registryVersion: fx.compiled.registry.version, clock: 'watermark', watermark: new Date(watermarkMs).toISOString() });
    const registry = await app.inject({ method: 'GET', url: '/registry' });
    expect(registry.json().version).toBe(fx.compiled.registry.version);
  });

  it('answers 503 degraded, not 500, when the online store cannot answer', async () => {
    const failing = { ...fx.store, watermarkMs: async () => Promise.reject(new Error('connection refused')) } as unknown as typeof fx.store;
    const down = await buildServer({ service: new OnlineFeatureService(fx.compiled.registry, failing, 'watermark') });
    try {
      const res = await down.inject({ method: 'GET', url: '/healthz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'degraded', storeError: 'online store unavailable: connection refused' });
    } finally {
      await down.close();
    }
  });

  it('unknown routes are coded 404s', async () => {
    const res = await app.inject({ method: 'GET', url: '/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('TM_NOT_FOUND');
  });
});
