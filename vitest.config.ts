import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Once per run: Kafka, Redis, a Redis Cluster and ClickHouse from variables, containers or local
    // processes, in that order per service (tests/support/backends.ts); it prints which.
    globalSetup: ['tests/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    typecheck: { enabled: false },
  },
});
