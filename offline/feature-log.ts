// The feature log in the offline store (tables in offline/tables.ts). A logged read is its record's
// JSON text (as the Kafka topic carries it): in chDB (embedded mode) a line of
// tm_feature_log_lines, a File table this process appends to itself (the engine's insert of the
// same bytes cost more than the read they log); elsewhere, and from the Kafka sink, one row of
// tm_feature_log_records (its read time, request id and text). A version-3 read names its
// features by a feature set, a row of tm_feature_log_sets (kept apart, so that emptying the log
// leaves the sets later reads name). A logged prediction is one row of tm_prediction_log.
// `loggedValuesSql` expands the records of every version to one row per (request, entity row,
// feature) when they are read. Here too: the embedded sink (quickstart: straight to the store);
// `dataset --from-log` (the values actually served, one column per feature, labels joined by
// request id); and the logged reads as a point-in-time spine, so that the monitor can compare what
// was served with what the offline path computes.
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { TidemarkError, type Registry, type Scalar, type ViewPlan } from '../definitions/index.js';
import { featureSetsOf, loggedFeaturesOf, readFileBatches, type BadFeatureLogRecord, type EncodedFeatureLogRecord, type EncodedFeatureSet, type FeatureLogBatch, type FeatureLogRecord, type FeatureLogSink, type FeatureSetRecord, type LoggedPredictionRecord } from '../ingest/index.js';
import { tabSeparatedValue, type OfflineExecutor } from './executor.js';
import { pointInTimeSql, resolveFeatureRefs } from './point-in-time.js';
import { shardedPointInTimeRows } from './sharded-dataset.js';
import type { ShardSet } from './shards.js';
import { inferType, joinKeyColumn, SPINE_TIME_COLUMN, toColumnValue, type SpineInfo } from './spine.js';
import { FEATURE_LOG_LINES_TABLE, FEATURE_LOG_TABLE, FEATURE_SETS_TABLE, featureLogLinesPath, featureLogTablesOf, type FeatureLogTables, ident, PREDICTION_LOG_TABLE, sqlString } from './tables.js';
import { outputFormatOf, type DatasetResult } from './store.js';

/** The `source` of feature-log dead letters in tm_dead_letters. */
export const FEATURE_LOG_DEAD_LETTER_SOURCE = 'feature_log';

/**
 * Whether a decoded record can be stored. A read naming a view or feature the registry does not
 * hold, lacking a view's join key, or naming an entity that is no view's join key, is a bad record
 * (its values could never be compared with the offline path); so is a version-3 read whose feature
 * set (`sets`) is unknown, and a feature set naming a feature the registry does not hold.
 */
export function checkFeatureLogRecord(record: FeatureLogRecord, registry: Registry, sets: (featuresId: string) => FeatureSetRecord | undefined = () => undefined): { ok: true } | { ok: false; bad: Omit<BadFeatureLogRecord, 'raw'> } {
  if (record.kind === 'prediction') return { ok: true };
  if (record.kind === 'features') {
    for (const [i, ref] of record.features.entries()) {
      const [viewName, feature] = ref.split(':');
      if (!registry.views.some((v) => v.name === viewName && v.features.some((p) => p.name === feature))) {
        return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `features.${i}`, reason: `feature-log feature set ${record.features_id}, field features.${i}: ${ref} is not a feature of registry ${registry.version}` } };
      }
    }
    return { ok: true };
  }
  const joinKeys = Object.keys(record.entities);
  const features = loggedFeaturesOf(record, sets);
  if (features === null) return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: 'features_id', reason: `feature-log record, field features_id: no feature set ${(record as { features_id?: string }).features_id} came before it (a feature set record, kind "features", names a read's features)` } };
  const rows = Object.values(record.entities)[0]?.length ?? 0;
  if (record.v === 3 && features.length * rows !== record.values.length) {
    return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: 'values', reason: `feature-log record, field values: ${record.values.length} values for ${features.length} features x ${rows} entity rows (feature set ${record.features_id})` } };
  }
  // As on the serving path, every entity key is a join key of a view read (so it can be a dataset column).
  const needed = new Set(features.flatMap((f) => registry.views.find((v) => v.name === f.view)?.joinKeys ?? []));
  const extra = joinKeys.find((k) => !needed.has(k));
  if (extra !== undefined) return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `entities.${extra}`, reason: `feature-log record, field entities.${extra}: not a join key of the views read (${[...needed].join(', ') || 'none'})` } };
  for (const [i, f] of features.entries()) {
    const view = registry.views.find((v) => v.name === f.view);
    if (!view || !view.features.some((p) => p.name === f.feature)) {
      return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `features.${i}`, reason: `feature-log record, field features.${i}: ${f.view}:${f.feature} is not a feature of registry ${registry.version}` } };
    }
    const missing = view.joinKeys.find((k) => !(k in record.entities));
    if (missing !== undefined) return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `entities.${missing}`, reason: `feature-log record, field entities.${missing}: view ${view.name} needs join key ${missing}` } };
  }
  return { ok: true };
}

/** The tm_dead_letters row of a bad feature-log record. */
export function featureLogDeadLetterRow(bad: BadFeatureLogRecord, loadId: string, position: number): Record<string, unknown> {
  return { source: FEATURE_LOG_DEAD_LETTER_SOURCE, load_id: loadId, position, code: bad.code, field: bad.field, reason: bad.reason, raw: bad.raw, at: Date.now() };
}

const RECORD_COLUMNS = ['read_ms', 'request_id', 'record', '__load', '__offset'] as const;

/** One tm_feature_log_records row as a TabSeparated line. */
function recordLine(readMs: number, requestId: string, json: string, loadId: string, offset: number): string {
  return `${readMs}\t${tabSeparatedValue(requestId)}\t${tabSeparatedValue(json)}\t${tabSeparatedValue(loadId)}\t${offset}\n`;
}

function predictionRow(p: LoggedPredictionRecord, loadId: string, offset: number): Record<string, unknown> {
  return { request_id: p.request_id, model: p.model, score: p.score, at_ms: p.at_ms, __load: loadId, __offset: offset };
}

/**
 * Store decoded records (the Kafka sink's path, in their order: a feature set before the reads
 * that use it); bad ones go to tm_dead_letters, their reason after `context` (where the record
 * was: a line of a message). `sets` holds the feature sets already known (the
 * sink's cache, filled from the store): the valid ones met here are added. Returns how many
 * records were bad.
 */
export async function insertFeatureLogRecords(
  executor: OfflineExecutor,
  registry: Registry,
  records: readonly { record: FeatureLogRecord; raw: string; offset: number; context?: string }[],
  loadId: string,
  sets: Map<string, FeatureSetRecord> = new Map(),
): Promise<number> {
  const reads: string[] = [];
  const newSets: { id: string; json: string }[] = [];
  const predictions: Record<string, unknown>[] = [];
  const dead: Record<string, unknown>[] = [];
  for (const { record, raw, offset, context = '' } of records) {
    const checked = checkFeatureLogRecord(record, registry, (id) => sets.get(id));
    if (!checked.ok) dead.push(featureLogDeadLetterRow({ ...checked.bad, reason: context + checked.bad.reason, raw }, loadId, offset));
    else if (record.kind === 'prediction') predictions.push(predictionRow(record, loadId, offset));
    else if (record.kind === 'features') {
      if (!sets.has(record.features_id)) newSets.push({ id: record.features_id, json: raw });
      sets.set(record.features_id, record);
    } else reads.push(recordLine(record.read_time_ms, record.request_id, record.v === 3 ? raw : JSON.stringify(record), loadId, offset));
  }
  if (dead.length > 0) await executor.insert('tm_dead_letters', dead);
  // Sets before the reads that name them (a set stored twice is harmless: it is read by id).
  await insertFeatureSets(executor, newSets);
  if (predictions.length > 0) await executor.insert(PREDICTION_LOG_TABLE, predictions);
  if (reads.length > 0) await executor.insertTabSeparated(FEATURE_LOG_TABLE, RECORD_COLUMNS, Buffer.from(reads.join(''), 'utf8'));
  return dead.length;
}

async function insertFeatureSets(executor: OfflineExecutor, sets: readonly { id: string; json: string }[]): Promise<void> {
  if (sets.length > 0) await executor.insert(FEATURE_SETS_TABLE, sets.map((s) => ({ features_id: s.id, record: s.json })));
}

/** The feature sets stored in the offline store (the Kafka sink's cache starts from them). */
export async function storedFeatureSets(executor: OfflineExecutor): Promise<Map<string, FeatureSetRecord>> {
  const rows = await executor.rows<{ record: string }>(`SELECT record FROM (${FEATURE_SETS_SQL})`);
  return new Map(rows.map((r) => JSON.parse(r.record) as FeatureSetRecord).map((s) => [s.features_id, s]));
}

/**
 * Embedded mode's destination: records written straight to the offline store. They come from this
 * process's own serving path (built from the registry it serves) and POST /feature-log/predictions
 * (validated by its schema), so they are stored without the Kafka path's checks. Into chDB, a read
 * costs one appended line of tm_feature_log_lines (a write of the batch's bytes, no insert);
 * into a ClickHouse server, one TabSeparated line of tm_feature_log_records. A feature set is
 * written once per sink, before its first read.
 */
export class OfflineFeatureLogSink implements FeatureLogSink {
  readonly destination: string;
  private readonly setsWritten = new Set<string>();
  private linesPath: string | null = null;

  constructor(private readonly executor: OfflineExecutor) {
    this.destination = `offline store ${executor.location}`;
  }

  async write(records: readonly EncodedFeatureLogRecord[]): Promise<void> {
    const predictions: Record<string, unknown>[] = [];
    const reads: EncodedFeatureLogRecord[] = [];
    for (const r of records) {
      if (r.kind === 'read') reads.push(r);
      else predictions.push(predictionRow(JSON.parse(r.json.toString()) as LoggedPredictionRecord, 'embedded', 0));
    }
    if (predictions.length > 0) await this.executor.insert(PREDICTION_LOG_TABLE, predictions);
    if (reads.length === 0) return;
    await this.writeSets(featureSetsOf(reads, (id) => this.setsWritten.has(id)));
    if (featureLogTablesOf(this.executor).lines) await this.append(reads);
    else await this.insertRows(reads);
  }

  /** The records as write does them; the arena's reads appended as the bytes they are (chDB), else as rows. */
  async writeBatch({ records, reads }: FeatureLogBatch): Promise<void> {
    if (records.length > 0) await this.write(records);
    if (reads.count === 0) return;
    await this.writeSets(reads.featureSets(0, reads.count, (id) => this.setsWritten.has(id)));
    if (featureLogTablesOf(this.executor).lines) await this.appendLines(reads.lines());
    else await this.insertRows(reads.records());
  }

  private async writeSets(sets: readonly EncodedFeatureSet[]): Promise<void> {
    await insertFeatureSets(this.executor, sets);
    for (const s of sets) this.setsWritten.add(s.id);
  }

  /**
   * chDB: the reads appended to tm_feature_log_lines' file in one write (JSON text holds no raw
   * newline). The file is opened per write, so that a TRUNCATE of the table in between is no
   * trouble; a line cut short by a crash is ended first, so that the next line stays whole (the
   * cut one is skipped when read).
   */
  private async append(reads: readonly EncodedFeatureLogRecord[]): Promise<void> {
    let size = 0;
    for (const r of reads) size += (typeof r.json === 'string' ? r.json.length * 3 : r.json.length) + 1;
    const buffer = Buffer.allocUnsafe(size);
    let bytes = 0;
    for (const r of reads) {
      bytes += typeof r.json === 'string' ? buffer.write(r.json, bytes) : r.json.copy(buffer, bytes);
      buffer[bytes++] = 0x0a;
    }
    await this.appendLines([buffer.subarray(0, bytes)]);
  }

  /** Whole lines (each ending in a newline) appended to tm_feature_log_lines' file in one write. */
  private async appendLines(lines: readonly Buffer[]): Promise<void> {
    this.linesPath ??= await featureLogLinesPath(this.executor);
    const file = await open(this.linesPath, 'a+');
    try {
      const { size: before } = await file.stat();
      const last = Buffer.alloc(1);
      if (before > 0) await file.read(last, 0, 1, before - 1);
      const ended = before === 0 || last[0] === 0x0a;
      await writeAll(file, ended ? lines : [NEWLINE, ...lines]);
    } finally {
      await file.close();
    }
  }

  /** A ClickHouse server: one tm_feature_log_records row per read. */
  private async insertRows(reads: readonly EncodedFeatureLogRecord[]): Promise<void> {
    // One buffer for the batch. A queued read's JSON is UTF-8 bytes already, copied in as they are
    // (JSON.stringify writes no raw tab, newline or carriage return; a backslash is doubled); a
    // string takes at most 3 bytes a UTF-16 unit.
    let size = 0;
    for (const r of reads) size += (typeof r.json === 'string' ? r.json.length * 3 : r.json.length * 2) + r.requestId.length * 3 + EMBEDDED_LINE_EXTRA;
    const buffer = Buffer.allocUnsafe(size);
    let bytes = 0;
    for (const r of reads) {
      if (typeof r.json === 'string' || hasTabSeparatedSpecial(r.json)) bytes += buffer.write(recordLine(r.timeMs, r.requestId, r.json.toString(), 'embedded', 0), bytes);
      else {
        bytes += buffer.write(`${r.timeMs}\t${tabSeparatedValue(r.requestId)}\t`, bytes);
        bytes += r.json.copy(buffer, bytes);
        bytes += buffer.write(EMBEDDED_LINE_END, bytes);
      }
    }
    await this.executor.insertTabSeparated(FEATURE_LOG_TABLE, RECORD_COLUMNS, buffer.subarray(0, bytes));
  }
}

const NEWLINE = Buffer.from('\n');

/** Write every byte of the buffers (writev may write part of them, as write may). */
async function writeAll(file: FileHandle, buffers: readonly Buffer[]): Promise<void> {
  let left = [...buffers];
  while (left.length > 0) {
    let { bytesWritten } = await file.writev(left);
    while (left.length > 0 && bytesWritten >= left[0]!.length) bytesWritten -= left.shift()!.length;
    if (left.length > 0 && bytesWritten > 0) left[0] = left[0]!.subarray(bytesWritten);
  }
}

/** The embedded line's fields after the record: the load id and offset 0. */
const EMBEDDED_LINE_END = '\tembedded\t0\n';

/** Whether UTF-8 text holds a byte TabSeparated escapes (backslash, tab, newline, carriage return): searched natively, not byte by byte in JS. */
function hasTabSeparatedSpecial(bytes: Buffer): boolean {
  return bytes.indexOf(0x5c) !== -1 || bytes.indexOf(0x09) !== -1 || bytes.indexOf(0x0a) !== -1 || bytes.indexOf(0x0d) !== -1;
}

/** Room for an embedded line's other fields (read time, `embedded`, offset 0, tabs, newline), in bytes. */
const EMBEDDED_LINE_EXTRA = 40;

// ---------------------------------------------------------------------------------------------
// Reading the log back: every record version, from both tables

/** A line of tm_feature_log_lines that is a whole record of `kind` (a line cut short by a crash is not). */
function lineOfKind(kind: string): string {
  return `isValidJSON(line) AND JSONExtractString(line, 'kind') = ${sqlString(kind)}`;
}

/** The stored feature sets' text, one row (`record`) per features_id. */
const FEATURE_SETS_SQL = `SELECT features_id, any(record) AS record FROM ${FEATURE_SETS_TABLE} GROUP BY features_id`;

/**
 * The logged reads with read_ms, request_id and record (filtered by `where`, over those three),
 * from both tables, each with its refs (`refs`, Array(String)) and registry version whatever its
 * format version (a version-3 read's come from its feature set; unknown: none).
 */
export function loggedReadsSql(where: string, tables: FeatureLogTables): string {
  const stored = `SELECT read_ms, request_id, record FROM ${FEATURE_LOG_TABLE} WHERE ${where}`;
  const lines =
    `SELECT read_ms, request_id, record FROM (SELECT JSONExtractInt(line, 'read_time_ms') AS read_ms, JSONExtractString(line, 'request_id') AS request_id, line AS record` +
    ` FROM ${FEATURE_LOG_LINES_TABLE} WHERE ${lineOfKind('read')}) WHERE ${where}`;
  const reads = tables.lines ? `${stored} UNION ALL ${lines}` : stored;
  return (
    `SELECT r.read_ms AS read_ms, r.request_id AS request_id, r.record AS record, JSONExtractUInt(r.record, 'v') AS v,` +
    ` multiIf(v = 3, s.refs, v = 1, arrayMap(f -> concat(JSONExtractString(f, 'view'), ':', JSONExtractString(f, 'feature')), JSONExtractArrayRaw(r.record, 'features')), JSONExtract(r.record, 'features', 'Array(String)')) AS refs,` +
    ` if(v = 3, s.registry_version, JSONExtractString(r.record, 'registry_version')) AS registry_version` +
    ` FROM (SELECT read_ms, request_id, record, JSONExtractString(record, 'features_id') AS fid FROM (${reads})) AS r` +
    ` LEFT JOIN (SELECT features_id AS fid, JSONExtract(record, 'features', 'Array(String)') AS refs, JSONExtractString(record, 'registry_version') AS registry_version FROM (${FEATURE_SETS_SQL})) AS s ON r.fid = s.fid`
  );
}

/** A JSON token (raw text) as the canonical text of a key or a value: a string's contents, else the token (numbers are in their shortest form already, as JSON.stringify wrote them). */
function tokenTextSql(token: string): string {
  return `if(startsWith(${token}, '"'), JSONExtractString(concat('[', ${token}, ']'), 1), ${token})`;
}

/** SQL for the canonical value of join key `{param:String}` of a logged value's entity row (in the expansion of loggedValuesSql). */
export function loggedKeySql(param: string): string {
  return tokenTextSql(`JSONExtractArrayRaw(record, 'entities', {${param}:String})[entity_row + 1]`);
}

/**
 * Per feature of a logged read (in ref order, SQL over the columns of loggedReadsSql): the raw
 * JSON values, the statuses and the event times of its entity rows. Version 1 holds them in one
 * object per feature; version 2 in arrays per feature, statuses as letters and event times as
 * ages; version 3 flat, feature after feature (`n_rows` entries each).
 */
const LOGGED_COLUMNS_SQL = {
  values: `multiIf(v = 3, arrayMap(i -> arraySlice(flat_values, (i - 1) * n_rows + 1, n_rows), arrayEnumerate(refs)), v = 1, arrayMap(f -> JSONExtractArrayRaw(f, 'values'), JSONExtractArrayRaw(record, 'features')), arrayMap(x -> JSONExtractArrayRaw(x), JSONExtractArrayRaw(record, 'values')))`,
  statuses:
    `arrayMap(letters -> arrayMap(c -> transform(c, ['P', 'N', 'F', 'O'], ['PRESENT', 'NULL_VALUE', 'NOT_FOUND', 'OUTSIDE_MAX_AGE'], c), letters),` +
    ` multiIf(v = 3, arrayMap(i -> splitByString('', substring(JSONExtractString(record, 'statuses'), (i - 1) * n_rows + 1, n_rows)), arrayEnumerate(refs)),` +
    ` v = 1, arrayMap(f -> JSONExtract(f, 'statuses', 'Array(String)'), JSONExtractArrayRaw(record, 'features')), arrayMap(s -> splitByString('', s), JSONExtract(record, 'statuses', 'Array(String)'))))`,
  eventTimes:
    `multiIf(v = 3, arrayMap(i -> arrayMap(x -> read_ms - x, arraySlice(flat_ages, (i - 1) * n_rows + 1, n_rows)), arrayEnumerate(refs)),` +
    ` v = 1, arrayMap(f -> JSONExtract(f, 'event_times_ms', 'Array(Nullable(Int64))'), JSONExtractArrayRaw(record, 'features')),` +
    ` arrayMap(a -> arrayMap(x -> read_ms - x, a), JSONExtract(record, 'ages_ms', 'Array(Array(Nullable(Int64)))')))`,
};

function perRef(column: string): string {
  return `arrayResize(${column}, length(refs))`;
}

/**
 * The logged values, one row per (request, entity row, feature), from the logged reads of either
 * table and any format version: request_id, read_ms, registry_version, entity_row, view, feature,
 * status, value_num (numbers), value_text (strings, and booleans as true/false), event_ms, and the
 * record (for loggedKeySql). `where` filters the reads (over read_ms, request_id and record),
 * `valuesWhere` the values (over the columns above).
 */
export function loggedValuesSql(where: string, tables: FeatureLogTables, valuesWhere = '1'): string {
  const token = `f_values[entity_row + 1]`;
  return (
    `SELECT request_id, read_ms, registry_version, entity_row, splitByChar(':', f_ref)[1] AS view, substring(f_ref, length(view) + 2) AS feature,` +
    ` f_statuses[entity_row + 1] AS status, f_event_times[entity_row + 1] AS event_ms,` +
    ` ${token} AS value_token, if(startsWith(value_token, '"') OR value_token IN ('true', 'false', 'null'), NULL, toFloat64OrNull(value_token)) AS value_num,` +
    ` if(startsWith(value_token, '"') OR value_token IN ('true', 'false'), ${tokenTextSql('value_token')}, NULL) AS value_text, record` +
    ` FROM (SELECT *, length(JSONExtractArrayRaw(record, 'entities', JSONExtractKeys(record, 'entities')[1])) AS n_rows,` +
    ` if(v = 3, JSONExtractArrayRaw(record, 'values'), []) AS flat_values, if(v = 3, JSONExtract(record, 'ages_ms', 'Array(Nullable(Int64))'), []) AS flat_ages FROM (${loggedReadsSql(where, tables)}))` +
    // Each column is resized to the refs' length: a malformed record (only a broken producer writes
    // one; the Kafka path dead-letters them) gives nulls, not a failed query.
    ` ARRAY JOIN refs AS f_ref, ${perRef(LOGGED_COLUMNS_SQL.values)} AS f_values, ${perRef(LOGGED_COLUMNS_SQL.statuses)} AS f_statuses, ${perRef(LOGGED_COLUMNS_SQL.eventTimes)} AS f_event_times` +
    ` ARRAY JOIN range(n_rows) AS entity_row WHERE ${valuesWhere}`
  );
}

// ---------------------------------------------------------------------------------------------
// Logged predictions next to their logged reads (the monitor's label metrics)

/** A slice column of logged predictions: the first entity row's value of `joinKey` in the read, from the first candidate whose view the read read. */
export interface LoggedSliceColumn {
  column: string;
  candidates: readonly { view: string; joinKey: string }[];
}

/**
 * The logged predictions made in [fromSql, toSql) (SQL expressions of epoch ms), the first per
 * request id by prediction time, only those of model {model:String} when `model`: columns id (the
 * request id), ts (prediction time), s (score), read (1 when the request's read was logged, else 0)
 * and one Nullable(String) column per slice, read from the request's logged read (NULL when the
 * read was not logged or holds none of the candidates).
 */
export function loggedPredictionsSql(fromSql: string, toSql: string, opts: { model: boolean; slices: readonly LoggedSliceColumn[]; tables: FeatureLogTables }): string {
  const where = `at_ms >= ${fromSql} AND at_ms < ${toSql}${opts.model ? ' AND model = {model:String}' : ''}`;
  const viewsRead = `arrayMap(r -> splitByChar(':', r)[1], refs)`;
  const sliceColumns = opts.slices.map((slice, i) => {
    const arms = slice.candidates.map((c) => `has(views_read, ${sqlString(c.view)}) AND JSONHas(record, 'entities', ${sqlString(c.joinKey)}), ${tokenTextSql(`JSONExtractArrayRaw(record, 'entities', ${sqlString(c.joinKey)})[1]`)}`);
    return { column: slice.column, expr: arms.length === 0 ? `CAST(NULL, 'Nullable(String)')` : `multiIf(${arms.join(', ')}, NULL)`, alias: `c${i}` };
  });
  return (
    `SELECT pp.id AS id, pp.ts AS ts, pp.s AS s, r.read AS read${sliceColumns.map((c) => `, r.${c.alias} AS ${ident(c.column)}`).join('')}` +
    ` FROM (SELECT request_id AS id, at_ms AS ts, score AS s FROM ${PREDICTION_LOG_TABLE} WHERE ${where} ORDER BY at_ms, score LIMIT 1 BY id) AS pp` +
    ` LEFT JOIN (SELECT request_id AS rid, toUInt8(1) AS read, ${viewsRead} AS views_read${sliceColumns.map((c) => `, ${c.expr} AS ${c.alias}`).join('')}` +
    ` FROM (${loggedReadsSql(`request_id IN (SELECT request_id FROM ${PREDICTION_LOG_TABLE} WHERE ${where})`, opts.tables)}) ORDER BY read_ms LIMIT 1 BY request_id) AS r ON pp.id = r.rid`
  );
}

/** The request ids of every logged prediction (of model {model:String} when `model`): what a label's id is looked up in. */
export function loggedPredictionIdsSql(opts: { model: boolean }): string {
  return `SELECT request_id FROM ${PREDICTION_LOG_TABLE}${opts.model ? ' WHERE model = {model:String}' : ''}`;
}

// ---------------------------------------------------------------------------------------------
// dataset --from-log

interface LoggedFeatureColumn {
  view: string;
  feature: string;
  column: string;
  text: boolean;
}

async function loggedColumns(executor: OfflineExecutor, where: string, params: Record<string, unknown>): Promise<{ features: LoggedFeatureColumn[]; joinKeys: string[] }> {
  const tables = featureLogTablesOf(executor);
  const features = await executor.rows<{ view: string; feature: string; texts: number }>(
    `SELECT view, feature, countIf(value_text IS NOT NULL) AS texts FROM (${loggedValuesSql(where, tables)}) GROUP BY view, feature ORDER BY view, feature`,
    params,
  );
  const keys = await executor.rows<{ k: string }>(`SELECT DISTINCT arrayJoin(JSONExtractKeys(record, 'entities')) AS k FROM (${loggedReadsSql(where, tables)}) ORDER BY k`, params);
  return {
    features: features.map((f) => ({ view: f.view, feature: f.feature, column: `${f.view}__${f.feature}`, text: Number(f.texts) > 0 })),
    joinKeys: keys.map((k) => k.k),
  };
}

export interface LogDatasetOptions {
  /** A labels file (Parquet, CSV, NDJSON) with a request_id column: its rows, in order, joined to the logged reads by request id. */
  spine?: string;
  /** Only these `view:feature` columns (default: every feature in the log). */
  features?: readonly string[];
  /** Only reads with fromMs <= read time < toMs. */
  fromMs?: number;
  toMs?: number;
}

const LABEL_KEY = 'request_id';

/** Load a labels file into a new table (__row, request_id, its other columns typed from the first batch). */
async function loadLabels(executor: OfflineExecutor, path: string, table: string, taken: ReadonlySet<string>): Promise<[string, string][]> {
  let columns: [string, string][] | null = null;
  let rows = 0;
  try {
    for await (const batch of readFileBatches(path)) {
      if (columns === null) {
        const names: string[] = [];
        for (const r of batch.rows) for (const k of Object.keys(r.value ?? {})) if (!names.includes(k)) names.push(k);
        if (!names.includes(LABEL_KEY)) throw new TidemarkError('TM_SPINE_MISSING_COLUMN', `labels spine ${path} lacks column ${LABEL_KEY}; it has ${names.join(', ') || 'none'}`, { missing: [LABEL_KEY], present: names });
        for (const n of names) {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n) || n.startsWith('__')) throw new TidemarkError('TM_SPINE_BAD_COLUMN', `labels spine column ${JSON.stringify(n)} cannot be passed through: use letters, digits and _ (not a leading __)`, { column: n });
          if (n !== LABEL_KEY && taken.has(n)) throw new TidemarkError('TM_SPINE_BAD_COLUMN', `labels spine column ${n} clashes with a column of the logged dataset (${[...taken].join(', ')})`, { column: n });
        }
        columns = names.filter((n) => n !== LABEL_KEY).map((n) => [n, inferType(batch.rows.map((r) => r.value?.[n]))]);
        await executor.command(`CREATE TABLE ${ident(table)} (__row UInt64, request_id String${columns.map(([n, t]) => `, ${ident(n)} ${t}`).join('')}) ENGINE = MergeTree ORDER BY __row`);
      }
      const cols = columns;
      await executor.insert(
        table,
        batch.rows.map((r, i) => {
          const rowNumber = batch.rowStart + i + 1;
          if (r.value === undefined) throw new TidemarkError('TM_SPINE_BAD_COLUMN', `labels spine row ${rowNumber}: ${r.error ?? 'unreadable'}`, { row: rowNumber });
          const id = r.value[LABEL_KEY];
          if (typeof id !== 'string' && typeof id !== 'number') throw new TidemarkError('TM_SPINE_BAD_KEY', `labels spine row ${rowNumber}, column ${LABEL_KEY}: ${JSON.stringify(id)} is not a request id`, { row: rowNumber, column: LABEL_KEY });
          const o: Record<string, unknown> = { __row: batch.rowStart + i, request_id: String(id) };
          for (const [n, type] of cols) o[n] = toColumnValue(r.value[n], type, n, rowNumber);
          return o;
        }),
      );
      rows += batch.rows.length;
    }
  } catch (e) {
    await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`).catch(() => undefined);
    throw e;
  }
  if (columns === null || rows === 0) {
    await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`);
    throw new TidemarkError('TM_SPINE_EMPTY', `labels spine ${path} has no rows`, { path });
  }
  return columns;
}

function timeFilter(opts: { fromMs?: number; toMs?: number }): { where: string; params: Record<string, unknown> } {
  const where = ['1'];
  const params: Record<string, unknown> = {};
  if (opts.fromMs !== undefined) {
    where.push('read_ms >= {from:Int64}');
    params.from = opts.fromMs;
  }
  if (opts.toMs !== undefined) {
    where.push('read_ms < {to:Int64}');
    params.to = opts.toMs;
  }
  return { where: where.join(' AND '), params };
}

/**
 * Write a dataset of the logged reads: request_id, ts (the read time), the join keys (canonical
 * text), one `<view>__<feature>` column per logged feature holding the value served; one row per
 * (request, entity row) in read-time order. With a labels spine: the spine's rows in order, each
 * followed by its request's logged rows (none: null features) and its label columns.
 */
export async function writeLogDataset(executor: OfflineExecutor, outPath: string, opts: LogDatasetOptions = {}): Promise<DatasetResult> {
  const started = performance.now();
  const format = outputFormatOf(outPath);
  const { where, params } = timeFilter(opts);
  const logged = await loggedColumns(executor, where, params);
  let features = logged.features;
  if (opts.features !== undefined) {
    const valid = features.map((f) => `${f.view}:${f.feature}`);
    features = opts.features.map((ref, i) => {
      const found = logged.features.find((f) => `${f.view}:${f.feature}` === ref);
      if (!found) throw new TidemarkError('TM_DATASET_UNKNOWN_FEATURE', `feature ${JSON.stringify(ref)} (features[${i}]) is not in the feature log${valid.length === 0 ? '' : `; logged features: ${valid.join(', ')}`}`, { feature: ref, validFeatures: valid });
      return found;
    });
  }
  if (features.length === 0) {
    throw new TidemarkError('TM_LOG_EMPTY', `the feature log (${FEATURE_LOG_TABLE} in ${executor.location}) holds no logged reads${opts.fromMs !== undefined || opts.toMs !== undefined ? ' in the time range given' : ''}: serve with --log-features <rate> first`, { table: FEATURE_LOG_TABLE });
  }
  const pivot =
    `SELECT request_id, entity_row, read_ms AS ${SPINE_TIME_COLUMN}` +
    logged.joinKeys.map((k, i) => `, any(if(has(JSONExtractKeys(record, 'entities'), {jk${i}:String}), ${loggedKeySql(`jk${i}`)}, NULL)) AS ${ident(k)}`).join('') +
    features.map((f, i) => `, anyIf(${f.text ? 'value_text' : 'value_num'}, view = {v${i}:String} AND feature = {f${i}:String}) AS ${ident(f.column)}`).join('') +
    ` FROM (${loggedValuesSql(where, featureLogTablesOf(executor))}) GROUP BY request_id, entity_row, read_ms`;
  logged.joinKeys.forEach((k, i) => (params[`jk${i}`] = k));
  features.forEach((f, i) => {
    params[`v${i}`] = f.view;
    params[`f${i}`] = f.feature;
  });
  const outputs = ['request_id', SPINE_TIME_COLUMN, ...logged.joinKeys, ...features.map((f) => f.column)];
  let sql: string;
  let labels: string | null = null;
  let columns = outputs;
  try {
    if (opts.spine === undefined) sql = `SELECT ${outputs.map(ident).join(', ')} FROM (${pivot}) ORDER BY ${SPINE_TIME_COLUMN}, request_id, entity_row`;
    else {
      labels = `tm_labels_${Date.now()}_${randomBytes(4).toString('hex')}`;
      const labelColumns = await loadLabels(executor, opts.spine, labels, new Set(outputs));
      columns = [...outputs, ...labelColumns.map(([n]) => n)];
      sql =
        `SELECT l.request_id AS request_id, ${outputs.slice(1).map((c) => `f.${ident(c)} AS ${ident(c)}`).join(', ')}${labelColumns.map(([n]) => `, l.${ident(n)} AS ${ident(n)}`).join('')}` +
        ` FROM ${ident(labels)} AS l LEFT JOIN (${pivot}) AS f ON f.request_id = l.request_id ORDER BY l.__row, f.entity_row SETTINGS join_use_nulls = 1`;
    }
    const [count] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM (${sql})`, params);
    const partial = `${outPath}.partial`;
    try {
      await executor.writeFile(sql, format, partial, params);
      await rename(partial, outPath);
    } catch (e) {
      await rm(partial, { force: true });
      throw e;
    }
    return { rows: Number(count?.n ?? 0), columns, seconds: (performance.now() - started) / 1000 };
  } finally {
    if (labels !== null) await executor.command(`DROP TABLE IF EXISTS ${ident(labels)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Logged reads next to their offline point-in-time values (the skew check's input)

/** One logged value and the offline path's value at the same key and read time. */
export interface LoggedValuePair {
  requestId: string;
  entityRow: number;
  readMs: number;
  /** The view's entity key (join key values, canonical, in join key order). */
  key: string[];
  view: string;
  feature: string;
  status: string;
  online: Scalar;
  offline: Scalar;
}

/**
 * For every logged read of a view (in the time range), the offline point-in-time value of each
 * logged feature at the logged read time and key, computed by the dataset engine with the logged
 * reads as its spine. Features no longer in the registry are left out. With `shards` (a sharded
 * store; `executor` is its home shard, which holds the log): the logged reads are the spine of a
 * sharded dataset, each computed on its key's shard (sharded-dataset.ts) and merged back.
 */
export async function loggedValuePairs(executor: OfflineExecutor, registry: Registry, view: ViewPlan, opts: { fromMs?: number; toMs?: number; features?: readonly string[]; shards?: ShardSet | null } = {}): Promise<LoggedValuePair[]> {
  const { where, params } = timeFilter(opts);
  params.view = view.name;
  const values = `(${loggedValuesSql(where, featureLogTablesOf(executor), 'view = {view:String}')})`;
  const logged = await executor.rows<{ feature: string }>(`SELECT DISTINCT feature FROM ${values} ORDER BY feature`, params);
  const names = logged.map((l) => l.feature).filter((f) => view.features.some((p) => p.name === f) && (opts.features === undefined || opts.features.includes(f)));
  if (names.length === 0) return [];
  const refs = names.map((f) => `${view.name}:${f}`);
  const keyParams = Object.fromEntries(view.joinKeys.map((k, i) => [`jk${i}`, k]));
  const keyColumns = view.joinKeys.map((_, i) => `, ${loggedKeySql(`jk${i}`)} AS k${i}`).join('');
  const distinctReads = `SELECT DISTINCT request_id, entity_row, read_ms${keyColumns} FROM ${values} ORDER BY read_ms, request_id, entity_row`;
  const offlineByRow = new Map<string, Record<string, unknown>>();
  if (opts.shards) {
    if (view.joinKeys.includes(SPINE_TIME_COLUMN)) throw new TidemarkError('TM_OFFLINE_SHARDS_UNSUPPORTED', `view ${view.name}: a join key named ${SPINE_TIME_COLUMN} is the spine's time column of a sharded dataset`, { view: view.name, shards: opts.shards.count });
    const reads = await executor.rows<{ request_id: string; entity_row: number; read_ms: number } & Record<`k${number}`, string>>(distinctReads, { ...params, ...keyParams });
    const spine = reads.map((r) => ({ [SPINE_TIME_COLUMN]: Number(r.read_ms), ...Object.fromEntries(view.joinKeys.map((k, i) => [k, String(r[`k${i}`])])) }));
    // Rows come back in spine order, one per logged read.
    const rows = spine.length === 0 ? [] : await shardedPointInTimeRows(opts.shards, { registry }, spine, refs);
    reads.forEach((r, i) => offlineByRow.set(`${r.request_id}\u0000${Number(r.entity_row)}`, rows[i]!));
  } else {
    const table = `tm_logspine_${Date.now()}_${randomBytes(4).toString('hex')}`;
    await executor.command(
      `CREATE TABLE ${ident(table)} (__row UInt64, __t Int64${view.joinKeys.map((k) => `, ${ident(joinKeyColumn(k))} String`).join('')}, request_id String, entity_row UInt32) ENGINE = MergeTree ORDER BY __row`,
    );
    try {
      await executor.command(
        `INSERT INTO ${ident(table)} SELECT rowNumberInAllBlocks(), read_ms${view.joinKeys.map((_, i) => `, k${i}`).join('')}, request_id, entity_row FROM (${distinctReads}) SETTINGS max_threads = 1`,
        { ...params, ...keyParams },
      );
      const [count] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM ${ident(table)}`);
      const spine: SpineInfo = { table, rows: Number(count?.n ?? 0), columns: [['request_id', 'String'], ['entity_row', 'UInt32']] };
      for (const r of await executor.rows<Record<string, unknown>>(pointInTimeSql(resolveFeatureRefs(registry, refs), spine))) offlineByRow.set(`${String(r.request_id)}\u0000${Number(r.entity_row)}`, r);
    } finally {
      await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`);
    }
  }
  const onlineRows = await executor.rows<{ request_id: string; entity_row: number; read_ms: number; feature: string; status: string; value_num: number | null; value_text: string | null } & Record<`k${number}`, string>>(
    `SELECT request_id, entity_row, read_ms${keyColumns}, feature, status, value_num, value_text FROM ${values} ORDER BY read_ms, request_id, entity_row, feature`,
    { ...params, ...keyParams },
  );
  const pairs: LoggedValuePair[] = [];
  for (const r of onlineRows) {
    const plan = view.features.find((p) => p.name === r.feature);
    if (!plan || !names.includes(r.feature)) continue;
    const offline = offlineByRow.get(`${r.request_id}\u0000${Number(r.entity_row)}`);
    const online: Scalar = r.value_num !== null ? Number(r.value_num) : r.value_text !== null ? (plan.valueKind === 'boolean' ? r.value_text === 'true' : r.value_text) : null;
    const raw = offline?.[`${view.name}__${r.feature}`];
    const offlineValue: Scalar = raw === undefined || raw === null ? null : typeof raw === 'string' && plan.valueKind === 'number' ? Number(raw) : (raw as Scalar);
    pairs.push({ requestId: r.request_id, entityRow: Number(r.entity_row), readMs: Number(r.read_ms), key: view.joinKeys.map((_, i) => String(r[`k${i}`])), view: view.name, feature: r.feature, status: r.status, online, offline: offlineValue });
  }
  return pairs;
}
