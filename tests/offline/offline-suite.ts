// One offline suite, every executor (as drizzle runs one suite per driver): loading with dedup and
// dead letters, point-in-time datasets equal to the reference, output formats, and bad input.
import fc from 'fast-check';
import { tableFromIPC } from 'apache-arrow';
import { parse as parseCsv } from 'csv-parse/sync';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referenceViewValues, TidemarkError, valuesAgree, type Scalar } from '../../definitions/index.js';
import type { OfflineStore } from '../../offline/index.js';
import { allFeatureRefs, writeFlightFiles, writeNdjson, type FlightFiles } from '../support/offline-fixtures.js';

const EVENTS = 20_000;
const HOUR = 3_600_000;

export interface OfflineSuiteBackend {
  name: string;
  /** Open a store for these definitions with an empty database (called once per suite). */
  open(files: FlightFiles, dir: string): Promise<OfflineStore>;
  close?(): Promise<void>;
}

function readNdjson(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<TidemarkError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(TidemarkError);
  expect((error as TidemarkError).code).toBe(code);
  return error as TidemarkError;
}

export function runOfflineSuite(backend: OfflineSuiteBackend): void {
  describe(`offline store on ${backend.name}`, () => {
    let dir: string;
    let files: FlightFiles;
    let store: OfflineStore;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'tidemark-offline-'));
      files = await writeFlightFiles(dir, EVENTS);
      store = await backend.open(files, dir);
      const first = await store.loadEvents('flights', files.ndjson);
      expect(first).toMatchObject({ alreadyLoaded: false, rows: EVENTS, events: EVENTS, badEvents: 0 });
    }, 120_000);

    afterAll(async () => {
      await store?.close();
      await backend.close?.();
    });

    /** Dataset for spine rows as NDJSON objects, read back as objects. */
    async function dataset(rows: Record<string, unknown>[], features = allFeatureRefs(files.compiled), ext = '.ndjson'): Promise<string> {
      const spine = writeNdjson(join(dir, `spine-${Math.random().toString(36).slice(2)}.ndjson`), rows);
      const out = join(dir, `out-${Math.random().toString(36).slice(2)}${ext}`);
      await store.writeDataset(spine, features, out);
      return out;
    }

    function checkAgainstReference(spine: Record<string, unknown>[], out: Record<string, unknown>[]): void {
      expect(out).toHaveLength(spine.length);
      out.forEach((row, i) => {
        const s = spine[i]!;
        expect(row.label, `row ${i} order`).toBe(s.label);
        const t = typeof s.ts === 'number' ? s.ts : Date.parse(String(s.ts));
        for (const view of files.compiled.registry.views) {
          const expected = referenceViewValues(view, files.events, view.joinKeys.map((k) => String(s[k])), t);
          for (const f of view.features) {
            const got = row[`${view.name}__${f.name}`] as Scalar;
            expect(valuesAgree(f.agg, got, expected[f.name]!), `row ${i} ${view.name}:${f.name} at ${t}: got ${got}, reference ${expected[f.name]}`).toBe(true);
          }
        }
      });
    }

    it('loading the same file twice does not duplicate events', async () => {
      const again = await store.loadEvents('flights', files.ndjson);
      expect(again.alreadyLoaded).toBe(true);
      const [count] = await store.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_events_flights');
      expect(Number(count!.n)).toBe(EVENTS);
    });

    it('random spines equal the reference: before the first event, at tile edges, at event instants, unknown keys', async () => {
      const airports = ['ORD', 'SFO', 'ATL', 'LAX', 'DEN', 'ZZZ'];
      const instants = files.events.map((e) => e.eventTimeMs);
      const time = fc.oneof(
        fc.integer({ min: files.minTs - 2 * HOUR, max: files.maxTs + 2 * HOUR }),
        fc.integer({ min: Math.floor(files.minTs / HOUR) - 1, max: Math.ceil(files.maxTs / HOUR) + 1 }).map((h) => h * HOUR),
        fc.constantFrom(...instants),
        fc.constantFrom(...instants).map((t) => t + 1),
      );
      const row = fc.record({ airport: fc.constantFrom(...airports), destination: fc.constantFrom(...airports), ts: time, iso: fc.boolean() });
      await fc.assert(
        fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 40 }), async (rows) => {
          const spine = rows.map((r, i) => ({ airport: r.airport, origin: r.airport, destination: r.destination, ts: r.ts, label: i }));
          checkAgainstReference(spine, readNdjson(await dataset(spine)));
        }),
        { numRuns: 12 },
      );
    });

    it('ISO-8601 spine times and the events before a row never include the row instant', async () => {
      const e = files.events[1234]!;
      const airport = e.fields.origin as string;
      const spine = [
        { airport, origin: airport, destination: e.fields.destination, ts: e.eventTimeMs, label: 0 },
        { airport, origin: airport, destination: e.fields.destination, ts: new Date(e.eventTimeMs + 1).toISOString(), label: 1 },
      ];
      const out = readNdjson(await dataset(spine));
      checkAgainstReference(spine, out);
      expect(out[1]!.origin_delays__last_delay).toBe(
        referenceViewValues(files.compiled.registry.views.find((v) => v.name === 'origin_delays')!, files.events, [airport], e.eventTimeMs + 1).last_delay,
      );
    });

    it('keeps passthrough columns untouched and rows in order', async () => {
      const spine = Array.from({ length: 50 }, (_, i) => ({ airport: 'ORD', ts: files.minTs + i * 97 * 60_000, label: 49 - i, note: `row ${i}`, weight: i / 4, flag: i % 2 === 0 }));
      const out = readNdjson(await dataset(spine, ['origin_delays:flights_1h']));
      expect(out.map((r) => [r.airport, r.ts, r.label, r.note, r.weight, r.flag])).toEqual(spine.map((r) => [r.airport, r.ts, r.label, r.note, r.weight, r.flag]));
      expect(Object.keys(out[0]!)).toEqual(['airport', 'ts', 'label', 'note', 'weight', 'flag', 'origin_delays__flights_1h']);
    });

    it('writes Parquet, Arrow IPC and CSV with the same values', async () => {
      const spine = Array.from({ length: 30 }, (_, i) => ({ airport: ['ORD', 'SFO', 'ATL'][i % 3], ts: files.minTs + i * 3 * HOUR + 17, label: i }));
      const features = ['origin_delays:delay_mean_1d', 'origin_delays:flights_1h', 'origin_delays:last_delay'];
      const expected = readNdjson(await dataset(spine, features));
      const parquet = (await parquetReadObjects({ file: await asyncBufferFromFile(await dataset(spine, features, '.parquet')), compressors })) as Record<string, unknown>[];
      const arrow = tableFromIPC(readFileSync(await dataset(spine, features, '.arrow'))).toArray().map((r) => r.toJSON() as Record<string, unknown>);
      const csv = parseCsv(readFileSync(await dataset(spine, features, '.csv')), { columns: true }) as Record<string, string>[];
      const plain = (v: unknown): unknown => (typeof v === 'bigint' ? Number(v) : v);
      for (const rows of [parquet, arrow]) {
        expect(rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, plain(v)])))).toEqual(expected);
      }
      expect(csv.map((r) => Number(r.origin_delays__flights_1h))).toEqual(expected.map((r) => r.origin_delays__flights_1h));
      expect(csv.map((r) => (r.origin_delays__delay_mean_1d === '\\N' ? null : Number(r.origin_delays__delay_mean_1d)))).toEqual(expected.map((r) => r.origin_delays__delay_mean_1d));
    });

    it('a Parquet spine gives the same dataset as the same rows in NDJSON, in spine order', async () => {
      const airports = ['ORD', 'SFO', 'ATL', 'ZZZ'];
      const rows = Array.from({ length: 500 }, (_, i) => ({ airport: airports[i % 4]!, ts: files.minTs - HOUR + ((i * 7_919_000) % (files.maxTs - files.minTs + 2 * HOUR)), label: i }));
      const parquet = join(dir, `spine-${Math.random().toString(36).slice(2)}.parquet`);
      // the same rows, written by ClickHouse: String airport, Int64 ts and label, in row order
      const span = files.maxTs - files.minTs + 2 * HOUR;
      await store.executor.writeFile(
        `SELECT ['ORD', 'SFO', 'ATL', 'ZZZ'][number % 4 + 1] AS airport, toInt64(${files.minTs - HOUR} + (number * 7919000) % ${span}) AS ts, toInt64(number) AS label FROM numbers(500) ORDER BY number`,
        'Parquet',
        parquet,
      );
      const features = ['origin_delays:delay_mean_1d', 'origin_delays:flights_1h', 'origin_delays:last_delay'];
      const fromParquet = join(dir, `out-${Math.random().toString(36).slice(2)}.ndjson`);
      await store.writeDataset(parquet, features, fromParquet);
      const expected = readNdjson(await dataset(rows, features));
      expect(readNdjson(fromParquet)).toEqual(expected);
    });

    it('a Parquet spine with a null time names its row', async () => {
      const parquet = join(dir, `spine-${Math.random().toString(36).slice(2)}.parquet`);
      await store.executor.writeFile(
        `SELECT 'ORD' AS airport, if(number = 2, NULL, toInt64(978307200000 + number)) AS ts FROM numbers(4)`,
        'Parquet',
        parquet,
      );
      const e = await expectCode(store.writeDataset(parquet, ['origin_delays:flights_1h'], join(dir, 'never.parquet')), 'TM_SPINE_BAD_TIME');
      expect(e.details).toMatchObject({ row: 3, column: 'ts' });
      expect(existsSync(join(dir, 'never.parquet'))).toBe(false);
    });

    it('a Parquet spine with a null join key names its first bad row (in a row, the time before the key)', async () => {
      const parquet = join(dir, `spine-${Math.random().toString(36).slice(2)}.parquet`);
      await store.executor.writeFile(`SELECT if(number IN (1, 3), NULL, 'ORD') AS airport, toInt64(978307200000 + number) AS ts FROM numbers(5)`, 'Parquet', parquet);
      const e = await expectCode(store.writeDataset(parquet, ['origin_delays:flights_1h'], join(dir, 'never.parquet')), 'TM_SPINE_BAD_KEY');
      expect(e.details).toMatchObject({ row: 2, column: 'airport' });
      const both = join(dir, `spine-${Math.random().toString(36).slice(2)}.parquet`);
      await store.executor.writeFile(`SELECT if(number IN (2, 3), NULL, 'ORD') AS airport, if(number IN (2, 4), NULL, toInt64(978307200000 + number)) AS ts FROM numbers(5)`, 'Parquet', both);
      const t = await expectCode(store.writeDataset(both, ['origin_delays:flights_1h'], join(dir, 'never.parquet')), 'TM_SPINE_BAD_TIME');
      expect(t.details).toMatchObject({ row: 3, column: 'ts' });
      expect(existsSync(join(dir, 'never.parquet'))).toBe(false);
    });

    it('CSV event files load to the same values as NDJSON', async () => {
      // a second source would need other definitions; load the CSV under the same source into a
      // fresh comparison: same rows, different file, so it is a new load id
      const before = await store.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_events_flights');
      const csvLoad = await store.loadEvents('flights', files.csv);
      expect(csvLoad).toMatchObject({ alreadyLoaded: false, rows: EVENTS, events: EVENTS, badEvents: 0 });
      const rows = await store.executor.rows<{ n: number; same: number }>(
        `SELECT count() AS n, countIf(a.__ts = b.__ts AND a.delay = b.delay AND a.origin = b.origin) AS same FROM (SELECT * FROM tm_events_flights WHERE __load = {csv:String}) AS a INNER JOIN (SELECT * FROM tm_events_flights WHERE __load != {csv:String}) AS b USING (__offset)`,
        { csv: csvLoad.loadId },
      );
      expect(Number(rows[0]!.same)).toBe(EVENTS);
      // keep the store as the other tests expect it: remove the CSV copy
      await store.executor.command(`ALTER TABLE tm_events_flights DELETE WHERE __load = {csv:String} SETTINGS mutations_sync = 2`, { csv: csvLoad.loadId });
      await store.executor.command(`ALTER TABLE tm_loads DELETE WHERE load_id = {csv:String} SETTINGS mutations_sync = 2`, { csv: csvLoad.loadId });
      const after = await store.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_events_flights');
      expect(Number(after[0]!.n)).toBe(Number(before[0]!.n));
    });

    it('bad rows go to the dead-letter table with their reason; good rows load', async () => {
      const path = join(dir, 'mixed.ndjson');
      writeFileSync(
        path,
        [
          '{"date": 978307260000, "delay": 5, "distance": 100, "origin": "AAA", "destination": "BBB"}',
          '{"date": 978307260000, "delay": "late", "distance": 100, "origin": "AAA", "destination": "BBB"}',
          '{"date": "yesterday", "delay": 5, "distance": 100, "origin": "AAA", "destination": "BBB"}',
          '{"date": 978307260000, "delay": 5, "distance": 100, "destination": "BBB"}',
          '{not json',
        ].join('\n'),
      );
      const result = await store.loadEvents('flights', path);
      expect(result).toMatchObject({ rows: 5, events: 1, badEvents: 4 });
      const dead = await store.executor.rows<{ position: number; code: string; field: string | null; reason: string; raw: string }>(
        'SELECT position, code, field, reason, raw FROM tm_dead_letters WHERE load_id = {id:String} ORDER BY position',
        { id: result.loadId },
      );
      expect(dead.map((d) => [Number(d.position), d.code, d.field])).toEqual([
        [1, 'TM_EVENT_SCHEMA', 'delay'],
        [2, 'TM_EVENT_TIME', 'date'],
        [3, 'TM_EVENT_SCHEMA', 'origin'],
        [4, 'TM_EVENT_INVALID_JSON', null],
      ]);
      expect(dead[3]!.raw).toBe('{not json');
      expect(dead[0]!.raw).toContain('"late"');
    });

    it('a load that died half-way is cleaned up and redone', async () => {
      const path = writeNdjson(join(dir, 'partial.ndjson'), [{ date: 978307261000, delay: 1, distance: 10, origin: 'PPP', destination: 'QQQ' }]);
      const { fileSha256 } = await import('../../offline/index.js');
      const loadId = `flights:${await fileSha256(path)}`;
      // rows of an attempt that never reached tm_loads
      await store.executor.insert('tm_events_flights', [{ __ts: 978307261000, __load: loadId, __offset: 0, delay: 1, distance: 10, origin: 'PPP', destination: 'QQQ', date: 978307261000, __k_origin: 'PPP', __k_destination: 'QQQ' }]);
      const before = await dataset([{ airport: 'PPP', ts: 978307262000, label: 0 }], ['origin_delays:flights_1h']);
      expect(readNdjson(before)[0]!.origin_delays__flights_1h).toBe(0); // incomplete loads are invisible
      await store.loadEvents('flights', path);
      const [n] = await store.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_events_flights WHERE __load = {id:String}', { id: loadId });
      expect(Number(n!.n)).toBe(1);
      expect(readNdjson(await dataset([{ airport: 'PPP', ts: 978307262000, label: 0 }], ['origin_delays:flights_1h']))[0]!.origin_delays__flights_1h).toBe(1);
    });

    describe('bad input gets a clear error and writes nothing', () => {
      const noOutputLeft = (): void => {
        expect(readdirSync(dir).filter((f) => f.endsWith('.partial') || f.startsWith('bad-out'))).toEqual([]);
      };
      const spineFile = (rows: Record<string, unknown>[]): string => writeNdjson(join(dir, `bad-spine-${Math.random().toString(36).slice(2)}.ndjson`), rows);
      const out = (): string => join(dir, `bad-out-${Math.random().toString(36).slice(2)}.parquet`);

      it('a spine missing a join key or ts column', async () => {
        const e = await expectCode(store.writeDataset(spineFile([{ ts: 978307260000 }]), ['origin_delays:flights_1h'], out()), 'TM_SPINE_MISSING_COLUMN');
        expect(e.details).toMatchObject({ missing: ['airport'], present: ['ts'] });
        await expectCode(store.writeDataset(spineFile([{ airport: 'ORD' }]), ['origin_delays:flights_1h'], out()), 'TM_SPINE_MISSING_COLUMN');
        noOutputLeft();
      });

      it('an unparseable time names the row and the column', async () => {
        const e = await expectCode(
          store.writeDataset(spineFile([{ airport: 'ORD', ts: 978307260000 }, { airport: 'ORD', ts: 'last tuesday' }]), ['origin_delays:flights_1h'], out()),
          'TM_SPINE_BAD_TIME',
        );
        expect(e.message).toContain('row 2, column ts');
        noOutputLeft();
      });

      it('an unknown feature lists the valid ones', async () => {
        const e = await expectCode(store.writeDataset(spineFile([{ airport: 'ORD', ts: 1 }]), ['origin_delays:nope'], out()), 'TM_DATASET_UNKNOWN_FEATURE');
        expect(e.details.validFeatures).toContain('origin_delays:delay_mean_1h');
        noOutputLeft();
      });

      it('an empty spine', async () => {
        await expectCode(store.writeDataset(spineFile([]), ['origin_delays:flights_1h'], out()), 'TM_SPINE_EMPTY');
        noOutputLeft();
      });

      it('an output file of unknown format', async () => {
        await expectCode(store.writeDataset(spineFile([{ airport: 'ORD', ts: 1 }]), ['origin_delays:flights_1h'], join(dir, 'bad-out.xlsx')), 'TM_DATASET_BAD_OUTPUT');
        expect(existsSync(join(dir, 'bad-out.xlsx'))).toBe(false);
      });
    });
  });
}
