// Loading a Parquet file with ClickHouse's own Parquet reader (chDB, in-process): rows the source's
// schema surely accepts are told apart in SQL and inserted by one INSERT ... SELECT FROM file(); the
// others (nulls, values out of bounds, anything SQL cannot prove valid) are decoded by hyparquet and
// validated by the stream path's decoder, so bad rows get the dead letters, codes and reasons they
// get on every other path. The rows, events and dead letters are those of loadEventsFile.
//
// "Surely valid" is decided per field from two things: the schema's rule (definitions' fieldRule:
// a number with bounds, a string with lengths or values, a boolean, an event time) and the value
// hyparquet would hand the decoder for the file's column (its Parquet physical and logical type).
// A field whose pair has no exact SQL form makes the whole reader unusable: the caller falls back.
import { resolve } from 'node:path';
import { schemaRules, TidemarkError, type CompiledDefinitions, type FieldRule, type SourcePlan } from '../definitions/index.js';
import { EventDecoder, parquetFileMetadata, readParquetRows, type BadEvent, type DeadLetterSink, type DecodedEvent, type ParquetSchemaElement } from '../ingest/index.js';
import type { OfflineExecutor } from './executor.js';
import { EventLoad, type LoadResult } from './load.js';
import { eventTable, ident, keyColumn, keyFieldsOf, sqlString } from './tables.js';

/** The JS value hyparquet gives for a Parquet column (see ingest/parquet.ts), when SQL can match it exactly. */
export type ParquetValueKind = 'integer' | 'float' | 'string' | 'boolean' | 'timestamp';

const INTEGER_CONVERTED = new Set(['INT_8', 'INT_16', 'INT_32', 'INT_64', 'UINT_8', 'UINT_16', 'UINT_32', 'UINT_64']);

/** What hyparquet makes of a flat column (ingest/parquet.ts turns Dates into epoch ms), or null when SQL cannot follow it. */
export function parquetValueKind(e: ParquetSchemaElement): ParquetValueKind | null {
  if (e.num_children || e.repetition_type === 'REPEATED') return null;
  const ctype = e.converted_type;
  const ltype = e.logical_type?.type;
  switch (e.type) {
    case 'BOOLEAN':
      return ctype === undefined && ltype === undefined ? 'boolean' : null;
    case 'INT32':
    case 'INT64':
      if ((ctype === undefined || INTEGER_CONVERTED.has(ctype)) && (ltype === undefined || ltype === 'INTEGER')) return 'integer';
      if (e.type === 'INT64' && (ltype === 'TIMESTAMP' || ctype === 'TIMESTAMP_MILLIS' || ctype === 'TIMESTAMP_MICROS') && (ctype === undefined || ctype.startsWith('TIMESTAMP_'))) return 'timestamp';
      return null;
    case 'FLOAT':
    case 'DOUBLE':
      return ctype === undefined && ltype === undefined ? 'float' : null;
    case 'BYTE_ARRAY':
      return (ctype === undefined || ctype === 'UTF8' || ctype === 'ENUM') && (ltype === undefined || ltype === 'STRING' || ltype === 'ENUM') ? 'string' : null;
    default:
      return null;
  }
}

/** The columns of a Parquet schema (its root's children), without the fields nested in them. */
export function topLevelColumns(schema: readonly ParquetSchemaElement[]): ParquetSchemaElement[] {
  const out: ParquetSchemaElement[] = [];
  let i = 1;
  const skip = (): void => {
    const e = schema[i++]!;
    for (let c = 0; c < (e.num_children ?? 0); c++) skip();
  };
  for (let c = 0; c < (schema[0]?.num_children ?? 0) && i < schema.length; c++) {
    out.push(schema[i]!);
    skip();
  }
  return out;
}

const MAX_SAFE = '9007199254740991';
/** Event times ClickHouse's DateTime64 holds without clamping (1900-01-02 .. 2262-04-10), in ms. */
const DATETIME64_MIN_MS = '-2208902400000';
const DATETIME64_MAX_MS = '9214646400000';

function sqlNumber(n: number): string {
  return Number.isInteger(n) && Math.abs(n) < 1e21 ? n.toFixed(0) : String(n);
}

/** One field's SQL: the value as the events table stores it, and the conditions that prove the row's value valid. */
export interface FieldSql {
  value: string;
  conditions: string[];
  /** The canonical entity-key text (definitions' canonicalKeyValue), or null when SQL cannot spell it. */
  key: string | null;
}

/**
 * The SQL of a field with a rule over a column of a kind; null when no exact SQL exists. `column` is
 * an identifier; timestamp columns are DateTime64 in ClickHouse, read with millisecond precision.
 */
export function fieldSql(column: string, rule: FieldRule, kind: ParquetValueKind, timestampDigits: number): FieldSql | null {
  const c = ident(column);
  const conditions = [`isNotNull(${c})`];
  switch (rule.kind) {
    case 'number': {
      if (kind === 'integer') conditions.push(`${c} BETWEEN -${MAX_SAFE} AND ${MAX_SAFE}`);
      else if (kind === 'float') {
        conditions.push(`isFinite(${c})`);
        if (rule.integer) conditions.push(`${c} = trunc(${c})`, `abs(${c}) <= ${MAX_SAFE}`);
      } else return null;
      const value = `toFloat64(${c})`;
      if (rule.min) conditions.push(`${value} ${rule.min.inclusive ? '>=' : '>'} ${sqlNumber(rule.min.value)}`);
      if (rule.max) conditions.push(`${value} ${rule.max.inclusive ? '<=' : '<'} ${sqlNumber(rule.max.value)}`);
      return { value, conditions, key: kind === 'integer' ? `toString(${c})` : null };
    }
    case 'string': {
      if (kind !== 'string') return null;
      // JS counts UTF-16 units: never fewer than code points, never more than UTF-8 bytes.
      conditions.push(`isValidUTF8(${c})`);
      if (rule.minLength !== null) conditions.push(`lengthUTF8(${c}) >= ${rule.minLength}`);
      if (rule.maxLength !== null) conditions.push(`length(${c}) <= ${rule.maxLength}`);
      if (rule.values !== null) conditions.push(`${c} IN (${rule.values.map(sqlString).join(', ')})`);
      return { value: c, conditions, key: c };
    }
    case 'boolean':
      return kind === 'boolean' ? { value: c, conditions, key: `if(${c}, 'true', 'false')` } : null;
    case 'timestamp': {
      if (kind === 'integer') {
        conditions.push(`${c} BETWEEN -${MAX_SAFE} AND ${MAX_SAFE}`);
        return { value: `toInt64(${c})`, conditions, key: `toString(${c})` };
      }
      if (kind !== 'timestamp') return null;
      const ms = `toUnixTimestamp64Milli(${c})`;
      // hyparquet truncates to whole milliseconds: only rows without a fraction of one are proven.
      if (timestampDigits === 6) conditions.push(`toUnixTimestamp64Micro(${c}) % 1000 = 0`);
      else if (timestampDigits === 9) conditions.push(`toUnixTimestamp64Nano(${c}) % 1000000 = 0`);
      else if (timestampDigits !== 3) return null;
      conditions.push(`${ms} > ${DATETIME64_MIN_MS}`, `${ms} < ${DATETIME64_MAX_MS}`);
      return { value: ms, conditions, key: null };
    }
  }
}

/** The statements of a SQL load, or why the file cannot be loaded that way. */
export type ParquetLoadPlan = { ok: true; insertColumns: string[]; selectList: string[]; valid: string } | { ok: false; reason: string };

/**
 * Plan a source's load from a Parquet file's schema (hyparquet's metadata) and ClickHouse's view of
 * its columns (DESCRIBE): the column list, the SELECT list and the condition of surely valid rows.
 * `{load:String}` and `{futureLimitMs:Int64}` are left as parameters.
 */
export function planParquetLoad(compiled: CompiledDefinitions, source: SourcePlan, parquetSchema: readonly ParquetSchemaElement[], chTypes: ReadonlyMap<string, string>): ParquetLoadPlan {
  const schema = compiled.schemas.get(source.name);
  const rules = schema ? schemaRules(schema) : null;
  if (!rules) return { ok: false, reason: `the schema of source ${source.name} has a field or check SQL cannot prove (only plain numbers, strings, enums, booleans and event times with bounds)` };
  const byName = new Map(topLevelColumns(parquetSchema).map((e) => [e.name, e]));
  const insertColumns = ['__ts', '__load', '__offset'];
  const selectList: string[] = [];
  const conditions: string[] = [];
  const keys = new Map<string, string>();
  for (const [field, rule] of Object.entries(rules)) {
    const element = byName.get(field);
    if (!element || !chTypes.has(field)) return { ok: false, reason: `the file has no column ${field}` };
    const kind = parquetValueKind(element);
    if (!kind) return { ok: false, reason: `column ${field} (${element.type}${element.logical_type ? ` ${element.logical_type.type}` : ''}) is not one SQL reads exactly as the decoder does` };
    const chType = chTypes.get(field) ?? '';
    const digits = /DateTime64\((\d)/.exec(chType);
    if (kind === 'timestamp' && !digits) return { ok: false, reason: `column ${field} reads as ${chType} in ClickHouse, not DateTime64` };
    const sql = fieldSql(field, rule, kind, digits ? Number(digits[1]) : 0);
    if (!sql) return { ok: false, reason: `column ${field} holds ${kind} values; the schema wants ${rule.kind}` };
    conditions.push(...sql.conditions);
    insertColumns.push(field);
    selectList.push(sql.value);
    if (sql.key !== null) keys.set(field, sql.key);
    if (field === source.eventTimeField) {
      selectList.unshift(sql.value, '{load:String}', '_row_number');
      conditions.push(`${sql.value} <= {futureLimitMs:Int64}`);
    }
  }
  if (!rules[source.eventTimeField]) return { ok: false, reason: `the schema has no event time field ${source.eventTimeField}` };
  for (const field of keyFieldsOf(compiled.registry, source)) {
    const key = keys.get(field);
    if (key === undefined) return { ok: false, reason: `key field ${field}: SQL cannot spell its canonical key text` };
    insertColumns.push(keyColumn(field));
    selectList.push(key);
  }
  return { ok: true, insertColumns, selectList, valid: `coalesce(${conditions.map((c) => `(${c})`).join(' AND ')}, false)` };
}

export interface SqlParquetLoadOptions {
  /** Wall time for the future-skew rule, as the decoder's. */
  nowMs?: () => number;
  /** Where bad rows go besides tm_dead_letters (the quickstart's dead-letter file). */
  deadLetters?: DeadLetterSink;
  batchRows?: number;
}

export type SqlParquetLoad = { ok: true; result: LoadResult; sqlEvents: number; decodedRows: number } | { ok: false; reason: string };

/**
 * Load a Parquet file with ClickHouse's reader; `ok: false` with the reason when it cannot be used
 * (a server, not chDB; a schema or column SQL cannot check exactly). A file already loaded is not read.
 */
export async function loadParquetWithSql(executor: OfflineExecutor, compiled: CompiledDefinitions, sourceName: string, path: string, opts: SqlParquetLoadOptions = {}): Promise<SqlParquetLoad> {
  if (!executor.readsLocalFiles) return { ok: false, reason: `the offline store (${executor.location}) cannot read this machine's files` };
  const decoder = new EventDecoder(compiled, sourceName, opts.nowMs);
  const source = decoder.source;
  const metadata = await parquetFileMetadata(path);
  const file = `file(${sqlString(resolve(path))}, 'Parquet')`;
  const described = await executor.rows<{ name: string; type: string }>(`DESCRIBE TABLE ${file}`);
  const plan = planParquetLoad(compiled, source, metadata.schema, new Map(described.map((d) => [d.name, d.type])));
  if (!plan.ok) return plan;

  const load = await EventLoad.begin(executor, compiled, sourceName, path);
  if (!(load instanceof EventLoad)) return { ok: true, result: load, sqlEvents: 0, decodedRows: 0 };
  const params = { load: load.loadId, futureLimitMs: (opts.nowMs ?? Date.now)() + source.allowedFutureSkewMs };
  const table = ident(eventTable(source.name));
  await executor.command(`INSERT INTO ${table} (${plan.insertColumns.map(ident).join(', ')}) SELECT ${plan.selectList.join(', ')} FROM ${file} WHERE ${plan.valid}`, params);
  const [inserted] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM ${table} WHERE __load = {load:String}`, { load: load.loadId });
  const sqlEvents = Number(inserted?.n ?? 0);
  load.addInserted(sqlEvents);

  // The rest: decoded and validated in JS, in file order, exactly as the replay does.
  const others = await executor.rows<{ n: number }>(`SELECT _row_number AS n FROM ${file} WHERE NOT ${plan.valid} ORDER BY n`, params);
  const rowNumbers = others.map((r) => Number(r.n));
  for await (const batch of readParquetRows(path, rowNumbers, opts.batchRows === undefined ? {} : { batchRows: opts.batchRows })) {
    const good: DecodedEvent[] = [];
    const bad: BadEvent[] = [];
    batch.rows.forEach((row, i) => {
      const decoded = decoder.decodeValue(row, { partition: 0, offset: batch.rowNumbers[i]! });
      if (decoded.ok) good.push(decoded.event);
      else bad.push(decoded.bad);
    });
    opts.deadLetters?.write(bad);
    await load.add(good, bad, batch.rows.length);
  }
  // Every row is either inserted by SQL or decoded: anything else and the load is not recorded.
  const total = metadata.rows;
  if (sqlEvents + rowNumbers.length !== total) {
    throw new TidemarkError('TM_OFFLINE_QUERY', `SQL load of ${path}: ${sqlEvents + rowNumbers.length} rows accounted for, the file has ${total}`, { path, rows: sqlEvents + rowNumbers.length, fileRows: total });
  }
  const result = await load.finish();
  return { ok: true, result, sqlEvents, decodedRows: rowNumbers.length };
}
