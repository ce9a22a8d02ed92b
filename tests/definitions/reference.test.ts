// Reference implementation against hand-computed values: window edges, sawtooth tiles, negative times, ties, nulls, empty windows, ttl.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  eventsOfKey,
  featureView,
  referenceFeatureValue,
  referenceViewValues,
  windowStartMs,
  type FeatureSpec,
  type ReferenceEvent,
  type Scalar,
} from '../../definitions/index.js';
import { evaluateFeature } from '../../online/read.js';
import { storeClockMs } from '../../online/store.js';
import { compileWith, decodeAll, events, materialize, pair, user, type TestEvent } from './support.js';

type Spec = FeatureSpec<{ ts: number; k: string; n: number; x: number | null; s: string | null }>;

/** An event of key `k` at `ts` with value `x` (and text `s`). */
function ev(ts: number, x: number | null = null, s: string | null = null, k = 'a'): TestEvent {
  return { ts, k, n: 1, x, s };
}

/** Compile one view over the test source. */
function plan(features: Record<string, Spec>) {
  const compiled = compileWith(featureView({ name: 'v', source: events, entity: user, features, allowedLateness: '1d' }));
  return { compiled, view: compiled.registry.views[0]! };
}

function refEvents(raw: readonly TestEvent[]): ReferenceEvent[] {
  return raw.map((e, i) => ({ eventTimeMs: e.ts as number, fields: { ...e }, recordId: `r${i}` }));
}

/**
 * Feature values at each t by the reference, checked against the online path where it can answer
 * (t after the watermark: every tile is whole), so the hand-computed numbers pin both.
 */
function valuesAt(features: Record<string, Spec>, raw: readonly TestEvent[], t: number, key = 'a'): Record<string, Scalar> {
  const { compiled, view } = plan(features);
  const ref = referenceViewValues(view, refEvents(raw), [key], t);
  const decoded = decodeAll(compiled, raw);
  const store = materialize(compiled, [decoded]);
  const wm = decoded.length === 0 ? null : Math.max(...decoded.map((e) => e.eventTimeMs));
  if (wm === null || t >= storeClockMs('watermark', wm)) {
    const [tiles] = store.readTilesSync('v', [key]);
    for (const f of view.features) {
      const online = evaluateFeature(view, f, tiles ?? null, t, wm).value;
      if (typeof online === 'number' && typeof ref[f.name] === 'number') expect(online, `online ${f.name} at ${t}`).toBeCloseTo(ref[f.name] as number, 9);
      else expect(online, `online ${f.name} at ${t}`).toBe(ref[f.name]);
    }
  }
  return ref;
}

const ALL_WINDOWED: Record<string, Spec> = {
  n: { agg: 'count', window: '10ms', hop: '5ms' },
  n_x: { agg: 'count', field: 'x', window: '10ms', hop: '5ms' },
  sum: { agg: 'sum', field: 'x', window: '10ms', hop: '5ms' },
  mean: { agg: 'mean', field: 'x', window: '10ms', hop: '5ms' },
  min: { agg: 'min', field: 'x', window: '10ms', hop: '5ms' },
  max: { agg: 'max', field: 'x', window: '10ms', hop: '5ms' },
  var: { agg: 'var', field: 'x', window: '10ms', hop: '5ms' },
  sd: { agg: 'stddev', field: 'x', window: '10ms', hop: '5ms' },
  last_x: { agg: 'last', field: 'x', window: '10ms', hop: '5ms' },
  last_s: { agg: 'last', field: 's', window: '10ms', hop: '5ms' },
};

// W = 10ms, H = 5ms: tail(t) = floor(t / 5) * 5 - 10.
const EVENTS: TestEvent[] = [
  ev(-11, 100, 'old'),
  ev(-10, 1, 'p'),
  ev(-6, null, 'q'),
  ev(-5, 2, 'r'),
  ev(-1, 4, null),
  ev(0, null, 'zero'),
  ev(3, 6, 'c'),
  ev(4, -3, 'd'),
  ev(5, 8, 'e'),
  ev(7, 50, 'seven'),
  ev(9, 1, 'nine'),
  ev(10, 1, 'ten'),
  ev(6, 1000, 'other key', 'b'),
];

describe('reference: sawtooth windows', () => {
  it('windowStartMs is floor(t / H) * H - W, flooring toward -infinity', () => {
    expect(windowStartMs(7, 10, 5)).toBe(-5);
    expect(windowStartMs(5, 10, 5)).toBe(-5);
    expect(windowStartMs(4, 10, 5)).toBe(-10);
    expect(windowStartMs(0, 10, 5)).toBe(-10);
    expect(windowStartMs(-1, 10, 5)).toBe(-15);
    expect(windowStartMs(-5, 10, 5)).toBe(-15);
    expect(windowStartMs(-6, 10, 5)).toBe(-20);
  });

  it('the window is never shorter than W and always shorter than W + H', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1_000_000, max: 1_000_000 }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 20 }), (t, hop, tiles) => {
        const w = hop * tiles;
        const length = t - windowStartMs(t, w, hop);
        expect(length).toBeGreaterThanOrEqual(w);
        expect(length).toBeLessThan(w + hop);
        expect(windowStartMs(t, w, hop) % hop === 0).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('at t inside a tile: W/H whole tiles before, plus the tile holding t cut before t', () => {
    // t = 7: tiles [-5, 0) and [0, 5) whole, plus [5, 7). Event at 7 is not visible, -6 is not.
    const v = valuesAt(ALL_WINDOWED, EVENTS, 7);
    expect(v['n']).toBe(6); // -5, -1, 0, 3, 4, 5
    expect(v['n_x']).toBe(5); // x null at 0
    expect(v['sum']).toBe(17); // 2 + 4 + 6 - 3 + 8
    expect(v['mean']).toBeCloseTo(3.4, 12);
    expect(v['min']).toBe(-3);
    expect(v['max']).toBe(8);
    expect(v['var']).toBeCloseTo(71.2 / 5, 12);
    expect(v['sd']).toBeCloseTo(Math.sqrt(71.2 / 5), 12);
    expect(v['last_x']).toBe(8);
    expect(v['last_s']).toBe('e');
  });

  it('start inclusive, end exclusive: an event at exactly t is not visible', () => {
    // t = 5: window [-5, 5); the event at 5 is excluded, the one at -5 included.
    const v5 = valuesAt(ALL_WINDOWED, EVENTS, 5);
    expect(v5['n']).toBe(5);
    expect(v5['sum']).toBe(9);
    expect(v5['min']).toBe(-3);
    expect(v5['last_x']).toBe(-3);
    expect(v5['last_s']).toBe('d');
    // t = 6: the event at 5 appears
    const v6 = valuesAt(ALL_WINDOWED, EVENTS, 6);
    expect(v6['n']).toBe(6);
    expect(v6['last_x']).toBe(8);
    // t = 10: window [0, 10); -1 and -5 fell out with the tile [-5, 0), the event at 10 is not visible
    const v10 = valuesAt(ALL_WINDOWED, EVENTS, 10);
    expect(v10['n']).toBe(6); // 0, 3, 4, 5, 7, 9
    expect(v10['sum']).toBe(6 - 3 + 8 + 50 + 1);
    expect(v10['max']).toBe(50);
    expect(v10['last_x']).toBe(1);
    expect(v10['last_s']).toBe('nine');
  });

  it('events at tile edges land in the tile they start', () => {
    // t = 4 (tile [0, 5)): window [-10, 4) holds -10, -6, -5, -1, 0, 3
    const v4 = valuesAt(ALL_WINDOWED, EVENTS, 4);
    expect(v4['n']).toBe(6);
    expect(v4['sum']).toBe(1 + 2 + 4 + 6);
    expect(v4['min']).toBe(1);
    expect(v4['last_s']).toBe('c');
    // t = 0: window [-10, 0); the event at 0 is not visible
    const v0 = valuesAt(ALL_WINDOWED, EVENTS, 0);
    expect(v0['n']).toBe(4);
    expect(v0['n_x']).toBe(3);
    expect(v0['last_x']).toBe(4);
    expect(v0['last_s']).toBe('r'); // s is null at -1
  });

  it('before 1970: negative times floor toward -infinity', () => {
    // t = -1: floor(-1 / 5) = -1, window [-15, -1): -11, -10, -6, -5 (truncation would start at -10)
    const vm1 = valuesAt(ALL_WINDOWED, EVENTS, -1);
    expect(vm1['n']).toBe(4);
    expect(vm1['sum']).toBe(100 + 1 + 2);
    expect(vm1['max']).toBe(100);
    expect(vm1['last_s']).toBe('r');
    // t = -4: window [-15, -4)
    expect(valuesAt(ALL_WINDOWED, EVENTS, -4)['n']).toBe(4);
    // t = -5: window [-15, -5): -11, -10, -6
    const vm5 = valuesAt(ALL_WINDOWED, EVENTS, -5);
    expect(vm5['n']).toBe(3);
    expect(vm5['last_s']).toBe('q');
    expect(vm5['last_x']).toBe(1);
  });

  it('an hour window with the default 5m hop, around the epoch', () => {
    const m = 60_000;
    const features: Record<string, Spec> = { n: { agg: 'count', window: '1h' }, s: { agg: 'sum', field: 'x', window: '1h' } };
    const raw = [ev(-65 * m - 1, 1), ev(-65 * m, 2), ev(-60 * m, 4), ev(-5 * m - 1, 8), ev(-1, 16), ev(0, 32)];
    // t = -3m: floor(-3m / 5m) = -1, window [-65m, -3m): -65m - 1 is out, -1 is after t
    expect(valuesAt(features, raw, -3 * m)).toEqual({ n: 3, s: 2 + 4 + 8 });
    // t = -5m: window [-65m, -5m)
    expect(valuesAt(features, raw, -5 * m)).toEqual({ n: 3, s: 2 + 4 + 8 });
    // t = -5m - 1: floor = -2, window [-70m, -5m - 1): -65m - 1 is in, the event at t is not
    expect(valuesAt(features, raw, -5 * m - 1)).toEqual({ n: 3, s: 1 + 2 + 4 });
    // t = 1: window [-60m, 1)
    expect(valuesAt(features, raw, 1)).toEqual({ n: 4, s: 4 + 8 + 16 + 32 });
  });

  it('only events of the asked key count', () => {
    expect(valuesAt(ALL_WINDOWED, EVENTS, 7, 'b')['n']).toBe(1);
    expect(valuesAt(ALL_WINDOWED, EVENTS, 7, 'b')['max']).toBe(1000);
  });
});

describe('reference: values, ties and nulls', () => {
  it('empty windows: count and sum 0, everything else null', () => {
    const empty = { n: 0, n_x: 0, sum: 0, mean: null, min: null, max: null, var: null, sd: null, last_x: null, last_s: null };
    expect(valuesAt(ALL_WINDOWED, EVENTS, 1000)).toEqual(empty);
    expect(valuesAt(ALL_WINDOWED, EVENTS, -100)).toEqual(empty);
    expect(valuesAt(ALL_WINDOWED, EVENTS, 7, 'nobody')).toEqual(empty);
    expect(valuesAt(ALL_WINDOWED, [], 7)).toEqual(empty);
  });

  it('null values are ignored by everything except plain count', () => {
    const raw = [ev(1, null, null), ev(2, null, null), ev(3, null, null)];
    expect(valuesAt(ALL_WINDOWED, raw, 4)).toEqual({ n: 3, n_x: 0, sum: 0, mean: null, min: null, max: null, var: null, sd: null, last_x: null, last_s: null });
    // a later null does not hide an earlier value
    const mixed = [ev(1, 5, 'five'), ev(2, null, null), ev(3, null, null)];
    expect(valuesAt(ALL_WINDOWED, mixed, 4)).toMatchObject({ n: 3, n_x: 1, sum: 5, mean: 5, var: 0, sd: 0, last_x: 5, last_s: 'five' });
  });

  it('a single value: variance 0, min = max = mean', () => {
    expect(valuesAt(ALL_WINDOWED, [ev(2, -7, 'only')], 3)).toEqual({ n: 1, n_x: 1, sum: -7, mean: -7, min: -7, max: -7, var: 0, sd: 0, last_x: -7, last_s: 'only' });
  });

  it('population variance divides by n', () => {
    const v = valuesAt(ALL_WINDOWED, [ev(1, 1), ev(2, 2), ev(3, 3), ev(4, 4)], 5);
    expect(v['var']).toBeCloseTo(1.25, 12);
    expect(v['sd']).toBeCloseTo(Math.sqrt(1.25), 12);
    expect(v['mean']).toBe(2.5);
  });

  it('last on equal timestamps: the greater number wins, whatever the order', () => {
    const tie = [ev(3, 3), ev(3, 9), ev(3, null), ev(3, -1), ev(2, 100)];
    for (const raw of [tie, [...tie].reverse()]) {
      const v = valuesAt({ ...ALL_WINDOWED, latest: { agg: 'last', field: 'x' } }, raw, 4);
      expect(v['last_x']).toBe(9);
      expect(v['latest']).toBe(9);
    }
  });

  it('last on equal timestamps: the greater text by code point wins', () => {
    const features: Record<string, Spec> = { w: { agg: 'last', field: 's', window: '10ms', hop: '5ms' }, l: { agg: 'last', field: 's' } };
    const cases: [string[], string][] = [
      [['a', 'b'], 'b'],
      [['ab', 'b'], 'b'],
      [['a', 'ab'], 'ab'],
      [['', 'a'], 'a'],
      [['Z', 'a'], 'a'],
      [['\uFFFF', '\u{1F600}'], '\u{1F600}'], // UTF-16 order would pick \uFFFF
      [['\u{1F600}', '\uFFFF', '\uE000'], '\u{1F600}'],
    ];
    for (const [texts, winner] of cases) {
      for (const order of [texts, [...texts].reverse()]) {
        const v = valuesAt(features, order.map((s) => ev(3, 0, s)), 4);
        expect(v, JSON.stringify(order)).toEqual({ w: winner, l: winner });
      }
    }
  });

  it('last without window: the greatest ts before t, never at t', () => {
    const features: Record<string, Spec> = { l: { agg: 'last', field: 'x' }, ls: { agg: 'last', field: 's' } };
    const raw = [ev(-100_000_000, 1, 'ancient'), ev(-5, 2, 'minus five'), ev(10, 3, null), ev(20, null, 'twenty')];
    expect(valuesAt(features, raw, -100_000_000)).toEqual({ l: null, ls: null });
    expect(valuesAt(features, raw, -100_000_000 + 1)).toEqual({ l: 1, ls: 'ancient' });
    expect(valuesAt(features, raw, -5)).toEqual({ l: 1, ls: 'ancient' });
    expect(valuesAt(features, raw, -4)).toEqual({ l: 2, ls: 'minus five' });
    expect(valuesAt(features, raw, 10)).toEqual({ l: 2, ls: 'minus five' });
    expect(valuesAt(features, raw, 11)).toEqual({ l: 3, ls: 'minus five' });
    expect(valuesAt(features, raw, 21)).toEqual({ l: 3, ls: 'twenty' });
    expect(valuesAt(features, raw, 1e12)).toEqual({ l: 3, ls: 'twenty' });
  });

  it('last with ttl: only events with ts >= t - ttl count', () => {
    const features: Record<string, Spec> = { l: { agg: 'last', field: 'x', ttl: '10ms' }, forever: { agg: 'last', field: 'x' } };
    const raw = [ev(-20, 7), ev(5, 8), ev(6, null)];
    expect(valuesAt(features, raw, -10)).toEqual({ l: 7, forever: 7 }); // -20 >= -10 - 10
    expect(valuesAt(features, raw, -9)).toEqual({ l: null, forever: 7 }); // -20 < -19
    expect(valuesAt(features, raw, 6)).toEqual({ l: 8, forever: 8 });
    expect(valuesAt(features, raw, 15)).toEqual({ l: 8, forever: 8 }); // 5 >= 15 - 10: the boundary counts
    expect(valuesAt(features, raw, 16)).toEqual({ l: null, forever: 8 }); // 5 < 6; the null at 6 does not count
  });

  it('a windowed last forgets values older than the window', () => {
    const features: Record<string, Spec> = { w: { agg: 'last', field: 'x', window: '10ms', hop: '5ms' } };
    expect(valuesAt(features, [ev(0, 1)], 14)).toEqual({ w: 1 }); // window [0, 14)
    expect(valuesAt(features, [ev(0, 1)], 15)).toEqual({ w: null }); // window [5, 15)
  });
});

describe('reference: delivery', () => {
  it('a redelivered record (same recordId) counts once; distinct records with equal content count twice', () => {
    const { view } = plan(ALL_WINDOWED);
    const base = refEvents(EVENTS);
    const expected = referenceViewValues(view, base, ['a'], 7);
    const redelivered = [...base, base[3]!, base[6]!, base[6]!, { ...base[8]!, fields: { ...base[8]!.fields } }];
    expect(referenceViewValues(view, redelivered, ['a'], 7)).toEqual(expected);
    const twice = [...base, { ...base[6]!, recordId: 'another record' }];
    const v = referenceViewValues(view, twice, ['a'], 7);
    expect(v['n']).toBe((expected['n'] as number) + 1);
    expect(v['sum']).toBe((expected['sum'] as number) + 6);
    const noIds = base.map(({ recordId: _id, ...e }) => e);
    expect(referenceViewValues(view, [...noIds, noIds[6]!], ['a'], 7)['n']).toBe((expected['n'] as number) + 1);
  });

  it('eventsOfKey matches keys as canonical strings, over several join keys', () => {
    const compiled = compileWith(featureView({ name: 'p', source: events, entity: pair, features: { n: { agg: 'count', window: '10ms', hop: '5ms' } } }));
    const view = compiled.registry.views[0]!;
    const raw: ReferenceEvent[] = [
      { eventTimeMs: 1, fields: { k: 'a', n: 1 } },
      { eventTimeMs: 2, fields: { k: 'a', n: 1.0 } },
      { eventTimeMs: 3, fields: { k: 'a', n: 2 } },
      { eventTimeMs: 4, fields: { k: 'b', n: 1 } },
    ];
    expect(eventsOfKey(view, raw, ['a', '1']).map((e) => e.eventTimeMs)).toEqual([1, 2]);
    expect(referenceFeatureValue(view.features[0]!, eventsOfKey(view, raw, ['a', '2']), 5)).toBe(1);
    expect(eventsOfKey(view, raw, ['a', '3'])).toEqual([]);
  });
});
