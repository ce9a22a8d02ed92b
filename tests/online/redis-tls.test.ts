// Issue 12, part 2: the Redis online store over TLS (rediss://) with an ACL user, against a real
// redis-server started here with a throwaway CA (tests/support/tls.ts); and the password kept out of
// errors, logs and the process title of the CLI.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, loadDefinitions, TidemarkError, withoutPassword, type CompiledDefinitions } from '../../definitions/index.js';
import { TileBatchBuilder } from '../../ingest/index.js';
import { createRedisClient, MemoryOnlineStore, OnlineFeatureService, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { readRedisState } from '../../api/plan.js';
import { redisConnectionOf } from '../../api/connections.js';
import { decodeAll } from '../definitions/support.js';
import { makeTestCertificates, startTlsRedisCluster, startTlsRedisServer, type TestCertificates, type TlsRedisServer } from '../support/tls.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const T0 = Date.UTC(2026, 0, 1);
const USER = 'alice';
const PASSWORD = 'secret-tls-pw-8d1f';

/** Start `tidemark serve` with `url`; run `check` with its address and output so far; stop it; return all it wrote. */
async function withServe(url: string, ca: string, until: RegExp, check: (address: string, pid: number, out: () => string) => Promise<void>): Promise<string> {
  const child = spawn(process.execPath, [BIN, 'serve', '--definitions', 'tests/fixtures/plan/base', '--redis-url', url, '--redis-ca', ca, '--port', '0', '--prefix', `serve-${process.pid}`], { cwd: ROOT });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  try {
    const deadline = Date.now() + 60_000;
    while (!(until.test(out) && /on (http:\/\/\S+)/.test(out)) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    const address = /on (http:\/\/\S+)/.exec(out)?.[1];
    expect(address, out).toBeDefined();
    expect(out).toMatch(until);
    await check(address!, child.pid!, () => out);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  return out;
}

describe('Redis over TLS with an ACL user (a real redis-server with --tls-port)', () => {
  let certs: TestCertificates;
  let server: TlsRedisServer;
  let compiled: CompiledDefinitions;
  const clients: RedisClient[] = [];

  beforeAll(async () => {
    certs = makeTestCertificates();
    server = await startTlsRedisServer(certs, USER, PASSWORD);
    compiled = compileOrThrow((await loadDefinitions(join(ROOT, 'tests/fixtures/plan/base'))).module);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
    certs?.remove();
  });

  it('applies and reads through rediss:// with the CA and the ACL user, as the in-memory store does', async () => {
    const client = createRedisClient(server.url, {}, { ca: certs.ca, username: USER, password: PASSWORD });
    clients.push(client);
    const prefix = `tls-${process.pid}`;
    const store = new RedisOnlineStore(compiled.registry, client, { prefix });
    const memory = new MemoryOnlineStore(compiled.registry);
    const raw = [
      { ts: T0, user: 'a', amount: 1 },
      { ts: T0 + 60_000, user: 'b', amount: 2 },
      { ts: T0 + 120_000, user: 'a', amount: 3 },
    ];
    const batch = new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, raw, 'clicks'));
    await store.apply(batch);
    await memory.apply(batch);
    const request = { features: ['user_clicks:clicks_1h', 'user_clicks:amount_sum_1d', 'user_last:last_amount'], entities: { user: ['a', 'b', 'c'] }, at: T0 + 180_000 };
    const fromRedis = await new OnlineFeatureService(compiled.registry, store, 'wall').getOnlineFeatures(request);
    const fromMemory = await new OnlineFeatureService(compiled.registry, memory, 'wall').getOnlineFeatures(request);
    expect(fromRedis.response).toEqual(fromMemory.response);
    // Feast layout: results[0] the join keys, results[1] clicks_1h of a, b, c
    expect(fromRedis.response.results[1]!.values.slice(0, 2)).toEqual([2, 1]);
    expect((await store.stats()).keys).toEqual({ user_clicks: 2, user_last: 2 });
    // the connection really is TLS: the server has no plaintext port at all
    expect(await client.ping()).toBe('PONG');
  });

  it('a Redis Cluster over TLS (rediss-cluster://, three masters with tls-cluster) with the ACL user in the URL: applies and reads', async () => {
    const cluster = await startTlsRedisCluster(certs, USER, PASSWORD);
    const client = createRedisClient(cluster.url.replace('rediss-cluster://', `rediss-cluster://${USER}:${PASSWORD}@`), {}, { ca: certs.ca });
    try {
      const store = new RedisOnlineStore(compiled.registry, client, { prefix: `tls-cluster-${process.pid}` });
      const raw = Array.from({ length: 40 }, (_, i) => ({ ts: T0 + i * 1_000, user: `u${i % 10}`, amount: i }));
      const batch = new TileBatchBuilder(compiled.registry).build(decodeAll(compiled, raw, 'clicks'));
      await store.apply(batch);
      const memory = new MemoryOnlineStore(compiled.registry);
      await memory.apply(batch);
      const request = { features: ['user_clicks:clicks_1h', 'user_last:last_amount'], entities: { user: Array.from({ length: 10 }, (_, i) => `u${i}`) }, at: T0 + 60_000 };
      const fromCluster = await new OnlineFeatureService(compiled.registry, store, 'wall').getOnlineFeatures(request);
      expect(fromCluster.response).toEqual((await new OnlineFeatureService(compiled.registry, memory, 'wall').getOnlineFeatures(request)).response);
      expect(fromCluster.response.results[1]!.values).toEqual(Array(10).fill(4));
      // the keys are spread over the three masters, each reached over TLS
      const perNode = await Promise.all((client as import('ioredis').Cluster).nodes('master').map((n) => n.dbsize()));
      expect(perNode.filter((n) => n > 0).length).toBeGreaterThan(1);
    } finally {
      client.disconnect();
      await cluster.stop();
    }
  }, 90_000);

  it('the user and password may come in the URL instead', async () => {
    const client = createRedisClient(`rediss://${USER}:${PASSWORD}@127.0.0.1:${server.port}`, {}, { ca: certs.ca });
    clients.push(client);
    expect(await client.ping()).toBe('PONG');
    expect(await client.acl('WHOAMI')).toBe(USER);
  });

  it('a CA that did not sign the certificate: TM_STORE_TLS, naming the certificate problem and --redis-ca', async () => {
    const error = await readRedisState(server.url, 'tm', 3_000, { ca: readFileSync(certs.otherCaFile), username: USER, password: PASSWORD }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TidemarkError);
    expect((error as TidemarkError).code).toBe('TM_STORE_TLS');
    expect((error as TidemarkError).message).toMatch(/certificate/i);
    expect((error as TidemarkError).message).toContain('--redis-ca');
    expect(JSON.stringify(error)).not.toContain(PASSWORD);
  });

  it('no CA at all (the system CAs do not know the test CA): TM_STORE_TLS', async () => {
    const error = await readRedisState(server.url, 'tm', 3_000, { username: USER, password: PASSWORD }).catch((e: unknown) => e);
    expect((error as TidemarkError).code).toBe('TM_STORE_TLS');
  });

  it('a wrong password: TM_STORE_AUTH, and the password is in neither the message nor the details', async () => {
    const wrong = 'not-the-pw-77a2';
    const url = `rediss://${USER}:${wrong}@127.0.0.1:${server.port}`;
    const error = await readRedisState(url, 'tm', 3_000, { ca: certs.ca }).catch((e: unknown) => e);
    expect((error as TidemarkError).code).toBe('TM_STORE_AUTH');
    expect((error as TidemarkError).message).toMatch(/WRONGPASS|refused the credentials/);
    const text = `${(error as Error).message} ${JSON.stringify(error)}`;
    expect(text).not.toContain(wrong);
    expect(text).toContain(`rediss://${USER}:***@127.0.0.1`);
  });

  it('the default user is off on this server: no credentials is TM_STORE_AUTH too', async () => {
    const error = await readRedisState(server.url, 'tm', 3_000, { ca: certs.ca }).catch((e: unknown) => e);
    expect((error as TidemarkError).code).toBe('TM_STORE_AUTH');
  });

  it('a CA file given with a redis:// URL is refused (the connection would not be TLS)', () => {
    expect(() => createRedisClient(`redis://127.0.0.1:${server.port}`, {}, { ca: certs.ca })).toThrow(/not a TLS URL: use rediss:\/\//);
  });

  it('withoutPassword hides the password of every URL form tidemark takes', () => {
    expect(withoutPassword('redis://u:p@h:1')).toBe('redis://u:***@h:1');
    expect(withoutPassword('rediss://:p@h:1/0')).toBe('rediss://:***@h:1/0');
    expect(withoutPassword('redis-cluster://u:p%40x@h1:1,h2:2')).toBe('redis-cluster://u:***@h1:1,h2:2');
    expect(withoutPassword('rediss-cluster://u:p@ss@h1:1,h2:2')).toBe('rediss-cluster://u:***@h1:1,h2:2');
    expect(withoutPassword('https://default:pw@ch:8443/?password=pw2&x=1')).toBe('https://default:***@ch:8443/?password=***&x=1');
    expect(withoutPassword('redis://h:1')).toBe('redis://h:1');
    expect(withoutPassword('redis://user@h:1')).toBe('redis://user@h:1');
  });

  it('--redis-password-file and REDIS_PASSWORD: read, trailing newline dropped; a missing file is TM_SERVICE_CONFIG naming it', () => {
    const file = join(certs.dir, 'redis-password');
    writeFileSync(file, `${PASSWORD}\n`);
    expect(redisConnectionOf({ redisPasswordFile: file, redisUser: USER, redisCa: certs.caFile }, {})).toEqual({ ca: certs.ca, username: USER, password: PASSWORD });
    expect(redisConnectionOf({}, { REDIS_PASSWORD: 'from-env', REDIS_USER: 'bob' })).toEqual({ username: 'bob', password: 'from-env' });
    const missing = join(certs.dir, 'nope');
    let error: unknown;
    try {
      redisConnectionOf({ redisPasswordFile: missing }, {});
    } catch (e) {
      error = e;
    }
    expect((error as TidemarkError).code).toBe('TM_SERVICE_CONFIG');
    expect((error as TidemarkError).message).toContain(missing);
    expect((error as TidemarkError).message).toContain('ENOENT');
  });

  describe('the CLI never shows the password', () => {
    it('tidemark plan with the password in --redis-url: not in stdout, stderr or the JSON error (a wrong CA, then the right one)', () => {
      const url = `rediss://${USER}:${PASSWORD}@127.0.0.1:${server.port}`;
      for (const [ca, code] of [[certs.otherCaFile, 'TM_STORE_TLS'], [certs.caFile, null]] as const) {
        for (const json of [false, true]) {
          const res = spawnSync(process.execPath, [BIN, 'plan', '--definitions', 'tests/fixtures/plan/base', '--redis-url', url, '--redis-ca', ca, '--timeout', '3000', '--prefix', `cli-${process.pid}`, ...(json ? ['--json'] : [])], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
          const all = `${res.stdout}\n${res.stderr}`;
          expect(all).not.toContain(PASSWORD);
          expect(all).not.toContain('secret');
          if (code) {
            expect(res.status).toBe(1);
            expect(all).toContain(code);
          } else {
            // the right CA and password: the plan runs (everything new in an empty prefix)
            expect(res.status).toBe(2);
            expect(all).toContain(`rediss://${USER}:***@127.0.0.1:${server.port}`);
          }
        }
      }
    }, 120_000);

    it('tidemark serve --help with REDIS_URL holding a password: the default shown without it', () => {
      const res = spawnSync(process.execPath, [BIN, 'serve', '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, REDIS_URL: `rediss://${USER}:${PASSWORD}@redis.internal:6380` } });
      expect(res.stdout).toContain(`rediss://${USER}:***@redis.internal:6380`);
      expect(res.stdout + res.stderr).not.toContain(PASSWORD);
    }, 60_000);

    it('tidemark plan with a wrong password from --redis-password-file: TM_STORE_AUTH, the file content nowhere', () => {
      const file = join(certs.dir, 'wrong-password');
      writeFileSync(file, 'secret-but-wrong\n');
      const res = spawnSync(process.execPath, [BIN, 'plan', '--definitions', 'tests/fixtures/plan/base', '--redis-url', server.url, '--redis-user', USER, '--redis-password-file', file, '--redis-ca', certs.caFile, '--timeout', '3000'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(res.status).toBe(1);
      expect(res.stderr).toContain('TM_STORE_AUTH');
      expect(`${res.stdout}${res.stderr}`).not.toContain('secret');
    }, 60_000);

    it('tidemark serve: the process title, the start-up line, the logs, /healthz and /registry hide the password', async () => {
      const url = `rediss://${USER}:${PASSWORD}@127.0.0.1:${server.port}`;
      const out = await withServe(url, certs.caFile, /serving online features/, async (address, pid, output) => {
        // bin/tidemark.mjs runs main() in this process: its command line is the one ps shows
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        expect(cmdline).toContain(`rediss://${USER}:***@127.0.0.1`);
        expect(cmdline).not.toContain(PASSWORD);
        const health = await (await fetch(`${address}/healthz`)).text();
        expect(health).toContain('"redis":"ready"');
        expect(health).not.toContain(PASSWORD);
        expect(await (await fetch(`${address}/registry`)).text()).not.toContain(PASSWORD);
        expect(output()).toContain(`rediss://${USER}:***@127.0.0.1`);
      });
      expect(out).not.toContain(PASSWORD);
    }, 90_000);

    it('tidemark serve with a wrong password: one coded TM_STORE_AUTH log line, /healthz degraded, the password nowhere', async () => {
      const wrong = 'secret-wrong-serve';
      const url = `rediss://${USER}:${wrong}@127.0.0.1:${server.port}`;
      const out = await withServe(url, certs.caFile, /TM_STORE_AUTH/, async (address) => {
        const res = await fetch(`${address}/healthz`);
        const health = await res.text();
        expect(health).toContain('degraded');
        expect(health).not.toContain(wrong);
      });
      expect(out).not.toContain(wrong);
      expect(out).toContain(`rediss://${USER}:***@127.0.0.1`);
      // once per outage, not once per reconnect attempt
      expect(out.match(/"code":"TM_STORE_AUTH"/g)).toHaveLength(1);
    }, 90_000);
  });
});
