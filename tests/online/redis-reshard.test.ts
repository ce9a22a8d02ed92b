// The Redis store while a Redis Cluster moves slots (legacy, key-by-key migration: redis-server 7
// answers ASK for moved keys and TRYAGAIN for a script whose keys are split between the two nodes).
// A cluster of its own (slots are moved), three masters on loopback. Writes retry until the slot is
// whole again and never apply twice; reads answer correctly or with the coded, retryable
// TM_STORE_SLOT_MIGRATING; afterwards every value equals the in-memory store's from the same batches.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { compileOrThrow, featureView, TidemarkError } from '../../definitions/index.js';
import { MaterializerMetrics, TileBatchBuilder } from '../../ingest/index.js';
import { createRedisClient, MemoryOnlineStore, OnlineFeatureService, RedisOnlineStore, type OnlineStore } from '../../online/index.js';
import { hashSlot } from '../../online/redis.js';
import { decodeAll, events, user, type TestEvent } from '../definitions/support.js';
import { startRedisCluster, type RedisCluster } from '../support/redis.js';
import { clusterUrl, uniquePrefix } from './redis-backends.js';

const run = promisify(execFile);
const compiled = compileOrThrow([
  featureView({
    name: 'u',
    source: events,
    entity: user,
    features: { n: { agg: 'count', window: '1h', hop: '1m' }, total: { agg: 'sum', field: 'x', window: '1h', hop: '1m' }, mean: { agg: 'mean', field: 'x', window: '1d' }, latest: { agg: 'last', field: 's' } },
  }),
]);
const FEATURES = ['u:n', 'u:total', 'u:mean', 'u:latest'];

let cluster: RedisCluster;
let client: Cluster;
beforeAll(async () => {
  cluster = await startRedisCluster(3);
  client = createRedisClient(clusterUrl(cluster.nodes)) as Cluster;
  await client.ping();
}, 60_000);
afterAll(async () => {
  await client?.quit();
  await cluster?.stop();
});

/** A direct connection to one node (cluster administration). */
async function nodeClient(host: string, port: number): Promise<Redis> {
  const r = new Redis({ host, port, lazyConnect: true });
  await r.connect();
  return r;
}

async function nodeIds(): Promise<Map<string, { id: string; host: string; port: number }>> {
  const text = String(await client.nodes('master')[0]!.cluster('NODES'));
  const out = new Map<string, { id: string; host: string; port: number }>();
  for (const line of text.trim().split('\n')) {
    const [id, addr] = line.split(' ');
    const [hostPort] = addr!.split('@');
    const i = hostPort!.lastIndexOf(':');
    out.set(hostPort!, { id: id!, host: hostPort!.slice(0, i), port: Number(hostPort!.slice(i + 1)) });
  }
  return out;
}

function batchOf(raw: TestEvent[]) {
  return new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, raw));
}

async function read(store: OnlineStore, keys: string[]) {
  const { response } = await new OnlineFeatureService(compiled.registry, store, 'watermark').getOnlineFeatures({ features: FEATURES, entities: { k: keys } });
  return response.results;
}

describe('Redis Cluster slot migration', () => {
  it('a write to a slot split between two nodes waits for the move (TRYAGAIN), applies once, and reads fail only with TM_STORE_SLOT_MIGRATING', async () => {
    const store = new RedisOnlineStore(compiled.registry, client, { prefix: uniquePrefix(), clusterRetryMs: 20_000 });
    const impatient = new RedisOnlineStore(compiled.registry, client, { prefix: (store as unknown as { prefix: string }).prefix, clusterRetryMs: 300 });
    const twin = new MemoryOnlineStore(compiled.registry);
    const first = batchOf([{ ts: 60_000, k: 'a', n: 1, x: 1.5, s: 'p' }, { ts: 61_000, k: 'b', n: 1, x: 2, s: 'q' }]);
    const second = batchOf([{ ts: 120_000, k: 'a', n: 1, x: 0.25, s: 'r' }, { ts: 121_000, k: 'a', n: 1, x: 4, s: 's' }]);
    await store.apply(first);
    await twin.apply(first);

    // Start moving the slot of key a: only its tiles hash goes, its key hash and fences stay behind.
    const slot = hashSlot(store.keyHashKey('u', 'a'));
    const ids = await nodeIds();
    const owner = client.slots[slot]![0]!;
    const source = ids.get(owner)!;
    const target = [...ids.values()].find((n) => n.id !== source.id)!;
    const src = await nodeClient(source.host, source.port);
    const dst = await nodeClient(target.host, target.port);
    try {
      const keys = (await src.cluster('GETKEYSINSLOT', slot, 1000)) as string[];
      expect(keys.length).toBeGreaterThan(1);
      const moved = keys.find((k) => k.includes(':t:'))!;
      await dst.cluster('SETSLOT', slot, 'IMPORTING', source.id);
      await src.cluster('SETSLOT', slot, 'MIGRATING', target.id);
      await src.migrate(target.host, target.port, '', 0, 5000, 'KEYS', moved);

      const write = store.apply(second).then(
        (r) => ({ ok: true as const, r }),
        (e: unknown) => ({ ok: false as const, e }),
      );
      // A read that cannot wait gives the coded, retryable error, never a wrong value.
      const err = await read(impatient, ['a']).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TidemarkError);
      expect((err as TidemarkError).code).toBe('TM_STORE_SLOT_MIGRATING');
      expect((err as TidemarkError).message).toContain(`slot ${slot}`);
      await new Promise((r) => setTimeout(r, 300));
      expect(store.clusterRetries()).toBeGreaterThan(0);
      // The materializer's Prometheus metrics carry the count.
      const metrics = await new MaterializerMetrics(false, store).registry.metrics();
      expect(Number(/^tidemark_store_cluster_retries_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);

      // Finish the move: the rest of the slot's keys, then the slot's new owner on every node.
      const rest = ((await src.cluster('GETKEYSINSLOT', slot, 1000)) as string[]).filter((k) => k !== moved);
      if (rest.length > 0) await src.migrate(target.host, target.port, '', 0, 5000, 'KEYS', ...rest);
      for (const n of ids.values()) {
        const c = await nodeClient(n.host, n.port);
        await c.cluster('SETSLOT', slot, 'NODE', target.id);
        await c.quit();
      }
      const done = await write;
      expect(done.ok, done.ok ? '' : String(done.e)).toBe(true);
      await twin.apply(second);
      expect(await read(store, ['a', 'b'])).toEqual(await read(twin, ['a', 'b']));
      // Key a's events counted once each (1 before the move, 2 during it).
      expect((await read(store, ['a']))[1]!.values[0]).toBe(3);
    } finally {
      await src.quit();
      await dst.quit();
    }
  }, 60_000);

  it('while redis-cli reshards 2,000 slots, batches keep applying, reads answer or say TM_STORE_SLOT_MIGRATING, and the result equals the in-memory store', async () => {
    const store = new RedisOnlineStore(compiled.registry, client, { prefix: uniquePrefix() });
    const twin = new MemoryOnlineStore(compiled.registry);
    const keys = Array.from({ length: 400 }, (_, i) => `key${i}`);
    const batches = Array.from({ length: 60 }, (_, b) =>
      Array.from({ length: 80 }, (_, j): TestEvent => {
        const i = (b * 80 + j) % keys.length;
        return { ts: 60_000 + b * 30_000 + j, k: keys[i]!, n: i, x: ((b * 7 + j * 13) % 17) / 4 - 1.5, s: `v${b}-${j}` };
      }),
    );
    const ids = [...(await nodeIds()).values()];
    const from = ids[0]!;
    const to = ids[1]!;
    const reshard = run('redis-cli', ['--cluster', 'reshard', `${from.host}:${from.port}`, '--cluster-from', from.id, '--cluster-to', to.id, '--cluster-slots', '2000', '--cluster-pipeline', '1', '--cluster-yes'], { maxBuffer: 64 << 20 });
    let resharding = true;
    void reshard.finally(() => (resharding = false)).catch(() => undefined);

    let reads = 0;
    let migratingErrors = 0;
    let batchesDuringMove = 0;
    for (const raw of batches) {
      if (resharding) batchesDuringMove++;
      const batch = batchOf(raw);
      await store.apply(batch);
      await twin.apply(batch);
      const sample = keys.filter((_, i) => i % 37 === reads % 37);
      reads++;
      try {
        expect(await read(store, sample)).toEqual(await read(twin, sample));
      } catch (e) {
        if (!(e instanceof TidemarkError) || e.code !== 'TM_STORE_SLOT_MIGRATING') throw e;
        migratingErrors++;
      }
    }
    await reshard;
    expect(batchesDuringMove).toBeGreaterThan(0);
    expect(await read(store, keys)).toEqual(await read(twin, keys));
    // Every slot moved.
    const owners = await nodeIds();
    expect(owners.size).toBe(3);
    console.log(`reshard: ${batchesDuringMove} of ${batches.length} batches written during the move, ${store.clusterRetries()} cluster retries, ${migratingErrors} reads answered TM_STORE_SLOT_MIGRATING`);
  }, 120_000);
});
