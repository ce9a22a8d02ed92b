// The shared OnlineStore suite on a Redis Cluster of three masters (the run's, or
// REDIS_CLUSTER_NODES): every script touches the keys of one entity, which share a hash slot.
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { compileOrThrow, featureView } from '../../definitions/index.js';
import { TileBatchBuilder } from '../../ingest/index.js';
import { createRedisClient, RedisOnlineStore } from '../../online/index.js';
import { hashSlot } from '../../online/redis.js';
import { decodeAll, events, user } from '../definitions/support.js';
import { testRedisClusterNodes } from '../support/redis.js';
import { clusterUrl, redisBackend, uniquePrefix } from './redis-backends.js';
import { runStoreSuite } from './store-suite.js';

const client = createRedisClient(clusterUrl(testRedisClusterNodes()));
afterAll(async () => {
  await client.quit();
});

runStoreSuite(redisBackend('Redis Cluster', client));

describe('Redis Cluster specifics', () => {
  it('puts every key of one entity in one slot and spreads entities over the masters', async () => {
    expect(client).toBeInstanceOf(Cluster);
    const compiled = compileOrThrow([featureView({ name: 'u', source: events, entity: user, features: { n: { agg: 'count', window: '10ms', hop: '5ms' }, last: { agg: 'last', field: 's' } } })]);
    const prefix = uniquePrefix();
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    const entityKeys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    await store.apply(new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, entityKeys.map((k, i) => ({ ts: i, k, n: 1, x: 1, s: k })))));
    const masters = new Set<string>();
    for (const k of entityKeys) {
      const names = [store.keyHashKey('u', k), ...[0, 5, 3_600_000].map((hop) => store.tilesKey('u', k, hop))];
      const slots = await Promise.all(names.map((name) => client.cluster('KEYSLOT', name)));
      expect(new Set(slots).size, k).toBe(1);
      masters.add((client as Cluster).slots[slots[0] as number]![0]!);
    }
    expect(masters.size).toBe(3);
  });

  it('computes hash slots as the cluster does (so each script call holds keys of one slot)', async () => {
    const names = ['plain', 'tm:{origin_delays:SFO}:k', 'tm:{route_delays:["SFO","LAX"]}:t:3600000', 'a{}b', '{}', 'a{b}c{d}', 'x{y', 'tm:{u:\u00e9\u{1F600}}:k', 'tm:{u:x}y}:k', '{{}}'];
    for (let i = 0; i < 40; i++) names.push(`tm:{v:k${i}}:t:${i}`);
    for (const name of names) expect(hashSlot(name), name).toBe(await client.cluster('KEYSLOT', name));
  });
});
