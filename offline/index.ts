// Public surface of offline/: the offline store (chDB or a ClickHouse server), event loading,
// spines and point-in-time datasets.
export { OfflineStore, outputFormatOf } from './store.js';
export type { OfflineStoreOptions, DatasetResult, PreparedDataset } from './store.js';
export type { OfflineExecutor, FileResultFormat } from './executor.js';
export { insertInChunks } from './executor.js';
export { ChdbExecutor } from './chdb.js';
export { ClickHouseExecutor } from './clickhouse.js';
export type { ClickHouseConnectionOptions } from './clickhouse.js';
export type { LoadResult } from './load.js';
export { fileSha256, EventLoad, recordCompletedLoad } from './load.js';
export type { CompletedLoad } from './load.js';
export { planParquetLoad, parquetValueKind, topLevelColumns } from './parquet-load.js';
export type { SqlParquetLoad, SqlParquetLoadOptions, ParquetLoadPlan } from './parquet-load.js';
export { pointInTimeSql, resolveFeatureRefs, requiredJoinKeys } from './point-in-time.js';
export type { RequestedFeature } from './point-in-time.js';
export { loadSpine, SPINE_TIME_COLUMN } from './spine.js';
export type { SpineInfo, SpineInput } from './spine.js';
export { ensureTables, eventTable } from './tables.js';
export { OfflineKafkaSink, kafkaLoadId } from './kafka-sink.js';
export type { OfflineKafkaSinkOptions, OfflineKafkaSinkStats } from './kafka-sink.js';
export { exactIntegerFieldsSql, featureSampleSql, featureTileSql } from './feature-samples.js';
export type { FeatureSampleOptions } from './feature-samples.js';
export { COMPLETED_LOADS, ident, keyColumn, latestEventTimeMs, tableExists } from './tables.js';
export { FEATURE_LOG_TABLE, PREDICTION_LOG_TABLE } from './tables.js';
export { OfflineFeatureLogSink, writeLogDataset, loggedValuePairs, insertFeatureLogRecords, checkFeatureLogRecord, loggedValuesSql, loggedKeySql, loggedPredictionsSql, loggedPredictionIdsSql, FEATURE_LOG_DEAD_LETTER_SOURCE } from './feature-log.js';
export type { LogDatasetOptions, LoggedValuePair, LoggedSliceColumn } from './feature-log.js';
export { TileWindows, windowsInNode } from './feature-windows.js';
export type { ExactFieldSets, TileWindowSink } from './feature-windows.js';
