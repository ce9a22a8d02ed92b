// The Redis backends of the shared store suite: a store per test on the run's redis-server or Redis
// Cluster (see tests/support/global-setup.ts), each under its own key prefix, so tests never see
// each other's keys and never flush a server (which may be one named by REDIS_URL).
import type { Socket } from 'node:net';
import { Cluster, type Redis } from 'ioredis';
import type { Registry } from '../../definitions/index.js';
import { RedisOnlineStore, type RedisClient } from '../../online/redis.js';
import type { OnlineStore } from '../../online/index.js';
import type { StoreBackend } from './store-suite.js';

let prefixes = 0;

/** A key prefix no other store of this test run uses. */
export function uniquePrefix(): string {
  return `test-${process.pid}-${Date.now().toString(36)}-${++prefixes}`;
}

/**
 * Round trips of `op` on each connection of a client: a round trip is a run of writes to the
 * socket followed by the replies; a write after a reply starts the next. Returns the most on any
 * one connection (a Cluster has one per node, used in parallel).
 */
export async function countRoundTrips(client: RedisClient, op: () => Promise<unknown>): Promise<number> {
  const connections: Redis[] = client instanceof Cluster ? client.nodes() : [client];
  const taps = connections.map((c) => {
    const socket = (c as unknown as { stream: Socket }).stream;
    const events: ('write' | 'reply')[] = [];
    const write = socket.write;
    socket.write = function (this: Socket, ...args: unknown[]) {
      events.push('write');
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as Socket['write'];
    const onData = (): void => {
      events.push('reply');
    };
    socket.on('data', onData);
    return {
      events,
      restore: () => {
        socket.write = write;
        socket.off('data', onData);
      },
    };
  });
  try {
    await op();
  } finally {
    for (const t of taps) t.restore();
  }
  return Math.max(0, ...taps.map((t) => t.events.filter((e, i) => e === 'write' && (i === 0 || t.events[i - 1] === 'reply')).length));
}

export function redisBackend(name: string, client: RedisClient): StoreBackend {
  return {
    name,
    create: (registry: Registry) => new RedisOnlineStore(registry, client, { prefix: uniquePrefix() }),
    roundTrips: (_store: OnlineStore, op) => countRoundTrips(client, op),
    fences: 'honoured',
  };
}

export function clusterUrl(nodes: readonly { host: string; port: number }[]): string {
  return `redis-cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
}
