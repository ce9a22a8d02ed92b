// npm start on small Parquet files of flights with bad rows: loaded by ClickHouse's Parquet reader,
// the bad rows get the same dead-letter file, counts and online values as with `--replay`; a file
// whose columns that reader cannot read as the decoder does is replayed, with a line saying why.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { OfflineStore } from '../../offline/index.js';
import { runQuickstart, type QuickstartResult } from '../../api/index.js';

const DEFINITIONS = new URL('../../examples/flights', import.meta.url).pathname;
let dir: string;
let withBadRows: string;
let wrongTypes: string;

async function quickstart(file: string, dataDir: string, rebuild: boolean): Promise<{ result: QuickstartResult; log: string[]; deadLetters: string }> {
  const log: string[] = [];
  const result = await runQuickstart({ definitions: DEFINITIONS, file, port: 0, host: '127.0.0.1', serve: false, progress: false, monitor: false, rebuild, dataDir, log: (line) => log.push(line) });
  await result.offline?.close();
  let deadLetters = '';
  try {
    deadLetters = readFileSync(join(dataDir, 'dead-letters', 'flights.ndjson'), 'utf8');
  } catch {
    // no bad row, no file
  }
  return { result, log, deadLetters };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tm-quickstart-bad-'));
  const fixtures = await OfflineStore.open(compileOrThrow(flightsDefinitions), { dataDir: join(dir, 'fixtures') });
  withBadRows = join(dir, 'with-bad-rows.parquet');
  wrongTypes = join(dir, 'wrong-types.parquet');
  // 500 flights an hour apart; every 50th has no delay, every 70th an empty origin, every 90th no time.
  await fixtures.executor.command(`
    SELECT
      if(n % 90 = 5, NULL, toDateTime64('2001-01-01 00:00:00', 6, 'UTC') + toIntervalHour(n)) AS date,
      CAST(if(n % 50 = 7, NULL, toInt64(n % 40) - 10) AS Nullable(Int64)) AS delay,
      CAST(100 + n AS Nullable(Int64)) AS distance,
      CAST(if(n % 70 = 3, '', ['SFO', 'ORD', 'ATL'][n % 3 + 1]) AS Nullable(String)) AS origin,
      CAST(['LAX', 'JFK'][n % 2 + 1] AS Nullable(String)) AS destination
    FROM (SELECT number AS n FROM numbers(500)) ORDER BY n
    INTO OUTFILE '${withBadRows}' TRUNCATE FORMAT Parquet`);
  await fixtures.executor.command(`
    SELECT toDateTime64('2001-01-01 00:00:00', 6, 'UTC') + toIntervalHour(number) AS date, toInt64(number) AS delay, 100 AS distance, number AS origin, 'LAX' AS destination
    FROM numbers(3) INTO OUTFILE '${wrongTypes}' TRUNCATE FORMAT Parquet`);
  await fixtures.close();
}, 60_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('npm start on files with bad rows', () => {
  it('loads with the Parquet reader and writes the dead letters, counts and reads of the replay', async () => {
    const first = await quickstart(withBadRows, join(dir, 'sql'), true);
    const replay = await quickstart(withBadRows, join(dir, 'replay'), false);
    expect(first.log.some((l) => l.startsWith("loaded 476 events into the offline store with ClickHouse's Parquet reader") && l.includes('(24 rows it could not prove valid went through the decoder)'))).toBe(true);
    expect(replay.log.some((l) => l.startsWith('replayed 476 events'))).toBe(true);
    expect(first.result.replay.badEvents).toBe(24);
    expect(first.result.replay.badEvents).toBe(replay.result.replay.badEvents);
    expect(first.log.find((l) => l.startsWith('bad events:'))).toBe(`bad events: 24 (dead letters in ${join(dir, 'sql', 'dead-letters')}); late (event, tile group) updates kept out of the online store: 0`);
    expect(first.deadLetters.trim().split('\n')).toHaveLength(24);
    expect(first.deadLetters).toBe(replay.deadLetters);
    expect(first.deadLetters).toContain('"code":"TM_EVENT_TIME"');
    expect(first.deadLetters).toContain('"field":"origin"');
    expect(first.deadLetters).toContain('"field":"delay"');
    expect(first.result.stats.keys).toEqual(replay.result.stats.keys);
    expect(first.result.sample).toEqual(replay.result.sample);
  }, 120_000);

  it('replays a file whose columns the Parquet reader cannot read as the decoder does, and says why', async () => {
    const run = await quickstart(wrongTypes, join(dir, 'wrong'), true);
    expect(run.log).toContain("the offline store cannot load this file with ClickHouse's Parquet reader (column origin holds integer values; the schema wants string): replaying it instead");
    expect(run.log.some((l) => l.startsWith('replayed 0 events'))).toBe(true);
    expect(run.result.replay.badEvents).toBe(3);
    expect(run.deadLetters.trim().split('\n').map((l) => (JSON.parse(l) as { code: string; field: string }).field)).toEqual(['origin', 'origin', 'origin']);
  }, 120_000);
});
