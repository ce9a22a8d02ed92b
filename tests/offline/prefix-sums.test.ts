// Datasets written to files run the prefix-only query first (offline/point-in-time.ts,
// prefixOnlySql): sums and means of float data whose values are multiples of 2^-64 (here minutes
// in hours, m / 60, which cancel) come from exact fixed-point prefix sums and must equal the
// exactly rounded reference; the full query gives the same doubles; and a key whose values do not
// fit the fixed point makes the prefix-only query fail with PREFIX_INEXACT, so the full query
// writes the file, still equal to the reference.
import { describe, expect, it, vi } from 'vitest';
import { compileOrThrow, exactSum, featureView, referenceViewValues, valuesAgree, windowStartMs, type ReferenceEvent } from '../../definitions/index.js';
import { PREFIX_INEXACT } from '../../offline/point-in-time.js';
import { account, HOUR, MIN, offlineStoreWith, payments, T0, writeNdjson } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';
import { join } from 'node:path';

const view = featureView({
  name: 'pay',
  source: payments,
  entity: account,
  features: {
    sum_1h: { agg: 'sum', field: 'x', window: '1h' },
    mean_2h: { agg: 'mean', field: 'x', window: '2h', hop: '30m' },
    n_1h: { agg: 'count', field: 'x', window: '1h' },
    max_1h: { agg: 'max', field: 'x', window: '1h' },
    last_x: { agg: 'last', field: 'x' },
  },
});
const compiled = compileOrThrow([view]);
const plan = compiled.registry.views[0]!;

/** Keys a..e: values m / 60 (m in -600..600 minutes) in sets that cancel, several at one instant; key 'tiny': values that do not fit (1e-30). */
function makeEvents(): Record<string, unknown>[] {
  const random = mulberry32(20_261_207);
  const rows: Record<string, unknown>[] = [];
  for (const k of ['a', 'b', 'c', 'd', 'e']) {
    for (let i = 0; i < 120; i++) {
      const m = Math.floor(random() * 1201) - 600;
      const at = T0 + Math.floor(random() * 6 * HOUR);
      // 1e6 + m/60, -1e6 and -m/60: the exact sum is the rounding error of the first (about 1e-11)
      rows.push({ ts: at, k, x: 1e6 + m / 60 }, { ts: at + Math.floor(random() * 3) * 7 * MIN, k, x: -1e6 }, { ts: at, k, x: -m / 60 }, { ts: at, k, x: (m % 7) / 60 });
      if (random() < 0.2) rows.push({ ts: at, k, x: null });
    }
  }
  for (let i = 0; i < 40; i++) rows.push({ ts: T0 + i * 9 * MIN, k: 'tiny', x: i % 2 === 0 ? 1e-30 : 1 / 3 });
  return rows;
}

const rows = makeEvents();
const events: ReferenceEvent[] = rows.map((r) => ({ eventTimeMs: r.ts as number, fields: r }));
const offline = offlineStoreWith(compiled, 'payments', rows);

function spineOf(keys: string[]): Record<string, unknown>[] {
  const spine: Record<string, unknown>[] = [];
  for (const k of keys) for (let t = T0 - 10 * MIN; t < T0 + 8 * HOUR; t += 3 * MIN) spine.push({ k, ts: t });
  for (const r of rows.filter((x, i) => keys.includes(x.k as string) && i % 4 === 0)) spine.push({ k: r.k, ts: r.ts }, { k: r.k, ts: (r.ts as number) + 1 });
  return spine;
}

function mismatchesAgainstReference(spine: Record<string, unknown>[], got: Record<string, unknown>[]): string[] {
  const out: string[] = [];
  got.forEach((row, i) => {
    const s = spine[i]!;
    const expected = referenceViewValues(plan, events, [String(s.k)], s.ts as number);
    for (const f of plan.features) {
      const value = row[`pay__${f.name}`] as number | null;
      if (!valuesAgree(f.agg, value, expected[f.name]!)) out.push(`${s.k} at ${s.ts} ${f.name}: offline ${value}, reference ${expected[f.name]}`);
    }
  });
  return out;
}

describe('prefix-only datasets on float data', () => {
  const features = plan.features.map((f) => `pay:${f.name}`);

  it('the data defeats plain double sums (so the next test can fail)', () => {
    const f = plan.features.find((x) => x.name === 'sum_1h')!;
    let off = 0;
    for (const s of spineOf(['a', 'b', 'c', 'd', 'e'])) {
      const t = s.ts as number;
      const start = windowStartMs(t, f.windowMs!, f.hopMs);
      const xs = rows.filter((r) => r.k === s.k && (r.ts as number) >= start && (r.ts as number) < t && r.x !== null).map((r) => r.x as number);
      if (!valuesAgree('sum', xs.reduce((a, b) => a + b, 0), exactSum(xs))) off++;
    }
    expect(off).toBeGreaterThan(20);
  });

  it('are written by the prefix-only query alone, equal to the reference and to the full query', async () => {
    const spine = spineOf(['a', 'b', 'c', 'd', 'e', 'nobody']);
    const store = offline.store();
    const writeFile = vi.spyOn(store.executor, 'writeFile');
    try {
      const got = await offline.dataset(spine, features);
      expect(writeFile).toHaveBeenCalledTimes(1);
      expect(writeFile.mock.calls[0]![0]).toContain(PREFIX_INEXACT);
      expect(got).toHaveLength(spine.length);
      expect(mismatchesAgainstReference(spine, got).slice(0, 10)).toEqual([]);
      // The full query (tile windows for keys that are not exact; none here) gives the same doubles.
      const prepared = await store.prepareDataset(writeNdjson(join(offline.dir(), 'spine-full.ndjson'), spine), features);
      try {
        const full = await store.executor.rows<Record<string, unknown>>(prepared.sql);
        expect(full.map((r) => plan.features.map((f) => r[`pay__${f.name}`]))).toEqual(got.map((r) => plan.features.map((f) => r[`pay__${f.name}`])));
      } finally {
        await prepared.release();
      }
    } finally {
      writeFile.mockRestore();
    }
  });

  it('a key whose values do not fit the fixed point fails the prefix-only query, and the full query writes the file', async () => {
    const spine = spineOf(['a', 'tiny']);
    const store = offline.store();
    const writeFile = vi.spyOn(store.executor, 'writeFile');
    try {
      const got = await offline.dataset(spine, features);
      expect(writeFile).toHaveBeenCalledTimes(2);
      expect(writeFile.mock.calls[0]![0]).toContain(PREFIX_INEXACT);
      expect(writeFile.mock.calls[1]![0]).not.toContain(PREFIX_INEXACT);
      await expect(writeFile.mock.results[0]!.value).rejects.toThrow(PREFIX_INEXACT);
      expect(mismatchesAgainstReference(spine, got).slice(0, 10)).toEqual([]);
      expect(got.filter((r, i) => spine[i]!.k === 'tiny' && r.pay__sum_1h !== 0).length).toBeGreaterThan(10);
    } finally {
      writeFile.mockRestore();
    }
  });
});
