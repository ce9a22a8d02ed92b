// Effectively-once tile batches for a log (Kafka) source: the events of one partition's batch are
// turned into tile updates that carry a per-key fence, minus the events each key has applied
// already. Pure over plain data except for `AppliedOffsetReader`, which asks the store.
//
// The invariant (per source, partition, view and entity key): the key's stored fence F is an offset
// such that every event of that key from that partition with offset <= F has been merged into its
// tiles, and none with offset > F. A store that honours fences (online/redis.ts) merges a key's
// updates and sets its fence in one atomic step, and skips the step when the stored fence is at
// or past the new one. See ingest/kafka-materializer.ts for why this needs the stored fences to be
// read before building, rather than only a fence per batch.
import { TileBatchBuilder } from './materialize.js';
import type { DecodedEvent } from './decode.js';
import type { KeyTileUpdates, Registry, SourcePlan, TileBatch } from '../definitions/index.js';

/** One entity key of one view. */
export interface ViewKey {
  view: string;
  entityKey: string;
}

/** Reads the fences a store keeps: per key, the highest offset of a partition applied to it. */
export interface AppliedOffsetReader {
  /** For each key: the highest offset of `partition` of `source` merged into it, or null if none. */
  appliedOffsets(source: string, partition: number, keys: readonly ViewKey[]): Promise<(number | null)[]>;
}

/** What redisAppliedOffsets needs of a RedisOnlineStore (ingest does not import online/). */
export interface RedisFenceSource {
  keyHashKey(view: string, entityKey: string): string;
  client: { hget(key: string, field: string): Promise<string | null> };
}

/**
 * The fences of a RedisOnlineStore, read from the layout its header documents: field
 * `fence:<source>:<partition>` of the key hash `P:{<view>:<entityKey>}:k`. One HGET per key, all
 * pipelined (for a Cluster, routed to each key's slot).
 */
export function redisAppliedOffsets(store: RedisFenceSource): AppliedOffsetReader {
  return {
    async appliedOffsets(source, partition, keys) {
      const field = `fence:${source}:${partition}`;
      const replies = await Promise.all(keys.map((k) => store.client.hget(store.keyHashKey(k.view, k.entityKey), field)));
      return replies.map((r) => (r === null ? null : Number(r)));
    },
  };
}

export interface FencedBatch {
  batch: TileBatch;
  /** (event, view) pairs left out because their key had applied them already (redelivery). */
  alreadyApplied: number;
  /** Whether any key had applied part of this batch (the slow, per-view build ran). */
  redelivered: boolean;
}

/**
 * Builds the tile batch of one partition's contiguous run of events, fenced at `lastOffset`: each
 * key gets only its events past its stored fence, and the fence `lastOffset`.
 */
export class FencedBatchBuilder {
  private readonly full: TileBatchBuilder;
  /** source -> one single-view builder per view of the source, in SourcePlan.views order. */
  private readonly perView = new Map<string, TileBatchBuilder[]>();

  constructor(registry: Registry) {
    this.full = new TileBatchBuilder(registry);
    for (const source of registry.sources) {
      this.perView.set(
        source.name,
        source.views.map((name) => {
          const view = registry.views.find((v) => v.name === name)!;
          return new TileBatchBuilder({ ...registry, sources: [{ ...source, views: [name] }], views: [view] });
        }),
      );
    }
  }

  /** The distinct keys of a run of events of `source`, in first-seen order. */
  keysOf(source: SourcePlan, events: readonly DecodedEvent[]): ViewKey[] {
    const seen = source.views.map(() => new Set<string>());
    const keys: ViewKey[] = [];
    for (const e of events) {
      for (let v = 0; v < source.views.length; v++) {
        const key = e.viewKeys[v]!;
        if (!seen[v]!.has(key)) {
          seen[v]!.add(key);
          keys.push({ view: source.views[v]!, entityKey: key });
        }
      }
    }
    return keys;
  }

  /**
   * `events`: decoded events of `source` from one partition, with positions, offsets in
   * [firstOffset, lastOffset]. `applied`: the stored fence of each of `keys` (from keysOf).
   */
  build(source: SourcePlan, partition: number, lastOffset: number, events: readonly DecodedEvent[], keys: readonly ViewKey[], applied: readonly (number | null)[]): FencedBatch {
    const fence = { source: source.name, partition, offset: lastOffset };
    let firstOffset = Number.POSITIVE_INFINITY;
    for (const e of events) firstOffset = Math.min(firstOffset, e.position!.offset);
    const fenceOf = new Map<string, number>();
    let redelivered = false;
    keys.forEach((k, i) => {
      const f = applied[i];
      if (f !== null && f !== undefined && f >= firstOffset) {
        redelivered = true;
        fenceOf.set(`${k.view}\u0000${k.entityKey}`, f);
      }
    });
    if (!redelivered) {
      // The common case: no key has seen any of these offsets.
      const batch = this.full.build(events);
      for (const key of batch.keys) key.fence = fence;
      return { batch, alreadyApplied: 0, redelivered: false };
    }
    // Some keys applied part of this run already (a redelivery after a crash, a rebalance or a
    // failed commit): build each view apart, leaving out each key's events at or before its fence.
    const keysOut: KeyTileUpdates[] = [];
    let alreadyApplied = 0;
    const builders = this.perView.get(source.name)!;
    source.views.forEach((viewName, v) => {
      const mine: DecodedEvent[] = [];
      for (const e of events) {
        const f = fenceOf.get(`${viewName}\u0000${e.viewKeys[v]!}`);
        if (f !== undefined && e.position!.offset <= f) {
          alreadyApplied++;
          continue;
        }
        mine.push({ ...e, viewKeys: [e.viewKeys[v]!] });
      }
      for (const key of builders[v]!.build(mine).keys) {
        key.fence = fence;
        keysOut.push(key);
      }
    });
    // The watermark is a maximum: moving it to the greatest event time of the whole run, applied
    // events included, is what the first delivery would have done.
    let maxEventTimeMs: number | null = null;
    for (const e of events) if (maxEventTimeMs === null || e.eventTimeMs > maxEventTimeMs) maxEventTimeMs = e.eventTimeMs;
    return { batch: { keys: keysOut, eventCount: events.length, maxEventTimeMs }, alreadyApplied, redelivered: true };
  }
}
