// Loading events into the offline store. A load is identified by the SHA-256 of its file and its
// source: a file already loaded is skipped; rows of a load that never completed are invisible to
// queries (COMPLETED_LOADS) and deleted before the file is loaded again. Rows are decoded with the
// stream path's decoder (same zod schema, event time and key rules); good events are inserted in
// batches, with the next batch decoded while chDB inserts the last; bad rows go to tm_dead_letters.
// On a sharded store (offline/shards.ts) each event goes to the shards its keys name, dead letters
// to the home shard, and the load is complete when every shard has recorded it.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { canonicalKeyValue, type CompiledDefinitions, type SourcePlan } from '../definitions/index.js';
import { EventDecoder, fileFormatOf, readFileBatches, typeCsvValue, type BadEvent, type DecodedEvent } from '../ingest/index.js';
import type { OfflineExecutor } from './executor.js';
import { eventRowShards, ShardSet, sourcePlacements, splitByShard } from './shards.js';
import { eventTable, ident, keyColumn, keyFieldsOf } from './tables.js';

/** Where events are loaded: one executor, or the shards of a sharded store. */
export type EventTarget = OfflineExecutor | ShardSet;

export function shardSetOf(target: EventTarget): ShardSet {
  return target instanceof ShardSet ? target : ShardSet.of([target]);
}

export interface LoadResult {
  loadId: string;
  file: string;
  alreadyLoaded: boolean;
  rows: number;
  events: number;
  badEvents: number;
  seconds: number;
}

export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The events-table row of a decoded event. */
export function eventRow(source: SourcePlan, keyFields: readonly string[], e: DecodedEvent, loadId: string, offset: number): Record<string, unknown> {
  const row: Record<string, unknown> = { __ts: e.eventTimeMs, __load: loadId, __offset: offset };
  for (const [f, info] of Object.entries(source.fields)) {
    const v = e.fields[f];
    row[f] = v === undefined ? null : info.kind === 'other' && v !== null ? JSON.stringify(v) : v;
  }
  for (const f of keyFields) row[keyColumn(f)] = canonicalKeyValue(e.fields[f]);
  return row;
}

/** The tm_dead_letters row of a bad event: the original input as text, its position and reason. */
export function deadLetterRow(b: BadEvent, loadId: string): Record<string, unknown> {
  return {
    source: b.source,
    load_id: loadId,
    position: b.position?.offset ?? 0,
    code: b.code,
    field: b.field,
    reason: b.reason,
    raw: typeof b.raw === 'string' ? b.raw : b.raw instanceof Uint8Array ? Buffer.from(b.raw).toString('utf8') : JSON.stringify(b.raw),
    at: Date.now(),
  };
}

/** One load in progress: add decoded batches, then finish. */
export class EventLoad {
  private pending: Promise<void> = Promise.resolve();
  private readonly result: LoadResult;
  private readonly started = performance.now();
  private readonly keyFields: string[];
  private readonly shardsOf: (row: Record<string, unknown>) => number[];

  private constructor(
    private readonly shards: ShardSet,
    private readonly compiled: CompiledDefinitions,
    private readonly source: SourcePlan,
    private readonly sha256: string,
    path: string,
  ) {
    this.result = { loadId: `${source.name}:${sha256}`, file: path, alreadyLoaded: false, rows: 0, events: 0, badEvents: 0, seconds: 0 };
    this.keyFields = keyFieldsOf(compiled.registry, source);
    this.shardsOf = eventRowShards(sourcePlacements(compiled.registry, source), shards.count);
  }

  /** Start loading `path` for a source, or return the earlier load's result when it is already there. */
  static async begin(target: EventTarget, compiled: CompiledDefinitions, sourceName: string, path: string): Promise<EventLoad | LoadResult> {
    const started = performance.now();
    const shards = shardSetOf(target);
    const source = new EventDecoder(compiled, sourceName).source;
    const sha256 = await fileSha256(path);
    const loadId = `${sourceName}:${sha256}`;
    // Complete when every shard recorded it (a load cut short between two shards' records is loaded again).
    const done = await shards.each((executor) => executor.rows<{ events: number; bad: number; rows: number }>(`SELECT events, bad, rows FROM tm_loads WHERE load_id = {id:String}`, { id: loadId }));
    if (done.every((d) => d.length > 0)) {
      const d = done[0]![0]!;
      return { loadId, file: path, alreadyLoaded: true, rows: Number(d.rows), events: Number(d.events), badEvents: Number(d.bad), seconds: (performance.now() - started) / 1000 };
    }
    const table = ident(eventTable(sourceName));
    const partial = await shards.each(async (executor) => {
      const [stored] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM ${table} WHERE __load = {id:String}`, { id: loadId });
      if (!stored || Number(stored.n) === 0) return false;
      await executor.command(`ALTER TABLE ${table} DELETE WHERE __load = {id:String} SETTINGS mutations_sync = 2`, { id: loadId });
      return true;
    });
    if (partial.some(Boolean)) await shards.on(0, (home) => home.command(`ALTER TABLE tm_dead_letters DELETE WHERE load_id = {id:String} SETTINGS mutations_sync = 2`, { id: loadId }));
    return new EventLoad(shards, compiled, source, sha256, path);
  }

  get loadId(): string {
    return this.result.loadId;
  }

  /** Count events the caller inserted itself under this load id (a bulk INSERT ... SELECT): each is one row. */
  addInserted(events: number): void {
    this.result.rows += events;
    this.result.events += events;
  }

  /** Add a batch of decoded events and bad rows (`rows` counts both). Inserts overlap the caller's next batch. */
  async add(events: readonly DecodedEvent[], bad: readonly BadEvent[], rows: number): Promise<void> {
    const out = events.map((e) => eventRow(this.source, this.keyFields, e, this.result.loadId, e.position?.offset ?? 0));
    const dead = bad.map((b) => deadLetterRow(b, this.result.loadId));
    await this.pending;
    const perShard = splitByShard(out, this.shardsOf, this.shards.count);
    this.pending = (async () => {
      await this.shards.each((executor, shard) => executor.insert(eventTable(this.source.name), perShard[shard]!));
      await this.shards.on(0, (home) => home.insert('tm_dead_letters', dead));
    })();
    this.result.rows += rows;
    this.result.events += events.length;
    this.result.badEvents += bad.length;
  }

  /** Wait for the last insert and record the load as complete. */
  async finish(): Promise<LoadResult> {
    await this.pending;
    await recordCompletedLoad(this.shards, {
      loadId: this.result.loadId,
      source: this.source.name,
      file: basename(this.result.file),
      sha256: this.sha256,
      rows: this.result.rows,
      events: this.result.events,
      bad: this.result.badEvents,
      registryVersion: this.compiled.registry.version,
    });
    this.result.seconds = (performance.now() - this.started) / 1000;
    return this.result;
  }
}

/** One completed load, as `tm_loads` records it. */
export interface CompletedLoad {
  loadId: string;
  source: string;
  file: string;
  sha256: string;
  rows: number;
  events: number;
  bad: number;
  registryVersion: string;
}

/** Record a load as complete: from then on its rows are visible to queries (COMPLETED_LOADS). */
export async function recordCompletedLoad(target: EventTarget, load: CompletedLoad): Promise<void> {
  const row = { load_id: load.loadId, source: load.source, file: load.file, sha256: load.sha256, rows: load.rows, events: load.events, bad: load.bad, registry_version: load.registryVersion, loaded_at: Date.now() };
  await shardSetOf(target).each((executor) => executor.insert('tm_loads', [row]));
}

/** Read, decode and load an event file (Parquet, CSV or NDJSON). */
export async function loadEventsFile(
  executor: EventTarget,
  compiled: CompiledDefinitions,
  sourceName: string,
  path: string,
  opts: { batchRows?: number; nowMs?: () => number; onProgress?: (rows: number) => void } = {},
): Promise<LoadResult> {
  const format = fileFormatOf(path);
  const load = await EventLoad.begin(executor, compiled, sourceName, path);
  if (!(load instanceof EventLoad)) return load;
  const decoder = new EventDecoder(compiled, sourceName, opts.nowMs);
  const kinds = decoder.source.fields;
  let rows = 0;
  for await (const batch of readFileBatches(path, opts.batchRows === undefined ? {} : { batchRows: opts.batchRows })) {
    const good: DecodedEvent[] = [];
    const bad: BadEvent[] = [];
    batch.rows.forEach((row, i) => {
      const position = { partition: 0, offset: batch.rowStart + i };
      if (row.value === undefined) {
        bad.push({ source: sourceName, position, code: 'TM_EVENT_INVALID_JSON', field: null, reason: row.error ?? 'unreadable row', raw: row.raw ?? '' });
        return;
      }
      let value = row.value;
      if (format === 'csv') {
        value = {};
        for (const [k, v] of Object.entries(row.value)) value[k] = typeCsvValue(v, kinds[k]?.kind ?? 'string');
      }
      const decoded = decoder.decodeValue(value, position, row.raw ?? row.value);
      if (decoded.ok) good.push(decoded.event);
      else bad.push(decoded.bad);
    });
    await load.add(good, bad, batch.rows.length);
    rows += batch.rows.length;
    opts.onProgress?.(rows);
  }
  return load.finish();
}
