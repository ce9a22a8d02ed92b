// Public surface of definitions/: the DSL, the compiler, tile math and the reference implementation.
export { entity, source, featureView, isDefinition, AGGREGATIONS, NUMERIC_AGGREGATIONS } from './dsl.js';
export type {
  Aggregation,
  AnyDefinition,
  EntityDefinition,
  SourceDefinition,
  FeatureViewDefinition,
  FeatureSpec,
  NumericFields,
} from './dsl.js';
export { eventTime, parseIsoUtcMs, parseTimeMs, describeField, fieldRule, schemaRules } from './schema.js';
export type { FieldInfo, FieldKind, FieldRule, NumberBound } from './schema.js';
export { parseDurationMs, formatDurationMs } from './duration.js';
export type { Duration } from './duration.js';
export { TidemarkError, DefinitionErrors, formatDefinitionError } from './errors.js';
export type { DefinitionError, ErrorCode } from './errors.js';
export { withoutPassword, withoutSecrets, readSecretFile, readCaFile, isTlsCertificateError } from './secrets.js';
export { canonicalKeyValue, entityKeyId, entityKeyValues } from './keys.js';
export {
  compile,
  compileOrThrow,
  collectDefinitions,
  canonicalJson,
  defaultHopMs,
  viewPlan,
  MAX_TILES_PER_WINDOW,
  MAX_TILES_PER_READ,
  rollupSpans,
  worstTilesPerRead,
  LATEST_GROUP_HOP_MS,
} from './compile.js';
export type {
  Registry,
  CompiledDefinitions,
  CompileResult,
  EntityPlan,
  SourcePlan,
  ViewPlan,
  FeaturePlan,
  TileGroupPlan,
} from './compile.js';
export { SLOT_WIDTH, valueWidth, initSlots, addToSlots, addToSpecSlots, aggregationSpec, mergeSlots, finalizeSlots, compareLast, compareScalars, compareCodePoints } from './aggregates.js';
export type { BucketCounts, Scalar, Tile, TileValue } from './aggregates.js';
export type { AggregationParams, AggregationSpec } from './aggregations/index.js';
export { tileIndexOf, groupSlots, tileTemplate, emptyTile, copyTile, mergeTileInto, trimTileIndex, tileSeries, windowBlocks, rollupChildren, rollupTrimIndex } from './tiles.js';
export type { TileTemplate, SlotRef, TileUpdate, KeyTileUpdates, TileBatch, TileSeries, TileBlock } from './tiles.js';
export { referenceFeatureValue, referenceViewValues, eventsOfKey, windowStartMs, valuesAgree, exactSum } from './reference.js';
export type { ReferenceEvent } from './reference.js';
export { loadDefinitions, resolveDefinitionsPath } from './load.js';
export { monitor, SLO_INDICATORS, BINARY_LABEL_METRICS, REGRESSION_LABEL_METRICS, DEFAULT_BURN_RATE_RULES, FEATURE_LOG_PREDICTIONS } from './monitor.js';
export type {
  MonitorDefinition,
  MonitorPlan,
  MonitorFeaturePlan,
  MonitorSlicePlan,
  SloPlan,
  SloSpec,
  SloIndicator,
  LabelPlan,
  LabelSpec,
  SourceLabelSpec,
  LoggedLabelSpec,
  LabelMetric,
  BurnRateRulePlan,
} from './monitor.js';
