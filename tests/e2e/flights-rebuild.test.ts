// The embedded rebuild on real data: the first 100 000 flights in the offline store (chDB, as a
// file load), the in-memory store built from it by the bootstrap's code (keys in batches, rows
// inside retention plus each key's latest rows for `last`), and every key of every view compared
// with the reference at the watermark clock and at earlier tile edges inside retention.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { valuesAgree } from '../../definitions/index.js';
import { EventDecoder, readParquetBatches } from '../../ingest/index.js';
import { evaluateFeature, MemoryOnlineStore, storeClockMs } from '../../online/index.js';
import { OfflineStore } from '../../offline/index.js';
import { eventRow } from '../../offline/load.js';
import { keyFieldsOf } from '../../offline/tables.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { bootstrapView } from '../../api/bootstrap.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';

const LIMIT = 100_000;
let fx: FlightsFixture;
let offline: OfflineStore;
let rebuilt: MemoryOnlineStore;

beforeAll(async () => {
  fx = await loadFlightsFixture(LIMIT);
  const { compiled } = fx;
  offline = await OfflineStore.open(compiled, { dataDir: mkdtempSync(join(tmpdir(), 'tm-rebuild-')) });
  const source = compiled.registry.sources[0]!;
  const decoder = new EventDecoder(compiled, 'flights');
  let offset = 0;
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit: LIMIT })) {
    const rows = batch.rows.map((row) => {
      const d = decoder.decodeValue(row);
      if (!d.ok) throw new Error(d.bad.reason);
      return eventRow(source, keyFieldsOf(compiled.registry, source), d.event, 'file:flights', offset++);
    });
    await offline.executor.insert('tm_events_flights', rows);
  }
  await offline.executor.insert('tm_loads', [{ load_id: 'file:flights', source: 'flights', file: 'flights', sha256: '', rows: LIMIT, events: LIMIT, bad: 0, registry_version: compiled.registry.version, loaded_at: Date.now() }]);
  rebuilt = new MemoryOnlineStore(compiled.registry);
  for (const view of compiled.registry.views) await bootstrapView(view, { kind: 'memory', store: rebuilt }, { executor: offline.executor, registry: compiled.registry, batchKeys: 1_000 });
}, 180_000);

afterAll(async () => {
  await offline?.close();
});

describe('the in-memory store rebuilt from the offline store (first 100 000 flights)', () => {
  it('has every key and the watermark of the replay', async () => {
    expect(await rebuilt.watermarkMs()).toBe(await fx.store.watermarkMs());
    for (const view of fx.compiled.registry.views) expect(rebuilt.entityKeys(view.name).sort()).toEqual(fx.store.entityKeys(view.name).sort());
  });

  it('matches the reference for every key of every view at the watermark clock and at earlier tile edges inside retention', async () => {
    const watermarkMs = (await rebuilt.watermarkMs())!;
    const times = [storeClockMs('watermark', watermarkMs), watermarkMs - 3 * 3_600_000 - (watermarkMs % 3_600_000), watermarkMs - 12 * 3_600_000 - (watermarkMs % 3_600_000)];
    let compared = 0;
    const mismatches: string[] = [];
    for (const t of times) {
      for (const view of fx.compiled.registry.views) {
        const keys = rebuilt.entityKeys(view.name);
        const tiles = rebuilt.readTilesSync(view.name, keys);
        keys.forEach((key, i) => {
          const expected = fx.reference(view, key, t);
          for (const f of view.features) {
            const got = evaluateFeature(view, f, tiles[i]!, t, watermarkMs).value;
            compared++;
            if (!valuesAgree(f.agg, got, expected[f.name]!)) mismatches.push(`${view.name}:${f.name} key ${key} at ${t}: rebuilt ${got}, reference ${expected[f.name]}`);
          }
        });
      }
    }
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(10_000);
  });
});
