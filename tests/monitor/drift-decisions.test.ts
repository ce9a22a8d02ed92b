// Drift decisions that do not cry wolf, on the real flights data: reference January 2001 against a
// random half of January (no drift by construction), per origin airport, for delay, distance and
// destination. Fixed thresholds (Evidently's PSI >= 0.1 / KS p <= 0.05) flag many small airports;
// the calibrated mode (no-drift thresholds at the observed sizes, Benjamini-Hochberg, effect floor)
// flags (almost) none, and still finds a delay shift injected into a few airports.
// The half sample is loaded shifted by 31 days (and again, with the shift, by 62 days), so that it
// is the current window of an evaluation while January stays the reference.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, monitor, type CompiledDefinitions, type MonitorPlan } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { readParquetBatches } from '../../ingest/index.js';
import { evaluateDrift, loadOrBuildProfile, type DriftResult } from '../../monitor/index.js';
import { OfflineStore } from '../../offline/index.js';
import { mulberry32 } from '../support/random.js';

const DAY = 86_400_000;
const FEB_1 = Date.UTC(2001, 1, 1);
const SHIFT_1 = 31 * DAY;
const SHIFT_2 = 62 * DAY;
/** Mid-sized airports whose current delays get +30 minutes in the second evaluation. */
const SHIFTED_AIRPORTS = ['AUS', 'BNA', 'MCI', 'RDU', 'SJC'];

let dir: string;
let store: OfflineStore;

function monitorDefinitions(mode: 'calibrated' | 'fixed'): CompiledDefinitions {
  const m = monitor({
    name: `jan_${mode}`,
    source: flightsDefinitions.flights,
    features: ['delay', 'distance', 'destination'],
    slices: { origin: { field: 'origin' } },
    reference: { from: '2001-01-01T00:00:00Z', to: '2001-02-01T00:00:00Z' },
    interval: '1d',
    windows: ['31d'],
    drift: { mode },
  });
  return compileOrThrow({ ...flightsDefinitions, m });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-drift-'));
  const random = mulberry32(2001);
  const january: string[] = [];
  const half: string[] = [];
  const shifted: string[] = [];
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH)) {
    for (const row of batch.rows) {
      const t = row.date as number;
      if (t >= FEB_1) continue;
      january.push(JSON.stringify(row));
      if (random() < 0.5) {
        half.push(JSON.stringify({ ...row, date: t + SHIFT_1 }));
        const delay = SHIFTED_AIRPORTS.includes(row.origin as string) ? (row.delay as number) + 30 : row.delay;
        shifted.push(JSON.stringify({ ...row, date: t + SHIFT_2, delay }));
      }
    }
  }
  const files = { january, half, shifted };
  store = await OfflineStore.open(monitorDefinitions('calibrated'), { dataDir: join(dir, 'data') });
  for (const [name, lines] of Object.entries(files)) {
    const path = join(dir, `${name}.ndjson`);
    writeFileSync(path, `${lines.join('\n')}\n`);
    await store.loadEvents('flights', path);
  }
}, 180_000);

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function evaluationAt(mode: 'calibrated' | 'fixed', T: number): Promise<{ plan: MonitorPlan; results: DriftResult[] }> {
  const compiled = monitorDefinitions(mode);
  const plan = compiled.monitors[0]!;
  const { profile } = await loadOrBuildProfile(store.executor, compiled, plan);
  const out: DriftResult[] = [];
  for await (const e of evaluateDrift(store.executor, compiled, plan, profile, T - DAY, T)) out.push(...e.results);
  return { plan, results: out };
}

const flagged = (results: readonly DriftResult[]): DriftResult[] => results.filter((r) => r.drift === true);
const airportsOf = (results: readonly DriftResult[]): string[] => [...new Set(results.map((r) => r.slice.replace('origin=', '')))].sort();

describe('drift decisions on January vs a random half of January', () => {
  it('fixed thresholds cry wolf on small airports; calibrated mode stays quiet', async () => {
    const T = FEB_1 + 31 * DAY;
    const fixed = await evaluationAt('fixed', T);
    const calibrated = await evaluationAt('calibrated', T);
    const tested = calibrated.results.filter((r) => r.drift !== null);
    expect(tested.length).toBeGreaterThan(400); // ~200 airports x 3 features, plus all
    const fixedFlags = flagged(fixed.results);
    const calibratedFlags = flagged(calibrated.results);
    // Fixed mode's alarms are on small slices: the median flagged slice is far smaller than the median slice.
    const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`no drift: fixed flags ${fixedFlags.length} of ${tested.length} tests (${airportsOf(fixedFlags).length} airports, median current size ${median(fixedFlags.map((r) => r.nCur))} vs ${median(tested.map((r) => r.nCur))}); calibrated flags ${calibratedFlags.length}`);
    expect(fixedFlags.length).toBeGreaterThanOrEqual(30);
    expect(median(fixedFlags.map((r) => r.nCur))).toBeLessThan(median(tested.map((r) => r.nCur)));
    expect(calibratedFlags.length).toBeLessThanOrEqual(2);
  });

  it('calibrated mode finds a delay shift injected into a few airports, and little else', async () => {
    const { results } = await evaluationAt('calibrated', FEB_1 + 62 * DAY);
    const delayFlags = flagged(results).filter((r) => r.feature === 'delay' && r.slice !== 'all');
    console.log(`injected +30 min at ${SHIFTED_AIRPORTS.join(', ')}: calibrated flags delay at ${airportsOf(delayFlags).join(', ')}; other flags: ${flagged(results).filter((r) => r.feature !== 'delay').length}`);
    expect(airportsOf(delayFlags)).toEqual(expect.arrayContaining(SHIFTED_AIRPORTS));
    expect(delayFlags.length).toBeLessThanOrEqual(SHIFTED_AIRPORTS.length + 1);
    expect(flagged(results).filter((r) => r.feature !== 'delay').length).toBeLessThanOrEqual(2);
  });
});
