// Definition changes in production (issue: plan, apply, bootstrap), run as users run them: the
// stream flows through a librdkafka mock cluster into `tidemark materialize` (a child process) and
// into the offline store (the offline sink, over the ClickHouse HTTP interface of the test fixture,
// so `tidemark bootstrap` in a child process reads the same chDB).
//
// 1. Deployed: only origin_delays (fixtures/versions/v1). The stream keeps flowing while v2 (a
//    window of origin_delays changed, route_delays added) is planned, applied and bootstrapped;
//    the bootstrap is SIGKILLed twice and rerun; the v1 materializer is killed and the v2 one
//    started (and killed once during the hand-over). Then every key of every view equals the
//    reference over every event, and the v1 version is still readable beside v2.
// 2. Redis loses the prefix's keys under a running materializer: it reports TM_STORE_STATE_LOST
//    (unhealthy) and writes nothing more; apply + bootstrap repair it; restarted, every key equals
//    the reference.
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Partitioners, type Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, entityKeyValues, loadDefinitions, referenceViewValues, type CompiledDefinitions, type ReferenceEvent, type ViewPlan } from '../../definitions/index.js';
import { EventDecoder } from '../../ingest/index.js';
import { OfflineKafkaSink, OfflineStore } from '../../offline/index.js';
import { createRedisClient, RedisOnlineStore, readStoredRegistryState, viewNamespace, type RedisClient } from '../../online/index.js';
import { startClickHouseHttpFixture, type ClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { startMockKafka } from '../support/kafka.js';
import { mulberry32 } from '../support/random.js';
import { testRedisUrl } from '../support/redis.js';
import { sleep } from '../support/services.js';
import type { FlightsFixture } from '../support/flights.js';
import { committedTotal, compareWithReference, flightRecords, getJson, kafkaClient, produce, runCli, until, type CliChild } from './support.js';

const PARTITIONS = 4;
const SESSION_TIMEOUT_MS = '3000';
const TOTAL = 24_000;
const V1 = 'tests/fixtures/versions/v1';
const V2 = 'tests/fixtures/versions/v2';

type Mock = Awaited<ReturnType<typeof startMockKafka>>;
let records: string[];
let redis: RedisClient;
let v1: CompiledDefinitions;
let v2: CompiledDefinitions;

beforeAll(async () => {
  records = await flightRecords(TOTAL);
  redis = createRedisClient(testRedisUrl());
  v1 = compileOrThrow((await loadDefinitions(V1)).module);
  v2 = compileOrThrow((await loadDefinitions(V2)).module);
}, 60_000);
afterAll(async () => {
  await redis?.quit();
});

/** The reference over the first `n` records, per view of `compiled`, shaped as compareWithReference takes it. */
function referenceOf(compiled: CompiledDefinitions, n: number): FlightsFixture {
  const decoder = new EventDecoder(compiled, 'flights');
  const source = compiled.registry.sources[0]!;
  const eventsByKey = new Map<string, Map<string, ReferenceEvent[]>>(source.views.map((v) => [v, new Map()]));
  for (const record of records.slice(0, n)) {
    const d = decoder.decodeJson(record);
    if (!d.ok) throw new Error(d.bad.reason);
    source.views.forEach((view, i) => {
      const byKey = eventsByKey.get(view)!;
      const list = byKey.get(d.event.viewKeys[i]!) ?? [];
      list.push({ eventTimeMs: d.event.eventTimeMs, fields: d.event.fields });
      byKey.set(d.event.viewKeys[i]!, list);
    });
  }
  return {
    compiled,
    eventsByKey,
    reference: (view: ViewPlan, key: string, t: number) => referenceViewValues(view, eventsByKey.get(view.name)!.get(key) ?? [], entityKeyValues(key, view.joinKeys.length), t),
  } as unknown as FlightsFixture;
}

interface Running {
  cli: CliChild;
  url: string;
}

async function startMaterialize(mock: Mock, definitions: string, group: string, prefix: string): Promise<Running> {
  const cli = runCli(['materialize', '--definitions', definitions, '--kafka-brokers', mock.bootstrap, '--redis-url', testRedisUrl(), '--group', group, '--prefix', prefix, '--port', '0', '--session-timeout', SESSION_TIMEOUT_MS]);
  let url: string | null = null;
  await until(() => {
    url = /health and metrics on (http:\/\/\S+)\/healthz/.exec(cli.output())?.[1] ?? /"healthz":"(http:\/\/\S+)\/healthz"/.exec(cli.output())?.[1] ?? null;
    return url !== null || cli.child.exitCode !== null;
  }, 'tidemark materialize to start', 90_000).catch((e: Error) => {
    cli.child.kill('SIGKILL');
    throw new Error(`${e.message}:\n${cli.output()}`);
  });
  if (url === null) throw new Error(`tidemark materialize exited:\n${cli.output()}`);
  return { cli, url };
}

async function kill(r: { cli: CliChild }): Promise<void> {
  r.cli.child.kill('SIGKILL');
  await r.cli.exit;
}

/** `tidemark <args>` to completion. */
async function tidemark(args: string[]): Promise<{ code: number | string; output: string }> {
  const cli = runCli(args);
  const code = await cli.exit;
  return { code, output: cli.output() };
}

function bootstrapArgs(fixture: ClickHouseHttpFixture, prefix: string, extra: string[] = []): string[] {
  return ['bootstrap', '--definitions', V2, '--redis-url', testRedisUrl(), '--prefix', prefix, '--clickhouse-url', fixture.url, '--batch-keys', '40', '--no-progress', ...extra];
}

describe('definition changes while the stream flows (child processes, mock Kafka, Redis, chDB)', () => {
  let mock: Mock;
  let fixture: ClickHouseHttpFixture;
  let offline: OfflineStore;
  let sink: OfflineKafkaSink;
  let producer: Producer;
  const prefix = `versions-${randomUUID().slice(0, 8)}`;
  const group = `mat-${randomUUID().slice(0, 8)}`;
  let current: Running | null = null;
  const random = mulberry32(20261206);

  beforeAll(async () => {
    mock = await startMockKafka({ brokers: 1 });
    await mock.createTopic('flights', PARTITIONS);
    fixture = await startClickHouseHttpFixture(join(mkdtempSync(join(tmpdir(), 'tidemark-versions-')), 'chdb'));
    offline = await OfflineStore.open(v1, { clickhouseUrl: fixture.url });
    producer = kafkaClient(mock.brokers).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
  }, 120_000);
  afterAll(async () => {
    if (current) await kill(current);
    await sink?.stop().catch(() => undefined);
    await producer?.disconnect().catch(() => undefined);
    await offline?.close();
    await fixture?.close();
    await mock?.stop();
  });

  it('plan, apply and bootstrap v2 (bootstrap killed twice) while v1 materializes; the v2 materializer takes over (killed once); every key equals the reference', async () => {
    const kafka = kafkaClient(mock.brokers);
    await produce(producer, 'flights', records.slice(0, 12_000), PARTITIONS);
    const sinkGroup = `sink-${randomUUID().slice(0, 8)}`;
    sink = new OfflineKafkaSink(offline.executor, v1, { brokers: mock.brokers, groupId: sinkGroup });
    await sink.start();
    current = await startMaterialize(mock, V1, group, prefix);
    await until(async () => (await committedTotal(kafka, group, 'flights')) >= 12_000 && sink.stats.events >= 12_000, 'v1 to materialize and sink the first records', 120_000);

    // The offline sink falls behind (stopped until the bootstrap is done), so the materializer
    // commits past what the bootstrap holds and must be rewound at the hand-over.
    await sink.stop();
    // The stream keeps flowing through everything below.
    const flowing = (async () => {
      for (let i = 12_000; i < 18_000; i += 1_000) {
        await produce(producer, 'flights', records.slice(i, i + 1_000), PARTITIONS, i);
        await sleep(300);
      }
    })();

    const plan = await tidemark(['plan', '--definitions', V2, '--redis-url', testRedisUrl(), '--prefix', prefix]);
    expect(plan.code, plan.output).toBe(2);
    expect(plan.output).toContain('view origin_delays: changed');
    expect(plan.output).toContain('feature changed: delay_mean_1d: window 1d -> 2d');
    expect(plan.output).toContain('view route_delays: new');

    const applied = await tidemark(['apply', '--definitions', V2, '--redis-url', testRedisUrl(), '--prefix', prefix]);
    expect(applied.code, applied.output).toBe(0);
    expect(applied.output).toMatch(/origin_delays: version origin_delays@[0-9a-f]{12} pending/);
    // Servers of v2 answer 503 until the bootstrap completes; v1 keeps serving its own version.
    const v2Reader = new RedisOnlineStore(v2.registry, redis, { prefix, requireReadyVersions: true });
    await expect(v2Reader.readTiles('route_delays', ['["SFO","LAX"]'], [])).rejects.toMatchObject({ code: 'TM_STORE_NEEDS_BOOTSTRAP' });
    const v1Reader = new RedisOnlineStore(v1.registry, redis, { prefix, requireReadyVersions: true });
    await v1Reader.readTiles('origin_delays', ['SFO'], []);

    // SIGKILL the bootstrap twice mid-run (once some batch is checkpointed, then a random time later), then let it finish.
    const checkpointed = async (): Promise<boolean> => Object.values((await readStoredRegistryState(redis, prefix)).versions).some((v) => v.status === 'bootstrapping' && (v.bootstrap?.keys ?? 0) > 0);
    const unfinished = async (): Promise<boolean> => Object.values((await readStoredRegistryState(redis, prefix)).versions).some((v) => v.status === 'bootstrapping');
    // The first kill comes as soon as a batch is checkpointed; the second a random time later, by
    // which a bootstrap on a loaded machine may have finished: then the last run has nothing left.
    for (let attempt = 0; attempt < 2; attempt++) {
      const cli = runCli(bootstrapArgs(fixture, prefix));
      await until(async () => (await checkpointed()) || cli.child.exitCode !== null, 'the bootstrap to write a batch', 60_000);
      if (attempt > 0) await sleep(Math.floor(random() * 400));
      cli.child.kill('SIGKILL');
      await cli.exit;
      if (attempt === 0) expect(await unfinished(), 'the first bootstrap was killed before it finished').toBe(true);
    }
    const resuming = await unfinished();
    const done = await tidemark(bootstrapArgs(fixture, prefix));
    expect(done.code, done.output).toBe(0);
    if (resuming) {
      expect(done.output).toMatch(/route_delays: version route_delays@[0-9a-f]{12} ready/);
      expect(done.output).toContain('(resumed)');
    } else expect(done.output).toContain('every view version is ready: nothing to bootstrap');
    const state = await readStoredRegistryState(redis, prefix);
    expect(Object.entries(state.statuses).filter(([, s]) => s !== 'ready')).toEqual([]);
    expect(state.history.map((h) => h.views)).toEqual([Object.fromEntries(v2.registry.views.map((v) => [v.name, viewNamespace(v)]))]);

    await until(async () => (await committedTotal(kafka, group, 'flights')) > 12_000, 'v1 to commit past the bootstrap', 60_000);
    sink = new OfflineKafkaSink(offline.executor, v1, { brokers: mock.brokers, groupId: sinkGroup });
    await sink.start();

    // The hand-over: v1's materializer stops, v2's starts (and is killed once while it takes over).
    await kill(current);
    current = await startMaterialize(mock, V2, group, prefix);
    await sleep(500 + Math.floor(random() * 3_000));
    const handOver = current.cli;
    await kill(current);
    current = await startMaterialize(mock, V2, group, prefix);
    await flowing;
    // One of the two rewound the group to the bootstrap's offsets (the group had committed past them).
    await until(() => /partition rewound to the bootstrap offset/.test(handOver.output() + current!.cli.output()), 'the rewind', 90_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${handOver.output()}\n---\n${current!.cli.output()}`);
    });
    await produce(producer, 'flights', records.slice(18_000, TOTAL), PARTITIONS, 18_000);
    await until(async () => (await committedTotal(kafka, group, 'flights')) >= TOTAL, 'v2 to catch up', 120_000);
    await until(async () => ((await getJson(`${current!.url}/healthz`))?.body.stats as { batchesInFlight?: number } | undefined)?.batchesInFlight === 0, 'the last batches to be written');

    const store = new RedisOnlineStore(v2.registry, redis, { prefix, requireReadyVersions: true });
    const { mismatches, compared } = await compareWithReference(v2, store, referenceOf(v2, TOTAL));
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(5_000);
    // v1's version of origin_delays is still there, readable by v1 servers until pruned.
    const [old] = await v1Reader.readTiles('origin_delays', ['SFO'], [{ hopMs: 3_600_000, fromIndex: 0, toIndex: 1e9 }]);
    expect(old).not.toBeNull();
  }, 420_000);

  it('Redis loses the prefix under a running materializer: TM_STORE_STATE_LOST, unhealthy; apply + bootstrap repair it; every key equals the reference', async () => {
    expect(current, 'the previous test leaves the v2 materializer running').not.toBeNull();
    const kafka = kafkaClient(mock.brokers);
    // "Flush": every key of this prefix (the Redis server is shared by the suite).
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
    const more = records.slice(0, 2_000).map((r) => {
      const row = JSON.parse(r) as { date: number };
      return JSON.stringify({ ...row, date: row.date + 30 * 86_400_000 });
    });
    await produce(producer, 'flights', more, PARTITIONS, TOTAL);
    await until(async () => {
      const h = await getJson(`${current!.url}/healthz`);
      return h !== null && h.status === 503 && JSON.stringify(h.body).includes('TM_STORE_STATE_LOST');
    }, 'the materializer to report the lost state', 60_000);
    expect(await redis.exists(`${prefix}:{meta}`)).toBe(0);
    const stored = async (): Promise<number> => Number((await offline.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_events_flights'))[0]!.n);
    await until(async () => (await stored()) >= TOTAL + 2_000, 'the offline sink to store the new records', 60_000);

    await kill(current!);
    current = null;
    const blocked = await startMaterialize(mock, V2, group, prefix);
    expect((await getJson(`${blocked.url}/healthz`))?.body).toMatchObject({ code: 'TM_STORE_STATE_LOST' });
    await kill(blocked);

    const applied = await tidemark(['apply', '--definitions', V2, '--redis-url', testRedisUrl(), '--prefix', prefix]);
    expect(applied.code, applied.output).toBe(0);
    const done = await tidemark(bootstrapArgs(fixture, prefix));
    expect(done.code, done.output).toBe(0);
    current = await startMaterialize(mock, V2, group, prefix);
    await until(async () => (await committedTotal(kafka, group, 'flights')) >= TOTAL + 2_000, 'the repaired materializer to catch up', 120_000);
    await until(async () => ((await getJson(`${current!.url}/healthz`))?.body.stats as { batchesInFlight?: number } | undefined)?.batchesInFlight === 0, 'the last batches to be written');

    const all = [...records, ...more];
    const saved = records;
    records = all;
    try {
      const store = new RedisOnlineStore(v2.registry, redis, { prefix, requireReadyVersions: true });
      const { mismatches, compared } = await compareWithReference(v2, store, referenceOf(v2, all.length));
      expect(mismatches.slice(0, 10)).toEqual([]);
      expect(compared).toBeGreaterThan(5_000);
    } finally {
      records = saved;
    }
  }, 300_000);
});
