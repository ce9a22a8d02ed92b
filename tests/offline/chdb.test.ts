// The offline suite on chDB, the embedded default, plus what only its executor has: integral
// doubles beyond 2^53, which chDB's own insert refuses, load exactly; and queries take turns.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, source } from '../../definitions/index.js';
import { ChdbExecutor, dateTime64MsText, OfflineStore, tabSeparatedRows } from '../../offline/index.js';
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

describe('chDB executor: one query at a time', () => {
  it('a query sent while a stream is open waits for it: the stream ends whole, then the query answers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-chdb-turns-'));
    const executor = new ChdbExecutor(dir);
    try {
      // Sent in the middle of the stream, as a feature-log flush can be during a dataset download;
      // chDB alone ends the stream then ("No active streaming query").
      let chunks = 0;
      let text = '';
      let meanwhile: Promise<{ n: number }[]> | null = null;
      for await (const chunk of executor.streamJsonLines('SELECT number AS n FROM numbers(300000)')) {
        text += Buffer.from(chunk).toString('utf8');
        if (++chunks === 1) meanwhile = executor.rows<{ n: number }>('SELECT 7 AS n');
      }
      expect(chunks).toBeGreaterThan(1);
      const lines = text.trimEnd().split('\n');
      expect(lines.length).toBe(300_000);
      expect(JSON.parse(lines[299_999]!)).toEqual({ n: 299_999 });
      expect(await meanwhile).toEqual([{ n: 7 }]);
    } finally {
      await executor.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('chDB executor: rows as TabSeparated text', () => {
  it('read back as they went in: escaped text, NULL, booleans, shortest doubles, times before 1970', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-chdb-tsv-'));
    const executor = new ChdbExecutor(dir);
    try {
      await executor.command("CREATE TABLE t (i UInt32, s String, x Nullable(Float64), b Nullable(Bool), at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY i");
      const texts = ['plain', 'tab\there', 'line\nbreak', 'back\\slash \\N', 'cr\r', ''];
      const doubles = [0.1, 1e-7, 5e-324, Number.MAX_VALUE, -0, 2 ** 53 + 2, 1 / 3, null];
      const times = [0, -1, -86_400_001, 981_676_800_000, 1_700_000_000_123, 4_102_444_800_999];
      const rows = doubles.map((x, i) => ({ i, s: texts[i % texts.length]!, x, b: i % 3 === 2 ? null : i % 2 === 0, at: dateTime64MsText(times[i % times.length]!) }));
      await executor.insertTabSeparated('t', ['i', 's', 'x', 'b', 'at'], Buffer.from(tabSeparatedRows(rows, ['i', 's', 'x', 'b', 'at']), 'utf8'));
      const back = await executor.rows<{ i: number; s: string; x: number | null; b: boolean | null; at: number }>('SELECT i, s, x, b, toUnixTimestamp64Milli(at) AS at FROM t ORDER BY i');
      expect(back).toEqual(rows.map((r) => ({ ...r, at: times[r.i % times.length] })));
      expect(Object.is(back[4]!.x, -0)).toBe(true);
      // Not a scalar: refused with the column's name, nothing written.
      expect(() => tabSeparatedRows([{ i: 9, s: [1] as unknown as string }], ['i', 's'])).toThrow(/column s holds a object/);
    } finally {
      await executor.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
