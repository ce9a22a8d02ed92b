// The tidemark command line: validate definitions, run the embedded quickstart.
import { Command, InvalidArgumentError } from 'commander';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, compileOrThrow, formatDefinitionError, formatDurationMs, loadDefinitions, TidemarkError, withoutPassword, type CompiledDefinitions, type Registry } from '../definitions/index.js';
import { OfflineFeatureLogSink, OfflineKafkaSink, OfflineStore, writeLogDataset } from '../offline/index.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { runQuickstart } from './quickstart.js';
import { buildMaterializerServer, createKafkaClient, describeKafkaSecurity, FeatureLogQueue, featureLogTopic, KafkaFeatureLogSink, Materializer, type MaterializerLog } from '../ingest/index.js';
import { connectRedisOnlineStore, OnlineFeatureService, readStoredRegistryState, redisConnectionError, type StoreClock } from '../online/index.js';
import Fastify from 'fastify';
import { prepareMaterializerStart, recordRewound } from './materialize-start.js';
import { REDIS_URL_DEFAULT, wholeNumber } from './cli-args.js';
import { addVersionCommands } from './version-commands.js';
import { Partitioners } from 'kafkajs';
import { pushRoutes } from './push-routes.js';
import { buildServer, type ServerOptions } from './server.js';
import { authConfigFrom, installAuth, openServerWarning, type AuthFlags } from './auth.js';
import { DEFAULT_LIMITS, LIMIT_FLAGS, type ApiLimits } from './limits.js';
import { addMonitorCommand } from './monitor-command.js';
import { scrapeMaterializerMetrics } from './materializer-status.js';
import { computePlan, formatPlan, readOfflineEvents, readRedisState } from './plan.js';
import {
  clickhouseConnectionFlags,
  clickhouseConnectionOf,
  clickhouseShardFlags,
  clickhouseShardsOf,
  hideSecretsInHelp,
  hideSecretsInProcessTitle,
  kafkaConnectionFlags,
  kafkaSecurityOf,
  redisConnectionFlags,
  redisConnectionOf,
  type ClickHouseConnectionFlags,
  type ClickHouseShardFlags,
  type KafkaConnectionFlags,
  type RedisConnectionFlags,
} from './connections.js';

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_DEFINITIONS = join(PACKAGE_ROOT, 'examples', 'flights');

const positiveInt = (name: string): ((text: string) => number) => wholeNumber(name, 0);

/** --auth-tokens, the --jwt-* flags and --protect-metrics, on every command that serves HTTP. */
function authOptions(command: Command): Command {
  return command
    .option('--auth-tokens <file>', 'JSON list of {name, sha256, scopes} tokens; every request then needs Authorization: Bearer <token> with the route\'s scope (default: $TIDEMARK_AUTH_TOKENS)', process.env.TIDEMARK_AUTH_TOKENS)
    .option('--jwt-issuer <iss>', 'also accept JWTs from this issuer (with --jwt-audience and --jwt-jwks); their scope claim grants the scopes')
    .option('--jwt-audience <aud>', "the audience the JWTs must name (their aud claim)")
    .option('--jwt-jwks <file|url>', "the issuer's public keys: a JWKS file, or an https URL to fetch them from")
    .option('--protect-metrics', '/healthz and /metrics need a token with scope metrics:read too');
}

interface SecurityFlags extends AuthFlags {
  corsOrigins?: string[];
  securityHeaders?: boolean;
}

function originList(text: string): string[] {
  const origins = text.split(',').map((o) => o.trim()).filter((o) => o.length > 0);
  for (const o of origins) if (!/^https?:\/\/[^/]+$/.test(o)) throw new InvalidArgumentError(`--cors-origins takes origins such as https://ui.example.com (scheme, host, optional port, no path), got ${o}`);
  return origins;
}

/** Auth, CORS, security headers and every limit of api/limits.ts, on the commands serving the API. */
export function apiSecurityOptions(command: Command): Command {
  authOptions(command)
    .option('--cors-origins <list>', 'comma-separated origins allowed to call the API from a browser (default: no CORS)', originList)
    .option('--security-headers', "send helmet's security headers (CSP, HSTS, nosniff, frame options)");
  for (const [name, { flag, description }] of Object.entries(LIMIT_FLAGS) as [keyof ApiLimits, (typeof LIMIT_FLAGS)[keyof ApiLimits]][]) {
    const least = name === 'requestTimeoutMs' || name === 'requestsPerMinute' ? 0 : 1;
    // The monitor queries return at most 100 000 rows (monitor/metrics-store.ts) whatever the cap.
    const most = name === 'queryLimit' ? 100_000 : Number.MAX_SAFE_INTEGER;
    command.option(`${flag} <n>`, `${description} (default ${DEFAULT_LIMITS[name]})`, (text: string) => {
      const n = Number(text);
      if (!Number.isSafeInteger(n) || n < least || n > most) throw new InvalidArgumentError(`${flag} must be a whole number from ${least} to ${most}, got ${text}`);
      return n;
    });
  }
  return command;
}

/** The server options of the flags (commander names the limit flags' values after the flags). */
export function serverSecurity(opts: object): Pick<ServerOptions, 'auth' | 'limits' | 'corsOrigins' | 'securityHeaders'> {
  const flags = opts as SecurityFlags & Record<string, unknown>;
  const limits: Partial<ApiLimits> = {};
  for (const [name, { flag }] of Object.entries(LIMIT_FLAGS) as [keyof ApiLimits, { flag: string }][]) {
    const given = flags[flagKey(flag)];
    if (typeof given === 'number') limits[name] = given;
  }
  return { auth: authConfigFrom(flags), limits, corsOrigins: flags.corsOrigins ?? [], securityHeaders: flags.securityHeaders === true };
}

/** commander's property name of a flag: --max-read-body -> maxReadBody. */
function flagKey(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function warnIfOpen(host: string, security: Pick<ServerOptions, 'auth'>): void {
  const warning = openServerWarning(host, security.auth ?? null);
  if (warning) console.error(warning);
}

export function summarizeRegistry(registry: Registry): string[] {
  const lines = [`registry ${registry.version}: ${registry.entities.length} entities, ${registry.sources.length} sources, ${registry.views.length} feature views`];
  for (const s of registry.sources) lines.push(`  source ${s.name}: topic ${s.topic}, event time ${s.eventTimeField}, dead letters ${s.deadLetter}`);
  for (const v of registry.views) {
    lines.push(`  featureView ${v.name}: entity ${v.entity} (${v.joinKeys.map((k, i) => (k === v.keyFields[i] ? k : `${k} <- ${v.keyFields[i]}`)).join(', ')}), source ${v.source}, retention ${formatDurationMs(v.retentionMs)}`);
    for (const f of v.features) {
      const window = f.windowMs === null ? `latest${f.ttlMs !== null ? `, ttl ${formatDurationMs(f.ttlMs)}` : ''}` : `window ${formatDurationMs(f.windowMs)} = ${f.tilesPerWindow} x ${formatDurationMs(f.hopMs)} tiles`;
      const quantile = f.quantile === undefined ? '' : `, quantile ${f.quantile}`;
      lines.push(`    ${f.name}: ${f.agg}(${f.field ?? ''}${quantile}) ${window}`);
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

  clickhouseConnectionFlags(apiSecurityOptions(program
    .command('quickstart')
    .description('load the flights data into the offline store (chDB) and the in-memory store, and serve the API (no servers needed)')
    .option('--definitions <path>', 'definitions module', DEFAULT_DEFINITIONS)
    .option('--file <parquet>', 'Parquet file to load', FLIGHTS_PARQUET_PATH)
    .option('--source <name>', "source the file's rows belong to (default: the only source)")
    .option('--limit <n>', 'replay only the first n rows', positiveInt('--limit'))
    .option('--port <port>', 'HTTP port', positiveInt('--port'), Number(process.env.PORT ?? 8080))
    .option('--host <host>', 'HTTP host', '127.0.0.1')
    .option('--data-dir <dir>', 'folder for local data (chDB, dead letters)', '.tidemark')
    .option('--clickhouse-url <url>', 'ClickHouse server HTTP(S) URL for the offline store (default: $CLICKHOUSE_URL, else chDB in --data-dir)', process.env.CLICKHOUSE_URL)
    .option('--no-offline', 'skip loading the file into the offline store')
    .option('--no-monitor', 'skip the drift monitor replay over February to June')
    .option('--replay', 'replay the file even when the offline store holds it already (default: rebuild the online store from the offline store then)')
    .option('--no-serve', 'print the summary and exit instead of serving')
    .option('--no-progress', 'no progress bar')
    .option('--verify', 'keep the events and check every key of every view against the reference implementation')
    .option('--log-features <rate>', 'log this fraction (0 to 1) of the served get-online-features reads, and POST /feature-log/predictions, to the offline store (tm_feature_log_lines in chDB, tm_feature_log_records on a ClickHouse server, tm_prediction_log)', sampleRate)))
    .action(async (opts: ClickHouseConnectionFlags & { definitions: string; file: string; source?: string; limit?: number; port: number; host: string; dataDir: string; clickhouseUrl?: string; offline: boolean; monitor: boolean; serve: boolean; progress: boolean; verify?: boolean; replay?: boolean; logFeatures?: number }) => {
      if (opts.logFeatures !== undefined && !opts.offline) throw new InvalidArgumentError('--log-features writes to the offline store: drop --no-offline');
      // Read before the replay, so that a bad token file fails in a second, not after minutes.
      const security = serverSecurity(opts);
      if (opts.serve) warnIfOpen(opts.host, security);
      const { logFeatures, ...quickstartFlags } = opts;
      const result = await runQuickstart({ ...quickstartFlags, clickhouse: clickhouseConnectionOf(opts), rebuild: opts.replay !== true, security, progress: opts.progress && process.stderr.isTTY === true, log: (line) => console.log(line), ...(logFeatures !== undefined ? { logFeatures: { sampleRate: logFeatures, log: jsonLog } } : {}) });
      if (result.verification && result.verification.mismatches.length > 0) process.exitCode = 1;
      if (!result.server) await result.offline?.close();
      if (result.server) {
        const stop = async (): Promise<void> => {
          await result.server?.close();
          await result.featureLog?.close();
          await result.offline?.close();
          process.exit(0);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      }
    });
  const offlineOptions = (command: Command): Command =>
    clickhouseShardFlags(clickhouseConnectionFlags(command
      .option('--clickhouse-url <url>', 'ClickHouse server HTTP(S) URL (default: $CLICKHOUSE_URL, else chDB in --data-dir)', process.env.CLICKHOUSE_URL)
      .option('--data-dir <dir>', 'folder for chDB data', '.tidemark')));
  /** The offline store of backfill, dataset and offline-sink: chDB, one server, or shards. */
  const openOffline = (compiled: CompiledDefinitions, opts: ClickHouseConnectionFlags & ClickHouseShardFlags & { clickhouseUrl?: string; dataDir: string }): Promise<OfflineStore> => {
    const sharded = clickhouseShardsOf(opts);
    const clickhouse = clickhouseConnectionOf(opts);
    if (sharded.clickhouseShards) return OfflineStore.open(compiled, { ...sharded, clickhouse });
    return OfflineStore.open(compiled, { ...(opts.clickhouseUrl ? { clickhouseUrl: opts.clickhouseUrl } : {}), dataDir: opts.dataDir, clickhouse });
  };
  const storeLocation = (store: OfflineStore): string => (store.shards ? `${store.shards.count} shards (${store.shards.executors.map((e) => e.location).join(', ')})` : store.executor.location);

  offlineOptions(
    program
      .command('backfill')
      .description('load an event file (Parquet, CSV, NDJSON) into the offline store; loading a file twice is a no-op')
      .requiredOption('--definitions <path>', 'definitions module')
      .requiredOption('--from <file>', 'event file: .parquet, .csv or .ndjson')
      .option('--source <name>', "source the file's rows belong to (default: the only source)"),
  ).action(async (opts: ClickHouseConnectionFlags & ClickHouseShardFlags & { definitions: string; from: string; source?: string; clickhouseUrl?: string; dataDir: string }) => {
    const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
    const source = opts.source ?? soleSource(compiled.registry);
    const store = await openOffline(compiled, opts);
    try {
      const result = await store.loadEvents(source, opts.from);
      if (result.alreadyLoaded) console.log(`${opts.from} was already loaded into ${storeLocation(store)} (${result.events.toLocaleString('en-US')} events): nothing to do`);
      else {
        console.log(`loaded ${result.events.toLocaleString('en-US')} events of source ${source} from ${opts.from} into ${storeLocation(store)} in ${result.seconds.toFixed(2)} s`);
        if (result.badEvents > 0) console.log(`${result.badEvents.toLocaleString('en-US')} bad rows went to the table tm_dead_letters (load id ${result.loadId})`);
      }
    } finally {
      await store.close();
    }
  });

  offlineOptions(
    program
      .command('dataset')
      .description('write a point-in-time training dataset for a spine file, or (--from-log) a dataset of the values served (.parquet, .arrow, .csv or .ndjson output)')
      .requiredOption('--definitions <path>', 'definitions module')
      .option('--spine <file>', 'spine: join key columns, ts (epoch ms or ISO-8601) and passthrough columns; with --from-log: labels, a request_id column and label columns, joined by request id')
      .option('--features <list>', 'comma-separated view:feature references (with --from-log: default every logged feature)')
      .option('--from-log', 'the values served and logged (serve --log-features): request_id, ts (the read time), the join keys, one <view>__<feature> column per logged feature')
      .requiredOption('--out <file>', 'output file; its extension names the format'),
  ).action(async (opts: ClickHouseConnectionFlags & ClickHouseShardFlags & { definitions: string; spine?: string; features?: string; fromLog?: boolean; out: string; clickhouseUrl?: string; dataDir: string }) => {
    if (!opts.fromLog && (opts.spine === undefined || opts.features === undefined)) throw new InvalidArgumentError(`dataset needs --spine <file> and --features <list> (or --from-log); missing: ${[opts.spine === undefined ? '--spine' : null, opts.features === undefined ? '--features' : null].filter(Boolean).join(', ')}`);
    const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
    const store = await openOffline(compiled, opts);
    try {
      const features = opts.features?.split(',').map((f) => f.trim()).filter(Boolean);
      const result = opts.fromLog
        ? await writeLogDataset(store.executor, opts.out, { ...(opts.spine !== undefined ? { spine: opts.spine } : {}), ...(features !== undefined ? { features } : {}) })
        : await store.writeDataset(opts.spine!, features!, opts.out);
      console.log(`wrote ${result.rows.toLocaleString('en-US')} rows x ${result.columns.length} columns to ${opts.out}${opts.fromLog ? ' from the feature log' : ''} in ${result.seconds.toFixed(2)} s`);
      console.log(`columns: ${result.columns.join(', ')}`);
    } finally {
      await store.close();
    }
  });
  offlineOptions(kafkaConnectionFlags(
    program
      .command('offline-sink')
      .description("append the sources' Kafka topics to the offline store, effectively once (its own consumer group)")
      .requiredOption('--definitions <path>', 'definitions module')
      .option('--kafka-brokers <list>', 'Kafka bootstrap servers, comma-separated (default: $KAFKA_BROKERS)', process.env.KAFKA_BROKERS)
      .option('--group <id>', 'consumer group', 'tidemark-offline')
      .option('--feature-log', 'also append the feature log, topic <prefix>.feature_log (serve --log-features), to tm_feature_log_records and tm_prediction_log')
      .option('--prefix <prefix>', 'the prefix of the feature-log topic (as serve --prefix)', 'tm')),
  ).action(async (opts: ClickHouseConnectionFlags & ClickHouseShardFlags & KafkaConnectionFlags & { definitions: string; kafkaBrokers?: string; group: string; clickhouseUrl?: string; dataDir: string; featureLog?: boolean; prefix: string }) => {
    if (!opts.kafkaBrokers) throw new InvalidArgumentError('name the Kafka brokers with --kafka-brokers or KAFKA_BROKERS');
    const security = kafkaSecurityOf(opts);
    const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
    const store = await openOffline(compiled, opts);
    const logTopic = opts.featureLog ? featureLogTopic(opts.prefix) : null;
    const sink = new OfflineKafkaSink(store.shards ?? store.executor, compiled, { brokers: opts.kafkaBrokers.split(','), groupId: opts.group, security, ...(logTopic !== null ? { featureLogTopic: logTopic } : {}) });
    await sink.start();
    console.log(`offline sink: group ${opts.group} appending ${[...compiled.registry.sources.map((s) => s.topic), ...(logTopic !== null ? [logTopic] : [])].join(', ')} to ${storeLocation(store)} (Kafka: ${describeKafkaSecurity(security)}; Ctrl-C to stop)`);
    const stop = async (): Promise<void> => {
      await sink.stop();
      await store.close();
      console.log(`offline sink stopped: ${sink.stats.events} events, ${sink.stats.badEvents} dead letters, ${sink.stats.redelivered} redelivered records dropped${logTopic !== null ? `, ${sink.stats.logRecords} feature-log records, ${sink.stats.badLogRecords} bad ones dead-lettered` : ''}`);
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  addStreamCommands(program);
  addPlanCommand(program);
  addVersionCommands(program);
  addMonitorCommand(program);
  hideSecretsInHelp(program);
  return program;
}

function soleSource(registry: Registry): string {
  if (registry.sources.length === 1) return registry.sources[0]!.name;
  throw new InvalidArgumentError(`the definitions have ${registry.sources.length} sources (${registry.sources.map((s) => s.name).join(', ')}): name one with --source`);
}

export async function main(argv: string[]): Promise<void> {
  hideSecretsInProcessTitle(argv);
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    if (e instanceof TidemarkError) console.error(`${e.code}: ${e.message}`);
    else console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 1;
  }
}

// ---------------------------------------------------------------------------------------------
// The stream path: `materialize` (Kafka consumer group -> Redis) and `serve` (online reads from
// Redis, and POST /push/:source to Kafka).

const KAFKA_BROKERS_DEFAULT = 'localhost:9092';
/** Store errors a materializer waits out, unhealthy, until an operator repairs the store. */
const NOT_READY = new Set(['TM_STORE_NEEDS_BOOTSTRAP', 'TM_STORE_STATE_LOST']);

function brokerList(text: string): string[] {
  const brokers = text.split(',').map((b) => b.trim()).filter((b) => b.length > 0);
  if (brokers.length === 0) throw new InvalidArgumentError('--kafka-brokers is empty: give host:port[,host:port...]');
  return brokers;
}

/** --log-features: a sample rate from 0 to 1. */
function sampleRate(text: string): number {
  const rate = Number(text);
  if (text.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) throw new InvalidArgumentError(`--log-features takes a sample rate from 0 to 1 (1: every read), got ${text}`);
  return rate;
}

function parseClock(text: string): StoreClock {
  if (text !== 'wall' && text !== 'watermark') throw new InvalidArgumentError(`--clock must be wall or watermark, got ${text}`);
  return text;
}

/** Structured log lines (JSON) on stderr. */
const jsonLog: MaterializerLog = (level, message, details) => {
  console.error(JSON.stringify({ time: new Date().toISOString(), level, message, ...details }));
};

/** Log a Redis connection error once per outage (ioredis emits one per reconnect attempt), coded, without the password. */
function logRedisErrors(client: { on(event: 'error' | 'ready', listener: (e?: Error) => void): unknown }, url: string, password: string | undefined): void {
  let reported = false;
  client.on('error', (e) => {
    const failure = redisConnectionError(e, url, [password]);
    if (!reported) jsonLog('error', `Redis connection error (retrying): ${failure.message}`, { code: failure.code });
    reported = true;
  });
  client.on('ready', () => {
    if (reported) jsonLog('info', 'Redis connection ready again');
    reported = false;
  });
}

function addStreamCommands(program: Command): void {
  kafkaConnectionFlags(redisConnectionFlags(authOptions(program
    .command('materialize')
    .description("join a Kafka consumer group and materialize the sources' topics into Redis, effectively once; serves /healthz and /metrics")
    .requiredOption('--definitions <path>', 'definitions module')
    .option('--kafka-brokers <list>', `Kafka bootstrap servers, comma-separated (default: $KAFKA_BROKERS, else ${KAFKA_BROKERS_DEFAULT})`, process.env.KAFKA_BROKERS ?? KAFKA_BROKERS_DEFAULT)
    .option('--redis-url <url>', `online store: redis://host:port, rediss://host:port (TLS), redis-cluster://host:port,... or rediss-cluster://... (default: $REDIS_URL, else ${REDIS_URL_DEFAULT})`, process.env.REDIS_URL ?? REDIS_URL_DEFAULT)
    .option('--group <id>', 'Kafka consumer group; materializers of one group share the partitions', 'tidemark-materializer')
    .option('--prefix <prefix>', 'Redis key prefix (namespace) of the online store', 'tm')
    .option('--port <port>', 'HTTP port of /healthz and /metrics (0: any free port)', positiveInt('--port'), 9464)
    .option('--host <host>', 'HTTP host', '127.0.0.1')
    .option('--session-timeout <ms>', 'consumer group session timeout', positiveInt('--session-timeout'), 30_000)
    .option('--shutdown-grace <ms>', 'on SIGTERM, how long to keep retrying the in-flight batch before giving it up', positiveInt('--shutdown-grace'), 30_000)
    .option('--fetch-max-bytes <bytes>', 'most bytes fetched per partition at once: bigger batches write fewer key updates per event', positiveInt('--fetch-max-bytes'), 1024 * 1024))))
    .action(async (opts: { definitions: string; kafkaBrokers: string; redisUrl: string; group: string; prefix: string; port: number; host: string; sessionTimeout: number; shutdownGrace: number; fetchMaxBytes: number } & AuthFlags & RedisConnectionFlags & KafkaConnectionFlags) => {
      const auth = authConfigFrom(opts);
      const redis = redisConnectionOf(opts);
      const kafka = kafkaSecurityOf(opts);
      const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
      const store = connectRedisOnlineStore(compiled.registry, opts.redisUrl, { prefix: opts.prefix, requireReadyVersions: true }, redis);
      logRedisErrors(store.client, opts.redisUrl, redis.password);
      // Every view version must be ready, and a bootstrapped one continues after its offsets
      // (api/materialize-start.ts). A store that is not ready keeps /healthz up, answering 503
      // with the code and the repair command, instead of writing partial windows.
      let blocked: TidemarkError | null = null;
      let rewind = new Map<string, number>();
      try {
        const start = await prepareMaterializerStart({ client: store.client, prefix: opts.prefix, registry: compiled.registry, brokers: brokerList(opts.kafkaBrokers), security: kafka, groupId: opts.group, log: (m, d) => jsonLog('info', m, d) });
        if (start.claimed.length > 0) jsonLog('info', 'new consumer group: the views are built from the beginning of the topics', { claimed: start.claimed });
        rewind = start.rewind;
      } catch (e) {
        if (!(e instanceof TidemarkError) || !NOT_READY.has(e.code)) throw e;
        blocked = e;
      }
      if (blocked) {
        const report = { status: 'degraded', code: blocked.code, problems: [`${blocked.code}: ${blocked.message}`], registryVersion: compiled.registry.version };
        const server = Fastify();
        // The same tokens as the materializer's own server (/healthz needs metrics:read under --protect-metrics).
        installAuth(server, auth);
        server.get('/healthz', async (_q, reply) => reply.status(503).send(report));
        const address = await server.listen({ port: opts.port, host: opts.host });
        jsonLog('error', `not materializing: ${blocked.message}`, { code: blocked.code, healthz: `${address}/healthz` });
        const stop = async (): Promise<void> => {
          await server.close().catch(() => undefined);
          await store.close().catch(() => undefined);
          process.exit(1);
        };
        process.once('SIGTERM', () => void stop());
        process.once('SIGINT', () => void stop());
        return;
      }
      const materializer = new Materializer({
        compiled,
        brokers: brokerList(opts.kafkaBrokers),
        security: kafka,
        groupId: opts.group,
        store,
        storeReady: () => store.client.status === 'ready',
        sessionTimeoutMs: opts.sessionTimeout,
        heartbeatIntervalMs: Math.max(100, Math.min(3_000, Math.floor(opts.sessionTimeout / 10))),
        shutdownGraceMs: opts.shutdownGrace,
        maxBytesPerPartition: opts.fetchMaxBytes,
        log: jsonLog,
        ...(rewind.size > 0 ? { rewind: { targets: rewind, onRewound: (topic, partition) => recordRewound(store.client, opts.prefix, compiled.registry, rewind, topic, partition) } } : {}),
      });
      const server = await buildMaterializerServer(materializer, async () => {
        const watermarkMs = await store.watermarkMs();
        return { registryVersion: compiled.registry.version, watermark: watermarkMs === null ? null : new Date(watermarkMs).toISOString() };
      }, (app) => installAuth(app, auth));
      const address = await server.listen({ port: opts.port, host: opts.host });
      let exiting = false;
      const exit = async (code: number): Promise<void> => {
        await server.close().catch(() => undefined);
        await store.close().catch(() => undefined);
        process.exit(code);
      };
      const shutdown = async (signal: string): Promise<void> => {
        if (exiting) return;
        exiting = true;
        jsonLog('info', `${signal}: finishing the in-flight batches, committing, leaving the group`);
        const clean = await materializer.stop();
        jsonLog(clean ? 'info' : 'error', clean ? 'stopped cleanly' : 'stopped, but a batch was given up uncommitted (it is redelivered and deduplicated on the next start)', { ...materializer.stats() });
        await exit(clean ? 0 : 1);
      };
      process.once('SIGTERM', () => void shutdown('SIGTERM'));
      process.once('SIGINT', () => void shutdown('SIGINT'));
      materializer.done.catch(async (e: unknown) => {
        if (exiting) return;
        if (e instanceof TidemarkError && NOT_READY.has(e.code)) {
          // The store lost its state under us (or the version was reset): stop writing, stay up and unhealthy.
          jsonLog('error', `stopped writing: ${e.message}`, { code: e.code });
          return;
        }
        exiting = true;
        jsonLog('error', 'the Kafka consumer failed for good; exiting', { error: e instanceof Error ? e.message : String(e) });
        await materializer.stop();
        await exit(1);
      });
      try {
        await materializer.start();
      } catch (e) {
        exiting = true;
        await materializer.stop();
        await server.close().catch(() => undefined);
        await store.close().catch(() => undefined);
        throw e;
      }
      console.log(`materializing topics ${materializer.topics.join(', ')} (group ${opts.group}, Kafka: ${describeKafkaSecurity(kafka)}) into ${withoutPassword(opts.redisUrl)} prefix ${opts.prefix}`);
      console.log(`health and metrics on ${address}/healthz and ${address}/metrics`);
    });

  clickhouseShardFlags(clickhouseConnectionFlags(kafkaConnectionFlags(redisConnectionFlags(apiSecurityOptions(program
    .command('serve')
    .description('serve POST /get-online-features from the Redis online store, POST /push/:source to Kafka when brokers are given, and the dataset, monitor and consistency routes when an offline store is given')
    .requiredOption('--definitions <path>', 'definitions module')
    .option('--redis-url <url>', `online store: redis://, rediss:// (TLS), redis-cluster:// or rediss-cluster:// (default: $REDIS_URL, else ${REDIS_URL_DEFAULT})`, process.env.REDIS_URL ?? REDIS_URL_DEFAULT)
    .option('--prefix <prefix>', 'Redis key prefix (namespace) of the online store', 'tm')
    .option('--clock <clock>', 'read time when a request names none: wall, or watermark (greatest materialized event time + 1 ms)', parseClock, 'wall' as StoreClock)
    .option('--kafka-brokers <list>', 'Kafka for POST /push/:source (default: $KAFKA_BROKERS; without it, no push endpoint)', process.env.KAFKA_BROKERS)
    .option('--clickhouse-url <url>', 'offline store for POST /datasets/historical, /monitor/*, /alerts and POST /consistency/sample: a ClickHouse server HTTP(S) URL (default: $CLICKHOUSE_URL)', process.env.CLICKHOUSE_URL)
    .option('--data-dir <dir>', 'offline store: a chDB folder (as backfill and quickstart write it) instead of a ClickHouse server')
    .option('--materializer-metrics-url <url>', "a materializer's Prometheus endpoint (e.g. http://127.0.0.1:9464/metrics), scraped by GET /status/materializer")
    .option('--alertmanager-url <url>', "Alertmanager's web address (e.g. http://alertmanager:9093): the dashboard's alert pages link to it for silences and status")
    .option('--log-features <rate>', 'log this fraction (0 to 1) of the get-online-features reads, and POST /feature-log/predictions: to Kafka topic <prefix>.feature_log with --kafka-brokers, else to the offline store', sampleRate)
    .option('--port <port>', 'HTTP port (0: any free port)', positiveInt('--port'), Number(process.env.PORT ?? 8080))
    .option('--host <host>', 'HTTP host', '127.0.0.1'))))))
    .action(async (opts: { definitions: string; redisUrl: string; prefix: string; clock: StoreClock; kafkaBrokers?: string; clickhouseUrl?: string; dataDir?: string; materializerMetricsUrl?: string;
        alertmanagerUrl?: string; port: number; host: string; logFeatures?: number } & RedisConnectionFlags & KafkaConnectionFlags & ClickHouseConnectionFlags & ClickHouseShardFlags) => {
      const security = serverSecurity(opts);
      const redis = redisConnectionOf(opts);
      const kafka = kafkaSecurityOf(opts);
      const compiled = compileOrThrow((await loadDefinitions(opts.definitions)).module);
      // Opened first: a bad URL, password or folder fails before Redis is connected.
      // An empty CLICKHOUSE_URL means none (it would otherwise open chDB in the working directory).
      const clickhouseUrl = opts.clickhouseUrl === '' ? undefined : opts.clickhouseUrl;
      // --clickhouse-shards (or $CLICKHOUSE_SHARDS): a sharded offline store; with --clickhouse-url given as a flag, an error.
      const sharded = clickhouseShardsOf({ ...opts, clickhouseUrl });
      if (sharded.clickhouseShards && opts.dataDir !== undefined) throw new InvalidArgumentError('give --data-dir (chDB) or --clickhouse-shards (a sharded store), not both');
      if (opts.logFeatures !== undefined && !opts.kafkaBrokers && clickhouseUrl === undefined && opts.dataDir === undefined && !sharded.clickhouseShards) {
        throw new InvalidArgumentError('--log-features needs a destination: --kafka-brokers (topic <prefix>.feature_log) or an offline store (--clickhouse-url, --clickhouse-shards or --data-dir)');
      }
      const offline = sharded.clickhouseShards
        ? await OfflineStore.open(compiled, { ...sharded, clickhouse: clickhouseConnectionOf(opts) })
        : clickhouseUrl !== undefined || opts.dataDir !== undefined ? await OfflineStore.open(compiled, { clickhouseUrl, clickhouse: clickhouseConnectionOf(opts), dataDir: opts.dataDir }) : null;
      // Reads of a view version that is not bootstrapped answer 503 TM_STORE_NEEDS_BOOTSTRAP.
      const store = connectRedisOnlineStore(compiled.registry, opts.redisUrl, { prefix: opts.prefix, requireReadyVersions: true }, redis);
      logRedisErrors(store.client, opts.redisUrl, redis.password);
      const service = new OnlineFeatureService(compiled.registry, store, opts.clock);
      const metricsUrl = opts.materializerMetricsUrl;
      let featureLog: FeatureLogQueue | null = null;
      if (opts.logFeatures !== undefined) {
        const sink = opts.kafkaBrokers ? new KafkaFeatureLogSink(featureLogTopic(opts.prefix), { brokers: brokerList(opts.kafkaBrokers), security: kafka }) : new OfflineFeatureLogSink(offline!.executor);
        featureLog = new FeatureLogQueue(sink, { sampleRate: opts.logFeatures, log: jsonLog });
      }
      const app = await buildServer({
        service,
        health: () => ({ status: store.client.status === 'ready' ? 'ok' : 'degraded', redis: store.client.status }),
        registryHistory: async () => (await readStoredRegistryState(store.client, opts.prefix)).history,
        // The definitions may define monitors too (examples/flights/monitor.ts): their plans reach the monitor routes.
        ...(offline ? { offline, monitors: compiled } : {}),
        ...(metricsUrl ? { materializerStatus: () => scrapeMaterializerMetrics(metricsUrl) } : {}),
        ...(opts.alertmanagerUrl ? { alertmanagerUrl: opts.alertmanagerUrl } : {}),
        ...(featureLog ? { featureLog } : {}),
        ...security,
      });
      const producer = opts.kafkaBrokers ? createKafkaClient(brokerList(opts.kafkaBrokers), 'tidemark-push', jsonLog, undefined, kafka).producer({ createPartitioner: Partitioners.DefaultPartitioner }) : null;
      if (producer) {
        await producer.connect();
        await app.register(pushRoutes, { compiled, producer, limits: security.limits, log: jsonLog });
      }
      warnIfOpen(opts.host, security);
      const address = await app.listen({ port: opts.port, host: opts.host });
      if (featureLog) console.log(`feature log: ${featureLog.sampleRate * 100}% of reads to ${withoutPassword(featureLog.sink.destination)}; drops counted on ${address}/metrics`);
      console.log(`serving online features from ${withoutPassword(opts.redisUrl)} prefix ${opts.prefix} (clock: ${opts.clock})${producer ? `, push to Kafka ${opts.kafkaBrokers} (${describeKafkaSecurity(kafka)})` : ''}${offline ? (offline.shards ? `, datasets and monitors from ${offline.shards.count} shards (${offline.shards.executors.map((e) => withoutPassword(e.location)).join(', ')})` : `, datasets and monitors from ${withoutPassword(offline.executor.location)}`) : ''} on ${address}`);
      console.log(`dashboard: ${address}/ui/`);
      const stop = async (): Promise<void> => {
        await app.close().catch(() => undefined);
        await producer?.disconnect().catch(() => undefined);
        await featureLog?.close().catch(() => undefined);
        await offline?.close().catch(() => undefined);
        await store.close().catch(() => undefined);
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
    });
}

// ---------------------------------------------------------------------------------------------
// `plan`: what the definitions would change in the stores (read only). Exit 0: no changes, 2:
// changes, 1: an error (Terraform's -detailed-exitcode convention).

function addPlanCommand(program: Command): void {
  clickhouseConnectionFlags(redisConnectionFlags(program
    .command('plan')
    .description('compare the definitions with what the online store (and the offline store, when given) holds; exit 0: no changes, 2: changes, 1: error')
    .requiredOption('--definitions <path>', 'definitions module')
    .option('--store <kind>', 'online store: redis, or memory (the embedded store, which records nothing between runs)', 'redis')
    .option('--redis-url <url>', `Redis online store (default: $REDIS_URL, else ${REDIS_URL_DEFAULT})`, process.env.REDIS_URL ?? REDIS_URL_DEFAULT)
    .option('--prefix <prefix>', 'Redis key prefix (namespace) of the online store', 'tm')
    .option('--timeout <ms>', 'how long to wait for Redis before TM_STORE_UNREACHABLE', positiveInt('--timeout'), 5_000)
    .option('--views <list>', 'comma-separated views to plan (default: every view defined or stored)')
    .option('--clickhouse-url <url>', 'offline store: ClickHouse server HTTP URL (default: $CLICKHOUSE_URL)', process.env.CLICKHOUSE_URL)
    .option('--data-dir <dir>', 'offline store: chDB folder (as backfill and quickstart use; read only, never created)')
    .option('--json', 'print the plan (or the error) as JSON')))
    .action(async (opts: RedisConnectionFlags & ClickHouseConnectionFlags & { definitions: string; store: string; redisUrl: string; prefix: string; timeout: number; views?: string; clickhouseUrl?: string; dataDir?: string; json?: boolean }) => {
      const fail = (error: { code: string; message: string; [k: string]: unknown }, lines: string[]): void => {
        if (opts.json) console.log(JSON.stringify({ error }, null, 2));
        else for (const line of lines) console.error(line);
        process.exitCode = 1;
      };
      try {
        if (opts.store !== 'redis' && opts.store !== 'memory') throw new TidemarkError('TM_STORE_BAD_CONFIG', `--store must be redis or memory, got ${opts.store}`, { store: opts.store });
        const { path, module } = await loadDefinitions(opts.definitions);
        const result = compile(module);
        if (!result.ok) {
          const message = `${path}: ${result.errors.length} definition error(s); nothing was compared and no store was touched`;
          fail({ code: result.errors[0]!.code, message, path, errors: result.errors }, [message, ...result.errors.map(formatDefinitionError)]);
          return;
        }
        const { registry } = result.compiled;
        const stored = opts.store === 'redis' ? await readRedisState(opts.redisUrl, opts.prefix, opts.timeout, redisConnectionOf(opts)) : null;
        let views: string[] | undefined;
        if (opts.views !== undefined) {
          views = opts.views.split(',').map((v) => v.trim()).filter((v) => v.length > 0);
          const known = new Set([...registry.views.map((v) => v.name), ...Object.keys(stored?.layouts ?? {}), ...Object.keys(stored?.snapshots ?? {})]);
          const unknown = views.filter((v) => !known.has(v));
          if (unknown.length > 0 || views.length === 0) {
            throw new TidemarkError('TM_PLAN_UNKNOWN_VIEW', views.length === 0 ? '--views names no view' : `--views names ${unknown.join(', ')}, which ${unknown.length === 1 ? 'is' : 'are'} neither defined nor in the store; valid views: ${[...known].sort().join(', ')}`, { unknown, validViews: [...known].sort() });
          }
        }
        const wantsOffline = opts.clickhouseUrl !== undefined || opts.dataDir !== undefined;
        const offline = wantsOffline ? await readOfflineEvents(registry, { clickhouseUrl: opts.clickhouseUrl, clickhouse: clickhouseConnectionOf(opts), dataDir: opts.dataDir }) : null;
        const plan = computePlan({
          registry,
          definitionsPath: path,
          stored,
          redis: opts.store === 'redis' ? { url: opts.redisUrl, prefix: opts.prefix } : undefined,
          offline,
          offlineNote: wantsOffline ? `no offline store in ${opts.dataDir ?? '.tidemark'} (no chdb folder there)` : undefined,
          views,
        });
        if (opts.json) console.log(JSON.stringify(plan, null, 2));
        else for (const line of formatPlan(plan)) console.log(line);
        process.exitCode = plan.exitCode;
      } catch (e) {
        if (e instanceof TidemarkError) fail({ ...e.toJSON(), code: e.code, message: e.message }, [`${e.code}: ${e.message}`]);
        else throw e;
      }
    });
}
