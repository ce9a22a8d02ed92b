// The tidemark command line: validate definitions, run the embedded quickstart.
import { Command, InvalidArgumentError } from 'commander';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, compileOrThrow, formatDefinitionError, formatDurationMs, loadDefinitions, TidemarkError, type Registry } from '../definitions/index.js';
import { OfflineKafkaSink, OfflineStore, type OfflineStoreOptions } from '../offline/index.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { runQuickstart } from './quickstart.js';

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_DEFINITIONS = join(PACKAGE_ROOT, 'examples', 'flights');

function positiveInt(name: string) {
  return (text: string): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a whole number >= 0, got ${text}`);
    return n;
  };
}

export function summarizeRegistry(registry: Registry): string[] {
  const lines = [`registry ${registry.version}: ${registry.entities.length} entities, ${registry.sources.length} sources, ${registry.views.length} feature views`];
  for (const s of registry.sources) lines.push(`  source ${s.name}: topic ${s.topic}, event time ${s.eventTimeField}, dead letters ${s.deadLetter}`);
  for (const v of registry.views) {
    lines.push(`  featureView ${v.name}: entity ${v.entity} (${v.joinKeys.map((k, i) => (k === v.keyFields[i] ? k : `${k} <- ${v.keyFields[i]}`)).join(', ')}), source ${v.source}, retention ${formatDurationMs(v.retentionMs)}`);
    for (const f of v.features) {
      const window = f.windowMs === null ? `latest${f.ttlMs !== null ? `, ttl ${formatDurationMs(f.ttlMs)}` : ''}` : `window ${formatDurationMs(f.windowMs)} = ${f.tilesPerWindow} x ${formatDurationMs(f.hopMs)} tiles`;
      lines.push(`    ${f.name}: ${f.agg}(${f.field ?? ''}) ${window}`);
    }
  }
  return lines;
}

export function buildCli(): Command {
  const program = new Command('tidemark').description('Streaming feature store and drift monitor').showHelpAfterError();

  program
    .command('validate')
    .description('compile feature definitions and print the registry, or every error')
    .requiredOption('--definitions <path>', 'definitions module: a .ts/.js file or a folder with index.ts')
    .option('--json', 'print the registry as JSON')
    .action(async (opts: { definitions: string; json?: boolean }) => {
      const { path, module } = await loadDefinitions(opts.definitions);
      const result = compile(module);
      if (!result.ok) {
        console.error(`${path}: ${result.errors.length} definition error(s)`);
        for (const e of result.errors) console.error(formatDefinitionError(e));
        process.exitCode = 1;
        return;
      }
      if (opts.json) console.log(JSON.stringify(result.compiled.registry, null, 2));
      else for (const line of summarizeRegistry(result.compiled.registry)) console.log(line);
    });

  program
    .command('quickstart')
    .description('replay the flights data into the in-memory store and serve the API (no servers needed)')
    .option('--definitions <path>', 'definitions module', DEFAULT_DEFINITIONS)
    .option('--file <parquet>', 'Parquet file to replay', FLIGHTS_PARQUET_PATH)
    .option('--source <name>', "source the file's rows belong to (default: the only source)")
    .option('--limit <n>', 'replay only the first n rows', positiveInt('--limit'))
    .option('--port <port>', 'HTTP port', positiveInt('--port'), Number(process.env.PORT ?? 8080))
    .option('--host <host>', 'HTTP host', '127.0.0.1')
    .option('--data-dir <dir>', 'folder for local data (chDB, dead letters)', '.tidemark')
    .option('--clickhouse-url <url>', 'ClickHouse server HTTP URL for the offline store (default: $CLICKHOUSE_URL, else chDB in --data-dir)', process.env.CLICKHOUSE_URL)
    .option('--no-offline', 'skip loading the file into the offline store')
    .option('--no-serve', 'print the summary and exit instead of serving')
    .option('--no-progress', 'no progress bar')
    .option('--verify', 'keep the events and check every key of every view against the reference implementation')
    .action(async (opts: { definitions: string; file: string; source?: string; limit?: number; port: number; host: string; dataDir: string; clickhouseUrl?: string; offline: boolean; serve: boolean; progress: boolean; verify?: boolean }) => {
      const result = await runQuickstart({ ...opts, progress: opts.progress && process.stderr.isTTY === true, log: (line) => console.log(line) });
      if (result.verification && result.verification.mismatches.length > 0) process.exitCode = 1;
      if (!result.server) await result.offline?.close();
      if (result.server) {
        const stop = async (): Promise<void> => {
          await result.server?.close();
          await result.offline?.close();
          process.exit(0);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      }
    });
  const offlineOptions = (command: Command): Command =>
    command
      .option('--clickhouse-url <url>', 'ClickHouse server HTTP URL (default: $CLICKHOUSE_URL, else chDB in --data-dir)', process.env.CLICKHOUSE_URL)
      .option('--data-dir <dir>', 'folder for chDB data', '.tidemark');

  offlineOptions(
    program
      .command('backfill')
      .description('load an event file (Parquet, CSV, NDJSON) into the offline store; loading a file twice is a no-op')
      .requiredOption('--definitions <path>', 'definitions module')
      .requiredOption('--from <file>', 'event file: .parquet, .csv or .ndjson')
      .option('--source <name>', "source the file's rows belong to (default: the only source)"),
  ).action(async (opts: { definitions: string; from: string; source?: string; clickhouseUrl?: string; dataDir: string }) => {
    const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
    const source = opts.source ?? soleSource(compiled.registry);
    const store = await OfflineStore.open(compiled, offlineStoreOptions(opts));
    try {
      const result = await store.loadEvents(source, opts.from);
      if (result.alreadyLoaded) console.log(`${opts.from} was already loaded into ${store.executor.location} (${result.events.toLocaleString('en-US')} events): nothing to do`);
      else {
        console.log(`loaded ${result.events.toLocaleString('en-US')} events of source ${source} from ${opts.from} into ${store.executor.location} in ${result.seconds.toFixed(2)} s`);
        if (result.badEvents > 0) console.log(`${result.badEvents.toLocaleString('en-US')} bad rows went to the table tm_dead_letters (load id ${result.loadId})`);
      }
    } finally {
      await store.close();
    }
  });

  offlineOptions(
    program
      .command('dataset')
      .description('write a point-in-time training dataset for a spine file (.parquet, .arrow, .csv or .ndjson output)')
      .requiredOption('--definitions <path>', 'definitions module')
      .requiredOption('--spine <file>', 'spine: join key columns, ts (epoch ms or ISO-8601) and passthrough columns')
      .requiredOption('--features <list>', 'comma-separated view:feature references')
      .requiredOption('--out <file>', 'output file; its extension names the format'),
  ).action(async (opts: { definitions: string; spine: string; features: string; out: string; clickhouseUrl?: string; dataDir: string }) => {
    const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
    const store = await OfflineStore.open(compiled, offlineStoreOptions(opts));
    try {
      const features = opts.features.split(',').map((f) => f.trim()).filter(Boolean);
      const result = await store.writeDataset(opts.spine, features, opts.out);
      console.log(`wrote ${result.rows.toLocaleString('en-US')} rows x ${result.columns.length} columns to ${opts.out} in ${result.seconds.toFixed(2)} s`);
      console.log(`columns: ${result.columns.join(', ')}`);
    } finally {
      await store.close();
    }
  });
  offlineOptions(
    program
      .command('offline-sink')
      .description("append the sources' Kafka topics to the offline store, effectively once (its own consumer group)")
      .requiredOption('--definitions <path>', 'definitions module')
      .option('--kafka-brokers <list>', 'Kafka bootstrap servers, comma-separated (default: $KAFKA_BROKERS)', process.env.KAFKA_BROKERS)
      .option('--group <id>', 'consumer group', 'tidemark-offline'),
  ).action(async (opts: { definitions: string; kafkaBrokers?: string; group: string; clickhouseUrl?: string; dataDir: string }) => {
    if (!opts.kafkaBrokers) throw new InvalidArgumentError('name the Kafka brokers with --kafka-brokers or KAFKA_BROKERS');
    const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
    const store = await OfflineStore.open(compiled, offlineStoreOptions(opts));
    const sink = new OfflineKafkaSink(store.executor, compiled, { brokers: opts.kafkaBrokers.split(','), groupId: opts.group });
    await sink.start();
    console.log(`offline sink: group ${opts.group} appending ${compiled.registry.sources.map((s) => s.topic).join(', ')} to ${store.executor.location} (Ctrl-C to stop)`);
    const stop = async (): Promise<void> => {
      await sink.stop();
      await store.close();
      console.log(`offline sink stopped: ${sink.stats.events} events, ${sink.stats.badEvents} dead letters, ${sink.stats.redelivered} redelivered records dropped`);
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return program;
}

function soleSource(registry: Registry): string {
  if (registry.sources.length === 1) return registry.sources[0]!.name;
  throw new InvalidArgumentError(`the definitions have ${registry.sources.length} sources (${registry.sources.map((s) => s.name).join(', ')}): name one with --source`);
}

function offlineStoreOptions(opts: { clickhouseUrl?: string; dataDir: string }): OfflineStoreOptions {
  return opts.clickhouseUrl ? { clickhouseUrl: opts.clickhouseUrl } : { dataDir: opts.dataDir };
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    if (e instanceof TidemarkError) console.error(`${e.code}: ${e.message}`);
    else console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
  }
}
