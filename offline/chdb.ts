// chDB executor: ClickHouse in-process, data in a local folder (default `.tidemark/`).
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import type { Session } from 'chdb';
import { TidemarkError } from '../definitions/index.js';
import { RecordBatchReader, type RecordBatch } from 'apache-arrow';
import type { FileResultFormat, OfflineExecutor } from './executor.js';
import { sqlString } from './tables.js';

function asOfflineError(e: unknown, sql: string): TidemarkError {
  const message = e instanceof Error ? e.message : String(e);
  return new TidemarkError('TM_OFFLINE_QUERY', `chDB: ${message.split('\n')[0]}`, { statement: sql.slice(0, 200) });
}

/**
 * A row with each integral number beyond 2^53 as a BigInt: chDB refuses to write such a number
 * (it assumes precision was lost), but a double that large is exactly the integer BigInt spells,
 * and a Float64 column reads it back bit for bit (1e20, 2^60, Number.MAX_VALUE).
 */
function withExactIntegers(row: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const name in row) {
    const v = row[name];
    if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) {
      out ??= { ...row };
      out[name] = BigInt(v);
    }
  }
  return out ?? row;
}

/** chDB's Session class, loaded (and libchdb with it) by the first executor: see keepChdbMemory. */
let sessionClass: typeof Session | null = null;

function loadSession(): typeof Session {
  sessionClass ??= (createRequire(import.meta.url)('chdb') as typeof import('chdb')).Session;
  return sessionClass;
}

/**
 * Have chDB's allocator (jemalloc, inside libchdb) keep freed memory for `ms` before it gives it
 * back to the OS, instead of about 5 s (ClickHouse's dirty_decay_ms). A query that needs memory
 * then reuses pages instead of faulting fresh ones in, which is dear on a virtual machine: the
 * monitor's label query took 3.6-3.8 s when it ran 8 s after the one before, 1.1-1.4 s back to
 * back, 0.9-1.5 s after 8 s with a minute kept. For processes that run many queries a few seconds
 * apart (the monitor); not the default, as it raised a 1M-row dataset's peak RSS from 2.1 to 2.6
 * GB. jemalloc reads it when libchdb loads, so it must come before the first ChdbExecutor; false
 * when too late, or when JE_MALLOC_CONF is the user's own.
 */
export function keepChdbMemory(ms = 60_000): boolean {
  if (sessionClass !== null || process.env.JE_MALLOC_CONF !== undefined) return false;
  process.env.JE_MALLOC_CONF = `dirty_decay_ms:${ms}`;
  return true;
}

export class ChdbExecutor implements OfflineExecutor {
  readonly kind = 'chdb' as const;
  readonly readsLocalFiles = true;
  readonly location: string;
  private readonly session: Session;
  /** The end of the last call waiting or running (see turn). */
  private queue: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.location = resolve(dataDir, 'chdb');
    mkdirSync(this.location, { recursive: true });
    // Numbers as JSON numbers (not quoted 64-bit strings), so rows read back as they went in;
    // Arrow uncompressed, which every Arrow reader (apache-arrow JS included) can read.
    this.session = new (loadSession())(this.location, {
      connectionArgs: ['--output_format_json_quote_64bit_integers=0', '--output_format_arrow_compression_method=none'],
    });
  }

  /**
   * Wait for this session's turn; call the function returned when done. A query sent while a
   * stream of the same session is open ends that stream ("No active streaming query"), so every
   * call takes its turn and a stream holds it until it ends (its consumer must not query this
   * executor before then).
   */
  private async turn(): Promise<() => void> {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const before = this.queue;
    this.queue = before.then(() => done);
    await before;
    return release;
  }

  async command(sql: string, params: Record<string, unknown> = {}): Promise<void> {
    const release = await this.turn();
    try {
      await this.session.queryBindAsync(sql, params, { format: 'Null' });
    } catch (e) {
      throw asOfflineError(e, sql);
    } finally {
      release();
    }
  }

  async rows<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
    const release = await this.turn();
    try {
      const result = await this.session.queryBindAsync(sql, params, { format: 'JSONEachRow' });
      const text = result.text();
      return text.length === 0 ? [] : text.trimEnd().split('\n').map((line) => JSON.parse(line) as T);
    } catch (e) {
      throw asOfflineError(e, sql);
    } finally {
      release();
    }
  }

  async writeFile(sql: string, format: FileResultFormat, path: string, params: Record<string, unknown> = {}): Promise<void> {
    // ClickHouse writes the file itself, block by block. INTO OUTFILE takes no bound parameter,
    // so the path goes in as an escaped literal.
    await this.command(`${sql} INTO OUTFILE ${sqlString(resolve(path))} TRUNCATE FORMAT ${format}`, params);
  }

  /** chDB streams one complete output per block: right for row formats, wrong for Parquet or Arrow files. */
  private async *blocks(sql: string, format: string, params: Record<string, unknown>): AsyncIterable<Uint8Array> {
    const release = await this.turn();
    try {
      for await (const chunk of this.session.queryStreamBind(sql, params, { format })) yield chunk.raw();
    } catch (e) {
      throw asOfflineError(e, sql);
    } finally {
      release();
    }
  }

  streamJsonLines(sql: string, params: Record<string, unknown> = {}): AsyncIterable<Uint8Array> {
    return this.blocks(sql, 'JSONEachRow', params);
  }

  async *arrowBatches(sql: string, params: Record<string, unknown> = {}): AsyncIterable<RecordBatch> {
    for await (const block of this.blocks(sql, 'ArrowStream', params)) {
      for (const batch of RecordBatchReader.from(block)) yield batch;
    }
  }

  async insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return;
    const release = await this.turn();
    try {
      await this.session.insert({ table, values: rows.map(withExactIntegers) });
    } catch (e) {
      throw asOfflineError(e, `INSERT INTO ${table}`);
    } finally {
      release();
    }
  }

  async insertTabSeparated(table: string, columns: readonly string[], text: Uint8Array): Promise<void> {
    if (text.length === 0) return;
    const release = await this.turn();
    try {
      // Raw bytes: handed to the engine as they are, parsed on its thread, not serialized here.
      await this.session.insert({ table, columns: [...columns], values: text, format: 'TabSeparated' });
    } catch (e) {
      throw asOfflineError(e, `INSERT INTO ${table} FORMAT TabSeparated`);
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    this.session.close();
  }
}
