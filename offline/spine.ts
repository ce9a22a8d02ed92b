// Spines: the rows a dataset is computed for. Read in row order and in batches (bounded memory),
// each row numbered (__row), its time parsed like an event time (__t: epoch ms, or ISO-8601 text,
// UTC unless an offset is given) and its join keys in the online path's canonical form (__j_<key>);
// every original column is kept, typed from the first batch, and passed through untouched.
import { canonicalKeyValue, parseTimeMs, TidemarkError } from '../definitions/index.js';
import { resolve as resolvePath } from 'node:path';
import { fileFormatOf, readFileBatches, type FileBatch } from '../ingest/index.js';
import type { OfflineExecutor } from './executor.js';
import { ident } from './tables.js';

export const SPINE_TIME_COLUMN = 'ts';

export interface SpineInfo {
  table: string;
  rows: number;
  /** The original columns, in file order, with their ClickHouse types. */
  columns: [string, string][];
  /**
   * The least and greatest spine time of the whole spine, when this table holds only part of it (a
   * shard's): the events read are then those the whole spine reads, so per-key statistics over
   * them (the variance's centre) are the single node's.
   */
  timeRangeMs?: [number, number];
}

export function joinKeyColumn(joinKey: string): string {
  return `__j_${joinKey}`;
}

/** Epoch ms of a spine time value (text trimmed), or null. */
function spineTimeMs(value: unknown): number | null {
  return parseTimeMs(typeof value === 'string' ? value.trim() : value);
}

export function inferType(values: unknown[]): string {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (present.length === 0) return 'Nullable(String)';
  if (present.every((v) => typeof v === 'number')) return present.every((v) => Number.isSafeInteger(v)) ? 'Nullable(Int64)' : 'Nullable(Float64)';
  if (present.every((v) => typeof v === 'boolean')) return 'Nullable(Bool)';
  return 'Nullable(String)';
}

export function toColumnValue(value: unknown, type: string, column: string, row: number): unknown {
  if (value === null || value === undefined) return null;
  if (type === 'Nullable(String)') return typeof value === 'string' ? value : JSON.stringify(value);
  if (type === 'Nullable(Int64)' && !(typeof value === 'number' && Number.isSafeInteger(value))) {
    throw new TidemarkError('TM_SPINE_BAD_COLUMN', `spine row ${row}, column ${column}: ${JSON.stringify(value)} is not an integer like the rows before it`, { row, column });
  }
  return value;
}

/** A spine: a file (Parquet, CSV, NDJSON) or rows given inline (the HTTP API). */
export type SpineInput = string | readonly Record<string, unknown>[];

export async function* spineBatches(input: SpineInput, batchRows: number): AsyncGenerator<FileBatch> {
  if (typeof input === 'string') {
    yield* readFileBatches(input, { batchRows });
    return;
  }
  for (let i = 0; i < input.length; i += batchRows) {
    yield { rows: input.slice(i, i + batchRows).map((value) => (typeof value === 'object' && value !== null && !Array.isArray(value) ? { value } : { value: undefined, error: 'not a JSON object' })), rowStart: i };
  }
}

const INTEGER_TYPE = /^(Nullable\()?(U?Int(8|16|32|64))\)?$/;
const TEXT_TYPE = /^(Nullable\()?(LowCardinality\()?(Nullable\()?String\)*$/;
const TIMESTAMP_TYPE = /^(Nullable\()?DateTime(64)?(\(.*\))?\)?$/;

/**
 * A Parquet spine read by ClickHouse itself (chDB reads local files), where its conversions are
 * exactly the Node path's: integer or timestamp `ts`, text or integer keys. Returns null when
 * another column type needs the Node path's rules.
 */
async function loadParquetSpineNatively(executor: OfflineExecutor, path: string, joinKeys: readonly string[], table: string): Promise<SpineInfo | null> {
  const file = `file({path:String}, Parquet)`;
  const described = await executor.rows<{ name: string; type: string }>(`DESCRIBE ${file}`, { path: resolvePath(path) });
  const names = described.map((c) => c.name);
  checkColumns(path, names, joinKeys);
  const typeOf = new Map(described.map((c) => [c.name, c.type]));
  const tsType = typeOf.get(SPINE_TIME_COLUMN)!;
  const tsExpr = INTEGER_TYPE.test(tsType) ? `toInt64(${ident(SPINE_TIME_COLUMN)})` : TIMESTAMP_TYPE.test(tsType) ? `toUnixTimestamp64Milli(toDateTime64(${ident(SPINE_TIME_COLUMN)}, 3, 'UTC'))` : null;
  if (tsExpr === null || !joinKeys.every((k) => TEXT_TYPE.test(typeOf.get(k)!) || INTEGER_TYPE.test(typeOf.get(k)!))) return null;
  // File order: one reading thread, row groups in order.
  const ordered = `SETTINGS max_threads = 1, input_format_parquet_preserve_order = 1`;
  const params = { path: resolvePath(path) };
  // The first row with a null time or a null join key, in one pass, named as the Node path names it
  // (rows in order; in a row, the time before the keys, and the keys in order).
  const checked = [SPINE_TIME_COLUMN, ...joinKeys];
  const firstNull = checked.map((c, i) => `minIf(__r, isNull(${ident(c)})) AS n${i}`).join(', ');
  const [nulls] = await executor.rows<Record<string, number>>(`SELECT ${firstNull} FROM (SELECT rowNumberInAllBlocks() + 1 AS __r, * FROM ${file} ${ordered})`, params);
  const rowOf = checked.map((_, i) => Number(nulls?.[`n${i}`] ?? 0));
  const firstRow = Math.min(...rowOf.filter((r) => r > 0));
  if (Number.isFinite(firstRow)) {
    const column = checked[rowOf.indexOf(firstRow)]!;
    if (column === SPINE_TIME_COLUMN) {
      throw new TidemarkError('TM_SPINE_BAD_TIME', `spine row ${firstRow}, column ${SPINE_TIME_COLUMN}: null is not epoch milliseconds or ISO-8601 time`, { row: firstRow, column: SPINE_TIME_COLUMN });
    }
    throw new TidemarkError('TM_SPINE_BAD_KEY', `spine row ${firstRow}, column ${column}: join key is missing or not a scalar`, { row: firstRow, column });
  }
  const columns = described.map((c): [string, string] => [c.name, c.type]);
  await executor.command(spineTableDdl(table, joinKeys, columns));
  try {
    await executor.command(
      `INSERT INTO ${ident(table)} SELECT rowNumberInAllBlocks(), assumeNotNull(${tsExpr}), ${joinKeys.map((k) => `toString(assumeNotNull(${ident(k)}))`).join(', ')}${joinKeys.length ? ', ' : ''}${names.map((n) => ident(n)).join(', ')} FROM ${file} ${ordered}`,
      params,
    );
    const [count] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM ${ident(table)}`);
    const rows = Number(count?.n ?? 0);
    if (rows === 0) throw new TidemarkError('TM_SPINE_EMPTY', `spine ${path} has no rows: a dataset needs at least one (join keys, ${SPINE_TIME_COLUMN}) row`, { path });
    return { table, rows, columns };
  } catch (e) {
    await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`).catch(() => undefined);
    throw e;
  }
}

export function checkColumns(path: string, names: readonly string[], joinKeys: readonly string[]): void {
  const required = [...joinKeys, SPINE_TIME_COLUMN];
  const missing = required.filter((c) => !names.includes(c));
  if (missing.length > 0) {
    throw new TidemarkError('TM_SPINE_MISSING_COLUMN', `spine ${path} lacks column(s) ${missing.join(', ')}; it has ${names.join(', ') || 'none'}`, {
      missing,
      required,
      present: names,
    });
  }
  for (const n of names) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n) || n.startsWith('__')) {
      throw new TidemarkError('TM_SPINE_BAD_COLUMN', `spine column ${JSON.stringify(n)} cannot be passed through: use letters, digits and _ (not a leading __)`, { column: n });
    }
  }
}

/** The CREATE TABLE of a spine table: row number, time, canonical join keys, the original columns. */
export function spineTableDdl(table: string, joinKeys: readonly string[], columns: readonly [string, string][]): string {
  return `CREATE TABLE ${ident(table)} (__row UInt64, __t Int64, ${joinKeys.map((k) => `${ident(joinKeyColumn(k))} String`).join(', ')}${joinKeys.length ? ', ' : ''}${columns.map(([n, t]) => `${ident(n)} ${t}`).join(', ')}) ENGINE = MergeTree ORDER BY __row`;
}

/** The spine-table row of a read row (0-based `rowIndex`); errors name the row (1-based) and the column. */
export function spineRow(r: FileBatch['rows'][number], rowIndex: number, joinKeys: readonly string[], cols: readonly [string, string][]): Record<string, unknown> {
  const rowNumber = rowIndex + 1;
  if (r.value === undefined) throw new TidemarkError('TM_SPINE_BAD_COLUMN', `spine row ${rowNumber}: ${r.error ?? 'unreadable'}`, { row: rowNumber });
  const t = spineTimeMs(r.value[SPINE_TIME_COLUMN]);
  if (t === null) {
    throw new TidemarkError('TM_SPINE_BAD_TIME', `spine row ${rowNumber}, column ${SPINE_TIME_COLUMN}: ${JSON.stringify(r.value[SPINE_TIME_COLUMN])} is not epoch milliseconds or ISO-8601 time`, {
      row: rowNumber,
      column: SPINE_TIME_COLUMN,
    });
  }
  const o: Record<string, unknown> = { __row: rowIndex, __t: t };
  for (const k of joinKeys) {
    const key = canonicalKeyValue(r.value[k]);
    if (key === null) throw new TidemarkError('TM_SPINE_BAD_KEY', `spine row ${rowNumber}, column ${k}: join key is missing or not a scalar`, { row: rowNumber, column: k });
    o[joinKeyColumn(k)] = key;
  }
  for (const [n, type] of cols) o[n] = toColumnValue(r.value[n], type, n, rowNumber);
  return o;
}

/**
 * Load a spine into a new table. `joinKeys` are the join keys the requested features need.
 * Errors name the row (1-based, header excluded) and the column.
 */
export async function loadSpine(executor: OfflineExecutor, input: SpineInput, joinKeys: readonly string[], table: string, opts: { batchRows?: number } = {}): Promise<SpineInfo> {
  if (typeof input === 'string' && executor.readsLocalFiles && fileFormatOf(input) === 'parquet') {
    const native = await loadParquetSpineNatively(executor, input, joinKeys, table);
    if (native) return native;
  }
  const path = typeof input === 'string' ? input : 'in the request';
  let columns: [string, string][] | null = null;
  let rows = 0;
  try {
    for await (const batch of spineBatches(input, opts.batchRows ?? 50_000)) {
      if (columns === null) {
        const names: string[] = [];
        for (const r of batch.rows) for (const k of Object.keys(r.value ?? {})) if (!names.includes(k)) names.push(k);
        checkColumns(path, names, joinKeys);
        columns = names.map((n) => [n, inferType(batch.rows.map((r) => r.value?.[n]))]);
        await executor.command(spineTableDdl(table, joinKeys, columns));
      }
      const cols = columns;
      const out = batch.rows.map((r, i) => spineRow(r, batch.rowStart + i, joinKeys, cols));
      await executor.insert(table, out);
      rows += out.length;
    }
  } catch (e) {
    await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`).catch(() => undefined);
    throw e;
  }
  if (columns === null || rows === 0) {
    await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`);
    throw new TidemarkError('TM_SPINE_EMPTY', `spine ${path} has no rows: a dataset needs at least one (join keys, ${SPINE_TIME_COLUMN}) row`, { path });
  }
  return { table, rows, columns };
}
