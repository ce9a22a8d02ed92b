import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // A real multi-node ClickHouse cluster cannot be started here: its tests run with
    // `npm run test:clickhouse-cluster` (vitest.clickhouse-cluster.config.ts) where one is given.
    exclude: [...configDefaults.exclude, 'tests/clickhouse-cluster/**'],
    // Once per run: Kafka, Redis, a Redis Cluster and ClickHouse from variables, containers or local
    // processes, in that order per service (tests/support/backends.ts); it prints which.
    globalSetup: ['tests/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    typecheck: { enabled: false },
  },
});
