// Feature-logging figures of `npm run bench`. BENCH_ONLY=logging: what feature logging costs the read path. Saturation of
// POST /get-online-features (1 entity x 7 features, in-memory store) without logging, next to the
// same read logged at 0%, 10% and 100% into chDB in the server's process (embedded mode), and at
// 10% and 100% to a Kafka topic (librdkafka's mock cluster started here, or KAFKA_BROKERS). The
// cases alternate over BENCH_LOG_ROUNDS short rounds (the machine is shared and noisy: many short
// rounds, compared round by round, spread the noise over all cases) and each reports its median
// over rounds with the quartiles. Besides throughput, each case's CPU time per read in the server
// process (every thread, the log's writes included: the bench waits until the queue is written
// before it reads the CPU clock) and on the serving thread alone, which other load on the machine
// disturbs less than throughput.
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
  const rounds = Number(process.env.BENCH_LOG_ROUNDS ?? 8);
  const seconds = Number(process.env.BENCH_LOG_SECONDS ?? 2);
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
      ['discard-1', 'logging at 100% into a sink that writes nothing (the serving path\'s share)'],
      ...(kafka ? ([['kafka-0.1', `logging at 10% to Kafka`], ['kafka-1', `logging at 100% to Kafka`]] as [string, string][]) : []),
    ];
    // BENCH_LOG_CASES=none,chdb-1,...: only these cases (quicker comparisons); the baseline always runs.
    // records-1 runs only when named: the queue before its arena (each read a record holding a Buffer) into a sink that writes nothing.
    const only = process.env.BENCH_LOG_CASES?.split(',');
    cases.push(['records-1', "logging at 100% into a sink that writes nothing, each read queued as a record with a Buffer (the eighth session's queue)"]);
    cases.splice(0, cases.length, ...cases.filter(([name]) => name === 'none' || (only ? only.includes(name) : name !== 'records-1')));
    const json = async <T>(url: string): Promise<T> => (await (await fetch(url)).json()) as T;
    interface Round { rps: number; cpu: number; main: number | null }
    const results = new Map<string, Round[]>(cases.map(([name]) => [name, []]));
    const load: number[] = [loadavg()[0]!];
    const body = JSON.stringify({ features: FEATURES, entities: { airport: ['ORD'] } });
    const targetOf = (name: string): LoadTarget => ({ origin: urls[name]!, path: '/get-online-features', method: 'POST', body });
    // A first pass unmeasured: the serving code is compiled before any case is timed (else the first case pays for it).
    for (const [name] of cases) await saturationRps(targetOf(name), 8, 2_000);
    for (let round = 0; round < rounds; round++) {
      // Each round starts at another case, so no case always follows the heaviest one.
      for (const [name] of [...cases.slice(round % cases.length), ...cases.slice(0, round % cases.length)]) {
        await saturationRps(targetOf(name), 8, 500); // warm-up
        await json(`${urls.control}/flush/${name}`);
        await new Promise((r) => setTimeout(r, 1_000)); // the engine's background merges of earlier inserts settle
        const before = await json<{ cpuMicros: number; mainMicros: number | null }>(`${urls.control}/cpu`);
        const rps = await saturationRps(targetOf(name), 8, seconds * 1_000);
        await json(`${urls.control}/flush/${name}`);
        const after = await json<{ cpuMicros: number; mainMicros: number | null }>(`${urls.control}/cpu`);
        const reads = rps * seconds;
        results.get(name)!.push({ rps, cpu: (after.cpuMicros - before.cpuMicros) / reads, main: after.mainMicros === null || before.mainMicros === null ? null : (after.mainMicros - before.mainMicros) / reads });
      }
      load.push(loadavg()[0]!);
    }
    const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
    const median = (xs: number[]): number => {
      const s = sorted(xs);
      return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
    };
    // Median and, in brackets, the middle half of the rounds (quartiles): the spread the noise leaves.
    const spread = (xs: number[], digits: number): string => {
      const s = sorted(xs);
      const q = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))]!;
      return `${o.fmt(median(xs), digits)} [${o.fmt(q(0.25), digits)}, ${o.fmt(q(0.75), digits)}]`;
    };
    const baseline = results.get('none')!;
    console.log(`${rounds} rounds of ${seconds} s per case, cases alternating; per round, each case's figure is compared with the baseline's of the same round, and the table gives the median over rounds with the quartiles in brackets; ${kafka ? `Kafka: ${kafkaName}; ` : ''}load average (1 min) at the start and after each round: ${load.map((l) => o.fmt(l, 2)).join(', ')}`);
    console.log('CPU per read: the server process over all its threads (the serving thread, chDB\'s threads, V8\'s collector helpers), read after the log\'s queue is written; "serving thread": the event loop alone (Linux). The logging cost is the extra CPU per read over no logging: the target (at most 10% of read throughput at 100%) is met when it stays within 10% of the baseline\'s CPU per read.');
    console.log('| case | saturation req/s | / no logging | CPU µs per read | extra CPU µs per read | / no logging | serving thread µs per read | its extra µs | records written | dropped (queue full) | dropped (write failed) |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, label] of cases) {
      const runs = results.get(name)!;
      const mains = runs.every((r, i) => r.main !== null && baseline[i]!.main !== null);
      const stats = await json<{ written?: number; droppedQueueFull?: number; droppedWriteFailed?: number }>(`${urls.control}/flush/${name}`);
      const counts = stats.written === undefined ? ' | | ' : `${o.fmt(stats.written)} | ${o.fmt(stats.droppedQueueFull!)} | ${o.fmt(stats.droppedWriteFailed!)}`;
      console.log(
        `| ${label} | ${spread(runs.map((r) => r.rps), 0)} | ${spread(runs.map((r, i) => r.rps / baseline[i]!.rps), 2)} | ${spread(runs.map((r) => r.cpu), 1)} | ${spread(runs.map((r, i) => r.cpu - baseline[i]!.cpu), 1)} | ${spread(runs.map((r, i) => r.cpu / baseline[i]!.cpu), 2)}` +
          ` | ${mains ? spread(runs.map((r) => r.main!), 1) : 'n/a'} | ${mains ? spread(runs.map((r, i) => r.main! - baseline[i]!.main!), 1) : 'n/a'} | ${counts} |`,
      );
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
