// The shared OnlineStore suite on a single Redis (the run's redis-server, or REDIS_URL), plus what
// only the Redis store has: its key layout, the layout check of stored tiles, compare-and-set
// fences, script calls of any size, and trimming of tiles stored without lower bounds.
import { afterAll, describe, expect, it } from 'vitest';
import { compileOrThrow, featureView } from '../../definitions/index.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { EventDecoder, replayParquetFile, TileBatchBuilder } from '../../ingest/index.js';
import { closedSeries, createRedisClient, evaluateFeature, foldClosedWindows, MemoryOnlineStore, RedisOnlineStore, RedisStoreError, storeClockMs, tileRangesFor, type TileRange } from '../../online/index.js';
import type { CasFence, ConditionalTileBatch } from '../../online/redis.js';
import { loadFlightsFixture } from '../support/flights.js';
import { flightRecords } from '../kafka/support.js';
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
    // The keys of a view version live under its namespace <view>@<version id>.
    const ns = store.namespaceOf('u');
    expect(ns).toMatch(/^u@[0-9a-f]{12}$/);
    expect(keys).toEqual([`${prefix}:{meta}`, `${prefix}:{${ns}:SFO}:k`, `${prefix}:{${ns}:SFO}:t:0`, `${prefix}:{${ns}:SFO}:t:3600000`, `${prefix}:{${ns}:SFO}:t:5`].sort());
    expect(await client.hgetall(`${prefix}:{${ns}:SFO}:k`)).toEqual({ seen: '1' });
    expect(await client.hkeys(`${prefix}:{${ns}:SFO}:t:5`)).toEqual(['1']);
    const meta = await client.hgetall(`${prefix}:{meta}`);
    expect(meta).toMatchObject({ watermark: '7', tiles: '3', [`keys:${ns}`]: '1' });
    expect(meta[`fp:${ns}`]).toMatch(/^[0-9a-f]{16}$/);
  });

  it('a changed view is a new version under its own namespace, beside the old one: both stay readable', async () => {
    const prefix = uniquePrefix();
    const first = new RedisOnlineStore(compiled.registry, client, { prefix });
    await first.apply(new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, [{ ts: 7, k: 'a', n: 1, x: 2, s: 'hi' }])));
    const changed = compileOrThrow([featureView({ name: 'u', source: events, entity: user, features: { n: { agg: 'sum', field: 'x', window: '10ms', hop: '5ms' } } })]);
    const second = new RedisOnlineStore(changed.registry, client, { prefix });
    expect(second.namespaceOf('u')).not.toBe(first.namespaceOf('u'));
    await second.apply(new TileBatchBuilder(changed.registry).build(decodeAll(changed, [{ ts: 8, k: 'a', n: 1, x: 5, s: null }])));
    const [old] = await first.readTiles('u', ['a'], [{ hopMs: 5, fromIndex: 0, toIndex: 10 }]);
    const [now] = await second.readTiles('u', ['a'], [{ hopMs: 5, fromIndex: 0, toIndex: 10 }]);
    expect(old!.get(5)!.get(1)!.nums).toEqual([1]);
    expect(now!.get(5)!.get(1)!.nums[0]).toBe(5);
  });

  it('refuses, with a coded error, to read or write a version whose recorded layout fingerprint is another', async () => {
    const prefix = uniquePrefix();
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    await client.hset(`${prefix}:{meta}`, `fp:${store.namespaceOf('u')}`, 'another-layout');
    const error = await store.readTiles('u', ['a'], []).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RedisStoreError);
    expect(error).toMatchObject({ code: 'TM_STORE_LAYOUT_MISMATCH', details: { view: 'u', prefix } });
    await expect(store.apply(new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, [{ ts: 8, k: 'a', n: 1, x: 2, s: null }])))).rejects.toThrow(/another layout/);
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

  it('a read with its watermark is one script call, one round trip, once the store has seen a watermark', async () => {
    const prefix = uniquePrefix();
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    const view = compiled.registry.views[0]!;
    const rangesAt = (wm: number | null): TileRange[] => tileRangesFor(view, view.features, storeClockMs('watermark', wm), wm);
    const builder = new TileBatchBuilder(compiled.registry);
    await store.apply(builder.build(decodeAll(compiled, [{ ts: 7, k: 'a', n: 1, x: 2, s: 'hi' }])));
    expect((await store.readAtWatermark('u', ['a'], rangesAt)).watermarkMs).toBe(7);
    await store.apply(builder.build(decodeAll(compiled, [{ ts: 8, k: 'a', n: 1, x: 2, s: 'ho' }])));
    let read: Awaited<ReturnType<RedisOnlineStore['readAtWatermark']>> | undefined;
    // 7 -> 8 stays in the tiles the last read's ranges named: one call
    expect(await countRoundTrips(client, async () => (read = await store.readAtWatermark('u', ['a', 'b'], rangesAt)))).toBe(1);
    expect(read!.watermarkMs).toBe(8);
    expect(evaluateFeature(view, view.features[1]!, read!.tiles[0]!, 9, 8).value).toBe('ho');
    expect(read!.tiles[1]).toBeNull();
    // 8 -> 12 crosses the 5 ms tile edge the ranges depend on: the read is sent again with the new ranges
    await store.apply(builder.build(decodeAll(compiled, [{ ts: 12, k: 'a', n: 1, x: 2, s: 'hu' }])));
    expect(await countRoundTrips(client, async () => (read = await store.readAtWatermark('u', ['a'], rangesAt)))).toBe(2);
    expect(read!.watermarkMs).toBe(12);
    expect(evaluateFeature(view, view.features[0]!, read!.tiles[0]!, 13, 12).value).toBe(3); // tiles [5, 10) and [10, 15)
  });

  it('rejects a prefix with braces (it would break the hash tags)', () => {
    expect(() => new RedisOnlineStore(compiled.registry, client, { prefix: 'a{b' })).toThrow(RedisStoreError);
  });
});

describe('Redis store: closed windows', () => {
  // Float values with rollup levels (600 tiles per window): the record the read script folds must be
  // the twin's fold bit for bit, and a change to a tile it merged must drop it.
  const compiled = compileOrThrow([
    featureView({
      name: 'u',
      source: events,
      entity: user,
      features: {
        sum: { agg: 'sum', field: 'x', window: '600ms', hop: '1ms' },
        sd: { agg: 'stddev', field: 'x', window: '300ms', hop: '1ms' },
        p90: { agg: 'approx_percentile', field: 'x', window: '600ms', hop: '1ms', quantile: 0.9 },
        first_s: { agg: 'first', field: 's', window: '450ms', hop: '1ms' },
        latest: { agg: 'last', field: 's' },
      },
    }),
  ]);
  const view = compiled.registry.views[0]!;

  it('a read keeps each key\'s closed windows next to its head tile, bit-identical to the in-memory fold; a late event drops them, the next read folds them again', async () => {
    const prefix = uniquePrefix();
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    const twin = new MemoryOnlineStore(compiled.registry);
    const builder = new TileBatchBuilder(compiled.registry);
    const apply = async (raw: { ts: number; k: string; x: number; s: string }[]): Promise<void> => {
      const batch = builder.build(decodeAll(compiled, raw.map((e) => ({ ...e, n: 1 }))));
      twin.applySync(structuredClone(batch));
      await store.apply(batch);
    };
    const closedField = (k: string) => client.hget(store.tilesKey('u', k, 1), 'c');
    const keys = ['a', 'b'];
    const readClosed = async (t: number) => {
      const head = Math.floor(t);
      const [tiles, twinTiles] = [await store.readTiles('u', keys, tileRangesFor(view, view.features, t, (await store.watermarkMs())!)), twin.readTilesSync('u', keys)];
      keys.forEach((k, i) => expect(tiles[i]!.get(closedSeries(1))!.get(head), `key ${k} at ${t}`).toStrictEqual(foldClosedWindows(view, 1, twinTiles[i]!, head)));
    };
    try {
      let x = 0.1;
      await apply(Array.from({ length: 400 }, (_, i) => ({ ts: i * 2, k: keys[i % 2]!, x: (x = (x * 7.3 + 0.37) % 101) - 50.5, s: String.fromCharCode(97 + (i % 5)) })));
      expect(await closedField('a')).toBeNull();
      await readClosed(800);
      expect(await closedField('a')).not.toBeNull();
      expect(await closedField('b')).not.toBeNull();
      // an event at the head tile or later leaves them; one before the head drops them (key a only)
      await apply([{ ts: 800, k: 'a', x: 1.5, s: 'z' }]);
      expect(await closedField('a')).not.toBeNull();
      await apply([{ ts: 513, k: 'a', x: 1e-9, s: 'y' }]);
      expect(await closedField('a')).toBeNull();
      expect(await closedField('b')).not.toBeNull();
      await readClosed(801);
      await readClosed(800); // an earlier head: folded for the read, the later record kept
      expect(Number(await client.hget(store.tilesKey('u', 'a', 1), 'c@'))).toBe(801);
      // values through the service path equal the twin's
      const t = 801;
      for (const k of keys) {
        const [tiles] = await store.readTiles('u', [k], tileRangesFor(view, view.features, t, 800));
        const [twinTiles] = twin.readTilesSync('u', [k]);
        for (const f of view.features) expect(evaluateFeature(view, f, tiles!, t, 800)).toStrictEqual(evaluateFeature(view, f, twinTiles!, t, 800));
      }
    } finally {
      await store.close();
    }
  });
  it('a reader that may not store closed windows (an ACL user without HSET) still answers with the same values, folding each time', async () => {
    const prefix = uniquePrefix();
    const writer = new RedisOnlineStore(compiled.registry, client, { prefix });
    const twin = new MemoryOnlineStore(compiled.registry);
    const batch = new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, Array.from({ length: 50 }, (_, i) => ({ ts: i * 9, k: 'a', n: 1, x: i / 7, s: String(i % 3) }))));
    twin.applySync(structuredClone(batch));
    await writer.apply(batch);
    const user = `reader-${prefix}`;
    await client.call('ACL', 'SETUSER', user, 'on', '>pw', '~*', '+@read', '+hsetnx', '+evalsha', '+eval', '+script', '+ping', '+info', '+client', '+hello');
    const url = new URL(testRedisUrl());
    const readerClient = createRedisClient(`redis://${user}:pw@${url.host}`);
    const reader = new RedisOnlineStore(compiled.registry, readerClient, { prefix });
    try {
      await expect(readerClient.hset(writer.tilesKey('u', 'a', 1), 'x', '1')).rejects.toThrow(/NOPERM/);
      for (const t of [442, 450, 1000]) {
        const [tiles] = await reader.readTiles('u', ['a'], tileRangesFor(view, view.features, t, 441));
        const [twinTiles] = twin.readTilesSync('u', ['a']);
        for (const f of view.features) expect(evaluateFeature(view, f, tiles!, t, 441), `${f.name} at ${t}`).toStrictEqual(evaluateFeature(view, f, twinTiles!, t, 441));
      }
      expect(await client.hget(writer.tilesKey('u', 'a', 1), 'c')).toBeNull();
    } finally {
      await reader.close();
      await readerClient.quit();
      await client.call('ACL', 'DELUSER', user);
    }
  });
});

describe('Redis store: conditional (compare-and-set) applies', () => {
  const compiled = compileOrThrow([featureView({ name: 'u', source: events, entity: user, allowedLateness: '5ms', features: { n: { agg: 'count', window: '10ms', hop: '5ms' } } })]);
  const view = compiled.registry.views[0]!;
  const builder = new TileBatchBuilder(compiled.registry);
  const cas = (raw: { ts: number; k: string }[], fences: (k: string) => CasFence[]): ConditionalTileBatch => {
    const batch = builder.build(decodeAll(compiled, raw.map((e) => ({ ...e, n: 1, x: 1, s: null }))));
    return { ...batch, keys: batch.keys.map((k) => ({ ...k, fences: fences(k.entityKey) })) };
  };
  const count = async (store: RedisOnlineStore, key: string, t: number, wm: number): Promise<unknown> => {
    const [tiles] = await store.readTiles('u', [key], tileRangesFor(view, view.features, t, wm));
    return evaluateFeature(view, view.features[0]!, tiles ?? null, t, wm).value;
  };

  it('applies the keys whose stored fences are at most appliedThrough, refuses the others with their stored fences, and moves the watermark only when none was refused', async () => {
    const store = new RedisOnlineStore(compiled.registry, client, { prefix: uniquePrefix() });
    const f = (partition: number, offset: number, appliedThrough: number): CasFence => ({ source: 'ev', partition, offset, appliedThrough });
    expect(await store.applyConditional(cas([{ ts: 1, k: 'a' }, { ts: 2, k: 'b' }], () => [f(0, 9, -1)]))).toMatchObject({ appliedUpdates: 2, refused: [], watermarkMs: 2 });
    // a: partition 0 was applied through 9, so an update built from -1 is refused; b: built from 9, applied.
    const second = await store.applyConditional(cas([{ ts: 3, k: 'a' }, { ts: 4, k: 'b' }, { ts: 5, k: 'c' }], (k) => (k === 'a' ? [f(0, 19, -1), f(1, 4, -1)] : k === 'b' ? [f(0, 19, 9)] : [f(1, 4, -1)])));
    expect(second).toMatchObject({ appliedUpdates: 2, refused: [{ key: 0, storedFences: [9, -1] }], watermarkMs: 2 });
    expect(await store.watermarkMs()).toBe(2);
    expect(await client.hget(store.keyHashKey('u', 'a'), 'fence:ev:0')).toBe('9');
    expect(await client.hget(store.keyHashKey('u', 'b'), 'fence:ev:0')).toBe('19');
    expect(await client.hget(store.keyHashKey('u', 'c'), 'fence:ev:1')).toBe('4');
    // Rebuilt from the stored fences, a is applied, and the watermark moves.
    expect(await store.applyConditional(cas([{ ts: 3, k: 'a' }], () => [f(0, 19, 9), f(1, 4, -1)]))).toMatchObject({ appliedUpdates: 1, refused: [], watermarkMs: 3 });
    expect([await count(store, 'a', 6, 5), await count(store, 'b', 6, 5), await count(store, 'c', 6, 5)]).toEqual([2, 2, 1]);
  });

  it('refuses, before writing anything, updates without fences, with appliedThrough at or past the offset, with two fences of one partition, or with two updates of one tile', async () => {
    const store = new RedisOnlineStore(compiled.registry, client, { prefix: uniquePrefix() });
    const good = cas([{ ts: 1, k: 'a' }], () => [{ source: 'ev', partition: 0, offset: 5, appliedThrough: -1 }]);
    const bad: ConditionalTileBatch[] = [
      { ...good, keys: [...good.keys, { ...good.keys[0]!, entityKey: 'b', fences: [] }] },
      { ...good, keys: [...good.keys, { ...good.keys[0]!, entityKey: 'b', fences: [{ source: 'ev', partition: 0, offset: 5, appliedThrough: 5 }] }] },
      { ...good, keys: [...good.keys, { ...good.keys[0]!, entityKey: 'b', fences: [{ source: 'ev', partition: 0, offset: 5, appliedThrough: -1 }, { source: 'ev', partition: 0, offset: 6, appliedThrough: 1 }] }] },
      { ...good, keys: [...good.keys, { ...good.keys[0]!, entityKey: 'b', tiles: [...good.keys[0]!.tiles, ...good.keys[0]!.tiles] }] },
    ];
    for (const batch of bad) await expect(store.applyConditional(batch)).rejects.toMatchObject({ code: 'TM_STORE_BAD_UPDATE' });
    expect(await client.keys(`${store.prefix}:{u:*`)).toEqual([]);
  });
});

describe('Redis store: script calls and trimming', () => {
  it('gives the same tiles whatever the keys and tile updates per script call', async () => {
    const fx = await loadFlightsFixture(5_000);
    const { registry } = fx.compiled;
    const stores = [
      new RedisOnlineStore(registry, client, { prefix: uniquePrefix(), maxKeysPerCall: 1 }),
      new RedisOnlineStore(registry, client, { prefix: uniquePrefix(), maxKeysPerCall: 1000, maxTileUpdatesPerCall: 65_535 }),
      new RedisOnlineStore(registry, client, { prefix: uniquePrefix(), maxTileUpdatesPerCall: 1 }),
    ];
    for (const store of stores) await replayParquetFile(fx.compiled, FLIGHTS_PARQUET_PATH, store, { source: 'flights', limit: 5_000, batchRows: 700 });
    const stats = await Promise.all(stores.map((s) => s.stats()));
    expect(stats[1]).toEqual(stats[0]);
    expect(stats[2]).toEqual(stats[0]);
    for (const view of registry.views) {
      const keys = fx.store.entityKeys(view.name);
      // every series: each group's own tiles and its rollup levels
      const ranges = view.groups.flatMap((g) => [1, ...g.rollups].map((span) => ({ hopMs: g.hopMs, span, fromIndex: -1e12, toIndex: 1e12 })));
      const tiles = await Promise.all(stores.map((s) => s.readTiles(view.name, keys, ranges)));
      expect(tiles[1]).toEqual(tiles[0]);
      expect(tiles[2]).toEqual(tiles[0]);
    }
  });

  it('trims as the in-memory store does when the tiles were stored without lower bounds (by an earlier version)', async () => {
    const fx = await loadFlightsFixture(6_000);
    const { registry } = fx.compiled;
    const decoder = new EventDecoder(fx.compiled, 'flights');
    const decoded = (await flightRecords(6_000)).map((r) => {
      const d = decoder.decodeJson(r);
      if (!d.ok) throw new Error(d.bad.reason);
      return d.event;
    });
    const builder = new TileBatchBuilder(registry);
    const store = new RedisOnlineStore(registry, client, { prefix: uniquePrefix() });
    const twin = new MemoryOnlineStore(registry);
    const feed = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i += 500) {
        const batch = builder.build(decoded.slice(i, Math.min(to, i + 500)));
        const expected = twin.applySync(structuredClone(batch));
        expect(await store.apply(batch)).toMatchObject(expected);
      }
    };
    await feed(0, 3_000);
    // Forget every lower bound, as stores written before they were kept have none.
    let cursor = '0';
    let forgotten = 0;
    do {
      const [next, keys] = (await client.scan(cursor, 'MATCH', `${store.prefix}:{*}:k`, 'COUNT', 1000)) as [string, string[]];
      cursor = next;
      for (const key of keys) {
        const fields = (await client.hkeys(key)).filter((f) => f.startsWith('lo:'));
        if (fields.length > 0) forgotten += await client.hdel(key, ...fields);
      }
    } while (cursor !== '0');
    expect(forgotten).toBeGreaterThan(100);
    // The rest moves the watermark on by days: tiles of the first flights fall behind the horizon.
    await feed(3_000, 6_000);
    expect(await store.stats()).toEqual(await twin.stats());
    for (const view of registry.views) {
      const keys = twin.entityKeys(view.name);
      // every series: each group's own tiles and its rollup levels
      const ranges = view.groups.flatMap((g) => [1, ...g.rollups].map((span) => ({ hopMs: g.hopMs, span, fromIndex: -1e12, toIndex: 1e12 })));
      const stored = await store.readTiles(view.name, keys, ranges);
      stored.forEach((tiles, i) => {
        const expected = twin.readTilesSync(view.name, [keys[i]!])[0]!;
        for (const [hop, byIndex] of expected) expect([...(tiles!.get(hop)?.keys() ?? [])].sort((x, y) => x - y), `${view.name} ${keys[i]} ${hop}`).toEqual([...byIndex.keys()].sort((x, y) => x - y));
      });
    }
  });
});
