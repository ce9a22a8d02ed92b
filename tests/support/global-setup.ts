// vitest global setup: once per test run, start the real services the suites need (a redis-server,
// a Redis Cluster of three masters, librdkafka's mock Kafka cluster), hand their addresses to the
// test files (`inject`, see testRedisUrl / testRedisClusterNodes in redis.ts and testKafka in
// kafka.ts), and stop them afterwards. REDIS_URL, REDIS_CLUSTER_NODES and KAFKA_BROKERS name
// running services to use instead. A service that cannot start fails the run with what to
// install; nothing is skipped.
import type { TestProject } from 'vitest/node';
import { serveMockControl, startMockKafka } from './kafka.js';
import { startRedisCluster, startRedisServer } from './redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** redis://host:port of a single Redis. */
    redisUrl: string;
    /** host:port,host:port,... seeds of a Redis Cluster. */
    redisClusterNodes: string;
    /** Kafka bootstrap servers, comma-separated. */
    kafkaBootstrap: string;
    /** host:port of the mock cluster's command channel; null when KAFKA_BROKERS names a real cluster. */
    kafkaControl: string | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: (() => Promise<void>)[] = [];
  const teardown = async (): Promise<void> => {
    const errors: unknown[] = [];
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw new AggregateError(errors, 'stopping the test services failed');
  };
  try {
    // allSettled: when one fails, the others still finish starting, so teardown stops them all.
    const started = await Promise.allSettled([
      (async () => {
        if (process.env.REDIS_URL) return process.env.REDIS_URL;
        const server = await startRedisServer();
        stops.push(() => server.stop());
        return server.url;
      })(),
      (async () => {
        if (process.env.REDIS_CLUSTER_NODES) return process.env.REDIS_CLUSTER_NODES;
        const cluster = await startRedisCluster(3);
        stops.push(() => cluster.stop());
        return cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',');
      })(),
      (async () => {
        if (process.env.KAFKA_BROKERS) return { bootstrap: process.env.KAFKA_BROKERS, control: null };
        const mock = await startMockKafka({ brokers: 3 });
        stops.push(() => mock.stop());
        const control = await serveMockControl(mock);
        stops.push(() => control.close());
        return { bootstrap: mock.bootstrap, control: control.address };
      })(),
    ] as const);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const [redisUrl, redisClusterNodes, kafka] = started.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [string, string, { bootstrap: string; control: string | null }];
    project.provide('redisUrl', redisUrl);
    project.provide('redisClusterNodes', redisClusterNodes);
    project.provide('kafkaBootstrap', kafka.bootstrap);
    project.provide('kafkaControl', kafka.control);
  } catch (e) {
    await teardown().catch(() => undefined);
    throw e;
  }
  return teardown;
}
