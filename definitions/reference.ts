// The reference implementation of docs/semantics.md: plain scans over all events, no tiles, slow on
// purpose. Every other path (in-memory, Redis, ClickHouse) is tested against it. It shares no
// aggregation code with those paths, so a bug in one is not silently repeated in the other.
import type { Scalar } from './aggregates.js';
import { AGGREGATION_SPECS } from './aggregations/index.js';
import type { Aggregation } from './dsl.js';
import type { FeaturePlan, ViewPlan } from './compile.js';
import { canonicalKeyValue } from './keys.js';

export interface ReferenceEvent {
  eventTimeMs: number;
  fields: Record<string, unknown>;
  /** Identity of the delivered record (e.g. `topic/partition/offset`): redeliveries count once. */
  recordId?: string;
}

/** tail(t) = floor(t / H) * H - W: the inclusive start of the sawtooth window at t. */
export function windowStartMs(tMs: number, windowMs: number, hopMs: number): number {
  return Math.floor(tMs / hopMs) * hopMs - windowMs;
}

/** The events of one entity key, with redelivered records counted once. */
export function eventsOfKey(view: ViewPlan, events: readonly ReferenceEvent[], keyValues: readonly string[]): ReferenceEvent[] {
  const seen = new Set<string>();
  return events.filter((e) => {
    if (e.recordId !== undefined) {
      if (seen.has(e.recordId)) return false;
      seen.add(e.recordId);
    }
    return view.keyFields.every((f, i) => canonicalKeyValue(e.fields[f]) === keyValues[i]);
  });
}

/**
 * The sum of doubles rounded once at the end (Shewchuk's exact partials, as Python's math.fsum),
 * so the reference's sums do not depend on event order even when terms cancel.
 */
export function exactSum(values: readonly number[]): number {
  const partials: number[] = [];
  for (let x of values) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  let total = 0;
  for (let i = partials.length - 1; i >= 0; i--) total += partials[i]!;
  return total;
}

/** Greater by the `last` tie rule: later time, then greater value (code points for text). */
function laterThan(a: ReferenceEvent, aValue: Scalar, b: ReferenceEvent, bValue: Scalar): boolean {
  if (a.eventTimeMs !== b.eventTimeMs) return a.eventTimeMs > b.eventTimeMs;
  if (typeof aValue === 'string' && typeof bValue === 'string') {
    const ca = Array.from(aValue, (c) => c.codePointAt(0)!);
    const cb = Array.from(bValue, (c) => c.codePointAt(0)!);
    for (let i = 0; i < Math.min(ca.length, cb.length); i++) if (ca[i] !== cb[i]) return ca[i]! > cb[i]!;
    return ca.length > cb.length;
  }
  return Number(aValue) > Number(bValue);
}

/**
 * approx_percentile's bucket representative of a value, written apart from the spec: the bits as a
 * BigInt, the value with its mantissa cut after 6 bits and the half bucket (2^-7) set; zeros and
 * subnormals are 0 (docs/semantics.md).
 */
function percentileRepresentative(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  if (((bits >> 52n) & 0x7ffn) === 0n) return 0;
  const sixBits = ~((1n << 46n) - 1n) & 0xffff_ffff_ffff_ffffn;
  view.setBigUint64(0, (bits & sixBits) | (1n << 45n));
  return view.getFloat64(0);
}

/** The value of one feature at time t over the events of one key (already filtered by key). */
export function referenceFeatureValue(feature: FeaturePlan, keyEvents: readonly ReferenceEvent[], tMs: number): Scalar {
  let inRange: ReferenceEvent[];
  if (feature.windowMs !== null) {
    const start = windowStartMs(tMs, feature.windowMs, feature.hopMs);
    inRange = keyEvents.filter((e) => e.eventTimeMs >= start && e.eventTimeMs < tMs);
  } else {
    inRange = keyEvents.filter((e) => e.eventTimeMs < tMs);
  }
  if (feature.agg === 'count' && feature.field === null) return inRange.length;
  const field = feature.field!;
  const withValue = inRange.filter((e) => e.fields[field] !== null && e.fields[field] !== undefined);
  // -0 counts as 0 (SEMANTICS: one value whatever the arrival order)
  const valueOf = (e: ReferenceEvent): Scalar => (e.fields[field] === 0 ? 0 : (e.fields[field] as Scalar));
  const values = withValue.map((e) => valueOf(e) as number);
  const n = values.length;
  switch (feature.agg) {
    case 'count':
      return n;
    case 'sum':
      return exactSum(values);
    case 'mean':
      return n === 0 ? null : exactSum(values) / n;
    case 'min':
      return n === 0 ? null : values.reduce((a, b) => (b < a ? b : a));
    case 'max':
      return n === 0 ? null : values.reduce((a, b) => (b > a ? b : a));
    case 'var':
    case 'stddev': {
      if (n === 0) return null;
      // Two passes over values shifted by the first one: equal values give exactly 0 and values an
      // ulp apart their exact variance (an unshifted mean rounds, and its error squared is not 0).
      let shifted = values.map((b) => b - values[0]!);
      if (!shifted.every(Number.isFinite)) shifted = values; // values near the double range's ends
      const mean = exactSum(shifted) / n;
      const variance = exactSum(shifted.map((d) => (d - mean) * (d - mean))) / n;
      return feature.agg === 'var' ? variance : Math.sqrt(variance);
    }
    case 'last': {
      let best: ReferenceEvent | null = null;
      for (const e of withValue) {
        if (best === null || laterThan(e, valueOf(e), best, valueOf(best))) best = e;
      }
      if (best === null) return null;
      if (feature.ttlMs !== null && best.eventTimeMs < tMs - feature.ttlMs) return null;
      return valueOf(best);
    }
    case 'first': {
      // the earliest time; on equal times the smallest value: sort a copy, take the head
      const sorted = [...withValue].sort((a, b) => {
        if (a.eventTimeMs !== b.eventTimeMs) return a.eventTimeMs - b.eventTimeMs;
        const [va, vb] = [valueOf(a), valueOf(b)];
        if (va === vb) return 0;
        return laterThan(b, vb, a, va) ? -1 : laterThan(a, va, b, vb) ? 1 : 0;
      });
      return sorted.length === 0 ? null : valueOf(sorted[0]!);
    }
    case 'approx_percentile': {
      // nearest rank r = max(0, ceil(q*n) - 1) of the sorted values, reported as its bucket's midpoint
      if (n === 0) return null;
      const rank = Math.max(0, Math.ceil(feature.quantile! * n) - 1);
      return percentileRepresentative([...values].sort((a, b) => a - b)[rank]!);
    }
  }
}

/** Every feature of a view for one key at time t. */
export function referenceViewValues(
  view: ViewPlan,
  events: readonly ReferenceEvent[],
  keyValues: readonly string[],
  tMs: number,
): Record<string, Scalar> {
  const keyEvents = eventsOfKey(view, events, keyValues);
  const out: Record<string, Scalar> = {};
  for (const f of view.features) out[f.name] = referenceFeatureValue(f, keyEvents, tMs);
  return out;
}

/**
 * Whether two values of a feature agree within docs/semantics.md's tolerances: exactly for counts, mins,
 * maxes and lasts; within 1e-9 relative error for sums and means; 1e-6 for var and stddev (each
 * spec's declared tolerance: only that number comes from the specs, none of their arithmetic).
 */
export function valuesAgree(agg: Aggregation, a: Scalar, b: Scalar): boolean {
  if (a === b) return true;
  if (typeof a !== 'number' || typeof b !== 'number') return false;
  const tolerance = AGGREGATION_SPECS[agg].tolerance;
  return Math.abs(a - b) <= tolerance * Math.abs(b);
}
