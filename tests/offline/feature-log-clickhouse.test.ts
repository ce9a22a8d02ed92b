// The feature log through @clickhouse/client (a ClickHouse server's executor; here the chDB-backed
// HTTP fixture, or CLICKHOUSE_URL's server): records written by the embedded sink as TabSeparated
// (text with a tab, a newline, a backslash and non-ASCII characters included) come back as values;
// a version-2 read (what serving writes) expands to the same values as the same read in version 1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeFeatureLogRecord, encodeFeatureLogRecord, loggedFeaturesOf } from '../../ingest/index.js';
import { encodeLoggedRead, loggedReadOf, type OnlineFeaturesRequest, type OnlineFeaturesResponse } from '../../online/index.js';
import { FEATURE_LOG_TABLE, loggedKeySql, loggedValuesSql, OfflineFeatureLogSink, OfflineStore } from '../../offline/index.js';
import { startClickHouseHttpFixture, type ClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { testClickHouseUrl } from '../support/clickhouse.js';
import { flightsCompiled } from '../support/feature-log.js';

let dir: string;
let fixture: ClickHouseHttpFixture | null = null;
let store: OfflineStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-log-clickhouse-'));
  let url = testClickHouseUrl();
  if (url === null) {
    fixture = await startClickHouseHttpFixture(join(dir, 'chdb'));
    url = fixture.url;
  }
  store = await OfflineStore.open(flightsCompiled(), { clickhouseUrl: url });
  await store.executor.command(`TRUNCATE TABLE ${FEATURE_LOG_TABLE}`);
}, 60_000);

afterAll(async () => {
  await store?.close();
  await fixture?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('feature log on a ClickHouse server', () => {
  it('stores reads as TabSeparated rows and expands them to values', async () => {
    const text = 'tab\there, newline\nthere, back\\slash, caf\u00e9 \u2603';
    const record = { kind: 'read' as const, v: 1 as const, request_id: 'r\t1', read_time_ms: 1_000, registry_version: 'x', entities: { airport: ['ORD', 'S\\FO'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: [text, 2.5], statuses: ['PRESENT' as const, 'PRESENT' as const], event_times_ms: [5, 6] }] };
    await new OfflineFeatureLogSink(store.executor).write([encodeFeatureLogRecord(record)]);
    const rows = await store.executor.rows<{ request_id: string; entity_row: number; value_num: number | null; value_text: string | null; event_ms: number }>(`SELECT request_id, entity_row, value_num, value_text, event_ms FROM (${loggedValuesSql('1')}) ORDER BY entity_row`);
    expect(rows).toEqual([
      { request_id: 'r\t1', entity_row: 0, value_num: null, value_text: text, event_ms: 5 },
      { request_id: 'r\t1', entity_row: 1, value_num: 2.5, value_text: null, event_ms: 6 },
    ]);
  });

  it('expands a version-2 read (what serving writes) to the same values as the same read in version 1', async () => {
    await store.executor.command(`TRUNCATE TABLE ${FEATURE_LOG_TABLE}`);
    const request: OnlineFeaturesRequest = { features: ['origin_delays:flights_1h', 'origin_delays:last_delay'], entities: { airport: ['ORD', 'S\\FO'] } };
    const response: OnlineFeaturesResponse = {
      metadata: { feature_names: ['airport', 'flights_1h', 'last_delay'] },
      results: [
        { values: ['ORD', 'S\\FO'], statuses: ['PRESENT', 'PRESENT'], event_timestamps: ['1970-01-01T00:00:00Z', '1970-01-01T00:00:00Z'] },
        { values: [3, null], statuses: ['PRESENT', 'NOT_FOUND'], event_timestamps: ['2001-01-01T10:00:00.250Z', '1970-01-01T00:00:00Z'] },
        { values: ['te\txt', -2.5], statuses: ['PRESENT', 'OUTSIDE_MAX_AGE'], event_timestamps: ['2001-01-01T09:00:00Z', '1970-01-01T00:00:00Z'] },
      ],
    };
    const atMs = Date.UTC(2001, 0, 1, 11);
    const v2 = loggedReadOf(request, response, atMs, 'req-v2', 'x');
    const v1 = { kind: 'read' as const, v: 1 as const, request_id: 'req-v1', read_time_ms: atMs, registry_version: 'x', entities: request.entities as Record<string, (string | number | boolean)[]>, features: loggedFeaturesOf(v2) };
    expect(v1.features[0]).toEqual({ view: 'origin_delays', feature: 'flights_1h', values: [3, null], statuses: ['PRESENT', 'NOT_FOUND'], event_times_ms: [Date.UTC(2001, 0, 1, 10, 0, 0, 250), null] });
    expect(decodeFeatureLogRecord(encodeLoggedRead(request, response, atMs, 'req-v2', 'x').json)).toMatchObject({ ok: true, record: v2 });
    await new OfflineFeatureLogSink(store.executor).write([encodeLoggedRead(request, response, atMs, 'req-v2', 'x'), encodeFeatureLogRecord(v1)]);
    const rows = await store.executor.rows<Record<string, unknown>>(`SELECT request_id, entity_row, view, feature, status, event_ms, value_num, value_text, ${loggedKeySqlFor('airport')} AS airport FROM (${loggedValuesSql('1')}) ORDER BY request_id, entity_row, feature`, { jk: 'airport' });
    const of = (id: string) => rows.filter((r) => r.request_id === id).map(({ request_id: _, ...r }) => r);
    expect(of('req-v2')).toEqual(of('req-v1'));
    expect(of('req-v2')).toEqual([
      { entity_row: 0, view: 'origin_delays', feature: 'flights_1h', status: 'PRESENT', event_ms: Date.UTC(2001, 0, 1, 10, 0, 0, 250), value_num: 3, value_text: null, airport: 'ORD' },
      { entity_row: 0, view: 'origin_delays', feature: 'last_delay', status: 'PRESENT', event_ms: Date.UTC(2001, 0, 1, 9), value_num: null, value_text: 'te\txt', airport: 'ORD' },
      { entity_row: 1, view: 'origin_delays', feature: 'flights_1h', status: 'NOT_FOUND', event_ms: null, value_num: null, value_text: null, airport: 'S\\FO' },
      { entity_row: 1, view: 'origin_delays', feature: 'last_delay', status: 'OUTSIDE_MAX_AGE', event_ms: null, value_num: -2.5, value_text: null, airport: 'S\\FO' },
    ]);
    // A version-2 record shorter than its refs (a broken producer): nulls, not a failed query.
    const broken = JSON.parse(encodeLoggedRead(request, response, atMs, 'req-broken', 'x').json) as { values: unknown[] };
    broken.values.pop();
    await new OfflineFeatureLogSink(store.executor).write([{ kind: 'read', requestId: 'req-broken', timeMs: atMs, json: JSON.stringify(broken) }]);
    const brokenRows = await store.executor.rows<{ value_num: number | null }>(`SELECT value_num FROM (${loggedValuesSql("request_id = 'req-broken'")}) WHERE feature = 'last_delay'`);
    expect(brokenRows.map((r) => r.value_num)).toEqual([null, null]);
  });

  it('stores a queued read (its JSON as UTF-8 bytes) byte for byte, copied as it is or escaped', async () => {
    const plain = encodeFeatureLogRecord({ kind: 'read', v: 1, request_id: 'req-bytes-plain', read_time_ms: 2_000, registry_version: 'x', entities: { airport: ['ORD'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: ['caf\u00e9 \u2603'], statuses: ['PRESENT'], event_times_ms: [5] }] });
    const special = encodeFeatureLogRecord({ kind: 'read', v: 1, request_id: 'req-bytes-\tspecial', read_time_ms: 2_001, registry_version: 'x', entities: { airport: ['S\\FO'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: ['tab\there, newline\nthere'], statuses: ['PRESENT'], event_times_ms: [6] }] });
    await new OfflineFeatureLogSink(store.executor).write([plain, special].map((r) => ({ ...r, json: Buffer.from(r.json, 'utf8') })));
    const rows = await store.executor.rows<{ request_id: string; record: string }>(`SELECT request_id, record FROM ${FEATURE_LOG_TABLE} WHERE request_id LIKE 'req-bytes-%' ORDER BY read_ms`);
    expect(rows).toEqual([
      { request_id: 'req-bytes-plain', record: plain.json },
      { request_id: 'req-bytes-\tspecial', record: special.json },
    ]);
  });
});

const loggedKeySqlFor = (_key: string): string => loggedKeySql('jk');
