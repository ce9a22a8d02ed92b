// The offline suite on chDB, the embedded default, plus what only its executor has: integral
// doubles beyond 2^53, which chDB's own insert refuses, load exactly.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, source } from '../../definitions/index.js';
import { OfflineStore } from '../../offline/index.js';
import { offlineStoreWith } from '../support/offline-fixtures.js';
import { runOfflineSuite } from './offline-suite.js';

runOfflineSuite({
  name: 'chDB (embedded)',
  open: (files, dir) => OfflineStore.open(files.compiled, { dataDir: dir }),
});

describe('chDB executor: large doubles', () => {
  const readings = source({ name: 'big', topic: 'big', schema: z.object({ ts: eventTime(), k: z.string(), x: z.number() }), eventTimeField: 'ts' });
  const compiled = compileOrThrow([
    featureView({ name: 'b', source: readings, entity: entity({ name: 'thing', joinKeys: ['k'] }), features: { hi: { agg: 'max', field: 'x', window: '1s', hop: '1s' } } }),
  ]);
  const values = [2 ** 53 + 2, 1e20, 2 ** 60, -(2 ** 70), 2 ** 1000, Number.MAX_VALUE, -Number.MAX_VALUE, 1.5];
  const store = offlineStoreWith(compiled, 'big', values.map((x, i) => ({ ts: 1000 * i, k: 'a', x })));

  it('integral values beyond 2^53 load and read back exactly', async () => {
    const rows = await store.dataset(values.map((_, i) => ({ k: 'a', ts: 1000 * (i + 1) })), ['b:hi']);
    expect(rows.map((r) => r.b__hi)).toEqual(values);
  });
});
