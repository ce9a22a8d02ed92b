// Real Redis for the tests: a `redis-server` (Debian package redis-server) on a free loopback port
// in a temporary directory, and a Redis Cluster of three masters made of three of them with
// `redis-cli --cluster create`. Where REDIS_URL (single) or REDIS_CLUSTER_NODES (comma-separated
// host:port seeds of a cluster) are set, tests use those instead and start nothing.
// No Docker engine runs on this project's machines; see ARCHITECTURE.md, "Real services in tests".
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { captureOutput, exited, freeLoopbackPort, requireExecutable, sleep, spawnTethered, stopTethered } from './services.js';

export interface RedisServer {
  host: string;
  port: number;
  /** redis://host:port */
  url: string;
  /** Data directory (removed by stop()). */
  dir: string;
  /** Stop the server (SIGTERM: with persistence it saves first) and, unless told to keep it, its directory. */
  stop(options?: { keepDir?: boolean }): Promise<void>;
  /** Stop and start again on the same port and directory (with persistence the data survives). */
  restart(): Promise<void>;
}

export interface RedisServerOptions {
  /** 'aof': append-only file, fsync every write, so a restart keeps every acknowledged write. Default 'none'. */
  persistence?: 'none' | 'aof';
  /** Start as a Redis Cluster node (cluster-enabled yes), its cluster bus on another free port. */
  cluster?: boolean;
}

export interface RedisCluster {
  /** The masters, as seeds for a cluster client. */
  nodes: { host: string; port: number }[];
  stop(): Promise<void>;
}

const REDIS_ALTERNATIVE = 'set REDIS_URL (and REDIS_CLUSTER_NODES for the cluster tests) to servers you run';

function requireRedisServer(): void {
  requireExecutable('redis-server', 'redis-server', REDIS_ALTERNATIVE);
  requireExecutable('redis-cli', 'redis-server', REDIS_ALTERNATIVE);
}

/** Send PING over a raw socket; true when the server answers +PONG. */
export function pingRedis(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let reply = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
  });
}

function serverArgs(port: number, busPort: number | null, dir: string, options: RedisServerOptions): string[] {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no', '--save', ''];
  args.push('--protected-mode', 'no', '--loglevel', 'warning');
  if (options.persistence === 'aof') args.push('--appendonly', 'yes', '--appendfsync', 'always');
  else args.push('--appendonly', 'no');
  if (busPort !== null) {
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '5000');
    args.push('--cluster-port', String(busPort));
  }
  return args;
}

/** Start redis-server on `port` and wait until it answers PING. */
async function launch(port: number, busPort: number | null, dir: string, options: RedisServerOptions): Promise<ChildProcess> {
  const child = spawnTethered('redis-server', serverArgs(port, busPort, dir, options), dir);
  const output = captureOutput(child);
  const exit = exited(child);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await exit;
      throw new Error(`redis-server on port ${port} exited during start-up:\n${output()}`);
    }
    if (await pingRedis('127.0.0.1', port, 500)) return child;
    await sleep(20);
  }
  await stopTethered(child);
  throw new Error(`redis-server on port ${port} did not answer PING within 15 s:\n${output()}`);
}

/** Start a redis-server on a free loopback port in a fresh temporary directory. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  requireRedisServer();
  const dir = await mkdtemp(join(tmpdir(), 'tidemark-redis-'));
  let port = 0;
  let busPort: number | null = null;
  let child: ChildProcess | null = null;
  // A port found free may be taken before redis binds it: try a few.
  for (let attempt = 1; child === null; attempt++) {
    port = await freeLoopbackPort();
    busPort = options.cluster ? await freeLoopbackPort() : null;
    try {
      if (busPort === port) throw new Error(`redis-server: client and cluster bus port both ${port}`);
      child = await launch(port, busPort, dir, options);
    } catch (e) {
      if (attempt >= 3) {
        await rm(dir, { recursive: true, force: true });
        throw e;
      }
    }
  }
  let current: ChildProcess = child;
  return {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    async stop(stopOptions = {}) {
      await stopTethered(current);
      if (!stopOptions.keepDir) await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      await stopTethered(current);
      current = await launch(port, busPort, dir, options);
    },
  };
}

/** Run redis-cli with arguments; resolves with its stdout, rejects with its output on failure. */
function redisCli(args: readonly string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`redis-cli ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

/**
 * A Redis Cluster of `masters` masters and no replicas, each a redis-server on free loopback ports
 * (client port and cluster bus port), joined by `redis-cli --cluster create --cluster-yes`.
 * Resolves once every node reports cluster_state:ok.
 */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  requireRedisServer();
  const servers: RedisServer[] = [];
  try {
    const started = await Promise.allSettled(Array.from({ length: masters }, () => startRedisServer({ cluster: true })));
    for (const s of started) if (s.status === 'fulfilled') servers.push(s.value);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    await redisCli(['--cluster', 'create', ...servers.map((s) => `${s.host}:${s.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    const deadline = Date.now() + 30_000;
    for (const s of servers) {
      for (;;) {
        const info = await redisCli(['-h', s.host, '-p', String(s.port), 'cluster', 'info']);
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error(`Redis Cluster node ${s.host}:${s.port} not ok after 30 s:\n${info}`);
        await sleep(50);
      }
    }
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop()));
    throw e;
  }
  return {
    nodes: servers.map((s) => ({ host: s.host, port: s.port })),
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/** Parse REDIS_CLUSTER_NODES (`host:port,host:port`). */
export function parseClusterNodes(text: string): { host: string; port: number }[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const i = s.lastIndexOf(':');
      const port = Number(s.slice(i + 1));
      if (i <= 0 || !Number.isInteger(port)) throw new Error(`REDIS_CLUSTER_NODES: expected host:port, got ${s}`);
      return { host: s.slice(0, i), port };
    });
}

/** In a test file: the run's single Redis (REDIS_URL, or the global setup's redis-server). */
export function testRedisUrl(): string {
  return inject('redisUrl');
}

/** In a test file: the run's Redis Cluster seeds (REDIS_CLUSTER_NODES, or the global setup's cluster). */
export function testRedisClusterNodes(): { host: string; port: number }[] {
  return parseClusterNodes(inject('redisClusterNodes'));
}
