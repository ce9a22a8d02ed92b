// Where the test services come from (tests/support/backends.ts): an explicit variable first, then a
// container where a container runtime answers, else local processes; the start-of-run report; the
// runtime probe, which must answer quickly and never hang; and the container images, kept in step
// with docker-compose.yml. Starting the containers themselves needs a container runtime, which this
// project's machines do not have: that path runs only where Docker does.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseBackends, describeBackends, probeContainerRuntime, wantsContainerRuntime, type Backends } from '../support/backends.js';
import { clickHouseContainer, composeImage, kafkaContainer, KAFKA_CONTAINER_IMAGE, redisContainer } from '../support/containers.js';

const kinds = (b: Backends) => Object.fromEntries(Object.entries(b).map(([s, v]) => [s, v.kind]));

describe('chooseBackends', () => {
  it('with no variables: containers where a runtime answers, local processes otherwise', () => {
    expect(kinds(chooseBackends({}, true))).toEqual({ kafka: 'container', redis: 'container', redisCluster: 'local', clickhouse: 'container' });
    expect(kinds(chooseBackends({}, false))).toEqual({ kafka: 'local', redis: 'local', redisCluster: 'local', clickhouse: 'local' });
  });

  it('honours each variable first, with or without a runtime', () => {
    const env = { KAFKA_BROKERS: 'k:9092', REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'a:1,b:2', CLICKHOUSE_URL: 'http://c:8123' };
    for (const runtime of [true, false]) {
      expect(chooseBackends(env, runtime)).toEqual({
        kafka: { kind: 'env', variable: 'KAFKA_BROKERS', value: 'k:9092' },
        redis: { kind: 'env', variable: 'REDIS_URL', value: 'redis://r:6379' },
        redisCluster: { kind: 'env', variable: 'REDIS_CLUSTER_NODES', value: 'a:1,b:2' },
        clickhouse: { kind: 'env', variable: 'CLICKHOUSE_URL', value: 'http://c:8123' },
      });
    }
  });

  it('decides per service: one variable set, the others from the runtime or local', () => {
    expect(kinds(chooseBackends({ REDIS_URL: 'redis://r:6379' }, true))).toEqual({ kafka: 'container', redis: 'env', redisCluster: 'local', clickhouse: 'container' });
    expect(kinds(chooseBackends({ KAFKA_BROKERS: 'k:9092' }, false))).toEqual({ kafka: 'env', redis: 'local', redisCluster: 'local', clickhouse: 'local' });
  });

  it('treats an empty or blank variable as unset', () => {
    expect(kinds(chooseBackends({ KAFKA_BROKERS: '', REDIS_URL: '  ' }, true))).toEqual({ kafka: 'container', redis: 'container', redisCluster: 'local', clickhouse: 'container' });
  });

  it('keeps to local processes when TIDEMARK_TEST_CONTAINERS turns containers off', () => {
    for (const off of ['0', 'false', 'off', 'NO']) {
      expect(kinds(chooseBackends({ TIDEMARK_TEST_CONTAINERS: off }, true))).toEqual({ kafka: 'local', redis: 'local', redisCluster: 'local', clickhouse: 'local' });
    }
    expect(kinds(chooseBackends({ TIDEMARK_TEST_CONTAINERS: '1' }, true)).kafka).toBe('container');
  });
});

describe('wantsContainerRuntime', () => {
  it('probes only when a containerizable service has no variable and containers are not off', () => {
    expect(wantsContainerRuntime({})).toBe(true);
    expect(wantsContainerRuntime({ KAFKA_BROKERS: 'k', REDIS_URL: 'r' })).toBe(true);
    expect(wantsContainerRuntime({ KAFKA_BROKERS: 'k', REDIS_URL: 'r', CLICKHOUSE_URL: 'c' })).toBe(false);
    expect(wantsContainerRuntime({ TIDEMARK_TEST_CONTAINERS: 'off' })).toBe(false);
  });
});

describe('describeBackends', () => {
  it('names the source of every service, and hides passwords', () => {
    const text = describeBackends(chooseBackends({ CLICKHOUSE_URL: 'http://u:secret@c:8123', KAFKA_BROKERS: 'k:9092' }, true), 'Docker 27');
    const lines = text.split('\n');
    expect(lines[0]).toBe('test services (container runtime: Docker 27):');
    expect(lines).toHaveLength(5);
    expect(text).toMatch(/kafka +env +KAFKA_BROKERS=k:9092/);
    expect(text).toMatch(/redis +container +Redis in a container/);
    expect(text).toMatch(/redisCluster +local +three redis-server processes/);
    expect(text).toMatch(/clickhouse +env +CLICKHOUSE_URL=http:\/\/u:\*\*\*@c:8123/);
    expect(text).not.toContain('secret');
  });
});

describe('probeContainerRuntime', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  const saved = { DOCKER_HOST: process.env.DOCKER_HOST };
  afterEach(async () => {
    if (saved.DOCKER_HOST === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = saved.DOCKER_HOST;
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('gives up within its timeout when the engine never answers', async () => {
    // A "Docker engine" that accepts connections and never says a word.
    const server = createServer((socket) => void sockets.push(socket));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    process.env.DOCKER_HOST = `tcp://127.0.0.1:${port}`;
    await import('testcontainers'); // loaded first, so the time below is the probe's own
    const t0 = Date.now();
    const result = await probeContainerRuntime(500);
    const elapsed = Date.now() - t0;
    expect(result.available).toBe(false);
    expect(result.reason).toMatch(/no answer within 500 ms/);
    expect(elapsed).toBeLessThan(2000);
  });
});

describe('container images', () => {
  it('runs the Kafka line of docker-compose.yml (Confluent Platform 7.x ships Apache Kafka 3.x: 7.9 is 3.9)', () => {
    const compose = /^apache\/kafka:(\d+)\.(\d+)\./.exec(composeImage('kafka'));
    const confluent = /^confluentinc\/cp-kafka:(\d+)\.(\d+)\./.exec(KAFKA_CONTAINER_IMAGE);
    expect(compose, composeImage('kafka')).not.toBeNull();
    expect(confluent, KAFKA_CONTAINER_IMAGE).not.toBeNull();
    expect(Number(confluent![1]) - 4).toBe(Number(compose![1]));
    expect(confluent![2]).toBe(compose![2]);
  });

  it('takes Redis and ClickHouse from docker-compose.yml', () => {
    expect(composeImage('redis')).toMatch(/^redis:\d/);
    expect(composeImage('clickhouse')).toMatch(/^clickhouse\/clickhouse-server:\d/);
  });

  it('configures each container without a runtime (starting them needs one: not run here)', async () => {
    // The Kafka module checks here that the image supports KRaft (Confluent Platform 7.0 or later).
    await expect(kafkaContainer()).resolves.toBeDefined();
    await expect(redisContainer()).resolves.toBeDefined();
    await expect(clickHouseContainer()).resolves.toBeDefined();
  });
});
