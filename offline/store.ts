// The offline store: tables from the registry, event loading, and point-in-time datasets streamed
// out of ClickHouse (chDB by default, a server with --clickhouse-url / CLICKHOUSE_URL, or the shards
// of a sharded store with --clickhouse-shards: see shards.ts and sharded-dataset.ts).
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { extname } from 'node:path';
import { TidemarkError, type CompiledDefinitions } from '../definitions/index.js';
import { ChdbExecutor } from './chdb.js';
import { ClickHouseExecutor, type ClickHouseConnectionOptions } from './clickhouse.js';
import type { FileResultFormat, OfflineExecutor } from './executor.js';
import { EventLoad, loadEventsFile, type LoadResult } from './load.js';
import { loadParquetWithSql, type SqlParquetLoad, type SqlParquetLoadOptions } from './parquet-load.js';
import { pointInTimeSql, prefixOnlySql, PREFIX_INEXACT, requiredJoinKeys, resolveFeatureRefs } from './point-in-time.js';
import { loadSpine, type SpineInput } from './spine.js';
import { writeShardedDataset } from './sharded-dataset.js';
import { ShardSet } from './shards.js';
import { ensureTables, ident } from './tables.js';

export interface OfflineStoreOptions {
  /** A ClickHouse server's HTTP URL; absent: chDB in `dataDir`. */
  clickhouseUrl?: string;
  /** TLS and credentials for `clickhouseUrl`. */
  clickhouse?: ClickHouseConnectionOptions;
  /** The HTTP URLs of a sharded store's shards, in shard order (the order is part of the placement: keep it). */
  clickhouseShards?: readonly string[];
  /** The cluster the shards form, when their servers have Keeper: DDL goes ON CLUSTER once instead of to each shard. */
  clickhouseCluster?: string;
  dataDir?: string;
}

const OUTPUT_FORMATS: Record<string, FileResultFormat> = {
  '.parquet': 'Parquet',
  '.arrow': 'Arrow',
  '.feather': 'Arrow',
  '.csv': 'CSVWithNames',
  '.ndjson': 'JSONEachRow',
  '.jsonl': 'JSONEachRow',
};

/** Whether an error is a prefix-only query's PREFIX_INEXACT (then the full query gives the dataset). */
export function isPrefixInexact(e: unknown): boolean {
  return e instanceof TidemarkError && e.message.includes(PREFIX_INEXACT);
}

export function outputFormatOf(path: string): FileResultFormat {
  const format = OUTPUT_FORMATS[extname(path).toLowerCase()];
  if (!format) {
    throw new TidemarkError('TM_DATASET_BAD_OUTPUT', `cannot tell the dataset format from ${JSON.stringify(path)}`, { path, validExtensions: Object.keys(OUTPUT_FORMATS) });
  }
  return format;
}

export interface DatasetResult {
  rows: number;
  columns: string[];
  seconds: number;
}

/** A dataset query ready to run: its spine is loaded; `release` drops the spine table. */
export interface PreparedDataset {
  sql: string;
  /**
   * The same dataset by prefix sums alone, or null: it fails with PREFIX_INEXACT (isPrefixInexact)
   * when a row's prefixes are not all exact, and `sql` must then be run instead. For outputs that
   * can be dropped on failure (files), not for streams.
   */
  prefixOnlySql: string | null;
  rows: number;
  columns: string[];
  release(): Promise<void>;
}

export class OfflineStore {
  private constructor(
    /** The store's executor; on a sharded store, the home shard's (dead letters, the feature log, sources no view keys). */
    readonly executor: OfflineExecutor,
    readonly compiled: CompiledDefinitions,
    /** The shards of a sharded store (--clickhouse-shards), else null. */
    readonly shards: ShardSet | null = null,
  ) {}

  /** Open the store and create or migrate its tables (on every shard of a sharded store). */
  static async open(compiled: CompiledDefinitions, opts: OfflineStoreOptions = {}): Promise<OfflineStore> {
    if (opts.clickhouseShards && opts.clickhouseShards.length > 0) return OfflineStore.openShards(compiled, opts.clickhouseShards, opts);
    const executor = opts.clickhouseUrl ? new ClickHouseExecutor(opts.clickhouseUrl, opts.clickhouse) : new ChdbExecutor(opts.dataDir ?? '.tidemark');
    const store = new OfflineStore(executor, compiled);
    try {
      await ensureTables(executor, compiled.registry);
    } catch (e) {
      await executor.close();
      throw e;
    }
    return store;
  }

  private static async openShards(compiled: CompiledDefinitions, urls: readonly string[], opts: OfflineStoreOptions): Promise<OfflineStore> {
    const shards = ShardSet.of(urls.map((url) => new ClickHouseExecutor(url, opts.clickhouse)), opts.clickhouseCluster ?? null);
    try {
      if (shards.cluster !== null) await shards.on(0, (home) => ensureTables(home, compiled.registry, { onCluster: shards.cluster! }));
      else await shards.each((executor) => ensureTables(executor, compiled.registry));
    } catch (e) {
      await shards.close();
      throw e;
    }
    return new OfflineStore(shards.home, compiled, shards);
  }

  loadEvents(source: string, path: string, opts: { batchRows?: number; onProgress?: (rows: number) => void } = {}): Promise<LoadResult> {
    return loadEventsFile(this.shards ?? this.executor, this.compiled, source, path, opts);
  }

  /**
   * Load a Parquet file with ClickHouse's own reader, rows SQL cannot prove valid through the decoder;
   * `ok: false` with the reason when that reader cannot be used (then load it another way).
   */
  loadParquetWithSql(source: string, path: string, opts: SqlParquetLoadOptions = {}): Promise<SqlParquetLoad> {
    if (this.shards !== null) return Promise.resolve({ ok: false, reason: 'a sharded store routes every row to its shard in Node' });
    return loadParquetWithSql(this.executor, this.compiled, source, path, opts);
  }

  /** Start a load fed with events decoded elsewhere (the quickstart's replay), or the earlier result. */
  beginLoad(source: string, path: string): Promise<EventLoad | LoadResult> {
    return EventLoad.begin(this.shards ?? this.executor, this.compiled, source, path);
  }

  /**
   * Load a spine (a file, or rows) and build its point-in-time query. Errors in the spine or the features are
   * raised here, before any output exists.
   */
  async prepareDataset(spine: SpineInput, featureRefs: readonly string[]): Promise<PreparedDataset> {
    if (this.shards !== null) {
      throw new TidemarkError('TM_OFFLINE_SHARDS_UNSUPPORTED', 'datasets of a sharded offline store are written to files (tidemark dataset --out); streaming them over HTTP is not built yet', { shards: this.shards.count });
    }
    const requested = resolveFeatureRefs(this.compiled.registry, featureRefs);
    const table = `tm_spine_${Date.now()}_${randomBytes(4).toString('hex')}`;
    const loaded = await loadSpine(this.executor, spine, requiredJoinKeys(requested), table);
    let sql: string;
    let prefixOnly: string | null;
    try {
      sql = pointInTimeSql(requested, loaded);
      prefixOnly = prefixOnlySql(requested, loaded);
    } catch (e) {
      await this.executor.command(`DROP TABLE IF EXISTS ${ident(table)}`);
      throw e;
    }
    return {
      sql,
      prefixOnlySql: prefixOnly,
      rows: loaded.rows,
      columns: [...loaded.columns.map(([n]) => n), ...requested.map((r) => r.column)],
      release: () => this.executor.command(`DROP TABLE IF EXISTS ${ident(table)}`),
    };
  }

  /** Write a dataset to a file whose extension names the format; nothing is left half-written. */
  async writeDataset(spinePath: string, featureRefs: readonly string[], outPath: string): Promise<DatasetResult> {
    const started = performance.now();
    const format = outputFormatOf(outPath);
    if (this.shards !== null) {
      const result = await writeShardedDataset(this.shards, this.compiled, spinePath, featureRefs, outPath, format);
      return { rows: result.rows, columns: result.columns, seconds: result.seconds };
    }
    const prepared = await this.prepareDataset(spinePath, featureRefs);
    const partial = `${outPath}.partial`;
    try {
      // By prefix sums alone first (one pass, no tile windows); where a prefix is not exact, that
      // query fails before the file is used, and the full query writes it. In chDB only: its
      // INTO OUTFILE query fails as a whole, where a server's HTTP answer may already have sent
      // rows (and then carries the error as text in the body, which is no error to the client).
      let written = false;
      if (prepared.prefixOnlySql !== null && this.executor.kind === 'chdb') {
        try {
          await this.executor.writeFile(prepared.prefixOnlySql, format, partial);
          written = true;
        } catch (e) {
          if (!isPrefixInexact(e)) throw e;
        }
      }
      if (!written) await this.executor.writeFile(prepared.sql, format, partial);
      await rename(partial, outPath);
    } catch (e) {
      await rm(partial, { force: true });
      throw e;
    } finally {
      await prepared.release();
    }
    return { rows: prepared.rows, columns: prepared.columns, seconds: (performance.now() - started) / 1000 };
  }

  close(): Promise<void> {
    return this.shards !== null ? this.shards.close() : this.executor.close();
  }
}
