// Values on and around approx_percentile's bucket edges 2^E (1 + j/64), built here from arithmetic
// (exact: 1 + j/64 has 7 significant bits) rather than from the bits the spec reads, for the tests
// that check every path cuts buckets at the same place.
import fc from 'fast-check';

/** The edge 2^E (1 + j/64) that opens bucket (E, j), E from -1022 to 1023, j from 0 to 63. */
export function bucketEdge(E: number, j: number): number {
  return 2 ** E * (1 + j / 64);
}

/** The greatest double below x (x finite, not the most negative double). */
export function nextDown(x: number): number {
  if (x === 0) return -Number.MIN_VALUE;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  // one unit in the last place toward -infinity: down in magnitude for a positive, up for a negative
  view.setBigUint64(0, x > 0 ? bits - 1n : bits + 1n);
  return view.getFloat64(0);
}

/** Doubles of note: zeros, subnormals, the smallest normals, the largest double. */
export const SPECIAL_VALUES: readonly number[] = [0, -0, Number.MIN_VALUE, -Number.MIN_VALUE, nextDown(2 ** -1022), 2 ** -1022, -(2 ** -1022), Number.MAX_VALUE, -Number.MAX_VALUE, 1, -1, 0.1, 1e-300, 1e300];

/** A bucket edge (a power of two when j is 0) or the double just below it in magnitude, of either sign. */
export const edgeValue: fc.Arbitrary<number> = fc
  .record({ E: fc.oneof(fc.integer({ min: -1022, max: 1023 }), fc.integer({ min: -8, max: 8 })), j: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 63 })), below: fc.boolean(), negative: fc.boolean() })
  .map(({ E, j, below, negative }) => {
    const magnitude = below ? nextDown(bucketEdge(E, j)) : bucketEdge(E, j);
    return negative ? -magnitude : magnitude;
  });

/** Values for approx_percentile tests: edges and just below, doubles of note, any finite double, small integers. */
export const percentileValue: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: edgeValue },
  { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_VALUES) },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.integer({ min: -5, max: 5 }) },
);
