// The quickstart's monitor step: the flights monitor (examples/flights/monitor.ts) replayed over
// February to June 2001 against January, per origin airport, with the clock driven by event time.
// Its predictions come from a deliberately simple model written in SQL and trained on January:
// per (origin, departure hour) the January share of flights leaving 15+ minutes late. Predictions
// are made two hours before departure; labels arrive at departure, except a few that never arrive
// (2%) or arrive too late (1%), to show how the monitor counts them.
import { compileOrThrow, formatDurationMs, loadDefinitions, type CompiledDefinitions } from '../definitions/index.js';
import { ensureMetricsTable, lastEvaluatedMs, MonitorRunner, type AlertSink, type EvaluationSummary } from '../monitor/index.js';
import { COMPLETED_LOADS, ensureTables, latestEventTimeMs, recordCompletedLoad, type OfflineStore } from '../offline/index.js';

export const QUICKSTART_MONITOR_DEFINITIONS = new URL('../examples/flights/monitor.ts', import.meta.url).pathname;
const MODEL_LOAD_ID = 'quickstart-model:v1';
const HOUR = 3_600_000;

export interface QuickstartMonitorResult {
  compiled: CompiledDefinitions;
  runner: MonitorRunner;
  evaluations: EvaluationSummary[];
}

/** Score the flights with the January model and write predictions and labels into the offline store (once). */
async function writePredictionsAndLabels(offline: OfflineStore, fromMs: number): Promise<number> {
  const ex = offline.executor;
  const [done] = await ex.rows<{ n: number }>(`SELECT count() AS n FROM tm_loads WHERE load_id = {id:String}`, { id: MODEL_LOAD_ID });
  if ((done?.n ?? 0) > 0) return 0;
  for (const table of ['tm_events_delay_predictions', 'tm_events_delay_labels']) await ex.command(`DELETE FROM ${table} WHERE __load = {id:String}`, { id: MODEL_LOAD_ID });
  const flights = `tm_events_flights WHERE ${COMPLETED_LOADS}`;
  const id = `concat(__load, ':', toString(__offset))`;
  await ex.command(
    `INSERT INTO tm_events_delay_predictions (__ts, __load, __offset, prediction_id, date, origin, destination, distance, score)
     WITH model AS (SELECT origin, toHour(fromUnixTimestamp64Milli(__ts, 'UTC')) AS hour, round((countIf(delay >= 15) + 2 * 0.2) / (count() + 2), 3) AS p
                    FROM ${flights} AND __ts < {from:Int64} GROUP BY origin, hour)
     SELECT f.__ts - ${2 * HOUR}, {id:String}, f.__offset, ${id}, f.__ts - ${2 * HOUR}, f.origin, f.destination, f.distance, if(m.p = 0, 0.2, m.p)
     FROM (SELECT *, toHour(fromUnixTimestamp64Milli(__ts, 'UTC')) AS hour FROM ${flights}) AS f LEFT JOIN model AS m ON f.origin = m.origin AND f.hour = m.hour
     SETTINGS join_use_nulls = 0`,
    { id: MODEL_LOAD_ID, from: fromMs },
  );
  // 2% of labels never arrive; 1% arrive two days late (after the label delay: counted as missing).
  await ex.command(
    `INSERT INTO tm_events_delay_labels (__ts, __load, __offset, prediction_id, date, delayed)
     SELECT __ts + if(cityHash64(${id}) % 100 = 0, ${48 * HOUR}, 0) AS t, {id:String}, __offset, ${id}, t, toFloat64(delay >= 15)
     FROM ${flights} AND cityHash64(${id}) % 50 != 1`,
    { id: MODEL_LOAD_ID },
  );
  const [n] = await ex.rows<{ n: number }>(`SELECT count() AS n FROM tm_events_delay_predictions WHERE __load = {id:String}`, { id: MODEL_LOAD_ID });
  await recordCompletedLoad(ex, { loadId: MODEL_LOAD_ID, source: 'delay_predictions', file: 'quickstart model (SQL)', sha256: MODEL_LOAD_ID, rows: n?.n ?? 0, events: n?.n ?? 0, bad: 0, registryVersion: '' });
  return n?.n ?? 0;
}

/** The monitor's definitions and the span of its replay, before anything is evaluated. */
export interface QuickstartMonitorPlan {
  compiled: CompiledDefinitions;
  toMs: number;
  /** Interval ends still to evaluate (0 when an earlier run evaluated them all). */
  pendingEvaluations: number;
}

/** Compile the flights monitor, create its tables and count the weeks left to evaluate (quick: no profile, no scoring). */
export async function planQuickstartMonitor(offline: OfflineStore): Promise<QuickstartMonitorPlan> {
  const compiled = compileOrThrow((await loadDefinitions(QUICKSTART_MONITOR_DEFINITIONS)).module);
  await ensureTables(offline.executor, compiled.registry);
  await ensureMetricsTable(offline.executor);
  const plan = compiled.monitors[0]!;
  const latest = await latestEventTimeMs(offline.executor, plan.source);
  // The last whole interval of data: a window past the data's end would drift by being short.
  const toMs = Math.floor(((latest ?? plan.reference.toMs) + 1 - plan.phaseMs) / plan.intervalMs) * plan.intervalMs + plan.phaseMs;
  const last = await lastEvaluatedMs(offline.executor, plan.name, plan.version);
  const start = last === null ? plan.reference.toMs : Math.max(plan.reference.toMs, last);
  const ends = (t: number): number => Math.floor((t - plan.phaseMs) / plan.intervalMs);
  return { compiled, toMs, pendingEvaluations: Math.max(0, ends(toMs) - ends(start)) };
}

/** Replay the flights monitor over the months after its January reference and print what it saw. */
export async function runQuickstartMonitor(
  offline: OfflineStore,
  opts: { log: (line: string) => void; sinks?: readonly AlertSink[]; externalURL?: string },
  planned?: QuickstartMonitorPlan,
): Promise<QuickstartMonitorResult> {
  const { compiled, toMs } = planned ?? (await planQuickstartMonitor(offline));
  const plan = compiled.monitors[0]!;
  const log = opts.log;
  log('');
  log(`monitor ${plan.name}: ${plan.features.length} features per origin airport against ${new Date(plan.reference.fromMs).toISOString().slice(0, 10)}..${new Date(plan.reference.toMs).toISOString().slice(0, 10)}, evaluated every ${formatDurationMs(plan.intervalMs)} over windows ${plan.windowsMs.map(formatDurationMs).join(', ')} (${plan.drift.mode} drift decisions)`);
  const written = await writePredictionsAndLabels(offline, plan.reference.toMs);
  if (written > 0) log(`  scored ${written.toLocaleString('en-US')} flights with a per-(origin, hour) model trained on January; labels arrive at departure`);
  const started = performance.now();
  const runner = await MonitorRunner.open(offline.executor, compiled, plan.name, { sinks: opts.sinks, externalURL: opts.externalURL });
  const evaluations = await runner.evaluate(plan.reference.toMs, toMs);
  if (evaluations.length > 0) log(`  evaluated ${evaluations.length} weeks in ${((performance.now() - started) / 1000).toFixed(1)} s; results in the offline table tm_monitor_metrics`);
  else log('  already evaluated (results in tm_monitor_metrics); delete the data dir to start over');
  await printMonthlySummary(offline, plan.name, log);
  // Firing first, oldest first, then by SLO and slice: the same list prints the same way every run.
  const alerts = runner.alerts
    .alerts()
    .sort((a, b) => (a.status === b.status ? a.startsAtMs - b.startsAtMs || `${a.labels.slo} ${a.labels.slice ?? ''}`.localeCompare(`${b.labels.slo} ${b.labels.slice ?? ''}`) : a.status === 'firing' ? -1 : 1));
  const firing = alerts.filter((a) => a.status === 'firing');
  const pages = alerts.filter((a) => a.labels.severity === 'page').length;
  log(`  alerts: ${alerts.length} raised over the replay (${pages} pages, ${alerts.length - pages} tickets), ${firing.length} still firing at the end; the first:`);
  for (const a of alerts.slice(0, 8)) {
    log(`    ${a.status.padEnd(8)} ${a.labels.severity?.padEnd(6)} ${a.labels.slo} ${a.labels.slice ?? ''} since ${new Date(a.startsAtMs).toISOString().slice(0, 10)}: ${a.annotations.summary ?? ''}`);
  }
  return { compiled, runner, evaluations };
}

/** Per month: how many airports drifted on delay (7-day window), the largest shifts, and the model's AUC. */
async function printMonthlySummary(offline: OfflineStore, monitor: string, log: (line: string) => void): Promise<void> {
  const rows = await offline.executor.rows<{ month: string; airports: number; drifted: number; top: [string, number][]; auc: number | null; labelled: number }>(
    `SELECT formatDateTime(window_end - INTERVAL 1 MILLISECOND, '%Y-%m', 'UTC') AS month,
            uniqExactIf(slice, metric = 'drift' AND drift IS NOT NULL AND slice != 'all') AS airports,
            uniqExactIf(slice, metric = 'drift' AND drift AND slice != 'all') AS drifted,
            arraySlice(arraySort(x -> -x.2, groupArrayIf((replaceOne(slice, 'origin=', ''), round(value, 3)), metric = 'drift' AND drift AND slice != 'all' AND toDayOfMonth(window_end) BETWEEN 15 AND 21)), 1, 4) AS top,
            avgIf(value, metric = 'auc' AND slice = 'all') AS auc
     FROM tm_monitor_metrics FINAL WHERE monitor = {monitor:String} AND window_ms = 604800000 AND (metric = 'auc' OR (metric = 'drift' AND feature = 'delay'))
     GROUP BY month ORDER BY month`,
    { monitor },
  );
  log('  month    airports  drifted on delay (7d)  largest PSI, 3rd week             model AUC (7d, all)');
  for (const r of rows) {
    log(`  ${r.month}  ${String(r.airports).padStart(8)}  ${String(r.drifted).padStart(21)}  ${r.top.map(([a, p]) => `${a} ${p}`).join(', ').padEnd(34)} ${r.auc === null ? '-' : r.auc.toFixed(3)}`);
  }
}
