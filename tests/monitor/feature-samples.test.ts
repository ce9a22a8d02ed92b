// The monitor's view-feature samples (offline/feature-samples.ts) against the reference
// implementation: every (key, active tile) of every windowed feature of the flights views, on a
// slice of real flights in chDB, equals referenceFeatureValue at the tile's close; and the set of
// sampled tiles is exactly the tiles that held events.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalKeyValue, referenceFeatureValue, valuesAgree, type ReferenceEvent } from '../../definitions/index.js';
import { featureSampleSql, OfflineStore } from '../../offline/index.js';
import { writeFlightFiles, type FlightFiles } from '../support/offline-fixtures.js';

const ROWS = 20_000;
let dir: string;
let files: FlightFiles;
let store: OfflineStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-samples-'));
  files = await writeFlightFiles(dir, ROWS);
  store = await OfflineStore.open(files.compiled, { dataDir: join(dir, 'data') });
  await store.loadEvents('flights', files.ndjson);
});

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('feature samples at tile closes', () => {
  it('equal the reference for every key and active tile of every windowed feature', async () => {
    let compared = 0;
    for (const view of files.compiled.registry.views) {
      const byKey = new Map<string, ReferenceEvent[]>();
      for (const e of files.events) {
        const key = view.keyFields.map((f) => canonicalKeyValue(e.fields[f])).join('\u0000');
        byKey.set(key, [...(byKey.get(key) ?? []), e]);
      }
      const windowed = view.features.filter((f) => f.windowMs !== null);
      for (const hopMs of new Set(windowed.map((f) => f.hopMs))) {
        const features = windowed.filter((f) => f.hopMs === hopMs);
        // Start a day in, so samples need events from before the range (the window's lookback).
        const from = Math.floor(files.minTs / hopMs) * hopMs + 86_400_000;
        const to = files.maxTs + hopMs;
        const rows = await store.executor.rows<Record<string, unknown>>(featureSampleSql(view, features), { from, to });
        const expectedTiles = new Set<string>();
        for (const [key, events] of byKey) {
          for (const e of events) {
            const close = (Math.floor(e.eventTimeMs / hopMs) + 1) * hopMs;
            if (close >= from && close < to) expectedTiles.add(`${key}\u0000${close}`);
          }
        }
        const seen = new Set<string>();
        for (const row of rows) {
          const key = view.keyFields.map((f) => String(row[f])).join('\u0000');
          const ts = Number(row.ts);
          seen.add(`${key}\u0000${ts}`);
          features.forEach((f, i) => {
            const expected = referenceFeatureValue(f, byKey.get(key) ?? [], ts);
            const actual = row[`x${i}`] as number | null;
            if (!valuesAgree(f.agg, actual, expected)) {
              throw new Error(`${view.name}:${f.name} key ${key} at ${new Date(ts).toISOString()}: ${actual} != reference ${expected}`);
            }
            compared++;
          });
        }
        expect(seen).toEqual(expectedTiles);
      }
    }
    expect(compared).toBeGreaterThan(10_000);
  });
});
