// The offline suite on the ClickHouse server executor (offline/clickhouse.ts, @clickhouse/client over
// ClickHouse's HTTP interface), plus what only that path has: an unreachable server, server errors,
// parameter binding on the wire, in-band errors and Arrow batches streamed over HTTP.
//
// Which server: the one CLICKHOUSE_URL names when it is set, or the container the global setup
// started where a container runtime answers (each run creates fresh databases there and drops them
// afterwards); otherwise the chDB test fixture of tests/support/
// clickhouse-http-fixture.ts, which serves ClickHouse's HTTP interface from chDB in this process.
// The fixture is not a ClickHouse server: the SQL engine is ClickHouse (chDB) but the HTTP layer is a
// test double; see its header for what it covers. The "HTTP interface as the client sees it" tests
// below hold for a real server too, which is how the fixture is kept honest.
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { tableFromIPC } from 'apache-arrow';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referenceViewValues, TidemarkError, valuesAgree, type Scalar } from '../../definitions/index.js';
import { OfflineStore } from '../../offline/index.js';
import { testClickHouseUrl } from '../support/clickhouse.js';
import { startClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { writeFlightFiles, writeNdjson, type FlightFiles } from '../support/offline-fixtures.js';
import { runOfflineSuite } from './offline-suite.js';

const REAL_SERVER = testClickHouseUrl();
const BACKEND_NAME = REAL_SERVER
  ? 'a ClickHouse server (CLICKHOUSE_URL or a container) through @clickhouse/client'
  : 'ClickHouse HTTP interface (@clickhouse/client) served by the chDB test fixture';

/** The server under test, started once for the whole file (one chDB data directory per process). */
interface Target {
  /** A URL of the server with a database of its own for `purpose` (created here). */
  database(purpose: string): Promise<string>;
  close(): Promise<void>;
}

let target: Target;
const runId = `${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const root = mkdtempSync(join(tmpdir(), 'tidemark-chserver-'));

beforeAll(async () => {
  let baseUrl: string;
  let stopFixture: (() => Promise<void>) | null = null;
  if (REAL_SERVER) {
    baseUrl = REAL_SERVER;
  } else {
    const fixture = await startClickHouseHttpFixture(join(root, 'fixture-chdb'));
    baseUrl = fixture.url;
    stopFixture = () => fixture.close();
  }
  const admin = createClient({ url: baseUrl, log: { level: ClickHouseLogLevel.OFF } });
  const created: string[] = [];
  target = {
    async database(purpose) {
      const name = `tidemark_test_${runId}_${purpose}`;
      await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${name}` }).catch((e: unknown) => {
        const where = REAL_SERVER ? 'the ClickHouse server (CLICKHOUSE_URL or a container)' : 'the chDB test fixture';
        throw new Error(`cannot create a test database on ${where}: ${e instanceof Error ? e.message : String(e)}`);
      });
      created.push(name);
      const url = new URL(baseUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async close() {
      for (const name of created) await admin.command({ query: `DROP DATABASE IF EXISTS ${name} SYNC` }).catch(() => undefined);
      await admin.close();
      await stopFixture?.();
    },
  };
}, 60_000);

afterAll(async () => {
  await target?.close();
  await rm(root, { recursive: true, force: true });
});

runOfflineSuite({
  name: BACKEND_NAME,
  open: async (files, _dir) => OfflineStore.open(files.compiled, { clickhouseUrl: await target.database('suite') }),
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

async function expectTidemark(promise: Promise<unknown>, code: string): Promise<TidemarkError> {
  const e = await rejection(promise);
  expect(e).toBeInstanceOf(TidemarkError);
  expect((e as TidemarkError).code, (e as Error).message).toBe(code);
  return e as TidemarkError;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

/**
 * A TCP relay in front of the server, to take the server away on cue: `stop()` refuses new
 * connections and drops open ones; `cutNextResponseTo(text)` forwards the response to the next
 * request containing `text` only up to a few bytes past its headers, then drops the connection.
 */
async function startRelay(to: URL): Promise<{ url: string; stop(): Promise<void>; cutNextResponseTo(text: string): void }> {
  const sockets = new Set<Socket>();
  let cutOn: string | null = null;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(to.port || (to.protocol === 'https:' ? 443 : 80)), to.hostname);
    sockets.add(client).add(upstream);
    let armed = false;
    let seen = Buffer.alloc(0);
    let sentAfterHeaders = -1;
    client.on('data', (chunk: Buffer) => {
      if (cutOn !== null && chunk.includes(cutOn)) {
        armed = true;
        cutOn = null;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!armed) {
        client.write(chunk);
        return;
      }
      if (sentAfterHeaders < 0) {
        seen = Buffer.concat([seen, chunk]);
        const end = seen.indexOf('\r\n\r\n');
        if (end < 0) return;
        client.write(seen.subarray(0, Math.min(seen.length, end + 4 + 32)));
        sentAfterHeaders = Math.min(seen.length - end - 4, 32);
      }
      if (sentAfterHeaders >= 0) {
        client.destroy();
        upstream.destroy();
      }
    });
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  const { port } = server.address() as AddressInfo;
  const url = new URL(to.toString());
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    async stop() {
      const closed = new Promise<void>((ok) => server.close(() => ok()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    cutNextResponseTo(text) {
      cutOn = text;
    },
  };
}

describe(`ClickHouse server executor on ${BACKEND_NAME}`, () => {
  const dir = join(root, 'server-tests');
  let url: string;
  let files: FlightFiles;
  let store: OfflineStore;

  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    url = await target.database('server');
    files = await writeFlightFiles(dir, 3000);
    store = await OfflineStore.open(files.compiled, { clickhouseUrl: url });
    expect(store.executor.kind).toBe('clickhouse');
    await store.loadEvents('flights', files.ndjson);
  }, 120_000);

  afterAll(async () => {
    await store?.close();
  });

  const spineFile = (rows: Record<string, unknown>[]): string => writeNdjson(join(dir, `spine-${randomBytes(4).toString('hex')}.ndjson`), rows);
  const leftovers = (): string[] => readdirSync(dir).filter((f) => f.startsWith('out-') || f.endsWith('.partial'));

  describe('a server that is down', () => {
    it('open rejects with TM_OFFLINE_UNREACHABLE naming the URL, and writes nothing', async () => {
      const down = `http://127.0.0.1:${await freePort()}`;
      const dataDir = join(dir, 'must-not-exist');
      const e = await expectTidemark(OfflineStore.open(files.compiled, { clickhouseUrl: down, dataDir }), 'TM_OFFLINE_UNREACHABLE');
      expect(e.message).toContain(down);
      expect(e.details.url).toBe(down);
      expect(existsSync(dataDir)).toBe(false); // no fallback to a local chDB store
    });

    it('a password in the URL never reaches the error', async () => {
      const port = await freePort();
      const e = await expectTidemark(OfflineStore.open(files.compiled, { clickhouseUrl: `http://tidemark:s3cret-pw@127.0.0.1:${port}` }), 'TM_OFFLINE_UNREACHABLE');
      expect(JSON.stringify({ message: e.message, ...e.details })).not.toContain('s3cret-pw');
      expect(e.message).toContain(`127.0.0.1:${port}`);
    });

    it('a server that goes away before a dataset: TM_OFFLINE_UNREACHABLE, no output and no partial file', async () => {
      const relay = await startRelay(new URL(url));
      const relayed = await OfflineStore.open(files.compiled, { clickhouseUrl: relay.url });
      try {
        await relay.stop();
        const out = join(dir, 'out-down.parquet');
        const e = await expectTidemark(relayed.writeDataset(spineFile([{ airport: 'ORD', ts: files.maxTs }]), ['origin_delays:flights_1h'], out), 'TM_OFFLINE_UNREACHABLE');
        expect(e.message).toContain(relay.url);
        expect(leftovers()).toEqual([]);
      } finally {
        await relayed.close();
      }
    });

    it('a connection lost in the middle of a dataset leaves no output and no partial file', async () => {
      const relay = await startRelay(new URL(url));
      const relayed = await OfflineStore.open(files.compiled, { clickhouseUrl: relay.url });
      try {
        relay.cutNextResponseTo('FORMAT Parquet');
        const spine = Array.from({ length: 200 }, (_, i) => ({ airport: ['ORD', 'SFO', 'ATL'][i % 3], ts: files.minTs + i * 600_000 }));
        const out = join(dir, 'out-cut.parquet');
        await expectTidemark(relayed.writeDataset(spineFile(spine), ['origin_delays:flights_1h', 'origin_delays:delay_mean_1d'], out), 'TM_OFFLINE_UNREACHABLE');
        expect(leftovers()).toEqual([]);
      } finally {
        await relay.stop();
        await relayed.close();
      }
    });
  });

  describe('server errors', () => {
    it('a query error comes back as TM_OFFLINE_QUERY with ClickHouse\'s message', async () => {
      const e = await expectTidemark(store.executor.rows('SELECT * FROM tm_no_such_table'), 'TM_OFFLINE_QUERY');
      expect(e.message).toMatch(/^ClickHouse: .*tm_no_such_table/);
      expect(e.details).toMatchObject({ url, statement: 'SELECT * FROM tm_no_such_table' });
      const syntax = await expectTidemark(store.executor.command('CREATE TABEL oops (a Int64) ENGINE = Memory'), 'TM_OFFLINE_QUERY');
      expect(syntax.message).toContain('Syntax error');
      const streamed = await expectTidemark(store.executor.writeFile('SELECT toInt64(\'not a number\') AS x', 'Parquet', join(dir, 'out-err.parquet')), 'TM_OFFLINE_QUERY');
      expect(streamed.message).toContain('not a number');
      await rm(join(dir, 'out-err.parquet'), { force: true });
    });

    it('an error after rows were streamed is raised, not passed on as data', async () => {
      // ~2 MB of rows go out block by block before row 80 000 throws, past any response buffer, so
      // the status is already 200 and the server reports the error inside the body (ClickHouse
      // 25.11+: the block tagged with X-ClickHouse-Exception-Tag)
      const sql = `SELECT number, throwIf(number = 80000, 'boom at 80000') AS x FROM numbers(100000) SETTINGS max_block_size = 1000`;
      const received: Uint8Array[] = [];
      const e = await expectTidemark(
        (async () => {
          for await (const chunk of store.executor.streamJsonLines(sql)) received.push(chunk);
        })(),
        'TM_OFFLINE_QUERY',
      );
      expect(e.message).toContain('boom at 80000');
      const text = Buffer.concat(received).toString('utf8');
      expect(text).not.toContain('__exception__');
      const lines = text.split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThan(0); // the error came after rows, inside a 200 answer
      expect(lines.filter((line) => !/^\{"number":\d+,"x":0\}$/.test(line))).toEqual([]); // only whole rows came through
      const viaFile = await expectTidemark(store.executor.writeFile(sql, 'JSONEachRow', join(dir, 'out-inband.ndjson')), 'TM_OFFLINE_QUERY');
      expect(viaFile.message).toContain('boom at 80000');
      await rm(join(dir, 'out-inband.ndjson'), { force: true });
    });
  });

  describe('parameters are bound', () => {
    const tricky = `it's a 'quote', a \\ backslash, \\' both, "double", tab\there, newline\nthere, \\N, \\x41, é ✓ 𝄞 -- ; DROP TABLE x`;

    it('a value with quotes and backslashes round-trips through a {v:String} parameter', async () => {
      const [row] = await store.executor.rows<{ v: string; n: number }>('SELECT {v:String} AS v, lengthUTF8({v:String}) AS n', { v: tricky });
      expect(row!.v).toBe(tricky);
      expect(Number(row!.n)).toBe([...tricky].length);
    });

    it('through a WHERE clause, an INSERT and back, with NULL and numbers', async () => {
      await store.executor.command('CREATE TABLE IF NOT EXISTS tm_param_check (id Int64, s Nullable(String)) ENGINE = MergeTree ORDER BY id');
      await store.executor.insert('tm_param_check', [
        { id: 1, s: tricky },
        { id: 2, s: null },
      ]);
      const rows = await store.executor.rows<{ id: number }>('SELECT id FROM tm_param_check WHERE s = {v:String} AND id >= {min:Int64}', { v: tricky, min: 1 });
      expect(rows.map((r) => Number(r.id))).toEqual([1]);
      const nulls = await store.executor.rows<{ id: number }>('SELECT id FROM tm_param_check WHERE s IS NULL AND isNull({v:Nullable(String)})', { v: null });
      expect(nulls.map((r) => Number(r.id))).toEqual([2]);
      const injected = await store.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_param_check WHERE s = {v:String}', { v: "x' OR 1 = 1 --" });
      expect(Number(injected[0]!.n)).toBe(0);
      await store.executor.command('DROP TABLE tm_param_check');
    });
  });

  describe('results streamed over HTTP', () => {
    it('a consumer that stops early releases the answer; the next query runs', async () => {
      let chunks = 0;
      for await (const chunk of store.executor.streamJsonLines('SELECT number FROM numbers(5000000) SETTINGS max_block_size = 1000')) {
        expect(chunk.length).toBeGreaterThan(0);
        if (++chunks === 2) break;
      }
      for await (const batch of store.executor.arrowBatches('SELECT number FROM numbers(1000000) SETTINGS max_block_size = 1000')) {
        expect(batch.numRows).toBeGreaterThan(0);
        break;
      }
      expect(await store.executor.rows<{ x: number }>('SELECT 1 AS x')).toEqual([{ x: 1 }]);
    });

    it('a large result reads back through apache-arrow, batch by batch', async () => {
      let rows = 0;
      let batches = 0;
      let sum = 0n;
      const wrong: string[] = [];
      for await (const batch of store.executor.arrowBatches(
        'SELECT number AS n, toString(number) AS s, number / 4 AS f FROM numbers({count:UInt64}) SETTINGS max_block_size = 8192',
        { count: 100_000 },
      )) {
        batches++;
        const n = batch.getChild('n')!;
        const s = batch.getChild('s')!;
        const f = batch.getChild('f')!;
        for (let i = 0; i < batch.numRows; i++) {
          const v = n.get(i) as bigint;
          if (s.get(i) !== String(v) || f.get(i) !== Number(v) / 4) wrong.push(`${v}: ${s.get(i)}, ${f.get(i)}`);
          sum += v;
        }
        rows += batch.numRows;
      }
      expect(wrong).toEqual([]);
      expect(rows).toBe(100_000);
      expect(sum).toBe(BigInt((99_999 * 100_000) / 2));
      expect(batches).toBeGreaterThan(1);
    });

    it('a point-in-time dataset as Arrow batches equals the reference, in spine order', async () => {
      const spine = Array.from({ length: 120 }, (_, i) => ({
        airport: ['ORD', 'SFO', 'ATL', 'LAX', 'ZZZ'][i % 5],
        origin: ['ORD', 'SFO', 'ATL', 'LAX', 'ZZZ'][i % 5],
        destination: ['SFO', 'ORD', 'LAX', 'ATL', 'ZZZ'][(i * 7) % 5],
        ts: files.minTs - 3_600_000 + Math.floor(((files.maxTs - files.minTs + 7_200_000) * i) / 119),
        label: i,
      }));
      const features = files.compiled.registry.views.flatMap((v) => v.features.map((f) => `${v.name}:${f.name}`));
      const prepared = await store.prepareDataset(spineFile(spine), features);
      const out: Record<string, unknown>[] = [];
      try {
        for await (const batch of store.executor.arrowBatches(prepared.sql)) {
          for (const row of batch) out.push(row!.toJSON() as Record<string, unknown>);
        }
      } finally {
        await prepared.release();
      }
      expect(out).toHaveLength(spine.length);
      out.forEach((row, i) => {
        const s = spine[i]!;
        expect(Number(row.label), `row ${i} order`).toBe(s.label);
        for (const view of files.compiled.registry.views) {
          const expected = referenceViewValues(view, files.events, view.joinKeys.map((k) => String(s[k as keyof typeof s])), s.ts);
          for (const f of view.features) {
            const raw = row[`${view.name}__${f.name}`];
            const got = (typeof raw === 'bigint' ? Number(raw) : raw) as Scalar;
            expect(valuesAgree(f.agg, got, expected[f.name]!), `row ${i} ${view.name}:${f.name}: got ${got}, reference ${expected[f.name]}`).toBe(true);
          }
        }
      });
    });

    it('an Arrow IPC dataset file written over HTTP reads with tableFromIPC', async () => {
      const out = join(dir, 'dataset.arrow');
      const result = await store.writeDataset(spineFile([{ airport: 'ORD', ts: files.maxTs + 1, label: 0 }]), ['origin_delays:flights_1h'], out);
      expect(result.rows).toBe(1);
      const table = tableFromIPC(readFileSync(out));
      expect(table.numRows).toBe(1);
      expect(table.schema.fields.map((f) => f.name)).toEqual(['airport', 'ts', 'label', 'origin_delays__flights_1h']);
      await rm(out);
    });
  });

  describe('the HTTP interface as @clickhouse/client sees it (holds for a real server too)', () => {
    let client: ClickHouseClient;
    beforeAll(() => {
      // errors are asserted below; the client's own error log would only repeat them
      client = createClient({ url, compression: { request: true, response: true }, log: { level: ClickHouseLogLevel.OFF } });
    });
    afterAll(async () => {
      await client?.close();
    });

    it('answers ping', async () => {
      expect(await client.ping()).toMatchObject({ success: true });
    });

    it('applies settings to their own request only', async () => {
      const read = async (settings?: Record<string, string>): Promise<string> => {
        const result = await client.query({ query: `SELECT getSetting('max_block_size') AS v`, format: 'JSONEachRow', ...(settings ? { clickhouse_settings: settings } : {}) });
        return String(((await result.json()) as { v: unknown }[])[0]!.v);
      };
      const before = await read();
      expect(await read({ max_block_size: '1234' })).toBe('1234');
      expect(await read()).toBe(before);
      const e = await rejection(client.query({ query: 'SELECT 1', clickhouse_settings: { no_such_setting_here: 1 } as never }));
      expect((e as { type?: string }).type).toBe('UNKNOWN_SETTING');
    });

    it('forgets a request\'s SET and USE when it ends (no HTTP session)', async () => {
      const database = new URL(url).pathname.slice(1);
      const setting = async (): Promise<string> => String(((await (await client.query({ query: `SELECT getSetting('max_block_size') AS v, currentDatabase() AS db`, format: 'JSONEachRow' })).json()) as { v: unknown }[])[0]!.v);
      const before = await setting();
      await client.command({ query: 'SET max_block_size = 777' });
      await client.command({ query: 'USE system' });
      expect(await setting()).toBe(before);
      const [row] = (await (await client.query({ query: 'SELECT currentDatabase() AS db', format: 'JSONEachRow' })).json()) as { db: string }[];
      expect(row!.db).toBe(database);
    });

    it('refuses multi-statement requests', async () => {
      const e = await rejection(client.command({ query: 'SELECT 1; SELECT 2' }));
      expect((e as { code?: string }).code).toBe('62');
    });

    it('takes gzip request bodies and sends gzip responses', async () => {
      await client.command({ query: 'CREATE TABLE IF NOT EXISTS tm_gzip_check (id UInt32, s String) ENGINE = MergeTree ORDER BY id' });
      const values = Array.from({ length: 5000 }, (_, i) => ({ id: i, s: `row ${i} ${'x'.repeat(i % 50)}` }));
      await client.insert({ table: 'tm_gzip_check', values, format: 'JSONEachRow' });
      const result = await client.query({ query: 'SELECT id, s FROM tm_gzip_check ORDER BY id', format: 'JSONEachRow' });
      expect(await result.json()).toEqual(values);
      await client.command({ query: 'DROP TABLE tm_gzip_check' });
    });

    it('reports a missing table with its ClickHouse code and type', async () => {
      const e = await rejection(client.query({ query: 'SELECT * FROM tm_nothing_here', format: 'JSONEachRow' }));
      expect(e).toMatchObject({ code: '60', type: 'UNKNOWN_TABLE' });
    });
  });
});

