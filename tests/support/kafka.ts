// A Kafka-protocol broker for the tests: librdkafka's built-in mock cluster, hosted by
// tests/support/kafka-mock/mock_cluster.c (built here with gcc against librdkafka-dev, cached under
// node_modules/.cache/tidemark/ by a hash of its source). kafkajs talks to it like to Kafka.
// Where KAFKA_BROKERS is set, tests use that cluster instead (topics are then created with the
// admin API, and broker control is unavailable: `controllable` is false).
//
// The mock's limits (librdkafka 2.0.2; ARCHITECTURE.md, "Real services in tests"): a partition
// keeps at most 5 MB; a consumer group's members must start together (a follower whose SyncGroup
// arrives after the leader's never joins); the CreateTopics admin API is not supported (use
// createTopic here, which goes through the mock's own API).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { inject } from 'vitest';
import { captureOutput, exited, requireExecutable, requireFile, ServiceUnavailableError } from './services.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const MOCK_SOURCE = join(HERE, 'kafka-mock', 'mock_cluster.c');
const REPO_ROOT = join(HERE, '..', '..');
const KAFKA_ALTERNATIVE = 'set KAFKA_BROKERS to a Kafka cluster you run (broker fault tests then cannot run)';

export interface KafkaCluster {
  /** Bootstrap servers, comma-separated (what KAFKA_BROKERS holds). */
  bootstrap: string;
  /** The same, as a list (kafkajs `brokers`). */
  brokers: string[];
  /**
   * Whether brokerDown/brokerUp work: true for the mock cluster, false for an external cluster
   * named by KAFKA_BROKERS, where they throw.
   */
  controllable: boolean;
  /** Create a topic with `partitions` partitions (replication factor 1). */
  createTopic(name: string, partitions: number): Promise<void>;
  /** Disconnect broker `id` (1-based) and refuse new connections; its partitions lose their leader (no leader change). */
  brokerDown(id: number): Promise<void>;
  /** Let broker `id` accept connections again. */
  brokerUp(id: number): Promise<void>;
  /** Stop the cluster (a no-op for an external or shared one). */
  stop(): Promise<void>;
}

/** Build mock_cluster.c when the cached binary for its current source is missing; returns its path. */
export function buildMockCluster(): string {
  const source = readFileSync(MOCK_SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const cacheDir = join(REPO_ROOT, 'node_modules', '.cache', 'tidemark');
  const binary = join(cacheDir, `mock_cluster-${hash}`);
  if (existsSync(binary)) return binary;
  requireExecutable('gcc', 'gcc', KAFKA_ALTERNATIVE);
  requireFile('/usr/include/librdkafka/rdkafka_mock.h', 'librdkafka-dev', KAFKA_ALTERNATIVE);
  mkdirSync(cacheDir, { recursive: true });
  // Build beside the target and rename: concurrent builds never see a half-written binary.
  const partial = `${binary}.${process.pid}.partial`;
  const result = spawnSync('gcc', ['-O2', '-Wall', '-o', partial, MOCK_SOURCE, '-lrdkafka'], { encoding: 'utf8' });
  if (result.status !== 0) {
    rmSync(partial, { force: true });
    throw new ServiceUnavailableError(`building ${MOCK_SOURCE} failed (gcc exit ${result.status}):\n${result.stderr}${result.error ? String(result.error) : ''}`);
  }
  renameSync(partial, binary);
  return binary;
}

/** Sends one command line at a time and resolves with the answer line. */
class LineChannel {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly waiting: ((line: string) => void)[] = [];

  constructor(
    private readonly write: (line: string) => void,
    onLine: (listener: (line: string) => void) => void,
  ) {
    onLine((line) => this.waiting.shift()?.(line));
  }

  /** The next line received (the bootstrap address of the mock). */
  nextLine(): Promise<string> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  send(command: string): Promise<string> {
    const result = this.queue.then(() => {
      const answer = this.nextLine();
      this.write(`${command}\n`);
      return answer;
    });
    this.queue = result.catch(() => undefined);
    return result;
  }
}

function checkAnswer(command: string, answer: string): void {
  if (answer !== 'ok') throw new Error(`mock Kafka cluster: ${command}: ${answer}`);
}

function validTopicCommand(name: string, partitions: number): string {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(name)) throw new Error(`bad topic name ${JSON.stringify(name)}`);
  if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`bad partition count ${partitions}`);
  return `topic ${name} ${partitions}`;
}

/** A private mock cluster of `brokers` brokers (ids 1..brokers), owned by this process. */
export async function startMockKafka(options: { brokers?: number } = {}): Promise<KafkaCluster & { command(line: string): Promise<string> }> {
  const binary = buildMockCluster();
  const child: ChildProcess = spawn(binary, [String(options.brokers ?? 3)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const output = captureOutput(child);
  const lines = createInterface({ input: child.stdout! });
  const channel = new LineChannel(
    (line) => child.stdin!.write(line),
    (listener) => lines.on('line', listener),
  );
  const failed = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`mock Kafka cluster exited (${code ?? signal}):\n${output()}`)));
  });
  failed.catch(() => undefined);
  const bootstrap = await Promise.race([channel.nextLine(), failed]);
  if (!/^[^\s,]+:\d+(,[^\s,]+:\d+)*$/.test(bootstrap)) {
    child.kill('SIGKILL');
    throw new Error(`mock Kafka cluster printed no bootstrap address: ${bootstrap}\n${output()}`);
  }
  const command = async (line: string): Promise<string> => Promise.race([channel.send(line), failed]);
  return {
    bootstrap,
    brokers: bootstrap.split(','),
    controllable: true,
    command,
    async createTopic(name, partitions) {
      const line = validTopicCommand(name, partitions);
      checkAnswer(line, await command(line));
    },
    async brokerDown(id) {
      checkAnswer(`down ${id}`, await command(`down ${id}`));
    },
    async brokerUp(id) {
      checkAnswer(`up ${id}`, await command(`up ${id}`));
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = exited(child);
      child.stdin!.end('quit\n');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await done;
      clearTimeout(timer);
    },
  };
}

/**
 * Serve a mock cluster's command channel on a loopback port, so test files (which vitest runs in
 * worker processes) can create topics on the cluster the global setup owns. One command line in,
 * one answer line out.
 */
export async function serveMockControl(mock: { command(line: string): Promise<string> }): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const lines = createInterface({ input: socket });
    lines.on('line', (line) => {
      // quit is the owner's to send
      const answer = line.trim() === 'quit' ? Promise.resolve('error quit is not allowed over the control channel') : mock.command(line);
      answer.then(
        (a) => socket.write(`${a}\n`),
        (e: unknown) => socket.write(`error ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`),
      );
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('control server has no address');
  return {
    address: `127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** The mock cluster of the global setup, controlled over its control channel; stop() is a no-op. */
export async function connectMockKafka(bootstrap: string, controlAddress: string): Promise<KafkaCluster> {
  const [host, port] = [controlAddress.slice(0, controlAddress.lastIndexOf(':')), Number(controlAddress.slice(controlAddress.lastIndexOf(':') + 1))];
  const socket = connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.unref();
  const lines = createInterface({ input: socket });
  const channel = new LineChannel(
    (line) => socket.write(line),
    (listener) => lines.on('line', listener),
  );
  const run = async (line: string): Promise<void> => checkAnswer(line, await channel.send(line));
  return {
    bootstrap,
    brokers: bootstrap.split(','),
    controllable: true,
    createTopic: (name, partitions) => run(validTopicCommand(name, partitions)),
    brokerDown: (id) => run(`down ${id}`),
    brokerUp: (id) => run(`up ${id}`),
    async stop() {
      socket.destroy();
    },
  };
}

/** A cluster named by KAFKA_BROKERS: topics through the admin API; no broker control. */
export function externalKafka(bootstrap: string): KafkaCluster {
  const brokers = bootstrap.split(',').map((b) => b.trim()).filter((b) => b.length > 0);
  const unavailable = (): Promise<void> =>
    Promise.reject(new Error(`broker control is unavailable against KAFKA_BROKERS=${bootstrap}; unset it to run the broker fault tests on the mock cluster`));
  return {
    bootstrap,
    brokers,
    controllable: false,
    async createTopic(name, partitions) {
      const admin = new Kafka({ clientId: 'tidemark-tests', brokers, logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      try {
        await admin.createTopics({ topics: [{ topic: name, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
      } finally {
        await admin.disconnect();
      }
    },
    brokerDown: unavailable,
    brokerUp: unavailable,
    async stop() {},
  };
}

/**
 * In a test file: the run's Kafka (KAFKA_BROKERS, or the global setup's mock cluster). It is
 * shared by every test file of the run: take broker control (brokerDown/brokerUp) only on a
 * private cluster from startMockKafka(), or every other file's clients see the fault too.
 */
export async function testKafka(): Promise<KafkaCluster> {
  const control = inject('kafkaControl');
  const bootstrap = inject('kafkaBootstrap');
  return control === null ? externalKafka(bootstrap) : connectMockKafka(bootstrap, control);
}
