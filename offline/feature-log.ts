// The feature log in the offline store (tables in offline/tables.ts): records flattened to rows of
// tm_feature_log (one per request, entity row and feature) and tm_prediction_log; the embedded
// sink (quickstart: straight to the store); `dataset --from-log` (the values actually served, one
// column per feature, labels joined by request id); and the logged reads as a point-in-time spine,
// so that the monitor can compare what was served with what the offline path computes.
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { canonicalKeyValue, entityKeyId, entityKeyValues, TidemarkError, type Registry, type Scalar, type ViewPlan } from '../definitions/index.js';
import { readFileBatches, type BadFeatureLogRecord, type FeatureLogRecord, type FeatureLogSink, type LoggedReadRecord } from '../ingest/index.js';
import type { OfflineExecutor } from './executor.js';
import { pointInTimeSql, resolveFeatureRefs } from './point-in-time.js';
import { inferType, joinKeyColumn, SPINE_TIME_COLUMN, toColumnValue, type SpineInfo } from './spine.js';
import { FEATURE_LOG_TABLE, ident, PREDICTION_LOG_TABLE } from './tables.js';
import { outputFormatOf, type DatasetResult } from './store.js';

/** The `source` of feature-log dead letters in tm_dead_letters. */
export const FEATURE_LOG_DEAD_LETTER_SOURCE = 'feature_log';

export interface FeatureLogRows {
  reads: Record<string, unknown>[];
  predictions: Record<string, unknown>[];
}

/**
 * The rows of a record. A read naming a view or feature the registry does not hold, or lacking a
 * view's join key, is a bad record (its values could never be compared with the offline path).
 */
export function featureLogRowsOf(record: FeatureLogRecord, registry: Registry, loadId: string, offset: number): { ok: true; rows: FeatureLogRows } | { ok: false; bad: Omit<BadFeatureLogRecord, 'raw'> } {
  if (record.kind === 'prediction') {
    return { ok: true, rows: { reads: [], predictions: [{ request_id: record.request_id, model: record.model, score: record.score, at_ms: record.at_ms, __load: loadId, __offset: offset }] } };
  }
  const joinKeys = Object.keys(record.entities);
  const rowCount = record.entities[joinKeys[0]!]!.length;
  const canonical = Object.fromEntries(joinKeys.map((k) => [k, record.entities[k]!.map((v) => canonicalKeyValue(v)!)]));
  const keysJson = Array.from({ length: rowCount }, (_, row) => JSON.stringify(Object.fromEntries(joinKeys.map((k) => [k, canonical[k]![row]]))));
  const reads: Record<string, unknown>[] = [];
  // As on the serving path, every entity key is a join key of a view read (so it can be a dataset column).
  const needed = new Set(record.features.flatMap((f) => registry.views.find((v) => v.name === f.view)?.joinKeys ?? []));
  const extra = joinKeys.find((k) => !needed.has(k));
  if (extra !== undefined) return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `entities.${extra}`, reason: `feature-log record, field entities.${extra}: not a join key of the views read (${[...needed].join(', ') || 'none'})` } };
  for (const [i, f] of record.features.entries()) {
    const view = registry.views.find((v) => v.name === f.view);
    if (!view || !view.features.some((p) => p.name === f.feature)) {
      return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `features.${i}`, reason: `feature-log record, field features.${i}: ${f.view}:${f.feature} is not a feature of registry ${registry.version}` } };
    }
    const missing = view.joinKeys.find((k) => !(k in canonical));
    if (missing !== undefined) return { ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field: `entities.${missing}`, reason: `feature-log record, field entities.${missing}: view ${view.name} needs join key ${missing}` } };
    for (let row = 0; row < rowCount; row++) {
      const value = f.values[row]!;
      reads.push({
        request_id: record.request_id,
        read_ms: record.read_time_ms,
        registry_version: record.registry_version,
        entity_row: row,
        keys: keysJson[row],
        view: f.view,
        key: entityKeyId(view.joinKeys.map((k) => canonical[k]![row]!)),
        feature: f.feature,
        status: f.statuses[row],
        value_num: typeof value === 'number' ? value : null,
        value_text: typeof value === 'string' ? value : typeof value === 'boolean' ? String(value) : null,
        event_ms: f.event_times_ms[row],
      });
    }
  }
  for (const r of reads) Object.assign(r, { __load: loadId, __offset: offset });
  return { ok: true, rows: { reads, predictions: [] } };
}

/** The tm_dead_letters row of a bad feature-log record. */
export function featureLogDeadLetterRow(bad: BadFeatureLogRecord, loadId: string, position: number): Record<string, unknown> {
  return { source: FEATURE_LOG_DEAD_LETTER_SOURCE, load_id: loadId, position, code: bad.code, field: bad.field, reason: bad.reason, raw: bad.raw, at: Date.now() };
}

/** Insert records' rows; bad records go to tm_dead_letters. Returns how many records were bad. */
export async function insertFeatureLogRecords(executor: OfflineExecutor, registry: Registry, records: readonly { record: FeatureLogRecord; raw: string; offset: number }[], loadId: string): Promise<number> {
  const reads: Record<string, unknown>[] = [];
  const predictions: Record<string, unknown>[] = [];
  const dead: Record<string, unknown>[] = [];
  for (const { record, raw, offset } of records) {
    const rows = featureLogRowsOf(record, registry, loadId, offset);
    if (!rows.ok) dead.push(featureLogDeadLetterRow({ ...rows.bad, raw }, loadId, offset));
    else {
      reads.push(...rows.rows.reads);
      predictions.push(...rows.rows.predictions);
    }
  }
  if (dead.length > 0) await executor.insert('tm_dead_letters', dead);
  if (predictions.length > 0) await executor.insert(PREDICTION_LOG_TABLE, predictions);
  if (reads.length > 0) await executor.insert(FEATURE_LOG_TABLE, reads);
  return dead.length;
}

/** Embedded mode's destination: records written straight to the offline store. */
export class OfflineFeatureLogSink implements FeatureLogSink {
  readonly destination: string;
  badRecords = 0;

  constructor(
    private readonly executor: OfflineExecutor,
    private readonly registry: Registry,
  ) {
    this.destination = `offline store ${executor.location}`;
  }

  async write(records: readonly FeatureLogRecord[]): Promise<void> {
    this.badRecords += await insertFeatureLogRecords(this.executor, this.registry, records.map((record) => ({ record, raw: JSON.stringify(record), offset: 0 })), 'embedded');
  }
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
  const features = await executor.rows<{ view: string; feature: string; texts: number }>(
    `SELECT view, feature, countIf(value_text IS NOT NULL) AS texts FROM ${FEATURE_LOG_TABLE} WHERE ${where} GROUP BY view, feature ORDER BY view, feature`,
    params,
  );
  const keys = await executor.rows<{ k: string }>(`SELECT DISTINCT arrayJoin(JSONExtractKeys(keys)) AS k FROM ${FEATURE_LOG_TABLE} WHERE ${where} ORDER BY k`, params);
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
    logged.joinKeys.map((k, i) => `, JSONExtractString(keys, {jk${i}:String}) AS ${ident(k)}`).join('') +
    features.map((f, i) => `, anyIf(${f.text ? 'value_text' : 'value_num'}, view = {v${i}:String} AND feature = {f${i}:String}) AS ${ident(f.column)}`).join('') +
    ` FROM ${FEATURE_LOG_TABLE} WHERE ${where} GROUP BY request_id, entity_row, read_ms, keys`;
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
 * reads as its spine. Features no longer in the registry are left out.
 */
export async function loggedValuePairs(executor: OfflineExecutor, registry: Registry, view: ViewPlan, opts: { fromMs?: number; toMs?: number; features?: readonly string[] } = {}): Promise<LoggedValuePair[]> {
  const { where, params } = timeFilter(opts);
  const viewWhere = `${where} AND view = {view:String}`;
  params.view = view.name;
  const logged = await executor.rows<{ feature: string }>(`SELECT DISTINCT feature FROM ${FEATURE_LOG_TABLE} WHERE ${viewWhere} ORDER BY feature`, params);
  const names = logged.map((l) => l.feature).filter((f) => view.features.some((p) => p.name === f) && (opts.features === undefined || opts.features.includes(f)));
  if (names.length === 0) return [];
  const requested = resolveFeatureRefs(registry, names.map((f) => `${view.name}:${f}`));
  const table = `tm_logspine_${Date.now()}_${randomBytes(4).toString('hex')}`;
  await executor.command(
    `CREATE TABLE ${ident(table)} (__row UInt64, __t Int64${view.joinKeys.map((k) => `, ${ident(joinKeyColumn(k))} String`).join('')}, request_id String, entity_row UInt32) ENGINE = MergeTree ORDER BY __row`,
  );
  try {
    const keyParams = Object.fromEntries(view.joinKeys.map((k, i) => [`jk${i}`, k]));
    await executor.command(
      `INSERT INTO ${ident(table)} SELECT rowNumberInAllBlocks(), read_ms${view.joinKeys.map((_, i) => `, JSONExtractString(keys, {jk${i}:String})`).join('')}, request_id, entity_row` +
        ` FROM (SELECT DISTINCT request_id, entity_row, read_ms, keys FROM ${FEATURE_LOG_TABLE} WHERE ${viewWhere} ORDER BY read_ms, request_id, entity_row) SETTINGS max_threads = 1`,
      { ...params, ...keyParams },
    );
    const [count] = await executor.rows<{ n: number }>(`SELECT count() AS n FROM ${ident(table)}`);
    const spine: SpineInfo = { table, rows: Number(count?.n ?? 0), columns: [['request_id', 'String'], ['entity_row', 'UInt32']] };
    const offlineRows = await executor.rows<Record<string, unknown>>(pointInTimeSql(requested, spine));
    const offlineByRow = new Map(offlineRows.map((r) => [`${String(r.request_id)}\u0000${Number(r.entity_row)}`, r]));
    const onlineRows = await executor.rows<{ request_id: string; entity_row: number; read_ms: number; key: string; feature: string; status: string; value_num: number | null; value_text: string | null }>(
      `SELECT request_id, entity_row, read_ms, key, feature, status, value_num, value_text FROM ${FEATURE_LOG_TABLE} WHERE ${viewWhere} ORDER BY read_ms, request_id, entity_row, feature`,
      params,
    );
    const pairs: LoggedValuePair[] = [];
    for (const r of onlineRows) {
      const plan = view.features.find((p) => p.name === r.feature);
      if (!plan || !names.includes(r.feature)) continue;
      const offline = offlineByRow.get(`${r.request_id}\u0000${Number(r.entity_row)}`);
      const online: Scalar = r.value_num !== null ? Number(r.value_num) : r.value_text !== null ? (plan.valueKind === 'boolean' ? r.value_text === 'true' : r.value_text) : null;
      const raw = offline?.[`${view.name}__${r.feature}`];
      const offlineValue: Scalar = raw === undefined || raw === null ? null : typeof raw === 'string' && plan.valueKind === 'number' ? Number(raw) : (raw as Scalar);
      pairs.push({ requestId: r.request_id, entityRow: Number(r.entity_row), readMs: Number(r.read_ms), key: entityKeyValues(r.key, view.joinKeys.length), view: view.name, feature: r.feature, status: r.status, online, offline: offlineValue });
    }
    return pairs;
  } finally {
    await executor.command(`DROP TABLE IF EXISTS ${ident(table)}`);
  }
}
