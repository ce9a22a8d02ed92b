// ClickHouse server executor over HTTP (@clickhouse/client): the same SQL as chDB.
import { ClickHouseError, ClickHouseLogLevel, createClient, parseError, type ClickHouseClient } from '@clickhouse/client';
import { isTlsCertificateError, TidemarkError, withoutPassword, withoutSecrets } from '../definitions/index.js';
import { RecordBatchReader, type RecordBatch } from 'apache-arrow';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FileResultFormat, OfflineExecutor } from './executor.js';

/** Network failures (codes of Node's socket errors, and the client's own timeout). */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE']);

/** ClickHouse's answers to bad credentials: the exception names a server gives. */
const AUTH_ERRORS = /\b(?:AUTHENTICATION_FAILED|REQUIRED_PASSWORD|WRONG_PASSWORD|UNKNOWN_USER)\b|Authentication failed/;

function asOfflineError(e: unknown, url: string, sql: string, secrets: readonly (string | undefined)[] = []): TidemarkError {
  if (e instanceof TidemarkError) return e;
  const message = withoutSecrets(e instanceof Error ? e.message : String(e), secrets);
  const code = (e as { code?: unknown } | null)?.code;
  if (!(e instanceof ClickHouseError) && isTlsCertificateError(e)) {
    return new TidemarkError('TM_OFFLINE_TLS', `the TLS connection to ClickHouse at ${url} failed: ${message} (check --clickhouse-ca names the CA that signed the server's certificate, and the URL is https:// only if the port speaks TLS)`, { url, statement: sql.slice(0, 200) });
  }
  if (AUTH_ERRORS.test(message) || (e instanceof ClickHouseError && ['516', '194', '193', '192'].includes(String(e.code)))) {
    return new TidemarkError('TM_OFFLINE_AUTH', `ClickHouse at ${url} refused the credentials: ${message.split('\n')[0]}${e instanceof ClickHouseError && e.type ? ` (${e.type})` : ''} (check the user and the password: the URL's user info, --clickhouse-user, --clickhouse-password-file or CLICKHOUSE_PASSWORD_FILE)`, { url, statement: sql.slice(0, 200) });
  }
  // A ClickHouseError is the server's answer; anything else that failed on the socket (refused,
  // reset, a response cut short: Node's 'aborted') means the server is not reachable.
  const unreachable =
    !(e instanceof ClickHouseError) &&
    ((typeof code === 'string' && UNREACHABLE_CODES.has(code)) || /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|ECONNRESET|socket hang up|^aborted$|Timeout error/i.test(message));
  return new TidemarkError(
    unreachable ? 'TM_OFFLINE_UNREACHABLE' : 'TM_OFFLINE_QUERY',
    unreachable ? `ClickHouse at ${url} is unreachable: ${message}` : `ClickHouse: ${message.split('\n')[0]}`,
    { url, statement: sql.slice(0, 200) },
  );
}

/** TLS and credentials of a ClickHouse connection, beyond what its URL says (they override the URL's user and password). */
export interface ClickHouseConnectionOptions {
  /** PEM CA certificates trusted for an https:// URL (default: Node's CAs). */
  ca?: Buffer;
  username?: string;
  password?: string;
}

const EXCEPTION_MARKER = '__exception__';

/**
 * The body of a streamed answer without the exception a server writes into it when a query fails
 * after rows were sent (ClickHouse 25.11+: `\r\n__exception__\r\n<tag>\r\n<message>\n<length>
 * <tag>\r\n__exception__\r\n`, the tag from the X-ClickHouse-Exception-Tag header): the bytes
 * before it are passed on, then the server's error is thrown. The last bytes of each chunk are
 * held back until the next one arrives, so a marker split across chunks is still found.
 */
async function* withoutInBandException(stream: AsyncIterable<Buffer>, tag: string): AsyncIterable<Buffer> {
  const start = Buffer.from(`\r\n${EXCEPTION_MARKER}\r\n${tag}\r\n`);
  let held: Buffer = Buffer.alloc(0);
  const iterator = stream[Symbol.asyncIterator]();
  try {
    for (let step = await iterator.next(); !step.done; step = await iterator.next()) {
      const buf = held.length > 0 ? Buffer.concat([held, step.value]) : step.value;
      const at = buf.indexOf(start);
      if (at >= 0) {
        if (at > 0) yield buf.subarray(0, at);
        const rest: Buffer[] = [buf.subarray(at + start.length)];
        for (let more = await iterator.next(); !more.done; more = await iterator.next()) rest.push(more.value);
        const text = Buffer.concat(rest).toString('utf8');
        const end = text.lastIndexOf(`\n`, text.lastIndexOf(` ${tag}\r\n${EXCEPTION_MARKER}`));
        throw parseError(end >= 0 ? text.slice(0, end) : text);
      }
      const keep = Math.min(buf.length, start.length - 1);
      if (buf.length > keep) yield buf.subarray(0, buf.length - keep);
      held = buf.subarray(buf.length - keep);
    }
    if (held.length > 0) yield held;
  } finally {
    // a consumer that stops early (or an error) releases the response and its socket
    await iterator.return?.();
  }
}

export class ClickHouseExecutor implements OfflineExecutor {
  readonly kind = 'clickhouse' as const;
  readonly readsLocalFiles = false;
  readonly location: string;
  private readonly client: ClickHouseClient;

  /** The password, kept to scrub it from error messages (a server may echo what it was sent). */
  private readonly secrets: (string | undefined)[];

  constructor(url: string, connection: ClickHouseConnectionOptions = {}) {
    this.location = withoutPassword(url);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TidemarkError('TM_SERVICE_CONFIG', `bad ClickHouse URL ${this.location}: expected http(s)://[user[:password]@]host:port`, { url: this.location });
    }
    if (connection.ca !== undefined && parsed.protocol !== 'https:') {
      throw new TidemarkError('TM_SERVICE_CONFIG', `a ClickHouse CA file was given, but ${this.location} is not an https:// URL`, { url: this.location });
    }
    // The client lets the URL's user info win over its options: take it out, then apply the overrides.
    const fromUrl = parsed.password ? decodeURIComponent(parsed.password) : undefined;
    const username = connection.username ?? (parsed.username ? decodeURIComponent(parsed.username) : undefined);
    const password = connection.password ?? fromUrl;
    parsed.username = '';
    parsed.password = '';
    this.secrets = [password, fromUrl];
    this.client = createClient({
      url: parsed.toString(),
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(connection.ca !== undefined ? { tls: { ca_cert: connection.ca } } : {}),
      request_timeout: 300_000,
      clickhouse_settings: { output_format_json_quote_64bit_integers: 0, output_format_arrow_compression_method: 'none' },
      // failures reach the caller as TidemarkErrors; the client's own error log would repeat them
      log: { level: ClickHouseLogLevel.OFF },
    });
  }

  async command(sql: string, params: Record<string, unknown> = {}): Promise<void> {
    try {
      await this.client.command({ query: sql, query_params: params });
    } catch (e) {
      throw asOfflineError(e, this.location, sql, this.secrets);
    }
  }

  async rows<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
    try {
      const result = await this.client.query({ query: sql, query_params: params, format: 'JSONEachRow' });
      return await result.json<T>();
    } catch (e) {
      throw asOfflineError(e, this.location, sql, this.secrets);
    }
  }

  /** The server's answer in one format, as one continuous byte stream; an error inside it is raised. */
  private async *body(sql: string, format: string, params: Record<string, unknown>): AsyncIterable<Uint8Array> {
    try {
      const result = await this.client.exec({ query: `${sql} FORMAT ${format}`, query_params: params });
      const tag = result.response_headers['x-clickhouse-exception-tag'];
      const stream = result.stream as AsyncIterable<Buffer>;
      yield* typeof tag === 'string' && tag !== '' ? withoutInBandException(stream, tag) : stream;
    } catch (e) {
      throw asOfflineError(e, this.location, sql, this.secrets);
    }
  }

  async writeFile(sql: string, format: FileResultFormat, path: string, params: Record<string, unknown> = {}): Promise<void> {
    await pipeline(Readable.from(this.body(sql, format, params)), createWriteStream(path));
  }

  streamJsonLines(sql: string, params: Record<string, unknown> = {}): AsyncIterable<Uint8Array> {
    return this.body(sql, 'JSONEachRow', params);
  }

  async *arrowBatches(sql: string, params: Record<string, unknown> = {}): AsyncIterable<RecordBatch> {
    const source = this.body(sql, 'ArrowStream', params)[Symbol.asyncIterator]();
    try {
      const reader = await RecordBatchReader.from({ [Symbol.asyncIterator]: () => source });
      for await (const batch of reader) yield batch;
    } finally {
      // apache-arrow's reader does not end its source when the consumer stops early: end it here,
      // so the HTTP answer is dropped rather than left holding a connection and a server query
      await source.return?.(undefined);
    }
  }

  async insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return;
    try {
      await this.client.insert({ table, values: rows as Record<string, unknown>[], format: 'JSONEachRow' });
    } catch (e) {
      throw asOfflineError(e, this.location, `INSERT INTO ${table}`, this.secrets);
    }
  }

  async insertTabSeparated(table: string, columns: readonly string[], text: Uint8Array): Promise<void> {
    if (text.length === 0) return;
    try {
      await this.client.insert({ table, columns: [...columns] as [string, ...string[]], values: Readable.from([text], { objectMode: false }), format: 'TabSeparated' });
    } catch (e) {
      throw asOfflineError(e, this.location, `INSERT INTO ${table} FORMAT TabSeparated`, this.secrets);
    }
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
