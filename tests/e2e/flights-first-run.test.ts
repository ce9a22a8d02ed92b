// npm start's first run on a fresh data dir: the flights file loaded into chDB by ClickHouse's
// Parquet reader, the in-memory store built from it, the API served, and the monitor's weeks
// evaluated in the background; against the replay of the same file with the monitor evaluated
// before serving (`--replay`, the path every first run took before). The online reads of every key
// of every view at the watermark clock and at earlier hours, the counts, the summary and the
// monitor's printed results are the same; the API answers while the monitor is still running.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entityKeyValues, valuesAgree, type Scalar } from '../../definitions/index.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { runQuickstart, type QuickstartMonitorResult, type QuickstartResult } from '../../api/index.js';

const DEFINITIONS = new URL('../../examples/flights', import.meta.url).pathname;
let dir: string;
let firstRun: QuickstartResult;
let replayRun: QuickstartResult;
const firstLog: string[] = [];
const replayLog: string[] = [];
let firstMonitor: QuickstartMonitorResult;
/** Whether the API answered a read while the monitor was still evaluating. */
let answeredWhileMonitoring = false;

function run(dataDir: string, log: string[], rebuild: boolean, serve: boolean): Promise<QuickstartResult> {
  return runQuickstart({ definitions: DEFINITIONS, file: FLIGHTS_PARQUET_PATH, port: 0, host: '127.0.0.1', serve, progress: false, rebuild, dataDir, log: (line) => log.push(line) });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tm-first-run-'));
  firstRun = await run(join(dir, 'first'), firstLog, true, true);
  let settled = false;
  void firstRun.monitorInBackground?.finally(() => (settled = true));
  const res = await fetch(`${firstRun.url}/get-online-features`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] } }) });
  answeredWhileMonitoring = res.status === 200 && !settled;
  firstMonitor = (await firstRun.monitorInBackground)!;
  await firstRun.server?.close();
  await firstRun.offline?.close();
  replayRun = await run(join(dir, 'replay'), replayLog, false, false);
  await replayRun.offline?.close();
}, 1_200_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("npm start's first run (ClickHouse's Parquet reader, then the rebuild) against the replay", () => {
  it('loads the file with the Parquet reader and builds the online store from chDB, not by a replay', () => {
    expect(firstLog.some((l) => l.startsWith("loaded 3,000,000 events into the offline store with ClickHouse's Parquet reader"))).toBe(true);
    expect(firstLog.some((l) => l.startsWith('rebuilt from the offline store 3,000,000 events'))).toBe(true);
    expect(replayLog.some((l) => l.startsWith('replayed 3,000,000 events'))).toBe(true);
  });

  it('counts the same events and bad events, and has the same keys and watermark', () => {
    expect({ events: firstRun.replay.events, bad: firstRun.replay.badEvents, late: firstRun.replay.lateTileEvents }).toEqual({ events: replayRun.replay.events, bad: replayRun.replay.badEvents, late: replayRun.replay.lateTileEvents });
    expect(firstRun.stats.watermarkMs).toBe(replayRun.stats.watermarkMs);
    expect(firstRun.stats.keys).toEqual(replayRun.stats.keys);
    for (const view of firstRun.compiled.registry.views) expect(firstRun.store.entityKeys(view.name).sort()).toEqual(replayRun.store.entityKeys(view.name).sort());
  });

  it('serves while the monitor evaluates in the background, and says so', () => {
    expect(firstRun.monitor).toBeNull();
    expect(answeredWhileMonitoring).toBe(true);
    const serving = firstLog.findIndex((l) => l.startsWith('serving the HTTP API'));
    const background = firstLog.findIndex((l) => l.startsWith('monitor flight_delays: evaluating 21 weeks in the background'));
    const monitorBlock = firstLog.findIndex((l) => l.startsWith('monitor flight_delays: 10 features'));
    expect(serving).toBeGreaterThan(0);
    expect(background).toBeGreaterThan(serving);
    expect(monitorBlock).toBeGreaterThan(background);
    expect(replayRun.monitorInBackground).toBeNull();
  });

  it('evaluates the same weeks with the same drift decisions as the monitor run before serving', () => {
    const weeks = (m: QuickstartMonitorResult | null) => (m?.evaluations ?? []).map((e) => ({ windowEndMs: e.windowEndMs, metrics: e.metrics, drifted: e.drifted.length }));
    expect(weeks(firstMonitor)).toEqual(weeks(replayRun.monitor));
    expect(weeks(firstMonitor).length).toBe(21);
  });

  it('prints the same summary, sample read, point-in-time dataset and monitor results', () => {
    // Lines that say how the store was built (and how long it took), where the API is and blank
    // lines differ; the rest may not, the monitor's block included (only its position differs).
    const how = /^(tidemark quickstart|replayed|rebuilt|loaded|offline store|the offline store holds|materialized|serving the HTTP API|  dashboard:|  curl|monitor flight_delays: evaluating|$)/;
    const same = (log: string[]): string[] => log.filter((l) => !how.test(l)).map((l) => l.replace(/^(  evaluated \d+ weeks in )[\d.]+ s/, '$1... s'));
    expect(same(firstLog)).toEqual(same(replayLog));
    expect(same(firstLog).length).toBeGreaterThan(30);
    expect(same(firstLog).some((l) => l.startsWith('  alerts: '))).toBe(true);
    const featureValues = (log: string[]): string | undefined => log.find((l) => l.startsWith('materialized'))?.replace(/ in [\d,]+ tiles$/, '');
    expect(featureValues(firstLog)).toBe(featureValues(replayLog));
    expect(firstRun.sample).toEqual(replayRun.sample);
    // The offline path sums in ClickHouse, whose order depends on the table's parts: the last bits
    // of a float may differ between two loads of the same rows (the printed values above may not).
    const close = (a: unknown, b: unknown): boolean => a === b || (typeof a === 'number' && typeof b === 'number' && Math.abs(a - b) <= 1e-12 * Math.abs(b));
    const rows = (r: QuickstartResult) => r.offlineSample ?? [];
    expect(rows(firstRun).length).toBe(2);
    expect(Object.keys(rows(firstRun)[0]!).sort()).toEqual(Object.keys(rows(replayRun)[0]!).sort());
    rows(replayRun).forEach((row, i) => {
      for (const [column, value] of Object.entries(row)) expect(close(rows(firstRun)[i]![column], value), `${column}: ${rows(firstRun)[i]![column]} vs ${value}`).toBe(true);
    });
  });

  it('serves the same online features for every key of every view, at the watermark clock and at earlier hours', async () => {
    const watermarkMs = firstRun.stats.watermarkMs!;
    const times = [undefined, watermarkMs - 3 * 3_600_000 - (watermarkMs % 3_600_000), watermarkMs - 12 * 3_600_000 - (watermarkMs % 3_600_000)];
    const mismatches: string[] = [];
    let compared = 0;
    for (const view of firstRun.compiled.registry.views) {
      const keys = replayRun.store.entityKeys(view.name).sort();
      const features = view.features.map((f) => `${view.name}:${f.name}`);
      for (let i = 0; i < keys.length; i += 500) {
        const chunk = keys.slice(i, i + 500).map((k) => entityKeyValues(k, view.joinKeys.length));
        const entities = Object.fromEntries(view.joinKeys.map((k, j) => [k, chunk.map((values) => values[j]!)]));
        for (const at of times) {
          const request = { features, entities, ...(at === undefined ? {} : { at }) };
          const [got, expected] = await Promise.all([firstRun.service.getOnlineFeatures(request), replayRun.service.getOnlineFeatures(request)]);
          expect(got.atMs).toBe(expected.atMs);
          view.features.forEach((f, k) => {
            const a = got.response.results[view.joinKeys.length + k]!.values as Scalar[];
            const b = expected.response.results[view.joinKeys.length + k]!.values as Scalar[];
            b.forEach((value, row) => {
              compared++;
              if (!valuesAgree(f.agg, a[row]!, value)) mismatches.push(`${view.name}:${f.name} ${JSON.stringify(chunk[row])} at ${got.atMs}: first run ${a[row]}, replay ${value}`);
            });
          });
        }
      }
    }
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(20_000);
  });
});
