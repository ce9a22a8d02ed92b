// The feature log written by the embedded sink, checked on both of its stores (by
// tests/offline/feature-log-clickhouse.test.ts on a ClickHouse server, and by
// tests/offline/feature-log-lines.test.ts on chDB, one chDB per process): records (text with a
// tab, a newline, a backslash and non-ASCII characters included) come back as values, and a
// version-3 read (what serving writes, with its feature set) expands to the same values as the
// same read in versions 2 and 1.
import { beforeAll, expect, it } from 'vitest';
import { decodeFeatureLogRecord, encodeFeatureLogRecord, loggedFeaturesOf, STATUS_LETTERS, type LoggedReadV2Record } from '../../ingest/index.js';
import { encodeLoggedRead, loggedReadOf, type OnlineFeaturesRequest, type OnlineFeaturesResponse } from '../../online/index.js';
import { clearFeatureLog } from './feature-log.js';
import { FEATURE_SETS_TABLE, featureLogTablesOf, loggedKeySql, loggedReadsSql, loggedValuesSql, OfflineFeatureLogSink, type OfflineStore } from '../../offline/index.js';

/** The cases, inside a describe whose store `storeOf()` gives once its beforeAll has run. */
export function embeddedFeatureLogCases(storeOf: () => OfflineStore): void {
  const sql = (where: string): string => loggedValuesSql(where, featureLogTablesOf(storeOf().executor));
  let store: OfflineStore;
  beforeAll(async () => {
    store = storeOf();
    await clearFeatureLog(store.executor);
  });

  it('stores reads as TabSeparated rows and expands them to values', async () => {
    const text = 'tab\there, newline\nthere, back\\slash, caf\u00e9 \u2603';
    const record = { kind: 'read' as const, v: 1 as const, request_id: 'r\t1', read_time_ms: 1_000, registry_version: 'x', entities: { airport: ['ORD', 'S\\FO'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: [text, 2.5], statuses: ['PRESENT' as const, 'PRESENT' as const], event_times_ms: [5, 6] }] };
    await new OfflineFeatureLogSink(store.executor).write([encodeFeatureLogRecord(record)]);
    const rows = await store.executor.rows<{ request_id: string; entity_row: number; value_num: number | null; value_text: string | null; event_ms: number }>(`SELECT request_id, entity_row, value_num, value_text, event_ms FROM (${sql('1')}) ORDER BY entity_row`);
    expect(rows).toEqual([
      { request_id: 'r\t1', entity_row: 0, value_num: null, value_text: text, event_ms: 5 },
      { request_id: 'r\t1', entity_row: 1, value_num: 2.5, value_text: null, event_ms: 6 },
    ]);
  });

  it('expands a version-3 read (what serving writes, with its feature set) to the same values as the same read in versions 2 and 1', async () => {
    await clearFeatureLog(store.executor);
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
    const { read: v3, features: set } = loggedReadOf(request, response, atMs, 'req-v3', 'x');
    const features = loggedFeaturesOf(v3, (id) => (id === set.features_id ? set : undefined))!;
    const entities = request.entities as Record<string, (string | number | boolean)[]>;
    const v1 = { kind: 'read' as const, v: 1 as const, request_id: 'req-v1', read_time_ms: atMs, registry_version: 'x', entities, features };
    const v2: LoggedReadV2Record = {
      kind: 'read',
      v: 2,
      request_id: 'req-v2',
      read_time_ms: atMs,
      registry_version: 'x',
      entities,
      features: features.map((f) => `${f.view}:${f.feature}`),
      values: features.map((f) => f.values),
      statuses: features.map((f) => f.statuses.map((st) => STATUS_LETTERS[st]).join('')),
      ages_ms: features.map((f) => f.event_times_ms.map((t) => (t === null ? null : atMs - t))),
    };
    expect(features[0]).toEqual({ view: 'origin_delays', feature: 'flights_1h', values: [3, null], statuses: ['PRESENT', 'NOT_FOUND'], event_times_ms: [Date.UTC(2001, 0, 1, 10, 0, 0, 250), null] });
    const encoded = encodeLoggedRead(request, response, atMs, 'req-v3', 'x');
    expect(decodeFeatureLogRecord(encoded.json)).toMatchObject({ ok: true, record: v3 });
    const sink = new OfflineFeatureLogSink(store.executor);
    await sink.write([encoded, encodeFeatureLogRecord(v2), encodeFeatureLogRecord(v1)]);
    // A second read of the same set: the set is not written again.
    await sink.write([encodeLoggedRead(request, response, atMs + 1, 'req-v3-again', 'x')]);
    const rows = await store.executor.rows<Record<string, unknown>>(
      `SELECT request_id, registry_version, entity_row, view, feature, status, event_ms, value_num, value_text, ${loggedKeySql('jk')} AS airport FROM (${sql('1')}) ORDER BY request_id, entity_row, feature`,
      { jk: 'airport' },
    );
    const of = (id: string) => rows.filter((r) => r.request_id === id).map(({ request_id: _, ...r }) => r);
    expect(of('req-v3')).toEqual(of('req-v2'));
    expect(of('req-v3')).toEqual(of('req-v1'));
    expect(of('req-v3')).toEqual([
      { registry_version: 'x', entity_row: 0, view: 'origin_delays', feature: 'flights_1h', status: 'PRESENT', event_ms: Date.UTC(2001, 0, 1, 10, 0, 0, 250), value_num: 3, value_text: null, airport: 'ORD' },
      { registry_version: 'x', entity_row: 0, view: 'origin_delays', feature: 'last_delay', status: 'PRESENT', event_ms: Date.UTC(2001, 0, 1, 9), value_num: null, value_text: 'te\txt', airport: 'ORD' },
      { registry_version: 'x', entity_row: 1, view: 'origin_delays', feature: 'flights_1h', status: 'NOT_FOUND', event_ms: null, value_num: null, value_text: null, airport: 'S\\FO' },
      { registry_version: 'x', entity_row: 1, view: 'origin_delays', feature: 'last_delay', status: 'OUTSIDE_MAX_AGE', event_ms: null, value_num: -2.5, value_text: null, airport: 'S\\FO' },
    ]);
    expect(of('req-v3-again')).toHaveLength(4);
    const [sets] = await store.executor.rows<{ n: number }>(`SELECT count() AS n FROM ${FEATURE_SETS_TABLE}`);
    expect(Number(sets!.n)).toBe(1);
    // A version-3 record shorter than its refs (a broken producer): nulls, not a failed query.
    const broken = JSON.parse(encodeLoggedRead(request, response, atMs, 'req-broken', 'x').json) as { values: unknown[]; statuses: string; ages_ms: unknown[] };
    broken.values.splice(2);
    broken.statuses = broken.statuses.slice(0, 2);
    broken.ages_ms.splice(2);
    await new OfflineFeatureLogSink(store.executor).write([{ ...encoded, requestId: 'req-broken', json: JSON.stringify(broken) }]);
    const brokenRows = await store.executor.rows<{ value_num: number | null }>(`SELECT value_num FROM (${sql("request_id = 'req-broken'")}) WHERE feature = 'last_delay'`);
    expect(brokenRows.map((r) => r.value_num)).toEqual([null, null]);
  });

  it('stores a queued read (its JSON as UTF-8 bytes) byte for byte, copied as it is or escaped', async () => {
    const plain = encodeFeatureLogRecord({ kind: 'read', v: 1, request_id: 'req-bytes-plain', read_time_ms: 2_000, registry_version: 'x', entities: { airport: ['ORD'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: ['caf\u00e9 \u2603'], statuses: ['PRESENT'], event_times_ms: [5] }] });
    const special = encodeFeatureLogRecord({ kind: 'read', v: 1, request_id: 'req-bytes-\tspecial', read_time_ms: 2_001, registry_version: 'x', entities: { airport: ['S\\FO'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: ['tab\there, newline\nthere'], statuses: ['PRESENT'], event_times_ms: [6] }] });
    await new OfflineFeatureLogSink(store.executor).write([plain, special].map((r) => ({ ...r, json: Buffer.from(r.json, 'utf8') })));
    const rows = await store.executor.rows<{ request_id: string; record: string }>(
      `SELECT request_id, record FROM (${loggedReadsSql("request_id LIKE 'req-bytes-%'", featureLogTablesOf(store.executor))}) ORDER BY read_ms`,
    );
    expect(rows).toEqual([
      { request_id: 'req-bytes-plain', record: plain.json },
      { request_id: 'req-bytes-\tspecial', record: special.json },
    ]);
  });
}
