// Spines: the rows a dataset is computed for. Read in row order and in batches (bounded memory),
// each row numbered (__row), its time parsed like an event time (__t: epoch ms, or ISO-8601 text,
// UTC unless an offset is given) and its join keys in the online path's canonical form (__j_<key>);
// every original column is kept, typed from the first batch, and passed through untouched.
import { canonicalKeyValue, parseIsoUtcMs, TidemarkError } from '../definitions/index.js';
import { readFileBatches, type FileBatch } from '../ingest/index.js';
import type { OfflineExecutor } from './executor.js';
import { ident } from './tables.js';

export const SPINE_TIME_COLUMN = 'ts';

export interface SpineInfo {
  table: string;
  rows: number;
  /** The original columns, in file order, with their ClickHouse types. */
  columns: [string, string][];
}

export function joinKeyColumn(joinKey: string): string {
  return `__j_${joinKey}`;
}

/** Epoch ms of a spine time value, or null. */
function spineTimeMs(value: unknown): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : null;
  if (typeof value === 'string') {
    const trimmed = value.trim();
    if (/^[+-]?\d+$/.test(trimmed)) {
      const n = Number(trimmed);
      return Number.isSafeInteger(n) ? n : null;
    }
    return parseIsoUtcMs(trimmed);
  }
  return null;
}

function inferType(values: unknown[]): string {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (present.length === 0) return 'Nullable(String)';
  if (present.every((v) => typeof v === 'number')) return present.every((v) => Number.isSafeInteger(v)) ? 'Nullable(Int64)' : 'Nullable(Float64)';
  if (present.every((v) => typeof v === 'boolean')) return 'Nullable(Bool)';
  return 'Nullable(String)';
}

function toColumnValue(value: unknown, type: string, column: string, row: number): unknown {
  if (value === null || value === undefined) return null;
  if (type === 'Nullable(String)') return typeof value === 'string' ? value : JSON.stringify(value);
  if (type === 'Nullable(Int64)' && !(typeof value === 'number' && Number.isSafeInteger(value))) {
    throw new TidemarkError('TM_SPINE_BAD_COLUMN', `spine row ${row}, column ${column}: ${JSON.stringify(value)} is not an integer like the rows before it`, { row, column });
  }
  return value;
}

/** A spine: a file (Parquet, CSV, NDJSON) or rows given inline (the HTTP API). */
export type SpineInput = string | readonly Record<string, unknown>[];

async function* spineBatches(input: SpineInput, batchRows: number): AsyncGenerator<FileBatch> {
  if (typeof input === 'string') {
    yield* readFileBatches(input, { batchRows });
    return;
  }
  for (let i = 0; i < input.length; i += batchRows) {
    yield { rows: input.slice(i, i + batchRows).map((value) => (typeof value === 'object' && value !== null && !Array.isArray(value) ? { value } : { value: undefined, error: 'not a JSON object' })), rowStart: i };
  }
}

/**
 * Load a spine into a new table. `joinKeys` are the join keys the requested features need.
 * Errors name the row (1-based, header excluded) and the column.
 */
export async function loadSpine(executor: OfflineExecutor, input: SpineInput, joinKeys: readonly string[], table: string, opts: { batchRows?: number } = {}): Promise<SpineInfo> {
  const path = typeof input === 'string' ? input : 'in the request';
  let columns: [string, string][] | null = null;
  let rows = 0;
  try {
    for await (const batch of spineBatches(input, opts.batchRows ?? 50_000)) {
      if (columns === null) {
        const names: string[] = [];
        for (const r of batch.rows) for (const k of Object.keys(r.value ?? {})) if (!names.includes(k)) names.push(k);
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
        columns = names.map((n) => [n, inferType(batch.rows.map((r) => r.value?.[n]))]);
        await executor.command(
          `CREATE TABLE ${ident(table)} (__row UInt64, __t Int64, ${joinKeys.map((k) => `${ident(joinKeyColumn(k))} String`).join(', ')}${joinKeys.length ? ', ' : ''}${columns.map(([n, t]) => `${ident(n)} ${t}`).join(', ')}) ENGINE = MergeTree ORDER BY __row`,
        );
      }
      const cols = columns;
      const out = batch.rows.map((r, i) => {
        const rowNumber = batch.rowStart + i + 1;
        if (r.value === undefined) throw new TidemarkError('TM_SPINE_BAD_COLUMN', `spine row ${rowNumber}: ${r.error ?? 'unreadable'}`, { row: rowNumber });
        const t = spineTimeMs(r.value[SPINE_TIME_COLUMN]);
        if (t === null) {
          throw new TidemarkError('TM_SPINE_BAD_TIME', `spine row ${rowNumber}, column ${SPINE_TIME_COLUMN}: ${JSON.stringify(r.value[SPINE_TIME_COLUMN])} is not epoch milliseconds or ISO-8601 time`, {
            row: rowNumber,
            column: SPINE_TIME_COLUMN,
          });
        }
        const o: Record<string, unknown> = { __row: batch.rowStart + i, __t: t };
        for (const k of joinKeys) {
          const key = canonicalKeyValue(r.value[k]);
          if (key === null) throw new TidemarkError('TM_SPINE_BAD_KEY', `spine row ${rowNumber}, column ${k}: join key is missing or not a scalar`, { row: rowNumber, column: k });
          o[joinKeyColumn(k)] = key;
        }
        for (const [n, type] of cols) o[n] = toColumnValue(r.value[n], type, n, rowNumber);
        return o;
      });
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
