// End to end on real data: the first 100 000 flights replayed through decode -> core -> in-memory
// store; every key of every view equals the reference at the watermark clock and at earlier tile edges.
import { beforeAll, describe, expect, it } from 'vitest';
import { TidemarkError, valuesAgree } from '../../definitions/index.js';
import { evaluateFeature, storeClockMs } from '../../online/index.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';

const LIMIT = 100_000;
let fx: FlightsFixture;

beforeAll(async () => {
  fx = await loadFlightsFixture(LIMIT);
});

function compareAllKeys(tMs: number, watermarkMs: number): { compared: number; mismatches: string[] } {
  let compared = 0;
  const mismatches: string[] = [];
  for (const view of fx.compiled.registry.views) {
    const keys = fx.store.entityKeys(view.name);
    const tiles = fx.store.readTilesSync(view.name, keys);
    keys.forEach((key, i) => {
      const expected = fx.reference(view, key, tMs);
      for (const f of view.features) {
        const got = evaluateFeature(view, f, tiles[i]!, tMs, watermarkMs).value;
        compared++;
        if (!valuesAgree(f.agg, got, expected[f.name]!)) mismatches.push(`${view.name}:${f.name} key ${key} at ${tMs}: online ${got}, reference ${expected[f.name]}`);
      }
    });
  }
  return { compared, mismatches };
}

describe('flights replay (first 100 000 rows)', () => {
  it('replays every row with no bad or late events', () => {
    expect(fx.replay.rows).toBe(LIMIT);
    expect(fx.replay.events).toBe(LIMIT);
    expect(fx.replay.badEvents).toBe(0);
    expect(fx.replay.lateTileEvents).toBe(0);
  });

  it('matches the reference for every key of every view at the watermark clock', async () => {
    const watermarkMs = (await fx.store.watermarkMs())!;
    const { compared, mismatches } = compareAllKeys(storeClockMs('watermark', watermarkMs), watermarkMs);
    expect(mismatches.slice(0, 10)).toEqual([]);
    // 223 origin and destination airports and ~3 300 routes in the first 100 000 rows
    expect(compared).toBeGreaterThan(8_000);
  });

  it('matches the reference at earlier tile edges inside retention', async () => {
    const watermarkMs = (await fx.store.watermarkMs())!;
    const lastMidnight = Math.floor(watermarkMs / 86_400_000) * 86_400_000;
    // the 5-minute tiles of origin_delays are kept 25h05m behind the watermark
    for (const t of [lastMidnight, lastMidnight - 3_600_000, lastMidnight - 6 * 3_600_000]) {
      const { mismatches } = compareAllKeys(t, watermarkMs);
      expect(mismatches.slice(0, 10)).toEqual([]);
    }
  });

  it('refuses, never misanswers, a read inside a tile that holds later events', async () => {
    const watermarkMs = (await fx.store.watermarkMs())!;
    const view = fx.compiled.registry.views.find((v) => v.name === 'origin_delays')!;
    const feature = view.features.find((f) => f.name === 'flights_1h')!;
    const [tiles] = fx.store.readTilesSync(view.name, ['ORD']);
    // 2.5 minutes into the 5-minute tile before the watermark's: ORD departs every few minutes.
    const t = Math.floor(watermarkMs / 300_000) * 300_000 - 150_000;
    let outcome: unknown;
    try {
      outcome = evaluateFeature(view, feature, tiles!, t, watermarkMs).value;
    } catch (e) {
      outcome = e;
    }
    if (outcome instanceof TidemarkError) expect(outcome.code).toBe('TM_READ_INSIDE_OPEN_TILE');
    else expect(outcome).toBe(fx.reference(view, 'ORD', t).flights_1h);
  });

  it('refuses reads older than the retention horizon', async () => {
    const watermarkMs = (await fx.store.watermarkMs())!;
    const view = fx.compiled.registry.views.find((v) => v.name === 'origin_delays')!;
    const feature = view.features.find((f) => f.name === 'delay_stddev_7d')!;
    const [tiles] = fx.store.readTilesSync(view.name, ['ORD']);
    expect(() => evaluateFeature(view, feature, tiles!, watermarkMs - 2 * 86_400_000, watermarkMs)).toThrow(
      expect.objectContaining({ code: 'TM_READ_BEFORE_RETENTION' }),
    );
  });
});
