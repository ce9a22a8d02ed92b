// The `first` aggregation on every path but Redis (which the shared store suite covers through the
// feature arbitraries): compile rules (a window and an ordered field), and the in-memory store,
// the point-in-time dataset (an ASOF join from the window start tail(t) = floor(t/H)*H - W) and
// the reference agreeing exactly on events with many equal times (the tie rule: the smallest value;
// text by code point, astral characters included; false < true), at tile edges and event instants.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compile, compileOrThrow, entity, eventTime, featureView, referenceViewValues, source, type ReferenceEvent } from '../../definitions/index.js';
import { evaluateFeatures } from '../../online/index.js';
import { decodeAll, materialize } from '../definitions/support.js';
import { offlineStoreWith } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';

const T0 = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000);
const thing = entity({ name: 'thing', joinKeys: ['k'] });
const readings = source({
  name: 'readings',
  topic: 'readings',
  schema: z.object({ ts: eventTime(), k: z.string(), x: z.number().nullable(), s: z.string().nullable(), b: z.boolean().nullable(), tags: z.array(z.string()) }),
  eventTimeField: 'ts',
});
const view = featureView({
  name: 'r',
  source: readings,
  entity: thing,
  features: {
    first_x: { agg: 'first', field: 'x', window: '10s', hop: '2s' },
    first_s: { agg: 'first', field: 's', window: '4s', hop: '1s' },
    first_b: { agg: 'first', field: 'b', window: '6s', hop: '3s' },
    last_s: { agg: 'last', field: 's', window: '4s', hop: '1s' },
  },
});
const compiled = compileOrThrow([view]);
const plan = compiled.registry.views[0]!;

describe('first: compile rules', () => {
  it('needs a window and a field with an order', () => {
    const result = compile([
      featureView({
        name: 'bad',
        source: readings,
        entity: thing,
        features: {
          no_window: { agg: 'first', field: 'x' } as never,
          unordered: { agg: 'first', field: 'tags', window: '1h' },
          no_field: { agg: 'first', window: '1h' } as never,
        },
      }),
    ]);
    expect(result.ok).toBe(false);
    const errors = result.ok ? [] : result.errors.map((e) => [e.code, e.feature]);
    expect(errors).toEqual(
      expect.arrayContaining([
        ['TM_DEF_BAD_FEATURE', 'no_window'],
        ['TM_DEF_UNORDERED_FIELD', 'unordered'],
        ['TM_DEF_BAD_FEATURE', 'no_field'],
      ]),
    );
  });

  it('keeps its value slot beside last in the tile plan', () => {
    const f = plan.features.find((x) => x.name === 'first_s')!;
    const l = plan.features.find((x) => x.name === 'last_s')!;
    expect([f.valueSlot, l.valueSlot].sort()).toEqual([0, 1]);
    expect(plan.groups.find((g) => g.hopMs === 1000)).toMatchObject({ width: 2, valueWidth: 2 });
  });
});

// Few instants (every 250 ms over 20 s) and few values, so equal times with different values abound.
const random = mulberry32(7);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const TEXTS = ['a', 'b', '', '😀', '\uffff', '𝔸', 'é', null];
const rows: Record<string, unknown>[] = Array.from({ length: 600 }, () => ({
  ts: T0 + 250 * Math.floor(random() * 80),
  k: pick(['p', 'q', 'r']),
  x: pick([3, -1, 0, -0, 2.5, 1e-9, null]),
  s: pick(TEXTS),
  b: pick([true, false, null]),
  tags: [],
}));
const events: ReferenceEvent[] = rows.map((r) => ({ eventTimeMs: r.ts as number, fields: r }));

const offlineStore = offlineStoreWith(compiled, 'readings', rows);

describe('first: memory store, offline dataset and reference agree', () => {
  // every 125 ms from before the first event to after the last window: tile edges, event instants and between
  const spine: { k: string; ts: number }[] = [];
  for (const k of ['p', 'q', 'r', 'none']) for (let t = T0 - 1000; t <= T0 + 32_000; t += 125) spine.push({ k, ts: t });

  it('equal values at every spine row, null where the window holds no value', async () => {
    const offline = await offlineStore.dataset(spine, plan.features.map((f) => `r:${f.name}`));
    expect(offline).toHaveLength(spine.length);
    // arrival order must not matter: materialize the events reversed
    const memory = materialize(compiled, [decodeAll(compiled, [...rows].reverse(), 'readings')]);
    const watermark = Math.max(...rows.map((r) => r.ts as number));
    const mismatches: string[] = [];
    let present = 0;
    let tiesBroken = 0;
    let onlineRead = 0;
    spine.forEach((s, i) => {
      const reference = referenceViewValues(plan, events, [s.k], s.ts);
      const [tiles] = memory.readTilesSync('r', [s.k]);
      plan.features.forEach((f) => {
        const expected = reference[f.name] ?? null;
        // the online store reads only where no tile is cut: at its tile edges, or past every event
        const readable = s.ts % f.hopMs === 0 || s.ts > watermark;
        const online = readable ? evaluateFeatures(plan, [f], tiles ?? null, s.ts, watermark)[0]!.value : expected;
        if (readable && f.agg === 'first') onlineRead++;
        const got = [online, offline[i]![`r__${f.name}`] ?? null];
        if (!got.every((g) => g === expected)) mismatches.push(`${s.k} at ${s.ts - T0} ${f.name}: memory ${JSON.stringify(got[0])}, offline ${JSON.stringify(got[1])}, reference ${JSON.stringify(expected)}`);
        if (f.agg === 'first' && expected !== null) present++;
      });
      // a window whose earliest instant holds several values: the tie rule decided
      const f = plan.features.find((x) => x.name === 'first_s')!;
      const start = Math.floor(s.ts / f.hopMs) * f.hopMs - f.windowMs!;
      const inWindow = rows.filter((r) => r.k === s.k && r.s !== null && (r.ts as number) >= start && (r.ts as number) < s.ts);
      const earliest = Math.min(...inWindow.map((r) => r.ts as number));
      if (new Set(inWindow.filter((r) => r.ts === earliest).map((r) => r.s)).size > 1) tiesBroken++;
    });
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(present).toBeGreaterThan(500);
    expect(tiesBroken).toBeGreaterThan(50);
    expect(onlineRead).toBeGreaterThan(300);
  });
});
