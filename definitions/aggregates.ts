// Aggregation intermediate values ("slots") kept in tiles: one layout per aggregation, so the same
// tile state serves the stream path, read-time merging and (later) the backfill, as in Chronon.
import type { Aggregation } from './dsl.js';

/** A scalar a feature value can hold. */
export type Scalar = number | string | boolean | null;

/**
 * Intermediate state of all features of one tile group for one time tile.
 * `nums` holds only numbers (counts, sums, means, M2, extremes, `last` times), so V8 keeps it
 * unboxed; `vals` holds the values of `last` features, which may be text or booleans.
 * `minTs`/`maxTs` are the event-time range of every event in the tile; reads use them to know
 * whether a tile lies wholly before the query time.
 */
export interface Tile {
  minTs: number;
  maxTs: number;
  nums: number[];
  vals: Scalar[];
}

/**
 * Numeric slots per aggregation: count [n]; sum [sum, compensation]; mean [n, sum, compensation];
 * min/max [n, v]; var/stddev [n, mean, M2]; last [ts] (NaN when empty) plus one value slot.
 * Sums carry Neumaier's compensation through every add and merge: a plain double sum depends on
 * the order of its terms when they cancel (-2 + 2 + 1e-9), and the contract allows 1e-9 relative.
 */
export const SLOT_WIDTH: Record<Aggregation, number> = {
  count: 1,
  sum: 2,
  mean: 3,
  min: 2,
  max: 2,
  var: 3,
  stddev: 3,
  last: 1,
};

/**
 * Add (value, valueCompensation) into the compensated sum at nums[at], nums[at + 1] (Neumaier:
 * the rounding error of each addition is kept exactly and added back at the end).
 */
function addCompensated(nums: number[], at: number, value: number, valueCompensation: number): void {
  const sum = nums[at]!;
  const t = sum + value;
  const error = Math.abs(sum) >= Math.abs(value) ? sum - t + value : value - t + sum;
  nums[at] = t;
  nums[at + 1] = nums[at + 1]! + valueCompensation + error;
}

/** Value slots per aggregation: only `last` keeps a value that may not be a number. */
export function valueWidth(agg: Aggregation): number {
  return agg === 'last' ? 1 : 0;
}

export function initSlots(agg: Aggregation, nums: number[], at: number, vals: Scalar[], valAt: number): void {
  for (let i = 0; i < SLOT_WIDTH[agg]; i++) nums[at + i] = 0;
  if (agg === 'last') {
    nums[at] = Number.NaN;
    vals[valAt] = null;
  }
}

/**
 * Order of `last` candidates: greater event time wins; on equal time the greater value
 * (numbers numerically, text by code point, false < true), so arrival order never matters.
 */
export function compareLast(tsA: number, valueA: Scalar, tsB: number, valueB: Scalar): number {
  if (tsA !== tsB) return tsA < tsB ? -1 : 1;
  return compareScalars(valueA, valueB);
}

export function compareScalars(a: Scalar, b: Scalar): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === 'string' && typeof b === 'string') return compareCodePoints(a, b);
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return a ? 1 : -1;
  // Values of one field share a type; mixed types order by type name so the rule stays total.
  return typeof a < typeof b ? -1 : 1;
}

/** Compare strings by Unicode code point (JS `<` compares UTF-16 code units, which differs for astral characters). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // Surrogates (D800-DFFF) encode code points above FFFF, so they sort after E000-FFFF.
    const sa = ca >= 0xd800 && ca <= 0xdfff;
    const sb = cb >= 0xd800 && cb <= 0xdfff;
    if (sa !== sb) return sa ? 1 : -1;
    return ca < cb ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/**
 * Fold one event into slots. `value` is the event's field (undefined for a count without field);
 * null and undefined values are ignored by everything except a count without a field.
 */
export function addToSlots(
  agg: Aggregation,
  hasField: boolean,
  nums: number[],
  at: number,
  vals: Scalar[],
  valAt: number,
  value: unknown,
  eventTimeMs: number,
): void {
  if (!hasField) {
    // only count may omit its field
    nums[at]! += 1;
    return;
  }
  if (value === null || value === undefined) return;
  // -0 and 0 are equal but print differently: keep 0, so min/max/last never depend on arrival order.
  if (value === 0) value = 0;
  switch (agg) {
    case 'count':
      nums[at]! += 1;
      return;
    case 'sum':
      addCompensated(nums, at, value as number, 0);
      return;
    case 'mean':
      nums[at]! += 1;
      addCompensated(nums, at + 1, value as number, 0);
      return;
    case 'min':
      if (nums[at] === 0 || (value as number) < nums[at + 1]!) nums[at + 1] = value as number;
      nums[at]! += 1;
      return;
    case 'max':
      if (nums[at] === 0 || (value as number) > nums[at + 1]!) nums[at + 1] = value as number;
      nums[at]! += 1;
      return;
    case 'var':
    case 'stddev': {
      // Welford's update: stable where sum-of-squares cancels.
      const n = nums[at]! + 1;
      const mean = nums[at + 1]!;
      const delta = (value as number) - mean;
      const nextMean = mean + delta / n;
      nums[at] = n;
      nums[at + 1] = nextMean;
      nums[at + 2]! += delta * ((value as number) - nextMean);
      return;
    }
    case 'last': {
      const ts = nums[at]!;
      const v = value as Scalar;
      if (Number.isNaN(ts) || compareLast(eventTimeMs, v, ts, vals[valAt]!) > 0) {
        nums[at] = eventTimeMs;
        vals[valAt] = v;
      }
      return;
    }
  }
}

/** Merge the slots of one tile (`from*`) into another (`into*`); associative and commutative. */
export function mergeSlots(
  agg: Aggregation,
  intoNums: number[],
  intoAt: number,
  intoVals: Scalar[],
  intoValAt: number,
  fromNums: readonly number[],
  fromAt: number,
  fromVals: readonly Scalar[],
  fromValAt: number,
): void {
  switch (agg) {
    case 'count':
      intoNums[intoAt]! += fromNums[fromAt]!;
      return;
    case 'sum':
      addCompensated(intoNums, intoAt, fromNums[fromAt]!, fromNums[fromAt + 1]!);
      return;
    case 'mean':
      intoNums[intoAt]! += fromNums[fromAt]!;
      addCompensated(intoNums, intoAt + 1, fromNums[fromAt + 1]!, fromNums[fromAt + 2]!);
      return;
    case 'min':
    case 'max': {
      const nb = fromNums[fromAt]!;
      if (nb === 0) return;
      const b = fromNums[fromAt + 1]!;
      if (intoNums[intoAt] === 0 || (agg === 'min' ? b < intoNums[intoAt + 1]! : b > intoNums[intoAt + 1]!)) intoNums[intoAt + 1] = b;
      intoNums[intoAt]! += nb;
      return;
    }
    case 'var':
    case 'stddev': {
      // Chan et al.'s parallel combination of (n, mean, M2).
      const nb = fromNums[fromAt]!;
      if (nb === 0) return;
      const na = intoNums[intoAt]!;
      if (na === 0) {
        intoNums[intoAt] = nb;
        intoNums[intoAt + 1] = fromNums[fromAt + 1]!;
        intoNums[intoAt + 2] = fromNums[fromAt + 2]!;
        return;
      }
      const ma = intoNums[intoAt + 1]!;
      const n = na + nb;
      const delta = fromNums[fromAt + 1]! - ma;
      intoNums[intoAt] = n;
      intoNums[intoAt + 1] = ma + (delta * nb) / n;
      intoNums[intoAt + 2] = intoNums[intoAt + 2]! + fromNums[fromAt + 2]! + (delta * delta * na * nb) / n;
      return;
    }
    case 'last': {
      const tb = fromNums[fromAt]!;
      if (Number.isNaN(tb)) return;
      const ta = intoNums[intoAt]!;
      if (Number.isNaN(ta) || compareLast(tb, fromVals[fromValAt]!, ta, intoVals[intoValAt]!) > 0) {
        intoNums[intoAt] = tb;
        intoVals[intoValAt] = fromVals[fromValAt]!;
      }
      return;
    }
  }
}

/** The feature value of merged slots, with the empty-window values of SEMANTICS.md. */
export function finalizeSlots(agg: Aggregation, nums: readonly number[], at: number, vals: readonly Scalar[], valAt: number): Scalar {
  switch (agg) {
    case 'count':
      return nums[at]!;
    case 'sum':
      return nums[at]! + nums[at + 1]!;
    case 'min':
    case 'max':
      return nums[at] === 0 ? null : nums[at + 1]!;
    case 'mean': {
      const n = nums[at]!;
      return n === 0 ? null : (nums[at + 1]! + nums[at + 2]!) / n;
    }
    case 'var':
    case 'stddev': {
      const n = nums[at]!;
      if (n === 0) return null;
      const variance = Math.max(0, nums[at + 2]! / n);
      return agg === 'var' ? variance : Math.sqrt(variance);
    }
    case 'last':
      return Number.isNaN(nums[at]!) ? null : vals[valAt]!;
  }
}
