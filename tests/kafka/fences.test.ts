// Effectively-once application of log runs (ingest/fences.ts over online/redis.ts's compare-and-set
// fences), on real flights, against the run's redis-server and Redis Cluster, with deterministic
// interleavings: the store is wrapped so that another writer's whole write happens at an exact
// point of this writer's rounds. Every case ends with every key of every view equal to the
// reference of the events written, so nothing was counted twice and nothing lost.
//
// - A redelivery cut differently from the first delivery.
// - Two writers of one partition at once (a "zombie" that lost its partition and still writes, and
//   the partition's new owner), the zombie writing (a) inside the owner's first round, (b) between
//   the owner's refusal and its rebuilt write, (c) after the owner: each time, no double count.
//   The control, the previous design (read the fences, then apply with plain fences), double-counts
//   in case (a).
// - Several partitions written together (group commit), some of them partly applied before.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, TidemarkError, type TileBatch } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { applyRunsExactlyOnce, EventDecoder, FencedBatchBuilder, redisAppliedOffsets, type ConditionalStore, type DecodedEvent, type LogRun } from '../../ingest/index.js';
import { createRedisClient, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';
import { testRedisClusterNodes, testRedisUrl } from '../support/redis.js';
import { clusterUrl } from '../online/redis-backends.js';
import { compareWithReference, flightRecords } from './support.js';

const compiled = compileOrThrow(flightsDefinitions);
const source = compiled.registry.sources[0]!;
const builder = new FencedBatchBuilder(compiled.registry);
const VIEWS = source.views.length;

let records: string[];
const fixtures = new Map<number, FlightsFixture>();
const clients: { name: string; client: RedisClient }[] = [];

beforeAll(async () => {
  records = await flightRecords(2_000);
  for (const n of [600, 2_000]) fixtures.set(n, await loadFlightsFixture(n));
  clients.push({ name: 'Redis', client: createRedisClient(testRedisUrl()) }, { name: 'Redis Cluster', client: createRedisClient(clusterUrl(testRedisClusterNodes())) });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.client.quit()));
});

/** Records [0, n) spread over `partitions` partitions round robin: record i is offset i / partitions of partition i % partitions. */
function decoded(n: number, partitions: number): DecodedEvent[] {
  const decoder = new EventDecoder(compiled, 'flights');
  return records.slice(0, n).map((r, i) => {
    const d = decoder.decodeJson(r, { partition: i % partitions, offset: Math.floor(i / partitions) });
    if (!d.ok) throw new Error(d.bad.reason);
    return d.event;
  });
}

/** The run of `partition` from offset `from` to `to` (inclusive). */
function run(events: readonly DecodedEvent[], partition: number, from: number, to: number): LogRun {
  return { source, partition, firstOffset: from, lastOffset: to, events: events.filter((e) => e.position!.partition === partition && e.position!.offset >= from && e.position!.offset <= to) };
}

/** A store whose write number `call` (1-based) first lets `before(call)` run to completion. */
function interleaved(store: RedisOnlineStore, before: (call: number) => Promise<void>): ConditionalStore {
  let calls = 0;
  return {
    async applyConditional(batch) {
      await before(++calls);
      return store.applyConditional(batch);
    },
  };
}

async function expectReference(store: RedisOnlineStore, n: number): Promise<void> {
  const { mismatches, compared } = await compareWithReference(compiled, store, fixtures.get(n)!);
  expect(mismatches.slice(0, 10)).toEqual([]);
  expect(compared).toBeGreaterThan(400);
}

const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

describe.each(['Redis', 'Redis Cluster'])('effectively-once log runs on %s', (backend) => {
  const newStore = (): RedisOnlineStore => new RedisOnlineStore(compiled.registry, clients.find((c) => c.name === backend)!.client, { prefix: `fences-${randomUUID().slice(0, 8)}`, maxKeysPerCall: 16 });

  it('a redelivered range cut differently from the first delivery is applied exactly once per key', async () => {
    // A first delivery applies offsets [0, 299] in runs of 100 of one partition; a redelivery from
    // offset 0 comes as one run [0, 599] (and then [0, 149] again).
    const events = decoded(600, 1);
    const store = newStore();
    for (const from of [0, 100, 200]) {
      const r = await applyRunsExactlyOnce(store, builder, [run(events, 0, from, from + 99)]);
      expect(r).toMatchObject({ rounds: 1, dropped: new Set() });
    }
    const redelivery = await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 599)]);
    expect(redelivery.rounds).toBe(2);
    expect(sum(redelivery.refusedFirstRound)).toBeGreaterThan(0);
    expect(sum(redelivery.refusedLaterRounds)).toBe(0);
    expect(sum(redelivery.alreadyApplied)).toBe(300 * VIEWS);
    const again = await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 149)]);
    expect(sum(again.alreadyApplied)).toBe(150 * VIEWS);
    await expectReference(store, 600);
  });

  it('a zombie writing inside the new owner’s first round: the owner is refused on those keys, rebuilds, and nothing counts twice', async () => {
    // The zombie fetched [0, 299] before it lost the partition; the new owner got [0, 599] from the
    // committed offset 0. The zombie's whole write lands between the owner's build and its write.
    const events = decoded(600, 1);
    const store = newStore();
    let zombie: Awaited<ReturnType<typeof applyRunsExactlyOnce>> | null = null;
    const owner = await applyRunsExactlyOnce(
      interleaved(store, async (call) => {
        if (call === 1) zombie = await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 299)]);
      }),
      builder,
      [run(events, 0, 0, 599)],
    );
    expect(zombie).toMatchObject({ rounds: 1 });
    expect(sum(owner.refusedFirstRound)).toBeGreaterThan(0);
    expect(sum(owner.alreadyApplied)).toBe(300 * VIEWS);
    await expectReference(store, 600);
  });

  it('the control: reading fences, then applying with plain fences (the previous design) double-counts in that same interleaving', async () => {
    const events = decoded(600, 1);
    const store = newStore();
    const plain = (r: LogRun): TileBatch => {
      const built = builder.build([r]).batch;
      return { ...built, keys: built.keys.map(({ fences, ...k }) => ({ ...k, fence: { source: 'flights', partition: 0, offset: fences[0]!.offset } })) };
    };
    // The owner reads the fences of its batch's keys: none yet.
    const ownerRun = run(events, 0, 0, 599);
    const keys = builder.build([ownerRun]).batch.keys.map((k) => ({ view: k.view, entityKey: k.entityKey }));
    expect((await redisAppliedOffsets(store).appliedOffsets('flights', 0, keys)).every((f) => f === null)).toBe(true);
    // The zombie writes [0, 299], then the owner writes what it built from the fences it read.
    await store.apply(plain(run(events, 0, 0, 299)));
    const applied = await store.apply(plain(ownerRun));
    expect(applied.fencedKeys).toBe(0);
    expect((await compareWithReference(compiled, store, fixtures.get(600)!)).mismatches.length).toBeGreaterThan(0);
  });

  it('a zombie writing between the owner’s refusal and its rebuilt write: refused again (a later round), rebuilt again, exact', async () => {
    const events = decoded(600, 1);
    const store = newStore();
    // The owner's previous life applied [0, 199] and died before committing.
    await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 199)]);
    const owner = await applyRunsExactlyOnce(
      interleaved(store, async (call) => {
        // After the owner's first round was refused on the keys of [0, 199], the zombie applies
        // its stale [0, 399] (itself refused on those keys, and rebuilt).
        if (call === 2) await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 399)]);
      }),
      builder,
      [run(events, 0, 0, 599)],
    );
    expect(sum(owner.refusedFirstRound)).toBeGreaterThan(0);
    expect(sum(owner.refusedLaterRounds)).toBeGreaterThan(0);
    expect(owner.rounds).toBe(3);
    await expectReference(store, 600);
  });

  it('a zombie writing after the owner: refused on every key, it has nothing left to write and drops its run', async () => {
    const events = decoded(600, 1);
    const store = newStore();
    await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 599)]);
    const asked: number[][] = [];
    const zombie = await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 299)], {
      dropRuns: (runs) => {
        asked.push(runs);
        return new Set(runs); // its heartbeat would say it lost the partition
      },
    });
    expect(asked).toEqual([[0]]);
    expect(zombie.dropped).toEqual(new Set([0]));
    expect(zombie.rounds).toBe(1);
    await expectReference(store, 600);
  });

  it('several partitions written together (group commit), two of them partly applied before under other cuts: exact', async () => {
    const events = decoded(2_000, 4);
    const store = newStore();
    // Earlier, partition 0 applied [0, 199] and partition 2 applied [0, 79] then [80, 349].
    await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 199)]);
    await applyRunsExactlyOnce(store, builder, [run(events, 2, 0, 79)]);
    await applyRunsExactlyOnce(store, builder, [run(events, 2, 80, 349)]);
    // Now all four partitions from offset 0, in one write; then the rest of partitions 1 and 3 with the same runs again.
    const together = await applyRunsExactlyOnce(store, builder, [0, 1, 2, 3].map((p) => run(events, p, 0, 399)));
    expect(sum(together.alreadyApplied)).toBe((200 + 350) * VIEWS);
    expect(together.rounds).toBe(2);
    await applyRunsExactlyOnce(store, builder, [run(events, 1, 0, 499), run(events, 3, 400, 499), run(events, 0, 400, 499), run(events, 2, 400, 499)]);
    await expectReference(store, 2_000);
  });
});

describe('fence contention', () => {
  it('gives up with TM_INGEST_FENCE_CONTENTION (a retryable code) when another writer keeps moving the fences', async () => {
    const events = decoded(50, 1);
    let calls = 0;
    // A store on which some other writer always got there first.
    const store: ConditionalStore = {
      async applyConditional(batch) {
        calls++;
        return { appliedUpdates: 0, lateTileEvents: 0, lateKeys: [], watermarkMs: null, refused: batch.keys.map((k, key) => ({ key, storedFences: k.fences.map((f) => f.appliedThrough + 1) })) };
      },
    };
    const error = await applyRunsExactlyOnce(store, builder, [run(events, 0, 0, 49)], { maxRounds: 5 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TidemarkError);
    expect(error).toMatchObject({ code: 'TM_INGEST_FENCE_CONTENTION' });
    expect(calls).toBe(5);
  });
});
