// In-memory OnlineStore: tiles in nested maps, merged on write, trimmed past the retention horizon
// when a key gets a new tile. Memory grows with keys x tiles, never with events. A read that asks
// for a group's closed windows gets them folded once per key and head tile and kept until a tile
// before that head changes, as the Redis store keeps them (README, "Closed windows").
import {
  groupSlots,
  mergeTileInto,
  rollupSums,
  rollupTrimIndex,
  tileSeries,
  trimTileIndex,
  type Registry,
  type SlotRef,
  type Tile,
  type TileBatch,
  type TileGroupPlan,
  type TileSeries,
  type TileUpdate,
  type ViewPlan,
} from '../definitions/index.js';
import { foldClosedWindows } from './read.js';
import { closedSeries, type ApplyResult, type ClosedWindows, type KeyTiles, type OnlineStore, type StoreStats, type TileRange } from './store.js';

interface GroupState {
  plan: TileGroupPlan;
  slots: SlotRef[];
  /** The series key of each rollup level, in `plan.rollups` order. */
  rollupSeries: TileSeries[];
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
        groups.set(g.hopMs, { plan: g, slots, rollupSeries: g.rollups.map((span) => tileSeries(g.hopMs, span)), trimIndex: null });
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
      // The updates applied (not late), per group that keeps rollup levels.
      let rolled: Map<GroupState, TileUpdate[]> | null = null;
      for (const u of key.tiles) {
        const group = view.groups.get(u.hopMs);
        if (!group) throw new Error(`tile update for unknown tile group ${key.view}/${u.hopMs}`);
        if (group.trimIndex !== null && u.tileIndex < group.trimIndex) {
          lateTileEvents += u.events;
          continue;
        }
        if (group.plan.rollups.length > 0) {
          rolled ??= new Map();
          const list = rolled.get(group);
          if (list) list.push(u);
          else rolled.set(group, [u]);
        }
      }
      // Rollup sums are built before the group's own tiles adopt the batch's tiles.
      const rollups = rolled === null ? [] : [...rolled].map(([group, updates]) => ({ group, levels: rollupSums(group.plan.rollups, group.slots, updates) }));
      const closed = view.closed.get(key.entityKey);
      for (const u of key.tiles) {
        const group = view.groups.get(u.hopMs)!;
        if (group.trimIndex !== null && u.tileIndex < group.trimIndex) continue;
        this.mergeTile(keyTiles, u.hopMs, u.tileIndex, u.tile, group.slots, group.trimIndex);
        appliedUpdates++;
        const kept = closed?.get(u.hopMs);
        if (kept !== undefined && u.tileIndex < kept.head) closed!.delete(u.hopMs);
      }
      for (const { group, levels } of rollups) {
        levels.forEach((sums, l) => {
          const trimIndex = group.trimIndex === null ? null : rollupTrimIndex(group.trimIndex, group.plan.rollups[l]!);
          for (const sum of sums) this.mergeTile(keyTiles, group.rollupSeries[l]!, sum.index, sum.tile, group.slots, trimIndex);
        });
      }
    }
    if (batch.maxEventTimeMs !== null && (this.watermark === null || batch.maxEventTimeMs > this.watermark)) {
      this.watermark = batch.maxEventTimeMs;
    }
    return { appliedUpdates, lateTileEvents };
  }

  /**
   * Merge one tile into tile `index` of a series; a series that gains a tile drops its tiles behind
   * the horizon. A tile not stored yet becomes `tile` itself: the batch's tiles and rollup sums are
   * fresh and owned by the batch, so they are adopted rather than copied.
   */
  private mergeTile(keyTiles: Map<TileSeries, Map<number, Tile>>, series: TileSeries, index: number, tile: Tile, slots: readonly SlotRef[], trimIndex: number | null): void {
    let seriesTiles = keyTiles.get(series);
    if (!seriesTiles) {
      seriesTiles = new Map();
      keyTiles.set(series, seriesTiles);
    }
    const stored = seriesTiles.get(index);
    if (stored) {
      mergeTileInto(stored, tile, slots);
    } else {
      seriesTiles.set(index, tile);
      this.tileCount++;
      if (trimIndex !== null) this.trim(seriesTiles, trimIndex);
    }
  }

  private trim(groupTiles: Map<number, Tile>, trimIndex: number): void {
    for (const index of groupTiles.keys()) {
      if (index < trimIndex) {
        groupTiles.delete(index);
        this.tileCount--;
      }
    }
  }

  async readTiles(view: string, entityKeys: readonly string[], ranges: readonly TileRange[]): Promise<(KeyTiles | null)[]> {
    const all = this.readTilesSync(view, entityKeys);
    const state = this.views.get(view);
    const closedRanges = ranges.filter((r) => r.closed === true && state?.groups.has(r.hopMs));
    if (closedRanges.length === 0 || !state) return all;
    // The key's own series plus its closed windows: one more map per key read, the tiles shared.
    return all.map((keyTiles, i) => {
      if (keyTiles === null) return null;
      const entityKey = entityKeys[i]!;
      let closed = state.closed.get(entityKey);
      const withClosed = new Map(keyTiles);
      for (const { hopMs, fromIndex: head } of closedRanges) {
        let kept = closed?.get(hopMs);
        if (kept?.head !== head) {
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

  readTilesSync(view: string, entityKeys: readonly string[]): (KeyTiles | null)[] {
    const viewTiles = this.views.get(view)?.tiles;
    return entityKeys.map((k) => viewTiles?.get(k) ?? null);
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
