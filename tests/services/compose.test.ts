// docker-compose.yml, the services mode on a machine with Docker: no Docker engine runs here, so
// this parses the file and checks what would break a user's `docker compose up`: the three
// services, pinned images, the published ports, a single-node KRaft Kafka whose internal topics
// fit on one node and which advertises the published address, and that the README's services-mode
// commands and the CLI's defaults name those same ports.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildCli } from '../../api/index.js';

const ROOT = join(import.meta.dirname, '..', '..');
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services?: Record<string, ComposeService> };
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

interface ComposeService {
  image?: string;
  ports?: (string | number | { target: number; published?: string | number; host_ip?: string })[];
  environment?: Record<string, string | number | boolean | null> | string[];
  command?: string | string[];
}

/** The service's published ports as {host ip, host port, container port}, short and long syntax. */
function publishedPorts(service: ComposeService): { hostIp: string; published: number; target: number }[] {
  return (service.ports ?? []).map((p) => {
    if (typeof p === 'object') return { hostIp: p.host_ip ?? '0.0.0.0', published: Number(p.published ?? p.target), target: p.target };
    const parts = String(p).split('/')[0]!.split(':');
    const target = Number(parts.pop());
    const published = parts.length > 0 ? Number(parts.pop()) : target;
    return { hostIp: parts.pop() ?? '0.0.0.0', published, target };
  });
}

function environment(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

const services = compose.services ?? {};
const SERVICE_PORTS = { kafka: 9092, redis: 6379, clickhouse: 8123 } as const;

/** Host port -> service, for every port the file publishes. */
const portOwner = new Map<number, string>();
for (const [name, s] of Object.entries(services)) for (const p of publishedPorts(s)) portOwner.set(p.published, name);

/** host:port of a local address (localhost or 127.0.0.1) in `text`, else null. */
function localPort(text: string): number | null {
  const m = /^(?:[a-z-]+:\/\/)?(?:[^@/\s]*@)?(?:localhost|127\.0\.0\.1):(\d+)\/?$/.exec(text);
  return m ? Number(m[1]) : null;
}

/** Every value the README gives a flag or variable, e.g. `--redis-url X` and `REDIS_URL=X`. */
function readmeValues(flag: string, variable: string): string[] {
  const values: string[] = [];
  for (const m of readme.matchAll(new RegExp(`(?:${flag}[ =]|\\b${variable}=)([^\\s\`'"),]+)`, 'g'))) values.push(m[1]!);
  return values;
}

describe('docker-compose.yml (parsed; no Docker engine here to run it)', () => {
  it('has the kafka, redis and clickhouse services, each with a pinned image', () => {
    expect(Object.keys(services).sort()).toEqual(['clickhouse', 'kafka', 'redis']);
    for (const [name, s] of Object.entries(services)) {
      expect(s.image, `${name}: image`).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(s.image!.endsWith(':latest'), `${name}: pin a version, not latest`).toBe(false);
    }
    expect(services.kafka!.image).toMatch(/^(apache|bitnami)\/kafka:/);
    expect(services.redis!.image).toMatch(/^redis:/);
    expect(services.clickhouse!.image).toMatch(/^clickhouse\/clickhouse-server:/);
  });

  it('publishes Kafka 9092, Redis 6379 and ClickHouse HTTP 8123 on the same container ports, on loopback only', () => {
    for (const [name, port] of Object.entries(SERVICE_PORTS)) {
      const ports = publishedPorts(services[name]!);
      expect(ports, name).toContainEqual({ hostIp: '127.0.0.1', published: port, target: port });
      for (const p of ports) expect(p.hostIp, `${name} publishes ${p.published} beyond loopback`).toBe('127.0.0.1');
    }
  });

  it('runs Kafka as one KRaft node that advertises the published address and keeps its internal topics on that node', () => {
    const env = environment(services.kafka!);
    expect(env.KAFKA_PROCESS_ROLES!.split(',').sort()).toEqual(['broker', 'controller']);
    expect(env.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(`${env.KAFKA_NODE_ID}@localhost:9093`);
    expect(env.KAFKA_CONTROLLER_LISTENER_NAMES).toBe('CONTROLLER');
    expect(env.KAFKA_LISTENERS!.split(',')).toEqual(expect.arrayContaining(['CONTROLLER://:9093', 'PLAINTEXT://:9092']));
    // Clients outside the container connect to what the broker advertises: the published port.
    expect(env.KAFKA_ADVERTISED_LISTENERS).toBe('PLAINTEXT://localhost:9092');
    // With the default of 3, consumer groups (the materializer's) never get an offsets topic on one node.
    expect(env.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR).toBe('1');
    expect(env.KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR).toBe('1');
  });

  it('the CLI defaults to the published Kafka and Redis ports', () => {
    const saved = { KAFKA_BROKERS: process.env.KAFKA_BROKERS, REDIS_URL: process.env.REDIS_URL };
    delete process.env.KAFKA_BROKERS;
    delete process.env.REDIS_URL;
    let program: ReturnType<typeof buildCli>;
    try {
      program = buildCli();
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
    const defaultOf = (command: string, flag: string): string => {
      const option = program.commands.find((c) => c.name() === command)?.options.find((o) => o.long === flag);
      expect(option, `tidemark ${command} ${flag}`).toBeDefined();
      return String(option!.defaultValue);
    };
    expect(portOwner.get(localPort(defaultOf('materialize', '--kafka-brokers'))!)).toBe('kafka');
    expect(portOwner.get(localPort(defaultOf('materialize', '--redis-url'))!)).toBe('redis');
    expect(portOwner.get(localPort(defaultOf('serve', '--redis-url'))!)).toBe('redis');
  });

  it("the README's services-mode commands and URLs name the services and ports of the file", () => {
    // The section on the file: `docker compose up` and the variables it exports.
    expect(readme).toMatch(/docker compose up\b/);
    expect(readme).toContain('[docker-compose.yml](docker-compose.yml)');
    for (const name of Object.keys(services)) expect(readme, `the README names the service ${name}`).toContain(`\`${name}\``);
    const kinds = [
      { service: 'kafka', values: readmeValues('--kafka-brokers', 'KAFKA_BROKERS') },
      { service: 'redis', values: readmeValues('--redis-url', 'REDIS_URL') },
      { service: 'clickhouse', values: readmeValues('--clickhouse-url', 'CLICKHOUSE_URL') },
    ];
    for (const { service, values } of kinds) {
      const local = values.flatMap((v) => v.split(',')).map(localPort).filter((p): p is number => p !== null);
      expect(local.length, `the README gives ${service} a local address`).toBeGreaterThan(0);
      for (const port of local) expect(portOwner.get(port), `the README's ${service} port ${port}`).toBe(service);
    }
  });
});
