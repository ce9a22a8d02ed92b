// `BENCH_ONLY=offline-shards npm run bench`: the sharded offline store (--clickhouse-shards) on 1, 2
// and 3 shard processes next to the single-node store (chDB in-process), for the 1M-row airport
// spine x every origin_delays feature: seconds, CPU seconds per shard process and of the
// coordinator, and a value check of each sharded file against the single-node one. The shards are
// chDB-backed HTTP fixtures on this machine (tests/support/clickhouse-shards.ts), not a ClickHouse
// cluster; they share its cores, so more shards add parallel work only up to the core count.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
    const sharded = await runWorker(['bench/offline-shards-worker.ts', dir, 'origin_delays', spine, counts.join(',')]);
    console.log('| store | load flights-3m s | dataset s | vs single node | CPU s per shard process (dataset) | coordinator CPU s | events stored per shard | values equal |');
    console.log('|---|---:|---:|---:|---|---:|---|---|');
    console.log(`| single node (chDB in-process) | ${fmt(load.seconds!, 2)} | ${fmt(baseline.seconds!, 2)} | 1.00 | | | | (baseline) |`);
    for (const n of counts) {
      const check = await runWorker(['bench/duckdb-worker.ts', 'compare', join(dir, `sharded-${n}.parquet`), join(dir, 'single.parquet')]);
      const equal = check.mismatches === 0 ? `yes (${fmt(check.rows!)} rows)` : `NO: ${fmt(check.mismatches!)} of ${fmt(check.rows!)} rows differ`;
      const cpu = Array.from({ length: n }, (_, s) => fmt(sharded[`cpu_${n}_${s}`]!, 1)).join(' / ');
      const stored = Array.from({ length: n }, (_, s) => fmt(sharded[`stored_${n}_${s}`]!)).join(' / ');
      const dataset = sharded[`dataset_${n}`]!;
      console.log(`| ${n} shard${n > 1 ? 's' : ''} (HTTP fixture processes) | ${fmt(sharded[`load_${n}`]!, 2)} | ${fmt(dataset, 2)} | ${fmt(baseline.seconds! / dataset, 2)} | ${cpu} | ${fmt(sharded[`coordinator_cpu_${n}`]!, 1)} | ${stored} | ${equal} |`);
    }
    console.log(`(coordinator peak RSS ${fmt(sharded.peakRssMb!)} MB; single-node dataset peak RSS ${fmt(baseline.peakRssMb!)} MB)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
