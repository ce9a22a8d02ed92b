// Tile math: which tile an event lands in, which tiles a sawtooth window reads, and how the slots
// of one tile group map to features.
import { aggregationSpec, initSlots, type Scalar, type Tile } from './aggregates.js';
import type { AggregationSpec } from './aggregations/index.js';
import { LATEST_GROUP_HOP_MS, type FeaturePlan, type TileGroupPlan, type ViewPlan } from './compile.js';

/** A feature's slots inside the tiles of one group: numeric offset and value offset. */
export interface SlotRef {
  feature: FeaturePlan;
  /** The feature's aggregation, resolved once (merges run per tile). */
  spec: AggregationSpec;
  offset: number;
  valueOffset: number;
}

/** Index of the tile [j*H, (j+1)*H) holding a time; the latest cell (hop 0) is tile 0. */
export function tileIndexOf(timeMs: number, hopMs: number): number {
  return hopMs === LATEST_GROUP_HOP_MS ? 0 : Math.floor(timeMs / hopMs);
}

/** The features of a tile group with their slot offsets, in slot order. */
export function groupSlots(view: ViewPlan, group: TileGroupPlan): SlotRef[] {
  if (group.hopMs === LATEST_GROUP_HOP_MS) {
    return view.features.filter((f) => f.latestSlot !== null).map((f) => ({ feature: f, spec: aggregationSpec(f.agg), offset: f.latestSlot!, valueOffset: f.latestValueSlot! }));
  }
  return view.features.filter((f) => f.hopMs === group.hopMs).map((f) => ({ feature: f, spec: aggregationSpec(f.agg), offset: f.slot, valueOffset: f.valueSlot ?? 0 }));
}

/**
 * Initial slots of a tile group, to copy from: `slice()` keeps V8's unboxed double storage of
 * `nums` (an array built with NaN in it is a double array from the start). `vals` holds scalars only
 * (empty bucket counts are null), so copies share no mutable state.
 */
export interface TileTemplate {
  nums: number[];
  vals: Scalar[];
}

export function tileTemplate(slots: readonly SlotRef[], group: TileGroupPlan): TileTemplate {
  const nums: number[] = [Number.NaN];
  for (let i = 1; i < group.width; i++) nums.push(Number.NaN);
  nums.length = group.width;
  const vals: Scalar[] = new Array<Scalar>(group.valueWidth).fill(null);
  for (const s of slots) initSlots(s.feature.agg, nums, s.offset, vals, s.valueOffset);
  return { nums, vals };
}

export function emptyTile(template: TileTemplate): Tile {
  return { minTs: Number.POSITIVE_INFINITY, maxTs: Number.NEGATIVE_INFINITY, nums: template.nums.slice(), vals: template.vals.slice() };
}

/** A tile with slots of its own (a store keeps it while the original goes on). */
export function copyTile(tile: Tile): Tile {
  // bucket counts (approx_percentile) are merged in place: the copy gets maps of its own
  const vals = tile.vals.map((v) => (v instanceof Map ? new Map(v) : v));
  return { minTs: tile.minTs, maxTs: tile.maxTs, nums: tile.nums.slice(), vals };
}

/** Merge tile `from` into tile `into` (same group). */
export function mergeTileInto(into: Tile, from: Tile, slots: readonly SlotRef[]): void {
  if (from.minTs < into.minTs) into.minTs = from.minTs;
  if (from.maxTs > into.maxTs) into.maxTs = from.maxTs;
  for (const s of slots) s.spec.merge(into.nums, s.offset, into.vals, s.valueOffset, from.nums, s.offset, from.vals, s.valueOffset);
}

/**
 * Tiles older than this index may have been trimmed at watermark `watermarkMs`: a group keeps
 * the tiles that reach back `retentionMs` from the watermark. null: the group is never trimmed.
 */
export function trimTileIndex(group: TileGroupPlan, watermarkMs: number | null): number | null {
  if (group.retentionMs === null || watermarkMs === null) return null;
  return Math.floor((watermarkMs - group.retentionMs) / group.hopMs);
}

/**
 * The key under which a store keeps one series of tiles of a group: the group's hop for its own
 * tiles, `<hop>x<span>` for a rollup level (tiles of `span` times the hop).
 */
export type TileSeries = number | string;

export function tileSeries(hopMs: number, span: number | undefined): TileSeries {
  return span === undefined || span === 1 ? hopMs : `${hopMs}x${span}`;
}

/** One block of a window: tile `index` of the series with tiles of `span` group tiles. */
export interface TileBlock {
  span: number;
  index: number;
}

/**
 * The fewest aligned blocks that cover the group tiles [from, to] exactly, in time order: from
 * `from`, each step takes the largest rollup span aligned there that still fits. Reads merge these
 * blocks instead of every tile (at most worstTilesPerRead of them).
 */
export function windowBlocks(from: number, to: number, spans: readonly number[]): TileBlock[] {
  const blocks: TileBlock[] = [];
  let i = from;
  while (i <= to) {
    let span = 1;
    for (let l = spans.length - 1; l >= 0; l--) {
      const s = spans[l]!;
      if (i - Math.floor(i / s) * s === 0 && i + s - 1 <= to) {
        span = s;
        break;
      }
    }
    blocks.push({ span, index: i / span });
    i += span;
  }
  return blocks;
}

/**
 * Rollup tiles are a cache of reads: tile r of rollup level l (spans[l - 1] group tiles) is the
 * tiles one level down under it, [r * m, r * m + m - 1] with m = spans[l - 1] / spans[l - 2] (the
 * group's own tiles under level 1, m = spans[0]), the first stored (or built) one copied and the
 * others merged into it in ascending index order. A store builds one when a read needs it and keeps
 * it; a write that changes a tile under it drops it. So a rollup tile's bits depend only on the
 * group's tiles under it, on every store (README, "Rollup tiles"). Returns the level below (0: the
 * group's own tiles), its span and the first and last index under tile r of level l (1-based).
 */
export function rollupChildren(spans: readonly number[], level: number, r: number): { level: number; span: number; from: number; to: number } {
  const span = level === 1 ? 1 : spans[level - 2]!;
  const m = spans[level - 1]! / span;
  return { level: level - 1, span, from: r * m, to: r * m + m - 1 };
}

/**
 * The trim index of a rollup level at its group's trim index: a rollup tile goes (with the group's
 * tiles behind the horizon) once any tile under it is behind the horizon, so a stored rollup tile
 * is always the fold of the group's tiles under it now, whichever reads built it. A read never
 * needs one that straddles the horizon: its window would reach behind it, and is refused.
 */
export function rollupTrimIndex(groupTrimIndex: number, span: number): number {
  return Math.ceil(groupTrimIndex / span);
}

/** One tile merge produced by the materializer core. */
export interface TileUpdate {
  hopMs: number;
  /** The tile's index in its group: floor(time / hopMs). Stores drop the rollup tiles over it. */
  tileIndex: number;
  /** The batch's partial aggregate for this tile; merged into the stored tile. */
  tile: Tile;
  /** Events folded into `tile`. */
  events: number;
}

/** The tile merges of one entity key of one view: stores apply them together (one key lookup, one script). */
export interface KeyTileUpdates {
  view: string;
  entityKey: string;
  tiles: TileUpdate[];
  /**
   * Effectively-once hook for the stream path: these updates hold events of one partition of
   * `source`, up to log position `offset`. A store that honours it (online/redis.ts) skips the
   * whole key update when it has already applied an update of this key from that partition at
   * `offset` or later, and records the new offset atomically with the merge. MemoryOnlineStore
   * ignores it: the embedded replay it serves never redelivers a record.
   */
  fence?: { source: string; partition: number; offset: number };
}

export interface TileBatch {
  keys: KeyTileUpdates[];
  eventCount: number;
  /** Greatest event time in the batch, or null for an empty batch. */
  maxEventTimeMs: number | null;
}
