// A wide monitor for the dashboard at scale: N numeric fields x 5 slice values, with its stored
// profile and metrics written directly (deterministic pseudo-random PSI, decisions and bin counts)
// rather than evaluated, so the pages can be loaded at 500 features x 5 slices in seconds. Used by
// the dashboard tests (payload bounds) and the bench (first paint in Chromium).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, monitor, source, type CompiledDefinitions } from '../../definitions/index.js';
import { compactMetrics, ensureMetricsTable, ensureMonitorTables, writeMetrics, type MetricRow } from '../../monitor/index.js';
import { insertInChunks, OfflineStore } from '../../offline/index.js';
import { mulberry32 } from './random.js';

export const WIDE_T0 = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;

export interface WideMonitorStore {
  compiled: CompiledDefinitions;
  offline: OfflineStore;
  close(): Promise<void>;
}

export async function openWideMonitorStore(features = 500, sliceValues = 5, evaluations = 21): Promise<WideMonitorStore> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-wide-'));
  const fields: Record<string, z.ZodType> = { t: eventTime(), region: z.string() };
  for (let i = 0; i < features; i++) fields[`f${i}`] = z.number();
  const events = source({ name: 'wide', topic: 'wide', schema: z.object(fields), eventTimeField: 't' });
  const names = Array.from({ length: features }, (_, i) => `f${i}`);
  // Definitions need a view; the monitor watches the source's fields.
  const region = entity({ name: 'region', joinKeys: ['region'] });
  const regionStats = featureView({ name: 'region_stats', source: events, entity: region, features: { f0_mean_1d: { agg: 'mean', field: 'f0' as never, window: '1d' } } });
  const wide = monitor({
    name: 'wide',
    source: events,
    features: names as never,
    slices: { region: { field: 'region' as never } },
    reference: { from: new Date(WIDE_T0).toISOString(), to: new Date(WIDE_T0 + 28 * DAY).toISOString() },
    interval: '1d',
    windows: ['1d', '7d'],
  });
  const compiled = compileOrThrow({ events, region, regionStats, wide });
  const plan = compiled.monitors[0]!;
  const offline = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  const ex = offline.executor;
  await ensureMonitorTables(ex);
  await ensureMetricsTable(ex);
  const random = mulberry32(42);
  const slices = ['all', ...Array.from({ length: sliceValues }, (_, i) => `region=r${i}`)];
  const profiles: Record<string, unknown>[] = [];
  for (const feature of names) {
    for (const slice of slices) {
      const edges = Array.from({ length: 99 }, (_, i) => i - 49);
      profiles.push({ monitor: plan.name, version: plan.version, feature, slice, kind: 'numeric', n: 10_000, edges, categories: [], counts: Array.from({ length: 100 }, () => 100), created_at: Date.now() });
    }
  }
  await insertInChunks(ex, 'tm_monitor_profiles', profiles);
  const rows: MetricRow[] = [];
  for (let e = 1; e <= evaluations; e++) {
    const end = plan.reference.toMs + e * plan.intervalMs;
    for (const windowMs of plan.windowsMs) {
      for (const feature of names) {
        for (const slice of slices) {
          const psi = random() < 0.05 ? 0.1 + random() * 0.4 : random() * 0.05;
          const q = psi > 0.1 ? random() * 0.01 : 0.05 + random() * 0.9;
          const bins = Array.from({ length: 10 }, () => Math.round(80 + random() * 40));
          rows.push({ monitor: plan.name, version: plan.version, metric: 'drift', feature, slice, window_ms: windowMs, window_end: end, value: psi, n_ref: 10_000, n_cur: bins.reduce((s, b) => s + b, 0), ks: psi / 3, ks_error_bound: 0.01, p_value: q / 2, q_value: q, drift: q <= 0.05 && psi >= 0.1, detail: JSON.stringify({ kind: 'numeric', cur_bins: bins }) });
        }
      }
    }
  }
  await writeMetrics(ex, rows);
  // As a monitor replay leaves them (monitor/run.ts): one part.
  await compactMetrics(ex);
  return { compiled, offline, close: async () => { await offline.close(); rmSync(dir, { recursive: true, force: true }); } };
}
