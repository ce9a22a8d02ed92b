// Aggregation intermediate values ("slots") kept in tiles: one layout per aggregation, so the same
// tile state serves the stream path, read-time merging and (later) the backfill, as in Chronon.
import type { Aggregation } from './dsl.js';

/** A scalar a slot or a feature value can hold. */
export type Scalar = number | string | boolean | null;

/**
 * Intermediate state of all features of one tile group for one time tile.
 * `minTs`/`maxTs` are the event-time range of every event in the tile; reads use them to know
 * whether a tile lies wholly before the query time.
 */
export interface Tile {
  minTs: number;
  maxTs: number;
  slots: Scalar[];
}

/** Slots per aggregation: count [n]; sum [sum]; mean [n, sum]; min/max [v]; var/stddev [n, mean, m2]; last [ts, value]. */
export const SLOT_WIDTH: Record<Aggregation, number> = {
  count: 1,
  sum: 1,
  mean: 2,
  min: 1,
  max: 1,
  var: 3,
  stddev: 3,
  last: 2,
};

export function initSlots(agg: Aggregation, slots: Scalar[], at: number): void {
  switch (agg) {
    case 'count':
    case 'sum':
      slots[at] = 0;
      return;
    case 'mean':
      slots[at] = 0;
      slots[at + 1] = 0;
      return;
    case 'min':
    case 'max':
      slots[at] = null;
      return;
    case 'var':
    case 'stddev':
      slots[at] = 0;
      slots[at + 1] = 0;
      slots[at + 2] = 0;
      return;
    case 'last':
      slots[at] = null;
      slots[at + 1] = null;
      return;
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
  slots: Scalar[],
  at: number,
  value: unknown,
  eventTimeMs: number,
): void {
  if (!hasField) {
    // only count may omit its field
    slots[at] = (slots[at] as number) + 1;
    return;
  }
  if (value === null || value === undefined) return;
  // -0 and 0 are equal but print differently: keep 0, so min/max/last never depend on arrival order.
  if (value === 0) value = 0;
  switch (agg) {
    case 'count':
      slots[at] = (slots[at] as number) + 1;
      return;
    case 'sum':
      slots[at] = (slots[at] as number) + (value as number);
      return;
    case 'mean':
      slots[at] = (slots[at] as number) + 1;
      slots[at + 1] = (slots[at + 1] as number) + (value as number);
      return;
    case 'min': {
      const current = slots[at] as number | null;
      if (current === null || (value as number) < current) slots[at] = value as number;
      return;
    }
    case 'max': {
      const current = slots[at] as number | null;
      if (current === null || (value as number) > current) slots[at] = value as number;
      return;
    }
    case 'var':
    case 'stddev': {
      // Welford's update: stable where sum-of-squares cancels.
      const n = (slots[at] as number) + 1;
      const mean = slots[at + 1] as number;
      const delta = (value as number) - mean;
      const nextMean = mean + delta / n;
      slots[at] = n;
      slots[at + 1] = nextMean;
      slots[at + 2] = (slots[at + 2] as number) + delta * ((value as number) - nextMean);
      return;
    }
    case 'last': {
      const ts = slots[at] as number | null;
      const v = value as Scalar;
      if (ts === null || compareLast(eventTimeMs, v, ts, slots[at + 1]!) > 0) {
        slots[at] = eventTimeMs;
        slots[at + 1] = v;
      }
      return;
    }
  }
}

/** Merge the slots of `from` (at `fromAt`) into `into` (at `intoAt`); associative and commutative. */
export function mergeSlots(agg: Aggregation, into: Scalar[], intoAt: number, from: readonly Scalar[], fromAt: number): void {
  switch (agg) {
    case 'count':
    case 'sum':
      into[intoAt] = (into[intoAt] as number) + (from[fromAt] as number);
      return;
    case 'mean':
      into[intoAt] = (into[intoAt] as number) + (from[fromAt] as number);
      into[intoAt + 1] = (into[intoAt + 1] as number) + (from[fromAt + 1] as number);
      return;
    case 'min': {
      const a = into[intoAt] as number | null;
      const b = from[fromAt] as number | null;
      if (b !== null && (a === null || b < a)) into[intoAt] = b;
      return;
    }
    case 'max': {
      const a = into[intoAt] as number | null;
      const b = from[fromAt] as number | null;
      if (b !== null && (a === null || b > a)) into[intoAt] = b;
      return;
    }
    case 'var':
    case 'stddev': {
      // Chan et al.'s parallel combination of (n, mean, M2).
      const nb = from[fromAt] as number;
      if (nb === 0) return;
      const na = into[intoAt] as number;
      if (na === 0) {
        into[intoAt] = nb;
        into[intoAt + 1] = from[fromAt + 1]!;
        into[intoAt + 2] = from[fromAt + 2]!;
        return;
      }
      const ma = into[intoAt + 1] as number;
      const mb = from[fromAt + 1] as number;
      const n = na + nb;
      const delta = mb - ma;
      into[intoAt] = n;
      into[intoAt + 1] = ma + (delta * nb) / n;
      into[intoAt + 2] = (into[intoAt + 2] as number) + (from[fromAt + 2] as number) + (delta * delta * na * nb) / n;
      return;
    }
    case 'last': {
      const tb = from[fromAt] as number | null;
      if (tb === null) return;
      const ta = into[intoAt] as number | null;
      if (ta === null || compareLast(tb, from[fromAt + 1]!, ta, into[intoAt + 1]!) > 0) {
        into[intoAt] = tb;
        into[intoAt + 1] = from[fromAt + 1]!;
      }
      return;
    }
  }
}

/** The feature value of merged slots, with the empty-window values of SEMANTICS.md. */
export function finalizeSlots(agg: Aggregation, slots: readonly Scalar[], at: number): Scalar {
  switch (agg) {
    case 'count':
    case 'sum':
    case 'min':
    case 'max':
      return slots[at]!;
    case 'mean': {
      const n = slots[at] as number;
      return n === 0 ? null : (slots[at + 1] as number) / n;
    }
    case 'var':
    case 'stddev': {
      const n = slots[at] as number;
      if (n === 0) return null;
      const variance = Math.max(0, (slots[at + 2] as number) / n);
      return agg === 'var' ? variance : Math.sqrt(variance);
    }
    case 'last':
      return slots[at + 1]!;
  }
}
