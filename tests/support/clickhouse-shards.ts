// N chDB-backed ClickHouse HTTP fixtures, one process each (tests/support/clickhouse-shard-process.ts),
// as the shards of a sharded offline store in tests and the bench. NOT a ClickHouse cluster: no
// Keeper, no Distributed tables, no ON CLUSTER; each process is one independent node, which is
// what tidemark's own per-shard fan-out needs.
import { createClient, ClickHouseLogLevel } from '@clickhouse/client';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll } from 'vitest';
import { readFileBatches } from '../../ingest/index.js';
import type { OfflineStore } from '../../offline/index.js';

export interface ClickHouseShardProcess {
  url: string;
  pid: number;
  /** User + system CPU seconds of the process so far (from /proc). */
  cpuSeconds(): number;
  /** Kill the process now (a shard that goes down). */
  kill(): void;
}

export interface ClickHouseShards {
  shards: ClickHouseShardProcess[];
  urls: string[];
  close(): Promise<void>;
}

const REPO = resolve(import.meta.dirname, '../..');

function cpuSecondsOf(pid: number): number {
  // /proc/<pid>/stat fields 14 and 15: utime and stime in clock ticks (100 per second on Linux)
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

async function startOne(dataDir: string): Promise<{ child: ChildProcess; url: string; pid: number }> {
  mkdirSync(dataDir, { recursive: true });
  const child = spawn(process.execPath, ['--max-semi-space-size=64', join(REPO, 'bin/run-ts.mjs'), join(REPO, 'tests/support/clickhouse-shard-process.ts'), dataDir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`a chDB shard process did not start within 60 s (data dir ${dataDir})`)), 60_000);
    child.once('exit', (code) => reject(new Error(`a chDB shard process exited with ${code} before listening (data dir ${dataDir})`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      const { url, pid } = JSON.parse(line) as { url: string; pid: number };
      resolveStart({ child, url, pid });
    });
  });
}

/** Start `count` shard processes, data under `dir`/shard-<i>. */
export async function startClickHouseShards(dir: string, count: number): Promise<ClickHouseShards> {
  const started = await Promise.all(Array.from({ length: count }, (_, i) => startOne(join(dir, `shard-${i}`))));
  const shards = started.map(({ child, url, pid }): ClickHouseShardProcess => ({ url, pid, cpuSeconds: () => cpuSecondsOf(pid), kill: () => void child.kill('SIGKILL') }));
  return {
    shards,
    urls: shards.map((s) => s.url),
    async close() {
      await Promise.all(
        started.map(
          ({ child }) =>
            new Promise<void>((done) => {
              if (child.exitCode !== null || child.signalCode !== null) return done();
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        ),
      );
    },
  };
}

/**
 * A test file's shard processes: `count` of them started before its tests (under a temporary
 * root), stopped after; `freshDatabases(n)` gives a new database on each of the first n shards,
 * `folder(name)` a new folder under the root.
 */
export function useClickHouseShards(prefix: string, count: number): { cluster: () => ClickHouseShards; root: string; freshDatabases: (n: number) => Promise<string[]>; folder: (name: string) => string } {
  const root = mkdtempSync(join(tmpdir(), `tidemark-${prefix}-`));
  let cluster: ClickHouseShards | null = null;
  let databases = 0;
  beforeAll(async () => {
    cluster = await startClickHouseShards(root, count);
  }, 120_000);
  afterAll(async () => {
    await cluster?.close();
    await rm(root, { recursive: true, force: true });
  });
  const started = (): ClickHouseShards => {
    if (cluster === null) throw new Error('the shard processes are not started yet (use them inside tests or beforeAll)');
    return cluster;
  };
  return {
    cluster: started,
    root,
    freshDatabases: (n) => databaseUrls(started().urls.slice(0, n), `tm_${prefix.replace(/[^a-z0-9]/gi, '_')}_${databases++}`),
    folder: (name) => {
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true });
      return dir;
    },
  };
}

/** Create a database `name` on each server and return each URL with it as its database. */
export async function databaseUrls(baseUrls: readonly string[], name: string, opts: { onCluster?: string } = {}): Promise<string[]> {
  return Promise.all(
    baseUrls.map(async (base) => {
      const admin = createClient({ url: base, log: { level: ClickHouseLogLevel.OFF } });
      try {
        await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${name}${opts.onCluster ? ` ON CLUSTER \`${opts.onCluster}\`` : ''}` });
      } finally {
        await admin.close();
      }
      const url = new URL(base);
      url.pathname = `/${name}`;
      return url.toString();
    }),
  );
}

/** The rows of a dataset file (any format tidemark reads), as objects. */
export async function datasetRows(path: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const batch of readFileBatches(path)) for (const r of batch.rows) out.push(r.value!);
  return out;
}

/** The same dataset from a sharded and a single-node store, as rows, both written to NDJSON in `dir`. */
export async function datasetsOfBoth(sharded: OfflineStore, single: OfflineStore, spine: string, features: readonly string[], dir: string): Promise<{ sharded: Record<string, unknown>[]; single: Record<string, unknown>[] }> {
  await sharded.writeDataset(spine, features, join(dir, 'sharded.ndjson'));
  await single.writeDataset(spine, features, join(dir, 'single.ndjson'));
  return { sharded: await datasetRows(join(dir, 'sharded.ndjson')), single: await datasetRows(join(dir, 'single.ndjson')) };
}
