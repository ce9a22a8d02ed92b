// Smoke tests of the Redis services the suite runs against (tests/support/redis.ts): the single
// redis-server answers, the three-master Redis Cluster routes a key to the master owning its slot,
// and the harness itself (restart with persistence, the install message when redis-server is missing).
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, Redis } from 'ioredis';
import { requireExecutable, ServiceUnavailableError } from '../support/services.js';
import { startRedisServer, testRedisClusterNodes, testRedisUrl } from '../support/redis.js';

const clients: (Redis | Cluster)[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.quit()));
});

describe('Redis services', () => {
  it('the single Redis answers PING', async () => {
    const redis = new Redis(testRedisUrl());
    clients.push(redis);
    expect(await redis.ping()).toBe('PONG');
  });

  it('the Redis Cluster has three masters covering every slot, and a key set through it lands on its slot owner and reads back', async () => {
    const cluster = new Cluster(testRedisClusterNodes());
    clients.push(cluster);
    const info = await cluster.cluster('INFO');
    expect(info).toContain('cluster_state:ok');
    expect(info).toContain('cluster_slots_assigned:16384');
    expect(info).toMatch(/cluster_size:3\b/);
    const key = `smoke:${process.pid}:${Date.now()}`;
    await cluster.set(key, 'value', 'EX', 60);
    expect(await cluster.get(key)).toBe('value');
    // Ask the owning master directly, without redirection.
    const slot = (await cluster.cluster('KEYSLOT', key)) as number;
    const owner = cluster.slots[slot]![0]!;
    const master = cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner)!;
    expect(await master.get(key)).toBe('value');
    const other = cluster.nodes('master').find((n) => n !== master)!;
    await expect(other.get(key)).rejects.toThrow(/MOVED/);
  });

  it('a private redis-server with append-only persistence keeps its data across a restart', async () => {
    const server = await startRedisServer({ persistence: 'aof' });
    try {
      const before = new Redis(server.url);
      await before.set('kept', 'yes');
      await before.quit();
      await server.restart();
      const after = new Redis(server.url);
      expect(await after.get('kept')).toBe('yes');
      await after.quit();
    } finally {
      await server.stop();
    }
  });

  it('a missing program fails with the exact install command, never a skip', () => {
    const error = (() => {
      try {
        requireExecutable('tidemark-no-such-program', 'tidemark-no-such-package');
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as Error).message).toContain('apt-get update && apt-get install -y tidemark-no-such-package');
  });
});
