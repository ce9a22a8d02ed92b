// Read-time window merging, shared by every OnlineStore: the sawtooth window at t is the W/H whole
// tiles before the tile holding t plus that tile cut at t. A tile holding events both before and at
// or after t cannot be cut, so such a read is refused rather than answered wrongly.
import {
  aggregationSpec,
  emptyTile,
  formatDurationMs,
  groupSlots,
  LATEST_GROUP_HOP_MS,
  TidemarkError,
  tileSeries,
  tileTemplate,
  trimTileIndex,
  windowBlocks,
  type AggregationSpec,
  type FeaturePlan,
  type Scalar,
  type Tile,
  type TileBlock,
  type TileValue,
  type TileGroupPlan,
  type TileSeries,
  type ViewPlan,
} from '../definitions/index.js';
import { closedSeries, type ClosedWindows, type KeyTiles, type TileRange } from './store.js';

/** Feast's field statuses. */
export type FeatureStatus = 'PRESENT' | 'NULL_VALUE' | 'NOT_FOUND' | 'OUTSIDE_MAX_AGE';

export interface FeatureValue {
  value: Scalar;
  status: FeatureStatus;
  /** Greatest event time among the events behind the value, or null when there are none. */
  eventTimeMs: number | null;
}

/** The tile ranges reading `features` at t needs (for stores that fetch ranges), coalesced per series. */
export function tileRangesFor(
  view: ViewPlan,
  features: readonly FeaturePlan[],
  tMs: number,
  watermarkMs: number | null,
  /** The history tiles of `last` without window: by default only for a time at or before the watermark (see needsHistory). */
  history: 'auto' | 'always' = 'auto',
): TileRange[] {
  const wide = new Map<number, TileRange>();
  const widen = (hopMs: number, fromIndex: number, toIndex: number): void => {
    const r = wide.get(hopMs);
    if (!r) wide.set(hopMs, { hopMs, fromIndex, toIndex });
    else {
      r.fromIndex = Math.min(r.fromIndex, fromIndex);
      r.toIndex = Math.max(r.toIndex, toIndex);
    }
  };
  // Tiles wanted by index, per series.
  const wanted = new Map<TileSeries, { hopMs: number; span: number; indexes: Set<number> }>();
  const want = (hopMs: number, span: number, index: number): void => {
    const series = tileSeries(hopMs, span);
    let w = wanted.get(series);
    if (!w) wanted.set(series, (w = { hopMs, span, indexes: new Set() }));
    w.indexes.add(index);
  };
  // Windowed features: the head tile, and their group's closed windows at it (see ClosedWindows);
  // in a group where one of them reaches behind the retention horizon (evaluation refuses it), the
  // blocks' tiles instead, so the others still answer.
  const closedHeads = new Map<number, number>();
  const behindHorizon = new Set<number>();
  for (const f of features) {
    const head = Math.floor(tMs / f.hopMs);
    if (f.windowMs !== null) {
      want(f.hopMs, 1, head);
      closedHeads.set(f.hopMs, head);
      const trim = trimTileIndex(groupOf(view, f.hopMs), watermarkMs);
      if (trim !== null && head - f.tilesPerWindow! < trim) behindHorizon.add(f.hopMs);
    } else {
      widen(LATEST_GROUP_HOP_MS, 0, 0);
      // After the watermark the latest cell answers alone (every materialized time is before t):
      // the history tiles are read only for a time in the past, or when needsHistory says so.
      if (history === 'auto' && watermarkMs !== null && tMs > watermarkMs) continue;
      const group = groupOf(view, f.hopMs);
      const floor = f.ttlMs !== null ? Math.floor((tMs - f.ttlMs) / f.hopMs) : (trimTileIndex(group, watermarkMs) ?? head);
      widen(f.hopMs, Math.min(floor, head), head);
    }
  }
  for (const f of features) {
    if (f.windowMs !== null && behindHorizon.has(f.hopMs)) for (const b of windowOf(view, f, closedHeads.get(f.hopMs)!)) want(f.hopMs, b.span, b.index);
  }
  const ranges = [...wide.values()];
  for (const { hopMs, span, indexes } of wanted.values()) {
    // a group's own tiles inside a history range are read by it already
    const covering = span === 1 ? wide.get(hopMs) : undefined;
    const sorted = [...indexes].filter((j) => !covering || j < covering.fromIndex || j > covering.toIndex).sort((a, b) => a - b);
    if (sorted.length === 0) continue;
    let from = sorted[0]!;
    for (let i = 1; i <= sorted.length; i++) {
      if (i < sorted.length && sorted[i] === sorted[i - 1]! + 1) continue;
      const range: TileRange = { hopMs, fromIndex: from, toIndex: sorted[i - 1]! };
      if (span !== 1) range.span = span;
      ranges.push(range);
      from = sorted[i]!;
    }
  }
  for (const [hopMs, head] of closedHeads) if (!behindHorizon.has(hopMs)) ranges.push({ hopMs, fromIndex: head, toIndex: head, closed: true });
  return ranges;
}

/** The last blocks computed per feature: a read of many keys at one time computes them once. */
const blocksMemo = new WeakMap<FeaturePlan, { head: number; blocks: ReadBlock[] }>();

/** A window block with the series key its tile is stored under. */
interface ReadBlock extends TileBlock {
  series: TileSeries;
}

/** The blocks of a windowed feature's whole tiles before the head tile: [head - W/H, head - 1]. */
function windowOf(view: ViewPlan, feature: FeaturePlan, head: number): ReadBlock[] {
  const memo = blocksMemo.get(feature);
  if (memo && memo.head === head) return memo.blocks;
  const blocks = windowBlocks(head - feature.tilesPerWindow!, head - 1, groupOf(view, feature.hopMs).rollups).map((b) => ({ ...b, series: tileSeries(feature.hopMs, b.span) }));
  blocksMemo.set(feature, { head, blocks });
  return blocks;
}

/** Tiles a windowed read of `feature` at t merges: the head tile plus its window's blocks. */
export function tilesPerRead(view: ViewPlan, feature: FeaturePlan, tMs: number): number {
  if (feature.windowMs === null) throw new Error(`${view.name}:${feature.name} has no window`);
  return 1 + windowOf(view, feature, Math.floor(tMs / feature.hopMs)).length;
}

/**
 * Whether a key's `last` features without window need their history tiles at t: their latest cell
 * holds a value at or after t (written after the read took the watermark it chose t from), so the
 * value at t lies in the history tiles, which tileRangesFor leaves out after the watermark.
 */
export function needsHistory(features: readonly FeaturePlan[], keyTiles: KeyTiles | null, tMs: number): boolean {
  const cell = keyTiles?.get(LATEST_GROUP_HOP_MS)?.get(0);
  if (!cell || cell.minTs >= tMs) return false;
  return features.some((f) => f.windowMs === null && cell.nums[f.latestSlot!]! >= tMs);
}

function groupOf(view: ViewPlan, hopMs: number): TileGroupPlan {
  return view.groups.find((g) => g.hopMs === hopMs)!;
}

function beforeRetention(view: ViewPlan, feature: FeaturePlan, tMs: number, oldestIndex: number): TidemarkError {
  const retention = groupOf(view, feature.hopMs).retentionMs ?? 0;
  return new TidemarkError(
    'TM_READ_BEFORE_RETENTION',
    `${view.name}:${feature.name} at ${new Date(tMs).toISOString()} needs tiles from ${new Date(oldestIndex * feature.hopMs).toISOString()}, older than the online store keeps for it (${formatDurationMs(retention)} behind the watermark); read it from the offline store`,
    { feature: `${view.name}:${feature.name}`, at: tMs },
  );
}

function insideOpenTile(view: ViewPlan, feature: FeaturePlan, tMs: number, tile: Tile, hopMs: number): TidemarkError {
  const start = Math.floor(tMs / hopMs) * hopMs;
  return new TidemarkError(
    'TM_READ_INSIDE_OPEN_TILE',
    `${view.name}:${feature.name} at ${new Date(tMs).toISOString()} falls inside tile [${new Date(start).toISOString()}, +${hopMs} ms), which holds events both before and at or after that time (up to ${new Date(tile.maxTs).toISOString()}); the online store cannot cut a tile, so read at a tile edge, at or after the store clock, or from the offline store`,
    { feature: `${view.name}:${feature.name}`, at: tMs, tileStartMs: start, hopMs },
  );
}

/** Whether a head tile counts whole (true), not at all (false), or cannot be cut at t (throws). */
function headTileUsable(view: ViewPlan, feature: FeaturePlan, tile: Tile, tMs: number, hopMs: number): boolean {
  if (tile.maxTs < tMs) return true;
  if (tile.minTs >= tMs) return false;
  throw insideOpenTile(view, feature, tMs, tile, hopMs);
}

/**
 * The value of one feature for one key at time t from its stored tiles. `watermarkMs` bounds what
 * may have been trimmed; reads that would need trimmed tiles are refused.
 */
export function evaluateFeature(view: ViewPlan, feature: FeaturePlan, keyTiles: KeyTiles | null, tMs: number, watermarkMs: number | null): FeatureValue {
  return evaluateFeatures(view, [feature], keyTiles, tMs, watermarkMs)[0]!;
}

/**
 * The values of several features of one view for one key at time t, in the order given. Windowed
 * features of one hop share one walk over their tiles.
 */
export function evaluateFeatures(view: ViewPlan, features: readonly FeaturePlan[], keyTiles: KeyTiles | null, tMs: number, watermarkMs: number | null): FeatureValue[] {
  const out: FeatureValue[] = new Array(features.length);
  const windowedByHop = new Map<number, number[]>();
  features.forEach((feature, i) => {
    if (feature.windowMs === null) {
      const group = groupOf(view, feature.hopMs);
      out[i] = evaluateLatest(view, feature, group, keyTiles, tMs, trimTileIndex(group, watermarkMs));
    } else {
      const list = windowedByHop.get(feature.hopMs);
      if (list) list.push(i);
      else windowedByHop.set(feature.hopMs, [i]);
    }
  });
  for (const [hopMs, indexes] of windowedByHop) {
    evaluateWindows(view, hopMs, indexes.map((i) => features[i]!), keyTiles, tMs, trimTileIndex(groupOf(view, hopMs), watermarkMs)).forEach((v, k) => {
      out[indexes[k]!] = v;
    });
  }
  return out;
}

/**
 * Windowed features of one hop: per feature, its window's blocks (the group's tiles and rollup
 * tiles, see windowBlocks) merged newest first, or the group's closed windows at the head tile when
 * the store answered with them (the same fold, done by the store); then the head tile if it counts.
 */
function evaluateWindows(view: ViewPlan, hopMs: number, features: readonly FeaturePlan[], keyTiles: KeyTiles | null, tMs: number, trimIndex: number | null): FeatureValue[] {
  const head = Math.floor(tMs / hopMs);
  features.forEach((f) => {
    const first = head - f.tilesPerWindow!;
    if (trimIndex !== null && first < trimIndex) throw beforeRetention(view, f, tMs, first);
  });
  const tiles = keyTiles?.get(hopMs);
  const headTile = tiles?.get(head);
  const useHead = headTile !== undefined && headTileUsable(view, features[0]!, headTile, tMs, hopMs);
  const closed = keyTiles?.get(closedSeries(hopMs))?.get(head) as ClosedWindows | undefined;
  const groupFeatures = groupOf(view, hopMs).features;
  return features.map((f) => {
    const spec = aggregationSpec(f.agg);
    const valueSlot = f.valueSlot ?? 0;
    let acc: FeatureAccumulator;
    if (keyTiles === null) acc = initialAccumulator(spec);
    else if (closed !== undefined) {
      const eventTimeMs = closed.eventTimes[groupFeatures.indexOf(f.name)]!;
      acc = { nums: closed.nums.slice(f.slot, f.slot + spec.width), vals: [f.valueSlot === null ? null : ownValue(closed.vals[f.valueSlot]!)], eventTimeMs: Number.isNaN(eventTimeMs) ? null : eventTimeMs };
    } else acc = foldWindow(view, f, keyTiles, head);
    if (useHead) mergeIntoAccumulator(acc, spec, headTile!, f.slot, valueSlot);
    const value = spec.finalize(acc.nums, 0, acc.vals, 0, f);
    return { value, status: keyTiles === null ? 'NOT_FOUND' : value === null ? 'NULL_VALUE' : 'PRESENT', eventTimeMs: acc.eventTimeMs };
  });
}

/** Bucket counts are merged in place: an accumulator gets its own (a read never writes into a tile it decoded). */
function ownValue(v: TileValue): TileValue {
  return v instanceof Map ? new Map(v) : v;
}

/** One feature's slots being merged (at offset 0), with the greatest event time merged so far. */
interface FeatureAccumulator {
  nums: number[];
  vals: TileValue[];
  eventTimeMs: number | null;
}

function initialAccumulator(spec: AggregationSpec): FeatureAccumulator {
  // Accumulators start as double arrays (filled with NaN) so merges stay unboxed.
  const nums = new Array<number>(spec.width).fill(Number.NaN);
  const vals: TileValue[] = [null];
  spec.init(nums, 0, vals, 0);
  return { nums, vals, eventTimeMs: null };
}

function mergeIntoAccumulator(acc: FeatureAccumulator, spec: AggregationSpec, tile: Tile, slot: number, valueSlot: number): void {
  spec.merge(acc.nums, 0, acc.vals, 0, tile.nums, slot, tile.vals, valueSlot);
  if (acc.eventTimeMs === null || tile.maxTs > acc.eventTimeMs) acc.eventTimeMs = tile.maxTs;
}

/** A windowed feature's blocks before the head tile, merged newest first from the initial slots. */
function foldWindow(view: ViewPlan, f: FeaturePlan, keyTiles: KeyTiles, head: number): FeatureAccumulator {
  const spec = aggregationSpec(f.agg);
  const acc = initialAccumulator(spec);
  const tiles = keyTiles.get(f.hopMs);
  const blocks = windowOf(view, f, head);
  for (let b = blocks.length - 1; b >= 0; b--) {
    const block = blocks[b]!;
    const tile = block.span === 1 ? tiles?.get(block.index) : keyTiles.get(block.series)?.get(block.index);
    if (tile !== undefined) mergeIntoAccumulator(acc, spec, tile, f.slot, f.valueSlot ?? 0);
  }
  return acc;
}

/**
 * Window blocks per feature of a group (in slot order) at a head tile, in the order evaluation
 * merges them (newest first): what a store needs to fold a group's closed windows itself. Features
 * without window get none.
 */
export function closedWindowBlocks(view: ViewPlan, hopMs: number, head: number): { feature: FeaturePlan; blocks: { span: number; index: number }[] }[] {
  return groupOf(view, hopMs).features.map((name) => {
    const feature = view.features.find((f) => f.name === name)!;
    return { feature, blocks: feature.windowMs === null ? [] : windowOf(view, feature, head).slice().reverse() };
  });
}

/** A group's closed windows at a head tile folded here, as a store folds them (tests compare the two). */
export function foldClosedWindows(view: ViewPlan, hopMs: number, keyTiles: KeyTiles, head: number): ClosedWindows {
  const group = groupOf(view, hopMs);
  const tile = emptyTile(tileTemplate(groupSlots(view, group), group));
  const eventTimes: number[] = [];
  for (const { feature } of closedWindowBlocks(view, hopMs, head)) {
    const acc = feature.windowMs === null ? null : foldWindow(view, feature, keyTiles, head);
    eventTimes.push(acc?.eventTimeMs ?? Number.NaN);
    if (acc === null) continue;
    acc.nums.forEach((x, i) => (tile.nums[feature.slot + i] = x));
    if (feature.valueSlot !== null) tile.vals[feature.valueSlot] = acc.vals[0]!;
  }
  return { ...tile, eventTimes };
}

function evaluateLatest(
  view: ViewPlan,
  feature: FeaturePlan,
  group: TileGroupPlan,
  keyTiles: KeyTiles | null,
  tMs: number,
  trimIndex: number | null,
): FeatureValue {
  const cell = keyTiles?.get(LATEST_GROUP_HOP_MS)?.get(0);
  if (!keyTiles || !cell) return { value: null, status: 'NOT_FOUND', eventTimeMs: null };
  const latestTs = cell.nums[feature.latestSlot!]!; // NaN: no non-null value ever
  let candidate: { ts: number; value: Scalar } | null = null;
  if (Number.isNaN(latestTs) || cell.minTs >= tMs) {
    candidate = null; // no non-null value ever, or no event of this key before t
  } else if (latestTs < tMs) {
    candidate = { ts: latestTs, value: cell.vals[feature.latestValueSlot!] as Scalar };
  } else {
    // Reading the past: walk the history tiles back from the tile holding t.
    const hopMs = group.hopMs;
    const head = Math.floor(tMs / hopMs);
    const ttlFloor = feature.ttlMs !== null ? Math.floor((tMs - feature.ttlMs) / hopMs) : null;
    const keyFloor = Math.floor(cell.minTs / hopMs); // no event of this key before this tile
    const tiles = keyTiles.get(hopMs);
    let j = head;
    for (; j >= Math.max(ttlFloor ?? keyFloor, keyFloor); j--) {
      if (trimIndex !== null && j < trimIndex) throw beforeRetention(view, feature, tMs, j);
      const tile = tiles?.get(j);
      if (tile === undefined) continue;
      if (j === head && !headTileUsable(view, feature, tile, tMs, hopMs)) continue;
      const ts = tile.nums[feature.slot]!;
      if (!Number.isNaN(ts)) {
        candidate = { ts, value: tile.vals[feature.valueSlot!] as Scalar };
        break;
      }
    }
  }
  if (candidate === null) return { value: null, status: 'NULL_VALUE', eventTimeMs: null };
  if (feature.ttlMs !== null && candidate.ts < tMs - feature.ttlMs) {
    return { value: null, status: 'OUTSIDE_MAX_AGE', eventTimeMs: candidate.ts };
  }
  return { value: candidate.value, status: candidate.value === null ? 'NULL_VALUE' : 'PRESENT', eventTimeMs: candidate.ts };
}
