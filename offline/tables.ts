// Table DDL generated from the registry, created and migrated idempotently:
//   tm_events_<source>  raw events: __ts (event time, ms), __load (load id), __offset (row in the
//                       load), one column per schema field, and __k_<field> canonical key text for
//                       every field a view reads a join key from (the online path's key form);
//   tm_loads            one row per completed load: a file is identified by its SHA-256, so loading
//                       the same file again is a no-op, and rows of a load that never completed are
//                       ignored by queries and deleted before the file is loaded again;
//   tm_dead_letters     bad rows with their original text, position and reason;
//   tm_feature_log_records  served reads (tidemark serve --log-features) from Kafka or into a
//                       ClickHouse server: one row per logged read,
//                       its read time, request id and record (JSON text, the Kafka topic's format),
//                       with __load/__offset as the event tables have them (offline/feature-log.ts
//                       expands them to values); tm_feature_log, the old one-row-per-value table,
//                       is no longer written or read;
//   tm_feature_log_lines  in chDB only: served reads logged by this process (embedded mode), one
//                       record's JSON text per line of a File table's file, which the feature-log
//                       sink appends to itself;
//   tm_feature_log_sets the feature sets version-3 reads name by id (registry version and
//                       view:feature refs), as JSON text; a set may be stored more than once;
//   tm_prediction_log   model scores logged with a request id (POST /feature-log/predictions).
import { TidemarkError, type FieldInfo, type Registry, type SourcePlan } from '../definitions/index.js';
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { OfflineExecutor } from './executor.js';

const COLUMN_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A column or table name as SQL: only names the registry validated reach here; quoting is belt and braces. */
export function ident(name: string): string {
  if (!COLUMN_RE.test(name)) throw new TidemarkError('TM_OFFLINE_QUERY', `${JSON.stringify(name)} is not usable as a column or table name`, { name });
  return `\`${name}\``;
}

/** A ClickHouse string literal (for the places that take no bound parameter: file(), INTO OUTFILE). */
export function sqlString(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export const FEATURE_LOG_TABLE = 'tm_feature_log_records';
export const PREDICTION_LOG_TABLE = 'tm_prediction_log';
export const FEATURE_LOG_LINES_TABLE = 'tm_feature_log_lines';
export const FEATURE_SETS_TABLE = 'tm_feature_log_sets';

/** Where an executor's feature log lives: tm_feature_log_records, and in chDB tm_feature_log_lines too. */
export interface FeatureLogTables {
  lines: boolean;
}

export function featureLogTablesOf(executor: Pick<OfflineExecutor, 'kind'>): FeatureLogTables {
  return { lines: executor.kind === 'chdb' };
}

/** The file behind tm_feature_log_lines (chDB): created empty when missing, so that the table reads as empty. */
export async function featureLogLinesPath(executor: OfflineExecutor): Promise<string> {
  const [row] = await executor.rows<{ path: string }>(`SELECT data_paths[1] AS path FROM system.tables WHERE database = currentDatabase() AND name = {name:String}`, { name: FEATURE_LOG_LINES_TABLE });
  if (!row) throw new TidemarkError('TM_OFFLINE_QUERY', `table ${FEATURE_LOG_LINES_TABLE} is missing from ${executor.location}`, { table: FEATURE_LOG_LINES_TABLE });
  await mkdir(dirname(row.path), { recursive: true });
  await appendFile(row.path, '');
  return row.path;
}

export function eventTable(source: string): string {
  return `tm_events_${source}`;
}

export function keyColumn(field: string): string {
  return `__k_${field}`;
}

export function clickHouseType(info: FieldInfo): string {
  switch (info.kind) {
    case 'number':
      return 'Nullable(Float64)';
    case 'boolean':
      return 'Nullable(Bool)';
    case 'timestamp':
      return 'Nullable(Int64)';
    default:
      return 'Nullable(String)';
  }
}

/** Fields of a source that some view reads a join key from. */
export function keyFieldsOf(registry: Registry, source: SourcePlan): string[] {
  const fields = new Set<string>();
  for (const view of registry.views) if (view.source === source.name) for (const f of view.keyFields) fields.add(f);
  return [...fields];
}

export function eventTableColumns(registry: Registry, source: SourcePlan): [string, string][] {
  for (const field of Object.keys(source.fields)) {
    if (!COLUMN_RE.test(field) || field.startsWith('__')) {
      throw new TidemarkError('TM_OFFLINE_QUERY', `source ${source.name}: field ${JSON.stringify(field)} cannot be an offline column (use letters, digits and _; not a leading __)`, { source: source.name, field });
    }
  }
  return [
    ['__ts', 'Int64'],
    ['__load', 'String'],
    ['__offset', 'UInt64'],
    ...Object.entries(source.fields).map(([name, info]): [string, string] => [name, clickHouseType(info)]),
    ...keyFieldsOf(registry, source).map((f): [string, string] => [keyColumn(f), 'String']),
  ];
}

/**
 * Create every table the registry needs, and add columns new fields need; safe to run again. With
 * `onCluster` (a sharded store whose servers have Keeper), each statement is one `ON CLUSTER` DDL.
 */
export async function ensureTables(executor: OfflineExecutor, registry: Registry, opts: { onCluster?: string } = {}): Promise<void> {
  const on = opts.onCluster === undefined ? '' : ` ON CLUSTER ${ident(opts.onCluster)}`;
  await executor.command(
    `CREATE TABLE IF NOT EXISTS tm_loads${on} (load_id String, source String, file String, sha256 String, rows UInt64, events UInt64, bad UInt64, registry_version String, loaded_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY load_id`,
  );
  await executor.command(
    `CREATE TABLE IF NOT EXISTS tm_dead_letters${on} (source String, load_id String, position UInt64, code String, field Nullable(String), reason String, raw String, at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY (source, at)`,
  );
  await executor.command(
    `CREATE TABLE IF NOT EXISTS ${FEATURE_LOG_TABLE}${on} (read_ms Int64, request_id String, record String, __load String, __offset UInt64) ENGINE = MergeTree ORDER BY (read_ms, request_id)`,
  );
  await executor.command(`CREATE TABLE IF NOT EXISTS ${FEATURE_SETS_TABLE}${on} (features_id String, record String) ENGINE = ReplacingMergeTree ORDER BY features_id`);
  if (featureLogTablesOf(executor).lines) {
    await executor.command(`CREATE TABLE IF NOT EXISTS ${FEATURE_LOG_LINES_TABLE} (line String) ENGINE = File(LineAsString)`);
    await featureLogLinesPath(executor);
  }
  await executor.command(
    `CREATE TABLE IF NOT EXISTS ${PREDICTION_LOG_TABLE}${on} (request_id String, model Nullable(String), score Float64, at_ms Int64, __load String, __offset UInt64) ENGINE = MergeTree ORDER BY (at_ms, request_id)`,
  );
  for (const source of registry.sources) {
    const columns = eventTableColumns(registry, source);
    await executor.command(
      `CREATE TABLE IF NOT EXISTS ${ident(eventTable(source.name))}${on} (${columns.map(([n, t]) => `${ident(n)} ${t}`).join(', ')}) ENGINE = MergeTree ORDER BY (__ts, __load, __offset)`,
    );
    for (const [name, type] of columns) {
      await executor.command(`ALTER TABLE ${ident(eventTable(source.name))}${on} ADD COLUMN IF NOT EXISTS ${ident(name)} ${type}`);
    }
  }
}

/** Whether a table exists (read only: nothing is created). */
export async function tableExists(executor: OfflineExecutor, table: string): Promise<boolean> {
  const [row] = await executor.rows<Record<string, unknown>>(`EXISTS TABLE ${ident(table)}`);
  return row !== undefined && Number(Object.values(row)[0]) === 1;
}

/** SQL condition keeping only rows of completed loads. */
export const COMPLETED_LOADS = `__load IN (SELECT load_id FROM tm_loads)`;

/** The greatest event time of a source's completed loads (before `beforeMs` when given), or null when there is none. */
export async function latestEventTimeMs(executor: OfflineExecutor, source: string, beforeMs?: number): Promise<number | null> {
  const [row] = await executor.rows<{ t: number | null }>(
    `SELECT if(count() = 0, NULL, max(__ts)) AS t FROM ${ident(eventTable(source))} WHERE ${COMPLETED_LOADS}${beforeMs === undefined ? '' : ' AND __ts < {before:Int64}'}`,
    beforeMs === undefined ? {} : { before: beforeMs },
  );
  return row?.t ?? null;
}
