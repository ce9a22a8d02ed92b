// One integration suite for every OnlineStore (as drizzle runs one suite per driver): the in-memory
// store, Redis and Redis Cluster run the same tests through runStoreSuite. Each store is checked
// against the reference implementation and, value for value (bit for bit), against a
// MemoryOnlineStore fed the same batches: read-time merging is shared, so equal tiles must give
// equal answers.
import fc from 'fast-check';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import {
  canonicalKeyValue,
  compareCodePoints,
  compileOrThrow,
  entity,
  entityKeyId,
  eventsOfKey,
  eventTime,
  featureView,
  referenceFeatureValue,
  source,
  TidemarkError,
  valuesAgree,
  type CompiledDefinitions,
  type Duration,
  type FeatureSpec,
  type ReferenceEvent,
  type Registry,
  type Scalar,
  type TileBatch,
  type ViewPlan,
} from '../../definitions/index.js';
import { TileBatchBuilder, replayParquetFile, type DecodedEvent } from '../../ingest/index.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { evaluateFeature, evaluateFeatures, MemoryOnlineStore, OnlineFeatureService, readWithWatermark, storeClockMs, tileRangesFor, tilesPerRead, type OnlineStore, type TileRange } from '../../online/index.js';
import { compileWith, decodeAll, events, pair, referenceEvents, splitIntoBatches, user, type TestEvent } from '../definitions/support.js';
import { loadFlightsFixture } from '../support/flights.js';
import { pairFeatures, userFeatures, type Spec } from '../support/feature-arbitraries.js';

export interface StoreBackend {
  /** Shown in test names. */
  name: string;
  /** A fresh, empty store for a registry (its own namespace: stores never see each other's keys). */
  create(registry: Registry): Promise<OnlineStore> | OnlineStore;
  /**
   * Network round trips `op` makes on the store's connections (the most on any one connection).
   * Absent for an in-process store, which makes none.
   */
  roundTrips?: (store: OnlineStore, op: () => Promise<unknown>) => Promise<number>;
  /** Whether the store honours KeyTileUpdates.fence (Redis) or ignores it (in-memory: no redelivery there). */
  fences: 'honoured' | 'ignored';
}

const READ_REFUSALS = new Set(['TM_READ_INSIDE_OPEN_TILE', 'TM_READ_BEFORE_RETENTION']);

type Answer = { value: Scalar; status: string; eventTimeMs: number | null } | { refused: string };

/** A feature's answer, or the code of its refusal; anything else is a bug and throws. */
function answer(view: ViewPlan, featureIndex: number, tiles: Parameters<typeof evaluateFeature>[2], tMs: number, wm: number | null): Answer {
  try {
    return evaluateFeature(view, view.features[featureIndex]!, tiles, tMs, wm);
  } catch (e) {
    if (e instanceof TidemarkError && READ_REFUSALS.has(e.code)) return { refused: e.code };
    throw e;
  }
}

/**
 * Apply a batch to the store under test and to a MemoryOnlineStore twin; both results must agree.
 * The twin gets a copy: MemoryOnlineStore adopts a batch's tiles and later merges into them.
 */
async function applyBoth(store: OnlineStore, twin: MemoryOnlineStore, batch: TileBatch): Promise<void> {
  const expected = twin.applySync(structuredClone(batch));
  const got = await store.apply(batch);
  expect({ appliedUpdates: got.appliedUpdates, lateTileEvents: got.lateTileEvents }).toEqual(expected);
}

// ---------------------------------------------------------------------------------------------
// fast-check: shuffled, re-batched events against the reference (as memory-store.fuzz.test.ts)

/**
 * Times near 0 with many exact repeats; fractional values so sums, means and variances round; small
 * integers and 1.015625 sit on approx_percentile's bucket edges. (Values an ulp apart are left out:
 * the reference now gets their variance of an ulp squared exactly, but the online Chan merge can
 * lose it in some merge orders, giving 0; a known gap, noted in the README.)
 */
/**
 * Doubles of any size within 1e6 whose squares are normal doubles (|x| >= 1e-150, or 0): a variance
 * of values near 1e-161 keeps a digit or two in subnormals, in any summation order, so no two paths
 * can agree there within docs/semantics.md's relative 1e-6 (online 7.03e-162 against the
 * reference's 7.37e-162 in one failed run).
 */
const wideDoubleArb = fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => x === 0 || Math.abs(x) >= 1e-150);

const eventArb: fc.Arbitrary<TestEvent> = fc.record({
  ts: fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: -150, max: 150 }) },
    { weight: 2, arbitrary: fc.constantFrom(-100, -50, -25, -20, -10, -1, 0, 1, 10, 20, 25, 50, 100) },
  ),
  k: fc.constantFrom('a', 'b', 'c'),
  n: fc.constantFrom(0, -0, 1, 2.5),
  x: fc.option(fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom(0.1, -0.3, 1e-9, 12345.678, 1.015625)), { nil: null, freq: 4 }),
  s: fc.option(fc.constantFrom('', 'a', 'ab', 'b', 'zz', '\uFFFF', '\u{1F600}', 'é'), { nil: null, freq: 4 }),
});

interface Scenario {
  raw: TestEvent[];
  order: number[];
  batchSizes: number[];
  userFeatures: Record<string, Spec>;
  pairFeatures: Record<string, Spec>;
  probes: number[];
}

const scenarioArb = (maxEvents: number): fc.Arbitrary<Scenario> =>
  fc.array(eventArb, { maxLength: maxEvents }).chain((raw) =>
    fc.record({
      raw: fc.constant(raw),
      order: fc.shuffledSubarray(
        raw.map((_, i) => i),
        { minLength: raw.length, maxLength: raw.length },
      ),
      batchSizes: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 8 }),
      userFeatures,
      pairFeatures,
      probes: fc.array(fc.integer({ min: -170, max: 160 }), { maxLength: 8 }),
    }),
  );

function keysOf(view: ViewPlan, decoded: readonly DecodedEvent[]): string[][] {
  const ids = new Map<string, string[]>();
  for (const e of decoded) {
    const values = view.keyFields.map((f) => canonicalKeyValue(e.fields[f])!);
    ids.set(entityKeyId(values), values);
  }
  return [...ids.values(), view.keyFields.map((_, i) => (i === 0 ? 'nobody' : '999'))];
}

function queryTimes(view: ViewPlan, decoded: readonly DecodedEvent[], wm: number | null, probes: readonly number[]): { after: number[]; before: number[] } {
  if (wm === null) return { after: [0, 1000], before: [] };
  const t0 = wm + 1;
  const after = new Set([t0, t0 + 1, t0 + 7, t0 + 151]);
  for (const f of view.features) {
    const edge = Math.ceil(t0 / f.hopMs) * f.hopMs;
    for (const t of [edge, edge + f.hopMs, edge + (f.windowMs ?? 0)]) if (t >= t0) after.add(t);
  }
  const before = new Set<number>(probes.filter((t) => t <= wm));
  const minTs = Math.min(...decoded.map((e) => e.eventTimeMs));
  for (let t = Math.floor((minTs - 25) / 25) * 25; t <= wm; t += 25) before.add(t);
  return { after: [...after], before: [...before] };
}

async function runScenario(backend: StoreBackend, s: Scenario, allowedLateness: Duration): Promise<void> {
  const compiled = compileWith(
    featureView({ name: 'u', source: events, entity: user, features: s.userFeatures, allowedLateness }),
    featureView({ name: 'p', source: events, entity: pair, features: s.pairFeatures, allowedLateness }),
  );
  const decoded = decodeAll(compiled, s.raw);
  const ref: ReferenceEvent[] = referenceEvents(decoded);
  const builder = new TileBatchBuilder(compiled.registry);
  const store = await backend.create(compiled.registry);
  const twin = new MemoryOnlineStore(compiled.registry);
  try {
    for (const batch of splitIntoBatches(
      s.order.map((i) => decoded[i]!),
      s.batchSizes,
    )) {
      await applyBoth(store, twin, builder.build(batch));
    }
    const wm = decoded.length === 0 ? null : Math.max(...decoded.map((e) => e.eventTimeMs));
    expect(await store.watermarkMs()).toBe(wm);
    expect(await store.stats()).toEqual(await twin.stats());

    for (const view of compiled.registry.views) {
      const keys = keysOf(view, decoded);
      const ids = keys.map((k) => entityKeyId(k));
      const keyEvents = keys.map((k) => eventsOfKey(view, ref, k));
      const twinTiles = twin.readTilesSync(view.name, ids);
      const { after, before } = queryTimes(view, decoded, wm, s.probes);
      for (const [times, mustAnswer] of [
        [after, true],
        [before, false],
      ] as const) {
        for (const t of times) {
          const tiles = await store.readTiles(view.name, ids, tileRangesFor(view, view.features, t, wm));
          keys.forEach((keyValues, k) => {
            view.features.forEach((f, i) => {
              const where = `${view.name}:${f.name} key ${JSON.stringify(keyValues)} at t=${t} (wm ${wm})`;
              const got = answer(view, i, tiles[k]!, t, wm);
              expect(got, `${where}: same answer as the in-memory store`).toEqual(answer(view, i, twinTiles[k]!, t, wm));
              if ('refused' in got) {
                if (mustAnswer) expect.fail(`${where}: refused (${got.refused}) at or after the store clock`);
                return;
              }
              const expected = referenceFeatureValue(f, keyEvents[k]!, t);
              if (!valuesAgree(f.agg, got.value, expected)) {
                expect.fail(`${where}: online ${JSON.stringify(got.value)}, reference ${JSON.stringify(expected)}`);
              }
            });
          });
        }
      }
    }
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Deterministic scenarios

/** A source with a boolean field too, for the `last` tie rule over every value type. */
const tieSource = source({
  name: 'ties',
  topic: 'ties',
  schema: z.object({ ts: eventTime(), k: z.string(), s: z.string().nullable(), b: z.boolean().nullable(), x: z.number().nullable() }),
  eventTimeField: 'ts',
});
const tieKey = entity({ name: 'tie_key', joinKeys: ['k'] });

/** A view `u` of the test events keyed by user: rollup tests use 1 ms hops over long windows. */
/**
 * A batch fenced as one partition's offsets up to `offset`, applied to the twin and the store, then
 * delivered to the store again (skipped by a store that honours fences).
 */
async function applyFencedTwice(backend: StoreBackend, store: OnlineStore, twin: MemoryOnlineStore, built: TileBatch, offset: number): Promise<void> {
  const fenced = { ...built, keys: built.keys.map((k) => ({ ...k, fence: { source: 'ev', partition: 0, offset } })) };
  twin.applySync(structuredClone(fenced));
  await store.apply(structuredClone(fenced));
  if (backend.fences === 'honoured') await store.apply(structuredClone(fenced));
}

function oneMsView(features: Record<string, FeatureSpec<z.output<typeof events.schema>>>): CompiledDefinitions {
  return compileWith(featureView({ name: 'u', source: events, entity: user, features }));
}

function tieDefinitions(): CompiledDefinitions {
  return compileOrThrow([
    featureView({
      name: 'ties',
      source: tieSource,
      entity: tieKey,
      features: {
        last_s: { agg: 'last', field: 's', window: '100ms', hop: '10ms' },
        last_b: { agg: 'last', field: 'b', window: '100ms', hop: '10ms' },
        last_x: { agg: 'last', field: 'x', window: '100ms', hop: '10ms' },
        latest_s: { agg: 'last', field: 's' },
      },
    }),
  ]);
}

function retentionDefinitions(): CompiledDefinitions {
  return compileWith(featureView({ name: 'u', source: events, entity: user, allowedLateness: '5ms', features: { n: { agg: 'count', window: '10ms', hop: '5ms' } } }));
}

const ev = (ts: number, k = 'a'): TestEvent => ({ ts, k, n: 1, x: 1, s: null });

export function runStoreSuite(backend: StoreBackend): void {
  describe(`OnlineStore suite: ${backend.name}`, () => {
    it('starts empty: no watermark, no keys, reads find nothing', async () => {
      const compiled = retentionDefinitions();
      const store = await backend.create(compiled.registry);
      try {
        expect(await store.watermarkMs()).toBeNull();
        expect(await store.stats()).toEqual({ keys: { u: 0 }, tiles: 0, watermarkMs: null });
        const view = compiled.registry.views[0]!;
        expect(await store.readTiles('u', ['a', 'b'], tileRangesFor(view, view.features, 100, null))).toEqual([null, null]);
        expect(await store.readTiles('no_such_view', ['a'], [])).toEqual([null]);
        await store.apply({ keys: [], eventCount: 0, maxEventTimeMs: null });
        expect(await store.watermarkMs()).toBeNull();
      } finally {
        await store.close();
      }
    });

    it('rejects a tile update for a view or tile group the registry does not have', async () => {
      const compiled = retentionDefinitions();
      const store = await backend.create(compiled.registry);
      try {
        const batch = new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, [ev(1)]));
        await expect(store.apply({ ...batch, keys: batch.keys.map((k) => ({ ...k, view: 'nope' })) })).rejects.toThrow(/unknown view nope/);
        const badGroup = batch.keys.map((k) => ({ ...k, tiles: k.tiles.map((u) => ({ ...u, hopMs: 7 })) }));
        await expect(store.apply({ ...batch, keys: badGroup })).rejects.toThrow(/unknown tile group u\/7/);
      } finally {
        await store.close();
      }
    });

    it('fast-check: any delivery order and batching agrees with the reference and the in-memory store', async () => {
      await fc.assert(
        fc.asyncProperty(scenarioArb(50), (s) => runScenario(backend, s, '1d')),
        { numRuns: 40 },
      );
    });

    it('fast-check: with a short allowed lateness, late tiles are dropped the same way and never make a value wrong', async () => {
      await fc.assert(
        fc.asyncProperty(scenarioArb(40), fc.constantFrom<Duration>('1ms', '5ms', '20ms', '60ms'), (s, lateness) => runScenario(backend, s, lateness)),
        { numRuns: 30 },
      );
    });

    it('the first 20 000 flights: values equal the in-memory store exactly and the reference within tolerance', async () => {
      const fx = await loadFlightsFixture(20_000);
      const { registry } = fx.compiled;
      const store = await backend.create(registry);
      const twin = new MemoryOnlineStore(registry);
      try {
        // Small batches, so stored tiles are merged many times.
        const opts = { source: 'flights', limit: 20_000, batchRows: 1_000 };
        await replayParquetFile(fx.compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => twin.applySync(b) }, opts);
        const replay = await replayParquetFile(fx.compiled, FLIGHTS_PARQUET_PATH, store, opts);
        expect(replay.events).toBe(20_000);
        expect(await store.stats()).toEqual(await twin.stats());
        const wm = (await store.watermarkMs())!;
        const clock = storeClockMs('watermark', wm);
        const lastMidnight = Math.floor(wm / 86_400_000) * 86_400_000;
        let compared = 0;
        for (const view of registry.views) {
          const keys = twin.entityKeys(view.name);
          const twinTiles = twin.readTilesSync(view.name, keys);
          for (const t of [clock, lastMidnight, lastMidnight - 6 * 3_600_000]) {
            const tiles = await store.readTiles(view.name, keys, tileRangesFor(view, view.features, t, wm));
            keys.forEach((key, i) => {
              const got = evaluateFeatures(view, view.features, tiles[i]!, t, wm);
              expect(got, `${view.name} key ${key} at ${t}`).toEqual(evaluateFeatures(view, view.features, twinTiles[i]!, t, wm));
              if (t === clock) {
                const expected = fx.reference(view, key, t);
                view.features.forEach((f, j) => {
                  if (!valuesAgree(f.agg, got[j]!.value, expected[f.name]!)) expect.fail(`${view.name}:${f.name} key ${key}: online ${got[j]!.value}, reference ${expected[f.name]}`);
                  compared++;
                });
              }
            });
          }
        }
        // 222 origins, 223 destinations and ~3 200 routes in the first 20 000 rows
        expect(compared).toBeGreaterThan(7_000);
        // The Feast-shaped read over this store answers exactly as over the in-memory one.
        const request = { features: ['origin_delays:delay_stddev_7d', 'origin_delays:last_delay', 'origin_delays:flights_1h'], entities: { airport: [...twin.entityKeys('origin_delays'), 'NOWHERE'] } };
        const viaStore = await new OnlineFeatureService(registry, store, 'watermark').getOnlineFeatures(request);
        const viaTwin = await new OnlineFeatureService(registry, twin, 'watermark').getOnlineFeatures(request);
        expect(viaStore).toEqual(viaTwin);
      } finally {
        await store.close();
      }
    });

    it('a read whose watermark is older than the tiles it finds (written in between) answers last from its history tiles', async () => {
      const compiled = compileWith(featureView({ name: 'u', source: events, entity: user, features: { latest: { agg: 'last', field: 'x', hop: '10ms' }, n: { agg: 'count', window: '50ms', hop: '25ms' } } }));
      const view = compiled.registry.views[0]!;
      const builder = new TileBatchBuilder(compiled.registry);
      const store = await backend.create(compiled.registry);
      try {
        const first: TestEvent[] = [{ ts: 100, k: 'a', n: 1, x: 7, s: null }, { ts: 105, k: 'a', n: 1, x: 3, s: null }];
        await store.apply(builder.build(decodeAll(compiled, first)));
        const staleWatermark = (await store.watermarkMs())!;
        // later events of the same key, stored after the reader took its watermark
        const later: TestEvent[] = [{ ts: 131, k: 'a', n: 1, x: 9, s: null }];
        await store.apply(builder.build(decodeAll(compiled, later)));
        const stale: OnlineStore = { ...store, apply: (b) => store.apply(b), readTiles: (...a) => store.readTiles(...a), stats: () => store.stats(), close: () => store.close(), watermarkMs: async () => staleWatermark };
        const { response, atMs } = await new OnlineFeatureService(compiled.registry, stale, 'watermark').getOnlineFeatures({ features: ['u:latest', 'u:n'], entities: { k: ['a'] } });
        expect(atMs).toBe(106);
        const keyEvents = eventsOfKey(view, referenceEvents(decodeAll(compiled, [...first, ...later])), ['a']);
        expect(response.results[1]!.values).toEqual([referenceFeatureValue(view.features[0]!, keyEvents, atMs)]);
        expect(response.results[1]!.values).toEqual([3]);
        expect(response.results[2]!.values).toEqual([2]);
      } finally {
        await store.close();
      }
    });

    it('long windows read through rollup tiles: any order, batching and redelivery gives the reference values and the in-memory twin\'s exactly, merging at most 32 tiles', async () => {
      // 600 tiles of 1 ms per window: rollup levels of 6, 36 and 216 tiles; float values, so a rollup
      // merged in another order than the twin's would show in the last bits
      const compiled = oneMsView({
        n: { agg: 'count', window: '600ms', hop: '1ms' },
        sum: { agg: 'sum', field: 'x', window: '600ms', hop: '1ms' },
        sd: { agg: 'stddev', field: 'x', window: '300ms', hop: '1ms' },
        lo: { agg: 'min', field: 'x', window: '600ms', hop: '1ms' },
        last_s: { agg: 'last', field: 's', window: '450ms', hop: '1ms' },
        p90: { agg: 'approx_percentile', field: 'x', window: '600ms', hop: '1ms', quantile: 0.9 },
      });
      const view = compiled.registry.views[0]!;
      expect(view.groups[0]!.rollups).toEqual([6, 36, 216]);
      const builder = new TileBatchBuilder(compiled.registry);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ ts: fc.integer({ min: 0, max: 1_500 }), k: fc.constantFrom('a', 'b'), x: fc.oneof(fc.integer({ min: -50, max: 50 }), wideDoubleArb, fc.constant(null)), s: fc.constantFrom('p', 'q', 'r') }), { minLength: 1, maxLength: 300 }),
          fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 8 }),
          fc.integer({ min: 0, max: 1_000 }),
          async (raw, sizes, seed) => {
            const store = await backend.create(compiled.registry);
            const twin = new MemoryOnlineStore(compiled.registry);
            try {
              const decoded = decodeAll(compiled, raw.map((e) => ({ ...e, n: 1 })));
              // shuffled by the seed, cut into the given batch sizes, each batch fenced as one partition's offsets
              const shuffled = decoded.map((e, i) => ({ e, r: (i * 7919 + seed * 104729) % 1_000_003 })).sort((a, b) => a.r - b.r).map((x) => x.e);
              let offset = 0;
              for (const batch of splitIntoBatches(shuffled, sizes)) {
                offset += batch.length;
                await applyFencedTwice(backend, store, twin, builder.build(batch), offset);
              }
              const wm = (await store.watermarkMs())!;
              // every stored tile, rollup levels included, bit-identical to the twin's
              const everything = [1, 6, 36, 216].map((span) => ({ hopMs: 1, span, fromIndex: 0, toIndex: 2_000 }));
              expect(await store.readTiles('u', ['a', 'b'], everything)).toStrictEqual(await twin.readTiles('u', ['a', 'b'], everything));
              const ref = referenceEvents(decoded);
              for (const t of [wm + 1, Math.floor(wm / 216) * 216, 600, 900]) {
                if (t > wm + 1) continue;
                for (const k of ['a', 'b']) {
                  const keyEvents = eventsOfKey(view, ref, [k]);
                  const [tiles] = await store.readTiles('u', [k], tileRangesFor(view, view.features, t, wm));
                  const [twinTiles] = await twin.readTiles('u', [k], tileRangesFor(view, view.features, t, wm));
                  view.features.forEach((f, i) => {
                    expect(tilesPerRead(view, f, t)).toBeLessThanOrEqual(32);
                    const got = answer(view, i, tiles!, t, wm);
                    expect(got).toStrictEqual(answer(view, i, twinTiles!, t, wm));
                    if ('refused' in got) {
                      if (t === wm + 1) expect.fail(`${f.name} key ${k} at ${t}: refused (${got.refused}) at the store clock`);
                      return;
                    }
                    const expected = referenceFeatureValue(f, keyEvents, t);
                    if (!valuesAgree(f.agg, got.value, expected)) expect.fail(`${f.name} key ${k} at ${t}: online ${JSON.stringify(got.value)}, reference ${JSON.stringify(expected)}`);
                  });
                }
              }
            } finally {
              await store.close();
            }
          },
        ),
        { numRuns: 25 },
      );
    });

    it('reads between batches: windows read (and their closed part kept) before late events, trims and redeliveries still answer as the twin and the reference do', async () => {
      // Reads after every batch, at the store clock, at later times, at past tile edges and at the
      // times read before: a store that keeps a key's closed windows (Redis) must drop or refresh
      // them whenever a batch changes a tile they merged, whatever the order the events come in.
      const compiled = compileWith(
        featureView({
          name: 'u',
          source: events,
          entity: user,
          allowedLateness: '40ms',
          features: {
            n: { agg: 'count', window: '600ms', hop: '1ms' },
            sum: { agg: 'sum', field: 'x', window: '300ms', hop: '1ms' },
            sd: { agg: 'stddev', field: 'x', window: '37ms', hop: '1ms' },
            hi: { agg: 'max', field: 'x', window: '600ms', hop: '1ms' },
            first_s: { agg: 'first', field: 's', window: '450ms', hop: '1ms' },
            last_s: { agg: 'last', field: 's', window: '5ms', hop: '1ms' },
            p50: { agg: 'approx_percentile', field: 'x', window: '600ms', hop: '1ms', quantile: 0.5 },
            n10: { agg: 'count', window: '100ms', hop: '10ms' },
            latest: { agg: 'last', field: 'x' },
          },
        }),
      );
      const view = compiled.registry.views[0]!;
      const builder = new TileBatchBuilder(compiled.registry);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ ts: fc.integer({ min: 0, max: 900 }), k: fc.constantFrom('a', 'b', 'c'), x: fc.oneof(fc.integer({ min: -50, max: 50 }), wideDoubleArb, fc.constant(null)), s: fc.constantFrom('p', 'q', 'r') }), { minLength: 1, maxLength: 200 }),
          fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
          fc.integer({ min: 0, max: 1_000 }),
          async (raw, sizes, seed) => {
            const store = await backend.create(compiled.registry);
            const twin = new MemoryOnlineStore(compiled.registry);
            try {
              const decoded = decodeAll(compiled, raw.map((e) => ({ ...e, n: 1 })));
              // mostly in time order with some events held back (late ones), cut into the batch sizes
              const shuffled = decoded.map((e, i) => ({ e, r: e.eventTimeMs + (((i * 7919 + seed * 104729) % 1_000_003) % 5 === 0 ? 300 : 0) })).sort((a, b) => a.r - b.r).map((x) => x.e);
              const readTimes: number[] = [];
              const applied: DecodedEvent[] = [];
              const keys = ['a', 'b', 'c'];
              // every time read so far, against the twin and the reference
              const readAll = async (): Promise<void> => {
                const wm = (await store.watermarkMs())!;
                const ref = referenceEvents(applied);
                for (const t of [...new Set(readTimes)]) {
                  const tiles = await store.readTiles('u', keys, tileRangesFor(view, view.features, t, wm));
                  const twinTiles = twin.readTilesSync('u', keys);
                  keys.forEach((k, j) => {
                    const keyEvents = eventsOfKey(view, ref, [k]);
                    view.features.forEach((f, i) => {
                      const where = `${f.name} key ${k} at ${t} (wm ${wm}, after ${applied.length} events)`;
                      const got = answer(view, i, tiles[j]!, t, wm);
                      expect(got, where).toStrictEqual(answer(view, i, twinTiles[j]!, t, wm));
                      if ('refused' in got) {
                        if (t === wm + 1) expect.fail(`${where}: refused (${got.refused}) at the store clock`);
                        return;
                      }
                      const expected = referenceFeatureValue(f, keyEvents, t);
                      if (!valuesAgree(f.agg, got.value, expected)) expect.fail(`${where}: online ${JSON.stringify(got.value)}, reference ${JSON.stringify(expected)}`);
                    });
                  });
                }
              };
              let offset = 0;
              for (const batch of splitIntoBatches(shuffled, sizes)) {
                offset += batch.length;
                await applyFencedTwice(backend, store, twin, builder.build(batch), offset);
                applied.push(...batch);
                const wm = (await store.watermarkMs())!;
                readTimes.push(wm + 1, wm + 1 + (seed % 13), Math.floor(wm / 10) * 10 - 10 * (seed % 4));
                await readAll();
                // then one more event of a key at an earlier time, alone: the watermark stays, so the
                // heads just read stay too, and the tile it changes lies before them
                const early = applied[(seed + offset) % applied.length]!;
                const again: DecodedEvent = { ...early, eventTimeMs: Math.max(wm - 250, early.eventTimeMs - (seed % 40)), position: { partition: 1, offset } };
                offset += 1;
                await applyFencedTwice(backend, store, twin, builder.build([again]), offset);
                applied.push(again);
                await readAll();
              }
            } finally {
              await store.close();
            }
          },
        ),
        { numRuns: 20 },
      );
    });

    it('rollup tiles equal the in-memory twin\'s bit for bit when batches put many float tiles into one rollup tile, whatever reads built them', async () => {
      // a rollup tile is the tiles under it folded in one order in both stores (rollupChildren): dense
      // batches of floats (stddev's Chan merge and compensated sums show any other order in the last
      // bits). The store reads every rollup tile after each batch (building them), the twin only at
      // the end: a rollup tile a write did not drop would differ.
      const compiled = oneMsView({
        sum: { agg: 'sum', field: 'x', window: '600ms', hop: '1ms' },
        sd: { agg: 'stddev', field: 'x', window: '600ms', hop: '1ms' },
      });
      const builder = new TileBatchBuilder(compiled.registry);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ ts: fc.integer({ min: 0, max: 500 }), x: wideDoubleArb }), { minLength: 50, maxLength: 400 }),
          fc.array(fc.integer({ min: 20, max: 400 }), { minLength: 1, maxLength: 4 }),
          async (raw, sizes) => {
            const store = await backend.create(compiled.registry);
            const twin = new MemoryOnlineStore(compiled.registry);
            try {
              const everything = [1, 6, 36, 216].map((span) => ({ hopMs: 1, span, fromIndex: 0, toIndex: 600 }));
              for (const batch of splitIntoBatches(decodeAll(compiled, raw.map((e) => ({ ...e, k: 'a', s: 'p', n: 1 }))), sizes)) {
                const built = builder.build(batch);
                twin.applySync(structuredClone(built));
                await store.apply(built);
                await store.readTiles('u', ['a'], everything);
              }
              expect(await store.readTiles('u', ['a'], everything)).toStrictEqual(await twin.readTiles('u', ['a'], everything));
            } finally {
              await store.close();
            }
          },
        ),
        { numRuns: 15 },
      );
    });

    it('trims tiles behind the retention horizon and counts late tile events, as the in-memory store does', async () => {
      const compiled = retentionDefinitions();
      const view = compiled.registry.views[0]!;
      expect(view.groups.map((g) => [g.hopMs, g.retentionMs])).toEqual([[5, 20]]); // 10ms window + 5ms hop + 5ms lateness
      const builder = new TileBatchBuilder(compiled.registry);
      const store = await backend.create(compiled.registry);
      const twin = new MemoryOnlineStore(compiled.registry);
      const apply = async (raw: TestEvent[]) => {
        const batch = builder.build(decodeAll(compiled, raw));
        const expected = twin.applySync(structuredClone(batch));
        const got = await store.apply(batch);
        expect({ appliedUpdates: got.appliedUpdates, lateTileEvents: got.lateTileEvents }).toEqual(expected);
        expect(await store.stats()).toEqual(await twin.stats());
        return got;
      };
      try {
        await apply([ev(0), ev(1), ev(6)]); // key a: tiles 0 and 1
        await apply([ev(100)]); // tile 20; horizon of watermark 6 trims nothing
        expect((await store.stats()).tiles).toBe(3);
        // Watermark 100: tiles before index floor((100 - 20) / 5) = 16 are behind the horizon.
        const late = await apply([ev(101), ev(2), ev(102, 'b')]);
        expect(late).toMatchObject({ appliedUpdates: 2, lateTileEvents: 1 });
        // No new tile for a, so its old tiles stay until it gains one.
        expect(await store.stats()).toEqual({ keys: { u: 2 }, tiles: 4, watermarkMs: 102 });
        await apply([ev(106)]); // a gains tile 21: tiles 0 and 1 go
        expect(await store.stats()).toEqual({ keys: { u: 2 }, tiles: 3, watermarkMs: 106 });

        const [a] = await store.readTiles('u', ['a'], [{ hopMs: 5, fromIndex: -1000, toIndex: 1000 }]);
        expect([...a!.get(5)!.keys()].sort((x, y) => x - y)).toEqual([20, 21]);
        const t = 107;
        const [tiles] = await store.readTiles('u', ['a'], tileRangesFor(view, view.features, t, 106));
        expect(evaluateFeature(view, view.features[0]!, tiles!, t, 106).value).toBe(3); // 100, 101, 106; the late 2 never counts
        expect(answer(view, 0, tiles!, 10, 106)).toEqual({ refused: 'TM_READ_BEFORE_RETENTION' });
      } finally {
        await store.close();
      }
    });

    it('keeps a key whose every tile was late (the key exists, its values are empty)', async () => {
      const compiled = retentionDefinitions();
      const builder = new TileBatchBuilder(compiled.registry);
      const store = await backend.create(compiled.registry);
      try {
        await store.apply(builder.build(decodeAll(compiled, [ev(1000)])));
        const result = await store.apply(builder.build(decodeAll(compiled, [ev(0, 'late')])));
        expect(result.lateTileEvents).toBe(1);
        expect(await store.stats()).toEqual({ keys: { u: 2 }, tiles: 1, watermarkMs: 1000 });
        const view = compiled.registry.views[0]!;
        const [tiles] = await store.readTiles('u', ['late'], tileRangesFor(view, view.features, 1001, 1000));
        expect(tiles).not.toBeNull();
        expect(evaluateFeature(view, view.features[0]!, tiles!, 1001, 1000)).toEqual({ value: 0, status: 'PRESENT', eventTimeMs: null });
      } finally {
        await store.close();
      }
    });

    it('last: the tie rule (greater time, then greater value; text by code point, false < true) holds across batches in any order', async () => {
      const compiled = tieDefinitions();
      const view = compiled.registry.views[0]!;
      const texts = ['b', 'a', '\uFFFF', '\u{1F600}', '', 'zz', 'é', '\u{10FFFF}', 'a\u0000'];
      const raw = [
        ...texts.map((s) => ({ ts: 50, k: 'a', s, b: null, x: null })),
        { ts: 50, k: 'a', s: null, b: false, x: 3 },
        { ts: 50, k: 'a', s: null, b: true, x: -0.5 },
        { ts: 49, k: 'a', s: '\u{1F601}', b: true, x: 99 },
      ];
      await fc.assert(
        fc.asyncProperty(fc.shuffledSubarray(raw, { minLength: raw.length, maxLength: raw.length }), async (order) => {
          const store = await backend.create(compiled.registry);
          const twin = new MemoryOnlineStore(compiled.registry);
          const builder = new TileBatchBuilder(compiled.registry);
          try {
            // one event per batch: every comparison happens in the store's merge
            for (const e of order) await applyBoth(store, twin, builder.build(decodeAll(compiled, [e], 'ties')));
            const [tiles] = await store.readTiles('ties', ['a'], tileRangesFor(view, view.features, 51, 50));
            const values = Object.fromEntries(view.features.map((f) => [f.name, evaluateFeature(view, f, tiles!, 51, 50).value]));
            expect(values).toEqual({ last_s: '\u{10FFFF}', last_b: true, last_x: 3, latest_s: '\u{10FFFF}' });
          } finally {
            await store.close();
          }
        }),
        { numRuns: 15 },
      );
    });

    it('fast-check: last over two texts at one time keeps the greater by code point, whichever arrives first', async () => {
      const compiled = tieDefinitions();
      const view = compiled.registry.views[0]!;
      const builder = new TileBatchBuilder(compiled.registry);
      const anyText = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)), maxLength: 6 });
      await fc.assert(
        fc.asyncProperty(anyText, anyText, async (first, second) => {
          const store = await backend.create(compiled.registry);
          const twin = new MemoryOnlineStore(compiled.registry);
          try {
            for (const s of [first, second]) await applyBoth(store, twin, builder.build(decodeAll(compiled, [{ ts: 5, k: 'a', s, b: null, x: null }], 'ties')));
            const [tiles] = await store.readTiles('ties', ['a'], tileRangesFor(view, view.features, 6, 5));
            const winner = compareCodePoints(first, second) >= 0 ? first : second;
            expect(evaluateFeature(view, view.features[0]!, tiles!, 6, 5).value).toBe(winner);
            expect(evaluateFeature(view, view.features[3]!, tiles!, 6, 5).value).toBe(winner);
          } finally {
            await store.close();
          }
        }),
        { numRuns: 100 },
      );
    });

    it('stores any text exactly, lone surrogates and NUL included, in values and in entity keys', async () => {
      const compiled = tieDefinitions();
      const view = compiled.registry.views[0]!;
      const keys = ['\uD800', '\uDC00', '\uFFFD', '\0x', 'x}y{z', '{', '}', '', 'a b\nc'];
      const store = await backend.create(compiled.registry);
      const twin = new MemoryOnlineStore(compiled.registry);
      const builder = new TileBatchBuilder(compiled.registry);
      try {
        const raw = keys.map((k, i) => ({ ts: 10 + i, k, s: `${k}\uD83D|${i}`, b: null, x: null }));
        await applyBoth(store, twin, builder.build(decodeAll(compiled, raw, 'ties')));
        expect((await store.stats()).keys).toEqual({ ties: keys.length });
        const t = 100;
        const ranges = tileRangesFor(view, view.features, t, 18);
        const tiles = await store.readTiles('ties', keys, ranges);
        keys.forEach((k, i) => {
          expect(evaluateFeature(view, view.features[0]!, tiles[i]!, t, 18).value, JSON.stringify(k)).toBe(`${k}\uD83D|${i}`);
        });
      } finally {
        await store.close();
      }
    });

    it(`fences: a redelivered key update (same source, partition and offset or older) is ${backend.fences === 'honoured' ? 'skipped whole' : 'applied again (this store ignores fences)'}`, async () => {
      const compiled = retentionDefinitions();
      const view = compiled.registry.views[0]!;
      const builder = new TileBatchBuilder(compiled.registry);
      const store = await backend.create(compiled.registry);
      const fenced = (raw: TestEvent[], partition: number, offset: number): TileBatch => {
        const batch = builder.build(decodeAll(compiled, raw));
        return { ...batch, keys: batch.keys.map((k) => ({ ...k, fence: { source: 'ev', partition, offset } })) };
      };
      const count = async (key: string): Promise<Scalar> => {
        const [tiles] = await store.readTiles('u', [key], tileRangesFor(view, view.features, 10, 9));
        return evaluateFeature(view, view.features[0]!, tiles ?? null, 10, 9).value;
      };
      try {
        const first = fenced([ev(1), ev(2), ev(3, 'b')], 0, 10);
        await store.apply(first);
        expect([await count('a'), await count('b')]).toEqual([2, 1]);
        const again = await store.apply(first); // redelivery of the same records
        const older = await store.apply(fenced([ev(4)], 0, 9)); // an older offset of the same partition
        const otherPartition = await store.apply(fenced([ev(5)], 1, 3)); // other partition: its own fence
        const newer = await store.apply(fenced([ev(6), ev(7, 'b')], 0, 11));
        if (backend.fences === 'honoured') {
          expect(again).toMatchObject({ appliedUpdates: 0, fencedKeys: 2 });
          expect(older).toMatchObject({ appliedUpdates: 0, fencedKeys: 1 });
          expect(otherPartition).toMatchObject({ appliedUpdates: 1, fencedKeys: 0 });
          expect(newer).toMatchObject({ appliedUpdates: 2, fencedKeys: 0 });
          expect([await count('a'), await count('b')]).toEqual([4, 2]); // 1, 2, 5, 6 and 3, 7
        } else {
          expect(again.appliedUpdates).toBe(2);
          expect([await count('a'), await count('b')]).toEqual([7, 3]);
        }
        // the watermark still advances (it is a maximum, so redelivery cannot move it twice)
        expect(await store.watermarkMs()).toBe(7);
      } finally {
        await store.close();
      }
    });

    it('a read with its watermark (readWithWatermark) gives the watermark and tiles of the store at one instant, also when the watermark crossed a tile edge since the last read', async () => {
      const compiled = compileWith(
        featureView({ name: 'u', source: events, entity: user, features: { n: { agg: 'count', window: '1h', hop: '10m' }, s: { agg: 'sum', field: 'x', window: '1d' }, last: { agg: 'last', field: 's' } } }),
      );
      const view = compiled.registry.views[0]!;
      const builder = new TileBatchBuilder(compiled.registry);
      const store = await backend.create(compiled.registry);
      const twin = new MemoryOnlineStore(compiled.registry);
      const keys = ['a', 'b', 'c', 'never'];
      const rangesAt = (wm: number | null): TileRange[] => tileRangesFor(view, view.features, storeClockMs('watermark', wm), wm);
      try {
        // each step moves the watermark: within a tile, across a 10-minute edge, across an hour and a day
        for (const [i, ts] of [60_000, 61_000, 700_000, 3_700_000, 90_000_000, 90_000_500].entries()) {
          const raw: TestEvent[] = ['a', 'b', 'c'].slice(0, 1 + (i % 3)).map((k, j) => ({ ts: ts - j, k, n: 1, x: i + j / 4, s: `${k}${i}` }));
          await applyBoth(store, twin, builder.build(decodeAll(compiled, raw)));
          const read = await readWithWatermark(store, 'u', keys, rangesAt);
          expect(read.watermarkMs).toBe(ts);
          const t = storeClockMs('watermark', read.watermarkMs);
          const expected = twin.readTilesSync('u', keys);
          keys.forEach((key, k) => expect(evaluateFeatures(view, view.features, read.tiles[k]!, t, ts), `${key} after step ${i}`).toEqual(evaluateFeatures(view, view.features, expected[k]!, t, ts)));
          expect(read.tiles[3]).toBeNull();
        }
      } finally {
        await store.close();
      }
    });

    it(`reads many entity keys in one call${backend.roundTrips ? ' and one network round trip per connection' : ''}`, async () => {
      const compiled = compileWith(
        featureView({ name: 'u', source: events, entity: user, features: { n: { agg: 'count', window: '1h' }, s: { agg: 'sum', field: 'x', window: '1d' }, last: { agg: 'last', field: 's' } } }),
      );
      const view = compiled.registry.views[0]!;
      const raw: TestEvent[] = [];
      for (let k = 0; k < 200; k++) for (let i = 0; i <= k % 5; i++) raw.push({ ts: 3_600_000 * i + k * 1000, k: `key${k}`, n: 1, x: k + i / 10, s: `s${k}.${i}` });
      const builder = new TileBatchBuilder(compiled.registry);
      const store = await backend.create(compiled.registry);
      const twin = new MemoryOnlineStore(compiled.registry);
      try {
        for (const batch of splitIntoBatches(decodeAll(compiled, raw), [97])) await applyBoth(store, twin, builder.build(batch));
        const wm = (await store.watermarkMs())!;
        const keys = [...Array.from({ length: 200 }, (_, k) => `key${k}`), 'missing1', 'missing2'];
        for (const t of [wm + 1, 3_600_000 * 2]) {
          const ranges = tileRangesFor(view, view.features, t, wm);
          let tiles: Awaited<ReturnType<OnlineStore['readTiles']>> = [];
          const read = async (): Promise<void> => {
            tiles = await store.readTiles('u', keys, ranges);
          };
          if (backend.roundTrips) expect(await backend.roundTrips(store, read)).toBe(1);
          else await read();
          expect(tiles).toHaveLength(keys.length);
          expect(tiles.slice(-2)).toEqual([null, null]);
          const twinTiles = twin.readTilesSync('u', keys);
          keys.forEach((key, i) => expect(evaluateFeatures(view, view.features, tiles[i]!, t, wm), key).toEqual(evaluateFeatures(view, view.features, twinTiles[i]!, t, wm)));
        }
      } finally {
        await store.close();
      }
    });
  });
}
