// Public surface of online/: the OnlineStore interface, the in-memory store, read-time merging and
// Feast-compatible retrieval.
export { closedSeries, readWithWatermark, storeClockMs } from './store.js';
export type { OnlineStore, KeyTiles, ClosedWindows, TileRange, ApplyResult, StoreStats, StoreClock } from './store.js';
export { MemoryOnlineStore } from './memory.js';
export { evaluateFeature, evaluateFeatures, foldClosedWindows, needsHistory, tileRangesFor, tilesPerRead } from './read.js';
export type { FeatureValue, FeatureStatus } from './read.js';
export { OnlineFeatureService, formatEventTimestamp } from './serve.js';
export type { OnlineFeaturesRequest, OnlineFeaturesResponse, FeatureVector, JoinKeyValue } from './serve.js';
export { RedisOnlineStore, RedisStoreError, connectRedisOnlineStore, createRedisClient, redisConnectionError } from './redis.js';
export type { RedisClient, RedisConnectionOptions, RedisOnlineStoreOptions, RedisApplyResult, RedisStoreErrorCode } from './redis.js';
export { viewNamespace, viewLayoutFingerprint } from './redis.js';
export {
  readStoredRegistryState,
  writeVersionState,
  readVersionState,
  claimStreamVersions,
  appendRegistryHistory,
  newVersionState,
  snapshotOf,
  viewSnapshotField,
  metaKeyOf,
  historyKeyOf,
} from './versions.js';
export type { ViewSnapshot, VersionState, VersionStatus, BootstrapProgress, RegistryHistoryEntry, StoredRegistryState } from './versions.js';
export { encodeLoggedRead, loggedReadOf, offerLoggedRead } from './feature-log.js';
