// The sharded offline store on a REAL multi-node ClickHouse cluster (Keeper, ON CLUSTER DDL,
// Distributed tables): `npm run test:clickhouse-cluster`, not part of `npm test`, and it fails
// without CLICKHOUSE_CLUSTER_URL. It has NOT been run on the project's machines (no modern
// ClickHouse server can be had there: see the README's "At scale"). The chDB-process version of
// these checks, which `npm test` runs, is tests/offline/sharded-store.test.ts.
//
//   CLICKHOUSE_CLUSTER_URL     HTTP URL of one node (used for ON CLUSTER DDL and the single-node baseline)
//   CLICKHOUSE_CLUSTER_NAME    the cluster's name in remote_servers (default: default)
//   CLICKHOUSE_CLUSTER_SHARDS  HTTP URL of one replica of each shard, comma-separated, in the
//                              cluster's shard order (default: CLICKHOUSE_CLUSTER_URL alone)
import { createClient, ClickHouseLogLevel } from '@clickhouse/client';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, source } from '../../definitions/index.js';
import { OfflineStore } from '../../offline/index.js';
import { shardOfKey, shardSql } from '../../offline/shards.js';
import { databaseUrls, datasetsOfBoth } from '../support/clickhouse-shards.js';
import { writeNdjson } from '../support/offline-fixtures.js';

const CLUSTER_URL = process.env.CLICKHOUSE_CLUSTER_URL;
const CLUSTER = process.env.CLICKHOUSE_CLUSTER_NAME ?? 'default';
const SHARDS = (process.env.CLICKHOUSE_CLUSTER_SHARDS ?? CLUSTER_URL ?? '').split(',').filter(Boolean);

const clicks = source({ name: 'clicks', topic: 'clicks', schema: z.object({ ts: eventTime(), user: z.string().min(1), x: z.number() }), eventTimeField: 'ts' });
const user = entity({ name: 'user', joinKeys: ['user'] });
const byUser = featureView({
  name: 'by_user',
  source: clicks,
  entity: user,
  features: { n_20: { agg: 'count', window: '20ms', hop: '5ms' }, x_sum_20: { agg: 'sum', field: 'x', window: '20ms', hop: '5ms' }, x_last: { agg: 'last', field: 'x' } },
});
const compiled = compileOrThrow({ clicks, user, byUser });
const FEATURES = ['by_user:n_20', 'by_user:x_sum_20', 'by_user:x_last'];

if (!CLUSTER_URL) {
  throw new Error('CLICKHOUSE_CLUSTER_URL is not set: give the HTTP URL of one node of a ClickHouse cluster with Keeper (and CLICKHOUSE_CLUSTER_NAME, CLICKHOUSE_CLUSTER_SHARDS), e.g. CLICKHOUSE_CLUSTER_URL=http://ch1:8123 npm run test:clickhouse-cluster');
}

describe('a real ClickHouse cluster (CLICKHOUSE_CLUSTER_URL)', () => {
  const database = `tidemark_cluster_${Date.now().toString(36)}`;
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-cluster-'));

  it('creates the tables ON CLUSTER, and a sharded dataset equals the single-node one', async () => {
    const admin = createClient({ url: CLUSTER_URL!, log: { level: ClickHouseLogLevel.OFF } });
    try {
      const shardUrls = await databaseUrls(SHARDS, database, { onCluster: CLUSTER });
      const [singleUrl] = await databaseUrls([CLUSTER_URL!], `${database}_single`);
      mkdirSync(dir, { recursive: true });
      const events = writeNdjson(join(dir, 'events.ndjson'), fc.sample(fc.record({ ts: fc.integer({ min: 0, max: 200 }), user: fc.constantFrom('a', 'b', 'c', 'd', 'e'), x: fc.integer({ min: -100, max: 100 }) }), { numRuns: 300, seed: 1 }));
      const spine = writeNdjson(join(dir, 'spine.ndjson'), fc.sample(fc.record({ user: fc.constantFrom('a', 'b', 'c', 'd', 'e'), ts: fc.integer({ min: 0, max: 220 }), label: fc.integer({ min: 0, max: 1 }) }), { numRuns: 100, seed: 2 }));
      const sharded = await OfflineStore.open(compiled, { clickhouseShards: shardUrls, clickhouseCluster: CLUSTER });
      const single = await OfflineStore.open(compiled, { clickhouseUrl: singleUrl! });
      try {
        for (const executor of sharded.shards!.executors) {
          expect(await executor.rows(`EXISTS TABLE tm_events_clicks`)).toEqual([{ result: 1 }]);
        }
        await sharded.loadEvents('clicks', events);
        await single.loadEvents('clicks', events);
        const both = await datasetsOfBoth(sharded, single, spine, FEATURES, dir);
        expect(both.sharded).toEqual(both.single);
      } finally {
        await sharded.close();
        await single.close();
      }
    } finally {
      await admin.command({ query: `DROP DATABASE IF EXISTS ${database} ON CLUSTER \`${CLUSTER}\` SYNC` }).catch(() => undefined);
      await admin.command({ query: `DROP DATABASE IF EXISTS ${database}_single SYNC` }).catch(() => undefined);
      await admin.close();
    }
  }, 120_000);

  it("places rows inserted through a Distributed table on the shard Node's routing names", async () => {
    const admin = createClient({ url: CLUSTER_URL!, log: { level: ClickHouseLogLevel.OFF } });
    const db = `${database}_placement`;
    try {
      await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${db} ON CLUSTER \`${CLUSTER}\`` });
      await admin.command({ query: `CREATE TABLE ${db}.keys_local ON CLUSTER \`${CLUSTER}\` (k String) ENGINE = MergeTree ORDER BY k` });
      await admin.command({ query: `CREATE TABLE ${db}.keys ON CLUSTER \`${CLUSTER}\` AS ${db}.keys_local ENGINE = Distributed(\`${CLUSTER}\`, ${db}, keys_local, ${shardSql(['k'], SHARDS.length)})` });
      const keys = fc.sample(fc.string({ minLength: 1, maxLength: 40 }), { numRuns: 500, seed: 3 });
      await admin.insert({ table: `${db}.keys`, values: keys.map((k) => ({ k })), format: 'JSONEachRow', clickhouse_settings: { distributed_foreground_insert: 1 } });
      for (let shard = 0; shard < SHARDS.length; shard++) {
        const node = createClient({ url: SHARDS[shard]!, log: { level: ClickHouseLogLevel.OFF } });
        try {
          const stored = await (await node.query({ query: `SELECT k FROM ${db}.keys_local`, format: 'JSONEachRow' })).json<{ k: string }>();
          for (const { k } of stored) expect(shardOfKey([k], SHARDS.length), `key ${JSON.stringify(k)} on shard ${shard + 1}`).toBe(shard);
        } finally {
          await node.close();
        }
      }
    } finally {
      await admin.command({ query: `DROP DATABASE IF EXISTS ${db} ON CLUSTER \`${CLUSTER}\` SYNC` }).catch(() => undefined);
      await admin.close();
    }
  }, 120_000);
});
