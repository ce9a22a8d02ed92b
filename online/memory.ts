// In-memory OnlineStore: tiles in nested maps, merged on write, trimmed past the retention horizon
// when a key gets a new tile. Memory grows with keys x tiles, never with events. A read that asks
// for a group's closed windows gets them folded once per key and head tile and kept until a tile
// before that head changes, as the Redis store keeps them (README, "Closed windows"); rollup tiles
// are built by the reads that need them and dropped by writes under them, as on Redis ("Rollup
// tiles").
import {
  copyTile,
  groupSlots,
  mergeTileInto,
  rollupChildren,
  rollupTrimIndex,
  tileSeries,
  trimTileIndex,
  type Registry,
  type SlotRef,
  type Tile,
  type TileBatch,
  type TileGroupPlan,
  type TileSeries,
  type ViewPlan,
} from '../definitions/index.js';
import { closedWindowBlocks, foldClosedWindows } from './read.js';
import { closedSeries, type ApplyResult, type ClosedWindows, type KeyTiles, type OnlineStore, type StoreStats, type TileRange } from './store.js';

interface GroupState {
  plan: TileGroupPlan;
  slots: SlotRef[];
  /** Per level, its series key and span: level 0 the group's own tiles, level l its rollup level l. */
  levels: { series: TileSeries; span: number }[];
  /** Trim index of the batch being applied (from the watermark before it); null: none. */
  trimIndex: number | null;
}

interface ViewState {
  plan: ViewPlan;
  /** entity key -> tile series (a group's hop, or `<hop>x<span>` for a rollup level) -> tile index -> tile */
  tiles: Map<string, Map<TileSeries, Map<number, Tile>>>;
  groups: Map<number, GroupState>;
  /** entity key -> group hop -> its closed windows kept at a head tile (dropped when a tile before it changes) */
  closed: Map<string, Map<number, { head: number; windows: ClosedWindows }>>;
}

export class MemoryOnlineStore implements OnlineStore {
  private readonly views = new Map<string, ViewState>();
  private watermark: number | null = null;
  private tileCount = 0;

  constructor(registry: Registry) {
    for (const view of registry.views) {
      const groups = new Map<number, GroupState>();
      for (const g of view.groups) {
        const slots = groupSlots(view, g);
        const levels = [1, ...g.rollups].map((span) => ({ series: tileSeries(g.hopMs, span), span }));
        groups.set(g.hopMs, { plan: g, slots, levels, trimIndex: null });
      }
      this.views.set(view.name, { plan: view, tiles: new Map(), groups, closed: new Map() });
    }
  }

  async apply(batch: TileBatch): Promise<ApplyResult> {
    return this.applySync(batch);
  }

  /** Synchronous apply, for the embedded replay loop. */
  applySync(batch: TileBatch): ApplyResult {
    // Lateness is judged against the watermark before this batch, so a batch is never late to itself.
    for (const view of this.views.values()) for (const group of view.groups.values()) group.trimIndex = trimTileIndex(group.plan, this.watermark);
    let appliedUpdates = 0;
    let lateTileEvents = 0;
    for (const key of batch.keys) {
      const view = this.views.get(key.view);
      if (!view) throw new Error(`tile update for unknown view ${key.view}`);
      let keyTiles = view.tiles.get(key.entityKey);
      if (!keyTiles) {
        keyTiles = new Map();
        view.tiles.set(key.entityKey, keyTiles);
      }
      const closed = view.closed.get(key.entityKey);
      for (const u of key.tiles) {
        const group = view.groups.get(u.hopMs);
        if (!group) throw new Error(`tile update for unknown tile group ${key.view}/${u.hopMs}`);
        if (group.trimIndex !== null && u.tileIndex < group.trimIndex) {
          lateTileEvents += u.events;
          continue;
        }
        this.mergeTile(keyTiles, group, u.tileIndex, u.tile);
        appliedUpdates++;
        // rollup tiles are a cache that reads build (rollupTile): drop every one over the changed tile
        for (let l = 1; l < group.levels.length; l++) {
          const { series, span } = group.levels[l]!;
          keyTiles.get(series)?.delete(Math.floor(u.tileIndex / span));
        }
        const kept = closed?.get(u.hopMs);
        if (kept !== undefined && u.tileIndex < kept.head) closed!.delete(u.hopMs);
      }
    }
    if (batch.maxEventTimeMs !== null && (this.watermark === null || batch.maxEventTimeMs > this.watermark)) {
      this.watermark = batch.maxEventTimeMs;
    }
    return { appliedUpdates, lateTileEvents };
  }

  /**
   * Merge one tile into tile `index` of a group; a group that gains a tile drops its tiles behind
   * the horizon, and each rollup level its tiles over any of them (rollupTrimIndex). A tile not stored yet
   * becomes `tile` itself: the batch's tiles are fresh and owned by the batch, so they are adopted
   * rather than copied.
   */
  private mergeTile(keyTiles: Map<TileSeries, Map<number, Tile>>, group: GroupState, index: number, tile: Tile): void {
    let groupTiles = keyTiles.get(group.plan.hopMs);
    if (!groupTiles) {
      groupTiles = new Map();
      keyTiles.set(group.plan.hopMs, groupTiles);
    }
    const stored = groupTiles.get(index);
    if (stored) {
      mergeTileInto(stored, tile, group.slots);
      return;
    }
    groupTiles.set(index, tile);
    this.tileCount++;
    const trimIndex = group.trimIndex;
    if (trimIndex === null) return;
    // only the group's own tiles count in the stats (rollup tiles come and go with reads)
    this.tileCount -= trim(groupTiles, trimIndex);
    for (let l = 1; l < group.levels.length; l++) {
      const { series, span } = group.levels[l]!;
      const level = keyTiles.get(series);
      if (level) trim(level, rollupTrimIndex(trimIndex, span));
    }
  }

  /**
   * Rollup tile r of level l (1-based) of a key's group: stored, else built from the tiles one
   * level down under it (rollupChildren), each stored or built the same way, and kept; undefined
   * when no tile lies under it. As READ_SCRIPT's buildRollup does on Redis, to the bit.
   */
  private rollupTile(keyTiles: Map<TileSeries, Map<number, Tile>>, group: GroupState, l: number, r: number): Tile | undefined {
    const series = group.levels[l]!.series;
    const stored = keyTiles.get(series)?.get(r);
    if (stored) return stored;
    const below = rollupChildren(group.plan.rollups, l, r);
    const children = keyTiles.get(group.levels[below.level]!.series);
    let built: Tile | undefined;
    for (let j = below.from; j <= below.to; j++) {
      const child = children?.get(j) ?? (below.level > 0 ? this.rollupTile(keyTiles, group, below.level, j) : undefined);
      if (child === undefined) continue;
      if (built === undefined) built = copyTile(child);
      else mergeTileInto(built, child, group.slots);
    }
    if (built === undefined) return undefined;
    let level = keyTiles.get(series);
    if (!level) keyTiles.set(series, (level = new Map()));
    level.set(r, built);
    return built;
  }

  /**
   * The rollup tiles of level l inside [from, to] that hold something: those stored, and those built
   * where a stored tile of a level below lies under them, in ascending order (as READ_SCRIPT).
   */
  private rollupRange(keyTiles: Map<TileSeries, Map<number, Tile>>, group: GroupState, l: number, from: number, to: number): void {
    const span = group.levels[l]!.span;
    const wanted = new Set<number>();
    for (let level = 0; level <= l; level++) {
      const { series, span: levelSpan } = group.levels[level]!;
      for (const index of keyTiles.get(series)?.keys() ?? []) {
        const r = Math.floor((index * levelSpan) / span);
        if (r >= from && r <= to) wanted.add(r);
      }
    }
    for (const r of [...wanted].sort((x, y) => x - y)) this.rollupTile(keyTiles, group, l, r);
  }

  async readTiles(view: string, entityKeys: readonly string[], ranges: readonly TileRange[]): Promise<(KeyTiles | null)[]> {
    return this.readTilesSync(view, entityKeys, ranges);
  }

  /**
   * readTiles, synchronously (the embedded quickstart): each key's stored tiles, with the rollup
   * tiles inside the ranges built (rollupRange) and the closed windows asked for; without ranges,
   * every tile, each rollup tile that holds something built. The tiles are the store's own; a key
   * with closed windows gets one more map, the tiles shared.
   */
  readTilesSync(view: string, entityKeys: readonly string[], ranges?: readonly TileRange[]): (KeyTiles | null)[] {
    const state = this.views.get(view);
    if (!state) return entityKeys.map(() => null);
    ranges ??= [...state.groups.values()].flatMap((g) => g.plan.rollups.map((span) => ({ hopMs: g.plan.hopMs, span, fromIndex: -Infinity, toIndex: Infinity })));
    const rollupRanges = ranges.flatMap((r) => {
      const group = r.closed === true ? undefined : state.groups.get(r.hopMs);
      const level = group === undefined ? 0 : levelOf(group, r.span ?? 1);
      return level > 0 ? [{ group: group!, level, from: r.fromIndex, to: r.toIndex }] : [];
    });
    const closedRanges = ranges.filter((r) => r.closed === true && state.groups.has(r.hopMs));
    return entityKeys.map((entityKey) => {
      const keyTiles = state.tiles.get(entityKey);
      if (keyTiles === undefined) return null;
      for (const r of rollupRanges) this.rollupRange(keyTiles, r.group, r.level, r.from, r.to);
      if (closedRanges.length === 0) return keyTiles;
      let closed = state.closed.get(entityKey);
      const withClosed = new Map(keyTiles);
      for (const { hopMs, fromIndex: head } of closedRanges) {
        let kept = closed?.get(hopMs);
        if (kept?.head !== head) {
          const group = state.groups.get(hopMs)!;
          for (const { blocks } of closedWindowBlocks(state.plan, hopMs, head)) {
            for (const b of blocks) if (b.span > 1) this.rollupTile(keyTiles, group, levelOf(group, b.span), b.index);
          }
          const windows = foldClosedWindows(state.plan, hopMs, keyTiles, head);
          // as on Redis: an earlier head (an `at` read) is folded for the read, the later one kept
          if (kept === undefined || kept.head < head) {
            if (!closed) state.closed.set(entityKey, (closed = new Map()));
            closed.set(hopMs, { head, windows });
          }
          kept = { head, windows };
        }
        withClosed.set(closedSeries(hopMs), new Map([[head, kept.windows]]));
      }
      return withClosed;
    });
  }

  async watermarkMs(): Promise<number | null> {
    return this.watermark;
  }

  watermarkSync(): number | null {
    return this.watermark;
  }

  async stats(): Promise<StoreStats> {
    const keys: Record<string, number> = {};
    for (const [name, view] of this.views) keys[name] = view.tiles.size;
    return { keys, tiles: this.tileCount, watermarkMs: this.watermark };
  }

  /** Entity keys of a view (for tests and the quickstart summary). */
  entityKeys(view: string): string[] {
    return [...(this.views.get(view)?.tiles.keys() ?? [])];
  }

  async close(): Promise<void> {
    this.views.clear();
  }
}

/** The level of a group's series with tiles of `span` group tiles (0: its own tiles), -1 for none. */
function levelOf(group: GroupState, span: number): number {
  return group.levels.findIndex((level) => level.span === span);
}

/** Drops the tiles of a series before trimIndex; returns how many. */
function trim(tiles: Map<number, Tile>, trimIndex: number): number {
  let dropped = 0;
  for (const index of tiles.keys()) {
    if (index < trimIndex) {
      tiles.delete(index);
      dropped++;
    }
  }
  return dropped;
}
