// Numeric samples binned in Node (monitor/numeric-bins.ts) give the counts of the ASOF join in
// ClickHouse (binCountsSql), for event fields and view features, several slice definitions (one of
// them numeric bands) and slices without a reference; samples of fields checked to hold exact
// integers are the same doubles with and without the plain-sum shortcut, and the check says no to
// fractions and to integers whose magnitudes reach 2^52.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, entity, eventTime, featureView, monitor, source, type CompiledDefinitions } from '../../definitions/index.js';
import { binCountsSql, exactSampleFields, numericSamplesSql } from '../../monitor/drift-sql.js';
import { NumericBinCounter } from '../../monitor/numeric-bins.js';
import { binIndex } from '../../monitor/psi.js';
import { loadOrBuildProfile, profileKey, type MonitorProfile } from '../../monitor/index.js';
import { exactIntegerFieldPartsSql, exactIntegerFieldsOfParts, featureSampleSql, OfflineStore, type OfflineExecutor } from '../../offline/index.js';
import { mulberry32 } from '../support/random.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 2, 1);
const HOURS = 30;

const station = entity({ name: 'station', joinKeys: ['station'] });
const weather = source({
  name: 'weather',
  topic: 'weather',
  schema: z.object({ t: eventTime(), station: z.string(), temp: z.number(), rain: z.number(), gust: z.number() }),
  eventTimeField: 't',
});
// The same fields with values too large for plain sums to be exact.
const bigWeather = source({ name: 'big_weather', topic: 'big_weather', schema: weather.schema, eventTimeField: 't' });
const stationStats = featureView({
  name: 'station_stats',
  source: weather,
  entity: station,
  features: {
    temp_mean_1h: { agg: 'mean', field: 'temp', window: '1h' },
    rain_mean_1h: { agg: 'mean', field: 'rain', window: '1h' },
    rain_sum_3h: { agg: 'sum', field: 'rain', window: '3h' },
    rain_max_3h: { agg: 'max', field: 'rain', window: '3h' },
    temp_stddev_3h: { agg: 'stddev', field: 'temp', window: '3h' },
    readings_1h: { agg: 'count', window: '1h' },
  },
});
const weatherMonitor = monitor({
  name: 'weather_drift',
  source: weather,
  features: ['temp', 'rain', 'station_stats:temp_mean_1h', 'station_stats:rain_mean_1h', 'station_stats:rain_sum_3h', 'station_stats:rain_max_3h', 'station_stats:temp_stddev_3h', 'station_stats:readings_1h'],
  slices: { station: { field: 'station' } },
  reference: { from: new Date(T0).toISOString(), to: new Date(T0 + 10 * HOUR).toISOString() },
  interval: '1h',
  windows: ['1h', '3h'],
});
// Event fields only, so a numeric field can be cut into bands: two slice definitions.
const bandedMonitor = monitor({
  name: 'weather_bands',
  source: weather,
  features: ['temp', 'rain'],
  slices: { station: { field: 'station' }, gust: { field: 'gust', bands: [10, 20] } },
  reference: { from: new Date(T0).toISOString(), to: new Date(T0 + 10 * HOUR).toISOString() },
  interval: '1h',
  windows: ['1h'],
});

/** Readings every minute from stations a..d (e only after the reference: a slice without one); rain in whole mm, temp fractional. */
function readings(): Record<string, unknown>[] {
  const random = mulberry32(11);
  const out: Record<string, unknown>[] = [];
  for (let m = 0; m < HOURS * 60; m++) {
    const t = T0 + m * 60_000;
    for (const s of ['a', 'b', 'c', 'd', 'e']) {
      if (s === 'e' && t < T0 + 12 * HOUR) continue;
      if (random() < 0.2) continue;
      out.push({ t, station: s, temp: Math.round(random() * 3000) / 100 - 5 + (s === 'b' && m > 900 ? 4 : 0), rain: Math.floor(random() * random() * 12), gust: Math.floor(random() * 30) });
    }
  }
  return out;
}

/** Counts per bucket and key from binCountsSql (the ASOF join), as dense arrays of `size` bins. */
async function asofCounts(store: OfflineStore, compiled: CompiledDefinitions, plan: CompiledDefinitions['monitors'][number], params: Record<string, unknown>): Promise<Map<number, Map<string, number[]>>> {
  const rows = await store.executor.rows<{ fid: number; slice: string; b: number; bin: number; c: number }>(binCountsSql(compiled, plan), params);
  const out = new Map<number, Map<string, number[]>>();
  for (const r of rows) {
    const bucket = out.get(r.b) ?? new Map<string, number[]>();
    out.set(r.b, bucket);
    const key = profileKey(plan.features[r.fid]!.name, r.slice);
    const arr = bucket.get(key) ?? new Array<number>(100).fill(0);
    arr[r.bin] = (arr[r.bin] ?? 0) + r.c;
    bucket.set(key, arr);
  }
  return out;
}

describe('numeric samples binned in Node', () => {
  let dir: string;
  let compiled: CompiledDefinitions;
  let store: OfflineStore;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tidemark-numeric-bins-'));
    compiled = compileOrThrow({ station, weather, bigWeather, stationStats, weatherMonitor, bandedMonitor });
    const path = join(dir, 'weather.ndjson');
    writeFileSync(path, `${readings().map((r) => JSON.stringify(r)).join('\n')}\n`);
    store = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
    await store.loadEvents('weather', path);
  }, 120_000);

  afterAll(async () => {
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('binIndex counts the edges <= x (ties and NaN included)', () => {
    const random = mulberry32(3);
    for (let trial = 0; trial < 200; trial++) {
      const n = Math.floor(random() * 12);
      const edges = Array.from({ length: n }, () => Math.floor(random() * 6)).sort((a, b) => a - b);
      for (const x of [-1, 0, 0.5, 1, 2, 2.5, 3, 5, 6, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        expect(binIndex(edges, x), `${JSON.stringify(edges)} ${x}`).toBe(edges.filter((e) => e <= x).length);
      }
    }
  });

  for (const name of ['weather_drift', 'weather_bands']) {
    it(`${name}: the counts of the ASOF join, bucket by bucket, with and without the exact-integer shortcut`, async () => {
      const plan = compiled.monitors.find((m) => m.name === name)!;
      const { profile } = await loadOrBuildProfile(store.executor, compiled, plan);
      const exact = await exactSampleFields(store.executor, compiled, plan);
      const params = { monitor: plan.name, version: plan.version, origin: plan.phaseMs, interval: HOUR, from: T0 + 8 * HOUR, to: T0 + HOURS * HOUR };
      const expected = await asofCounts(store, compiled, plan, params);
      expect(expected.size).toBe(22);
      for (const exactFields of [exact, undefined]) {
        const counter = new NumericBinCounter(plan, (feature, slice) => (profile as MonitorProfile).get(profileKey(feature, slice))?.edges ?? null);
        for await (const batch of store.executor.arrowBatches(numericSamplesSql(compiled, plan, exactFields)!, params)) counter.add(batch);
        const actual = new Map([...counter.buckets()].map(([b, keys]) => [b, new Map([...keys].map(([k, arr]) => [k, Array.from(arr)]))]));
        expect(actual).toEqual(expected);
      }
      // Slices seen only after the reference are counted too (all in bin 0), and so are bands.
      const last = expected.get(Math.max(...expected.keys()))!;
      expect(last.get(profileKey('temp', 'station=e'))![0]).toBeGreaterThan(0);
      expect(profile.has(profileKey('temp', 'station=e'))).toBe(false);
      if (name === 'weather_bands') expect([...last.keys()].filter((k) => k.includes('gust=')).length).toBe(6);
    }, 120_000);
  }

  it('checks exact integers per field, and the shortcut gives the same samples', async () => {
    const plan = compiled.monitors.find((m) => m.name === 'weather_drift')!;
    const exact = await exactSampleFields(store.executor, compiled, plan);
    // rain (whole mm) is summed with compensation (mean, sum) and exact; temp (hundredths) is not.
    expect([...(exact.sums.get('weather') ?? [])]).toEqual(['rain']);
    const fractions = exactIntegerFieldsOfParts(await store.executor.rows<Record<string, number>>(exactIntegerFieldPartsSql('weather', ['temp', 'rain', 'gust'])), ['temp', 'rain', 'gust']);
    expect(fractions).toEqual({ temp: false, rain: true, gust: true });
    const view = compiled.registry.views.find((v) => v.name === 'station_stats')!;
    const features = view.features.filter((f) => f.hopMs === view.features.find((x) => x.name === 'rain_mean_1h')!.hopMs && f.windowMs !== null);
    expect(features.map((f) => f.name)).toContain('rain_sum_3h');
    const sql = (exactFields?: ReadonlySet<string>): string => `SELECT * FROM (${featureSampleSql(view, features, { exactFields })}) ORDER BY station, ts`;
    expect(sql(new Set(['rain']))).not.toEqual(sql());
    const range = { from: T0, to: T0 + HOURS * HOUR };
    const plain = await store.executor.rows<Record<string, unknown>>(sql(new Set(['rain'])), range);
    const compensated = await store.executor.rows<Record<string, unknown>>(sql(), range);
    expect(plain.length).toBeGreaterThan(1000);
    expect(plain).toEqual(compensated);
  }, 120_000);

  it('says no to integers whose magnitudes add up to 2^52 or more', async () => {
    const path = join(dir, 'big.ndjson');
    const rows = [0, 1, 2].map((i) => ({ t: T0 + i * 60_000, station: 'a', temp: 1, rain: 2 ** 51, gust: 2 ** 51 - 1 + i }));
    writeFileSync(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    await store.loadEvents('big_weather', path);
    const row = exactIntegerFieldsOfParts(await store.executor.rows<Record<string, number>>(exactIntegerFieldPartsSql('big_weather', ['temp', 'rain', 'gust'])), ['temp', 'rain', 'gust']);
    expect(row).toEqual({ temp: true, rain: false, gust: false });
  }, 60_000);

  // Last: it adds loads to weather.
  it("reads a closed load's exactness once (a new process: as stored by the first), an open (Kafka) load's every time, and sees new loads", async () => {
    const plan = compiled.monitors.find((m) => m.name === 'weather_drift')!;
    // A fresh executor object (the cache is per executor) that records which loads each read of the events leaves out.
    const seen: string[][] = [];
    const recordingExecutor = (): OfflineExecutor =>
      ({
        rows: <T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> => {
          if (sql.includes('__load NOT IN')) seen.push([...(params.seen as string[])]);
          return store.executor.rows<T>(sql, params);
        },
        command: (sql: string, params?: Record<string, unknown>) => store.executor.command(sql, params),
        insert: (table: string, rows: readonly Record<string, unknown>[]) => store.executor.insert(table, rows),
      }) as unknown as OfflineExecutor;
    const recording = recordingExecutor();
    // Parts stored by the checks above (a new executor would take them): this one starts from none.
    await store.executor.command('TRUNCATE TABLE IF EXISTS tm_load_exactness');
    const exactRain = async (executor: OfflineExecutor = recording): Promise<boolean> => (await exactSampleFields(executor, compiled, plan)).sums.get('weather')?.has('rain') ?? false;
    expect(await exactRain()).toBe(true);
    expect(await exactRain()).toBe(true);
    // The second check found no new load in tm_loads: the events were not read again.
    expect(seen).toEqual([[]]);
    const fileLoad = (await store.executor.rows<{ load_id: string }>("SELECT load_id FROM tm_loads WHERE source = 'weather'")).map((l) => l.load_id);
    // An open-ended load, as the Kafka sink registers a partition (sha256 ''), whose events keep coming.
    await store.executor.insert('tm_loads', [{ load_id: 'kafka:weather:0', source: 'weather', file: 'kafka:weather', sha256: '', rows: 0, events: 0, bad: 0, registry_version: '', loaded_at: Date.now() }]);
    const [template] = await store.executor.rows<Record<string, unknown>>('SELECT * FROM tm_events_weather WHERE __load = {load:String} LIMIT 1', { load: fileLoad[0]! });
    const append = (rain: number, offset: number): Promise<void> => store.executor.insert('tm_events_weather', [{ ...template, __load: 'kafka:weather:0', __offset: offset, rain }]);
    await append(3, 0);
    expect(await exactRain()).toBe(true);
    await append(0.5, 1);
    expect(await exactRain()).toBe(false);
    expect(seen.slice(1)).toEqual([fileLoad, fileLoad]);
    await store.executor.command("DELETE FROM tm_events_weather WHERE __load = 'kafka:weather:0' AND __offset = 1");
    expect(await exactRain()).toBe(true);
    // A closed load with fractional rain: the next check reads it (and the open one), and rain is no longer exact.
    const path = join(dir, 'fractional-rain.ndjson');
    writeFileSync(path, `${JSON.stringify({ t: T0 + 5 * 60_000, station: 'a', temp: 1, rain: 0.5, gust: 3 })}\n`);
    await store.loadEvents('weather', path);
    expect(await exactRain()).toBe(false);
    expect(seen.at(-1)).toEqual(fileLoad);
    expect(await exactRain()).toBe(false);
    expect(seen.at(-1)).toHaveLength(2);
    expect(await exactRain(store.executor)).toBe(false);
    // A new process (a new executor: nothing in memory) takes the closed loads' parts stored by the
    // first: only the open load's events are read. Then a control: the stored parts are what it used.
    await store.executor.command("DELETE FROM tm_events_weather WHERE __load = 'kafka:weather:0'");
    const restarted = recordingExecutor();
    const before = seen.length;
    expect(await exactRain(restarted)).toBe(false);
    expect(seen.slice(before)).toEqual([expect.arrayContaining([...fileLoad, expect.any(String)])]);
    expect(seen.at(-1)).toHaveLength(2);
    // Stored parts that say every closed load holds integer rain (as if its fractional row were gone): a new process believes them.
    await store.executor.command("ALTER TABLE tm_load_exactness UPDATE parts = replaceRegexpOne(parts, '\"__int_rain\":0', '\"__int_rain\":1') WHERE 1 SETTINGS mutations_sync = 1");
    expect(await exactRain(recordingExecutor())).toBe(true);
    await store.executor.command('TRUNCATE TABLE tm_load_exactness');
    expect(await exactRain(recordingExecutor())).toBe(false);
  }, 60_000);
});
