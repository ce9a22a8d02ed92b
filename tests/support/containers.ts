// Real Kafka, Redis and ClickHouse in containers, for test runs on a machine with a container
// runtime (see backends.ts for when). Started with the official testcontainers modules; each stop()
// removes its container, and testcontainers' reaper removes them if the run dies.
//
// Images: Redis and ClickHouse are those of docker-compose.yml, so the tests run against what the
// services mode runs. Kafka is Confluent's image of the same Kafka line: @testcontainers/kafka 11
// (the last line for Node 20) starts only confluentinc/cp-kafka, whose start script it rewrites
// to advertise the mapped port; cp-kafka 7.9 is Apache Kafka 3.9, the line of the compose file's
// apache/kafka:3.9.x (tests/support/backends.test.ts keeps the two in step), in KRaft mode.
//
// No container runtime runs on this project's machines: this file runs only where Docker does.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Confluent Platform 7.9 ships Apache Kafka 3.9. */
export const KAFKA_CONTAINER_IMAGE = 'confluentinc/cp-kafka:7.9.0';

/** The image a service of docker-compose.yml runs. */
export function composeImage(service: 'kafka' | 'redis' | 'clickhouse'): string {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services?: Record<string, { image?: string }> };
  const image = compose.services?.[service]?.image;
  if (!image) throw new Error(`docker-compose.yml names no image for ${service}`);
  return image;
}

export interface StartedService {
  /** What the matching variable would hold: bootstrap servers, redis:// or http:// URL. */
  address: string;
  stop(): Promise<void>;
}

/** One Kafka node in KRaft mode; topics are created on first use with 4 partitions, as in docker-compose.yml. */
export async function kafkaContainer() {
  const { KafkaContainer } = await import('@testcontainers/kafka');
  return new KafkaContainer(KAFKA_CONTAINER_IMAGE).withKraft().withEnvironment({ KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'true', KAFKA_NUM_PARTITIONS: '4' });
}

export async function redisContainer() {
  const { RedisContainer } = await import('@testcontainers/redis');
  return new RedisContainer(composeImage('redis'));
}

export async function clickHouseContainer() {
  const { ClickHouseContainer } = await import('@testcontainers/clickhouse');
  return new ClickHouseContainer(composeImage('clickhouse'));
}

export async function startKafkaContainer(): Promise<StartedService> {
  const container = await (await kafkaContainer()).start();
  // 9093: the module's listener for clients outside the container network (it advertises the mapped port).
  return { address: `${container.getHost()}:${container.getMappedPort(9093)}`, stop: async () => void (await container.stop()) };
}

export async function startRedisContainer(): Promise<StartedService> {
  const container = await (await redisContainer()).start();
  return { address: `redis://${container.getHost()}:${container.getPort()}`, stop: async () => void (await container.stop()) };
}

/** A ClickHouse server; the address carries the module's user and password (http://user:password@host:port). */
export async function startClickHouseContainer(): Promise<StartedService> {
  const container = await (await clickHouseContainer()).start();
  const url = new URL(container.getHttpUrl());
  url.username = container.getUsername();
  url.password = container.getPassword();
  // The tests add their own database as the path (tests/offline/clickhouse-server.test.ts).
  return { address: url.toString().replace(/\/$/, ''), stop: async () => void (await container.stop()) };
}
