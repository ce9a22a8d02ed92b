// View-feature samples windowed in Node (offline/feature-windows.ts: featureTileSql's per-key events
// built into tiles and combined by TileWindows, from the hop's own query and from one query of every
// hop) are the same doubles as featureSampleSql's window functions, on random
// integer events with nulls, keys with a single event, silences longer than every window (a window
// that holds only its own tile), and lookback before the range, for several hops and every
// aggregation that windowsInNode accepts; and windowsInNode refuses what is not provably exact.
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { compileOrThrow, entity, eventTime, featureView, source, type FeaturePlan, type ViewPlan } from '../../definitions/index.js';
import { exactIntegerFieldPartsSql, exactIntegerFieldsOfParts, featureSampleSql, featureTileSql, roundHalfEven, tileFieldsOf, TileWindows, windowsInNode } from '../../offline/index.js';
import { offlineStoreWith } from '../support/offline-fixtures.js';
import { mulberry32 } from '../support/random.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2026, 4, 1);
const DAYS = 3;
const SENSORS = ['x', 'y', 'z'];

const station = entity({ name: 'station', joinKeys: ['station'] });
const readings = source({
  name: 'readings',
  topic: 'readings',
  schema: z.object({ t: eventTime(), station: z.string(), sensor: z.string(), v: z.number().nullable(), w: z.number(), f: z.number() }),
  eventTimeField: 't',
});
const stats = featureView({
  name: 'station_windows',
  source: readings,
  entity: station,
  features: {
    // hop 5m
    n_1h: { agg: 'count', window: '1h' },
    v_count_30m: { agg: 'count', field: 'v', window: '30m' },
    v_mean_3h: { agg: 'mean', field: 'v', window: '3h' },
    w_sum_30m: { agg: 'sum', field: 'w', window: '30m' },
    v_max_1h: { agg: 'max', field: 'v', window: '1h' },
    v_min_2h: { agg: 'min', field: 'v', window: '2h' },
    v_stddev_6h: { agg: 'stddev', field: 'v', window: '6h' },
    // hop 1h
    w_var_1d: { agg: 'var', field: 'w', window: '1d' },
    v_mean_1d: { agg: 'mean', field: 'v', window: '1d' },
    n_1d: { agg: 'count', window: '1d' },
    // hop 20m, explicit
    v_stddev_2h: { agg: 'stddev', field: 'v', window: '2h', hop: '20m' },
    w_max_40m: { agg: 'max', field: 'w', window: '40m', hop: '20m' },
    // not windowed in Node: a float field, an approximate percentile
    f_mean_1h: { agg: 'mean', field: 'f', window: '1h' },
    v_p90_1h: { agg: 'approx_percentile', field: 'v', window: '1h', quantile: 0.9 },
  },
});

/**
 * Bursts of readings per station with silences of up to 1.5 days, station 'single' with one event,
 * station 'quiet' silent for 26 h (longer than every window), nulls in v; v and w integers, f fractional.
 */
function events(): Record<string, unknown>[] {
  const random = mulberry32(29);
  const out: Record<string, unknown>[] = [{ t: T0 + 30 * HOUR + 7 * MINUTE, station: 'single', sensor: 'x', v: 5, w: -3, f: 0.5 }];
  for (const [i, t] of [T0 + 25 * HOUR, T0 + 25 * HOUR + 10 * MINUTE, T0 + 51 * HOUR + 10 * MINUTE, T0 + 51 * HOUR + 12 * MINUTE].entries()) out.push({ t, station: 'quiet', sensor: SENSORS[i % 2]!, v: 7, w: 11, f: 1.5 });
  for (const s of ['a', 'b', 'c', 'd', 'e']) {
    let t = T0 + Math.floor(random() * 3 * HOUR);
    while (t < T0 + DAYS * 24 * HOUR) {
      const burst = 1 + Math.floor(random() * 40);
      for (let i = 0; i < burst; i++) {
        out.push({ t, station: s, sensor: SENSORS[(i * 7 + t) % 3]!, v: random() < 0.2 ? null : Math.floor(random() * 101) - 50, w: Math.floor(random() * 2001) - 1000, f: Math.round(random() * 1000) / 7 });
        t += Math.floor(random() * 4 * MINUTE);
      }
      t += random() < 0.1 ? Math.floor((0.5 + random()) * 24 * HOUR) : Math.floor(random() * 3 * HOUR);
    }
  }
  return out;
}

const EVENTS = events();

/** A finer key, (station, sensor): its view's rows also serve the station view (a coarser key, its rows consecutive). */
const stationSensor = entity({ name: 'station_sensor', joinKeys: ['station', 'sensor'] });
const sensorStats = featureView({
  name: 'sensor_windows',
  source: readings,
  entity: stationSensor,
  features: { w_sum_1h: { agg: 'sum', field: 'w', window: '1h' }, n_6h: { agg: 'count', window: '6h', hop: '1h' } },
});

const compiled = compileOrThrow({ station, stationSensor, readings, stats, sensorStats });
const view: ViewPlan = compiled.registry.views.find((v) => v.name === 'station_windows')!;
const sensorView: ViewPlan = compiled.registry.views.find((v) => v.name === 'sensor_windows')!;

describe('view-feature windows combined in Node', () => {
  const offline = offlineStoreWith(compiled, 'readings', EVENTS);
  const exactSets = { sums: new Set(['v', 'w']), squares: new Set(['v', 'w']) };

  it('the fields are proven exact: integers, bounded sums and squares', async () => {
    const row = exactIntegerFieldsOfParts(await offline.store().executor.rows<Record<string, number>>(exactIntegerFieldPartsSql('readings', ['v', 'w', 'f'], ['v', 'w', 'f'])), ['v', 'w', 'f'], ['v', 'w', 'f']);
    expect(row).toEqual({ v: true, w: true, f: false, __sq_v: true, __sq_w: true, __sq_f: true });
  });

  it('windowsInNode takes counts, and sums, means, min, max, variances of exact fields only', () => {
    const byName = (name: string): FeaturePlan => view.features.find((f) => f.name === name)!;
    const inNode = view.features.filter((f) => windowsInNode(f, exactSets)).map((f) => f.name);
    expect(inNode).toEqual(['n_1h', 'v_count_30m', 'v_mean_3h', 'w_sum_30m', 'v_max_1h', 'v_min_2h', 'v_stddev_6h', 'w_var_1d', 'v_mean_1d', 'n_1d', 'v_stddev_2h', 'w_max_40m']);
    // A variance without bounded squares, a mean or a max of a field not proven exact: not in Node.
    expect(windowsInNode(byName('v_stddev_6h'), { sums: new Set(['v']), squares: new Set() })).toBe(false);
    expect(windowsInNode(byName('v_mean_3h'), { sums: new Set(), squares: new Set() })).toBe(false);
    expect(windowsInNode(byName('v_max_1h'), { sums: new Set(), squares: new Set() })).toBe(false);
    expect(windowsInNode(byName('n_1h'), { sums: new Set(), squares: new Set() })).toBe(true);
  });

  it('give the same doubles as the SQL windows, per hop, at every active tile close in range', async () => {
    const windowed = view.features.filter((f) => windowsInNode(f, exactSets));
    let compared = 0;
    for (const hopMs of new Set(windowed.map((f) => f.hopMs))) {
      const features = windowed.filter((f) => f.hopMs === hopMs);
      // From a day in (the windows read tiles before it), to past the last event.
      const range = { from: T0 + 24 * HOUR + 13 * MINUTE, to: T0 + (DAYS + 1) * 24 * HOUR };
      const sqlRows = await offline.store().executor.rows<Record<string, unknown>>(featureSampleSql(view, features, { exactFields: exactSets.sums }), range);
      const expected = new Map<string, number>();
      for (const row of sqlRows) {
        features.forEach((_, i) => {
          const x = row[`x${i}`];
          if (x !== null) expected.set(`${String(row.station)} ${Number(row.ts)} ${i}`, Number(x));
        });
      }
      // The hop's own query; one query of every hop's events (longer lookbacks, more fields) that a
      // TileWindows per hop reads; and the finer (station, sensor) view's query, its rows ordered by
      // station, each station's rows gathered.
      const variants = [
        { queryView: view, queried: features, groupKeys: [] as string[] },
        { queryView: view, queried: windowed, groupKeys: [] as string[] },
        { queryView: sensorView, queried: [...windowed, ...sensorView.features], groupKeys: ['station'] },
      ];
      for (const { queryView, queried, groupKeys } of variants) {
        const actual = new Map<string, number>();
        let key = '';
        const windows = new TileWindows(
          features,
          1,
          range,
          {
            key: ([label]) => {
              key = label!;
            },
            samples: (i, ts, xs, count) => {
              for (let k = 0; k < count; k++) {
                if (k > 0 && !(ts[k]! > ts[k - 1]!)) throw new Error(`${key} feature ${i}: closes not ascending at ${ts[k]}`);
                const id = `${key} ${ts[k]} ${i}`;
                if (actual.has(id)) throw new Error(`${id} sampled twice`);
                actual.set(id, xs[k]!);
              }
            },
          },
          { fields: tileFieldsOf(queried), groupColumns: groupKeys.length, keyColumns: groupKeys.length },
        );
        let batches = 0;
        // Small blocks for the gathered variant: a station's rows then span batches.
        const tileSql = featureTileSql(queryView, queried, { exactFields: exactSets.sums, labels: ['station'], groupKeys });
        if (groupKeys.length > 0) expect(tileSql).toContain('max_block_size = 256');
        const sql = tileSql.replace('max_block_size = 256', 'max_block_size = 2');
        for await (const batch of offline.store().executor.arrowBatches(sql, range)) {
          windows.add(batch);
          batches++;
        }
        windows.end();
        if (groupKeys.length > 0) expect(batches).toBeGreaterThan(3);
        expect(actual.size).toBe(expected.size);
        for (const [id, x] of expected) {
          // Object.is: the same double, -0 apart from 0.
          if (!Object.is(actual.get(id), x)) throw new Error(`${id} (${features[Number(id.split(' ')[2])]!.name}, ${queried.length} features of ${queryView.name} queried in ${batches} batches): Node ${actual.get(id)}, SQL ${x}`);
        }
        compared += expected.size;
      }
      // The edge cases are there: a key's only tile, and a window after a silence longer than every window.
      expect([...expected.keys()].some((id) => id.startsWith('single '))).toBe(true);
      expect([...expected.keys()].some((id) => id.startsWith(`quiet ${(Math.floor((T0 + 51 * HOUR + 10 * MINUTE) / hopMs) + 1) * hopMs} `))).toBe(true);
    }
    expect(compared).toBeGreaterThan(5_000);
  }, 120_000);

  it("a key's center is rounded as ClickHouse's round rounds a Float64: ties to even, signed zero kept", async () => {
    const xs = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 2.4999999999999996, 7 / 2, -7 / 2, 1e15 + 0.5, -(2 ** 52) + 0.5, 123456.5, 0.49999999999999994, -0, 0, 41 / 3];
    const rows = await offline.store().executor.rows<{ r: number[] }>(`SELECT [${xs.map((x) => `toFloat64(${Object.is(x, -0) ? '-0.' : x.toPrecision(17)})`).join(', ')}] AS xs, arrayMap(x -> round(x), xs) AS r`);
    const expected = rows[0]!.r.map(Number);
    xs.forEach((x, i) => {
      if (!Object.is(roundHalfEven(x), expected[i])) throw new Error(`round(${x}): Node ${roundHalfEven(x)}, ClickHouse ${expected[i]}`);
    });
  });

  it('featureTileSql refuses a compensated sum of a field not known to be exact', () => {
    const f = view.features.find((x) => x.name === 'f_mean_1h')!;
    expect(() => featureTileSql(view, [f], { exactFields: new Set(['v']) })).toThrow(/not known to be exact/);
  });
});
