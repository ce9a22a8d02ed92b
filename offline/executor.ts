// The offline executor: one ClickHouse SQL dialect, two thin adapters (chDB in-process, the
// default; @clickhouse/client for a server). Values always travel as bound parameters
// ({name:Type}); identifiers come only from the validated registry.

/** Result formats the offline store streams out. */
export type ResultFormat = 'Parquet' | 'Arrow' | 'ArrowStream' | 'CSVWithNames' | 'JSONEachRow';

export interface OfflineExecutor {
  /** `chdb` (embedded) or `clickhouse` (a server over HTTP). */
  readonly kind: 'chdb' | 'clickhouse';
  /** Where the data lives, for messages. */
  readonly location: string;
  /** Run a statement that returns nothing (DDL, INSERT ... SELECT). */
  command(sql: string, params?: Record<string, unknown>): Promise<void>;
  /** Run a query and parse its rows (small results only). */
  rows<T = Record<string, unknown>>(sql: string, params?: Record<string, unknown>): Promise<T[]>;
  /** Run a query and stream its result bytes in a format, chunk by chunk. */
  stream(sql: string, format: ResultFormat, params?: Record<string, unknown>): AsyncIterable<Uint8Array>;
  /** Insert rows given as objects keyed by column name. */
  insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void>;
  close(): Promise<void>;
}
