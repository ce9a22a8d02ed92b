// The run's ClickHouse server, for test files that talk to one over HTTP (@clickhouse/client):
// CLICKHOUSE_URL, or the container the global setup started; null where there is neither, and
// such a file starts the chDB HTTP fixture (clickhouse-http-fixture.ts) instead.
import { inject } from 'vitest';

export function testClickHouseUrl(): string | null {
  return inject('clickhouseUrl');
}
