// Public surface of ingest/: decoding and validation, the materializer core, file replay, dead letters.
export { EventDecoder } from './decode.js';
export type { DecodedEvent, BadEvent, DecodeResult, EventPosition } from './decode.js';
export { TileBatchBuilder } from './materialize.js';
export { readParquetBatches, readParquetRows, parquetFileMetadata, parquetRowCount } from './parquet.js';
export type { ParquetBatch, ParquetSchemaElement } from './parquet.js';
export { replayParquetFile } from './replay.js';
export type { ReplayStats, ReplayOptions, TileBatchSink } from './replay.js';
export { DeadLetterFile } from './dead-letters.js';
export type { DeadLetterSink } from './dead-letters.js';
export { readFileBatches, fileFormatOf, typeCsvValue } from './files.js';
export type { FileFormat, FileRow, FileBatch } from './files.js';
export { Materializer, MaterializerMetrics, createKafkaClient } from './kafka-materializer.js';
export { kafkaSecurityConfig, describeKafkaSecurity, KAFKA_SASL_MECHANISMS } from './kafka-connection.js';
export type { KafkaSecuritySettings, KafkaSaslMechanism } from './kafka-connection.js';
export type { MaterializerOptions, MaterializerStore, MaterializerHealth, MaterializerStats, MaterializerLog } from './kafka-materializer.js';
export { FencedBatchBuilder, applyRunsExactlyOnce, redisAppliedOffsets } from './fences.js';
export type {
  AppliedOffsetReader,
  CasFence,
  ConditionalApplyResult,
  ConditionalKeyTileUpdates,
  ConditionalStore,
  ConditionalTileBatch,
  ExactlyOnceOptions,
  ExactlyOnceResult,
  FencedBatch,
  LogRun,
  RedisFenceSource,
  ViewKey,
} from './fences.js';
export { buildMaterializerServer } from './materializer-server.js';
export { decodeFeatureLogRecord, encodeFeatureLogRecord, featureSetsOf, featureLogLinesOf, featureLogTopic, FeatureLogQueue, FeatureLogMetrics, KafkaFeatureLogSink, FEATURE_LOG_FORMAT_VERSION, FEATURE_LOG_READ_VERSION, STATUS_LETTERS, loggedFeaturesOf } from './feature-log.js';
export type { ReadBatch } from './feature-log-arena.js';
export type { FeatureLogBatch, FeatureLogRecord, EncodedFeatureLogRecord, LoggedReadRecord, LoggedReadV1Record, LoggedReadV2Record, LoggedReadV3Record, FeatureSetRecord, EncodedFeatureSet, FeatureStatus, LoggedPredictionRecord, BadFeatureLogRecord, FeatureLogDecodeResult, FeatureLogSink, FeatureLogQueueOptions, FeatureLogQueueStats } from './feature-log.js';
