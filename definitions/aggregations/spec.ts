// What one aggregation declares, once (STYLE.md, "One aggregation, one file"): its tile slots,
// how events fold into them and tiles merge, its final value, its tolerance against the reference,
// and the same merge as Lua (online/redis.ts) and as ClickHouse SQL (offline/tile-sql.ts).
import type { Scalar, TileValue } from '../aggregates.js';
import type { Aggregation } from '../dsl.js';

/** What a feature's final value may read besides its slots: the parameters its definition names. */
export interface AggregationParams {
  /** approx_percentile: the quantile, in [0, 1]. */
  quantile?: number;
}

/** What a feature's field must be: count may omit it; numeric aggregations need numbers; last needs an order. */
export type FieldRule = 'optional' | 'numeric' | 'ordered';

/**
 * How partial aggregates of one part combine across rows (tiles, window frames); a 'sumMap' part is
 * a Map of counts (approx_percentile's buckets), added key by key.
 */
export type SqlCombine = 'sum' | 'min' | 'max' | 'compensatedSum' | 'sumMap';

/** One partial aggregate column of a feature in the offline SQL. */
export interface SqlPartSpec {
  /** Column suffix: the column is `f<i>_<suffix>`. */
  suffix: string;
  /** Aggregate over the events of one (key, ts) group; `x` is the field, `c` the key's center (see centered). */
  perTs(x: string | null, c: string): string;
  combine: SqlCombine;
  /**
   * The same part built outside ClickHouse from a tile's events (offline/feature-windows.ts), for
   * fields proven to hold small integers: each event with a value adds this term under `combine`
   * (a compensated sum as its plain sum), an event without one adds nothing. 'count': 1 (every
   * event when the feature has no field); 'value': x; 'deviation': x - c; 'squaredDeviation':
   * (x - c) * (x - c), with c the key's center. Absent: the part is only computed in SQL.
   */
  eventTerm?: SqlEventTerm;
}

/** What one event adds to a part (SqlPartSpec.eventTerm). */
export type SqlEventTerm = 'count' | 'value' | 'deviation' | 'squaredDeviation';

export interface AggregationSql {
  /**
   * Partial aggregates per (key, instant) or tile, combined across rows by their `combine`;
   * null when the aggregation is not tiled offline (last: an ASOF join picks the event instead).
   */
  parts: readonly SqlPartSpec[] | null;
  /**
   * For an aggregation that picks one event (parts null): the per-(key, instant) value under its tie
   * rule, and which end of the window an ASOF join searches from: 'end' the latest event before t
   * (last), 'start' the earliest at or after the window start (first).
   */
  asof?: { perTs(x: string): string; from: 'start' | 'end' };
  /** Whether the parts read the key's mean of the field as a center (variance: no cancellation in x - c). */
  centered: boolean;
  /** The final value from each combined part's value (`part(suffix)`; a compensated sum reads as its total). */
  final(part: (suffix: string) => string, params: AggregationParams): string;
  /**
   * SQL merging slot tuple `b` (from) into `a` (into), as mergeSlots does, usable as
   * `arrayFold((a, b) -> <merge>, tiles, init)`. A slot tuple holds the numeric slots then the value
   * slots, in layout order.
   */
  merge(a: string, b: string): string;
}

export interface AggregationSpec {
  readonly name: Aggregation;
  /** Numeric slots per tile (Tile.nums). */
  readonly width: number;
  /** Value slots per tile (Tile.vals): values that may be text or booleans, or bucket counts. */
  readonly valueWidth: number;
  readonly field: FieldRule;
  /** Whether a feature of it names a quantile in [0, 1] (AggregationParams.quantile). */
  readonly quantile?: true;
  /** Largest relative error against the reference that docs/semantics.md allows: 0 (exact), 1e-9 or 1e-6. */
  readonly tolerance: number;
  init(nums: number[], at: number, vals: TileValue[], valAt: number): void;
  /** Fold one event's present value (not null; -0 already made 0) into the slots. */
  add(nums: number[], at: number, vals: TileValue[], valAt: number, value: Scalar, eventTimeMs: number): void;
  /** Merge `from` slots into `into` slots; associative and commutative (up to the tolerance). */
  merge(
    intoNums: number[],
    intoAt: number,
    intoVals: TileValue[],
    intoValAt: number,
    fromNums: readonly number[],
    fromAt: number,
    fromVals: readonly TileValue[],
    fromValAt: number,
  ): void;
  /** The feature value of merged slots, with docs/semantics.md's empty-window value. */
  finalize(nums: readonly number[], at: number, vals: readonly TileValue[], valAt: number, params: AggregationParams): Scalar;
  readonly lua: {
    /** Code of the aggregation in Redis layouts; stored layouts name it, so it never changes. */
    code: string;
    /**
     * Lua statements merging slots: into = (an, av), from = (bn, bv); numeric slot k at an[o + k],
     * value slot at av[vo] (a packed value, ordered by compareValues; packed bucket counts merge by
     * mergeBucketCounts). Same operations in the same order as `merge`, so results are bit-identical.
     */
    merge: string;
  };
  readonly sql: AggregationSql;
}
