// approx_percentile on every path: the in-memory store, Redis and Redis Cluster (events shuffled,
// cut into batches, each batch delivered twice under a fence), the point-in-time dataset (chDB;
// NDJSON, Parquet and Arrow outputs) and the reference agree exactly, for quantiles 0, 0.5, 0.9,
// 0.99 and 1, on values that sit on bucket edges 2^E (1 + j/64) or just below them, of every size
// and both signs, zeros and subnormals included; at tile edges and event instants; null where the
// window holds no value. The monitor's feature samples (tile closes) agree with the reference too.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, monitor, referenceFeatureValue, referenceViewValues, source, type ReferenceEvent, type Scalar } from '../../definitions/index.js';
import { bucketOf, bucketValue } from '../../definitions/aggregations/percentile.js';
import { TileBatchBuilder } from '../../ingest/index.js';
import { featureSampleSql } from '../../offline/index.js';
import { createRedisClient, evaluateFeatures, MemoryOnlineStore, RedisOnlineStore, tileRangesFor, type OnlineStore } from '../../online/index.js';
import { decodeAll, splitIntoBatches } from '../definitions/support.js';
import { clusterUrl, uniquePrefix } from '../online/redis-backends.js';
import { bucketEdge, nextDown } from '../support/bucket-edges.js';
import { offlineStoreWith, writeNdjson } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';
import { testRedisClusterNodes, testRedisUrl } from '../support/redis.js';

const T0 = 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000);
const thing = entity({ name: 'thing', joinKeys: ['k'] });
const readings = source({ name: 'readings', topic: 'readings', schema: z.object({ ts: eventTime(), k: z.string(), x: z.number().nullable() }), eventTimeField: 'ts' });
const view = featureView({
  name: 'r',
  source: readings,
  entity: thing,
  features: {
    p0: { agg: 'approx_percentile', field: 'x', window: '10s', hop: '2s', quantile: 0 },
    p50: { agg: 'approx_percentile', field: 'x', window: '10s', hop: '2s', quantile: 0.5 },
    p90: { agg: 'approx_percentile', field: 'x', window: '4s', hop: '1s', quantile: 0.9 },
    p99: { agg: 'approx_percentile', field: 'x', window: '6s', hop: '3s', quantile: 0.99 },
    p100: { agg: 'approx_percentile', field: 'x', window: '10s', hop: '2s', quantile: 1 },
    lo: { agg: 'min', field: 'x', window: '10s', hop: '2s' },
    hi: { agg: 'max', field: 'x', window: '10s', hop: '2s' },
  },
});
const compiled = compileOrThrow([view]);
const plan = compiled.registry.views[0]!;
const PERCENTILES = plan.features.filter((f) => f.agg === 'approx_percentile');

// Edges of small, middle, huge and tiny buckets, the doubles just below them, both signs; few of
// them, so ranks often fall on runs of equal values and neighbouring buckets.
const random = mulberry32(11);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const EDGES = [-1022, -500, -3, 0, 1, 5, 60, 500, 1023].flatMap((E) => [0, 1, 31, 63].map((j) => bucketEdge(E, j)));
const magnitude = (): number => (random() < 0.2 ? pick([0, Number.MIN_VALUE, nextDown(2 ** -1022), Number.MAX_VALUE]) : random() < 0.5 ? pick(EDGES) : nextDown(pick(EDGES)));
const rows: Record<string, unknown>[] = Array.from({ length: 700 }, () => ({
  ts: T0 + 250 * Math.floor(random() * 80),
  k: pick(['p', 'q', 'r']),
  x: random() < 0.1 ? null : (random() < 0.3 ? -1 : 1) * magnitude(),
}));
const events: ReferenceEvent[] = rows.map((r) => ({ eventTimeMs: r.ts as number, fields: r }));
const watermark = Math.max(...rows.map((r) => r.ts as number));

const offline = offlineStoreWith(compiled, 'readings', rows);

const redis = createRedisClient(testRedisUrl());
const cluster = createRedisClient(clusterUrl(testRedisClusterNodes()));
afterAll(async () => {
  await redis.quit();
  await cluster.quit();
});

/** Every 125 ms from before the first event to after the last window: tile edges, event instants and between. */
const spine: { k: string; ts: number }[] = [];
for (const k of ['p', 'q', 'r', 'none']) for (let t = T0 - 1000; t <= T0 + 32_000; t += 125) spine.push({ k, ts: t });

/** Materialize the events shuffled by `seed`, in batches of the given sizes; with fences each batch is delivered twice. */
async function materialize(store: OnlineStore, seed: number, sizes: number[], fenced: boolean): Promise<void> {
  const shuffle = mulberry32(seed);
  const decoded = decodeAll(compiled, rows, 'readings')
    .map((e) => ({ e, r: shuffle() }))
    .sort((a, b) => a.r - b.r)
    .map(({ e }) => e);
  const builder = new TileBatchBuilder(compiled.registry);
  let offset = 0;
  for (const batch of splitIntoBatches(decoded, sizes)) {
    offset += batch.length;
    const built = builder.build(batch);
    if (!fenced) {
      await store.apply(built);
      continue;
    }
    const withFence = { ...built, keys: built.keys.map((k) => ({ ...k, fence: { source: 'readings', partition: 0, offset } })) };
    await store.apply(structuredClone(withFence));
    await store.apply(structuredClone(withFence));
  }
}

/** The online values of every spine row where the store can answer (tile edges of the feature's hop, or past every event); undefined elsewhere. */
async function onlineValues(store: OnlineStore): Promise<(Scalar | undefined)[][]> {
  const out: (Scalar | undefined)[][] = spine.map(() => []);
  const times = [...new Set(spine.map((s) => s.ts))];
  for (const t of times) {
    const at = spine.flatMap((s, i) => (s.ts === t ? [i] : []));
    const tiles = await store.readTiles('r', at.map((i) => spine[i]!.k), tileRangesFor(plan, plan.features, t, watermark));
    at.forEach((i, n) => {
      plan.features.forEach((f, j) => {
        const readable = t % f.hopMs === 0 || t > watermark;
        out[i]![j] = readable ? evaluateFeatures(plan, [f], tiles[n] ?? null, t, watermark)[0]!.value : undefined;
      });
    });
  }
  return out;
}

describe('approx_percentile: every path agrees with the reference', () => {
  it('the values were chosen to test what they should: edges, just below edges, huge and tiny magnitudes, subnormals', () => {
    const magnitudes = rows.map((r) => r.x).filter((x): x is number => typeof x === 'number').map(Math.abs);
    expect(magnitudes.filter((x) => EDGES.includes(x)).length).toBeGreaterThan(100);
    expect(magnitudes.filter((x) => EDGES.map(nextDown).includes(x)).length).toBeGreaterThan(100);
    expect(magnitudes.some((x) => x > 2 ** 1000) && magnitudes.some((x) => x > 0 && x < 2 ** -1000) && magnitudes.some((x) => x > 0 && x < 2 ** -1022)).toBe(true);
  });

  it('memory, Redis, Redis Cluster, the dataset and the reference give the same double at every spine row', async () => {
    const memory = new MemoryOnlineStore(compiled.registry);
    await materialize(memory, 1, [700], false);
    const single = new RedisOnlineStore(compiled.registry, redis, { prefix: uniquePrefix() });
    await materialize(single, 2, [1, 13, 40, 7], true);
    const clustered = new RedisOnlineStore(compiled.registry, cluster, { prefix: uniquePrefix() });
    await materialize(clustered, 3, [97, 3, 250], true);
    const online = { memory: await onlineValues(memory), redis: await onlineValues(single), cluster: await onlineValues(clustered) };
    const dataset = await offline.dataset(spine, plan.features.map((f) => `r:${f.name}`));
    expect(dataset).toHaveLength(spine.length);

    const mismatches: string[] = [];
    let present = 0;
    let compared = 0;
    spine.forEach((s, i) => {
      const reference = referenceViewValues(plan, events, [s.k], s.ts);
      plan.features.forEach((f, j) => {
        const expected = reference[f.name] ?? null;
        const got: [string, Scalar | undefined][] = [...Object.entries(online).map(([name, values]): [string, Scalar | undefined] => [name, values[i]![j]]), ['dataset', dataset[i]![`r__${f.name}`] ?? null]];
        for (const [name, value] of got) {
          if (value === undefined) continue;
          compared++;
          if (!Object.is(value, expected)) mismatches.push(`${s.k} at T0${s.ts - T0 >= 0 ? '+' : ''}${s.ts - T0} ${f.name}: ${name} ${value}, reference ${expected}`);
        }
        if (f.agg === 'approx_percentile' && expected !== null) present++;
      });
      // the extreme quantiles are the buckets of the extremes
      const [lo, hi] = [reference.lo, reference.hi] as (number | null)[];
      if (lo !== null && lo !== undefined && !Object.is(reference.p0, bucketValue(bucketOf(lo)))) mismatches.push(`${s.k} at ${s.ts}: p0 ${reference.p0} is not the bucket of min ${lo}`);
      if (hi !== null && hi !== undefined && !Object.is(reference.p100, bucketValue(bucketOf(hi)))) mismatches.push(`${s.k} at ${s.ts}: p100 ${reference.p100} is not the bucket of max ${hi}`);
    });
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(present).toBeGreaterThan(2_500);
    expect(compared).toBeGreaterThan(15_000);
  });

  it('Parquet and Arrow datasets hold the same doubles as NDJSON', async () => {
    const features = PERCENTILES.map((f) => `r:${f.name}`);
    const ndjson = await offline.dataset(spine, features);
    const spinePath = writeNdjson(join(offline.dir(), 'spine-formats.ndjson'), spine);
    const out = (ext: string): string => join(offline.dir(), `formats${ext}`);
    await offline.store().writeDataset(spinePath, features, out('.parquet'));
    await offline.store().writeDataset(spinePath, features, out('.arrow'));
    const parquet = (await parquetReadObjects({ file: await asyncBufferFromFile(out('.parquet')), compressors })) as Record<string, unknown>[];
    const arrow = tableFromIPC(readFileSync(out('.arrow'))).toArray().map((r) => r.toJSON() as Record<string, unknown>);
    for (const f of PERCENTILES) {
      const column = `r__${f.name}`;
      const expected = ndjson.map((r) => r[column] ?? null);
      expect(parquet.map((r) => r[column] ?? null), `parquet ${column}`).toEqual(expected);
      expect(arrow.map((r) => r[column] ?? null), `arrow ${column}`).toEqual(expected);
    }
  });

  it("the monitor takes it as a numeric view feature, and its samples at tile closes equal the reference", async () => {
    const m = compileOrThrow([view, monitor({ name: 'm', source: readings, features: ['x', 'r:p90'], reference: { from: '2023-11-01T00:00:00Z', to: '2023-11-14T00:00:00Z' } })]).monitors[0]!;
    expect(m.features.find((f) => f.name === 'r:p90')).toMatchObject({ from: 'view', kind: 'numeric' });
    let sampled = 0;
    for (const hopMs of new Set(PERCENTILES.map((f) => f.hopMs))) {
      const features = PERCENTILES.filter((f) => f.hopMs === hopMs);
      const samples = await offline.store().executor.rows<Record<string, unknown>>(featureSampleSql(plan, features), { from: T0 - 10_000, to: T0 + 40_000 });
      sampled += samples.length;
      for (const row of samples) {
        const keyEvents = events.filter((e) => e.fields.k === row.k);
        features.forEach((f, i) => {
          const expected = referenceFeatureValue(f, keyEvents, Number(row.ts));
          expect(row[`x${i}`] ?? null, `${f.name} ${String(row.k)} at ${String(row.ts)}`).toBe(expected);
        });
      }
    }
    // one sample per key and tile with events: 3 keys over 20 s in tiles of 1, 2 and 3 s
    expect(sampled).toBeGreaterThan(100);
  });
});
