// View-feature samples windowed in Node: featureTileSql sends each (key, tile the key had events in)
// once, with its partial aggregates, ordered by key then tile, and TileWindows combines each tile's
// sawtooth window (tiles j-n+1..j, docs/semantics.md) and computes the final value at the tile's
// close. Only where that gives the same doubles as featureSampleSql's window functions: parts whose
// window combination is exact in any order (counts; sums of fields proven to hold small integers;
// min and max), and finals that repeat the SQL's operations in its order (tile-sql.ts finalOfColumns
// over AGGREGATION_SPECS[agg].sql.final). Anything else stays on featureSampleSql.
import type { RecordBatch } from 'apache-arrow';
import type { Aggregation, FeaturePlan } from '../definitions/index.js';
import { isTiledOffline, partsOf } from './tile-sql.js';

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
 */
const FINALS: Partial<Record<Aggregation, (w: Float64Array, at: number) => number>> = {
  count: (w, at) => w[at]!,
  sum: (w, at) => w[at]! + 0,
  mean: (w, at) => (w[at] === 0 ? Number.NaN : (w[at + 1]! + 0) / w[at]!),
  min: (w, at) => w[at]!,
  max: (w, at) => w[at]!,
  var: (w, at) => varianceOf(w, at),
  stddev: (w, at) => Math.sqrt(varianceOf(w, at)),
};

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
  if (f.agg === 'count') return true;
  if (f.field === null || !exact.sums.has(f.field)) return false;
  return (f.agg !== 'var' && f.agg !== 'stddev') || exact.squares.has(f.field);
}

export interface TileWindowSink {
  /** The samples of the next key follow; `labels` are its label columns' values. */
  key(labels: readonly string[]): void;
  /** Feature `feature`'s value at tile close `ts` (ms); null values are not sent. */
  sample(feature: number, ts: number, x: number): void;
}

interface WindowPart {
  combine: 'sum' | 'min' | 'max';
  tiles: number;
}

/**
 * Combines featureTileSql's rows (columns: `labelCount` labels, then the key's tiles) into each
 * feature's value at every tile close in [from, to). Memory: one key's tiles.
 */
export class TileWindows {
  private readonly parts: WindowPart[] = [];
  /** Where each feature's parts start in `parts`. */
  private readonly starts: number[] = [];
  private readonly finals: ((w: Float64Array, at: number) => number)[];
  private readonly hopMs: number;
  private tiles = new Float64Array(1024);
  /** Scratch tile indices, as many as `tiles` (flush's min and max windows). */
  private candidates = new Int32Array(this.tiles.length);
  /** The key's tiles' part values, part p of tile r at r * parts + p (NaN: null). */
  private values: Float64Array;
  /** The window values, laid out as `values`. */
  private windows: Float64Array;
  private rows = 0;

  constructor(
    features: readonly FeaturePlan[],
    private readonly labelCount: number,
    private readonly range: { from: number; to: number },
    private readonly sink: TileWindowSink,
  ) {
    for (const [i, f] of features.entries()) {
      this.starts.push(this.parts.length);
      for (const p of partsOf(f, i)) {
        const combine = p.combine === 'compensatedSum' ? 'sum' : p.combine;
        if (combine !== 'sum' && combine !== 'min' && combine !== 'max') throw new Error(`TileWindows: ${f.name} has a ${p.combine} part`);
        this.parts.push({ combine, tiles: f.tilesPerWindow! });
      }
    }
    this.finals = features.map((f) => {
      const final = FINALS[f.agg];
      if (!final) throw new Error(`TileWindows: no final for ${f.agg}`);
      return final;
    });
    this.hopMs = features[0]!.hopMs;
    this.values = new Float64Array(this.tiles.length * this.parts.length);
    this.windows = new Float64Array(this.values.length);
  }

  /** Add one batch of featureTileSql's rows (one per key). */
  add(batch: RecordBatch): void {
    const n = batch.numRows;
    if (n === 0) return;
    const cols = batch.data.children;
    const labelCols = cols.slice(0, this.labelCount);
    const list = cols[this.labelCount]!;
    const struct = list.children[0]!;
    const fields = struct.children;
    const width = this.parts.length;
    if (fields.length !== width + 1) throw new Error(`TileWindows: ${fields.length - 1} part columns, expected ${width}`);
    // IPC batches are not sliced: a tile's fields are at the same index as the tile.
    if (struct.offset !== 0 || fields.some((f) => f.offset !== 0)) throw new Error('TileWindows: sliced tile arrays');
    const j = fields[0]!.values as Float64Array;
    const offsets = list.valueOffsets as Int32Array;
    // Per part, its values and its validity bitmap (null when it has no nulls), read once per
    // batch: Arrow's nullCount getter costs more than the copy it guards.
    const partValues = fields.slice(1).map((f) => f.values as Float64Array);
    const partNulls = fields.slice(1).map((f) => (f.nullCount === 0 ? null : f.nullBitmap!));
    for (let r = 0; r < n; r++) {
      this.sink.key(labelCols.map((c) => (c.dictionary ? (c.dictionary.get(c.values[c.offset + r] as number) as string) : utf8At(c, r))));
      const start = offsets[list.offset + r]!;
      const end = offsets[list.offset + r + 1]!;
      this.reserve(end - start);
      for (let k = start; k < end; k++) {
        const row = k - start;
        this.tiles[row] = j[k]!;
        const at = row * width;
        for (let p = 0; p < width; p++) {
          const nulls = partNulls[p]!;
          this.values[at + p] = nulls === null || ((nulls[k >> 3]! >> (k & 7)) & 1) === 1 ? partValues[p]![k]! : Number.NaN;
        }
      }
      this.rows = end - start;
      this.flush();
    }
  }

  private reserve(rows: number): void {
    if (rows <= this.tiles.length) return;
    let length = this.tiles.length;
    while (length < rows) length *= 2;
    this.tiles = new Float64Array(length);
    this.candidates = new Int32Array(length);
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
    const { from, to } = this.range;
    for (let r = 0; r < m; r++) {
      const ts = (tiles[r]! + 1) * this.hopMs;
      if (ts < from || ts >= to) continue;
      for (let i = 0; i < this.finals.length; i++) {
        const x = this.finals[i]!(w, r * width + this.starts[i]!);
        if (x === x) this.sink.sample(i, ts, x);
      }
    }
    this.rows = 0;
  }
}

/** Row r of a Utf8 column. */
function utf8At(col: RecordBatch['data']['children'][number], r: number): string {
  const offsets = col.valueOffsets as Int32Array;
  const at = col.offset + r;
  return DECODER.decode((col.values as Uint8Array).subarray(offsets[at]!, offsets[at + 1]!));
}

const DECODER = new TextDecoder();
