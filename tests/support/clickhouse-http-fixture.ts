// TEST FIXTURE, NOT CLICKHOUSE. A small node:http server that answers the subset of ClickHouse's
// HTTP interface that @clickhouse/client 1.x sends, by running each request's SQL on one chDB
// session (ClickHouse compiled as a library, in this process). It exists so the
// @clickhouse/client code path of the offline store (offline/clickhouse.ts) runs in CI where no
// ClickHouse server is available. The SQL engine is real ClickHouse (chDB); the HTTP layer around
// it is ours, written to match the server's behaviour as the client observes it. Where
// CLICKHOUSE_URL names a real server, the tests use that instead.
//
// Covered:
//   - POST / with the query in the body; the `query` URL parameter (with the body appended after a
//     newline, as the server does); INSERT ... FORMAT <fmt> in `query` with the data in the body
//     (chDB's raw insert for its text formats, otherwise the query with the data inline);
//     GET / (no query: "Ok.\n") and GET /?query=...; GET|HEAD /ping ("Ok.\n").
//   - `param_<name>` bound parameters, in the URL or in a multipart/form-data body, bound by the
//     engine through chDB's queryBindAsync / queryStreamBind (never spliced into the SQL). The
//     client sends them in ClickHouse's Escaped text form; the fixture decodes that form for scalar
//     types, which chDB re-encodes, so the engine binds the same value a server would.
//   - `database` (URL parameter or X-ClickHouse-Database header), `query_id` (echoed in
//     X-ClickHouse-Query-Id), `default_format` (or X-ClickHouse-Format request header), and every
//     other URL parameter as a ClickHouse setting for that request only (SET on the session before
//     the query, undone before the next request that does not send it). An unknown setting fails
//     like on a server (UNKNOWN_SETTING, 404). A SET or USE statement lasts for its own request
//     only, as on a server without an HTTP session. wait_end_of_query=1 buffers the whole answer.
//   - Output in the query's FORMAT (or the default format, else TabSeparated). Row formats without
//     a header (JSONEachRow, TSV, CSV, ...) stream block by block with backpressure; every other
//     format (Parquet, Arrow, ArrowStream, *WithNames, JSON, ...) is computed whole and sent as one
//     body, because chDB's queryStream emits one complete output (its own header, schema or
//     footer) per block.
//   - Errors: the status the server gives for the exception code (exceptionCodeToHTTPStatus: 400,
//     404, 500, ...), X-ClickHouse-Exception-Code, and a body `Code: <n>. DB::Exception: <message>
//     (<NAME>) (version <v>)`, so the client raises its ClickHouseError. An error after streaming
//     started is written in-band as ClickHouse 25.11+ does (the X-ClickHouse-Exception-Tag block).
//   - Multi-statement requests are refused (SYNTAX_ERROR), and so is INTO OUTFILE
//     (INTO_OUTFILE_NOT_ALLOWED), as a server refuses them, although chDB itself accepts both.
//   - Compression: request bodies with Content-Encoding gzip, deflate or br; responses compressed
//     with gzip, deflate or br when enable_http_compression=1 and Accept-Encoding asks for one.
//   - X-ClickHouse-Summary (read/written rows and bytes, elapsed) on answers computed whole,
//     X-ClickHouse-Format, X-ClickHouse-Timezone, X-ClickHouse-Server-Display-Name.
//
//   - with `users` (startClickHouseHttpFixture's options): user and password checked on every
//     request, from HTTP basic auth, X-ClickHouse-User/X-ClickHouse-Key or the user/password URL
//     parameters; a wrong one is refused as a server does (AUTHENTICATION_FAILED, code 516, 403;
//     REQUIRED_PASSWORD, 401, when none is sent); /ping stays open, as on a server.
//   - with `tls`: HTTPS (node:https) with the given certificate and key, instead of HTTP.
//
// Not covered (a request that needs one of these gets NOT_IMPLEMENTED, 501, or the gap is noted):
//   - without `users`, authentication (credentials are accepted and ignored); roles, quotas, readonly;
//   - HTTP sessions (session_id), ClickHouse's own compressed framing (compress=1 / decompress=1),
//     zstd and the other codecs besides gzip/deflate/br, external tables, progress headers
//     (send_progress_in_http_headers is accepted as a setting but sends nothing), /play,
//     /replicas_status and the other handlers;
//   - concurrency: requests run one at a time, in arrival order, on the one chDB session (a response
//     being streamed holds it until it ends), where a server runs them in parallel;
//   - bodies are read whole before the query runs (a server streams them into the INSERT), and
//     answers in non-row formats are built whole in memory (a server streams them): fine for tests,
//     not for large data;
//   - GET queries are not made read-only; composite parameters (Array, Map, Tuple) whose text holds
//     a backslash or a control character (so also a string element with a quote, which the client
//     escapes) are refused, since chDB would escape them again; file() and other table functions
//     read this machine's files like clickhouse-local, not a server's user_files; temporary tables
//     outlive their request (one session underneath).
//
// libchdb binds one data directory per process: this fixture's session must be the only chDB
// session of the process (vitest runs each test file in its own process; do not open ChdbExecutor
// in a file that starts this fixture).
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { Session } from 'chdb';

export interface ClickHouseHttpFixtureOptions {
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { cert: Buffer; key: Buffer };
  /** Accept only these users (name -> password); default: any credentials, unchecked. */
  users?: Record<string, string>;
}

export interface ClickHouseHttpFixture {
  /** http(s)://127.0.0.1:<port>, for createClient({ url }) or OfflineStore.open({ clickhouseUrl }). */
  url: string;
  /** Stop listening, drop open connections, wait for the running query, close the chDB session. */
  close(): Promise<void>;
}

/** URL parameters that are part of the HTTP protocol, not settings. */
const PROTOCOL_PARAMS = new Set(['query', 'database', 'default_format', 'query_id', 'user', 'password', 'quota_key', 'buffer_size', 'wait_end_of_query']);
/** Protocol features this fixture does not implement: refused rather than silently ignored. */
const UNSUPPORTED_PARAMS: Record<string, string> = {
  session_id: 'HTTP sessions (session_id)',
  session_timeout: 'HTTP sessions (session_timeout)',
  session_check: 'HTTP sessions (session_check)',
  compress: "ClickHouse's compressed response framing (compress=1)",
  decompress: "ClickHouse's compressed request framing (decompress=1)",
  role: 'roles',
  readonly: 'the readonly setting (it would lock the shared session)',
};
/** Formats whose output per block concatenates to the output of the whole result. */
const STREAMED_FORMATS = new Set(
  [
    'TabSeparated', 'TSV', 'TabSeparatedRaw', 'TSVRaw', 'Raw', 'CSV', 'JSONEachRow', 'NDJSON', 'JSONLines', 'JSONStringsEachRow', 'JSONCompactEachRow',
    'JSONCompactStringsEachRow', 'RowBinary', 'LineAsString', 'Null',
  ].map((f) => f.toLowerCase()),
);
/** Formats chDB's raw insert takes (its whitelist). */
const RAW_INSERT_FORMATS = new Map(
  ['JSONEachRow', 'JSONCompactEachRow', 'CSV', 'CSVWithNames', 'TSV', 'TabSeparated', 'TSVWithNames', 'TabSeparatedWithNames'].map((f) => [f.toLowerCase(), f]),
);
/** exceptionCodeToHTTPStatus of ClickHouse's HTTP server, by error name. */
const STATUS_BY_ERROR: [number, string[]][] = [
  [401, ['REQUIRED_PASSWORD']],
  [403, ['UNKNOWN_USER', 'WRONG_PASSWORD', 'AUTHENTICATION_FAILED', 'SET_NON_GRANTED_ROLE', 'ACCESS_DENIED']],
  [
    400,
    [
      'BAD_ARGUMENTS', 'CANNOT_COMPILE_REGEXP', 'CANNOT_PARSE_TEXT', 'CANNOT_PARSE_ESCAPE_SEQUENCE', 'CANNOT_PARSE_QUOTED_STRING', 'CANNOT_PARSE_DATE',
      'CANNOT_PARSE_DATETIME', 'CANNOT_PARSE_NUMBER', 'CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING', 'CANNOT_PARSE_IPV4', 'CANNOT_PARSE_IPV6',
      'CANNOT_PARSE_INPUT_ASSERTION_FAILED', 'CANNOT_PARSE_UUID', 'DUPLICATE_COLUMN', 'ILLEGAL_COLUMN', 'UNKNOWN_ELEMENT_IN_AST', 'UNKNOWN_TYPE_OF_AST_NODE',
      'THERE_IS_NO_COLUMN', 'TOO_DEEP_AST', 'TOO_BIG_AST', 'UNEXPECTED_AST_STRUCTURE', 'SYNTAX_ERROR', 'INCORRECT_DATA', 'TYPE_MISMATCH',
      'VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE',
    ],
  ],
  [
    404,
    [
      'UNKNOWN_TABLE', 'UNKNOWN_FUNCTION', 'UNKNOWN_IDENTIFIER', 'UNKNOWN_TYPE', 'UNKNOWN_STORAGE', 'UNKNOWN_DATABASE', 'UNKNOWN_SETTING',
      'UNKNOWN_DIRECTION_OF_SORTING', 'UNKNOWN_AGGREGATE_FUNCTION', 'UNKNOWN_FORMAT', 'UNKNOWN_DATABASE_ENGINE', 'UNKNOWN_TYPE_OF_QUERY', 'UNKNOWN_ROLE',
    ],
  ],
  [413, ['QUERY_IS_TOO_LARGE']],
  [501, ['NOT_IMPLEMENTED']],
  [503, ['SOCKET_TIMEOUT', 'CANNOT_OPEN_FILE', 'CANNOT_SCHEDULE_TASK']],
  [411, ['HTTP_LENGTH_REQUIRED']],
  [408, ['TIMEOUT_EXCEEDED']],
  [415, ['UNSUPPORTED_MEDIA_TYPE']],
];

interface Reported {
  code: number;
  name: string;
  message: string;
}

/** A ClickHouse exception raised by the fixture itself: its error name (the code is looked up). */
class ServerException extends Error {
  constructor(
    readonly errorName: string,
    message: string,
    readonly code?: number,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// SQL scanning: just enough lexing to find statement boundaries, the FORMAT clause, INSERT data
// and INTO OUTFILE outside string literals, quoted identifiers and comments.

interface Word {
  text: string;
  start: number;
  end: number;
  depth: number;
}

interface ScannedQuery {
  words: Word[];
  /** Offset of a second statement, if any (multi-statement). */
  secondStatementAt: number | null;
  /** For INSERT ... FORMAT x: where the inline data begins (after the format name). */
  insertDataAt: number | null;
}

function scanSql(sql: string): ScannedQuery {
  const words: Word[] = [];
  let depth = 0;
  let i = 0;
  let statementEnded = false;
  const n = sql.length;
  const skipQuoted = (quote: string): void => {
    i++;
    while (i < n) {
      const c = sql[i]!;
      if (c === '\\') i += 2;
      else if (c === quote) {
        if (sql[i + 1] === quote) i += 2;
        else {
          i++;
          return;
        }
      } else i++;
    }
  };
  while (i < n) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++;
      continue;
    }
    if (c === '#' && (sql[i + 1] === ' ' || sql[i + 1] === '!')) {
      while (i < n && sql[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && sql[i + 1] === '*') {
      let nesting = 0;
      while (i < n) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          nesting++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          nesting--;
          i += 2;
          if (nesting === 0) break;
        } else i++;
      }
      continue;
    }
    if (statementEnded) return { words, secondStatementAt: i, insertDataAt: null };
    if (c === "'" || c === '"' || c === '`') {
      skipQuoted(c);
      continue;
    }
    if (c === '$') {
      const tag = /^\$([A-Za-z0-9_]*)\$/.exec(sql.slice(i));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
        continue;
      }
    }
    if (/[A-Za-z_]/.test(c)) {
      const start = i;
      while (i < n && /[A-Za-z0-9_]/.test(sql[i]!)) i++;
      const word: Word = { text: sql.slice(start, i), start, end: i, depth };
      words.push(word);
      // INSERT ... FORMAT <name>: what follows the name is data, not SQL.
      const prev = words[words.length - 2];
      if (words[0]!.text.toUpperCase() === 'INSERT' && depth === 0 && prev?.text.toUpperCase() === 'FORMAT' && prev.depth === 0) {
        return { words, secondStatementAt: null, insertDataAt: i };
      }
      continue;
    }
    if (c === '(' || c === '[') depth++;
    else if (c === ')' || c === ']') depth--;
    else if (c === ';' && depth === 0) statementEnded = true;
    i++;
  }
  return { words, secondStatementAt: null, insertDataAt: null };
}

/** ClickHouse's Escaped text form (readEscapedString) decoded to the value it stands for. */
function decodeEscaped(text: string): string {
  if (!text.includes('\\')) return text;
  const bytes: number[] = [];
  const input = Buffer.from(text, 'utf8');
  const simple: Record<string, number> = { a: 7, b: 8, e: 0x1b, f: 0x0c, n: 0x0a, r: 0x0d, t: 0x09, v: 0x0b, '0': 0 };
  for (let i = 0; i < input.length; i++) {
    const b = input[i]!;
    if (b !== 0x5c || i + 1 >= input.length) {
      bytes.push(b);
      continue;
    }
    const next = String.fromCharCode(input[i + 1]!);
    const hex = next === 'x' ? /^[0-9A-Fa-f]{2}/.exec(input.subarray(i + 2, i + 4).toString('latin1')) : null;
    if (hex) {
      bytes.push(parseInt(hex[0], 16));
      i += 3;
    } else if (next === 'N') {
      i += 1; // \N reads as nothing inside a string
    } else {
      const decoded = simple[next] ?? input[i + 1]!;
      // like ClickHouse: an unknown escape keeps its backslash (so 'a\%' stays a\% for LIKE)
      if (!(next in simple) && !['\\', "'", '"', '`', '/'].includes(next) && decoded >= 0x20) bytes.push(0x5c);
      bytes.push(decoded);
      i += 1;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

const sqlString = (value: string): string => `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
const backquoted = (name: string): string => `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;

/** `{name:Type}` placeholders of a query: the declared type of each name. */
function placeholderTypes(sql: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of sql.matchAll(/\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}/g)) if (!types.has(m[1]!)) types.set(m[1]!, m[2]!);
  return types;
}

/** A parameter's value as the JS value chDB's binder turns back into the same Escaped text. */
function bindValue(name: string, raw: string, type: string | undefined): string | null {
  if (raw === '\\N') return null; // chDB sends null as \N, exactly the text received
  const composite = type !== undefined && /^(?:(?:Nullable|LowCardinality)\(\s*)*(?:Array|Map|Tuple|Nested|Variant|Dynamic|JSON|Object)\b/i.test(type);
  if (!composite) return decodeEscaped(raw);
  // A server parses a composite value's text directly; chDB would escape these characters first.
  if (/[\\\0\b\f\n\r\t]/.test(raw)) {
    throw new ServerException('NOT_IMPLEMENTED', `the chDB test fixture cannot bind parameter ${name} of type ${type}: its text holds a backslash or a control character`);
  }
  return raw;
}

// ---------------------------------------------------------------------------------------------

interface ParsedRequest {
  params: URLSearchParams;
  /** param_<name> values (URL and multipart body). */
  bound: Map<string, string>;
  /** SQL text to run (for an INSERT with body data: the INSERT up to its FORMAT clause). */
  sql: string;
  /** Data of INSERT ... FORMAT x sent in the body. */
  insertData: Buffer | null;
  queryId: string;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  const encoding = String(req.headers['content-encoding'] ?? '').trim().toLowerCase();
  let source: Readable = req;
  if (encoding === 'gzip' || encoding === 'x-gzip') source = req.pipe(zlib.createGunzip());
  else if (encoding === 'deflate') source = req.pipe(zlib.createInflate());
  else if (encoding === 'br') source = req.pipe(zlib.createBrotliDecompress());
  else if (encoding !== '' && encoding !== 'identity') {
    req.resume();
    return Promise.reject(new ServerException('NOT_IMPLEMENTED', `the chDB test fixture does not decode Content-Encoding ${encoding}`));
  }
  return new Promise((ok, fail) => {
    const chunks: Buffer[] = [];
    source.on('data', (c: Buffer) => chunks.push(c));
    source.on('end', () => ok(Buffer.concat(chunks)));
    source.on('error', (e) => fail(new ServerException('CANNOT_DECOMPRESS', `cannot decode the request body: ${e.message}`)));
    req.on('error', fail);
  });
}

/** Parts of a multipart/form-data body: name -> text. */
function multipartParts(body: Buffer, contentType: string): Map<string, string> {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  if (!boundary) throw new ServerException('BAD_ARGUMENTS', 'multipart/form-data request without a boundary');
  const delimiter = `--${boundary[1] ?? boundary[2]!.trim()}`;
  const parts = new Map<string, string>();
  for (const section of body.toString('utf8').split(delimiter).slice(1)) {
    if (section.startsWith('--')) break;
    const headerEnd = section.indexOf('\r\n\r\n');
    if (headerEnd < 0) continue;
    const name = /name="([^"]*)"/i.exec(section.slice(0, headerEnd));
    if (!name) continue;
    parts.set(name[1]!, section.slice(headerEnd + 4).replace(/\r\n$/, ''));
  }
  return parts;
}

async function parseRequest(req: IncomingMessage, url: URL): Promise<ParsedRequest> {
  const params = url.searchParams;
  for (const key of params.keys()) {
    const what = UNSUPPORTED_PARAMS[key];
    if (what) throw new ServerException('NOT_IMPLEMENTED', `the chDB test fixture does not implement ${what}`);
  }
  const bound = new Map<string, string>();
  for (const [k, v] of params) if (k.startsWith('param_')) bound.set(k.slice('param_'.length), v);
  let body = req.method === 'POST' ? await readBody(req) : Buffer.alloc(0);
  let urlQuery = params.get('query');
  const contentType = String(req.headers['content-type'] ?? '');
  if (/^multipart\/form-data/i.test(contentType)) {
    const parts = multipartParts(body, contentType);
    for (const [k, v] of parts) if (k.startsWith('param_')) bound.set(k.slice('param_'.length), v);
    urlQuery = parts.get('query') ?? urlQuery;
    body = Buffer.alloc(0);
  }
  const queryId = params.get('query_id') || randomUUID();
  if (urlQuery !== null && urlQuery.trim() !== '') {
    const scanned = scanSql(urlQuery);
    if (scanned.insertDataAt !== null && urlQuery.slice(scanned.insertDataAt).trim() === '') {
      return { params, bound, sql: urlQuery, insertData: body, queryId };
    }
    return { params, bound, sql: body.length > 0 ? `${urlQuery}\n${body.toString('utf8')}` : urlQuery, insertData: null, queryId };
  }
  return { params, bound, sql: body.toString('utf8'), insertData: null, queryId };
}

function contentTypeOf(format: string): string {
  const f = format.toLowerCase();
  if (f.startsWith('tabseparated') || f.startsWith('tsv')) return 'text/tab-separated-values; charset=UTF-8';
  if (f.startsWith('csv')) return `text/csv; charset=UTF-8; header=${f.includes('withnames') ? 'present' : 'absent'}`;
  if (f === 'jsoneachrow' || f === 'ndjson' || f === 'jsonlines') return 'application/x-ndjson; charset=UTF-8';
  if (f.startsWith('json')) return 'application/json; charset=UTF-8';
  if (f === 'xml') return 'application/xml; charset=UTF-8';
  if (f === 'pretty' || f.startsWith('pretty') || f === 'vertical' || f === 'markdown') return 'text/plain; charset=UTF-8';
  return 'application/octet-stream';
}

/** Start the fixture on 127.0.0.1 (a free port) with chDB data in `dataDir`. */
export async function startClickHouseHttpFixture(dataDir: string, options: ClickHouseHttpFixtureOptions = {}): Promise<ClickHouseHttpFixture> {
  const path = resolve(dataDir);
  mkdirSync(path, { recursive: true });
  const session = new Session(path);
  try {
    return await serve(session, options);
  } catch (e) {
    session.close();
    throw e;
  }
}

/** The user and password of a request, as a server reads them (basic auth, headers, URL parameters). */
function credentialsOf(req: IncomingMessage, url: URL): { user: string; password: string | null } {
  const basic = /^Basic\s+(\S+)$/i.exec(String(req.headers.authorization ?? ''));
  if (basic) {
    const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    return colon < 0 ? { user: text, password: null } : { user: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  const user = (req.headers['x-clickhouse-user'] as string | undefined) ?? url.searchParams.get('user') ?? 'default';
  const password = (req.headers['x-clickhouse-key'] as string | undefined) ?? url.searchParams.get('password');
  return { user, password };
}

async function serve(session: Session, options: ClickHouseHttpFixtureOptions): Promise<ClickHouseHttpFixture> {
  const errorNames = new Map<number, string>();
  const errorCodes = new Map<string, number>();
  const outputFormats = new Map<string, string>();
  let version = '';
  let timezone = 'UTC';
  {
    const errors = await session.queryAsync(`SELECT number AS code, errorCodeToName(number) AS name FROM numbers(2000) WHERE name != ''`, { format: 'JSONEachRow' });
    for (const line of errors.text().trim().split('\n')) {
      const { code, name } = JSON.parse(line) as { code: number | string; name: string };
      errorNames.set(Number(code), name);
      errorCodes.set(name, Number(code));
    }
    const formats = await session.queryAsync(`SELECT name FROM system.formats WHERE is_output`, { format: 'JSONEachRow' });
    for (const line of formats.text().trim().split('\n')) {
      const { name } = JSON.parse(line) as { name: string };
      outputFormats.set(name.toLowerCase(), name);
    }
    const about = JSON.parse((await session.queryAsync(`SELECT version() AS v, timezone() AS tz`, { format: 'JSONEachRow' })).text()) as { v: string; tz: string };
    version = about.v;
    timezone = about.tz;
    // chDB (clickhouse-local) accepts queries without SELECT; a server does not.
    await session.queryAsync(`SET implicit_select = 0`);
  }
  const baseline = new Map([['implicit_select', '0']]);
  const statusOf = (name: string): number => STATUS_BY_ERROR.find(([, names]) => names.includes(name))?.[0] ?? 500;
  /** Any failure as the exception a server reports: code, name, message. */
  const exceptionOf = (e: unknown): Reported => {
    if (e instanceof ServerException) return { code: e.code ?? errorCodes.get(e.errorName) ?? 0, name: e.errorName, message: e.message };
    const message = e instanceof Error ? e.message : String(e);
    const m = /^Code: (\d+)\. DB::Exception: ([\s\S]*?)(?:\. \(([A-Z0-9_]+)\))?\s*$/.exec(message);
    if (m) return { code: Number(m[1]), name: m[3] ?? errorNames.get(Number(m[1])) ?? 'UNKNOWN_EXCEPTION', message: m[2]! };
    // an error of chDB's JavaScript layer (a bad parameter value, for instance)
    return { code: errorCodes.get('BAD_ARGUMENTS') ?? 0, name: 'BAD_ARGUMENTS', message };
  };
  const exceptionText = (e: Reported): string => `Code: ${e.code}. DB::Exception: ${e.message}. (${e.name}) (version ${version})`;
  const notAllowed = (name: string, message: string): ServerException => new ServerException(name, message);

  // Session state the requests change: the current database and the settings set by the last
  // request; each request first brings them to what it asks for.
  let database = 'default';
  const applied = new Map<string, string>();
  async function prepareSession(requestDatabase: string, settings: Map<string, string>): Promise<void> {
    if (requestDatabase !== database) {
      await session.queryAsync(`USE ${backquoted(requestDatabase)}`);
      database = requestDatabase;
    }
    for (const [name] of [...applied]) {
      if (settings.has(name)) continue;
      await session.queryAsync(baseline.has(name) ? `SET ${name} = ${sqlString(baseline.get(name)!)}` : `SET ${name} = DEFAULT`);
      applied.delete(name);
    }
    for (const [name, value] of settings) {
      if (applied.get(name) === value) continue;
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw notAllowed('UNKNOWN_SETTING', `Unknown setting '${name}'`);
      await session.queryAsync(`SET ${name} = ${sqlString(value)}`);
      applied.set(name, value);
    }
  }

  async function changedSettings(): Promise<Map<string, string>> {
    const text = (await session.queryAsync(`SELECT name, value FROM system.settings WHERE changed`, { format: 'JSONEachRow' })).text().trim();
    const rows = text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as { name: string; value: string });
    return new Map(rows.map((r) => [r.name, r.value]));
  }
  /** Undo what a SET or USE statement did to the session: back to `before` and the tracked database. */
  async function restoreSession(before: Map<string, string>): Promise<void> {
    await session.queryAsync(`USE ${backquoted(database)}`);
    const after = await changedSettings();
    for (const name of new Set([...before.keys(), ...after.keys()])) {
      const old = before.get(name);
      if (old === after.get(name)) continue;
      await session.queryAsync(old === undefined ? `SET ${name} = DEFAULT` : `SET ${name} = ${sqlString(old)}`);
    }
  }

  // One request at a time on the one session.
  let queue: Promise<void> = Promise.resolve();
  const exclusive = (work: () => Promise<void>): Promise<void> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  function sendError(res: ServerResponse, error: unknown, queryId: string): void {
    if (res.headersSent || res.destroyed) return;
    const e = exceptionOf(error);
    const body = `${exceptionText(e)}\n`;
    res.writeHead(statusOf(e.name), {
      'Content-Type': 'text/plain; charset=UTF-8',
      'X-ClickHouse-Exception-Code': String(e.code),
      'X-ClickHouse-Query-Id': queryId,
      'X-ClickHouse-Server-Display-Name': 'chdb-test-fixture',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  }

  /** The response body writer: compression when asked for, backpressure, client disconnects. */
  function bodyWriter(req: IncomingMessage, res: ServerResponse, settings: Map<string, string>): { headers: Record<string, string>; write(chunk: Uint8Array): Promise<boolean>; end(): Promise<void> } {
    const headers: Record<string, string> = {};
    let sink: NodeJS.WritableStream = res;
    if (settings.get('enable_http_compression') === '1') {
      const accepted = String(req.headers['accept-encoding'] ?? '').split(',').map((s) => s.trim().split(';')[0]!.toLowerCase());
      const level = Number(settings.get('http_zlib_compression_level') ?? 3);
      const codec = accepted.find((a) => a === 'gzip' || a === 'deflate' || a === 'br');
      if (codec) {
        const compressor = codec === 'gzip' ? zlib.createGzip({ level }) : codec === 'deflate' ? zlib.createDeflate({ level }) : zlib.createBrotliCompress();
        compressor.pipe(res);
        sink = compressor;
        headers['Content-Encoding'] = codec;
      }
    }
    // the connection closed before the answer was complete: the client is gone
    let gone = false;
    const closed = new Promise<void>((ok) =>
      res.once('close', () => {
        gone = !res.writableFinished;
        ok();
      }),
    );
    return {
      headers,
      async write(chunk) {
        if (gone || res.destroyed) return false;
        if (!sink.write(chunk)) await Promise.race([new Promise<void>((ok) => sink.once('drain', ok)), closed]);
        return !gone && !res.destroyed;
      },
      async end() {
        if (gone || res.destroyed) return;
        await Promise.race([new Promise<void>((ok) => res.once('finish', ok)), closed, new Promise<void>((ok) => sink.end(ok))]);
      },
    };
  }

  async function handleQuery(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let queryId = url.searchParams.get('query_id') || randomUUID();
    try {
      const request = await parseRequest(req, url);
      queryId = request.queryId;
      const { params, sql } = request;
      if (sql.trim() === '') throw notAllowed('SYNTAX_ERROR', 'Empty query');
      const scanned = scanSql(sql);
      if (scanned.secondStatementAt !== null) {
        throw notAllowed('SYNTAX_ERROR', `Syntax error (Multi-statements are not allowed): failed at position ${scanned.secondStatementAt + 1}: ${sql.slice(scanned.secondStatementAt, scanned.secondStatementAt + 40)}`);
      }
      const top = scanned.words.filter((w) => w.depth === 0).map((w) => w.text.toUpperCase());
      if (top.some((w, k) => w === 'INTO' && top[k + 1] === 'OUTFILE')) throw notAllowed('INTO_OUTFILE_NOT_ALLOWED', 'INTO OUTFILE is not allowed');
      const isInsert = top[0] === 'INSERT';
      let format = params.get('default_format') ?? (req.headers['x-clickhouse-format'] as string | undefined) ?? 'TabSeparated';
      if (!isInsert) {
        const words = scanned.words;
        for (let k = words.length - 2; k >= 0; k--) {
          const name = outputFormats.get(words[k + 1]!.text.toLowerCase());
          if (words[k]!.depth === 0 && words[k]!.text.toUpperCase() === 'FORMAT' && name) {
            format = name;
            break;
          }
        }
      }
      format = outputFormats.get(format.toLowerCase()) ?? format;
      const types = placeholderTypes(sql);
      const bound: Record<string, string | null> = {};
      for (const [name, raw] of request.bound) bound[name] = bindValue(name, raw, types.get(name));
      const hasParams = Object.keys(bound).length > 0;
      const settings = new Map<string, string>();
      for (const [k, v] of params) if (!PROTOCOL_PARAMS.has(k) && !k.startsWith('param_')) settings.set(k, v);
      const requestDatabase = params.get('database') ?? (req.headers['x-clickhouse-database'] as string | undefined) ?? 'default';
      // chDB streams SELECTs only (other statements: 'Streaming query is not supported').
      const buffered = params.get('wait_end_of_query') === '1' || !STREAMED_FORMATS.has(format.toLowerCase()) || !(top[0] === 'SELECT' || top[0] === 'WITH');
      const tag = randomBytes(12).toString('base64').replace(/[^a-z0-9]/gi, '').toLowerCase().padEnd(16, 'x').slice(0, 16);
      const headers = (extra: Record<string, string>): Record<string, string> => ({
        'Content-Type': isInsert ? 'text/plain; charset=UTF-8' : contentTypeOf(format),
        'X-ClickHouse-Query-Id': queryId,
        'X-ClickHouse-Format': format,
        'X-ClickHouse-Timezone': timezone,
        'X-ClickHouse-Server-Display-Name': 'chdb-test-fixture',
        'X-ClickHouse-Exception-Tag': tag,
        ...extra,
      });

      await exclusive(async () => {
        try {
          await prepareSession(requestDatabase, settings);
          if (request.insertData !== null) {
            const summary = await insertWithData(sql, request.insertData, bound, hasParams);
            const out = bodyWriter(req, res, settings);
            res.writeHead(200, headers({ ...out.headers, 'X-ClickHouse-Summary': JSON.stringify(summary) }));
            await out.end();
            return;
          }
          if (buffered) {
            // Without an HTTP session, a server forgets a request's SET and USE when it ends.
            const sessionStatement = top[0] === 'SET' || top[0] === 'USE';
            const before = sessionStatement ? await changedSettings() : null;
            let result: Awaited<ReturnType<Session['queryAsync']>>;
            try {
              result = hasParams ? await session.queryBindAsync(sql, bound, { format }) : await session.queryAsync(sql, { format });
            } finally {
              if (before) await restoreSession(before);
            }
            const bytes = result.bytes();
            const out = bodyWriter(req, res, settings);
            const summary = { read_rows: String(result.rowsRead), read_bytes: String(result.bytesRead), written_rows: '0', written_bytes: '0', result_bytes: String(bytes.length), elapsed_ns: String(Math.round(result.elapsed * 1e9)) };
            res.writeHead(200, headers({ ...out.headers, 'X-ClickHouse-Summary': JSON.stringify(summary) }));
            if (bytes.length > 0) await out.write(bytes);
            await out.end();
            return;
          }
          // Row formats: stream block by block; the first block decides between an HTTP error and
          // a 200, later errors go in-band like a server's.
          const stream = hasParams ? session.queryStreamBind(sql, bound, { format }) : session.queryStream(sql, { format });
          const chunks = stream[Symbol.asyncIterator]();
          let first: IteratorResult<{ raw(): Uint8Array }>;
          try {
            first = await chunks.next();
          } catch (e) {
            await chunks.return?.();
            throw e;
          }
          const out = bodyWriter(req, res, settings);
          res.writeHead(200, headers(out.headers));
          try {
            for (let step = first; !step.done; step = await chunks.next()) {
              if (!(await out.write(step.value.raw()))) break;
            }
          } catch (e) {
            const ex = exceptionOf(e);
            const message = exceptionText(ex);
            await out.write(Buffer.from(`\r\n__exception__\r\n${tag}\r\n${message}\n${Buffer.byteLength(message) + 1} ${tag}\r\n__exception__\r\n`));
          } finally {
            await chunks.return?.();
          }
          await out.end();
        } catch (e) {
          if (!res.headersSent) sendError(res, e, queryId);
          else res.destroy();
        }
      });
    } catch (e) {
      sendError(res, e, queryId);
    }
  }

  /** INSERT ... FORMAT x with its data from the body: chDB's raw insert where it can, else inline. */
  async function insertWithData(sql: string, data: Buffer, bound: Record<string, string | null>, hasParams: boolean): Promise<Record<string, string>> {
    const m = /^\s*INSERT\s+INTO\s+(?:TABLE\s+)?([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)\s*(?:\(([^()]*)\))?\s*FORMAT\s+([A-Za-z]+)\s*;?\s*$/i.exec(sql);
    const columns = m?.[2]?.split(',').map((c) => c.trim().replace(/^`(.*)`$/, '$1'));
    const rawFormat = m ? RAW_INSERT_FORMATS.get(m[3]!.toLowerCase()) : undefined;
    if (m && rawFormat && !hasParams && (columns === undefined || columns.every((c) => /^[A-Za-z0-9_]+$/.test(c)))) {
      if (data.length === 0) return { written_rows: '0', written_bytes: '0' };
      const s = await session.insert({ table: m[1]!, values: data, format: rawFormat as 'JSONEachRow', ...(columns ? { columns } : {}) });
      return { read_rows: String(s.rowsWritten), read_bytes: String(s.bytesSent), written_rows: String(s.rowsWritten), written_bytes: String(s.bytesWritten), elapsed_ns: String(Math.round(s.elapsed * 1e9)) };
    }
    const text = `${sql}\n${data.toString('utf8')}`;
    const r = hasParams ? await session.queryBindAsync(text, bound, { format: 'TabSeparated' }) : await session.queryAsync(text, { format: 'TabSeparated' });
    return { read_rows: String(r.rowsRead), read_bytes: String(r.bytesRead), elapsed_ns: String(Math.round(r.elapsed * 1e9)) };
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://fixture');
    if ((req.method === 'GET' || req.method === 'HEAD') && url.pathname === '/ping') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=UTF-8' });
      res.end(req.method === 'HEAD' ? undefined : 'Ok.\n');
      return;
    }
    if (options.users) {
      const { user, password } = credentialsOf(req, url);
      const expected = options.users[user];
      if (password === null && expected !== undefined && expected !== '') {
        req.resume();
        sendError(res, notAllowed('REQUIRED_PASSWORD', `${user}: Authentication failed: password is required`), url.searchParams.get('query_id') || randomUUID());
        return;
      }
      if (expected === undefined || expected !== (password ?? '')) {
        req.resume();
        sendError(res, notAllowed('AUTHENTICATION_FAILED', `${user}: Authentication failed: password is incorrect, or there is no user with such name`), url.searchParams.get('query_id') || randomUUID());
        return;
      }
    }
    if (url.pathname !== '/') {
      req.resume();
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=UTF-8' });
      res.end(`There is no handle ${url.pathname} (chDB test fixture: only / and /ping)\n`);
      return;
    }
    if (req.method === 'GET' && !url.searchParams.has('query')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=UTF-8' });
      res.end('Ok.\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'POST') {
      req.resume();
      res.writeHead(405, { 'Content-Type': 'text/plain; charset=UTF-8', Allow: 'GET, POST' });
      res.end('Method not allowed (chDB test fixture)\n');
      return;
    }
    void handleQuery(req, res, url);
  };
  const server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createServer(handler);
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | null = null;
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((ok) => server.close(() => ok()));
        server.closeAllConnections();
        await stopped;
        await queue;
        session.close();
      })();
      return closing;
    },
  };
}
