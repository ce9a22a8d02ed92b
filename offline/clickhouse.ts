// ClickHouse server executor over HTTP (@clickhouse/client): the same SQL as chDB.
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { TidemarkError } from '../definitions/index.js';
import { RecordBatchReader, type RecordBatch } from 'apache-arrow';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileResultFormat, OfflineExecutor } from './executor.js';

function asOfflineError(e: unknown, url: string, sql: string): TidemarkError {
  const message = e instanceof Error ? e.message : String(e);
  const unreachable = /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|socket hang up|Timeout/i.test(message);
  return new TidemarkError(
    unreachable ? 'TM_OFFLINE_UNREACHABLE' : 'TM_OFFLINE_QUERY',
    unreachable ? `ClickHouse at ${url} is unreachable: ${message}` : `ClickHouse: ${message.split('\n')[0]}`,
    { url, statement: sql.slice(0, 200) },
  );
}

export class ClickHouseExecutor implements OfflineExecutor {
  readonly kind = 'clickhouse' as const;
  readonly location: string;
  private readonly client: ClickHouseClient;

  constructor(url: string) {
    this.location = url;
    this.client = createClient({
      url,
      request_timeout: 300_000,
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0, output_format_arrow_compression_method: 'none' },
    });
  }

  async command(sql: string, params: Record<string, unknown> = {}): Promise<void> {
    try {
      await this.client.command({ query: sql, query_params: params });
    } catch (e) {
      throw asOfflineError(e, this.location, sql);
    }
  }

  async rows<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
    try {
      const result = await this.client.query({ query: sql, query_params: params, format: 'JSONEachRow' });
      return await result.json<T>();
    } catch (e) {
      throw asOfflineError(e, this.location, sql);
    }
  }

  /** The server's answer in one format, as one continuous byte stream. */
  private async *body(sql: string, format: string, params: Record<string, unknown>): AsyncIterable<Uint8Array> {
    try {
      const result = await this.client.exec({ query: `${sql} FORMAT ${format}`, query_params: params });
      for await (const chunk of result.stream as AsyncIterable<Buffer>) yield chunk;
    } catch (e) {
      throw asOfflineError(e, this.location, sql);
    }
  }

  async writeFile(sql: string, format: FileResultFormat, path: string, params: Record<string, unknown> = {}): Promise<void> {
    await pipeline(Readable.from(this.body(sql, format, params)), createWriteStream(path));
  }

  streamJsonLines(sql: string, params: Record<string, unknown> = {}): AsyncIterable<Uint8Array> {
    return this.body(sql, 'JSONEachRow', params);
  }

  async *arrowBatches(sql: string, params: Record<string, unknown> = {}): AsyncIterable<RecordBatch> {
    const reader = await RecordBatchReader.from(this.body(sql, 'ArrowStream', params));
    for await (const batch of reader) yield batch;
  }

  async insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return;
    try {
      await this.client.insert({ table, values: rows as Record<string, unknown>[], format: 'JSONEachRow' });
    } catch (e) {
      throw asOfflineError(e, this.location, `INSERT INTO ${table}`);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
