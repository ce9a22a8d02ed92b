// Neumaier's compensated sum, in the three languages the tiles are merged in (TypeScript, Redis
// Lua, ClickHouse SQL), with the same operations in the same order so they agree bit for bit.
// A plain double sum depends on the order of its terms when they cancel (-2 + 2 + 1e-9), and the
// contract allows 1e-9 relative; the rounding error of each addition is kept exactly and added
// back at the end.

/** Add (value, valueCompensation) into the compensated sum at nums[at], nums[at + 1]. */
export function addCompensated(nums: number[], at: number, value: number, valueCompensation: number): void {
  const sum = nums[at]!;
  const t = sum + value;
  const error = Math.abs(sum) >= Math.abs(value) ? sum - t + value : value - t + sum;
  nums[at] = t;
  nums[at + 1] = nums[at + 1]! + valueCompensation + error;
}

/** Lua of addCompensated, at an[o], an[o + 1] (shared by the generated mergeSlot). */
export const LUA_ADD_COMPENSATED = `
local function addCompensated(an, o, value, valueCompensation)
  local sum = an[o]
  local t = sum + value
  local err
  if math.abs(sum) >= math.abs(value) then err = sum - t + value else err = value - t + sum end
  an[o] = t
  an[o + 1] = an[o + 1] + valueCompensation + err
end
`;

/**
 * SQL of addCompensated on (sum, compensation) expressions: a tuple (sum', compensation').
 * Parenthesised as the TypeScript evaluates, left to right.
 */
export function sqlAddCompensated(sum: string, compensation: string, value: string, valueCompensation: string): string {
  const t = `(${sum} + ${value})`;
  const error = `if(abs(${sum}) >= abs(${value}), ((${sum} - ${t}) + ${value}), ((${value} - ${t}) + ${sum}))`;
  return `tuple(${t}, ((${compensation} + ${valueCompensation}) + ${error}))`;
}

/** The lambda `(a, b) -> a + b` on (sum, compensation) tuples, for arrayFold. */
const SQL_COMPENSATED_FOLD = `(a, b) -> ${sqlAddCompensated('a.1', 'a.2', 'b.1', 'b.2')}`;

/** The compensated sum of an array of (sum, compensation) tuples, folded in array order from (0, 0). */
function sqlCompensatedFoldOfPairs(pairs: string): string {
  return `arrayFold(${SQL_COMPENSATED_FOLD}, ${pairs}, tuple(0., 0.))`;
}

/**
 * The compensated sum of an array of doubles as a (sum, compensation) tuple: exactly the fold of
 * addCompensated from (0, 0) in array order, but with whole-array functions instead of an arrayFold
 * lambda per step (in chDB, 0.2 CPU s against 1.5 for 30 million values in arrays of 168). The
 * fold's sums are the running sums from +0 (arrayCumSum adds in Float64, one element after the
 * other, from +0); each step's error term depends only on (previous sum, value, sum); the
 * compensation is the running sum of the error terms, since the fold's k + 0 (no compensation to
 * add) is k: k starts at +0 and a sum is -0 only when both terms are. An empty array gives (0, 0),
 * as the fold does. Pairs with compensations keep arrayFold: interleaving compensations and errors
 * (arrayFlatten) cost more than the fold saved.
 */
function sqlCompensatedFoldOfValues(values: string): string {
  const sums = `arrayCumSum(${values})`;
  const errors = `arrayMap((p, v, s) -> if(abs(p) >= abs(v), ((p - s) + v), ((v - s) + p)), arrayPopBack(arrayPushFront(${sums}, 0.)), ${values}, ${sums})`;
  return `tuple(${sums}[-1], arrayCumSum(${errors})[-1])`;
}

/**
 * 2^52: while the magnitudes of doubles holding integers add up to less than this, every sum of
 * some of them, in any order or grouping, is an integer below 2^53, so it is exact.
 */
const SQL_EXACT_INTEGER_BOUND = '4503599627370496';

/**
 * Whether the compensated fold of doubles is known to be (their plain sum, +0), from aggregates over
 * them: all integers (and compensations all 0) with magnitudes adding up to under 2^52. Then every
 * running sum is exact, so every error term is +0 and the compensation stays +0, and the plain sum
 * (in any order, as ClickHouse's sum adds) is the same double as the fold's. NaN and infinities fail it.
 */
function sqlExactIntegers(allIntegral: string, magnitudeSum: string): string {
  return `(${allIntegral} AND ${magnitudeSum} < ${SQL_EXACT_INTEGER_BOUND})`;
}

/** The per-row condition of sqlExactIntegers for a (sum, compensation) pair. */
function integralPair(hi: string, lo: string): string {
  return `(${lo} = 0 AND ${hi} = floor(${hi}))`;
}

/**
 * Aggregate (GROUP BY) of field `x` into its compensated (sum, compensation) tuple: the plain sum
 * when that is provably the fold's result (sqlExactIntegers: integer data), else the fold of the
 * group's values. Nulls are left out (they count as +0 in the plain sum, which changes nothing).
 */
export function sqlCompensatedSumAggregate(x: string): string {
  const v = `toFloat64(${x})`;
  const exact = sqlExactIntegers(`min(ifNull(${v} = floor(${v}), 1))`, `sum(abs(ifNull(${v}, 0)))`);
  return `if(${exact}, tuple(sum(ifNull(${v}, 0)), 0.), ${sqlCompensatedFoldOfValues(`groupArray(${v})`)})`;
}

/**
 * Aggregate (GROUP BY, or a window function over `over`) of (sum, compensation) tuples `pair` into
 * their compensated sum. In a GROUP BY the plain sum is taken when it provably is the fold's result;
 * otherwise the fold is in the order rows arrive, or in the order of `orderBy` when given.
 * Over a window the decision is per partition, from the column `exactColumn`
 * (sqlExactPartitionColumn): the arrays of an exact partition's frames are never built.
 */
export function sqlCompensatedSumOfPairsAggregate(pair: string, over?: { window: string; exactColumn: string }, orderBy?: string): string {
  const [hi, lo] = [`tupleElement(${pair}, 1)`, `tupleElement(${pair}, 2)`];
  if (over === undefined) {
    const exact = sqlExactIntegers(`min(${integralPair(hi, lo)})`, `sum(abs(${hi}))`);
    // With `orderBy` (unique in the group), the fold runs in its order, not in the order rows arrive.
    const pairs = orderBy === undefined ? `groupArray(${pair})` : `arrayMap((x) -> x.2, arraySort(groupArray(tuple(${orderBy}, ${pair}))))`;
    return `if(${exact}, tuple(sum(${hi}), 0.), ${sqlCompensatedFoldOfPairs(pairs)})`;
  }
  const { window, exactColumn } = over;
  return `if(${exactColumn}, tuple(sum(${hi}) OVER ${window}, 0.), ${sqlCompensatedFoldOfPairs(`groupArrayIf(${pair}, NOT ${exactColumn}) OVER ${window}`)})`;
}

/**
 * Aggregate (GROUP BY) telling whether every sum of some of the (sum, compensation) tuples `pair`
 * of the group, in any order, is their plain sum with compensation 0 (sqlExactIntegers).
 */
export function sqlExactIntegerAggregate(pair: string): string {
  const [hi, lo] = [`tupleElement(${pair}, 1)`, `tupleElement(${pair}, 2)`];
  return sqlExactIntegers(`min(${integralPair(hi, lo)})`, `sum(abs(${hi}))`);
}

/**
 * Window function (over a window of the whole partition, e.g. `PARTITION BY key`) telling whether
 * every frame of the partition may sum tuples `pair` plainly (sqlExactIntegers over the partition's
 * rows covers every frame, a subset of them).
 */
export function sqlExactPartitionColumn(pair: string, partition: string): string {
  const [hi, lo] = [`tupleElement(${pair}, 1)`, `tupleElement(${pair}, 2)`];
  return sqlExactIntegers(`min(${integralPair(hi, lo)}) OVER ${partition}`, `sum(abs(${hi})) OVER ${partition}`);
}

/**
 * Fixed point for exact prefix sums of doubles, in SQL: a double that is a multiple of 2^-64 and
 * below 2^62 in magnitude is exactly the Int128 x * 2^64, and any sum of such integers whose
 * magnitudes add up to under 2^62 * 2^64 is exact in Int128 (no overflow, no rounding). A difference
 * of two such prefix sums is then the exact sum of the values between them, rounded once when it
 * goes back to a double: within the contract's 1e-9 of the exactly rounded sum even when float
 * values cancel, and on integer data (under 2^52 in all) the exact integer, the same double as the
 * compensated fold's.
 */
const FIXED_SCALE = '1.8446744073709552e19'; // 2^64, exactly
const FIXED_UNSCALE = '5.421010862427522e-20'; // 2^-64, exactly
const FIXED_BOUND = '4.611686018427388e18'; // 2^62, exactly

/** Whether a double fits the fixed point (a multiple of 2^-64, magnitude below 2^62); NaN and infinities do not. */
function fitsFixed(x: string): string {
  return `(abs(${x}) < ${FIXED_BOUND} AND ${x} * ${FIXED_SCALE} = floor(${x} * ${FIXED_SCALE}))`;
}

/**
 * The Int128 x * 2^64 of a double x; 0 when it does not fit (a multiple of 2^-64 below 2^62 in
 * magnitude: sqlFixedFits). ClickHouse's toInt128 of a double above 2^64 is not exact (3 * 2^64
 * gives 3 * 2^64 + 1): the integer part (trunc) and the fractional part (x - trunc(x), exact, of x's
 * sign) convert apart, each exactly (an Int64, and a UInt64 magnitude below 2^64).
 */
export function sqlFixedPointOfValue(x: string): string {
  const v = `if(${fitsFixed(x)}, ${x}, 0.)`;
  const fraction = `toInt128(toUInt64(abs(${v} - trunc(${v})) * ${FIXED_SCALE}))`;
  return `(toInt128(toInt64(trunc(${v}))) * toInt128('18446744073709551616') + if(${v} < 0, -${fraction}, ${fraction}))`;
}

/** Whether a double fits the fixed point (a multiple of 2^-64, magnitude below 2^62); NaN and infinities do not. */
export function sqlFixedFits(x: string): string {
  return fitsFixed(x);
}

/** The double of a fixed-point Int128 sum (one rounding, then an exact scaling by 2^-64). */
export function sqlFromFixedPoint(x: string): string {
  return `(toFloat64(${x}) * ${FIXED_UNSCALE})`;
}
