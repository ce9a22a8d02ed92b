// chDB executor: ClickHouse in-process, data in a local folder (default `.tidemark/`).
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Session } from 'chdb';
import { TidemarkError } from '../definitions/index.js';
import type { OfflineExecutor, ResultFormat } from './executor.js';

function asOfflineError(e: unknown, sql: string): TidemarkError {
  const message = e instanceof Error ? e.message : String(e);
  return new TidemarkError('TM_OFFLINE_QUERY', `chDB: ${message.split('\n')[0]}`, { statement: sql.slice(0, 200) });
}

export class ChdbExecutor implements OfflineExecutor {
  readonly kind = 'chdb' as const;
  readonly location: string;
  private readonly session: Session;

  constructor(dataDir: string) {
    this.location = resolve(dataDir, 'chdb');
    mkdirSync(this.location, { recursive: true });
    // Numbers as JSON numbers (not quoted 64-bit strings), so rows read back as they went in.
    this.session = new Session(this.location, { connectionArgs: ['--output_format_json_quote_64bit_integers=0'] });
  }

  async command(sql: string, params: Record<string, unknown> = {}): Promise<void> {
    try {
      await this.session.queryBindAsync(sql, params, { format: 'Null' });
    } catch (e) {
      throw asOfflineError(e, sql);
    }
  }

  async rows<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
    try {
      const result = await this.session.queryBindAsync(sql, params, { format: 'JSONEachRow' });
      const text = result.text();
      return text.length === 0 ? [] : text.trimEnd().split('\n').map((line) => JSON.parse(line) as T);
    } catch (e) {
      throw asOfflineError(e, sql);
    }
  }

  async *stream(sql: string, format: ResultFormat, params: Record<string, unknown> = {}): AsyncIterable<Uint8Array> {
    let stream;
    try {
      stream = this.session.queryStreamBind(sql, params, { format });
      for await (const chunk of stream) yield chunk.raw();
    } catch (e) {
      throw asOfflineError(e, sql);
    }
  }

  async insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return;
    try {
      await this.session.insert({ table, values: rows });
    } catch (e) {
      throw asOfflineError(e, `INSERT INTO ${table}`);
    }
  }

  async close(): Promise<void> {
    this.session.close();
  }
}
