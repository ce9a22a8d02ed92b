// The sharded offline store (offline/shards.ts, offline/sharded-dataset.ts) on N shard processes,
// each a chDB-backed ClickHouse HTTP fixture (tests/support/clickhouse-shards.ts: NOT a ClickHouse
// cluster, N independent nodes, which is what tidemark's per-shard fan-out needs):
//   - placement: Node's shardOfKey and ClickHouse's shardSql put random keys on the same shard;
//   - equivalence (property): random events, spines and labels give the single-node dataset on 2 and
//     3 shards: same rows, same order, every value bit for bit, except stddev (and var), equal within
//     1e-12 relative. Those are not bit-stable on one node either: the SQL folds a key's (x - c)^2
//     sums in GROUP BY output order, which depends on the other keys in the query; a single node
//     gave 489897.9485566346 for a row with the whole spine and ...347 with only that key's rows.
//     SEMANTICS.md allows 1e-6 for them;
//   - negative control: one key's events moved to the wrong shard make that comparison fail;
//   - a shard down: the coded error names the shard's URL and no dataset file is left;
//   - the consistency probe (POST /consistency/sample's code) on 3 shards samples the single node's
//     keys and finds the same agreement; a key whose events sit on the wrong shard is named;
//   - over HTTP (POST /datasets/historical of a server on the shards, as tidemark serve
//     --clickhouse-shards builds it): random data on 2 shards gives the single-node route's answer,
//     the JSON lines byte for byte and the Arrow stream's schema and values; a shard that is down or
//     fails its query is a coded error naming it, answered before any byte of the dataset.
// Datasets on a real multi-node ClickHouse (Keeper, ON CLUSTER, Distributed) are in
// tests/clickhouse-cluster/sharded-cluster.test.ts (npm run test:clickhouse-cluster, with CLICKHOUSE_CLUSTER_URL).
import { tableFromIPC } from 'apache-arrow';
import fc from 'fast-check';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { clickhouseShardsOf } from '../../api/connections.js';
import { buildServer } from '../../api/index.js';
import { runConsistencyProbe, type ConsistencyReport } from '../../api/consistency.js';
import { MemoryOnlineStore, OnlineFeatureService } from '../../online/index.js';
import { compileOrThrow, entity, eventTime, featureView, source, TidemarkError, type CompiledDefinitions } from '../../definitions/index.js';
import { OfflineStore } from '../../offline/index.js';
import { shardOfKey, shardSql } from '../../offline/shards.js';
import { databaseUrls, datasetRows, startClickHouseShards, useClickHouseShards } from '../support/clickhouse-shards.js';
import { writeNdjson } from '../support/offline-fixtures.js';
import { decodeAll, materialize } from '../definitions/support.js';

const events = source({
  name: 'clicks',
  topic: 'clicks',
  schema: z.object({ ts: eventTime(), user: z.string().min(1), item: z.string().min(1), x: z.number().nullable() }),
  eventTimeField: 'ts',
});
const user = entity({ name: 'user', joinKeys: ['user'] });
const pair = entity({ name: 'pair', joinKeys: ['user', 'item'] });
const item = entity({ name: 'item', joinKeys: ['item'] });
// Three placements of one source: by user, by item, by (user, item).
const byUser = featureView({
  name: 'by_user',
  source: events,
  entity: user,
  features: {
    n_20: { agg: 'count', window: '20ms', hop: '5ms' },
    x_sum_20: { agg: 'sum', field: 'x', window: '20ms', hop: '5ms' },
    x_mean_40: { agg: 'mean', field: 'x', window: '40ms', hop: '10ms' },
    x_max_40: { agg: 'max', field: 'x', window: '40ms', hop: '10ms' },
    x_std_40: { agg: 'stddev', field: 'x', window: '40ms', hop: '10ms' },
    x_last: { agg: 'last', field: 'x' },
  },
});
const byItem = featureView({ name: 'by_item', source: events, entity: item, features: { n_40: { agg: 'count', window: '40ms', hop: '10ms' } } });
const byPair = featureView({ name: 'by_pair', source: events, entity: pair, features: { x_sum_50: { agg: 'sum', field: 'x', window: '50ms', hop: '10ms' }, x_last: { agg: 'last', field: 'x' } } });
const compiled: CompiledDefinitions = compileOrThrow({ events, user, pair, item, byUser, byItem, byPair });
const USER_FEATURES = ['by_user:n_20', 'by_user:x_sum_20', 'by_user:x_mean_40', 'by_user:x_max_40', 'by_user:x_std_40', 'by_user:x_last'];
const ALL_FEATURES = [...USER_FEATURES, 'by_item:n_40', 'by_pair:x_sum_50', 'by_pair:x_last'];

const { cluster: shardProcesses, root, freshDatabases, folder } = useClickHouseShards('sharded', 3);

/** Columns the single-node SQL itself rounds by the query's row order (see the header). */
const ORDER_ROUNDED = /_std_|_var_/;

/** The sharded dataset is the single-node one: same rows in the same order, same columns, same values (see ORDER_ROUNDED). */
function expectSameDataset(actual: readonly Record<string, unknown>[], expected: readonly Record<string, unknown>[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, i) => {
    const want = expected[i]!;
    expect(Object.keys(row)).toEqual(Object.keys(want));
    for (const [column, value] of Object.entries(row)) {
      const other = want[column];
      if (ORDER_ROUNDED.test(column) && typeof value === 'number' && typeof other === 'number') {
        expect(Math.abs(value - other), `row ${i + 1}, ${column}: ${value} vs ${other}`).toBeLessThanOrEqual(1e-12 * Math.max(Math.abs(other), 1e-300));
      } else {
        expect(value, `row ${i + 1}, ${column}`).toEqual(other);
      }
    }
  });
}


/** Load events into a store (1 URL: single node; more: shards) and write the dataset; its rows. */
async function datasetOn(urls: string[], eventsFile: string, spineFile: string, features: readonly string[], out: string): Promise<Record<string, unknown>[]> {
  const store = await OfflineStore.open(compiled, urls.length === 1 ? { clickhouseUrl: urls[0]! } : { clickhouseShards: urls });
  try {
    const loaded = await store.loadEvents('clicks', eventsFile);
    expect(loaded.alreadyLoaded).toBe(false);
    await store.writeDataset(spineFile, features, out);
  } finally {
    await store.close();
  }
  return datasetRows(out);
}

const keyArb = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'é', 'long-key-over-thirty-two-bytes-of-utf8-text');
const eventArb = fc.record({ ts: fc.integer({ min: 0, max: 300 }), user: keyArb, item: keyArb, x: fc.option(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { nil: null }) });
const spineArb = fc.record({ user: keyArb, item: keyArb, ts: fc.integer({ min: 0, max: 350 }), label: fc.integer({ min: 0, max: 1 }) });

describe('--clickhouse-shards and --clickhouse-cluster', () => {
  it('read the flags, else the environment, and refuse what cannot be meant', () => {
    expect(clickhouseShardsOf({ clickhouseShards: 'http://a:8123, http://b:8123' }, {})).toEqual({ clickhouseShards: ['http://a:8123', 'http://b:8123'] });
    expect(clickhouseShardsOf({}, { CLICKHOUSE_SHARDS: 'http://a:8123,http://b:8123', CLICKHOUSE_CLUSTER: 'c' })).toEqual({ clickhouseShards: ['http://a:8123', 'http://b:8123'], clickhouseCluster: 'c' });
    expect(clickhouseShardsOf({}, {})).toEqual({});
    const codeOf = (f: () => unknown): unknown => {
      try {
        f();
      } catch (e) {
        return (e as TidemarkError).code;
      }
      return null;
    };
    expect(codeOf(() => clickhouseShardsOf({ clickhouseCluster: 'c' }, {}))).toBe('TM_SERVICE_CONFIG');
    expect(codeOf(() => clickhouseShardsOf({ clickhouseShards: 'http://a:8123', clickhouseUrl: 'http://b:8123' }, {}))).toBe('TM_SERVICE_CONFIG');
    expect(codeOf(() => clickhouseShardsOf({ clickhouseShards: 'http://a:8123,http://a:8123' }, {}))).toBe('TM_SERVICE_CONFIG');
  });
});

describe('placement', () => {
  it("puts random keys on the same shard in Node (shardOfKey) and in ClickHouse (shardSql)", async () => {
    const [url] = await freshDatabases(1);
    const store = await OfflineStore.open(compiled, { clickhouseUrl: url! });
    try {
      const keys = fc.sample(fc.tuple(fc.string({ unit: 'binary', maxLength: 80 }).filter((s) => !s.includes('\0')), fc.string({ maxLength: 40 })), { numRuns: 300, seed: 7 });
      keys.push(['', ''], ['x'.repeat(31), 'y'], ['x'.repeat(32), ''], ['x'.repeat(100), 'z'.repeat(33)]);
      await store.executor.command('CREATE TABLE keys (i UInt32, a String, b String) ENGINE = MergeTree ORDER BY i');
      await store.executor.insert('keys', keys.map(([a, b], i) => ({ i, a, b })));
      for (const n of [2, 3, 7]) {
        const rows = await store.executor.rows<{ i: number; one: number; two: number }>(`SELECT i, ${shardSql(['a'], n)} AS one, ${shardSql(['a', 'b'], n)} AS two FROM keys ORDER BY i`);
        expect(rows.length).toBe(keys.length);
        for (const r of rows) {
          const [a, b] = keys[r.i]!;
          expect([r.i, Number(r.one), Number(r.two)]).toEqual([r.i, shardOfKey([a], n), shardOfKey([a, b], n)]);
        }
      }
    } finally {
      await store.close();
    }
  });
});

describe('a sharded dataset equals the single-node dataset', () => {
  it('on 2 and 3 shards, for random events, spines and labels (property)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(eventArb, { minLength: 1, maxLength: 60 }), fc.array(spineArb, { minLength: 1, maxLength: 30 }), async (evs, spine) => {
        const dir = folder(`run-${run++}`);
        const eventsFile = writeNdjson(join(dir, 'events.ndjson'), evs);
        const spineFile = writeNdjson(join(dir, 'spine.ndjson'), spine);
        const single = await datasetOn(await freshDatabases(1), eventsFile, spineFile, ALL_FEATURES, join(dir, 'single.ndjson'));
        expect(single.length).toBe(spine.length);
        for (const shards of [2, 3]) {
          const sharded = await datasetOn(await freshDatabases(shards), eventsFile, spineFile, ALL_FEATURES, join(dir, `sharded-${shards}.ndjson`));
          expectSameDataset(sharded, single);
        }
      }),
      { numRuns: 4, seed: 15 },
    );
  }, 120_000);

  it('writes Parquet with the single-node column types and values', async () => {
    const dir = folder('parquet');
    const evs = fc.sample(eventArb, { numRuns: 200, seed: 3 });
    const spine = fc.sample(spineArb, { numRuns: 100, seed: 4 });
    const eventsFile = writeNdjson(join(dir, 'events.ndjson'), evs);
    const spineFile = writeNdjson(join(dir, 'spine.ndjson'), spine);
    const single = await datasetOn(await freshDatabases(1), eventsFile, spineFile, USER_FEATURES, join(dir, 'single.parquet'));
    const sharded = await datasetOn(await freshDatabases(3), eventsFile, spineFile, USER_FEATURES, join(dir, 'sharded.parquet'));
    expect(sharded.length).toBe(100);
    expectSameDataset(sharded, single);
    expect(readdirSync(dir).filter((f) => f.includes('.partial'))).toEqual([]);
  }, 60_000);
});

describe('the consistency probe on shards', () => {
  it("samples the single node's keys and finds the same agreement; a key whose events sit on the wrong shard is named", async () => {
    const dir = folder('probe');
    // Whole x: the online stddev of a window of equal doubles is not always exactly 0 (README, known gap), whole numbers' is.
    const evs = fc.sample(fc.record({ ts: fc.integer({ min: 0, max: 300 }), user: keyArb, item: keyArb, x: fc.option(fc.integer({ min: -1000, max: 1000 }), { nil: null }) }), { numRuns: 300, seed: 21 });
    const eventsFile = writeNdjson(join(dir, 'events.ndjson'), evs);
    const service = new OnlineFeatureService(compiled.registry, materialize(compiled, [decodeAll(compiled, evs, 'clicks')]), 'watermark');
    // A sample smaller than the keys: the shards' samples must merge into the single node's.
    const probes = [{ view: 'by_user', sample: 5 }, { view: 'by_pair', sample: 20 }, { view: 'by_item' }];
    const probeOn = async (urls: string[], before?: (store: OfflineStore) => Promise<void>): Promise<ConsistencyReport[]> => {
      const store = await OfflineStore.open(compiled, urls.length === 1 ? { clickhouseUrl: urls[0]! } : { clickhouseShards: urls });
      try {
        await store.loadEvents('clicks', eventsFile);
        await before?.(store);
        const out: ConsistencyReport[] = [];
        for (const p of probes) out.push(await runConsistencyProbe(service, store, p, 100));
        return out;
      } finally {
        await store.close();
      }
    };
    const single = await probeOn(await freshDatabases(1));
    const sharded = await probeOn(await freshDatabases(3));
    expect(single.map((r) => r.keysCompared)).toEqual([5, 20, 8]);
    const summary = (r: ConsistencyReport): unknown => ({ keys: r.keys, features: r.features.map((f) => [f.feature, f.agreementRate, f.mismatches]) });
    expect(sharded.map(summary)).toEqual(single.map(summary));
    for (const r of [...single, ...sharded]) expect(r.features.every((f) => f.mismatches === 0), JSON.stringify(r.mismatches)).toBe(true);
    // Negative control: user a's events moved to a shard that does not own a.
    const urls = await freshDatabases(3);
    const home = shardOfKey(['a'], 3);
    const [misSharded] = await probeOn(urls, async (store) => {
      const [right, wrong] = [store.shards!.executors[home]!, store.shards!.executors[(home + 1) % 3]!];
      const rows = await right.rows<Record<string, unknown>>("SELECT * FROM tm_events_clicks WHERE __k_user = 'a'");
      expect(rows.length).toBeGreaterThan(0);
      await wrong.insert('tm_events_clicks', rows);
      await right.command("ALTER TABLE tm_events_clicks DELETE WHERE __k_user = 'a' SETTINGS mutations_sync = 2");
    });
    const probed = misSharded!.keys.map((k) => k[0]);
    const wrongKeys = new Set(misSharded!.mismatches.map((m) => m.key.user));
    if (probed.includes('a')) expect([...wrongKeys]).toEqual(['a']);
    else expect(probed.length).toBe(5);
    // Asked for directly, user a is named, and its online values are what the single node computes.
    const store = await OfflineStore.open(compiled, { clickhouseShards: urls });
    try {
      const direct = await runConsistencyProbe(service, store, { view: 'by_user', keys: [['a'], ['b']] }, 100);
      expect(new Set(direct.mismatches.map((m) => m.key.user))).toEqual(new Set(['a']));
      expect(direct.features.find((f) => f.feature === 'n_20')!.mismatches).toBe(1);
    } finally {
      await store.close();
    }
  }, 120_000);
});

describe('negative control', () => {
  it("a key's events moved to the wrong shard make the comparison fail", async () => {
    const dir = folder('mis-sharded');
    const evs = [0, 5, 12, 18, 25].map((ts) => ({ ts, user: 'a', item: 'b', x: ts }));
    const spine = [{ user: 'a', item: 'b', ts: 30, label: 1 }];
    const eventsFile = writeNdjson(join(dir, 'events.ndjson'), evs);
    const spineFile = writeNdjson(join(dir, 'spine.ndjson'), spine);
    const single = await datasetOn(await freshDatabases(1), eventsFile, spineFile, USER_FEATURES, join(dir, 'single.ndjson'));
    const urls = await freshDatabases(2);
    const correct = await datasetOn(urls, eventsFile, spineFile, USER_FEATURES, join(dir, 'sharded.ndjson'));
    expectSameDataset(correct, single);
    // Move user a's events to the other shard, as a wrong sharding expression would have placed them.
    const home = shardOfKey(['a'], 2);
    const store = await OfflineStore.open(compiled, { clickhouseShards: urls });
    try {
      const [right, wrong] = [store.shards!.executors[home]!, store.shards!.executors[1 - home]!];
      const rows = await right.rows<Record<string, unknown>>("SELECT * FROM tm_events_clicks WHERE __k_user = 'a'");
      expect(rows.length).toBe(evs.length);
      await wrong.insert('tm_events_clicks', rows);
      await right.command("ALTER TABLE tm_events_clicks DELETE WHERE __k_user = 'a' SETTINGS mutations_sync = 2");
      await store.writeDataset(spineFile, USER_FEATURES, join(dir, 'mis-sharded.ndjson'));
    } finally {
      await store.close();
    }
    const misSharded = await datasetRows(join(dir, 'mis-sharded.ndjson'));
    expect(single[0]!.by_user__n_20).toBeGreaterThan(0);
    expect(misSharded[0]!.by_user__n_20).toBe(0);
    expect(() => expectSameDataset(misSharded, single)).toThrow();
  }, 60_000);
});

describe('a shard that fails its query', () => {
  it('fails the dataset with the shard named, and leaves no dataset file', async () => {
    const dir = folder('query-fails');
    const eventsFile = writeNdjson(join(dir, 'events.ndjson'), fc.sample(eventArb, { numRuns: 50, seed: 8 }));
    const spineFile = writeNdjson(join(dir, 'spine.ndjson'), fc.sample(spineArb, { numRuns: 40, seed: 9 }));
    const urls = await freshDatabases(2);
    const store = await OfflineStore.open(compiled, { clickhouseShards: urls });
    const out = join(dir, 'train.parquet');
    try {
      await store.loadEvents('clicks', eventsFile);
      // shard 2 loses its events table: its query fails while shard 1's rows are being merged
      await store.shards!.executors[1]!.command('DROP TABLE tm_events_clicks');
      const error = await store.writeDataset(spineFile, USER_FEATURES, out).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TidemarkError);
      expect((error as TidemarkError).message).toMatch(/^shard 2 of 2 \(http:\/\/127\.0\.0\.1:\d+\/tm_sharded_\d+\): /);
      expect((error as TidemarkError).details).toMatchObject({ shard: 2, shards: 2 });
    } finally {
      await store.close();
    }
    expect(readdirSync(dir).filter((f) => f.startsWith('train'))).toEqual([]);
  }, 60_000);
});

/** POST /datasets/historical on a server over `store`: status, headers and body. */
async function datasetOverHttp(store: OfflineStore, spine: readonly Record<string, unknown>[], features: readonly string[], format: 'json' | 'arrow') {
  const app = await buildServer({ service: new OnlineFeatureService(compiled.registry, new MemoryOnlineStore(compiled.registry), 'watermark'), offline: store });
  try {
    const res = await app.inject({ method: 'POST', url: '/datasets/historical', payload: { features, spine, format } });
    return { status: res.statusCode, headers: res.headers, text: res.payload, bytes: res.rawPayload };
  } finally {
    await app.close();
  }
}

/** The rows of a JSON-lines answer. */
const jsonRows = (text: string): Record<string, unknown>[] => text.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);

/** The rows of an Arrow IPC stream, each value as Arrow gives it (bigint for 64-bit integers). */
function arrowRows(bytes: Buffer): { fields: string[]; rows: Record<string, unknown>[] } {
  const table = tableFromIPC(bytes);
  const fields = table.schema.fields.map((f) => `${f.name}: ${String(f.type)}${f.nullable ? ' (nullable)' : ''}`);
  const rows = table.toArray().map((row) => {
    const out: Record<string, unknown> = {};
    for (const f of table.schema.fields) {
      const v = (row as Record<string, unknown>)[f.name];
      out[f.name] = v instanceof Uint8Array ? new TextDecoder().decode(v) : v;
    }
    return out;
  });
  return { fields, rows };
}

describe('datasets over HTTP from shards', () => {
  it('give the single-node route\'s answer on 2 shards, as JSON lines and Arrow, for random data', async () => {
    // the three entities' features interleaved: the answer has them in this order, not grouped by entity
    const features = ['by_pair:x_last', 'by_user:n_20', 'by_item:n_40', 'by_user:x_sum_20', 'by_pair:x_sum_50', 'by_user:x_mean_40', 'by_user:x_max_40', 'by_user:x_std_40', 'by_user:x_last'];
    expect([...features].sort()).toEqual([...ALL_FEATURES].sort());
    // every feature but stddev (which the single-node SQL itself rounds by row order, see the header): the JSON lines must be the same bytes
    const exactFeatures = features.filter((f) => !ORDER_ROUNDED.test(f.replace(':', '__')));
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(eventArb, { minLength: 1, maxLength: 80 }), fc.array(spineArb, { minLength: 1, maxLength: 40 }), async (evs, spine) => {
        const dir = folder(`http-${run++}`);
        const eventsFile = writeNdjson(join(dir, 'events.ndjson'), evs);
        const single = await OfflineStore.open(compiled, { clickhouseUrl: (await freshDatabases(1))[0]! });
        const sharded = await OfflineStore.open(compiled, { clickhouseShards: await freshDatabases(2) });
        try {
          await single.loadEvents('clicks', eventsFile);
          await sharded.loadEvents('clicks', eventsFile);
          for (const [list, exact] of [[features, false], [exactFeatures, true], [USER_FEATURES.filter((f) => !f.includes('std')), true]] as const) {
            const want = await datasetOverHttp(single, spine, list, 'json');
            const got = await datasetOverHttp(sharded, spine, list, 'json');
            expect(want.status).toBe(200);
            expect(got.status, got.text).toBe(200);
            expect(got.headers['content-type']).toBe(want.headers['content-type']);
            expect(got.headers['x-tidemark-rows']).toBe(String(spine.length));
            expect(got.headers['x-tidemark-columns']).toBe(want.headers['x-tidemark-columns']);
            if (exact) expect(got.text).toBe(want.text);
            expectSameDataset(jsonRows(got.text), jsonRows(want.text));
            expect(jsonRows(got.text).map((r) => r.label)).toEqual(spine.map((r) => r.label));

            const wantArrow = await datasetOverHttp(single, spine, list, 'arrow');
            const gotArrow = await datasetOverHttp(sharded, spine, list, 'arrow');
            expect(gotArrow.status, gotArrow.text).toBe(200);
            expect(gotArrow.headers['content-type']).toBe(wantArrow.headers['content-type']);
            const [a, b] = [arrowRows(gotArrow.bytes), arrowRows(wantArrow.bytes)];
            expect(a.fields).toEqual(b.fields);
            expect(a.rows.length).toBe(spine.length);
            expectSameDataset(a.rows, b.rows);
          }
        } finally {
          await single.close();
          await sharded.close();
        }
      }),
      { numRuns: 3, seed: 21 },
    );
  }, 180_000);

  it('answer a shard whose query fails with a coded error naming it, before any byte of the dataset', async () => {
    const dir = folder('http-query-fails');
    const eventsFile = writeNdjson(join(dir, 'events.ndjson'), fc.sample(eventArb, { numRuns: 50, seed: 8 }));
    const spine = fc.sample(spineArb, { numRuns: 40, seed: 9 });
    const store = await OfflineStore.open(compiled, { clickhouseShards: await freshDatabases(2) });
    try {
      await store.loadEvents('clicks', eventsFile);
      await store.shards!.executors[1]!.command('DROP TABLE tm_events_clicks');
      for (const format of ['json', 'arrow'] as const) {
        const res = await datasetOverHttp(store, spine, USER_FEATURES, format);
        expect(res.status, res.text).toBe(500);
        const body = JSON.parse(res.text) as { code: string; message: string; shard: number; shards: number };
        expect(body.code).toBe('TM_OFFLINE_QUERY');
        expect(body.message).toMatch(/^shard 2 of 2 \(http:\/\/127\.0\.0\.1:\d+\/tm_sharded_\d+\): /);
        expect(body).toMatchObject({ shard: 2, shards: 2 });
        expect(res.headers['x-tidemark-rows']).toBeUndefined();
      }
    } finally {
      await store.close();
    }
  }, 60_000);

  it('answer a shard that is down with TM_OFFLINE_SHARD_UNREACHABLE naming it (503), before any byte of the dataset', async () => {
    const dir = folder('http-down');
    const extra = await startClickHouseShards(join(dir, 'extra'), 1);
    try {
      const urls = [...(await freshDatabases(2)), ...(await databaseUrls(extra.urls, 'tm_sharded_extra'))];
      const store = await OfflineStore.open(compiled, { clickhouseShards: urls });
      try {
        await store.loadEvents('clicks', writeNdjson(join(dir, 'events.ndjson'), fc.sample(eventArb, { numRuns: 50, seed: 5 })));
        extra.shards[0]!.kill();
        for (const format of ['json', 'arrow'] as const) {
          const res = await datasetOverHttp(store, fc.sample(spineArb, { numRuns: 40, seed: 6 }), ALL_FEATURES, format);
          expect(res.status, res.text).toBe(503);
          const body = JSON.parse(res.text) as { code: string; message: string; shard: number; shards: number };
          expect(body.code).toBe('TM_OFFLINE_SHARD_UNREACHABLE');
          expect(body.message).toContain('shard 3 of 3');
          expect(body.message).toContain(urls[2]!.replace(/\/$/, ''));
          expect(body).toMatchObject({ shard: 3, shards: 3 });
          expect(res.headers['x-tidemark-rows']).toBeUndefined();
        }
      } finally {
        await store.close();
      }
    } finally {
      await extra.close();
    }
  }, 120_000);
});

describe('a shard down', () => {
  it('fails with TM_OFFLINE_SHARD_UNREACHABLE naming the shard, and leaves no dataset file', async () => {
    const dir = folder('down');
    const evs = fc.sample(eventArb, { numRuns: 50, seed: 5 });
    const spine = fc.sample(spineArb, { numRuns: 40, seed: 6 });
    const eventsFile = writeNdjson(join(dir, 'events.ndjson'), evs);
    const spineFile = writeNdjson(join(dir, 'spine.ndjson'), spine);
    const urls = await freshDatabases(3);
    const store = await OfflineStore.open(compiled, { clickhouseShards: urls });
    const out = join(dir, 'train.parquet');
    try {
      await store.loadEvents('clicks', eventsFile);
      shardProcesses().shards[2]!.kill();
      const error = await store.writeDataset(spineFile, ALL_FEATURES, out).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TidemarkError);
      const coded = error as TidemarkError;
      expect(coded.code).toBe('TM_OFFLINE_SHARD_UNREACHABLE');
      expect(coded.message).toContain(urls[2]!.replace(/\/$/, ''));
      expect(coded.message).toContain('shard 3 of 3');
      expect(coded.details).toMatchObject({ shard: 3, shards: 3 });
    } finally {
      await store.close();
    }
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('train'))).toEqual([]);
    expect(readFileSync(spineFile, 'utf8').length).toBeGreaterThan(0);
  }, 60_000);
});
