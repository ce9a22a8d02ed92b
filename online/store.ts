// The OnlineStore interface: stores keep tiles and apply tile batches; read-time window merging
// (online/read.ts) is shared by every store, so every store answers with the same values.
import type { Tile, TileBatch, TileSeries } from '../definitions/index.js';

/**
 * The stored tiles of one entity key of one view: tile series (a group's hop in ms, or
 * `<hop>x<span>` for one of its rollup levels, see tileSeries) -> tile index -> tile.
 */
export type KeyTiles = ReadonlyMap<TileSeries, ReadonlyMap<number, Tile>>;

/** Tiles a read needs from one series of a group, inclusive; a series may have several ranges. */
export interface TileRange {
  hopMs: number;
  /** Rollup span: absent or 1 for the group's own tiles. */
  span?: number;
  fromIndex: number;
  toIndex: number;
  /**
   * Instead of tiles: the group's closed windows at head tile `fromIndex` (= toIndex), a
   * ClosedWindows stored under closedSeries(hopMs). A store that fetches ranges must answer it (or
   * return the window blocks' tiles instead, which evaluation folds the same way).
   */
  closed?: true;
}

/**
 * The closed part of every windowed feature of a group at one head tile: in each feature's slots,
 * the merge of its window's blocks before the head, folded newest first from the group's initial
 * slots exactly as evaluation folds them, so a read merges this and the head tile only.
 */
export interface ClosedWindows extends Tile {
  /** Per feature of the group in slot order: the greatest event time among its blocks, NaN for none. */
  eventTimes: readonly number[];
}

/** The KeyTiles series of a group's closed windows (keyed by their head tile index). */
export function closedSeries(hopMs: number): TileSeries {
  return `${hopMs}c`;
}

export interface ApplyResult {
  /** Tile updates merged into the store. */
  appliedUpdates: number;
  /**
   * (event, tile group) pairs whose tile lay behind the retention horizon of the watermark before
   * the batch: those events only reach the offline store. An event late for every group of its
   * views counts once per group.
   */
  lateTileEvents: number;
}

export interface StoreStats {
  keys: Record<string, number>;
  tiles: number;
  watermarkMs: number | null;
}

export interface OnlineStore {
  /** Merge a batch of tile updates; the watermark becomes the batch's greatest event time if later. */
  apply(batch: TileBatch): Promise<ApplyResult>;
  /** Tiles of several keys of one view (null for a key never seen), at least covering `ranges`. */
  readTiles(view: string, entityKeys: readonly string[], ranges: readonly TileRange[]): Promise<(KeyTiles | null)[]>;
  /**
   * Optional: the watermark and the tiles of a read in one step, the ranges computed from the
   * watermark by `rangesAt`. The tiles hold at least every event the watermark covers. Without it,
   * a read calls watermarkMs() and then readTiles() (readWithWatermark below).
   */
  readAtWatermark?(view: string, entityKeys: readonly string[], rangesAt: (watermarkMs: number | null) => readonly TileRange[]): Promise<{ watermarkMs: number | null; tiles: (KeyTiles | null)[] }>;
  /** Greatest event time materialized so far, or null before the first event. */
  watermarkMs(): Promise<number | null>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
}

/** A store's read with the watermark it was taken at: readAtWatermark when the store has it. */
export function readWithWatermark(
  store: OnlineStore,
  view: string,
  entityKeys: readonly string[],
  rangesAt: (watermarkMs: number | null) => readonly TileRange[],
): Promise<{ watermarkMs: number | null; tiles: (KeyTiles | null)[] }> {
  return store.readAtWatermark ? store.readAtWatermark(view, entityKeys, rangesAt) : readAfterWatermark(store, view, entityKeys, rangesAt);
}

/** The watermark, then the tiles at the ranges it gives: the tiles hold at least what it covers. */
export async function readAfterWatermark(
  store: Pick<OnlineStore, 'watermarkMs' | 'readTiles'>,
  view: string,
  entityKeys: readonly string[],
  rangesAt: (watermarkMs: number | null) => readonly TileRange[],
): Promise<{ watermarkMs: number | null; tiles: (KeyTiles | null)[] }> {
  const watermarkMs = await store.watermarkMs();
  return { watermarkMs, tiles: await store.readTiles(view, entityKeys, rangesAt(watermarkMs)) };
}

/** How reads pick their time when the request names none (docs/semantics.md, Online reads). */
export type StoreClock = 'wall' | 'watermark';

/**
 * The read time of a store clock. Watermark: greatest materialized event time + 1 ms, so every
 * materialized event is visible. Wall: wall time, but never before the watermark + 1 ms, so an event
 * stamped slightly in the future (clock skew) is visible rather than leaving its tile half-readable.
 */
export function storeClockMs(clock: StoreClock, watermarkMs: number | null, nowMs: number = Date.now()): number {
  if (watermarkMs === null) return nowMs;
  return clock === 'watermark' ? watermarkMs + 1 : Math.max(nowMs, watermarkMs + 1);
}
