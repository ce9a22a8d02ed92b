// `BENCH_ONLY=offline-shards npm run bench`: the sharded offline store (--clickhouse-shards) on 1, 2
// and 3 shard processes next to the single-node store (chDB in-process), for the 1M-row airport
// spine x every origin_delays feature: seconds, CPU seconds per shard process and of the
// coordinator, and a value check of each sharded file against the single-node one. The shards are
// chDB-backed HTTP fixtures on this machine (tests/support/clickhouse-shards.ts), not a ClickHouse
// cluster; they share its cores, so more shards add parallel work only up to the core count.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { databaseUrls, startClickHouseShards } from '../tests/support/clickhouse-shards.js';

type Worker = (args: string[]) => Promise<Record<string, number>>;

export async function offlineShardsSection({ runWorker, fmt }: { runWorker: Worker; fmt: (n: number, digits?: number) => string }): Promise<void> {
  console.log('');
  console.log('## Offline, sharded: the 1M-row airport dataset on 1, 2 and 3 shard processes next to single-node chDB');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-shards-'));
  try {
    const counts = (process.env.BENCH_SHARDS ?? '1,2,3').split(',').map(Number);
    const single = (args: string[]): Promise<Record<string, number>> => runWorker(['bench/offline-worker.ts', ...args]);
    const load = await single(['load', dir]);
    await single(['spines', dir]);
    const spine = join(dir, 'spine-airports.parquet');
    const baseline = await single(['dataset', dir, 'origin_delays', spine, join(dir, 'single.parquet')]);
    const cluster = await startClickHouseShards(join(dir, 'shards'), Math.max(...counts));
    const rows: string[] = [];
    try {
      for (const n of counts) {
        const urls = (await databaseUrls(cluster.urls.slice(0, n), `bench_${n}`)).join(',');
        const shardLoad = await runWorker(['bench/offline-shards-worker.ts', 'load', urls]);
        const out = join(dir, `sharded-${n}.parquet`);
        const before = cluster.shards.slice(0, n).map((s) => s.cpuSeconds());
        const dataset = await runWorker(['bench/offline-shards-worker.ts', 'dataset', urls, 'origin_delays', spine, out]);
        const cpu = cluster.shards.slice(0, n).map((s, i) => fmt(s.cpuSeconds() - before[i]!, 1)).join(' / ');
        const check = await runWorker(['bench/duckdb-worker.ts', 'compare', out, join(dir, 'single.parquet')]);
        const equal = check.mismatches === 0 ? `yes (${fmt(check.rows!)} rows)` : `NO: ${fmt(check.mismatches!)} of ${fmt(check.rows!)} rows differ`;
        const stored = Array.from({ length: n }, (_, s) => fmt(shardLoad[`stored_${s}`]!)).join(' / ');
        rows.push(`| ${n} shard${n > 1 ? 's' : ''} | ${fmt(shardLoad.seconds!, 2)} | ${fmt(dataset.seconds!, 2)} | ${fmt(baseline.seconds! / dataset.seconds!, 2)} | ${cpu} | ${fmt(dataset.cpuSeconds!, 1)} | ${fmt(dataset.peakRssMb!)} MB | ${stored} | ${equal} |`);
      }
    } finally {
      await cluster.close();
    }
    console.log('| store | load flights-3m s | dataset s | single node / this | CPU s per shard process (dataset) | coordinator CPU s | coordinator peak RSS (dataset) | events stored per shard | values equal |');
    console.log('|---|---:|---:|---:|---|---:|---:|---|---|');
    console.log(`| single node (chDB in-process) | ${fmt(load.seconds!, 2)} | ${fmt(baseline.seconds!, 2)} | 1.00 | | | ${fmt(baseline.peakRssMb!)} MB | | (baseline) |`);
    for (const row of rows) console.log(row);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
