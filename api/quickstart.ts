// The embedded main job: the flights file into the offline store (chDB: ClickHouse's own Parquet
// reader, rows it cannot prove valid through the decoder) and the in-memory store built from it by
// the bootstrap's code; or, with --replay, --verify, --limit or a file that reader cannot take, the
// file replayed through the materializer core (watermark clock). Then a summary and a sample read,
// and the HTTP API. No servers.
import { SingleBar, Presets } from 'cli-progress';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import {
  compileOrThrow,
  entityKeyValues,
  loadDefinitions,
  referenceViewValues,
  TidemarkError,
  type CompiledDefinitions,
  type ReferenceEvent,
  type Registry,
  valuesAgree,
} from '../definitions/index.js';
import { DeadLetterFile, FeatureLogQueue, parquetRowCount, type FeatureLogQueueOptions, replayParquetFile, type BadEvent, type DecodedEvent, type ReplayStats } from '../ingest/index.js';
import { evaluateFeatures, MemoryOnlineStore, tileRangesFor, OnlineFeatureService, storeClockMs, viewNamespace, type OnlineFeaturesResponse, type RegistryHistoryEntry, type StoreStats } from '../online/index.js';
import { EventLoad, keepChdbMemory, OfflineFeatureLogSink, OfflineStore, type ClickHouseConnectionOptions, type LoadResult } from '../offline/index.js';
import { buildServer, type ServerOptions } from './server.js';
import { bootstrapView } from './bootstrap.js';
import type { ReplayReport } from './materializer-status.js';
import { planQuickstartMonitor, runQuickstartMonitor, type QuickstartMonitorResult } from './quickstart-monitor.js';

export interface QuickstartOptions {
  definitions: string;
  file: string;
  source?: string;
  limit?: number;
  port: number;
  host: string;
  serve: boolean;
  progress: boolean;
  /** Keep the events and check every key of every view against the reference implementation. */
  verify?: boolean;
  /** Also load the file into the offline store and show the matching offline value (default true). */
  offline?: boolean;
  /** A ClickHouse server for the offline store; absent: chDB in dataDir. */
  clickhouseUrl?: string;
  /** TLS and credentials for clickhouseUrl. */
  clickhouse?: ClickHouseConnectionOptions;
  dataDir: string;
  /** When the offline store already holds the file, rebuild the online store from it rather than replay the file (default true). */
  rebuild?: boolean;
  /** After the offline load, replay the flights monitor over Feb-Jun against January (default true). */
  monitor?: boolean;
  /**
   * When serving and the monitor has weeks to evaluate (a first run), serve first and evaluate them
   * in the background, printing the monitor's summary when done (default true).
   */
  backgroundMonitor?: boolean;
  log: (line: string) => void;
  /** Tokens, limits, CORS and headers of the served API; with tokens, the quickstart enforces them too. */
  security?: Pick<ServerOptions, 'auth' | 'limits' | 'corsOrigins' | 'securityHeaders'>;
  /** Log a sample of the served reads (and POST /feature-log/predictions) straight to the offline store (--log-features). */
  logFeatures?: { sampleRate: number; log?: FeatureLogQueueOptions['log'] };
}

export interface QuickstartResult {
  compiled: CompiledDefinitions;
  store: MemoryOnlineStore;
  service: OnlineFeatureService;
  replay: ReplayStats;
  stats: StoreStats;
  sample: OnlineFeaturesResponse | null;
  verification: Verification | null;
  offline: OfflineStore | null;
  offlineSample: Record<string, unknown>[] | null;
  monitor: QuickstartMonitorResult | null;
  /** The monitor evaluating in the background (serving, first run); its summary is printed when it settles. */
  monitorInBackground: Promise<QuickstartMonitorResult> | null;
  server: FastifyInstance | null;
  url: string | null;
  /** The feature log's queue when --log-features was given (close it after the server). */
  featureLog: FeatureLogQueue | null;
}

export async function runQuickstart(opts: QuickstartOptions): Promise<QuickstartResult> {
  const startedAtMs = Date.now();
  const { module } = await loadDefinitions(opts.definitions);
  const compiled = compileOrThrow(module);
  const { registry } = compiled;
  const sourceName = opts.source ?? (registry.sources.length === 1 ? registry.sources[0]!.name : undefined);
  if (!sourceName) throw new Error(`the definitions have ${registry.sources.length} sources: name the file's with --source`);
  const store = new MemoryOnlineStore(registry);
  const totalRows = Math.min(await parquetRowCount(opts.file), opts.limit ?? Number.POSITIVE_INFINITY);
  opts.log(`tidemark quickstart: registry ${registry.version}, ${registry.views.length} views; ${totalRows.toLocaleString('en-US')} rows of ${opts.file}`);

  const deadLetters = new DeadLetterFile(join(opts.dataDir, 'dead-letters'));
  const keptEvents = opts.verify ? new KeptEvents(registry.sources.find((s) => s.name === sourceName)!.views) : null;
  // The offline store loads the very events the replay decodes (one decode, the same events on both
  // paths); a file it already holds is not loaded again. With --limit it is left alone: it loads whole files.
  // The monitor's replay runs many queries a few seconds apart: chDB keeps its memory between them.
  if (opts.offline !== false && opts.monitor !== false) keepChdbMemory();
  const offline = opts.offline === false ? null : await OfflineStore.open(compiled, { clickhouseUrl: opts.clickhouseUrl, clickhouse: opts.clickhouse, dataDir: opts.dataDir });
  let offlineLoad = offline && opts.limit === undefined ? await offline.beginLoad(sourceName, opts.file) : null;
  // A file the offline store does not hold yet: ClickHouse's Parquet reader loads it, and the online
  // store is rebuilt from it below (the same values as a replay; docs/semantics.md, tests/e2e/flights-first-run).
  let sqlLoad: { seconds: number; decodedRows: number } | null = null;
  if (offlineLoad instanceof EventLoad && opts.rebuild !== false && !opts.verify) {
    const loaded = await offline!.loadParquetWithSql(sourceName, opts.file, { deadLetters });
    if (loaded.ok) {
      offlineLoad = loaded.result;
      sqlLoad = { seconds: loaded.result.seconds, decodedRows: loaded.decodedRows };
    } else {
      opts.log(`the offline store cannot load this file with ClickHouse's Parquet reader (${loaded.reason}): replaying it instead`);
    }
  }
  const replayOpts = {
    source: sourceName,
    deadLetters,
    onProgress: undefined as ((rows: number) => void) | undefined,
    onBatch: async (events: readonly DecodedEvent[], bad: readonly BadEvent[], rows: number): Promise<void> => {
      keptEvents?.add(events);
      if (offlineLoad instanceof EventLoad) await offlineLoad.add(events, bad, rows);
    },
  };
  // An offline store that already holds the whole file rebuilds the online store (tidemark
  // bootstrap's code, no Parquet decoding) unless --replay asks for the replay; --verify and
  // --limit need the replayed events.
  const rebuild = offlineLoad !== null && !(offlineLoad instanceof EventLoad) && opts.rebuild !== false && !opts.verify;
  let replay: ReplayStats;
  if (rebuild) {
    const loaded = offlineLoad as LoadResult;
    if (sqlLoad) opts.log(`loaded ${loaded.events.toLocaleString('en-US')} events into the offline store with ClickHouse's Parquet reader in ${sqlLoad.seconds.toFixed(2)} s (${sqlLoad.decodedRows.toLocaleString('en-US')} rows it could not prove valid went through the decoder)`);
    // The counts are the file's (as a replay's), not the rows the rebuild read inside retention.
    replay = { ...(await rebuildFromOffline(compiled, offline!, store, opts.log)), rows: loaded.rows, events: loaded.events, badEvents: loaded.badEvents };
  } else {
    const bar = opts.progress ? new SingleBar({ format: ' replay [{bar}] {percentage}% | {value}/{total} rows | {eta_formatted} left', hideCursor: true }, Presets.shades_classic) : null;
    bar?.start(totalRows, 0);
    replayOpts.onProgress = (rows: number) => bar?.update(rows);
    replay = await replayParquetFile(compiled, opts.file, { apply: (batch) => store.applySync(batch) }, opts.limit === undefined ? replayOpts : { ...replayOpts, limit: opts.limit });
    bar?.stop();
  }

  const service = new OnlineFeatureService(registry, store, 'watermark');
  const stats = await store.stats();
  const featureValues = registry.views.reduce((n, v) => n + (stats.keys[v.name] ?? 0) * v.features.length, 0);
  opts.log('');
  opts.log(`${rebuild ? 'rebuilt from the offline store' : 'replayed'} ${replay.events.toLocaleString('en-US')} events in ${replay.seconds.toFixed(2)} s: ${Math.round(replay.events / replay.seconds).toLocaleString('en-US')} events/s${rebuild ? ' (tidemark quickstart --replay replays the file instead)' : ''}`);
  opts.log(`bad events: ${replay.badEvents}${replay.badEvents > 0 ? ` (dead letters in ${deadLetters.dir})` : ''}; late (event, tile group) updates kept out of the online store: ${replay.lateTileEvents}`);
  opts.log(`watermark: ${stats.watermarkMs === null ? 'none' : new Date(stats.watermarkMs).toISOString()} (reads use the watermark clock: watermark + 1 ms)`);
  for (const v of registry.views) {
    opts.log(`  ${v.name.padEnd(16)} ${String(stats.keys[v.name] ?? 0).padStart(6)} keys x ${v.features.length} features`);
  }
  opts.log(`materialized ${featureValues.toLocaleString('en-US')} feature values in ${stats.tiles.toLocaleString('en-US')} tiles`);

  const sample = await sampleRead(service, store, opts.log);
  let offlineSample: Record<string, unknown>[] | null = null;
  let monitor: QuickstartMonitorResult | null = null;
  let monitorCompiled: CompiledDefinitions | null = null;
  let deferredMonitor: { weeks: number; run: () => Promise<QuickstartMonitorResult> } | null = null;
  if (offline) {
    opts.log('');
    if (offlineLoad === null) {
      opts.log('offline store: not loaded with --limit (it loads whole files, so its values would differ from a partial replay)');
    } else {
      const loaded = offlineLoad instanceof EventLoad ? await offlineLoad.finish() : offlineLoad;
      opts.log(
        loaded.alreadyLoaded
          ? `offline store (${offline.executor.location}): this file's ${loaded.events.toLocaleString('en-US')} events were already loaded`
          : sqlLoad
            ? `offline store (${offline.executor.location}): loaded this file's ${loaded.events.toLocaleString('en-US')} events first, the online store built from them (loading the file again is a no-op)`
            : `offline store (${offline.executor.location}): loaded the same ${loaded.events.toLocaleString('en-US')} events during the replay (loading the file again is a no-op)`,
      );
      offlineSample = await offlineSampleRead(offline, service, store, opts.log);
      if (opts.monitor !== false) {
        const planned = await planQuickstartMonitor(offline);
        monitorCompiled = planned.compiled;
        if (opts.serve && opts.backgroundMonitor !== false && planned.pendingEvaluations > 0) {
          // The same run as below, after the API is up; its lines are held and printed together.
          deferredMonitor = { weeks: planned.pendingEvaluations, run: async () => {
            const lines: string[] = [];
            try {
              return await runQuickstartMonitor(offline, { log: (line) => lines.push(line), externalURL: `http://${opts.host}:${opts.port}` }, planned);
            } finally {
              for (const line of lines) opts.log(line);
            }
          } };
        } else {
          monitor = await runQuickstartMonitor(offline, { log: opts.log, externalURL: `http://${opts.host}:${opts.port}` }, planned);
        }
      }
    }
  }
  const verification = keptEvents ? verifyAgainstReference(registry, store, keptEvents, opts.log) : null;
  let server: FastifyInstance | null = null;
  let url: string | null = null;
  let featureLog: FeatureLogQueue | null = null;
  if (opts.serve) {
    if (opts.logFeatures) {
      if (!offline) throw new TidemarkError('TM_STORE_BAD_CONFIG', 'feature logging in the quickstart writes to the offline store: it needs one (drop --no-offline)', { flag: '--log-features' });
      featureLog = new FeatureLogQueue(new OfflineFeatureLogSink(offline.executor), { sampleRate: opts.logFeatures.sampleRate, ...(opts.logFeatures.log ? { log: opts.logFeatures.log } : {}) });
    }
    // The embedded store is built at every start: its history is this one registry.
    const history: RegistryHistoryEntry[] = [
      { version: 1, registryVersion: registry.version, appliedAt: new Date(startedAtMs).toISOString(), definitions: opts.definitions, views: Object.fromEntries(registry.views.map((v) => [v.name, viewNamespace(v)])), changes: [] },
    ];
    const materializer: ReplayReport = { kind: 'replay', rebuilt: rebuild, events: replay.events, badEvents: replay.badEvents, lateTileEvents: replay.lateTileEvents, seconds: replay.seconds };
    server = await buildServer({
      service,
      ...(offline ? { offline } : {}),
      ...(monitorCompiled ? { monitors: monitorCompiled } : {}),
      ...opts.security,
      registryHistory: async () => history,
      materializerStatus: async () => materializer,
      sampleKeys: (view) => preferredKeys(store, view),
      ...(featureLog ? { featureLog } : {}),
    });
    url = await server.listen({ port: opts.port, host: opts.host });
    const first = sampleRequestBody(service, store);
    // With tokens, the examples carry one (from $TOKEN: the file holds only hashes).
    const bearer = opts.security?.auth ? ` -H "authorization: Bearer $TOKEN"` : '';
    opts.log('');
    opts.log(`serving the HTTP API on ${url}  (Ctrl-C to stop); its reference: ${url}/docs (OpenAPI: ${url}/openapi.json)`);
    opts.log(`  dashboard: ${url}/ui/${monitorCompiled ? `  (drift: ${url}/ui/monitor, alerts: ${url}/ui/alerts)` : ''}`);
    if (featureLog) opts.log(`  feature log: ${featureLog.sampleRate * 100}% of reads to ${featureLog.sink.destination} (tm_feature_log_lines); tidemark dataset --from-log builds a training set of them`);
    if (first) opts.log(`  curl -s ${url}/get-online-features${bearer} -H 'content-type: application/json' -d '${JSON.stringify(first)}'`);
    if (first && offline) {
      const key = Object.keys(first.entities)[0]!;
      const spine = { features: first.features.slice(0, 2), spine: [{ [key]: first.entities[key]![0], ts: stats.watermarkMs === null ? 0 : stats.watermarkMs + 1, label: 1 }] };
      opts.log(`  curl -s ${url}/datasets/historical${bearer} -H 'content-type: application/json' -d '${JSON.stringify(spine)}'`);
    }
    if (monitorCompiled) {
      opts.log(`  curl -s${bearer} '${url}/monitor/drift?feature=delay&slice=origin%3DORD&window=7d&limit=5'`);
      opts.log(`  curl -s${bearer} '${url}/alerts?status=firing'`);
    }
  }
  let monitorInBackground: Promise<QuickstartMonitorResult> | null = null;
  if (deferredMonitor) {
    opts.log('');
    opts.log(`monitor ${monitorCompiled!.monitors[0]!.name}: evaluating ${deferredMonitor.weeks} weeks in the background; /monitor, /alerts and the dashboard fill in week by week, and its summary follows here when done (--no-monitor skips it)`);
    monitorInBackground = deferredMonitor.run();
    // Never unhandled: a failure is printed with its code (callers awaiting the promise see it too).
    monitorInBackground.catch((e: unknown) => opts.log(`monitor failed: ${e instanceof TidemarkError ? `${e.code} ` : ''}${e instanceof Error ? e.message : String(e)}`));
  }
  return { compiled, store, service, replay, stats, sample, verification, offline, offlineSample, monitor, monitorInBackground, server, url, featureLog };
}

/**
 * Build the in-memory store from the offline store's events with the bootstrap's code (every view,
 * keys in batches), in place of a replay of the file: the reads are the same, the file is not decoded.
 */
async function rebuildFromOffline(compiled: CompiledDefinitions, offline: OfflineStore, store: MemoryOnlineStore, log: (line: string) => void): Promise<ReplayStats> {
  const started = performance.now();
  log('the offline store holds this file: rebuilding the online store from it (tidemark bootstrap)');
  let events = 0;
  for (const view of compiled.registry.views) {
    const report = await bootstrapView(view, { kind: 'memory', store }, { executor: offline.executor, registry: compiled.registry, batchKeys: 20_000 });
    events = Math.max(events, report.events);
  }
  return { rows: events, events, badEvents: 0, lateTileEvents: 0, seconds: (performance.now() - started) / 1000 };
}

/** Two keys of a view to show reads of: ORD and SFO on the flights, else the first two. */
function preferredKeys(store: MemoryOnlineStore, view: string): string[] {
  const keys = store.entityKeys(view);
  const preferred = ['ORD', 'SFO'].filter((k) => keys.includes(k));
  return preferred.length > 0 ? preferred : keys.slice(0, 2);
}

/** A read of the first view's features for up to two of its busiest-looking keys (ORD and SFO on the flights). */
function sampleRequestBody(service: OnlineFeatureService, store: MemoryOnlineStore): { features: string[]; entities: Record<string, string[]> } | null {
  // The view with the most features shows the most (origin_delays on the flights).
  const view = [...service.registry.views].sort((a, b) => b.features.length - a.features.length)[0];
  if (!view || view.joinKeys.length !== 1) return null;
  const chosen = preferredKeys(store, view.name);
  if (chosen.length === 0) return null;
  return { features: view.features.map((f) => `${view.name}:${f.name}`), entities: { [view.joinKeys[0]!]: chosen } };
}

async function sampleRead(service: OnlineFeatureService, store: MemoryOnlineStore, log: (line: string) => void): Promise<OnlineFeaturesResponse | null> {
  const body = sampleRequestBody(service, store);
  if (!body) return null;
  const { response, atMs } = await service.getOnlineFeatures(body);
  log('');
  log(`sample read at ${new Date(atMs).toISOString()}:`);
  logFeatureTable(
    log,
    response.results[0]!.values,
    body.features.map((ref, i) => [ref, response.results[i + 1]!.values]),
  );
  return response;
}

/** A table of feature values, one line per feature, one column per entity key. */
function logFeatureTable(log: (line: string) => void, keys: readonly unknown[], rows: readonly [string, readonly unknown[]][]): void {
  const cell = (v: unknown): string => (typeof v === 'number' ? String(Number(v.toPrecision(8))) : String(v)).padStart(14);
  log(`  ${'feature'.padEnd(36)} ${keys.map((k) => String(k).padStart(14)).join(' ')}`);
  for (const [feature, values] of rows) log(`  ${feature.padEnd(36)} ${values.map(cell).join(' ')}`);
}

/** The replayed events, grouped by view and entity key, for the reference check. */
class KeptEvents {
  readonly byView = new Map<string, Map<string, ReferenceEvent[]>>();
  constructor(private readonly views: readonly string[]) {
    for (const v of views) this.byView.set(v, new Map());
  }
  add(events: readonly DecodedEvent[]): void {
    for (const e of events) {
      const kept: ReferenceEvent = { eventTimeMs: e.eventTimeMs, fields: e.fields };
      this.views.forEach((view, i) => {
        const byKey = this.byView.get(view)!;
        const list = byKey.get(e.viewKeys[i]!);
        if (list) list.push(kept);
        else byKey.set(e.viewKeys[i]!, [kept]);
      });
    }
  }
}

export interface Verification {
  atMs: number;
  compared: number;
  mismatches: string[];
}

/** Every key of every view of the replayed source, online vs the reference, at the watermark clock. */
function verifyAgainstReference(registry: Registry, store: MemoryOnlineStore, kept: KeptEvents, log: (line: string) => void): Verification {
  const started = performance.now();
  const watermarkMs = store.watermarkSync();
  const atMs = storeClockMs('watermark', watermarkMs);
  const result: Verification = { atMs, compared: 0, mismatches: [] };
  for (const [viewName, byKey] of kept.byView) {
    const view = registry.views.find((v) => v.name === viewName)!;
    const keys = [...byKey.keys()];
    const tiles = store.readTilesSync(viewName, keys, tileRangesFor(view, view.features, atMs, watermarkMs));
    keys.forEach((key, i) => {
      const online = evaluateFeatures(view, view.features, tiles[i]!, atMs, watermarkMs);
      const reference = referenceViewValues(view, byKey.get(key)!, entityKeyValues(key, view.joinKeys.length), atMs);
      view.features.forEach((f, k) => {
        result.compared++;
        if (!valuesAgree(f.agg, online[k]!.value, reference[f.name]!)) {
          result.mismatches.push(`${viewName}:${f.name} key ${key}: online ${online[k]!.value}, reference ${reference[f.name]}`);
        }
      });
    });
  }
  log('');
  log(
    result.mismatches.length === 0
      ? `verified ${result.compared.toLocaleString('en-US')} values (every key of every view) against the reference implementation at ${new Date(atMs).toISOString()}: all equal (${((performance.now() - started) / 1000).toFixed(1)} s)`
      : `REFERENCE MISMATCH in ${result.mismatches.length} of ${result.compared} values:\n  ${result.mismatches.slice(0, 20).join('\n  ')}`,
  );
  return result;
}

/** The sample read's keys at the same time as a point-in-time dataset: the two paths side by side. */
async function offlineSampleRead(offline: OfflineStore, service: OnlineFeatureService, store: MemoryOnlineStore, log: (line: string) => void): Promise<Record<string, unknown>[] | null> {
  const body = sampleRequestBody(service, store);
  const watermarkMs = store.watermarkSync();
  if (!body || watermarkMs === null) return null;
  const key = Object.keys(body.entities)[0]!;
  const atMs = storeClockMs('watermark', watermarkMs);
  const prepared = await offline.prepareDataset(body.entities[key]!.map((k) => ({ [key]: k, ts: atMs })), body.features);
  const rows: Record<string, unknown>[] = [];
  try {
    let text = '';
    for await (const chunk of offline.executor.streamJsonLines(prepared.sql)) text += Buffer.from(chunk).toString('utf8');
    for (const line of text.split('\n')) if (line.trim()) rows.push(JSON.parse(line) as Record<string, unknown>);
  } finally {
    await prepared.release();
  }
  log(`the same features as a point-in-time dataset at ${new Date(atMs).toISOString()} (offline path):`);
  logFeatureTable(
    log,
    rows.map((r) => r[key]),
    body.features.map((ref) => [ref, rows.map((r) => r[ref.replace(':', '__')])]),
  );
  return rows;
}
