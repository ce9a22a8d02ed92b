// The feature log in chDB (embedded mode): the embedded sink appends reads as lines to
// tm_feature_log_lines' file (tests/support/feature-log-store-cases.ts has the cases shared with a
// ClickHouse server), and a line cut short by a crash costs only itself.
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFeatureLogRecord } from '../../ingest/index.js';
import { FEATURE_LOG_LINES_TABLE, featureLogTablesOf, loggedValuesSql, OfflineFeatureLogSink, OfflineStore } from '../../offline/index.js';
import { clearFeatureLog, flightsCompiled } from '../support/feature-log.js';
import { embeddedFeatureLogCases } from '../support/feature-log-store-cases.js';

let dir: string;
let store: OfflineStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-log-lines-'));
  store = await OfflineStore.open(flightsCompiled(), { dataDir: dir });
}, 60_000);

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('feature log in chDB', () => {
  embeddedFeatureLogCases(() => store);
});

describe('feature log lines in chDB', () => {
  it('skips a line cut short by a crash, and the next write starts on a new line', async () => {
    await clearFeatureLog(store.executor);
    const [{ path }] = (await store.executor.rows<{ path: string }>(`SELECT data_paths[1] AS path FROM system.tables WHERE name = {t:String}`, { t: FEATURE_LOG_LINES_TABLE })) as [{ path: string }];
    const whole = encodeFeatureLogRecord({ kind: 'read', v: 1, request_id: 'req-whole', read_time_ms: 3_000, registry_version: 'x', entities: { airport: ['ORD'] }, features: [{ view: 'origin_delays', feature: 'last_delay', values: [1], statuses: ['PRESENT'], event_times_ms: [5] }] });
    appendFileSync(path, `${whole.json}\n${String(whole.json).slice(0, 40).replace('req-whole', 'req-cut')}`);
    const after = { ...whole, requestId: 'req-after', json: String(whole.json).replace('req-whole', 'req-after') };
    const sink = new OfflineFeatureLogSink(store.executor);
    await sink.write([after]);
    expect(readFileSync(path, 'utf8').split('\n').filter((l) => l !== '')).toHaveLength(3);
    const ids = await store.executor.rows<{ request_id: string }>(`SELECT DISTINCT request_id FROM (${loggedValuesSql('1', featureLogTablesOf(store.executor))}) ORDER BY request_id`);
    expect(ids.map((r) => r.request_id)).toEqual(['req-after', 'req-whole']);
  });
});
