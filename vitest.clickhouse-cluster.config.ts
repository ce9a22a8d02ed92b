// `npm run test:clickhouse-cluster`: the tests that need a real multi-node ClickHouse cluster
// (CLICKHOUSE_CLUSTER_URL); they fail, naming the variable, when none is given.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/clickhouse-cluster/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
