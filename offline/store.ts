// The offline store: tables from the registry, event loading, and point-in-time datasets streamed
// out of ClickHouse (chDB by default, a server with --clickhouse-url / CLICKHOUSE_URL, or the shards
// of a sharded store with --clickhouse-shards: see shards.ts and sharded-dataset.ts).
import { RecordBatchReader, type RecordBatch } from 'apache-arrow';
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { TidemarkError, type CompiledDefinitions } from '../definitions/index.js';
import { ChdbExecutor } from './chdb.js';
import { ClickHouseExecutor, type ClickHouseConnectionOptions } from './clickhouse.js';
import type { FileResultFormat, OfflineExecutor } from './executor.js';
import { EventLoad, loadEventsFile, type LoadResult } from './load.js';
import { loadParquetWithSql, type SqlParquetLoad, type SqlParquetLoadOptions } from './parquet-load.js';
import { pointInTimeSql, prefixOnlySql, PREFIX_INEXACT, requiredJoinKeys, resolveFeatureRefs } from './point-in-time.js';
import { loadSpine, type SpineInput } from './spine.js';
import { convertJsonLinesText, openShardedDataset, writeShardedDataset } from './sharded-dataset.js';
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

/** A dataset ready to stream (POST /datasets/historical): one of its two streams is read, once, then `release` is called. */
export interface DatasetStream {
  rows: number;
  columns: string[];
  /** The rows as JSON lines (JSONEachRow), in spine order. */
  jsonLines(): AsyncIterable<Uint8Array>;
  /** The rows as Arrow record batches, in spine order. */
  arrowBatches(): AsyncIterable<RecordBatch>;
  release(): Promise<void>;
}

/** Rows per chDB conversion when a sharded dataset is streamed in a format the merge does not give directly. */
const STREAM_CHUNK_ROWS = 8192;

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
      // One SQL query on one node; a sharded store's datasets go through streamDataset and writeDataset.
      throw new TidemarkError('TM_OFFLINE_SHARDS_UNSUPPORTED', 'this reads a dataset with one query on one node, which a sharded offline store does not have: its datasets are served by POST /datasets/historical and tidemark dataset --out', { shards: this.shards.count });
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

  /**
   * Load a spine (a file, or rows) and get its dataset as a stream: on one node, the point-in-time
   * query's own JSON lines or Arrow batches; on a sharded store, each shard's query merged into
   * spine order (sharded-dataset.ts), as JSON lines, or converted to Arrow by chDB in chunks of
   * rows with the column types the shards report. Errors in the spine, the features, or a shard
   * that cannot be reached are raised here.
   */
  async streamDataset(spine: SpineInput, featureRefs: readonly string[]): Promise<DatasetStream> {
    if (this.shards === null) {
      const prepared = await this.prepareDataset(spine, featureRefs);
      return {
        rows: prepared.rows,
        columns: prepared.columns,
        jsonLines: () => this.executor.streamJsonLines(prepared.sql),
        arrowBatches: () => this.executor.arrowBatches(prepared.sql),
        release: () => prepared.release(),
      };
    }
    const dataset = await openShardedDataset(this.shards, this.compiled, spine, featureRefs, join(tmpdir(), `tidemark-dataset-${Date.now()}-${randomBytes(4).toString('hex')}`));
    const encoder = new TextEncoder();
    /** The merged lines in chunks of STREAM_CHUNK_ROWS, newline-terminated. */
    async function* chunks(): AsyncGenerator<string> {
      let buffer = '';
      let n = 0;
      for await (const line of dataset.lines()) {
        buffer += line;
        buffer += '\n';
        if (++n === STREAM_CHUNK_ROWS) {
          yield buffer;
          buffer = '';
          n = 0;
        }
      }
      if (n > 0) yield buffer;
    }
    return {
      rows: dataset.rows,
      columns: dataset.columns,
      async *jsonLines() {
        for await (const text of chunks()) {
          // one feature group: the merged lines are the single-node lines; several: the groups' columns are put in the requested order
          yield dataset.groups === 1 ? encoder.encode(text) : await convertJsonLinesText(text, dataset.structure, dataset.columns, 'JSONEachRow');
        }
      },
      async *arrowBatches() {
        for await (const text of chunks()) {
          for (const batch of RecordBatchReader.from(await convertJsonLinesText(text, dataset.structure, dataset.columns, 'ArrowStream'))) yield batch;
        }
      },
      release: () => dataset.release(),
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
