// `tidemark apply` and `tidemark bootstrap`: record a registry in the Redis online store, and build
// the tiles of the view versions it created from the offline store (api/apply.ts, api/bootstrap.ts).
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { REDIS_URL_DEFAULT, wholeNumber } from './cli-args.js';
import { compile, formatDefinitionError, loadDefinitions, TidemarkError, withoutPassword, type Registry, type ViewPlan } from '../definitions/index.js';
import { connectRedisOnlineStore, readStoredRegistryState, viewNamespace, type RedisOnlineStore } from '../online/index.js';
import { ChdbExecutor } from '../offline/chdb.js';
import { ClickHouseExecutor } from '../offline/clickhouse.js';
import type { OfflineExecutor } from '../offline/index.js';
import { applyRegistry } from './apply.js';
import { bootstrapView, type ViewBootstrapReport } from './bootstrap.js';
import { computePlan, formatPlan, readOfflineEvents, readRedisState } from './plan.js';
import { clickhouseConnectionFlags, clickhouseConnectionOf, redisConnectionFlags, redisConnectionOf, type ClickHouseConnectionFlags, type RedisConnectionFlags } from './connections.js';


interface StoreOptions extends RedisConnectionFlags {
  definitions: string;
  redisUrl: string;
  prefix: string;
  timeout: number;
  json?: boolean;
}


function storeOptions(command: Command): Command {
  return redisConnectionFlags(command
    .requiredOption('--definitions <path>', 'definitions module')
    .option('--redis-url <url>', `Redis online store: redis://host:port, rediss://host:port (TLS), redis-cluster://host:port,... or rediss-cluster://... (default: $REDIS_URL, else ${REDIS_URL_DEFAULT})`, process.env.REDIS_URL ?? REDIS_URL_DEFAULT))
    .option('--prefix <prefix>', 'Redis key prefix (namespace) of the online store', 'tm')
    .option('--timeout <ms>', 'how long to wait for Redis before TM_STORE_UNREACHABLE', wholeNumber('--timeout', 1), 5_000)
    .option('--json', 'print the result (or the error) as JSON');
}

/** Compile, or fail with every definition error and touch no store. */
async function compiledRegistry(definitions: string): Promise<{ path: string; registry: Registry }> {
  const { path, module } = await loadDefinitions(definitions);
  const result = compile(module);
  if (!result.ok) {
    throw new TidemarkError(result.errors[0]!.code, `${path}: ${result.errors.length} definition error(s); no store was touched\n${result.errors.map(formatDefinitionError).join('\n')}`, { path, errors: result.errors });
  }
  return { path, registry: result.compiled.registry };
}

/** Run a command body; a coded error prints (as JSON with --json) and exits 1. */
async function run(json: boolean | undefined, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (!(e instanceof TidemarkError)) throw e;
    if (json) console.log(JSON.stringify({ error: { ...e.toJSON(), code: e.code, message: e.message } }, null, 2));
    else console.error(`${e.code}: ${e.message}`);
    process.exitCode = 1;
  }
}

/** The views `--views` names, each defined (else TM_PLAN_UNKNOWN_VIEW). */
function namedViews(registry: Registry, list: string | undefined): ViewPlan[] | null {
  if (list === undefined) return null;
  const names = list.split(',').map((v) => v.trim()).filter((v) => v.length > 0);
  const unknown = names.filter((n) => !registry.views.some((v) => v.name === n));
  if (unknown.length > 0 || names.length === 0) {
    const valid = registry.views.map((v) => v.name).sort();
    throw new TidemarkError('TM_PLAN_UNKNOWN_VIEW', names.length === 0 ? '--views names no view' : `--views names ${unknown.join(', ')}, not defined in these definitions; valid views: ${valid.join(', ')}`, { unknown, validViews: valid });
  }
  return registry.views.filter((v) => names.includes(v.name));
}

function offlineExecutor(opts: { clickhouseUrl?: string; dataDir: string } & ClickHouseConnectionFlags): OfflineExecutor {
  return opts.clickhouseUrl ? new ClickHouseExecutor(opts.clickhouseUrl, clickhouseConnectionOf(opts)) : new ChdbExecutor(opts.dataDir);
}

export function addVersionCommands(program: Command): void {
  storeOptions(program.command('apply'))
    .description('record these definitions in the online store: a new or changed view gets a new version (pending until tidemark bootstrap), old versions keep serving')
    .option('--prune', 'delete the keys of versions these definitions do not use (SCAN in batches, never KEYS)')
    .option('--scan-count <n>', 'keys per SCAN batch when pruning', wholeNumber('--scan-count', 1), 500)
    .action(async (opts: StoreOptions & { prune?: boolean; scanCount: number }) =>
      run(opts.json, async () => {
        const { path, registry } = await compiledRegistry(opts.definitions);
        const connection = redisConnectionOf(opts);
        // Fails with TM_STORE_UNREACHABLE (or TM_STORE_TLS, TM_STORE_AUTH) before anything is written.
        const stored = await readRedisState(opts.redisUrl, opts.prefix, opts.timeout, connection);
        const plan = computePlan({ registry, definitionsPath: path, stored, redis: { url: opts.redisUrl, prefix: opts.prefix }, offline: null });
        const store = connectRedisOnlineStore(registry, opts.redisUrl, { prefix: opts.prefix }, connection);
        try {
          const outcome = await applyRegistry(store.client, opts.prefix, registry, plan, { definitions: path, prune: opts.prune, scanCount: opts.scanCount });
          if (opts.json) {
            console.log(JSON.stringify({ plan, apply: outcome }, null, 2));
            return;
          }
          for (const line of formatPlan(plan)) console.log(line);
          console.log('');
          console.log(outcome.entry ? `applied registry ${registry.version} as version ${outcome.entry.version} to ${withoutPassword(opts.redisUrl)} prefix ${opts.prefix}` : `registry ${registry.version} is already the latest applied; nothing recorded`);
          for (const view of outcome.pending) console.log(`  ${view}: version ${viewNamespace(registry.views.find((v) => v.name === view)!)} pending: run tidemark bootstrap --definitions ${opts.definitions} --views ${view}`);
          for (const e of outcome.existing) console.log(`  ${e.view}: version ${e.namespace} ${e.status}`);
          for (const view of outcome.removed) console.log(`  ${view}: removed from the registry; its keys stay until apply --prune`);
          if (outcome.pruned) console.log(`pruned ${outcome.pruned.namespaces.length} version(s) (${outcome.pruned.namespaces.join(', ') || 'none'}): ${outcome.pruned.keysDeleted} keys deleted`);
        } finally {
          store.client.disconnect();
        }
      }),
    );

  clickhouseConnectionFlags(storeOptions(program.command('bootstrap')))
    .description('build the tiles of view versions from the offline store and write them to the online store (default: every applied version not ready yet); resumable')
    .option('--views <list>', 'comma-separated views to bootstrap')
    .option('--force', 'rebuild versions that are ready already')
    .option('--clickhouse-url <url>', 'offline store: ClickHouse server HTTP URL (default: $CLICKHOUSE_URL, else chDB in --data-dir)', process.env.CLICKHOUSE_URL)
    .option('--data-dir <dir>', 'offline store: chDB folder', '.tidemark')
    .option('--batch-keys <n>', 'entity keys built and written per batch (bounds memory)', wholeNumber('--batch-keys', 1), 2_000)
    .option('--no-progress', 'no progress bar')
    .action(async (opts: StoreOptions & ClickHouseConnectionFlags & { views?: string; force?: boolean; clickhouseUrl?: string; dataDir: string; batchKeys: number; progress: boolean }) =>
      run(opts.json, async () => {
        const { registry } = await compiledRegistry(opts.definitions);
        const named = namedViews(registry, opts.views);
        const connection = redisConnectionOf(opts);
        const stored = await readRedisState(opts.redisUrl, opts.prefix, opts.timeout, connection);
        const views = named ?? registry.views.filter((v) => stored.statuses[viewNamespace(v)] !== 'ready');
        const unapplied = views.filter((v) => stored.statuses[viewNamespace(v)] === undefined);
        if (unapplied.length > 0) {
          throw new TidemarkError('TM_APPLY_NOT_APPLIED', `${unapplied.map((v) => `${v.name} (version ${viewNamespace(v)})`).join(', ')} ${unapplied.length === 1 ? 'is' : 'are'} not applied to Redis prefix ${opts.prefix}; run tidemark apply --definitions ${opts.definitions} first. Nothing was written.`, { views: unapplied.map((v) => v.name) });
        }
        if (views.length === 0) {
          if (opts.json) console.log(JSON.stringify({ views: [] }, null, 2));
          else console.log('every view version is ready: nothing to bootstrap');
          return;
        }
        const executor = offlineExecutor(opts);
        const store: RedisOnlineStore = connectRedisOnlineStore(registry, opts.redisUrl, { prefix: opts.prefix }, connection);
        const bar = opts.progress && !opts.json ? new SingleBar({ format: ' {view} [{bar}] {percentage}% | {value}/{total} keys | {eta_formatted} left', hideCursor: true }, Presets.shades_classic) : null;
        const reports: ViewBootstrapReport[] = [];
        try {
          for (const view of views) {
            let started = false;
            const report = await bootstrapView(view, { kind: 'redis', store }, {
              executor,
              registry,
              batchKeys: opts.batchKeys,
              force: opts.force,
              onProgress: (name, done, total) => {
                if (!bar) return;
                if (!started) bar.start(total, done, { view: name });
                else bar.update(done);
                started = true;
              },
            });
            if (started) bar?.stop();
            reports.push(report);
            if (!opts.json) console.log(formatBootstrap(report));
          }
          if (opts.json) console.log(JSON.stringify({ views: reports }, null, 2));
          else console.log('materializers of these definitions continue after the offsets above when they next start (restart them now)');
        } finally {
          bar?.stop();
          store.client.disconnect();
          await executor.close();
        }
      }),
    );
}

export function formatBootstrap(r: ViewBootstrapReport): string {
  if (r.outcome === 'skipped') return `${r.view}: version ${r.namespace} is ready already (use --force to rebuild it)`;
  const offsets = Object.entries(r.offsets)
    .map(([source, parts]) => `${source} ${Object.entries(parts).map(([p, o]) => `p${p}<=${o}`).join(' ') || '(no stream rows)'}`)
    .join('; ');
  const cut = r.fileCutMs === null ? 'all file rows' : `file rows before ${new Date(r.fileCutMs).toISOString()} (${r.fileRowsLeftOut} left out)`;
  const rate = r.seconds > 0 ? `, ${Math.round(r.keys / r.seconds)} keys/s, ${Math.round(r.tiles / r.seconds)} tiles/s` : '';
  return `${r.view}: version ${r.namespace} ready${r.outcome === 'resumed' ? ' (resumed)' : ''}: ${r.keys} keys, ${r.tiles} tiles from ${r.events} events in ${r.seconds.toFixed(1)} s${rate}; offsets ${offsets}; ${cut}`;
}
