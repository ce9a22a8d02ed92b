// Aggregation intermediate values ("slots") kept in tiles: one layout per aggregation, so the same
// tile state serves the stream path, read-time merging and (later) the backfill, as in Chronon.
// Each aggregation is declared once in definitions/aggregations/; these functions only dispatch
// through that table (a lookup and a direct call: they run per event and per tile merge).
import type { Aggregation } from './dsl.js';
import { AGGREGATION_SPECS, type AggregationParams, type AggregationSpec } from './aggregations/index.js';

export { compareCodePoints, compareLast, compareScalars } from './aggregations/index.js';

/** A scalar a feature value can hold. */
export type Scalar = number | string | boolean | null;

/**
 * approx_percentile's sketch: bucket index -> count of values in it (definitions/aggregations/
 * percentile.ts); only buckets holding a value are present.
 */
export type BucketCounts = Map<number, number>;

/** What a value slot holds: a `last`'s or `first`'s value, or bucket counts (null: none yet). */
export type TileValue = Scalar | BucketCounts;

/**
 * Intermediate state of all features of one tile group for one time tile.
 * `nums` holds only numbers (counts, sums, means, M2, extremes, `last` times), so V8 keeps it
 * unboxed; `vals` holds what is not a number: the values of `last` and `first` features, which may
 * be text or booleans, and approx_percentile's bucket counts.
 * `minTs`/`maxTs` are the event-time range of every event in the tile; reads use them to know
 * whether a tile lies wholly before the query time.
 */
export interface Tile {
  minTs: number;
  maxTs: number;
  nums: number[];
  vals: TileValue[];
}

/**
 * Numeric slots per aggregation: count [n]; sum [sum, compensation]; mean [n, sum, compensation];
 * min/max [n, v]; var/stddev [n, mean, M2]; last and first [ts] (NaN when empty) plus one value
 * slot; approx_percentile none, its bucket counts in one value slot.
 */
export const SLOT_WIDTH = Object.fromEntries(Object.values(AGGREGATION_SPECS).map((s) => [s.name, s.width])) as Record<Aggregation, number>;

/** Value slots per aggregation: `last` and `first` keep a value that may not be a number, approx_percentile its bucket counts. */
export function valueWidth(agg: Aggregation): number {
  return AGGREGATION_SPECS[agg].valueWidth;
}

export function initSlots(agg: Aggregation, nums: number[], at: number, vals: TileValue[], valAt: number): void {
  AGGREGATION_SPECS[agg].init(nums, at, vals, valAt);
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
  vals: TileValue[],
  valAt: number,
  value: unknown,
  eventTimeMs: number,
): void {
  addToSpecSlots(AGGREGATION_SPECS[agg], hasField, nums, at, vals, valAt, value, eventTimeMs);
}

/** The spec of an aggregation, for hot loops that resolve it once (the table lookup costs more than the call). */
export function aggregationSpec(agg: Aggregation): AggregationSpec {
  return AGGREGATION_SPECS[agg];
}

/** addToSlots with the spec resolved by the caller. */
export function addToSpecSlots(spec: AggregationSpec, hasField: boolean, nums: number[], at: number, vals: TileValue[], valAt: number, value: unknown, eventTimeMs: number): void {
  if (!hasField) {
    // only count may omit its field; it counts every event
    spec.add(nums, at, vals, valAt, null, eventTimeMs);
    return;
  }
  if (value === null || value === undefined) return;
  // -0 and 0 are equal but print differently: keep 0, so min/max/last never depend on arrival order.
  if (value === 0) value = 0;
  spec.add(nums, at, vals, valAt, value as Scalar, eventTimeMs);
}

/** Merge the slots of one tile (`from*`) into another (`into*`); associative and commutative. */
export function mergeSlots(
  agg: Aggregation,
  intoNums: number[],
  intoAt: number,
  intoVals: TileValue[],
  intoValAt: number,
  fromNums: readonly number[],
  fromAt: number,
  fromVals: readonly TileValue[],
  fromValAt: number,
): void {
  AGGREGATION_SPECS[agg].merge(intoNums, intoAt, intoVals, intoValAt, fromNums, fromAt, fromVals, fromValAt);
}

/**
 * The feature value of merged slots, with the empty-window values of docs/semantics.md; `params`
 * are the feature's (its FeaturePlan will do), which approx_percentile reads its quantile from.
 */
export function finalizeSlots(agg: Aggregation, nums: readonly number[], at: number, vals: readonly TileValue[], valAt: number, params: AggregationParams): Scalar {
  return AGGREGATION_SPECS[agg].finalize(nums, at, vals, valAt, params);
}
