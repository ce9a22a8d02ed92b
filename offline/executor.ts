// The offline executor: one ClickHouse SQL dialect, two thin adapters (chDB in-process, the
// default; @clickhouse/client for a server). Values always travel as bound parameters
// ({name:Type}); identifiers come only from the validated registry.

import type { RecordBatch } from 'apache-arrow';

/** File formats datasets are written in. */
export type FileResultFormat = 'Parquet' | 'Arrow' | 'CSVWithNames' | 'JSONEachRow';

export interface OfflineExecutor {
  /** `chdb` (embedded) or `clickhouse` (a server over HTTP). */
  readonly kind: 'chdb' | 'clickhouse';
  /** Where the data lives, for messages. */
  readonly location: string;
  /** Whether SQL can read this machine's files with file() (chDB in-process: yes; a server: no). */
  readonly readsLocalFiles: boolean;
  /** Run a statement that returns nothing (DDL, INSERT ... SELECT). */
  command(sql: string, params?: Record<string, unknown>): Promise<void>;
  /** Run a query and parse its rows (small results only). */
  rows<T = Record<string, unknown>>(sql: string, params?: Record<string, unknown>): Promise<T[]>;
  /** Run a query and write its result to a local file in a format, streaming (bounded memory). */
  writeFile(sql: string, format: FileResultFormat, path: string, params?: Record<string, unknown>): Promise<void>;
  /** Run a query and stream its result as newline-delimited JSON text. */
  streamJsonLines(sql: string, params?: Record<string, unknown>): AsyncIterable<Uint8Array>;
  /** Run a query and stream its result as Arrow record batches. */
  arrowBatches(sql: string, params?: Record<string, unknown>): AsyncIterable<RecordBatch>;
  /** Insert rows given as objects keyed by column name. */
  insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void>;
  /**
   * Insert rows already encoded as TabSeparated text (one line per row, values escaped with
   * `tabSeparatedValue`) into these columns: the cheap path for many small rows (the feature log).
   */
  insertTabSeparated(table: string, columns: readonly string[], text: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Insert rows in chunks of `chunkRows`, so one INSERT's payload stays bounded whatever the row count. */
export async function insertInChunks(executor: OfflineExecutor, table: string, rows: readonly Record<string, unknown>[], chunkRows = 50_000): Promise<void> {
  for (let i = 0; i < rows.length; i += chunkRows) await executor.insert(table, rows.slice(i, i + chunkRows));
}

/**
 * Rows as TabSeparated text in `columns`' order, for insertTabSeparated: NULL as \N, a boolean as
 * true/false, a number in its shortest form (which ClickHouse reads back as the same double; -0
 * keeps its sign, NaN and infinities as nan/inf), text escaped. Cheaper than rows of values, which
 * the client renders as an INSERT ... VALUES statement for the engine to parse: the flights
 * replay's 160k metric rows (46 MB, mostly their detail JSON) took 2.5 s and 3.3-3.4 CPU s
 * against 3.0 s and 4.0 CPU s.
 */
export function tabSeparatedRows<T>(rows: readonly T[], columns: readonly (keyof T & string)[]): string {
  let text = '';
  for (const row of rows) {
    for (let c = 0; c < columns.length; c++) {
      const v = row[columns[c]!] as unknown;
      if (c > 0) text += '\t';
      if (v === null) text += '\\N';
      else if (typeof v === 'string') text += tabSeparatedValue(v);
      else if (typeof v === 'number') text += Number.isFinite(v) ? (Object.is(v, -0) ? '-0' : String(v)) : Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf';
      else if (typeof v === 'boolean' || typeof v === 'bigint') text += String(v);
      else throw new TypeError(`tabSeparatedRows: column ${columns[c]} holds a ${typeof v}, not a scalar`);
    }
    text += '\n';
  }
  return text;
}

/** A time in epoch milliseconds as DateTime64(3) text in UTC (a bare number is read by its digit count: seconds or milliseconds). */
export function dateTime64MsText(ms: number): string {
  return new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
}

/** A value as a TabSeparated field: backslash, tab, newline and carriage return escaped. */
export function tabSeparatedValue(text: string): string {
  return /[\\\t\n\r]/.test(text) ? text.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r') : text;
}
