// The two paths agree: the same 100 000 flights replayed through the materializer into the online
// store and loaded into the offline store (chDB); for every key of every view, the online value at
// the watermark clock equals the dataset value at that time, and both equal the reference.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entityKeyValues, valuesAgree, type Scalar } from '../../definitions/index.js';
import { evaluateFeatures, storeClockMs } from '../../online/index.js';
import { OfflineStore } from '../../offline/index.js';
import { loadFlightsFixture, type FlightsFixture } from '../support/flights.js';
import { allFeatureRefs, writeFlightFiles, writeNdjson } from '../support/offline-fixtures.js';

const LIMIT = 100_000;
let online: FlightsFixture;
let offline: OfflineStore;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-consistency-'));
  online = await loadFlightsFixture(LIMIT);
  const files = await writeFlightFiles(dir, LIMIT);
  offline = await OfflineStore.open(files.compiled, { dataDir: dir });
  await offline.loadEvents('flights', files.ndjson);
}, 180_000);

afterAll(async () => {
  await offline?.close();
});

describe('online == offline == reference on the first 100 000 flights', () => {
  it('agrees for every key of every view at the watermark clock', async () => {
    const watermarkMs = (await online.store.watermarkMs())!;
    const t = storeClockMs('watermark', watermarkMs);
    const registry = online.compiled.registry;
    // One spine row per (view, key); join key columns of the other views carry a placeholder key.
    const spine: Record<string, unknown>[] = [];
    for (const view of registry.views) {
      for (const key of online.store.entityKeys(view.name)) {
        const values = entityKeyValues(key, view.joinKeys.length);
        const row: Record<string, unknown> = { airport: '-', origin: '-', destination: '-', ts: t, view: view.name, key };
        view.joinKeys.forEach((k, i) => (row[k] = values[i]));
        spine.push(row);
      }
    }
    const out = join(dir, 'consistency.ndjson');
    await offline.writeDataset(writeNdjson(join(dir, 'consistency-spine.ndjson'), spine), allFeatureRefs(online.compiled), out);
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, Scalar>);
    expect(rows).toHaveLength(spine.length);

    let compared = 0;
    const mismatches: string[] = [];
    rows.forEach((row, i) => {
      const view = registry.views.find((v) => v.name === spine[i]!.view)!;
      const key = spine[i]!.key as string;
      const [tiles] = online.store.readTilesSync(view.name, [key]);
      const onlineValues = evaluateFeatures(view, view.features, tiles!, t, watermarkMs);
      const reference = online.reference(view, key, t);
      view.features.forEach((f, k) => {
        compared++;
        const offlineValue = row[`${view.name}__${f.name}`]!;
        if (!valuesAgree(f.agg, onlineValues[k]!.value, reference[f.name]!) || !valuesAgree(f.agg, offlineValue, reference[f.name]!)) {
          mismatches.push(`${view.name}:${f.name} ${key}: online ${onlineValues[k]!.value}, offline ${offlineValue}, reference ${reference[f.name]}`);
        }
      });
    });
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(compared).toBeGreaterThan(8_000);
  });
});
