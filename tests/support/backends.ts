// Where each service of a test run comes from. The order, per service: an explicit variable
// (KAFKA_BROKERS, REDIS_URL, REDIS_CLUSTER_NODES, CLICKHOUSE_URL) names a running service; else,
// where a container runtime answers, testcontainers starts a real image (Kafka, Redis, ClickHouse);
// else the local processes (librdkafka's mock Kafka cluster, redis-server, and for ClickHouse the
// chDB HTTP fixture each test file starts). The Redis Cluster has no container here (no official
// module runs one whose nodes a client on the host can reach), so it is a variable or local.
//
// chooseBackends is pure (environment and probe result in, one backend per service out) so the
// order is unit-tested; probeContainerRuntime asks testcontainers' own client, bounded by a timeout.
// `docker` on PATH proves nothing: these machines have the client without an engine.

export type ServiceName = 'kafka' | 'redis' | 'redisCluster' | 'clickhouse';

export type Backend =
  /** A running service named by a variable; `value` is what the variable holds. */
  | { kind: 'env'; variable: string; value: string }
  /** A container started with testcontainers. */
  | { kind: 'container' }
  /** A local process (or, for ClickHouse, the chDB fixture of each test file). */
  | { kind: 'local' };

export type Backends = Record<ServiceName, Backend>;

/** The variable that names a running service, per service. */
export const SERVICE_VARIABLES: Record<ServiceName, string> = {
  kafka: 'KAFKA_BROKERS',
  redis: 'REDIS_URL',
  redisCluster: 'REDIS_CLUSTER_NODES',
  clickhouse: 'CLICKHOUSE_URL',
};

/** Services testcontainers can start. */
const CONTAINERIZED: ReadonlySet<ServiceName> = new Set(['kafka', 'redis', 'clickhouse']);

/** Set to 0 (or false, off, no) to keep to local processes even where a container runtime answers. */
export const CONTAINERS_VARIABLE = 'TIDEMARK_TEST_CONTAINERS';

function containersDisabled(env: Readonly<Record<string, string | undefined>>): boolean {
  return /^(0|false|off|no)$/i.test(env[CONTAINERS_VARIABLE]?.trim() ?? '');
}

/** Whether chooseBackends would use a container runtime if one answered: only then is it worth probing. */
export function wantsContainerRuntime(env: Readonly<Record<string, string | undefined>>): boolean {
  if (containersDisabled(env)) return false;
  return [...CONTAINERIZED].some((s) => !env[SERVICE_VARIABLES[s]]?.trim());
}

/** The backend of each service, from the environment and whether a container runtime answered. */
export function chooseBackends(env: Readonly<Record<string, string | undefined>>, runtimeAvailable: boolean): Backends {
  const useContainers = runtimeAvailable && !containersDisabled(env);
  const choose = (service: ServiceName): Backend => {
    const variable = SERVICE_VARIABLES[service];
    const value = env[variable]?.trim();
    if (value) return { kind: 'env', variable, value };
    if (useContainers && CONTAINERIZED.has(service)) return { kind: 'container' };
    return { kind: 'local' };
  };
  return { kafka: choose('kafka'), redis: choose('redis'), redisCluster: choose('redisCluster'), clickhouse: choose('clickhouse') };
}

const LOCAL: Record<ServiceName, string> = {
  kafka: "librdkafka's mock Kafka cluster (3 brokers, local process)",
  redis: 'redis-server (local process)',
  redisCluster: 'three redis-server processes joined as a Redis Cluster',
  clickhouse: 'the chDB HTTP fixture, started by each test file that needs a server (no ClickHouse server)',
};
const CONTAINER: Record<ServiceName, string> = {
  kafka: 'Kafka in a container (testcontainers)',
  redis: 'Redis in a container (testcontainers)',
  redisCluster: '',
  clickhouse: 'ClickHouse server in a container (testcontainers)',
};

/** Hide a URL's password in what is printed. */
function redact(value: string): string {
  return value.replace(/(\/\/[^:/@\s]*:)[^@/\s]*@/g, '$1***@');
}

/** One line per service saying where it came from, for the start of the run. */
export function describeBackends(backends: Backends, runtime: string, details: Partial<Record<ServiceName, string>> = {}): string {
  const lines = (Object.keys(SERVICE_VARIABLES) as ServiceName[]).map((service) => {
    const b = backends[service];
    const what = b.kind === 'env' ? `${b.variable}=${redact(b.value)}` : b.kind === 'container' ? CONTAINER[service] : LOCAL[service];
    const detail = details[service] ? ` at ${redact(details[service]!)}` : '';
    return `  ${service.padEnd(12)} ${b.kind.padEnd(9)} ${what}${detail}`;
  });
  return [`test services (container runtime: ${runtime}):`, ...lines].join('\n');
}

/**
 * Whether a container runtime answers, asked with testcontainers' own client (it tries DOCKER_HOST,
 * ~/.testcontainers.properties, the Docker and rootless sockets, and pings the engine). Gives up
 * after `timeoutMs` so a socket or host that never answers cannot hang the run. `reason` says why
 * not, for the start-of-run line.
 */
export async function probeContainerRuntime(timeoutMs = 3000): Promise<{ available: boolean; reason: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<{ available: boolean; reason: string }>((resolve) => {
    timer = setTimeout(() => resolve({ available: false, reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
    timer.unref();
  });
  const probe = (async () => {
    try {
      const { getContainerRuntimeClient } = await import('testcontainers');
      const client = await getContainerRuntimeClient();
      const info = client.info.containerRuntime;
      return { available: true, reason: `${info.operatingSystem} ${info.serverVersion} at ${info.host}` };
    } catch (e) {
      return { available: false, reason: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
    }
  })();
  try {
    return await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
