// Feature-logging figures of `npm run bench`. BENCH_ONLY=logging: what feature logging costs the read path. Saturation of
// POST /get-online-features (1 entity x 7 features, in-memory store) without logging, next to the
// same read logged at 0%, 10% and 100% into chDB in the server's process (embedded mode), and at
// 10% and 100% to a Kafka topic (librdkafka's mock cluster started here, or KAFKA_BROKERS). The
// cases alternate over BENCH_LOG_ROUNDS rounds (the machine is shared and noisy) and each reports
// its median round. Besides throughput, each case's CPU time per read in the server process (every
// thread, the log's writes included: the bench waits until the queue is written before it reads
// the CPU clock), which other load on the machine disturbs less than throughput.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { saturationRps, type LoadTarget } from './http-load.js';
import { externalKafka, startMockKafka, type KafkaCluster } from '../tests/support/kafka.js';

interface Options {
  root: string;
  runTs: string;
  rows: string | undefined;
  fmt: (n: number, digits?: number) => string;
}

const FEATURES = ['flights_1h', 'delay_mean_1h', 'delay_mean_1d', 'delay_max_1d', 'delay_stddev_7d', 'distance_sum_1d', 'last_delay'].map((f) => `origin_delays:${f}`);

export async function featureLogSection(o: Options): Promise<void> {
  console.log('');
  console.log('## Feature logging: read saturation with --log-features next to no logging (1 entity x 7 features, in-memory store, load generator in the bench process)');
  const rounds = Number(process.env.BENCH_LOG_ROUNDS ?? 3);
  const seconds = Number(process.env.BENCH_LOG_SECONDS ?? 4);
  let kafka: KafkaCluster | null = null;
  let kafkaName = '';
  try {
    if (process.env.KAFKA_BROKERS) {
      kafka = externalKafka(process.env.KAFKA_BROKERS);
      kafkaName = `KAFKA_BROKERS=${process.env.KAFKA_BROKERS}`;
    } else {
      kafka = await startMockKafka({ brokers: 1 });
      kafkaName = 'librdkafka mock cluster (1 broker) started here';
    }
    // The mock keeps at most 5 MB a partition: spread the log over many.
    await kafka.createTopic('bench.feature_log', 32);
  } catch (e) {
    console.log(`(no Kafka: ${(e as Error).message.split('\n')[0]}; the Kafka rows are left out)`);
    kafka = null;
  }
  const server = spawn(process.execPath, [...process.execArgv.filter((a) => a.startsWith('--max-semi-space-size')), o.runTs, 'bench/feature-log-server.ts', o.rows ?? 'all', ...(kafka ? [kafka.bootstrap] : [])], { cwd: o.root, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const { urls } = await new Promise<{ urls: Record<string, string> }>((resolve, reject) => {
      let out = '';
      server.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { urls: Record<string, string> });
      });
      server.on('exit', (code) => reject(new Error(`feature-log server exited ${code}`)));
    });
    const cases: [string, string][] = [
      ['none', 'baseline: no logging'],
      ['chdb-0', 'logging at 0% (into chDB)'],
      ['chdb-0.1', 'logging at 10% into chDB'],
      ['chdb-1', 'logging at 100% into chDB'],
      ...(kafka ? ([['kafka-0.1', `logging at 10% to Kafka`], ['kafka-1', `logging at 100% to Kafka`]] as [string, string][]) : []),
    ];
    const json = async <T>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;
    const results = new Map<string, { rps: number; cpuMicrosPerRead: number }[]>(cases.map(([name]) => [name, []]));
    const load: number[] = [loadavg()[0]!];
    // A first pass unmeasured: the serving code is compiled before any case is timed (else the first case pays for it).
    for (const [name] of cases) await saturationRps({ origin: urls[name]!, path: '/get-online-features', method: 'POST', body: JSON.stringify({ features: FEATURES, entities: { airport: ['ORD'] } }) }, 8, 2_000);
    for (let round = 0; round < rounds; round++) {
      // Each round starts at another case, so no case always follows the heaviest one.
      for (const [name] of [...cases.slice(round % cases.length), ...cases.slice(0, round % cases.length)]) {
        const target: LoadTarget = { origin: urls[name]!, path: '/get-online-features', method: 'POST', body: JSON.stringify({ features: FEATURES, entities: { airport: ['ORD'] } }) };
        await saturationRps(target, 8, 1_000); // warm-up
        await json(`${urls.control}/flush/${name}`);
        await new Promise((r) => setTimeout(r, 1_500)); // the engine's background merges of earlier inserts settle
        const before = await json<{ cpuMicros: number }>(`${urls.control}/cpu`);
        const rps = await saturationRps(target, 8, seconds * 1_000);
        await json(`${urls.control}/flush/${name}`);
        const after = await json<{ cpuMicros: number }>(`${urls.control}/cpu`);
        results.get(name)!.push({ rps, cpuMicrosPerRead: (after.cpuMicros - before.cpuMicros) / (rps * seconds) });
      }
      load.push(loadavg()[0]!);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const baseline = results.get('none')!;
    console.log(`${rounds} rounds of ${seconds} s per case, cases alternating (ratios: the median over rounds of the case's figure over the baseline's in the same round); ${kafka ? `Kafka: ${kafkaName}; ` : ''}load average (1 min) at the start and after each round: ${load.map((l) => o.fmt(l, 2)).join(', ')}`);
    console.log('| case | saturation req/s (median) | / no logging (target at 100%: >= 0.9) | every round req/s | server CPU µs per read (median) | / no logging | records written | dropped (queue full) | dropped (write failed) |');
    console.log('|---|---:|---:|---|---:|---:|---:|---:|---:|');
    for (const [name, label] of cases) {
      const runs = results.get(name)!;
      const rps = median(runs.map((r) => r.rps));
      const cpu = median(runs.map((r) => r.cpuMicrosPerRead));
      const rpsRatio = median(runs.map((r, i) => r.rps / baseline[i]!.rps));
      const cpuRatio = median(runs.map((r, i) => r.cpuMicrosPerRead / baseline[i]!.cpuMicrosPerRead));
      const stats = await json<{ written?: number; droppedQueueFull?: number; droppedWriteFailed?: number }>(`${urls.control}/flush/${name}`);
      const counts = stats.written === undefined ? ' | | ' : `${o.fmt(stats.written)} | ${o.fmt(stats.droppedQueueFull!)} | ${o.fmt(stats.droppedWriteFailed!)}`;
      console.log(`| ${label} | ${o.fmt(rps)} | ${o.fmt(rpsRatio, 2)} | ${runs.map((r) => o.fmt(r.rps)).join(', ')} | ${o.fmt(cpu, 1)} | ${o.fmt(cpuRatio, 2)} | ${counts} |`);
    }
  } finally {
    server.kill('SIGTERM');
    await kafka?.stop();
  }
}

/**
 * `BENCH_ONLY=skew npm run bench`: the skew check of 1M logged values (BENCH_SKEW_READS reads x the
 * 7 origin_delays features) next to the equivalent dataset build (the same spine and features),
 * each step in a process of its own (bench/skew-worker.ts).
 */
export async function skewSection(o: Options & { runWorker: (args: string[]) => Promise<Record<string, number>> }): Promise<void> {
  console.log('');
  console.log('## Skew check: evaluateSkew over 1M logged values next to the dataset build of the same spine and features (chDB)');
  const reads = Number(process.env.BENCH_SKEW_READS ?? 142_858);
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-skew-'));
  const worker = (args: string[]): Promise<Record<string, number>> => o.runWorker(['bench/skew-worker.ts', ...args]);
  try {
    const load: number[] = [loadavg()[0]!];
    await worker(['load', dir, String(reads)]);
    const dataset = await worker(['dataset', dir]);
    const logged = await worker(['log', dir]);
    load.push(loadavg()[0]!);
    const skew = await worker(['skew', dir]);
    const datasetAgain = await worker(['dataset', dir]);
    load.push(loadavg()[0]!);
    console.log(`load average (1 min) at the start, before and after the skew check: ${load.map((l) => o.fmt(l, 2)).join(', ')}`);
    console.log('| measure | seconds | peak RSS | note |');
    console.log('|---|---:|---:|---|');
    console.log(`| baseline: dataset of ${o.fmt(dataset.rows!)} spine rows x 7 origin_delays features (${o.fmt(dataset.values!)} values) to Parquet, run before and after | ${o.fmt(dataset.seconds!, 2)}, ${o.fmt(datasetAgain.seconds!, 2)} | ${o.fmt(dataset.peakRssMb!)} MB | |`);
    console.log(`| skew check of the ${o.fmt(logged.values!)} logged values (${o.fmt(logged.reads!)} reads) | ${o.fmt(skew.seconds!, 2)} | ${o.fmt(skew.peakRssMb!)} MB | ${o.fmt(skew.values!)} values compared, ${o.fmt(skew.mismatches!)} mismatches (expected: one read in 100, in flights_1h: ${o.fmt(Math.ceil(logged.reads! / 100))}), ${o.fmt(skew.featuresWithMismatches!)} feature(s) with mismatches; ${o.fmt(skew.seconds! / dataset.seconds!, 2)}x the dataset |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
