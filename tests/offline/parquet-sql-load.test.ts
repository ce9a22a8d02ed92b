// The SQL load of a Parquet file (ClickHouse's reader, rows SQL cannot prove valid through the
// decoder) against the decoder-only load and the replay: the same event rows, the same dead letters
// with the same codes and reasons, the same counts. On a small file with bad rows of every kind
// (nulls, empty strings, NaN and infinities, integers beyond 2^53, sub-millisecond times, invalid
// UTF-8, events from the future) over several row groups, and on the whole flights file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { replayParquetFile, type BadEvent, type DeadLetterSink } from '../../ingest/index.js';
import { OfflineStore, topLevelColumns } from '../../offline/index.js';

const compiled = compileOrThrow(flightsDefinitions);
const NOW_MS = Date.parse('2026-12-06T00:00:00Z');
let dir: string;
let offline: OfflineStore;
let fixture: string;

/** A dead-letter sink that keeps what it is given. */
function collectingSink(): DeadLetterSink & { bad: BadEvent[] } {
  const counts: Record<string, number> = {};
  const bad: BadEvent[] = [];
  return {
    bad,
    counts,
    write(b) {
      for (const e of b) counts[e.code] = (counts[e.code] ?? 0) + 1;
      bad.push(...b);
    },
  };
}

interface Snapshot {
  events: Record<string, unknown>[];
  deadLetters: Record<string, unknown>[];
  loads: Record<string, unknown>[];
}

async function snapshot(): Promise<Snapshot> {
  const ex = offline.executor;
  return {
    events: await ex.rows(`SELECT *, hex(origin) AS origin_bytes, hex(destination) AS destination_bytes, hex(__k_origin) AS key_bytes FROM tm_events_flights ORDER BY __offset`),
    deadLetters: await ex.rows(`SELECT source, load_id, position, code, field, reason, raw FROM tm_dead_letters ORDER BY position`),
    loads: await ex.rows(`SELECT load_id, source, file, sha256, rows, events, bad, registry_version FROM tm_loads ORDER BY load_id`),
  };
}

/** Aggregates of the whole events table: counts and order-independent hashes of every column. */
async function digest(): Promise<Snapshot> {
  const ex = offline.executor;
  return {
    events: await ex.rows(
      `SELECT count() AS n, sum(cityHash64(__ts, __load, __offset, date, delay, distance, origin, destination, __k_origin, __k_destination)) AS h, min(__ts) AS t0, max(__ts) AS t1, sum(delay) AS delays FROM tm_events_flights`,
    ),
    deadLetters: await ex.rows(`SELECT source, load_id, position, code, field, reason, raw FROM tm_dead_letters ORDER BY position`),
    loads: await ex.rows(`SELECT load_id, source, file, sha256, rows, events, bad, registry_version FROM tm_loads ORDER BY load_id`),
  };
}

async function forget(): Promise<void> {
  for (const table of ['tm_events_flights', 'tm_dead_letters', 'tm_loads']) await offline.executor.command(`TRUNCATE TABLE ${table}`);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tm-parquet-sql-'));
  offline = await OfflineStore.open(compiled, { dataDir: join(dir, 'store') });
  fixture = join(dir, 'flights-bad.parquet');
  // 3 000 rows in row groups of 400, a bad or unusual value every few dozen rows.
  await offline.executor.command(`
    SELECT
      if(n % 89 = 0, NULL, if(n = 2999, toDateTime64('2100-01-01 00:00:00', 6, 'UTC'), toDateTime64('2001-01-01 00:00:00', 6, 'UTC') + toIntervalMinute(n) + toIntervalMicrosecond(if(n % 97 = 0, 500, 0)))) AS date,
      CAST(if(n % 83 = 0, NULL, if(n % 79 = 0, 9007199254740993, toInt64(n % 120) - 20)) AS Nullable(Int64)) AS delay,
      CAST(if(n % 67 = 0, NULL, if(n % 73 = 0, nan, if(n % 71 = 0, inf, n * 1.5))) AS Nullable(Float64)) AS distance,
      CAST(if(n % 53 = 0, NULL, if(n % 61 = 0, '', if(n % 59 = 0, unhex('C328'), ['SFO', 'ORD', 'ATL'][n % 3 + 1]))) AS Nullable(String)) AS origin,
      CAST(if(n % 47 = 0, NULL, 'LAX') AS Nullable(String)) AS destination
    FROM (SELECT number AS n FROM numbers(3000))
    ORDER BY n
    INTO OUTFILE '${fixture}' TRUNCATE FORMAT Parquet
    SETTINGS output_format_parquet_row_group_size = 400`);
}, 60_000);

afterAll(async () => {
  await offline?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('loading a Parquet file with ClickHouse reader', () => {
  it('stores the same events and dead letters as the decoder-only load, bad rows of every kind included', async () => {
    await forget();
    const decoded = await offline.loadEvents('flights', fixture);
    const expected = await snapshot();
    await forget();
    const sink = collectingSink();
    const loaded = await offline.loadParquetWithSql('flights', fixture, { nowMs: () => NOW_MS, deadLetters: sink });
    if (!loaded.ok) throw new Error(loaded.reason);
    const got = await snapshot();

    expect(got.events).toEqual(expected.events);
    expect(got.deadLetters).toEqual(expected.deadLetters);
    expect(got.loads).toEqual(expected.loads);
    expect({ rows: loaded.result.rows, events: loaded.result.events, bad: loaded.result.badEvents }).toEqual({ rows: decoded.rows, events: decoded.events, bad: decoded.badEvents });
    // The fixture has bad rows of several codes and valid rows SQL leaves to the decoder.
    expect(new Set(got.deadLetters.map((d) => d.code))).toEqual(new Set(['TM_EVENT_SCHEMA', 'TM_EVENT_TIME', 'TM_EVENT_FUTURE']));
    expect(decoded.badEvents).toBeGreaterThan(200);
    expect(loaded.decodedRows).toBeGreaterThan(decoded.badEvents); // sub-millisecond times and invalid UTF-8 are valid, but not provably so in SQL
    expect(loaded.sqlEvents).toBeGreaterThan(2_000);
    expect(got.events.some((e) => e.origin === '\uFFFD(')).toBe(true);
    expect(got.events.some((e) => Number(e.__ts) % 60_000 !== 0)).toBe(false);

    // The dead letters the caller's sink saw are the replay's, in the same order.
    const replaySink = collectingSink();
    await replayParquetFile(compiled, fixture, { apply: () => ({ lateTileEvents: 0 }) }, { source: 'flights', deadLetters: replaySink, nowMs: () => NOW_MS });
    expect(sink.bad).toEqual(replaySink.bad);
    expect(sink.counts).toEqual(replaySink.counts);
  }, 60_000);

  it('loads a file once: a second load finds it and reads nothing', async () => {
    const again = await offline.loadParquetWithSql('flights', fixture, { nowMs: () => NOW_MS });
    expect(again.ok && again.result.alreadyLoaded).toBe(true);
  });

  it('says why it cannot load a file whose columns SQL cannot read as the decoder does', async () => {
    const wrong = join(dir, 'wrong-types.parquet');
    await offline.executor.command(`SELECT toDateTime64('2001-01-01 00:00:00', 6, 'UTC') AS date, 1 AS delay, 2 AS distance, 3 AS origin, 'LAX' AS destination INTO OUTFILE '${wrong}' TRUNCATE FORMAT Parquet`);
    const result = await offline.loadParquetWithSql('flights', wrong);
    expect(result).toEqual({ ok: false, reason: 'column origin holds integer values; the schema wants string' });
    const missing = join(dir, 'missing.parquet');
    await offline.executor.command(`SELECT toDateTime64('2001-01-01 00:00:00', 6, 'UTC') AS date, 1 AS delay, 'SFO' AS origin, 'LAX' AS destination INTO OUTFILE '${missing}' TRUNCATE FORMAT Parquet`);
    expect(await offline.loadParquetWithSql('flights', missing)).toEqual({ ok: false, reason: 'the file has no column distance' });
  });

  it('loads the whole flights file as the decoder-only load does', async () => {
    await forget();
    await offline.loadEvents('flights', FLIGHTS_PARQUET_PATH);
    const expected = await digest();
    await forget();
    const loaded = await offline.loadParquetWithSql('flights', FLIGHTS_PARQUET_PATH);
    if (!loaded.ok) throw new Error(loaded.reason);
    const got = await digest();
    expect(got).toEqual(expected);
    expect(loaded.result.events).toBe(3_000_000);
    expect(loaded.sqlEvents).toBe(3_000_000);
  }, 300_000);
});

describe('topLevelColumns', () => {
  it('lists the root children of a Parquet schema, not the fields nested in them', () => {
    const schema = [
      { name: 'root', num_children: 3 },
      { name: 'date', type: 'INT64' },
      { name: 'nested', num_children: 2 },
      { name: 'origin', type: 'BYTE_ARRAY' },
      { name: 'inner', num_children: 1 },
      { name: 'delay', type: 'INT64' },
      { name: 'distance', type: 'DOUBLE' },
    ];
    expect(topLevelColumns(schema).map((e) => e.name)).toEqual(['date', 'nested', 'distance']);
  });
});
