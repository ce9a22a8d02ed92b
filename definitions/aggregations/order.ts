// The order of scalar values that `last` (and its tie rule) relies on: numbers numerically, text by
// Unicode code point, false < true; shared by the aggregations that pick one event's value.
import type { Scalar } from '../aggregates.js';

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
