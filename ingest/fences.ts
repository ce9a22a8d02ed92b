// Effectively-once tile batches for log (Kafka) sources: runs of events of several partitions are
// turned into key updates under compare-and-set fences, applied, and rebuilt for the keys the
// store refuses until every key holds each event exactly once. Pure over plain data except for the
// store (ConditionalStore) and the ownership check that applyRunsExactlyOnce is given.
//
// The invariant (per source, partition, view and entity key): the key's stored fence F is an offset
// such that every event of that key from that partition with offset <= F has been merged into its
// tiles, and none with offset > F (no fence: none merged yet, F = -1).
//
// A key update holds, for each partition it has events of, every event of the key from that
// partition with offset in (A, L], and carries the fence (L, appliedThrough A). The store applies
// the update only if the key's stored fence of each of those partitions is at most A, and then sets
// it to L, in one atomic step (online/redis.ts, APPLY_SCRIPT); otherwise it refuses the key whole
// and reports the stored fences. That keeps the invariant whoever writes, in any interleaving:
//
// - First attempt (optimistic, no read): for a run of a partition's offsets [first, last], A is
//   first - 1. Every record before `first` is applied already (it was committed, or it was this
//   member's previous batch of the partition, applied before this one was fetched), so a key whose
//   stored fence is at most first - 1 has none of the run applied and all before it: the run's
//   events of the key are exactly the missing ones.
// - A refused key (its stored fence F >= first: a redelivery after a crash, a rebalance or a failed
//   attempt; or another writer of the partition) is rebuilt from the events after F and tried
//   again with A = F exactly: if another writer moves the fence in between, the key is refused
//   again and rebuilt again. No fence read can go stale between the read and the write, because
//   the read is the refusal and the write is conditional on it.
//
// This is what makes two writers of one partition at once harmless: a consumer group member that
// stalled past its session timeout (a long GC pause, a store hanging longer than the session) is
// replaced while it still writes (a "zombie"). Whichever of the two writes a key first, the other
// is refused on that key and rebuilds from what was written; neither double-counts nor loses an
// event. The caller learns which runs were refused and may drop the batches it no longer owns
// (they are redelivered to the owner); that saves work, it is not needed for correctness.
import { TileBatchBuilder } from './materialize.js';
import type { DecodedEvent } from './decode.js';
import { TidemarkError, type KeyTileUpdates, type Registry, type SourcePlan, type TileBatch } from '../definitions/index.js';

/**
 * The decoded events of one source from one partition's batch: records `firstOffset` to
 * `lastOffset` of the log, all delivered (the bad ones went to dead letters, so they have no event).
 */
export interface LogRun {
  source: SourcePlan;
  partition: number;
  firstOffset: number;
  lastOffset: number;
  /** With positions (partition and offset). */
  events: readonly DecodedEvent[];
}

/**
 * A compare-and-set fence of a key update (the shape online/redis.ts takes): the update holds the
 * key's events of (source, partition) with offsets in (appliedThrough, offset].
 */
export interface CasFence {
  source: string;
  partition: number;
  offset: number;
  appliedThrough: number;
}

export interface ConditionalKeyTileUpdates extends KeyTileUpdates {
  fences: CasFence[];
}

export interface ConditionalTileBatch extends TileBatch {
  keys: ConditionalKeyTileUpdates[];
}

export interface ConditionalApplyResult {
  appliedUpdates: number;
  lateTileEvents: number;
  /** Keys left untouched: batch index and the stored fences, in the order of the key's `fences` (-1 for none). */
  refused: { key: number; storedFences: number[] }[];
  /** Keys with late tile events: batch index and how many. */
  lateKeys: { key: number; lateTileEvents: number }[];
  /** The watermark after the apply. */
  watermarkMs: number | null;
}

/** What effectively-once application needs of an online store (RedisOnlineStore has it). */
export interface ConditionalStore {
  applyConditional(batch: ConditionalTileBatch): Promise<ConditionalApplyResult>;
}

/** One key's refusal: its view and entity key, and its stored fence per `source:partition`. */
interface RefusedKey {
  view: string;
  entityKey: string;
  stored: Map<string, number>;
}

export interface FencedBatch {
  batch: ConditionalTileBatch;
  /** (event, view) pairs left out because their key had applied them already, per source. */
  alreadyApplied: Map<string, number>;
  /** Per key of `batch`, the runs (indexes into the runs built from) whose events it holds, in its fences' order. */
  keyRuns: number[][];
}

const partitionId = (source: string, partition: number): string => `${source}:${partition}`;

/** Builds the conditional tile batches of runs: the optimistic first attempt, and rebuilds of refused keys. */
export class FencedBatchBuilder {
  private readonly full: TileBatchBuilder;
  /** source -> one single-view builder per view of the source, in SourcePlan.views order. */
  private readonly perView = new Map<string, TileBatchBuilder[]>();
  private readonly sourceOfView = new Map<string, string>();

  constructor(registry: Registry) {
    this.full = new TileBatchBuilder(registry);
    for (const source of registry.sources) {
      for (const view of source.views) this.sourceOfView.set(view, source.name);
      this.perView.set(
        source.name,
        source.views.map((name) => {
          const view = registry.views.find((v) => v.name === name)!;
          return new TileBatchBuilder({ ...registry, sources: [{ ...source, views: [name] }], views: [view] });
        }),
      );
    }
  }

  /** The source a view reads. */
  sourceOf(view: string): string {
    return this.sourceOfView.get(view)!;
  }

  /**
   * The first attempt: every event of the runs (of distinct (source, partition) pairs), each key
   * fenced, for each run it has events in, at the run's last offset with appliedThrough = its
   * first offset - 1.
   */
  build(runs: readonly LogRun[]): FencedBatch {
    checkDistinct(runs);
    const events = runs.length === 1 ? runs[0]!.events : runs.flatMap((r) => r.events);
    const tiles = this.full.build(events);
    const fenceOf = (r: number): CasFence => {
      const run = runs[r]!;
      return { source: run.source.name, partition: run.partition, offset: run.lastOffset, appliedThrough: run.firstOffset - 1 };
    };
    let keyRuns: number[][];
    if (runs.length === 1) {
      keyRuns = tiles.keys.map(() => [0]);
    } else {
      // Which runs hold events of each key: per source and view, entity key -> a bit per run
      // (runs are written 31 at most at a time here; more go through the general path).
      keyRuns = runs.length <= 31 ? this.keyRunsByBits(runs, tiles.keys) : this.keyRunsByLists(runs, tiles.keys);
    }
    const keys = tiles.keys.map((k, i) => Object.assign(k, { fences: keyRuns[i]!.map(fenceOf) }));
    return { batch: { keys, eventCount: tiles.eventCount, maxEventTimeMs: tiles.maxEventTimeMs }, alreadyApplied: new Map(), keyRuns };
  }

  private keyRunsByBits(runs: readonly LogRun[], keys: readonly KeyTileUpdates[]): number[][] {
    const bitsOfKey = new Map<string, Map<string, number>[]>();
    runs.forEach((run, r) => {
      let byView = bitsOfKey.get(run.source.name);
      if (!byView) bitsOfKey.set(run.source.name, (byView = run.source.views.map(() => new Map())));
      const bit = 1 << r;
      for (const e of run.events) {
        const viewKeys = e.viewKeys;
        for (let v = 0; v < byView.length; v++) {
          const m = byView[v]!;
          const key = viewKeys[v]!;
          m.set(key, (m.get(key) ?? 0) | bit);
        }
      }
    });
    const viewIndex = this.viewIndexes(runs);
    return keys.map((k) => {
      const bits = bitsOfKey.get(this.sourceOf(k.view))![viewIndex.get(k.view)!]!.get(k.entityKey)!;
      const out: number[] = [];
      for (let r = 0; r < runs.length; r++) if (bits & (1 << r)) out.push(r);
      return out;
    });
  }

  private keyRunsByLists(runs: readonly LogRun[], keys: readonly KeyTileUpdates[]): number[][] {
    const runsOfKey = new Map<string, Map<string, number[]>[]>();
    runs.forEach((run, r) => {
      let byView = runsOfKey.get(run.source.name);
      if (!byView) runsOfKey.set(run.source.name, (byView = run.source.views.map(() => new Map())));
      for (const e of run.events) {
        for (let v = 0; v < byView.length; v++) {
          const list = byView[v]!.get(e.viewKeys[v]!);
          if (!list) byView[v]!.set(e.viewKeys[v]!, [r]);
          else if (list[list.length - 1] !== r) list.push(r);
        }
      }
    });
    const viewIndex = this.viewIndexes(runs);
    return keys.map((k) => runsOfKey.get(this.sourceOf(k.view))![viewIndex.get(k.view)!]!.get(k.entityKey)!);
  }

  private viewIndexes(runs: readonly LogRun[]): Map<string, number> {
    const viewIndex = new Map<string, number>();
    for (const run of runs) run.source.views.forEach((name, v) => viewIndex.set(name, v));
    return viewIndex;
  }

  /**
   * Refused keys again, each with its events after its stored fences only, fenced with
   * appliedThrough = the stored fence. A key with nothing left after its fences is left out; the
   * batch still carries the greatest event time of all the runs (the watermark is a maximum, and
   * the first delivery would have moved it there).
   */
  rebuild(runs: readonly LogRun[], refused: readonly RefusedKey[]): FencedBatch {
    // view -> entity key -> stored fences of the refused key
    const wanted = new Map<string, Map<string, Map<string, number>>>();
    for (const k of refused) {
      let byKey = wanted.get(k.view);
      if (!byKey) wanted.set(k.view, (byKey = new Map()));
      byKey.set(k.entityKey, k.stored);
    }
    const keys: ConditionalKeyTileUpdates[] = [];
    const keyRuns: number[][] = [];
    const alreadyApplied = new Map<string, number>();
    let maxEventTimeMs: number | null = null;
    let eventCount = 0;
    for (const run of runs) {
      eventCount += run.events.length;
      for (const e of run.events) if (maxEventTimeMs === null || e.eventTimeMs > maxEventTimeMs) maxEventTimeMs = e.eventTimeMs;
    }
    const sources = [...new Set(runs.map((r) => r.source))];
    for (const source of sources) {
      const builders = this.perView.get(source.name)!;
      source.views.forEach((viewName, v) => {
        const byKey = wanted.get(viewName);
        if (!byKey) return;
        const mine: DecodedEvent[] = [];
        // entity key -> run indexes with events kept
        const kept = new Map<string, number[]>();
        runs.forEach((run, r) => {
          if (run.source !== source) return;
          const id = partitionId(source.name, run.partition);
          for (const e of run.events) {
            const stored = byKey.get(e.viewKeys[v]!);
            if (stored === undefined) continue;
            if (e.position!.offset <= (stored.get(id) ?? -1)) {
              alreadyApplied.set(source.name, (alreadyApplied.get(source.name) ?? 0) + 1);
              continue;
            }
            mine.push({ ...e, viewKeys: [e.viewKeys[v]!] });
            const list = kept.get(e.viewKeys[v]!);
            if (!list) kept.set(e.viewKeys[v]!, [r]);
            else if (list[list.length - 1] !== r) list.push(r);
          }
        });
        for (const key of builders[v]!.build(mine).keys) {
          const stored = byKey.get(key.entityKey)!;
          const rs = kept.get(key.entityKey)!;
          keys.push(
            Object.assign(key, {
              fences: rs.map((r) => {
                const run = runs[r]!;
                return { source: source.name, partition: run.partition, offset: run.lastOffset, appliedThrough: stored.get(partitionId(source.name, run.partition)) ?? -1 };
              }),
            }),
          );
          keyRuns.push(rs);
        }
      });
    }
    return { batch: { keys, eventCount, maxEventTimeMs }, alreadyApplied, keyRuns };
  }
}

function checkDistinct(runs: readonly LogRun[]): void {
  const seen = new Set<string>();
  for (const r of runs) {
    const id = partitionId(r.source.name, r.partition);
    if (seen.has(id)) throw new Error(`two runs of partition ${r.partition} of source ${r.source.name} in one batch`);
    seen.add(id);
  }
}

export interface ExactlyOnceOptions {
  /**
   * Called when keys were refused, with the runs (indexes) whose fences the refusals involve;
   * returns the runs to drop (their member no longer owns them: they are left to their owner and
   * must not be committed). Default: drop nothing.
   */
  dropRuns?: (runs: number[], round: number) => Promise<ReadonlySet<number>> | ReadonlySet<number>;
  /** Rounds of refusals before giving up with TM_INGEST_FENCE_CONTENTION (retryable); default 20. */
  maxRounds?: number;
  /** builder.build(runs), when the caller built it already (ahead of the write). */
  firstBatch?: FencedBatch;
}

export interface ExactlyOnceResult {
  /** Runs dropped by `dropRuns` (not fully applied: do not commit them). */
  dropped: Set<number>;
  /** Late tile events per source. */
  lateTileEvents: Map<string, number>;
  /** (event, view) pairs left out because their key had applied them, per source. */
  alreadyApplied: Map<string, number>;
  /** Key updates refused in the first round (a redelivery, a retried write, or another writer), per source. */
  refusedFirstRound: Map<string, number>;
  /** Key updates refused in later rounds (another writer moved a fence just read), per source. */
  refusedLaterRounds: Map<string, number>;
  /** Rounds of store writes (1 when nothing was refused). */
  rounds: number;
  watermarkMs: number | null;
}

/**
 * Apply the events of `runs` (distinct partitions) so that every key holds each event exactly
 * once, whatever was applied before and whoever else writes: the optimistic batch first, then
 * rebuilds of the refused keys until none is refused. Throws what the store throws (a retry
 * calls this again: what was written is refused and skipped).
 */
export async function applyRunsExactlyOnce(store: ConditionalStore, builder: FencedBatchBuilder, runs: readonly LogRun[], options: ExactlyOnceOptions = {}): Promise<ExactlyOnceResult> {
  const out: ExactlyOnceResult = { dropped: new Set(), lateTileEvents: new Map(), alreadyApplied: new Map(), refusedFirstRound: new Map(), refusedLaterRounds: new Map(), rounds: 0, watermarkMs: null };
  const add = (m: Map<string, number>, k: string, n: number): void => {
    if (n !== 0) m.set(k, (m.get(k) ?? 0) + n);
  };
  let active = runs.map((_, r) => r);
  let built = options.firstBatch ?? builder.build(runs);
  const maxRounds = options.maxRounds ?? 20;
  for (;;) {
    out.rounds++;
    const result = await store.applyConditional(built.batch);
    out.watermarkMs = result.watermarkMs;
    for (const l of result.lateKeys) add(out.lateTileEvents, builder.sourceOf(built.batch.keys[l.key]!.view), l.lateTileEvents);
    if (result.refused.length === 0) return out;
    for (const { key } of result.refused) add(out.rounds === 1 ? out.refusedFirstRound : out.refusedLaterRounds, builder.sourceOf(built.batch.keys[key]!.view), 1);
    if (out.rounds >= maxRounds) {
      throw new TidemarkError('TM_INGEST_FENCE_CONTENTION', `${result.refused.length} key updates still refused by their fences after ${maxRounds} rounds: another writer keeps moving them`, {
        refused: result.refused.length,
        partitions: [...new Set(active.map((r) => partitionId(runs[r]!.source.name, runs[r]!.partition)))],
      });
    }
    // Runs whose fences were refused (stored past appliedThrough).
    const involved = new Set<number>();
    const refused: RefusedKey[] = result.refused.map(({ key, storedFences }) => {
      const k = built.batch.keys[key]!;
      const stored = new Map<string, number>();
      k.fences.forEach((f, j) => {
        stored.set(partitionId(f.source, f.partition), storedFences[j]!);
        if (storedFences[j]! > f.appliedThrough) involved.add(active[built.keyRuns[key]![j]!]!);
      });
      return { view: k.view, entityKey: k.entityKey, stored };
    });
    const drop = options.dropRuns ? await options.dropRuns([...involved].sort((a, b) => a - b), out.rounds) : new Set<number>();
    for (const r of drop) out.dropped.add(r);
    active = active.filter((r) => !out.dropped.has(r));
    if (active.length === 0) return out;
    built = builder.rebuild(
      active.map((r) => runs[r]!),
      refused,
    );
    for (const [source, n] of built.alreadyApplied) add(out.alreadyApplied, source, n);
  }
}

/** The fence of one key of one partition, as redisAppliedOffsets reads it (for inspection and tests: the materializer reads no fence ahead). */
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
 * `fence:<source>:<partition>` of the key hash `P:{<view>@<version>:<entityKey>}:k`; for inspection and
 * tests. The materializer reads no fences ahead: a refusal of the conditional apply reports them.
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
