// The dashboard's data on chDB over the sensor fixture (plus a few categories the reference never
// saw): the current bin counts kept with each drift result reproduce the stored PSI exactly.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, type CompiledDefinitions } from '../../definitions/index.js';
import { decileCounts, MonitorRunner, profileKey, queryMetrics, type MetricRecord } from '../../monitor/index.js';
import { psi } from '../../monitor/psi.js';
import { OfflineStore } from '../../offline/index.js';
import * as sensorDefinitions from '../fixtures/sensor-monitor.js';
import { END_HOUR, HOUR, REFERENCE_HOURS, T0, sensorData } from '../fixtures/sensor-monitor.js';

let dir: string;
let compiled: CompiledDefinitions;
let store: OfflineStore;
let runner: MonitorRunner;
let driftRows: MetricRecord[];

/** Hour at which sensor a reports kinds the reference never saw (z 3 times as often as w). */
const UNSEEN_HOUR = 34;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-dashboard-'));
  compiled = compileOrThrow(sensorDefinitions);
  const data = sensorData();
  const unseen = Array.from({ length: 40 }, (_, i) => ({ t: T0 + UNSEEN_HOUR * HOUR + i * 60_000 + 7, sensor: 'a', value: 0.1 * (i % 7), kind: i % 4 === 0 ? 'w' : 'z' }));
  const write = (name: string, rows: unknown[]): string => {
    const path = join(dir, `${name}.ndjson`);
    writeFileSync(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    return path;
  };
  store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  await store.loadEvents('readings', write('readings', [...data.readings, ...unseen]));
  await store.loadEvents('predictions', write('predictions', data.predictions));
  await store.loadEvents('labels', write('labels', data.labels));
  runner = await MonitorRunner.open(store.executor, compiled, 'sensors', { externalURL: 'http://tidemark.test' });
  await runner.evaluate(T0 + REFERENCE_HOURS * HOUR, T0 + END_HOUR * HOUR);
  driftRows = await queryMetrics(store.executor, { monitor: 'sensors', metric: 'drift', limit: 100_000 });
}, 180_000);

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('current bins kept with each drift result', () => {
  it('sum to n_cur and give back the stored PSI', () => {
    const withReference = driftRows.filter((r) => r.detail.note !== 'no_reference');
    expect(withReference.length).toBeGreaterThan(100);
    for (const r of withReference) {
      const cur = r.detail.cur_bins as number[];
      const ref = runner.profile.get(profileKey(r.feature, r.slice))!;
      expect(cur.reduce((s, c) => s + c, 0)).toBe(r.n_cur);
      expect(cur.length).toBe(ref.kind === 'numeric' ? 10 : ref.counts.length);
      const refBins = ref.kind === 'numeric' ? decileCounts(ref.counts) : ref.counts;
      expect(psi(refBins, cur)).toBe(r.value);
    }
  });

  it('keep the unseen categories, most frequent first', () => {
    const row = driftRows.find((r) => r.feature === 'kind' && r.slice === 'sensor=a' && r.window_ms === HOUR && Date.parse(r.window_end) === T0 + (UNSEEN_HOUR + 1) * HOUR)!;
    expect(row.detail.unseen_top).toEqual([
      { category: 'z', count: 30 },
      { category: 'w', count: 10 },
    ]);
    expect((row.detail.cur_bins as number[])[0]).toBe(40);
    const before = driftRows.find((r) => r.feature === 'kind' && r.slice === 'sensor=a' && r.window_ms === HOUR && Date.parse(r.window_end) === T0 + UNSEEN_HOUR * HOUR)!;
    expect(before.detail.unseen_top).toEqual([]);
    expect(driftRows.filter((r) => r.feature === 'value').every((r) => r.detail.unseen_top === undefined)).toBe(true);
  });
});
