// approx_percentile: the value at a quantile q named by the feature, from a mergeable log-linear
// histogram. Buckets come from the IEEE-754 bits alone (no logarithm, so every language cuts them
// identically): a normal |x| falls in bucket (biased exponent e, top 6 mantissa bits j), the range
// [2^E (1 + j/64), 2^E (1 + (j+1)/64)), whose representative is its midpoint 2^E (1 + (2j+1)/128),
// built from bits too; relative error at most 2^-7. The signed index is monotone in the value:
// 1 + (e*64 + j) for positives, its negation for negatives, 0 for zeros and subnormals (value 0).
// Slots: none numeric; one value slot holding bucket index -> count (null while empty), merged by
// adding counts (integers, exact everywhere). Final value: the representative of the bucket holding
// the value of rank r = max(0, ceil(q*n) - 1) (0-based, nearest rank); null over none.
import type { BucketCounts } from '../aggregates.js';
import type { AggregationParams, AggregationSpec } from './spec.js';

// One double's bits as two 32-bit words; HIGH is the word holding sign, exponent and the top 20
// mantissa bits on this platform's byte order.
const double = new Float64Array(1);
const words = new Uint32Array(double.buffer);
const HIGH = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/** The bucket index of a finite number (see the file header). */
export function bucketOf(x: number): number {
  double[0] = x;
  const high = words[HIGH]!;
  const exponent = (high >>> 20) & 0x7ff;
  if (exponent === 0) return 0;
  // event fields are validated finite numbers, so this is a bug, never data
  if (exponent === 0x7ff) throw new Error(`approx_percentile: ${x} has no bucket (not finite)`);
  // e*64 + j: the 11 exponent bits and the top 6 mantissa bits, in that order
  const index = 1 + ((high >>> 14) & 0x1ffff);
  return high >>> 31 === 1 ? -index : index;
}

/** The representative value of a bucket: its midpoint, exactly (0 for bucket 0). */
export function bucketValue(bucket: number): number {
  if (bucket === 0) return 0;
  // e*64 + j in the top bits, then the mantissa bit worth 2^-7 (the half bucket), nothing below
  words[HIGH] = ((Math.abs(bucket) - 1) << 14) | 0x2000;
  words[1 - HIGH] = 0;
  return bucket < 0 ? -double[0]! : double[0]!;
}

/** The 0-based rank of the value at quantile q among n values (nearest rank), in doubles as every path computes it. */
export function quantileRank(q: number, n: number): number {
  return Math.max(0, Math.ceil(q * n) - 1);
}

function quantileOf(params: AggregationParams): number {
  if (params.quantile === undefined) throw new Error('approx_percentile: the feature names no quantile');
  return params.quantile;
}

/** The SQL bucket index (Int32) of a non-null Float64 expression, from the same bits. */
function sqlBucketOf(x: string): string {
  const bits = `reinterpretAsUInt64(${x})`;
  return `toInt32(if(bitAnd(bitShiftRight(${bits}, 52), 2047) = 0, 0, if(bitShiftRight(${bits}, 63) = 1, -1, 1) * (1 + bitAnd(bitShiftRight(${bits}, 46), 131071))))`;
}

/** The SQL representative of an Int32 bucket index expression (bound once by arrayMap, as SQL has no let). */
function sqlBucketValue(bucket: string): string {
  const magnitude = (k: string): string => `reinterpretAsFloat64(bitOr(bitShiftLeft(toUInt64(${k} - 1), 46), bitShiftLeft(toUInt64(1), 45)))`;
  return `arrayElement(arrayMap(k -> multiIf(k = 0, 0., k > 0, ${magnitude('k')}, -${magnitude('-k')}), [${bucket}]), 1)`;
}

/** SQL of the final value of a Map(Int32, UInt64) of bucket counts: the rank rule, null for an empty map. */
function sqlPercentileOf(counts: string, q: number): string {
  const rank = `greatest(0., ceil(toFloat64(${q}) * toFloat64(arraySum(mapValues(m)))) - 1.)`;
  const cumulative = `arrayCumSum(arraySort((c, k) -> k, mapValues(m), mapKeys(m)))`;
  const bucket = `arrayElement(arraySort(mapKeys(m)), arrayFirstIndex(c -> toFloat64(c) > ${rank}, ${cumulative}))`;
  return `arrayElement(arrayMap(m -> if(empty(m), NULL, ${sqlBucketValue(bucket)}), [${counts}]), 1)`;
}

export const approxPercentile: AggregationSpec = {
  name: 'approx_percentile',
  width: 0,
  valueWidth: 1,
  field: 'numeric',
  tolerance: 0,
  quantile: true,
  init(_nums, _at, vals, valAt) {
    vals[valAt] = null;
  },
  add(_nums, _at, vals, valAt, value) {
    const bucket = bucketOf(value as number);
    const counts = vals[valAt] as BucketCounts | null;
    if (counts === null) vals[valAt] = new Map([[bucket, 1]]);
    else counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  },
  merge(_intoNums, _intoAt, intoVals, intoValAt, _fromNums, _fromAt, fromVals, fromValAt) {
    const from = fromVals[fromValAt] as BucketCounts | null;
    if (from === null) return;
    const into = intoVals[intoValAt] as BucketCounts | null;
    // a copy: `from` stays another tile's state, which later merges into `into` must not change
    if (into === null) intoVals[intoValAt] = new Map(from);
    else for (const [bucket, count] of from) into.set(bucket, (into.get(bucket) ?? 0) + count);
  },
  finalize(_nums, _at, vals, valAt, params) {
    const counts = vals[valAt] as BucketCounts | null;
    if (counts === null) return null;
    let n = 0;
    for (const count of counts.values()) n += count;
    const rank = quantileRank(quantileOf(params), n);
    let cumulative = 0;
    for (const bucket of [...counts.keys()].sort((a, b) => a - b)) {
      cumulative += counts.get(bucket)!;
      if (cumulative > rank) return bucketValue(bucket);
    }
    throw new Error(`approx_percentile: rank ${rank} beyond ${n} values`);
  },
  lua: {
    code: 'p',
    // mergeBucketCounts (online/redis.ts) adds packed counts into canonical packed counts
    merge: `av[vo] = mergeBucketCounts(av[vo], bv[vo])`,
  },
  sql: {
    // per (key, instant) and combined across tiles and frames: a Map(Int32, UInt64) of counts
    parts: [{ suffix: 'b', perTs: (x) => `sumMapIf(map(${sqlBucketOf(`assumeNotNull(${x})`)}, toUInt64(1)), isNotNull(${x}))`, combine: 'sumMap' }],
    centered: false,
    final: (part, params) => sqlPercentileOf(part('b'), quantileOf(params)),
    merge: (a, b) => `tuple(mapAdd(tupleElement(${a}, 1), tupleElement(${b}, 1)))`,
  },
};
