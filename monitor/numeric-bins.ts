// Numeric samples binned in Node: they stream out of ClickHouse as Arrow batches (one row per
// distinct (feature, bucket, value, slice labels) with its count, numericSamplesSql), or come from
// view features windowed in Node (countGroupSamples), and each is counted in the 'all' series and
// in one series per slice definition, in the fine bin of that series' reference edges. The bin is
// the number of fine edges <= x (0 without edges, or for NaN), which is what the ASOF join on the
// greatest edge <= x gave (equal edges keep their greatest index there). Memory: buckets x series x
// bins, never rows.
import type { RecordBatch } from 'apache-arrow';
import type { MonitorPlan } from '../definitions/index.js';
import { TileWindows, tileFieldsOf, type OfflineExecutor } from '../offline/index.js';
import { handled } from './promises.js';
import { ALL_SLICE, FINE_BIN_PROBABILITIES, FINE_BINS, profileKey, type NodeWindowGroup, type NumericSampling } from './drift-sql.js';

/** Counts per (bucket, feature x slice key, fine bin) of the numeric samples in the batches added. */
export class NumericBinCounter {
  protected readonly keys: string[] = [];
  private readonly ids = new Map<string, number>();
  /** Each series' fine edges at id * EDGES, `edgeCounts[id]` of them (0: no reference). */
  private edges = new Float64Array(64 * EDGES);
  private edgeCounts = new Int32Array(64);
  /** Per series: its smallest edge, the slot scale (see slotOf), and per slot s the number of edges in slots below s (at id * (SLOTS + 1) + s). */
  private slotLow = new Float64Array(64);
  private slotScale = new Float64Array(64);
  private slotStarts = new Uint8Array(64 * (SLOTS + 1));
  /** Per bucket: counts at id * FINE_BINS + bin. */
  private readonly byBucket = new Map<number, Float64Array>();
  /** tally()'s last bucket and its counts (reset when the series grow: the arrays are replaced). */
  private lastBucket = Number.NaN;
  private lastCounts: Float64Array = new Float64Array(0);
  /** Series id of each feature's 'all' slice, by fid. */
  private readonly allIds: Int32Array;

  constructor(
    private readonly plan: MonitorPlan,
    /** The fine edges of a (feature, slice), or null when it has no reference. */
    private readonly edgesOf: (feature: string, slice: string) => ArrayLike<number> | null,
  ) {
    this.allIds = Int32Array.from(plan.features, (f) => this.seriesId(f.name, ALL_SLICE));
  }

  private seriesId(feature: string, slice: string): number {
    const key = profileKey(feature, slice);
    let id = this.ids.get(key);
    if (id !== undefined) return id;
    id = this.keys.length;
    this.keys.push(key);
    this.ids.set(key, id);
    if (id >= this.edgeCounts.length) {
      const edges = new Float64Array(this.edges.length * 2);
      edges.set(this.edges);
      this.edges = edges;
      const counts = new Int32Array(this.edgeCounts.length * 2);
      counts.set(this.edgeCounts);
      this.edgeCounts = counts;
      this.slotLow = grown(this.slotLow, counts.length);
      this.slotScale = grown(this.slotScale, counts.length);
      const starts = new Uint8Array(counts.length * (SLOTS + 1));
      starts.set(this.slotStarts);
      this.slotStarts = starts;
      for (const [b, c] of this.byBucket) this.byBucket.set(b, grown(c, counts.length * FINE_BINS));
      this.lastBucket = Number.NaN;
    }
    const edges = this.edgesOf(feature, slice);
    if (edges && edges.length > EDGES) throw new Error(`a numeric profile has ${edges.length} fine edges, more than ${EDGES}`);
    if (edges && edges.length > 0) {
      this.edges.set(Array.from(edges), id * EDGES);
      this.edgeCounts[id] = edges.length;
      const low = edges[0]!;
      const scale = SLOTS / (edges[edges.length - 1]! - low);
      this.slotLow[id] = low;
      this.slotScale[id] = scale;
      const starts = this.slotStarts;
      const at = id * (SLOTS + 1);
      for (let e = 0; e < edges.length; e++) starts[at + slotOf(edges[e]!, low, scale) + 1]! += 1;
      for (let slot = 1; slot <= SLOTS; slot++) starts[at + slot]! += starts[at + slot - 1]!;
    }
    return id;
  }

  private bucketCounts(bucket: number): Float64Array {
    let c = this.byBucket.get(bucket);
    if (!c) this.byBucket.set(bucket, (c = new Float64Array(this.edgeCounts.length * FINE_BINS)));
    return c;
  }

  /** Count the rows of one batch of numericSamplesSql (columns fid, b, x, s0.., c). */
  add(batch: RecordBatch): void {
    const n = batch.numRows;
    if (n === 0) return;
    const cols = batch.data.children;
    const fid = cols[0]!.values as Uint16Array;
    const fidOff = cols[0]!.offset;
    const b = cols[1]!.values as Float64Array;
    const bOff = cols[1]!.offset;
    const x = cols[2]!.values as Float64Array;
    const xOff = cols[2]!.offset;
    const weightCol = cols[3 + this.plan.slices.length]!;
    const weight = weightCol.values as Float64Array;
    const weightOff = weightCol.offset;
    const nFeatures = this.plan.features.length;
    const allIds = this.allIds;
    // Per slice definition: the dictionary indices, and (fid, index) -> series id, filled as met.
    const nSlices = this.plan.slices.length;
    const indices: Int32Array[] = [];
    const offsets: number[] = [];
    const tables: Int32Array[] = [];
    const dictLengths: number[] = [];
    for (let i = 0; i < nSlices; i++) {
      const col = cols[3 + i]!;
      indices.push(col.values as Int32Array);
      offsets.push(col.offset);
      dictLengths.push(col.dictionary!.length);
      tables.push(new Int32Array(nFeatures * col.dictionary!.length).fill(-1));
    }
    for (let r = 0; r < n; r++) {
      const bucket = b[bOff + r]!;
      const f = fid[fidOff + r]!;
      const v = x[xOff + r]!;
      const c = weight[weightOff + r]!;
      let id = allIds[f]!;
      for (let s = -1; s < nSlices; s++) {
        if (s >= 0) {
          const index = indices[s]![offsets[s]! + r]!;
          const slot = f * dictLengths[s]! + index;
          id = tables[s]![slot]!;
          if (id < 0) {
            id = this.seriesId(this.plan.features[f]!.name, cols[3 + s]!.dictionary!.get(index) as string);
            tables[s]![slot] = id;
          }
        }
        this.tally(bucket, id, v, c);
      }
    }
  }

  /** Count `c` samples of value v in bucket `bucket` of series `id`. */
  protected tally(bucket: number, id: number, v: number, c: number): void {
    if (bucket !== this.lastBucket) {
      this.lastBucket = bucket;
      this.lastCounts = this.bucketCounts(bucket);
    }
    this.lastCounts[id * FINE_BINS + this.binOf(id, v)]! += c;
  }

  /**
   * The number of series `id`'s fine edges <= v (as psi.ts binIndex; 0 for NaN). Edges in slots
   * below v's slot are below v and those above are above it (slotOf is monotone), so only v's
   * slot's edges are searched: one or two steps instead of seven for 99 edges.
   */
  private binOf(id: number, v: number): number {
    const len = this.edgeCounts[id]!;
    if (len === 0) return 0;
    const edges = this.edges;
    const base = id * EDGES;
    if (!(v >= edges[base]!)) return 0;
    if (v >= edges[base + len - 1]!) return len;
    const slots = id * (SLOTS + 1) + slotOf(v, this.slotLow[id]!, this.slotScale[id]!);
    let at = base + this.slotStarts[slots]!;
    let n = this.slotStarts[slots + 1]! - this.slotStarts[slots]!;
    while (n > 0) {
      const half = n >>> 1;
      if (edges[at + half]! <= v) {
        at += half + 1;
        n -= half + 1;
      } else n = half;
    }
    return at - base;
  }

  /** The series of feature `fid` (its index in the plan) for a sample with these slice labels: 'all', then one per slice definition. */
  seriesOf(fid: number, labels: readonly string[]): Int32Array {
    const feature = this.plan.features[fid]!.name;
    return Int32Array.from([this.allIds[fid]!, ...labels.map((label) => this.seriesId(feature, label))]);
  }

  /** Count samples xs[k] at times ts[k] (k < count), each in bucket intDiv(ts - origin, interval), in each of `series` (from seriesOf). */
  countSeries(series: Int32Array, ts: Float64Array, xs: Float64Array, count: number, origin: number, interval: number): void {
    for (let k = 0; k < count; k++) {
      const bucket = intDiv(ts[k]! - origin, interval);
      for (let s = 0; s < series.length; s++) this.tally(bucket, series[s]!, xs[k]!, 1);
    }
  }

  /** The counts: per bucket, per feature x slice key, the counts per fine bin (series without samples in a bucket are absent). */
  buckets(): Map<number, Map<string, Float64Array>> {
    const out = new Map<number, Map<string, Float64Array>>();
    for (const [bucket, counts] of this.byBucket) {
      const keys = new Map<string, Float64Array>();
      this.keys.forEach((key, id) => {
        const arr = counts.subarray(id * FINE_BINS, (id + 1) * FINE_BINS);
        if (arr.some((c) => c !== 0)) keys.set(key, arr.slice());
      });
      out.set(bucket, keys);
    }
    return out;
  }
}

/** At most this many fine edges per series (a numeric profile has FINE_BINS - 1). */
const EDGES = FINE_BIN_PROBABILITIES.length;

/** Equal slots between a series' smallest and largest edge, to find a value's bin among few edges. */
const SLOTS = 256;

/** The slot of v in [low, low + SLOTS / scale]: monotone in v (IEEE subtraction, multiplication and floor are), NaN (infinite edges) to 0. */
function slotOf(v: number, low: number, scale: number): number {
  const slot = Math.floor((v - low) * scale);
  return slot >= 0 ? (slot < SLOTS ? slot : SLOTS - 1) : 0;
}

function grown(counts: Float64Array, length: number): Float64Array<ArrayBuffer> {
  const out = new Float64Array(length);
  out.set(counts);
  return out;
}

/**
 * Every numeric sample of the range in `params` into a counter: the Node-windowed view features',
 * then ClickHouse's (sampling.sql). Every query is queued at once, the view groups' first: this
 * thread windows a group's events while ClickHouse runs the next queries (and a caller's queued
 * after them).
 */
export async function countAllNumericSamples(executor: OfflineExecutor, plan: MonitorPlan, sampling: NumericSampling, params: { from: number; to: number; origin: number; interval: number } & Record<string, unknown>, counter: NumericBinCounter): Promise<void> {
  const groups = sampling.groups.map((g) => handled(readBatches(executor, g.sql, params)));
  const samples = sampling.sql === null ? null : handled(readBatches(executor, sampling.sql, params));
  for (let g = 0; g < groups.length; g++) countGroupSamples(plan, sampling.groups[g]!, await groups[g]!, params, counter);
  for (const batch of (await samples) ?? []) counter.add(batch);
}

/** Every Arrow batch of a query, read whole: the executor's turn ends with the read, before this thread counts them. */
export async function readBatches(executor: OfflineExecutor, sql: string, params: Record<string, unknown>): Promise<RecordBatch[]> {
  const batches: RecordBatch[] = [];
  for await (const batch of executor.arrowBatches(sql, params)) batches.push(batch);
  return batches;
}

/** One group's events (batches of NodeWindowGroup.sql) through a TileWindows per view and hop: each sample in bucket intDiv(ts - origin, interval), in its key's series. */
export function countGroupSamples(plan: MonitorPlan, group: NodeWindowGroup, batches: readonly RecordBatch[], params: { from: number; to: number; origin: number; interval: number }, counter: NumericBinCounter): void {
  const { origin, interval } = params;
  const fields = tileFieldsOf(group.hops.flatMap((h) => h.features));
  const windows = group.hops.map((hop) => {
    let series: Int32Array[] = [];
    return new TileWindows(
      hop.features,
      plan.slices.length,
      params,
      {
        key: (labels) => {
          series = hop.fids.map((fid) => counter.seriesOf(fid, labels));
        },
        samples: (i, ts, xs, count) => counter.countSeries(series[i]!, ts, xs, count, origin, interval),
      },
      { fields, groupColumns: group.groupKeys.length, keyColumns: hop.keyColumns },
    );
  });
  for (const batch of batches) for (const w of windows) w.add(batch);
  for (const w of windows) w.end();
}

/** ClickHouse's intDiv of integers (|a| < 2^53, b > 0): the quotient rounded toward zero. */
export function intDiv(a: number, b: number): number {
  const q = Math.trunc(a / b);
  const r = a - q * b;
  if (a >= 0) return r < 0 ? q - 1 : q;
  return r > 0 ? q + 1 : q;
}

