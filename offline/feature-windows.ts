// View-feature samples windowed in Node: featureTileSql sends each key's events once (times and
// field values), TileWindows builds the key's tiles from them (each part's eventTerm, combined as
// the SQL combines it), combines each tile's sawtooth window (tiles j-n+1..j, docs/semantics.md)
// and computes the final value at the tile's close. Only where that gives the same doubles as
// featureSampleSql's GROUP BY and window functions: parts whose tile and window combination is exact
// in any order (counts; sums of fields proven to hold small integers; min and max), centers
// computed as centerSql computes them, and finals that repeat the SQL's operations in its order
// (tile-sql.ts finalOfColumns over AGGREGATION_SPECS[agg].sql.final). Anything else stays on
// featureSampleSql.
import type { RecordBatch } from 'apache-arrow';
import type { Aggregation, FeaturePlan } from '../definitions/index.js';
import type { SqlEventTerm } from '../definitions/aggregations/index.js';
import { isCentered, isTiledOffline, partsOf } from './tile-sql.js';

/** Fields of one source proven exact (feature-samples.ts exactIntegerFieldsOfParts): their sums, and their squares' sums. */
export interface ExactFieldSets {
  sums: ReadonlySet<string>;
  squares: ReadonlySet<string>;
}

/**
 * Each aggregation's sql.final over the windowed parts (in partsOf order, `w[at + k]`), the same
 * IEEE operations in the same order; NaN for SQL's NULL (no proven-exact part is ever NaN). A
 * compensated sum's final is `hi + lo` with lo = 0 (the plain-sum branch): `+ 0` keeps it. pow(v, 2)
 * is v * v: ClickHouse's pow gave x * x on 10^8 random doubles, ratios of integers among them.
 * As codes for finalOf, one switch per sample (a closure per aggregation was a megamorphic call).
 */
const FINALS: Partial<Record<Aggregation, number>> = { count: 0, min: 0, max: 0, sum: 1, mean: 2, var: 3, stddev: 4 };

function finalOf(kind: number, w: Float64Array, at: number): number {
  switch (kind) {
    case 0:
      return w[at]!;
    case 1:
      return w[at]! + 0;
    case 2:
      return w[at] === 0 ? Number.NaN : (w[at + 1]! + 0) / w[at]!;
    case 3:
      return varianceOf(w, at);
    default:
      return Math.sqrt(varianceOf(w, at));
  }
}

/** `if(n = 0, NULL, greatest(0, ss / n - pow(s / n, 2)))` (variance.ts sql.final). */
function varianceOf(w: Float64Array, at: number): number {
  const n = w[at]!;
  if (n === 0) return Number.NaN;
  const m = w[at + 1]! / n;
  return Math.max(0, w[at + 2]! / n - m * m);
}

/**
 * Whether TileWindows gives this feature's samples with featureSampleSql's doubles, given the fields
 * of its source proven exact: counts always; sums and means of exact fields (every window sum an
 * exact integer, whatever the order); min and max of exact fields (no NaN, so no order dependence);
 * variance and stddev of fields whose squares are bounded too (their parts' sums are exact integers).
 */
export function windowsInNode(f: FeaturePlan, exact: ExactFieldSets): boolean {
  if (f.windowMs === null || f.tilesPerWindow === null || !isTiledOffline(f) || FINALS[f.agg] === undefined) return false;
  if (partsOf(f, 0).some((p) => p.eventTerm === undefined)) return false;
  if (f.agg === 'count') return true;
  if (f.field === null || !exact.sums.has(f.field)) return false;
  return (f.agg !== 'var' && f.agg !== 'stddev') || exact.squares.has(f.field);
}

export interface TileWindowsOptions {
  /** The query's field columns, in order, when it serves other features too (featureTileSql of all of them): by default these features'. */
  fields?: readonly string[];
  /** How many group key columns (featureTileSql's groupKeys) follow the labels. */
  groupColumns?: number;
  /**
   * How many of them are these features' view's key, when that view is coarser than the query's
   * (its key fields a subset of the query view's, first in groupKeys): the rows of one such key
   * are consecutive, and their events are windowed together. 0 (default): each row is a key.
   */
  keyColumns?: number;
}

export interface TileWindowSink {
  /** The samples of the next key follow; `labels` are its label columns' values. */
  key(labels: readonly string[]): void;
  /**
   * Feature `feature`'s values `xs[k]` at tile closes `ts[k]` (ms), k < count, ascending in time
   * (null values are not sent). The arrays are reused: read them before returning.
   */
  samples(feature: number, ts: Float64Array, xs: Float64Array, count: number): void;
}

interface WindowPart {
  combine: 'sum' | 'min' | 'max';
  tiles: number;
  /** EVENT_TERMS code of what one event adds to the part's tile. */
  term: number;
  /** The field's index in tileFieldsOf (-1: none, a count of events). */
  field: number;
}

const EVENT_TERMS: Record<SqlEventTerm, number> = { count: 0, value: 1, deviation: 2, squaredDeviation: 3 };
const COMBINES = { sum: 0, min: 1, max: 2 } as const;

/** The fields whose values featureTileSql sends for these features, in its column order (`__x<i>`). */
export function tileFieldsOf(features: readonly FeaturePlan[]): string[] {
  return [...new Set(features.map((f) => f.field).filter((f): f is string => f !== null))];
}

/**
 * ClickHouse's round of a Float64: to the nearest integer, ties to even (round(2.5) = 2,
 * round(-0.5) = -0). Math.round breaks ties upward; an odd result of a tie steps down.
 */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Turns featureTileSql's rows (columns: `labelCount` labels, then the key's event times and field
 * values) into each feature's value at every tile close in [from, to). Memory: one key's events
 * and tiles.
 */
export class TileWindows {
  private readonly parts: WindowPart[] = [];
  /** Where each feature's parts start in `parts`. */
  private readonly starts: number[] = [];
  /** Each feature's FINALS code. */
  private readonly finals: Int32Array;
  private readonly hopMs: number;
  private tiles = new Float64Array(1024);
  /** Scratch tile indices, as many as `tiles` (flush's min and max windows). */
  private candidates = new Int32Array(this.tiles.length);
  /** Scratch, as many as `tiles`: the rows and times of the closes in range, and one feature's samples (flush). */
  private closeRows = new Int32Array(this.tiles.length);
  private closeTs = new Float64Array(this.tiles.length);
  private outTs = new Float64Array(this.tiles.length);
  private outXs = new Float64Array(this.tiles.length);
  /** The key's tiles' part values, part p of tile r at r * parts + p (NaN: null). */
  private values: Float64Array;
  /** The window values, laid out as `values`. */
  private windows: Float64Array;
  private rows = 0;
  /** The earliest event time these features' windows read. */
  private readonly firstTs: number;
  /** featureTileSql's group key columns (after the labels), and how many of them are this view's key (0: each row is a key). */
  private readonly groupColumns: number;
  private readonly keyColumns: number;
  /** The key being gathered (keyColumns > 0): its text, labels and events so far. */
  private pendingKey: string | null = null;
  private pendingLabels: string[] = [];
  private pendingCount = 0;
  private pendingTimes: Float64Array = new Float64Array(1024);
  private pendingFields: Float64Array[];
  /** Scratch per event of the current key: its tile's row (-1: before firstTs). */
  private eventRows = new Int32Array(1024);
  /** Per part: its COMBINES code, EVENT_TERMS code and field index (-1: none). */
  private readonly combines: Int32Array;
  private readonly terms: Int32Array;
  private readonly partFields: Int32Array;
  /** Per field: whether a part reads its center, and the current key's center. */
  private readonly centered: boolean[];
  private readonly centers: Float64Array;
  /** Scratch per event of the current key: its tile. */
  private eventTiles = new Float64Array(1024);
  /** Scratch per tile offset from the key's first tile: its row + 1 (0: no event), for keys whose tiles are dense. */
  private tileRows = new Int32Array(4096);

  constructor(
    features: readonly FeaturePlan[],
    private readonly labelCount: number,
    private readonly range: { from: number; to: number },
    private readonly sink: TileWindowSink,
    options: TileWindowsOptions = {},
  ) {
    const fields = options.fields ?? tileFieldsOf(features);
    this.groupColumns = options.groupColumns ?? 0;
    this.keyColumns = options.keyColumns ?? 0;
    if (this.keyColumns > this.groupColumns) throw new Error('TileWindows: more key columns than group columns');
    // Events before the longest window's lookback belong to other hops' windows (a shared query reads the longest of all).
    this.firstTs = range.from - Math.max(...features.map((f) => f.windowMs!));
    this.centered = fields.map((field) => features.some((f) => f.field === field && isCentered(f)));
    this.centers = new Float64Array(fields.length);
    this.pendingFields = fields.map(() => new Float64Array(this.pendingTimes.length));
    for (const [i, f] of features.entries()) {
      this.starts.push(this.parts.length);
      for (const p of partsOf(f, i)) {
        const combine = p.combine === 'compensatedSum' ? 'sum' : p.combine;
        if (combine !== 'sum' && combine !== 'min' && combine !== 'max') throw new Error(`TileWindows: ${f.name} has a ${p.combine} part`);
        if (p.eventTerm === undefined) throw new Error(`TileWindows: ${f.name} has a part without an event term`);
        if (combine !== 'sum' && p.eventTerm !== 'value') throw new Error(`TileWindows: ${f.name} has a ${combine} part of ${p.eventTerm}, not of the value`);
        const field = f.field === null ? -1 : fields.indexOf(f.field);
        if (f.field !== null && field < 0) throw new Error(`TileWindows: ${f.name}'s field ${f.field} is not among the query's fields`);
        this.parts.push({ combine, tiles: f.tilesPerWindow!, term: EVENT_TERMS[p.eventTerm], field });
      }
    }
    this.combines = Int32Array.from(this.parts, (p) => COMBINES[p.combine]);
    this.terms = Int32Array.from(this.parts, (p) => p.term);
    this.partFields = Int32Array.from(this.parts, (p) => p.field);
    this.finals = Int32Array.from(features, (f) => {
      const final = FINALS[f.agg];
      if (final === undefined) throw new Error(`TileWindows: no final for ${f.agg}`);
      return final;
    });
    this.hopMs = features[0]!.hopMs;
    this.values = new Float64Array(this.tiles.length * this.parts.length);
    this.windows = new Float64Array(this.values.length);
  }

  /** Add one batch of featureTileSql's rows (one per key of the query's view). Call end() after the last. */
  add(batch: RecordBatch): void {
    const n = batch.numRows;
    if (n === 0) return;
    const cols = batch.data.children;
    const labelCols = cols.slice(0, this.labelCount);
    const groupCols = cols.slice(this.labelCount, this.labelCount + this.groupColumns);
    const lists = cols.slice(this.labelCount + this.groupColumns);
    if (lists.length !== this.centered.length + 1) throw new Error(`TileWindows: ${lists.length - 1} field columns, expected ${this.centers.length}`);
    // IPC batches are not sliced: a key's events are at its list offsets.
    if (lists.some((l) => l.children[0]!.offset !== 0)) throw new Error('TileWindows: sliced event arrays');
    const times = lists[0]!.children[0]!.values as Float64Array;
    const fieldValues = lists.slice(1).map((l) => l.children[0]!.values as Float64Array);
    const offsets = lists.map((l) => l.valueOffsets as Int32Array);
    const labelsOf = (r: number): string[] => labelCols.map((c) => textAt(c, r));
    for (let r = 0; r < n; r++) {
      const start = offsets[0]![lists[0]!.offset + r]!;
      const end = offsets[0]![lists[0]!.offset + r + 1]!;
      // groupArray's arrays of one row have one length; each list carries its own offsets.
      const fieldStarts = lists.slice(1).map((l, i) => offsets[i + 1]![l.offset + r]!);
      if (this.keyColumns === 0) {
        this.buildTiles(times, start, end - start, fieldValues, fieldStarts);
        this.emit(() => labelsOf(r));
        continue;
      }
      // A key of a coarser view: its rows are consecutive (the query orders by its key first); their events are gathered.
      let key = '';
      for (let g = 0; g < this.keyColumns; g++) key += `${textAt(groupCols[g]!, r)}\u0000`;
      if (key !== this.pendingKey) {
        this.end();
        this.pendingKey = key;
        this.pendingLabels = labelsOf(r);
      }
      this.gather(times, start, end - start, fieldValues, fieldStarts);
    }
  }

  /** After the last batch: the gathered events of the last key of a coarser view are windowed. */
  end(): void {
    if (this.pendingKey !== null && this.pendingCount > 0) {
      this.buildTiles(this.pendingTimes, 0, this.pendingCount, this.pendingFields, this.pendingFields.map(() => 0));
      const labels = this.pendingLabels;
      this.emit(() => labels);
    }
    this.pendingKey = null;
    this.pendingCount = 0;
  }

  /** The built key's samples, if it has tiles: a key whose events all precede these features' lookback (read for another hop's) has none here. */
  private emit(labels: () => string[]): void {
    if (this.rows === 0) return;
    this.sink.key(labels());
    this.flush();
  }

  /** Append one row's events to the key being gathered. */
  private gather(times: Float64Array, start: number, count: number, fieldValues: readonly Float64Array[], fieldStarts: readonly number[]): void {
    const need = this.pendingCount + count;
    if (this.pendingTimes.length < need) {
      const length = Math.max(need, this.pendingTimes.length * 2);
      const grow = (a: Float64Array): Float64Array => {
        const b = new Float64Array(length);
        b.set(a.subarray(0, this.pendingCount));
        return b;
      };
      this.pendingTimes = grow(this.pendingTimes);
      this.pendingFields = this.pendingFields.map(grow);
    }
    this.pendingTimes.set(times.subarray(start, start + count), this.pendingCount);
    fieldValues.forEach((xs, f) => this.pendingFields[f]!.set(xs.subarray(fieldStarts[f]!, fieldStarts[f]! + count), this.pendingCount));
    this.pendingCount = need;
  }

  /**
   * The key's tiles in order, each part combined over its events as the SQL GROUP BY combines it
   * (exact in any order: integer sums, min, max), into `tiles` and `values`. Events before firstTs
   * are left out.
   */
  private buildTiles(times: Float64Array, start: number, count: number, fieldValues: readonly Float64Array[], fieldStarts: readonly number[]): void {
    const hop = this.hopMs;
    const firstTs = this.firstTs;
    if (this.eventTiles.length < count) {
      this.eventTiles = new Float64Array(Math.max(count, this.eventTiles.length * 2));
      this.eventRows = new Int32Array(this.eventTiles.length);
    }
    const { eventTiles, eventRows } = this;
    let first = Infinity;
    let last = -Infinity;
    let read = 0;
    for (let k = 0; k < count; k++) {
      const ts = times[start + k]!;
      if (ts < firstTs) {
        eventTiles[k] = Number.NaN;
        continue;
      }
      // tileOf, intDiv(ts - positiveModulo(ts, hop), hop), is floor(ts / hop): for integers with
      // |ts| < 2^53 the quotient's rounding error (under |ts / hop| * 2^-53 < 1 / hop) never
      // reaches the next integer, and fmod cost more than the rest of the event's work.
      const j = Math.floor(ts / hop);
      eventTiles[k] = j;
      read++;
      if (j < first) first = j;
      if (j > last) last = j;
    }
    this.rows = 0;
    if (read === 0) return;
    this.computeCenters(fieldValues, fieldStarts, count);
    // Each event's tile row: by offset from the first tile when the tiles are dense enough, else by sorting.
    const span = last - first + 1;
    let m = 0;
    if (span <= 4 * read + 4096) {
      if (this.tileRows.length < span) this.tileRows = new Int32Array(Math.max(span, this.tileRows.length * 2));
      const rows = this.tileRows;
      for (let k = 0; k < count; k++) {
        const j = eventTiles[k]!;
        if (j === j) rows[j - first] = 1;
      }
      this.reserve(Math.min(span, read));
      const tiles = this.tiles;
      for (let o = 0; o < span; o++) {
        if (rows[o] !== 0) {
          tiles[m] = first + o;
          rows[o] = ++m;
        }
      }
      for (let k = 0; k < count; k++) {
        const j = eventTiles[k]!;
        eventRows[k] = j === j ? rows[j - first]! - 1 : -1;
      }
      for (let row = 0; row < m; row++) rows[this.tiles[row]! - first] = 0;
    } else {
      const sorted = eventTiles.slice(0, count).sort(); // NaN last
      for (let k = 0; k < read; k++) if (k === 0 || sorted[k] !== sorted[k - 1]) sorted[m++] = sorted[k]!;
      this.reserve(m);
      this.tiles.set(sorted.subarray(0, m));
      for (let k = 0; k < count; k++) {
        const j = eventTiles[k]!;
        eventRows[k] = j === j ? lowerBound(this.tiles, m, j) : -1;
      }
    }
    this.rows = m;
    const { values, combines, terms, partFields, centers } = this;
    const width = combines.length;
    // Part by part: each loop does one thing per event.
    for (let p = 0; p < width; p++) {
      const combine = combines[p]!;
      const initial = combine === 0 ? 0 : Number.NaN;
      for (let row = 0; row < m; row++) values[row * width + p] = initial;
      const f = partFields[p]!;
      const term = terms[p]!;
      if (f < 0) {
        // a count of every event
        for (let k = 0; k < count; k++) {
          const row = eventRows[k]!;
          if (row >= 0) values[row * width + p]! += 1;
        }
        continue;
      }
      const xs = fieldValues[f]!;
      const at = fieldStarts[f]!;
      const c = centers[f]!;
      // One loop per (combine, term), not a branch on them per event.
      if (combine === 0) sumTerms(values, width, p, eventRows, xs, at, count, term, c);
      else extremes(values, width, p, eventRows, xs, at, count, combine === 2);
    }
  }

  /**
   * Each centered field's center over the key's events from firstTs on (those the SQL reads for
   * these features), as centerSql: when every value is an
   * integer, their mean rounded to an integer (ties to even, as ClickHouse's round); else min / 2 +
   * max / 2; 0 without values.
   */
  private computeCenters(fieldValues: readonly Float64Array[], fieldStarts: readonly number[], count: number): void {
    for (let f = 0; f < this.centered.length; f++) {
      if (!this.centered[f]) continue;
      const xs = fieldValues[f]!;
      const at = fieldStarts[f]!;
      let sum = 0;
      let n = 0;
      let min = Infinity;
      let max = -Infinity;
      let integers = true;
      for (let k = 0; k < count; k++) {
        const x = xs[at + k]!;
        if (x !== x || this.eventTiles[k] !== this.eventTiles[k]) continue; // no value, or before the lookback
        sum += x;
        n++;
        if (x < min) min = x;
        if (x > max) max = x;
        if (x !== Math.floor(x)) integers = false;
      }
      this.centers[f] = n === 0 ? 0 : integers ? roundHalfEven(sum / n) : min / 2 + max / 2;
    }
  }

  private reserve(rows: number): void {
    if (rows <= this.tiles.length) return;
    let length = this.tiles.length;
    while (length < rows) length *= 2;
    this.tiles = new Float64Array(length);
    this.candidates = new Int32Array(length);
    this.closeRows = new Int32Array(length);
    this.closeTs = new Float64Array(length);
    this.outTs = new Float64Array(length);
    this.outXs = new Float64Array(length);
    this.values = new Float64Array(length * this.parts.length);
    this.windows = new Float64Array(this.values.length);
  }

  /** Combine the buffered key's windows and send its samples. */
  private flush(): void {
    const m = this.rows;
    if (m === 0) return;
    const { tiles, values, parts, windows: w } = this;
    const width = parts.length;
    for (let p = 0; p < width; p++) {
      const { combine, tiles: n } = parts[p]!;
      let lo = 0;
      if (combine === 'sum') {
        // Exact integers (windowsInNode), so removing the leaving tiles before adding the new one is
        // exact too: every running total is the sum of a subset of one window.
        let total = 0;
        for (let r = 0; r < m; r++) {
          while (tiles[lo]! <= tiles[r]! - n) total -= values[lo++ * width + p]!;
          total += values[r * width + p]!;
          w[r * width + p] = total;
        }
      } else {
        // A monotonic queue of the window's candidates (O(tiles), not O(tiles x window)): a value
        // leaves it when a later one is strictly better, so among equal values (0 and -0 too) the
        // earliest stays first, the one a scan from the window's start would pick. Nulls (NaN) never enter.
        const isMax = combine === 'max';
        const queue = this.candidates;
        let head = 0;
        let tail = 0;
        for (let r = 0; r < m; r++) {
          const v = values[r * width + p]!;
          if (v === v) {
            while (tail > head && (isMax ? values[queue[tail - 1]! * width + p]! < v : values[queue[tail - 1]! * width + p]! > v)) tail--;
            queue[tail++] = r;
          }
          while (head < tail && tiles[queue[head]!]! <= tiles[r]! - n) head++;
          w[r * width + p] = head < tail ? values[queue[head]! * width + p]! : Number.NaN;
        }
      }
    }
    // The closes in range, then each feature's values there, handed over a feature at a time.
    const { from, to } = this.range;
    const { closeRows, closeTs, outTs, outXs } = this;
    let closes = 0;
    for (let r = 0; r < m; r++) {
      const ts = (tiles[r]! + 1) * this.hopMs;
      if (ts < from || ts >= to) continue;
      closeRows[closes] = r;
      closeTs[closes++] = ts;
    }
    for (let i = 0; i < this.finals.length; i++) {
      const final = this.finals[i]!;
      const at = this.starts[i]!;
      let count = 0;
      for (let c = 0; c < closes; c++) {
        const x = finalOf(final, w, closeRows[c]! * width + at);
        if (x !== x) continue;
        outTs[count] = closeTs[c]!;
        outXs[count++] = x;
      }
      if (count > 0) this.sink.samples(i, outTs, outXs, count);
    }
    this.rows = 0;
  }
}

/**
 * Each event's term (EVENT_TERMS: 1, x, x - c or (x - c)^2) added to its tile's part p; events
 * before the lookback (row < 0) and without a value add nothing. A loop per term.
 */
function sumTerms(values: Float64Array, width: number, p: number, eventRows: Int32Array, xs: Float64Array, at: number, count: number, term: number, c: number): void {
  if (term === 0) {
    for (let k = 0; k < count; k++) {
      const row = eventRows[k]!;
      const x = xs[at + k]!;
      if (row >= 0 && x === x) values[row * width + p]! += 1;
    }
  } else if (term === 1) {
    for (let k = 0; k < count; k++) {
      const row = eventRows[k]!;
      const x = xs[at + k]!;
      if (row >= 0 && x === x) values[row * width + p]! += x;
    }
  } else if (term === 2) {
    for (let k = 0; k < count; k++) {
      const row = eventRows[k]!;
      const x = xs[at + k]!;
      if (row >= 0 && x === x) values[row * width + p]! += x - c;
    }
  } else {
    for (let k = 0; k < count; k++) {
      const row = eventRows[k]!;
      const x = xs[at + k]!;
      if (row >= 0 && x === x) values[row * width + p]! += (x - c) * (x - c);
    }
  }
}

/** Each tile's min (or max) of its events' values: a value replaces a null (NaN) or a strictly worse one, so among equals the first stays. */
function extremes(values: Float64Array, width: number, p: number, eventRows: Int32Array, xs: Float64Array, at: number, count: number, isMax: boolean): void {
  for (let k = 0; k < count; k++) {
    const row = eventRows[k]!;
    const x = xs[at + k]!;
    if (row < 0 || x !== x) continue;
    const i = row * width + p;
    const current = values[i]!;
    if (current !== current || (isMax ? x > current : x < current)) values[i] = x;
  }
}

/** How many of the first `m` (ascending) values are < j: the row of tile j. */
function lowerBound(sorted: Float64Array, m: number, j: number): number {
  let lo = 0;
  let hi = m;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < j) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Row r of a text column: Utf8, or dictionary-encoded (LowCardinality). */
function textAt(col: RecordBatch['data']['children'][number], r: number): string {
  return col.dictionary ? (col.dictionary.get(col.values[col.offset + r] as number) as string) : utf8At(col, r);
}

/** Row r of a Utf8 column. */
function utf8At(col: RecordBatch['data']['children'][number], r: number): string {
  const offsets = col.valueOffsets as Int32Array;
  const at = col.offset + r;
  return DECODER.decode((col.values as Uint8Array).subarray(offsets[at]!, offsets[at + 1]!));
}

const DECODER = new TextDecoder();
