// The feature log through @clickhouse/client (a ClickHouse server's executor; here the chDB-backed
// HTTP fixture, or CLICKHOUSE_URL's server): records written by the embedded sink as TabSeparated
// (text with a tab, a newline, a backslash and non-ASCII characters included) come back as values.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFeatureLogRecord } from '../../ingest/index.js';
import { FEATURE_LOG_TABLE, loggedValuesSql, OfflineFeatureLogSink, OfflineStore } from '../../offline/index.js';
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
});
