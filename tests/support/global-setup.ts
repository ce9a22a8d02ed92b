// vitest global setup: once per test run, decide where each service comes from (backends.ts: an
// explicit variable, else a container where a container runtime answers, else local processes),
// print it, start what needs starting, hand the addresses to the test files (`inject`, see
// testRedisUrl / testRedisClusterNodes in redis.ts, testKafka in kafka.ts, testClickHouseUrl in
// clickhouse.ts), and stop it all afterwards. A service that cannot start fails the run with what
// to install; nothing is skipped.
import type { TestProject } from 'vitest/node';
import { chooseBackends, describeBackends, probeContainerRuntime, wantsContainerRuntime, CONTAINERS_VARIABLE } from './backends.js';
import { startClickHouseContainer, startKafkaContainer, startRedisContainer } from './containers.js';
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
    /** host:port of the mock cluster's command channel; null for a real Kafka (KAFKA_BROKERS or a container). */
    kafkaControl: string | null;
    /** A ClickHouse server's HTTP URL (CLICKHOUSE_URL or a container); null: files start the chDB fixture. */
    clickhouseUrl: string | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const env = process.env;
  const probe = wantsContainerRuntime(env)
    ? await probeContainerRuntime()
    : { available: false, reason: `not probed (${/\S/.test(env[CONTAINERS_VARIABLE] ?? '') ? `${CONTAINERS_VARIABLE}=${env[CONTAINERS_VARIABLE]}` : 'every containerizable service is named by a variable'})` };
  const backends = chooseBackends(env, probe.available);
  console.log(describeBackends(backends, probe.available ? probe.reason : `none, ${probe.reason}`));

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
        const b = backends.redis;
        if (b.kind === 'env') return b.value;
        const server = b.kind === 'container' ? await startRedisContainer() : await startRedisServer().then((s) => ({ address: s.url, stop: () => s.stop() }));
        stops.push(() => server.stop());
        return server.address;
      })(),
      (async () => {
        const b = backends.redisCluster;
        if (b.kind === 'env') return b.value;
        const cluster = await startRedisCluster(3);
        stops.push(() => cluster.stop());
        return cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',');
      })(),
      (async () => {
        const b = backends.kafka;
        if (b.kind === 'env') return { bootstrap: b.value, control: null };
        if (b.kind === 'container') {
          const kafka = await startKafkaContainer();
          stops.push(() => kafka.stop());
          return { bootstrap: kafka.address, control: null };
        }
        const mock = await startMockKafka({ brokers: 3 });
        stops.push(() => mock.stop());
        const control = await serveMockControl(mock);
        stops.push(() => control.close());
        return { bootstrap: mock.bootstrap, control: control.address };
      })(),
      (async () => {
        const b = backends.clickhouse;
        if (b.kind === 'env') return b.value;
        if (b.kind === 'local') return null;
        const server = await startClickHouseContainer();
        stops.push(() => server.stop());
        return server.address;
      })(),
    ] as const);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    const [redisUrl, redisClusterNodes, kafka, clickhouseUrl] = started.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [
      string,
      string,
      { bootstrap: string; control: string | null },
      string | null,
    ];
    project.provide('redisUrl', redisUrl);
    project.provide('redisClusterNodes', redisClusterNodes);
    project.provide('kafkaBootstrap', kafka.bootstrap);
    project.provide('kafkaControl', kafka.control);
    project.provide('clickhouseUrl', clickhouseUrl);
  } catch (e) {
    await teardown().catch(() => undefined);
    throw e;
  }
  return teardown;
}
