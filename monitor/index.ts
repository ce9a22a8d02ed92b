// Public surface of monitor/: reference profiles, drift (PSI, KS, calibrated decisions), label
// metrics, the metrics time series, burn-rate alerts and their sinks, and the monitor loop.
export { MonitorRunner, pickMonitor, sloObservations } from './run.js';
export type { MonitorRunnerOptions, EvaluationSummary } from './run.js';
export { evaluateDrift, decileCounts } from './drift.js';
export { FIXED_DRIFT_THRESHOLDS, benjaminiHochberg, decideDrift } from './calibration.js';
export type { DriftResult, DriftEvaluation } from './drift.js';
export { loadOrBuildProfile, ensureMonitorTables, profileKey, FINE_BINS } from './profile.js';
export type { MonitorProfile, FeatureSliceProfile } from './profile.js';
export { ALL_SLICE, bandLabels } from './drift-sql.js';
export { evaluateLabels, labelMetricsOf, labelWindowsSql } from './labels.js';
export type { LabelMetricsResult } from './labels.js';
export { ensureMetricsTable, queryMetrics, writeMetrics, METRICS_TABLE } from './metrics-store.js';
export type { MetricRow, MetricRecord, MetricQuery } from './metrics-store.js';
export { BurnRateEvaluator, DEFAULT_BURN_RATE_POLICY, windowBurnRate } from './burn-rate.js';
export type { BurnRateRule, BurnRatePolicy, SloObservation } from './burn-rate.js';
export { BurnRateAlerts, AlertStateMachine, alertFingerprint, dashboardURL } from './alerts.js';
export type { AlertState, AlertNotification, AlertLabels } from './alerts.js';
export { MemoryAlertStateStore, OfflineAlertStateStore } from './alert-store.js';
export type { AlertStateStore } from './alert-store.js';
export { AlertmanagerWebhookSink, KafkaAlertSink, LogAlertSink, AlertDelivery, alertmanagerMessages } from './alert-sinks.js';
export type { AlertSink, AlertmanagerWebhookMessage } from './alert-sinks.js';
