// The central property: decode -> tile batches -> MemoryOnlineStore -> evaluateFeature equals the reference, whatever the order and batching.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalKeyValue,
  entityKeyId,
  eventsOfKey,
  featureView,
  referenceFeatureValue,
  referenceViewValues,
  TidemarkError,
  valuesAgree,
  type CompiledDefinitions,
  type Duration,
  type ReferenceEvent,
  type Scalar,
  type ViewPlan,
} from '../../definitions/index.js';
import type { DecodedEvent } from '../../ingest/decode.js';
import type { MemoryOnlineStore } from '../../online/memory.js';
import { evaluateFeature } from '../../online/read.js';
import { storeClockMs } from '../../online/store.js';
import {
  compileWith,
  decodeAll,
  events,
  materialize,
  pair,
  referenceEvents,
  splitIntoBatches,
  user,
  type TestEvent,
} from './support.js';
import { pairFeatures, userFeatures, type Spec } from '../support/feature-arbitraries.js';

/** Times near 0 (both signs) with many exact repeats; sometimes sent as ISO text. */
const eventArb: fc.Arbitrary<TestEvent> = fc
  .record({
    ts: fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: -150, max: 150 }) },
      { weight: 2, arbitrary: fc.constantFrom(-100, -50, -25, -20, -10, -1, 0, 1, 10, 20, 25, 50, 100) },
    ),
    iso: fc.boolean(),
    k: fc.constantFrom('a', 'b', 'c'),
    n: fc.constantFrom(0, -0, 1, 2.5),
    x: fc.option(fc.integer({ min: -5, max: 5 }), { nil: null, freq: 4 }),
    s: fc.option(fc.constantFrom('', 'a', 'ab', 'b', 'zz', '\uFFFF', '\u{1F600}'), { nil: null, freq: 4 }),
  })
  .map(({ ts, iso, ...rest }) => ({ ...rest, ts: iso ? new Date(ts).toISOString() : ts }));

interface Scenario {
  raw: TestEvent[];
  /** Delivery order: a permutation of indexes into `raw`. */
  order: number[];
  batchSizes: number[];
  userFeatures: Record<string, Spec>;
  pairFeatures: Record<string, Spec>;
  /** Extra query times before the watermark. */
  probes: number[];
  /** Indexes of records the reference sees redelivered. */
  redeliver: number[];
}

const scenarioArb = (maxEvents: number): fc.Arbitrary<Scenario> =>
  fc.array(eventArb, { maxLength: maxEvents }).chain((raw) => {
    const indexes = raw.map((_, i) => i);
    return fc.record({
      raw: fc.constant(raw),
      order: fc.shuffledSubarray(indexes, { minLength: raw.length, maxLength: raw.length }),
      batchSizes: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 8 }),
      userFeatures,
      pairFeatures,
      probes: fc.array(fc.integer({ min: -170, max: 160 }), { maxLength: 12 }),
      redeliver: raw.length === 0 ? fc.constant([]) : fc.array(fc.integer({ min: 0, max: raw.length - 1 }), { maxLength: 10 }),
    });
  });

function compileScenario(s: Scenario, allowedLateness: Duration): CompiledDefinitions {
  return compileWith(
    featureView({ name: 'u', source: events, entity: user, features: s.userFeatures, allowedLateness }),
    featureView({ name: 'p', source: events, entity: pair, features: s.pairFeatures, allowedLateness }),
  );
}

/** Every key of a view seen in the events, plus one never seen. */
function keysOf(view: ViewPlan, decoded: readonly DecodedEvent[]): string[][] {
  const ids = new Map<string, string[]>();
  for (const e of decoded) {
    const values = view.keyFields.map((f) => canonicalKeyValue(e.fields[f])!);
    ids.set(entityKeyId(values), values);
  }
  const absent = view.keyFields.map((_, i) => (i === 0 ? 'nobody' : '999'));
  return [...ids.values(), absent];
}

/** Query times after the watermark: the store clock, a few later times and the tile edges after it. */
function timesAfter(view: ViewPlan, t0: number): number[] {
  const times = new Set([t0, t0 + 1, t0 + 3, t0 + 7, t0 + 151, t0 + 1000]);
  for (const f of view.features) {
    const edge = Math.ceil(t0 / f.hopMs) * f.hopMs;
    for (const t of [edge - 1, edge, edge + 1, edge + f.hopMs, edge + (f.windowMs ?? 0), edge + (f.windowMs ?? 0) + f.hopMs - 1]) if (t >= t0) times.add(t);
  }
  return [...times];
}

/** Query times before (or at) the watermark: tile edges, event instants and random probes. */
function timesBefore(decoded: readonly DecodedEvent[], wm: number, probes: readonly number[]): number[] {
  const times = new Set<number>();
  const minTs = Math.min(...decoded.map((e) => e.eventTimeMs));
  for (let t = Math.floor((minTs - 25) / 25) * 25; t <= wm; t += 25) times.add(t);
  for (const e of decoded.slice(0, 8)) {
    times.add(e.eventTimeMs);
    times.add(e.eventTimeMs + 1);
  }
  for (const p of probes) times.add(p);
  return [...times].filter((t) => t <= wm);
}

const READ_REFUSALS = new Set(['TM_READ_INSIDE_OPEN_TILE', 'TM_READ_BEFORE_RETENTION']);

/**
 * Compare every feature of every key at every time. After the watermark the store must answer;
 * before it, it may refuse with a coded error, but never answer wrongly.
 */
function checkView(
  store: MemoryOnlineStore,
  view: ViewPlan,
  ref: readonly ReferenceEvent[],
  keys: readonly string[][],
  times: readonly number[],
  wm: number | null,
  mustAnswer: (t: number, hopMs: number) => boolean,
): { answered: number; refused: number } {
  let answered = 0;
  let refused = 0;
  for (const keyValues of keys) {
    const keyEvents = eventsOfKey(view, ref, keyValues);
    const [tiles] = store.readTilesSync(view.name, [entityKeyId(keyValues)]);
    for (const t of times) {
      for (const f of view.features) {
        const expected = referenceFeatureValue(f, keyEvents, t);
        let actual: Scalar;
        try {
          actual = evaluateFeature(view, f, tiles ?? null, t, wm).value;
        } catch (e) {
          const where = `${view.name}:${f.name} key ${JSON.stringify(keyValues)} at t=${t} (wm ${wm})`;
          if (!(e instanceof TidemarkError) || !READ_REFUSALS.has(e.code) || mustAnswer(t, f.hopMs)) {
            throw new Error(`${where}: unexpected ${e instanceof TidemarkError ? e.code : String(e)}`, { cause: e });
          }
          refused++;
          continue;
        }
        if (!valuesAgree(f.agg, actual, expected)) {
          expect.fail(`${view.name}:${f.name} key ${JSON.stringify(keyValues)} at t=${t} (wm ${wm}): online ${JSON.stringify(actual)}, reference ${JSON.stringify(expected)}`);
        }
        answered++;
      }
    }
  }
  return { answered, refused };
}

async function runScenario(s: Scenario, allowedLateness: Duration, strictEdges: boolean): Promise<void> {
  const compiled = compileScenario(s, allowedLateness);
  const decoded = decodeAll(compiled, s.raw);
  const ref = referenceEvents(decoded);
  const delivered = s.order.map((i) => decoded[i]!);
  const store = materialize(compiled, splitIntoBatches(delivered, s.batchSizes));

  const wm = decoded.length === 0 ? null : Math.max(...decoded.map((e) => e.eventTimeMs));
  expect(await store.watermarkMs()).toBe(wm);
  const t0 = storeClockMs('watermark', wm, 0);
  if (wm !== null) expect(t0).toBe(wm + 1);

  for (const view of compiled.registry.views) {
    const keys = keysOf(view, decoded);
    // At and after the store clock every tile is whole: the store must answer, and agree.
    checkView(store, view, ref, keys, timesAfter(view, t0), wm, () => true);
    // Before the watermark: agree or refuse; at an edge of the feature's tiles, with every tile
    // still retained, a refusal is a bug.
    if (wm !== null) {
      checkView(store, view, ref, keys, timesBefore(decoded, wm, s.probes), wm, (t, hopMs) => strictEdges && t % hopMs === 0);
    }
  }
}

describe('memory store vs reference (fast-check)', () => {
  it('agrees at and after the watermark, and before it agrees or refuses, for any delivery order and batching', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(60), (s) => runScenario(s, '1d', true)),
      { numRuns: 120 },
    );
  });

  it('with a short allowed lateness, dropped late tiles never make a value wrong', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb(50), fc.constantFrom<Duration>('1ms', '5ms', '20ms', '60ms'), (s, lateness) => runScenario(s, lateness, false)),
      { numRuns: 80 },
    );
  });

  it('the reference ignores redelivered records (same recordId) and delivery order', () => {
    fc.assert(
      fc.property(scenarioArb(40), (s) => {
        const compiled = compileScenario(s, '1d');
        const ref = referenceEvents(decodeAll(compiled, s.raw));
        const replayed = [...s.order.map((i) => ref[i]!), ...s.redeliver.map((i) => ({ ...ref[i]!, fields: { ...ref[i]!.fields } }))];
        for (const view of compiled.registry.views) {
          const decodedKeys = keysOf(view, decodeAll(compiled, s.raw));
          for (const keyValues of decodedKeys) {
            for (const t of [-120, -25, 0, 1, 33, 151]) {
              const once = referenceViewValues(view, ref, keyValues, t);
              const again = referenceViewValues(view, replayed, keyValues, t);
              // exact except for float rounding of var/stddev, which depends on summation order
              for (const f of view.features) expect(valuesAgree(f.agg, again[f.name]!, once[f.name]!), `${f.name} at ${t}`).toBe(true);
            }
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
