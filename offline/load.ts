// Loading event files into the offline store: rows are decoded with the stream path's decoder
// (the same zod schema, event time and key rules), good events inserted in batches, bad rows
// written to tm_dead_letters with their reason. A file already loaded (same SHA-256, same source)
// is skipped; a load that died half-way is cleaned up and redone.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { canonicalKeyValue, type CompiledDefinitions } from '../definitions/index.js';
import { EventDecoder, fileFormatOf, readFileBatches, typeCsvValue, type BadEvent } from '../ingest/index.js';
import type { OfflineExecutor } from './executor.js';
import { eventTable, ident, keyColumn, keyFieldsOf } from './tables.js';

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

export async function loadEventsFile(
  executor: OfflineExecutor,
  compiled: CompiledDefinitions,
  sourceName: string,
  path: string,
  opts: { batchRows?: number; nowMs?: () => number; onProgress?: (rows: number) => void } = {},
): Promise<LoadResult> {
  const started = performance.now();
  const { registry } = compiled;
  const decoder = new EventDecoder(compiled, sourceName, opts.nowMs);
  const source = decoder.source;
  const format = fileFormatOf(path);
  const sha256 = await fileSha256(path);
  const loadId = `${sourceName}:${sha256}`;
  const table = ident(eventTable(sourceName));
  const result: LoadResult = { loadId, file: path, alreadyLoaded: false, rows: 0, events: 0, badEvents: 0, seconds: 0 };

  const done = await executor.rows<{ events: number; bad: number; rows: number }>(`SELECT events, bad, rows FROM tm_loads WHERE load_id = {id:String}`, { id: loadId });
  if (done.length > 0) {
    return { ...result, alreadyLoaded: true, rows: Number(done[0]!.rows), events: Number(done[0]!.events), badEvents: Number(done[0]!.bad), seconds: (performance.now() - started) / 1000 };
  }
  // A previous attempt that did not complete left rows behind: remove them first.
  const [partial] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM ${table} WHERE __load = {id:String}`, { id: loadId });
  if (partial && Number(partial.n) > 0) {
    await executor.command(`ALTER TABLE ${table} DELETE WHERE __load = {id:String} SETTINGS mutations_sync = 2`, { id: loadId });
    await executor.command(`ALTER TABLE tm_dead_letters DELETE WHERE load_id = {id:String} SETTINGS mutations_sync = 2`, { id: loadId });
  }

  const fields = Object.keys(source.fields);
  const keyFields = keyFieldsOf(registry, source);
  const batchOpts = opts.batchRows === undefined ? {} : { batchRows: opts.batchRows };
  for await (const batch of readFileBatches(path, batchOpts)) {
    const good: Record<string, unknown>[] = [];
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
        for (const [k, v] of Object.entries(row.value)) value[k] = typeCsvValue(v, source.fields[k]?.kind ?? 'string');
      }
      const decoded = decoder.decodeValue(value, position, row.raw ?? row.value);
      if (!decoded.ok) {
        bad.push(decoded.bad);
        return;
      }
      const e = decoded.event;
      const out: Record<string, unknown> = { __ts: e.eventTimeMs, __load: loadId, __offset: position.offset };
      for (const f of fields) {
        const v = e.fields[f];
        out[f] = v === undefined ? null : source.fields[f]!.kind === 'other' && v !== null ? JSON.stringify(v) : v;
      }
      for (const f of keyFields) out[keyColumn(f)] = canonicalKeyValue(e.fields[f]);
      good.push(out);
    });
    await executor.insert(eventTable(sourceName), good);
    if (bad.length > 0) {
      const at = Date.now();
      await executor.insert(
        'tm_dead_letters',
        bad.map((b) => ({
          source: b.source,
          load_id: loadId,
          position: b.position?.offset ?? 0,
          code: b.code,
          field: b.field,
          reason: b.reason,
          raw: typeof b.raw === 'string' ? b.raw : JSON.stringify(b.raw),
          at,
        })),
      );
    }
    result.rows += batch.rows.length;
    result.events += good.length;
    result.badEvents += bad.length;
    opts.onProgress?.(result.rows);
  }
  await executor.insert('tm_loads', [
    { load_id: loadId, source: sourceName, file: basename(path), sha256, rows: result.rows, events: result.events, bad: result.badEvents, registry_version: registry.version, loaded_at: Date.now() },
  ]);
  result.seconds = (performance.now() - started) / 1000;
  return result;
}
