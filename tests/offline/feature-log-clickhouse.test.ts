// The feature log through @clickhouse/client (a ClickHouse server's executor; here the chDB-backed
// HTTP fixture, or CLICKHOUSE_URL's server): the embedded sink's reads are TabSeparated rows of
// tm_feature_log_records (tests/support/feature-log-store-cases.ts has the cases).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { OfflineStore } from '../../offline/index.js';
import { startClickHouseHttpFixture, type ClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { testClickHouseUrl } from '../support/clickhouse.js';
import { flightsCompiled } from '../support/feature-log.js';
import { embeddedFeatureLogCases } from '../support/feature-log-store-cases.js';

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
}, 60_000);

afterAll(async () => {
  await store?.close();
  await fixture?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('feature log on a ClickHouse server', () => {
  embeddedFeatureLogCases(() => store);
});
