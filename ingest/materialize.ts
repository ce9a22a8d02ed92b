// The pure materializer core: a batch of decoded events in, tile updates for every view out.
// Events of one batch that land in the same tile are pre-aggregated, so a store applies one merge
// per (view, key, tile) rather than one per event.
import {
  addToSpecSlots,
  emptyTile,
  groupSlots,
  type AggregationSpec,
  type Registry,
  tileIndexOf,
  tileTemplate,
  type TileTemplate,
  type TileBatch,
  type TileGroupPlan,
  type KeyTileUpdates,
  type TileUpdate,
  type ViewPlan,
} from '../definitions/index.js';
import type { DecodedEvent } from './decode.js';

interface GroupRuntime {
  group: TileGroupPlan;
  template: TileTemplate;
  specs: AggregationSpec[];
  offsets: number[];
  valueOffsets: number[];
  /** Per slot: the event field it reads, or null for a count of events. */
  fields: (string | null)[];
}

interface ViewRuntime {
  view: ViewPlan;
  groups: GroupRuntime[];
}

/** A key's tiles of one group in the batch being built; events mostly arrive in time order, so the last tile is cached. */
interface GroupAccumulator {
  lastIndex: number;
  last: TileUpdate | null;
  byIndex: Map<number, TileUpdate>;
}

interface KeyAccumulator {
  updates: KeyTileUpdates;
  groups: GroupAccumulator[];
}

/** Precomputed per-source plans; build once per registry, reuse for every batch. */
export class TileBatchBuilder {
  private readonly viewsBySource = new Map<string, ViewRuntime[]>();

  constructor(registry: Registry) {
    for (const source of registry.sources) {
      const runtimes = source.views.map((name) => {
        const view = registry.views.find((v) => v.name === name)!;
        return {
          view,
          groups: view.groups.map((group) => {
            const slots = groupSlots(view, group);
            return {
              group,
              template: tileTemplate(slots, group),
              specs: slots.map((s) => s.spec),
              offsets: slots.map((s) => s.offset),
              valueOffsets: slots.map((s) => s.valueOffset),
              fields: slots.map((s) => s.feature.field),
            };
          }),
        };
      });
      this.viewsBySource.set(source.name, runtimes);
    }
  }

  /** Tile updates for a batch of events (any mix of sources, any order). */
  build(events: readonly DecodedEvent[]): TileBatch {
    const keys: KeyTileUpdates[] = [];
    // per source: per view of the source, entity key -> accumulator
    const accumulators = new Map<string, Map<string, KeyAccumulator>[]>();
    let maxEventTimeMs: number | null = null;
    for (let e = 0; e < events.length; e++) {
      const event = events[e]!;
      const ts = event.eventTimeMs;
      if (maxEventTimeMs === null || ts > maxEventTimeMs) maxEventTimeMs = ts;
      const views = this.viewsBySource.get(event.source);
      if (!views) continue;
      let byView = accumulators.get(event.source);
      if (!byView) {
        byView = views.map(() => new Map());
        accumulators.set(event.source, byView);
      }
      const fields = event.fields;
      for (let v = 0; v < views.length; v++) {
        const runtime = views[v]!;
        const entityKey = event.viewKeys[v]!;
        const byKey = byView[v]!;
        let key = byKey.get(entityKey);
        if (!key) {
          key = {
            updates: { view: runtime.view.name, entityKey, tiles: [] },
            groups: runtime.groups.map(() => ({ lastIndex: Number.NaN, last: null, byIndex: new Map() })),
          };
          byKey.set(entityKey, key);
          keys.push(key.updates);
        }
        for (let g = 0; g < runtime.groups.length; g++) {
          const group = runtime.groups[g]!;
          const acc = key.groups[g]!;
          const hopMs = group.group.hopMs;
          const tileIndex = tileIndexOf(ts, hopMs);
          let update: TileUpdate | null | undefined = acc.lastIndex === tileIndex ? acc.last : acc.byIndex.get(tileIndex);
          if (!update) {
            update = { hopMs, tileIndex, tile: emptyTile(group.template), events: 0 };
            acc.byIndex.set(tileIndex, update);
            key.updates.tiles.push(update);
          }
          acc.lastIndex = tileIndex;
          acc.last = update;
          const tile = update.tile;
          update.events++;
          if (ts < tile.minTs) tile.minTs = ts;
          if (ts > tile.maxTs) tile.maxTs = ts;
          const nums = tile.nums;
          const vals = tile.vals;
          for (let s = 0; s < group.specs.length; s++) {
            const field = group.fields[s]!;
            addToSpecSlots(group.specs[s]!, field !== null, nums, group.offsets[s]!, vals, group.valueOffsets[s]!, field === null ? undefined : fields[field], ts);
          }
        }
      }
    }
    return { keys, eventCount: events.length, maxEventTimeMs };
  }
}
