// The embedded main job: replay the flights file through the materializer core into the in-memory
// store (watermark clock), print a summary and a sample read, then serve the HTTP API. No servers.
import { SingleBar, Presets } from 'cli-progress';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import {
  compileOrThrow,
  entityKeyValues,
  loadDefinitions,
  referenceViewValues,
  type CompiledDefinitions,
  type ReferenceEvent,
  type Registry,
  valuesAgree,
} from '../definitions/index.js';
import { DeadLetterFile, parquetRowCount, replayParquetFile, type DecodedEvent, type ReplayStats } from '../ingest/index.js';
import { evaluateFeatures, MemoryOnlineStore, OnlineFeatureService, storeClockMs, type OnlineFeaturesResponse, type StoreStats } from '../online/index.js';
import { buildServer } from './server.js';

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
  dataDir: string;
  log: (line: string) => void;
}

export interface QuickstartResult {
  compiled: CompiledDefinitions;
  store: MemoryOnlineStore;
  service: OnlineFeatureService;
  replay: ReplayStats;
  stats: StoreStats;
  sample: OnlineFeaturesResponse | null;
  verification: Verification | null;
  server: FastifyInstance | null;
  url: string | null;
}

export async function runQuickstart(opts: QuickstartOptions): Promise<QuickstartResult> {
  const { module } = await loadDefinitions(opts.definitions);
  const compiled = compileOrThrow(module);
  const { registry } = compiled;
  const sourceName = opts.source ?? (registry.sources.length === 1 ? registry.sources[0]!.name : undefined);
  if (!sourceName) throw new Error(`the definitions have ${registry.sources.length} sources: name the file's with --source`);
  const store = new MemoryOnlineStore(registry);
  const totalRows = Math.min(await parquetRowCount(opts.file), opts.limit ?? Number.POSITIVE_INFINITY);
  opts.log(`tidemark quickstart: registry ${registry.version}, ${registry.views.length} views; replaying ${totalRows.toLocaleString('en-US')} rows of ${opts.file}`);

  const bar = opts.progress ? new SingleBar({ format: ' replay [{bar}] {percentage}% | {value}/{total} rows | {eta_formatted} left', hideCursor: true }, Presets.shades_classic) : null;
  bar?.start(totalRows, 0);
  const deadLetters = new DeadLetterFile(join(opts.dataDir, 'dead-letters'));
  const keptEvents = opts.verify ? new KeptEvents(registry.sources.find((s) => s.name === sourceName)!.views) : null;
  const replayOpts = { source: sourceName, deadLetters, onProgress: (rows: number) => bar?.update(rows), onEvents: keptEvents ? (events: readonly DecodedEvent[]) => keptEvents.add(events) : undefined };
  const replay = await replayParquetFile(compiled, opts.file, { apply: (batch) => store.applySync(batch) }, opts.limit === undefined ? replayOpts : { ...replayOpts, limit: opts.limit });
  bar?.stop();

  const service = new OnlineFeatureService(registry, store, 'watermark');
  const stats = await store.stats();
  const featureValues = registry.views.reduce((n, v) => n + (stats.keys[v.name] ?? 0) * v.features.length, 0);
  opts.log('');
  opts.log(`replayed ${replay.events.toLocaleString('en-US')} events in ${replay.seconds.toFixed(2)} s: ${Math.round(replay.events / replay.seconds).toLocaleString('en-US')} events/s`);
  opts.log(`bad events: ${replay.badEvents}${replay.badEvents > 0 ? ` (dead letters in ${deadLetters.dir})` : ''}; late (event, tile group) updates kept out of the online store: ${replay.lateTileEvents}`);
  opts.log(`watermark: ${stats.watermarkMs === null ? 'none' : new Date(stats.watermarkMs).toISOString()} (reads use the watermark clock: watermark + 1 ms)`);
  for (const v of registry.views) {
    opts.log(`  ${v.name.padEnd(16)} ${String(stats.keys[v.name] ?? 0).padStart(6)} keys x ${v.features.length} features`);
  }
  opts.log(`materialized ${featureValues.toLocaleString('en-US')} feature values in ${stats.tiles.toLocaleString('en-US')} tiles`);

  const sample = await sampleRead(service, store, opts.log);
  const verification = keptEvents ? verifyAgainstReference(registry, store, keptEvents, opts.log) : null;
  let server: FastifyInstance | null = null;
  let url: string | null = null;
  if (opts.serve) {
    server = await buildServer({ service });
    url = await server.listen({ port: opts.port, host: opts.host });
    const first = sampleRequestBody(service, store);
    opts.log('');
    opts.log(`serving the HTTP API on ${url}  (Ctrl-C to stop)`);
    if (first) opts.log(`  curl -s ${url}/get-online-features -H 'content-type: application/json' -d '${JSON.stringify(first)}'`);
  }
  return { compiled, store, service, replay, stats, sample, verification, server, url };
}

/** A read of the first view's features for up to two of its busiest-looking keys (ORD and SFO on the flights). */
function sampleRequestBody(service: OnlineFeatureService, store: MemoryOnlineStore): { features: string[]; entities: Record<string, string[]> } | null {
  // The view with the most features shows the most (origin_delays on the flights).
  const view = [...service.registry.views].sort((a, b) => b.features.length - a.features.length)[0];
  if (!view || view.joinKeys.length !== 1) return null;
  const keys = store.entityKeys(view.name);
  const preferred = ['ORD', 'SFO'].filter((k) => keys.includes(k));
  const chosen = preferred.length > 0 ? preferred : keys.slice(0, 2);
  if (chosen.length === 0) return null;
  return { features: view.features.map((f) => `${view.name}:${f.name}`), entities: { [view.joinKeys[0]!]: chosen } };
}

async function sampleRead(service: OnlineFeatureService, store: MemoryOnlineStore, log: (line: string) => void): Promise<OnlineFeaturesResponse | null> {
  const body = sampleRequestBody(service, store);
  if (!body) return null;
  const { response, atMs } = await service.getOnlineFeatures(body);
  log('');
  log(`sample read at ${new Date(atMs).toISOString()}:`);
  const names = response.metadata.feature_names;
  const keyColumn = response.results[0]!.values;
  log(`  ${'feature'.padEnd(36)} ${keyColumn.map((k) => String(k).padStart(14)).join(' ')}`);
  for (let i = 1; i < names.length; i++) {
    const values = response.results[i]!.values.map((v) => (typeof v === 'number' ? String(Number(v.toPrecision(8))) : String(v)).padStart(14));
    log(`  ${`${body.features[i - 1]}`.padEnd(36)} ${values.join(' ')}`);
  }
  return response;
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
    const tiles = store.readTilesSync(viewName, keys);
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
