// The shared OnlineStore suite on a single Redis (the run's redis-server, or REDIS_URL), plus what
// only the Redis store has: its key layout and the layout check of stored tiles.
import { afterAll, describe, expect, it } from 'vitest';
import { compileOrThrow, featureView } from '../../definitions/index.js';
import { TileBatchBuilder } from '../../ingest/index.js';
import { createRedisClient, RedisOnlineStore, RedisStoreError } from '../../online/index.js';
import { decodeAll, events, user } from '../definitions/support.js';
import { testRedisUrl } from '../support/redis.js';
import { countRoundTrips, redisBackend, uniquePrefix } from './redis-backends.js';
import { runStoreSuite } from './store-suite.js';

const client = createRedisClient(testRedisUrl());
afterAll(async () => {
  await client.quit();
});

runStoreSuite(redisBackend('Redis', client));

describe('Redis store specifics', () => {
  const compiled = compileOrThrow([
    featureView({ name: 'u', source: events, entity: user, features: { n: { agg: 'count', window: '10ms', hop: '5ms' }, last: { agg: 'last', field: 's' } } }),
  ]);

  it('keeps one hash per (view, entity key, tile group) and one per key, all under one hash tag, and a meta hash', async () => {
    const prefix = uniquePrefix();
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    await store.apply(new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, [{ ts: 7, k: 'SFO', n: 1, x: 2, s: 'hi' }])));
    const keys = (await client.keys(`${prefix}:*`)).sort();
    expect(keys).toEqual([`${prefix}:{meta}`, `${prefix}:{u:SFO}:k`, `${prefix}:{u:SFO}:t:0`, `${prefix}:{u:SFO}:t:3600000`, `${prefix}:{u:SFO}:t:5`].sort());
    expect(await client.hgetall(`${prefix}:{u:SFO}:k`)).toEqual({ seen: '1' });
    expect(await client.hkeys(`${prefix}:{u:SFO}:t:5`)).toEqual(['1']);
    const meta = await client.hgetall(`${prefix}:{meta}`);
    expect(meta).toMatchObject({ watermark: '7', tiles: '3', 'keys:u': '1' });
    expect(meta['layout:u']).toMatch(/^[0-9a-f]{16}$/);
  });

  it('refuses, with a coded error, to read or write tiles stored with another layout under the same prefix', async () => {
    const prefix = uniquePrefix();
    const first = new RedisOnlineStore(compiled.registry, client, { prefix });
    await first.apply(new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, [{ ts: 7, k: 'a', n: 1, x: 2, s: 'hi' }])));
    const changed = compileOrThrow([featureView({ name: 'u', source: events, entity: user, features: { n: { agg: 'sum', field: 'x', window: '10ms', hop: '5ms' } } })]);
    const second = new RedisOnlineStore(changed.registry, client, { prefix });
    const error = await second.readTiles('u', ['a'], []).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RedisStoreError);
    expect(error).toMatchObject({ code: 'TM_STORE_LAYOUT_MISMATCH', details: { view: 'u', prefix } });
    await expect(second.apply(new TileBatchBuilder(changed.registry).build(decodeAll(changed, [{ ts: 8, k: 'a', n: 1, x: 2, s: null }])))).rejects.toThrow(/another layout/);
  });

  it('the round-trip probe of the suite counts sequential commands as separate round trips', async () => {
    expect(await countRoundTrips(client, () => Promise.all([client.ping(), client.ping(), client.ping()]))).toBe(1);
    expect(
      await countRoundTrips(client, async () => {
        await client.ping();
        await client.ping();
      }),
    ).toBe(2);
  });

  it('rejects a prefix with braces (it would break the hash tags)', () => {
    expect(() => new RedisOnlineStore(compiled.registry, client, { prefix: 'a{b' })).toThrow(RedisStoreError);
  });
});
