// One monitor measurement in its own process (so peak RSS is its own):
//   load <dir>       load flights-3m.parquet into chDB at <dir>
//   drift <dir>      one full drift evaluation of the flights monitor's 10 features x every origin
//                    airport: the January reference profile, then one window over February to June
//   scan <dir>       baseline: one chDB pass reading the same rows (count, mean of delay and distance,
//                    distinct destinations per origin airport), no binning, no statistics
//   replay <dir>     the flights monitor as npm start runs it: predictions scored, 22 weekly evaluations
//                    (windows 7d and 28d) of drift, label metrics and freshness, alerts
// Prints one JSON line with the figures.
import { compileOrThrow, monitor } from '../definitions/index.js';
import * as flightsMonitor from '../examples/flights/monitor.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { runQuickstartMonitor } from '../api/quickstart-monitor.js';
import { evaluateDrift, loadOrBuildProfile } from '../monitor/index.js';
import { keepChdbMemory, OfflineStore } from '../offline/index.js';

const DAY = 86_400_000;
const FEB_1 = Date.UTC(2001, 1, 1);
const JUL_1 = Date.UTC(2001, 6, 1);
const [mode, dir] = process.argv.slice(2) as [string, string];
const { flightDelays, delayPredictions, delayLabels, ...rest } = flightsMonitor;
// The flights monitor's features and slices, with one window that spans February to June.
const span = `${(JUL_1 - FEB_1) / DAY}d` as const;
const fullWindow = monitor({ ...flightDelays, name: 'bench_full_window', interval: span, windows: [span], labels: undefined, slos: {} });
const compiled = compileOrThrow({ ...rest, delayPredictions, delayLabels, flightDelays, fullWindow });
// As `tidemark monitor` and npm start run the monitor (drift and replay; the load and the scan as the dataset path runs).
if (mode === 'drift' || mode === 'replay') keepChdbMemory();
const store = await OfflineStore.open(compiled, { dataDir: dir });
const figures: Record<string, unknown> = { mode };
const started = performance.now();
try {
  if (mode === 'load') {
    const result = await store.loadEvents('flights', FLIGHTS_PARQUET_PATH);
    figures.events = result.events;
  } else if (mode === 'drift') {
    const plan = compiled.monitors.find((m) => m.name === 'bench_full_window')!;
    const { profile } = await loadOrBuildProfile(store.executor, compiled, plan);
    figures.profileSeconds = (performance.now() - started) / 1000;
    let tests = 0;
    let drifted = 0;
    for await (const e of evaluateDrift(store.executor, compiled, plan, profile, FEB_1, JUL_1)) {
      tests += e.results.filter((r) => r.drift !== null).length;
      drifted += e.results.filter((r) => r.drift === true).length;
    }
    Object.assign(figures, { tests, drifted, slices: new Set([...profile.values()].map((p) => p.slice)).size, features: plan.features.length });
  } else if (mode === 'scan') {
    const [row] = await store.executor.rows<{ n: number }>(
      `SELECT sum(n) AS n FROM (SELECT origin, count() AS n, avg(delay), avg(distance), uniqExact(destination) FROM tm_events_flights WHERE __ts >= {from:Int64} AND __ts < {to:Int64} GROUP BY origin)`,
      { from: Date.UTC(2001, 0, 1), to: JUL_1 },
    );
    figures.rows = row?.n ?? 0;
  } else if (mode === 'replay') {
    // As npm start runs it: score the flights with the January model, then replay weekly.
    const { evaluations } = await runQuickstartMonitor(store, { log: () => {} });
    Object.assign(figures, { evaluations: evaluations.length, metrics: evaluations.reduce((n, e) => n + e.metrics, 0) });
  }
} finally {
  await store.close();
}
figures.seconds = (performance.now() - started) / 1000;
figures.peakRssMb = process.resourceUsage().maxRSS / 1024;
// CPU of every thread (chDB's, the statistics workers'): steadier than wall time on a shared machine.
const cpu = process.cpuUsage();
figures.cpuSeconds = (cpu.user + cpu.system) / 1e6;
process.stdout.write(`${JSON.stringify(figures)}\n`);
