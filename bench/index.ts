// `npm run bench`: every figure next to a baseline measured in the same run.
//  1. replay of the flights file: the core (tile batch build + apply) and decode, next to a
//     baseline that only reads the file; peak RSS per process.
//  2. online reads: POST /get-online-features for 1 and 100 entities, saturation throughput and
//     p50/p99 latency at half of saturation and at 1 000 req/s, next to a fastify route returning a
//     constant; and with feature logging at 0%, 10% and 100% (into chDB) next to none. The load
//     generator runs in this process, on the same 2 cores as the server.
//  3. offline: loading flights-3m into chDB; point-in-time datasets for a 1M-row airport spine
//     (every origin_delays feature) and a 1M-row route spine (route_delays), next to DuckDB
//     computing the same values from the same files, alternating, median of BENCH_OFFLINE_RUNS
//     (default 3) runs each; time, peak RSS, ratio, and a value check. The events carry a float
//     field (delay_h, bench/flights-float.ts) with a mean in each view: tidemark = DuckDB on every
//     row for the integer data; the reference (bench/reference-check.ts) decides the float column.
//  4. stream (bench/stream.ts): the Kafka materializer into Redis next to no-op Kafka consumers
//     (kafkajs, @platformatic/kafka); reads served from Redis next to redis-benchmark sending the
//     same commands; freshness from produce to visible at 5 000 events/s. Real services: Redis and
//     Kafka from REDIS_URL / KAFKA_BROKERS, else started here as `npm test` starts them.
//  5. monitor (bench/monitor-worker.ts): one full drift evaluation of the flights monitor (10
//     features x every origin airport, January reference, one window over February to June) next to
//     a chDB scan of the same rows; and the weekly replay npm start runs. Time and peak RSS.
//  6. bootstrap (bench/bootstrap-worker.ts): tidemark bootstrap of the flights views from chDB into
//     Redis next to replaying the same events into Redis; npm start's rebuild from chDB next to its
//     Parquet replay.
//  7. dashboard (bench/dashboard-worker.ts): page weights and Chromium's first paint of the flights
//     monitor's pages and of a 500-feature x 5-slice drift page, next to a constant HTML page.
//  8. quickstart (bench/quickstart-worker.ts): npm start on a fresh data dir and again on the same
//     one, until the API answers, with and without the monitor, and the old first run (--replay);
//     next to hyparquet decoding the file and chDB counting its rows.
//  3b. offline-shards (bench/offline-shards.ts): the 1M-row airport dataset on 1, 2 and 3 shard
//     processes (--clickhouse-shards) next to single-node chDB, with CPU seconds per shard.
//  9. logging and skew (bench/feature-log.ts): read saturation and CPU per read (the process's, and
//     the serving thread's) with feature logging at 0%, 10% and 100% (into chDB, and to Kafka) next
//     to none, in short alternating rounds; the skew check of 1M logged values next to the
//     dataset build of the same spine.
// Set BENCH_ROWS to replay fewer rows (default: the whole file); BENCH_ONLY=replay|reads|offline|offline-shards|stream|monitor|bootstrap|dashboard|quickstart|logging|skew
// runs one section.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { latencyAtRate, saturationRps, type LoadTarget } from './http-load.js';
import { streamSection } from './stream.js';
import { offlineShardsSection } from './offline-shards.js';
import { featureLogSection, skewSection } from './feature-log.js';
import { featureColumns } from './duckdb-point-in-time.js';
import { startRedisServer } from '../tests/support/redis.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUN_TS = join(ROOT, 'bin', 'run-ts.mjs');
const rowsArg = process.env.BENCH_ROWS ? [process.env.BENCH_ROWS] : [];
const SATURATION_MS = Number(process.env.BENCH_SATURATION_MS ?? 5_000);
const LATENCY_MS = Number(process.env.BENCH_LATENCY_MS ?? 10_000);

function runWorker(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--max-semi-space-size')), RUN_TS, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

/** Redis: REDIS_URL, else a redis-server started here as `npm test` starts it (its stop joins `stops`). */
async function benchRedisUrl(stops: (() => Promise<void>)[]): Promise<string> {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  const redis = await startRedisServer();
  stops.push(() => redis.stop());
  return redis.url;
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

console.log(`tidemark bench, ${new Date().toISOString().slice(0, 10)}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${fmt(totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
const only = process.env.BENCH_ONLY;
if (!only || only === 'replay') await replaySection();
if (!only || only === 'reads') await readsSection();
if (!only || only === 'offline') await offlineSection();
if (!only || only === 'offline-shards') await offlineShardsSection({ runWorker, fmt });
if (!only || only === 'stream') await streamSection({ runWorker, fmt, saturationMs: SATURATION_MS, latencyMs: LATENCY_MS });
if (!only || only === 'monitor') await monitorSection();
if (!only || only === 'bootstrap') await bootstrapSection();
if (!only || only === 'dashboard') await dashboardSection();
if (!only || only === 'quickstart') await quickstartSection();
if (!only || only === 'logging') await featureLogSection({ root: ROOT, runTs: RUN_TS, rows: rowsArg[0], fmt });
if (!only || only === 'skew') await skewSection({ root: ROOT, runTs: RUN_TS, rows: rowsArg[0], fmt, runWorker });

async function quickstartSection(): Promise<void> {
  console.log('');
  console.log("## npm start: seconds until POST /get-online-features answers, first run on a fresh data dir and a later run, next to reading the file");
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-quickstart-'));
  const port = String(Number(process.env.BENCH_QUICKSTART_PORT ?? 18_080));
  const worker = (args: string[]): Promise<Record<string, number>> => runWorker(['bench/quickstart-worker.ts', ...args]);
  const start = (data: string, flags: string[]): Promise<Record<string, number>> => worker(['start', join(dir, data), port, ...flags]);
  const split = (r: Record<string, number>): string =>
    [
      r.loadSeconds! >= 0 ? `Parquet reader load ${fmt(r.loadSeconds!, 1)} s` : '',
      r.rebuildSeconds! >= 0 ? `rebuild ${fmt(r.rebuildSeconds!, 1)} s` : '',
      r.replaySeconds! >= 0 ? `replay ${fmt(r.replaySeconds!, 1)} s` : '',
      r.monitorSeconds! >= 0 ? `monitor ${fmt(r.monitorSeconds!, 1)} s` : '',
      r.monitorDoneSeconds! >= 0 ? `monitor done in the background at ${fmt(r.monitorDoneSeconds!, 1)} s` : '',
    ]
      .filter(Boolean)
      .join(', ');
  try {
    const decode = await worker(['decode']);
    const count = await worker(['count']);
    const first = await start('a', []);
    const later = await start('a', []);
    const firstNoMonitor = await start('b', ['--no-monitor']);
    const laterNoMonitor = await start('b', ['--no-monitor']);
    const replayNoMonitor = await start('c', ['--no-monitor', '--replay']);
    console.log('| measure | seconds | split |');
    console.log('|---|---:|---|');
    console.log(`| baseline: hyparquet decodes flights-3m.parquet (${fmt(decode.rows!)} rows) | ${fmt(decode.seconds!, 2)} | |`);
    console.log(`| baseline: chDB counts its rows (ClickHouse's Parquet reader) | ${fmt(count.seconds!, 2)} | |`);
    console.log(`| npm start, first run (fresh data dir): until the API answers | ${fmt(first.seconds!, 1)} | ${split(first)} |`);
    console.log(`| npm start, first run: until the monitor's summary is printed, the whole first run's output (target < 60 s) | ${first.monitorDoneSeconds! >= 0 ? fmt(first.monitorDoneSeconds!, 1) : 'no background monitor'} | |`);
    console.log(`| npm start, later run (target < 15 s) | ${fmt(later.seconds!, 1)} | ${split(later)} |`);
    console.log(`| npm start --no-monitor, first run | ${fmt(firstNoMonitor.seconds!, 1)} | ${split(firstNoMonitor)} |`);
    console.log(`| npm start --no-monitor, later run | ${fmt(laterNoMonitor.seconds!, 1)} | ${split(laterNoMonitor)} |`);
    console.log(`| npm start --no-monitor --replay, first run (the replay every first run did before) | ${fmt(replayNoMonitor.seconds!, 1)} | ${split(replayNoMonitor)} |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function dashboardSection(): Promise<void> {
  console.log('');
  console.log('## Dashboard: page weight and first paint in Chromium (median of 5 loads), next to a constant HTML page');
  const r = await runWorker(['bench/dashboard-worker.ts']);
  const kb = (bytes: number): string => `${fmt(bytes / 1024, 1)} KB`;
  console.log(`JS bundle (uPlot + app): ${kb(r.jsBytes!)}, ${kb(r.jsGzipBytes!)} gzip (budget 60 KB gzip)`);
  console.log('| page | first paint | charts drawn | HTML | all bytes | requests |');
  console.log('|---|---:|---:|---:|---:|---:|');
  console.log(`| baseline: a constant HTML page from fastify | ${fmt(r.baselineFirstPaintMs!)} ms | | | | |`);
  const names: [string, string][] = [['drift', 'flights drift page (10 features x 225 airports)'], ['alert-link', 'an alert link: drift page with the SLO burn rates (delay, ORD)'], ['wide', 'drift page, 500 features x 5 slices (budget: first paint < 1 s)'], ['overview', 'overview'], ['feature', 'feature detail (delay, ORD, 7d)'], ['view', 'view origin_delays'], ['alert', 'alert detail']];
  for (const [key, label] of names) {
    if (r[`${key}.firstPaintMs`] === undefined) continue;
    console.log(`| ${label} | ${fmt(r[`${key}.firstPaintMs`]!)} ms | ${fmt(r[`${key}.chartsReadyMs`]!)} ms | ${kb(r[`${key}.htmlBytes`]!)} | ${kb(r[`${key}.totalBytes`]!)} | ${fmt(r[`${key}.requests`]!)} |`);
  }
}

async function bootstrapSection(): Promise<void> {
  console.log('');
  console.log('## Bootstrap: the three flights views built from the offline store (chDB) next to replaying the same events');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-bootstrap-'));
  const stops: (() => Promise<void>)[] = [];
  const redisUrl = await benchRedisUrl(stops);
  const worker = (args: string[]): Promise<Record<string, number>> => runWorker(['bench/bootstrap-worker.ts', ...args]);
  try {
    const load = await worker(['load', dir]);
    const replayRedis = await worker(['redis-replay', redisUrl]);
    const bootRedis = await worker(['redis-bootstrap', dir, redisUrl]);
    const replayMemory = await worker(['memory-replay']);
    const rebuildMemory = await worker(['memory-rebuild', dir]);
    console.log('| measure | seconds | keys/s | tiles/s | peak RSS | note |');
    console.log('|---|---:|---:|---:|---:|---|');
    console.log(`| baseline: replay flights-3m.parquet through the materializer core into Redis | ${fmt(replayRedis.seconds!, 2)} | | | ${fmt(replayRedis.peakRssMb!)} MB | ${fmt(replayRedis.events!)} events, ${fmt(replayRedis.keys!)} keys |`);
    console.log(`| tidemark bootstrap from chDB into Redis | ${fmt(bootRedis.seconds!, 2)} | ${fmt(bootRedis.keys! / bootRedis.seconds!)} | ${fmt(bootRedis.tiles! / bootRedis.seconds!)} | ${fmt(bootRedis.peakRssMb!)} MB | ${fmt(bootRedis.keys!)} keys, ${fmt(bootRedis.tiles!)} tiles from ${fmt(bootRedis.events!)} rows inside retention; ${fmt(replayRedis.seconds! / bootRedis.seconds!, 1)}x the replay |`);
    console.log(`| baseline: npm start's replay of the Parquet file (in-memory store) | ${fmt(replayMemory.seconds!, 2)} | | | ${fmt(replayMemory.peakRssMb!)} MB | |`);
    console.log(`| npm start's rebuild from chDB (in-memory store) | ${fmt(rebuildMemory.seconds!, 2)} | ${fmt(rebuildMemory.keys! / rebuildMemory.seconds!)} | ${fmt(rebuildMemory.tiles! / rebuildMemory.seconds!)} | ${fmt(rebuildMemory.peakRssMb!)} MB | ${fmt(replayMemory.seconds! / rebuildMemory.seconds!, 1)}x the replay |`);
    console.log(`(chDB load of the file first: ${fmt(load.seconds!, 1)} s for ${fmt(load.events!)} events)`);
  } finally {
    for (const stop of stops) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function monitorSection(): Promise<void> {
  console.log('');
  console.log('## Monitor: drift of 10 features x every origin airport over flights-3m');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-monitor-'));
  const worker = (args: string[]): Promise<Record<string, number>> => runWorker(['bench/monitor-worker.ts', ...args]);
  try {
    await worker(['load', dir]);
    const scan = await worker(['scan', dir]);
    const drift = await worker(['drift', dir]);
    const replay = await worker(['replay', dir]);
    console.log('| measure | seconds | CPU seconds (all threads) | peak RSS | note |');
    console.log('|---|---:|---:|---:|---|');
    console.log(`| baseline: one chDB pass over the same ${fmt(scan.rows!)} rows (count, 2 means, distinct destinations per airport) | ${fmt(scan.seconds!, 2)} | ${fmt(scan.cpuSeconds!, 1)} | ${fmt(scan.peakRssMb!)} MB | |`);
    console.log(`| full drift evaluation: January profile + one Feb-Jun window (target < 3 s) | ${fmt(drift.seconds!, 2)} | ${fmt(drift.cpuSeconds!, 1)} | ${fmt(drift.peakRssMb!)} MB | ${fmt(drift.features!)} features x ${fmt(drift.slices!)} slices: ${fmt(drift.tests!)} tests, ${fmt(drift.drifted!)} drifted; profile ${fmt(drift.profileSeconds!, 2)} s |`);
    console.log(`| npm start's monitor replay: ${fmt(replay.evaluations!)} weekly evaluations (drift, labels, freshness, alerts) | ${fmt(replay.seconds!, 2)} | ${fmt(replay.cpuSeconds!, 1)} | ${fmt(replay.peakRssMb!)} MB | ${fmt(replay.metrics!)} metric rows |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function replaySection(): Promise<void> {
console.log('');
console.log('## Replay of flights-3m.parquet (in-memory store)');
// The machine is shared and noisy: alternate baseline and replay runs, report each one's median run.
const RUNS = Number(process.env.BENCH_REPLAY_RUNS ?? 3);
const baselineRuns: Record<string, number>[] = [];
const replayRuns: Record<string, number>[] = [];
for (let i = 0; i < RUNS; i++) {
  baselineRuns.push(await runWorker(['bench/replay-worker.ts', 'baseline', ...rowsArg]));
  replayRuns.push(await runWorker(['bench/replay-worker.ts', 'replay', ...rowsArg]));
}
const medianBy = (runs: Record<string, number>[], key: string): Record<string, number> => [...runs].sort((a, b) => a[key]! - b[key]!)[Math.floor(runs.length / 2)]!;
const baseline = medianBy(baselineRuns, 'totalMs');
const replay = medianBy(replayRuns, 'coreMs');
const rows = replay.rows!;
const readMs = baseline.totalMs!;
console.log('| measure | events/s | seconds | peak RSS |');
console.log('|---|---:|---:|---:|');
console.log(`| baseline: read the Parquet file only | ${fmt(rows / (readMs / 1000))} | ${fmt(readMs / 1000, 2)} | ${fmt(baseline.peakRssMb!)} MB |`);
console.log(`| core: tile batch build + apply | ${fmt(rows / (replay.coreMs! / 1000))} | ${fmt(replay.coreMs! / 1000, 2)} | |`);
console.log(`| decode: zod validation, keys, event time | ${fmt(rows / (replay.decodeMs! / 1000))} | ${fmt(replay.decodeMs! / 1000, 2)} | |`);
console.log(`| end to end: read + decode + core | ${fmt(rows / (replay.totalMs! / 1000))} | ${fmt(replay.totalMs! / 1000, 2)} | ${fmt(replay.peakRssMb!)} MB |`);
console.log(`(${fmt(rows)} rows; median of ${RUNS} runs each, by file-read time and by core time; core in all runs: ${replayRuns.map((r) => fmt(rows / (r.coreMs! / 1000))).join(', ')} events/s)`);

}

async function readsSection(): Promise<void> {
console.log('');
console.log('## Online reads: POST /get-online-features, the in-memory store and a Redis store holding the same replayed flights, each served by a process of its own');
const stops: (() => Promise<void>)[] = [];
const redisUrl = await benchRedisUrl(stops);
// The in-memory and the Redis servers in processes of their own (one after the other: each fills its store).
const servers: ReturnType<typeof spawn>[] = [];
const startReadServer = <T>(role: string): Promise<T> => {
  const server = spawn(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--max-semi-space-size')), RUN_TS, 'bench/read-server.ts', rowsArg[0] ?? 'all', role], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(server);
  return new Promise<T>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as T);
    });
    server.on('exit', (code) => reject(new Error(`read server (${role === 'memory' ? role : 'redis'}) exited ${code}`)));
  });
};
try {
  const info = {
    ...(await startReadServer<{ tidemarkUrl: string; baselineUrl: string; loggingUrls: Record<string, string>; airports: string[]; tiles: Record<string, { now: number; withoutRollups: number }> }>('memory')),
    ...(await startReadServer<{ redisTidemarkUrl: string; redisFillSeconds: number }>(redisUrl)),
  };
  console.log(`tiles merged per read at the watermark clock (head tile included; rollup levels / every tile): ${Object.entries(info.tiles).map(([f, t]) => `${f} ${t.now} / ${t.withoutRollups}`).join(', ')}; from Redis every window merges 2 (its group's closed-windows record, folded once per key and head tile, and the head tile); the Redis store was filled by replaying the same flights in ${fmt(info.redisFillSeconds, 1)} s`);
  const features = ['flights_1h', 'delay_mean_1h', 'delay_mean_1d', 'delay_max_1d', 'delay_stddev_7d', 'distance_sum_1d', 'last_delay'].map((f) => `origin_delays:${f}`);
  const airports100 = info.airports.slice(0, 100);
  const target = (origin: string, airports: string[]): LoadTarget => ({ origin, path: '/get-online-features', method: 'POST', body: JSON.stringify({ features, entities: { airport: airports } }) });
  const cases: { name: string; target: LoadTarget; fixedRate?: number }[] = [
    { name: 'baseline: constant route', target: target(info.baselineUrl, ['ORD']) },
    { name: 'tidemark, in-memory store: 1 entity x 7 features', target: target(info.tidemarkUrl, ['ORD']) },
    { name: 'tidemark, Redis store: 1 entity x 7 features', target: target(info.redisTidemarkUrl, ['ORD']) },
    { name: `tidemark, in-memory store: ${airports100.length} entities x 7 features`, target: target(info.tidemarkUrl, airports100), fixedRate: 100 },
    { name: `tidemark, Redis store: ${airports100.length} entities x 7 features`, target: target(info.redisTidemarkUrl, airports100), fixedRate: 100 },
    // Feature logging (--log-features) into chDB in the server's process, next to the in-memory case above (no logging).
    ...['0', '0.1', '1'].map((rate) => ({ name: `tidemark, in-memory store, feature logging at ${Number(rate) * 100}% into chDB: 1 entity x 7 features`, target: target(info.loggingUrls[rate]!, ['ORD']) })),
  ];
  console.log('| endpoint | saturation req/s | half rate req/s | p50 ms at half | p99 ms at half | max ms at half | fixed rate req/s | p50 ms at fixed | p99 ms at fixed |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  const saturation: number[] = [];
  const serverTimes: string[] = [];
  const readServerTimes = async (origin: string): Promise<{ count: number; p50Ms: number | null; p99Ms: number | null } | null> => {
    const res = await fetch(`${origin}/bench/server-times`);
    return res.ok ? ((await res.json()) as { count: number; p50Ms: number | null; p99Ms: number | null }) : null;
  };
  for (const c of cases) {
    await saturationRps(c.target, 8, 1_000); // warm-up
    const rps = await saturationRps(c.target, 8, SATURATION_MS);
    saturation.push(rps);
    await readServerTimes(c.target.origin); // start over
    const lat = await latencyAtRate(c.target, Math.max(1, Math.floor(rps / 2)), LATENCY_MS);
    const own = await readServerTimes(c.target.origin);
    if (own && own.count > 0) serverTimes.push(`${c.name}: p50 ${fmt(own.p50Ms!, 3)} ms, p99 ${fmt(own.p99Ms!, 3)} ms (client: ${fmt(lat.p99Ms, 3)})`);
    const fixed = Math.min(c.fixedRate ?? 1_000, Math.max(1, Math.floor(rps / 2)));
    const light = await latencyAtRate(c.target, fixed, LATENCY_MS);
    console.log(`| ${c.name} | ${fmt(rps)} | ${fmt(lat.rateRps)} | ${fmt(lat.p50Ms, 3)} | ${fmt(lat.p99Ms, 3)} | ${fmt(lat.maxMs, 1)} | ${fmt(fixed)} | ${fmt(light.p50Ms, 3)} | ${fmt(light.p99Ms, 3)} |`);
  }
  console.log(`the servers' own handling time of the reads at half of saturation (fastify, from a request's arrival to its answer; the rest of the client's latency is queueing in the kernel and the load generator on the shared cores): ${serverTimes.join('; ')}`);
  console.log(`Redis / in-memory saturation, 1 entity: ${fmt(saturation[2]! / saturation[1]!, 2)} (target >= 0.5); 100 entities: ${fmt(saturation[4]! / saturation[3]!, 2)}`);
  console.log(`feature logging / none, saturation, 1 entity: 0% ${fmt(saturation[5]! / saturation[1]!, 2)}, 10% ${fmt(saturation[6]! / saturation[1]!, 2)}, 100% ${fmt(saturation[7]! / saturation[1]!, 2)} (target at 100%: >= 0.9)`);
  for (const rate of ['0.1', '1']) {
    const metrics = await (await fetch(`${info.loggingUrls[rate]!}/metrics`)).text();
    const count = (outcome: string): number => Number(new RegExp(`^tidemark_feature_log_records_total\\{kind="read",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    console.log(`  logging at ${Number(rate) * 100}%: ${fmt(count('written'))} reads logged, ${fmt(count('dropped_queue_full'))} dropped (queue full), ${fmt(count('dropped_write_failed'))} dropped (write failed)`);
  }
} finally {
  for (const server of servers) server.kill('SIGTERM');
  for (const stop of stops) await stop();
}
}

async function offlineSection(): Promise<void> {
  console.log('');
  console.log('## Offline: chDB point-in-time datasets next to DuckDB');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-'));
  // The events: flights-3m.parquet with a float field, delay_h = delay / 60 (bench/flights-float.ts),
  // and a mean of it in each view, so the datasets are measured on float data too.
  const events = join(dir, 'flights-float.parquet');
  const env = { ...process.env, BENCH_FLOAT_FLIGHTS: events };
  const worker = (args: string[]): Promise<Record<string, number>> => runWorker(['bench/offline-worker.ts', ...args], env);
  const duck = (args: string[]): Promise<Record<string, number>> => runWorker(['bench/duckdb-worker.ts', ...args]);
  await duck(['float-flights', FLIGHTS_PARQUET_PATH, events]);
  const load = await worker(['load', dir]);
  await worker(['spines', dir]);
  console.log(`| measure | tidemark (chDB) s | peak RSS | DuckDB s | peak RSS | DuckDB / tidemark | values equal (integer data: tidemark = DuckDB, every row) | float column vs the reference |`);
  console.log('|---|---:|---:|---:|---:|---:|---|---|');
  console.log(`| load flights-3m.parquet + delay_h (decode with the source schema, insert) | ${fmt(load.seconds!, 2)} | ${fmt(load.peakRssMb!)} MB | | | | | |`);
  // The machine is shared and noisy: tidemark and DuckDB alternate, BENCH_OFFLINE_RUNS rounds each
  // (default 3); the table shows each one's median run, the ratio of the medians, and each round's ratio.
  const runs = Number(process.env.BENCH_OFFLINE_RUNS ?? 3);
  const median = (xs: Record<string, number>[]): Record<string, number> => [...xs].sort((a, b) => a.seconds! - b.seconds!)[Math.floor(xs.length / 2)]!;
  const rounds: string[] = [];
  const notes: string[] = [];
  for (const [view, spine] of [['origin_delays', 'spine-airports.parquet'], ['route_delays', 'spine-routes.parquet']] as const) {
    const [oursRuns, theirsRuns] = [[] as Record<string, number>[], [] as Record<string, number>[]];
    const [oursOut, theirsOut] = [join(dir, `tidemark-${view}.parquet`), join(dir, `duckdb-${view}.parquet`)];
    for (let i = 0; i < runs; i++) {
      oursRuns.push(await worker(['dataset', dir, view, join(dir, spine), oursOut]));
      theirsRuns.push(await duck([events, join(dir, spine), view, theirsOut]));
    }
    const [ours, theirs] = [median(oursRuns), median(theirsRuns)];
    rounds.push(`${view}: ${oursRuns.map((o, i) => fmt(theirsRuns[i]!.seconds! / o.seconds!, 2)).join(', ')}`);
    // Integer data: DuckDB's plan is exact (bench/duckdb-check.ts checks it against the reference),
    // so the two files must agree on every row. The float column: DuckDB sums doubles, so there the
    // reference decides, on every row where the two differ and on a sample of the others.
    const floats = featureColumns(view).filter((f) => f.float).map((f) => f.column);
    const check = (await duck(['compare', oursOut, theirsOut, floats.join(',')])) as unknown as { rows: number; mismatches: number; skipped: Record<string, number> };
    const equal = check.mismatches === 0 ? `yes (${fmt(check.rows)} rows)` : `NO: ${fmt(check.mismatches)} of ${fmt(check.rows)} rows differ`;
    const ref = (await runWorker(['bench/reference-check.ts', events, view, oursOut, theirsOut, '1000', '2000', floats.join(',')])) as unknown as Record<string, number>;
    const refCell = `tidemark ${ref.tidemarkMismatches === 0 ? 'agrees' : `DIFFERS on ${fmt(ref.tidemarkMismatches!)} values`}, DuckDB differs on ${fmt(ref.duckdbFloatMismatches!)} (${fmt(ref.rows!)} rows checked, every feature)`;
    console.log(`| dataset: 1,000,000-row spine x every ${view} feature + ${floats.join(', ')} | ${fmt(ours.seconds!, 2)} | ${fmt(Math.max(...oursRuns.map((o) => o.peakRssMb!)))} MB | ${fmt(theirs.seconds!, 2)} | ${fmt(Math.max(...theirsRuns.map((o) => o.peakRssMb!)))} MB | ${fmt(theirs.seconds! / ours.seconds!, 2)} | ${equal} | ${refCell} |`);
    notes.push(`${view}: the float column differs between tidemark and DuckDB on ${fmt(check.skipped[floats[0]!] ?? 0)} rows; the reference checked ${fmt(ref.rows!)} rows (${fmt(ref.disagreeRowsChecked!)} of them where the two differ): tidemark ${fmt(ref.tidemarkMismatches!)} mismatches of ${fmt(ref.values!)} values, DuckDB ${fmt(ref.duckdbMismatches!)} (${fmt(ref.duckdbFloatMismatches!)} in the float column)`);
  }
  console.log(`(median of ${runs} alternating runs each; peak RSS: the largest run; DuckDB / tidemark per round: ${rounds.join('; ')})`);
  for (const n of notes) console.log(`(${n})`);
  rmSync(dir, { recursive: true, force: true });
}
