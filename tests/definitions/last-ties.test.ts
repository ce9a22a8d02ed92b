// `last` ties on values that are neither all numbers nor all text: the result must not depend on arrival order (central property).
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  compile,
  entity,
  eventTime,
  featureView,
  referenceViewValues,
  source,
  type CompiledDefinitions,
  type Scalar,
} from '../../definitions/index.js';
import { evaluateFeature } from '../../online/read.js';
import { decodeAll, materialize } from './support.js';

const thing = entity({ name: 'thing', joinKeys: ['k'] });
const things = source({
  name: 'things',
  topic: 'things',
  schema: z.object({ ts: eventTime(), k: z.string(), mixed: z.union([z.number(), z.string()]), tags: z.array(z.string()), flag: z.boolean() }),
  eventTimeField: 'ts',
});

/** Compile a view with one `last` feature over `field`, or null when the compiler rejects it. */
function compileLast(field: 'mixed' | 'tags' | 'flag'): CompiledDefinitions | null {
  const result = compile([
    featureView({ name: 'v', source: things, entity: thing, features: { latest: { agg: 'last', field }, windowed: { agg: 'last', field, window: '1h' } } }),
  ]);
  return result.ok ? result.compiled : null;
}

/** Reference and online values at t = 11 of events delivered in the given order. */
function valuesInOrder(compiled: CompiledDefinitions, raw: readonly Record<string, unknown>[]): { reference: Record<string, Scalar>; online: Record<string, Scalar> } {
  const view = compiled.registry.views[0]!;
  const reference = referenceViewValues(view, raw.map((fields, i) => ({ eventTimeMs: fields['ts'] as number, fields, recordId: `r${i}` })), ['a'], 11);
  const store = materialize(compiled, [decodeAll(compiled, raw, 'things')]);
  const [tiles] = store.readTilesSync('v', ['a']);
  const online = Object.fromEntries(view.features.map((f) => [f.name, evaluateFeature(view, f, tiles ?? null, 11, 10).value]));
  return { reference, online };
}

const A = { ts: 10, k: 'a', mixed: 5, tags: ['x'], flag: false };
const B = { ts: 10, k: 'a', mixed: 'b', tags: ['y'], flag: true };

describe('last: equal timestamps on non-number, non-text values', () => {
  it('booleans: true beats false in both paths, in either order', () => {
    const compiled = compileLast('flag')!;
    for (const order of [[A, B], [B, A]]) {
      const { reference, online } = valuesInOrder(compiled, order);
      expect(reference).toEqual({ latest: true, windowed: true });
      expect(online).toEqual(reference);
    }
  });

  // Values of a mixed union or an array have no order for the tie rule, so on equal times the
  // result would depend on arrival order: the compiler refuses them.
  for (const field of ['mixed', 'tags'] as const) {
    it(`last over ${field === 'mixed' ? 'a number/string union' : 'an array'} is a definition error`, () => {
      expect(compileLast(field)).toBeNull();
      const result = compile([featureView({ name: 'v', source: things, entity: thing, features: { latest: { agg: 'last', field } } })]);
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.errors).toHaveLength(1);
        expect(result.errors[0]).toMatchObject({ code: 'TM_DEF_UNORDERED_FIELD', definition: 'featureView v', feature: 'latest' });
        expect(result.errors[0]!.hint).toContain('k, flag');
      }
    });
  }
});
