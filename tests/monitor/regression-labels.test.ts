// Label metrics of a regression model (MAE, RMSE) through the SQL: the error sums are added in an
// order of their own (not the order ClickHouse's GROUP BY meets the rows in), so a window's value
// is the same bits however the evaluations are grouped into queries and however often it is
// computed, and it equals the exactly rounded sums of the joined rows to within a few ulps.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, exactSum, featureView, monitor, source, type CompiledDefinitions } from '../../definitions/index.js';
import { evaluateLabels, LabelMetricsAhead } from '../../monitor/index.js';
import { OfflineStore } from '../../offline/index.js';
import { writeNdjson } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 2, 1);
const END_HOUR = 30;

const readings = source({ name: 'readings', topic: 'readings', schema: z.object({ t: eventTime(), site: z.string(), value: z.number() }), eventTimeField: 't' });
const siteStats = featureView({ name: 'site_stats', source: readings, entity: entity({ name: 'site', joinKeys: ['site'] }), features: { value_mean_1h: { agg: 'mean', field: 'value', window: '1h' } } });
const predictions = source({ name: 'predictions', topic: 'predictions', schema: z.object({ id: z.string(), t: eventTime(), site: z.string(), score: z.number() }), eventTimeField: 't' });
const labels = source({ name: 'labels', topic: 'labels', schema: z.object({ id: z.string(), t: eventTime(), y: z.number() }), eventTimeField: 't' });
const load = monitor({
  name: 'load',
  source: readings,
  features: ['value'],
  slices: { site: { field: 'site' } },
  reference: { from: new Date(T0).toISOString(), to: new Date(T0 + 6 * HOUR).toISOString() },
  interval: '1h',
  windows: ['1h', '4h'],
  labels: { predictions, labels, predictionId: 'id', labelId: 'id', score: 'score', label: 'y', kind: 'regression', labelDelay: '1h' },
});

const predictionRows: { id: string; t: number; site: string; score: number }[] = [];
const labelRows: { id: string; t: number; y: number }[] = [];
let dir: string;
let compiled: CompiledDefinitions;
let store: OfflineStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-regression-labels-'));
  compiled = compileOrThrow({ readings, siteStats, predictions, labels, load });
  // Errors of very different sizes (a float sum's order then shows in its last bits), many per
  // score: the scores repeat, so a (bucket, slice, score) group holds many rows.
  const random = mulberry32(11);
  const readingRows: Record<string, unknown>[] = [];
  for (let h = 0; h < END_HOUR; h++) {
    for (let i = 0; i < 400; i++) {
      const t = T0 + h * HOUR + i * 9_000;
      const site = ['n', 's', 'e', 'w'][i % 4]!;
      readingRows.push({ t, site, value: random() });
      const id = `r${h}-${i}`;
      const score = [0.1, 3.7, 1e6 + 0.3, 12.25][Math.floor(random() * 4)]!;
      const y = score + (random() - 0.5) * 10 ** Math.floor(random() * 12 - 4);
      predictionRows.push({ id, t, site, score });
      if (i % 9 !== 4) labelRows.push({ id, t: t + (i % 5 === 2 ? 2 * HOUR : 10 * 60_000), y });
    }
  }
  store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  await store.loadEvents('readings', writeNdjson(join(dir, 'readings.ndjson'), readingRows));
  await store.loadEvents('predictions', writeNdjson(join(dir, 'predictions.ndjson'), predictionRows));
  await store.loadEvents('labels', writeNdjson(join(dir, 'labels.ndjson'), labelRows));
}, 120_000);

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('regression label metrics', () => {
  const plan = (): CompiledDefinitions['monitors'][number] => compiled.monitors[0]!;
  const from = T0 + 6 * HOUR;
  const to = T0 + END_HOUR * HOUR;

  it('are the same bits in one pass, in spans of a few evaluations, and computed again', async () => {
    const all = await evaluateLabels(store.executor, plan(), from, to);
    const again = await evaluateLabels(store.executor, plan(), from, to);
    const ahead = new LabelMetricsAhead(store.executor, plan(), from, to, 3);
    ahead.start();
    let compared = 0;
    for (let T = from + HOUR; T <= to; T += HOUR) {
      expect(await ahead.at(T)).toEqual(all.get(T));
      expect(again.get(T)).toEqual(all.get(T));
      compared += all.get(T)!.length;
    }
    // 24 evaluations x 2 windows x (all + 4 sites)
    expect(compared).toBe(24 * 2 * 5);
  });

  it('equal MAE and RMSE of the joined rows', async () => {
    const all = await evaluateLabels(store.executor, plan(), from, to);
    const labelsById = new Map(labelRows.map((l) => [l.id, l]));
    let checked = 0;
    for (const T of [from + 3 * HOUR, to]) {
      for (const windowMs of [HOUR, 4 * HOUR]) {
        for (const slice of ['all', 'site=e']) {
          // Predictions in [T - 1h - W, T - 1h) whose label came within an hour.
          const errors = predictionRows
            .filter((p) => p.t >= T - HOUR - windowMs && p.t < T - HOUR && (slice === 'all' || `site=${p.site}` === slice))
            .flatMap((p) => {
              const l = labelsById.get(p.id);
              return l !== undefined && l.t < p.t + HOUR ? [p.score - l.y] : [];
            });
          const result = all.get(T)!.find((r) => r.windowMs === windowMs && r.slice === slice)!;
          expect(result.labelled).toBe(errors.length);
          const mae = exactSum(errors.map(Math.abs)) / errors.length;
          const rmse = Math.sqrt(exactSum(errors.map((e) => e * e)) / errors.length);
          expect(Math.abs(result.metrics.mae! - mae)).toBeLessThanOrEqual(1e-13 * mae);
          expect(Math.abs(result.metrics.rmse! - rmse)).toBeLessThanOrEqual(1e-13 * rmse);
          checked++;
        }
      }
    }
    expect(checked).toBe(8);
  });
});
