// `tidemark plan`, run as a user runs it, against the run's redis-server: a small registry
// (tests/fixtures/plan/base) is materialized through the Redis store API (tiles applied, view
// snapshots recorded), then planned with the same, changed, reduced and broken definitions, an
// unreachable Redis, an unknown view and an offline store; the store must be left as it was.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, loadDefinitions, type CompiledDefinitions } from '../../definitions/index.js';
import { TileBatchBuilder } from '../../ingest/index.js';
import { createRedisClient, RedisOnlineStore, type RedisClient } from '../../online/index.js';
import { claimStreamVersions, readStoredRegistryState, viewSnapshotField } from '../../online/versions.js';
import type { PlanResult } from '../../api/plan.js';
import { decodeAll } from '../definitions/support.js';
import { testRedisClusterNodes, testRedisUrl } from '../support/redis.js';
import { clusterUrl } from '../online/redis-backends.js';
import { freeLoopbackPort } from '../support/services.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const FIXTURES = 'tests/fixtures/plan';
const T0 = Date.UTC(2026, 0, 1);

/** The environment of the CLI: without CLICKHOUSE_URL, so `--data-dir` names the offline store. */
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'CLICKHOUSE_URL'));

function tidemark(args: string[]) {
  const started = Date.now();
  const res = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 60_000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr, ms: Date.now() - started };
}

async function compileFixture(name: string): Promise<CompiledDefinitions> {
  return compileOrThrow((await loadDefinitions(join(ROOT, FIXTURES, name))).module);
}

/** Every key under the prefix with its serialized value (DUMP), sorted: equal dumps, equal store. */
async function dumpStore(client: RedisClient, prefix: string): Promise<[string, string][]> {
  const keys = (await client.keys(`${prefix}:*`)).sort();
  return Promise.all(keys.map(async (k): Promise<[string, string]> => [k, ((await client.dumpBuffer(k)) ?? Buffer.alloc(0)).toString('hex')]));
}

describe('tidemark plan against Redis', () => {
  const client = createRedisClient(testRedisUrl());
  const prefix = `plan-${process.pid}-${Date.now().toString(36)}`;
  const redis = ['--redis-url', testRedisUrl(), '--prefix', prefix];
  let before: [string, string][];

  beforeAll(async () => {
    const base = await compileFixture('base');
    const store = new RedisOnlineStore(base.registry, client, { prefix });
    const raw = [
      { ts: T0, user: 'a', amount: 1 },
      { ts: T0 + 60_000, user: 'b', amount: 2 },
      { ts: T0 + 7_200_000, user: 'a', amount: 3 },
    ];
    await store.apply(new TileBatchBuilder(base.registry).build(decodeAll(base, raw, 'clicks')));
    await claimStreamVersions(client, prefix, base.registry, T0 + 10_000_000);
    before = await dumpStore(client, prefix);
  });

  afterAll(async () => {
    await client.quit();
  });

  it('records a snapshot of each view beside its layout fingerprint, first writer wins', async () => {
    const state = await readStoredRegistryState(client, prefix);
    expect(Object.keys(state.snapshots).sort()).toEqual(['user_clicks', 'user_last']);
    expect(state.snapshots.user_clicks!.layout).toBe(state.layouts.user_clicks);
    expect(state.snapshots.user_clicks!.recordedAt).toBe(new Date(T0 + 10_000_000).toISOString());
    expect(state.snapshots.user_clicks!.view.features.map((f) => [f.name, f.windowMs])).toEqual([['clicks_1h', 3_600_000], ['amount_sum_1d', 86_400_000]]);
    expect(state.keys).toEqual({ user_clicks: 2, user_last: 2 });
    expect(state.watermarkMs).toBe(T0 + 7_200_000);
  });

  it('(a) the same definitions: every view unchanged, exit 0', () => {
    const { code, stdout, stderr } = tidemark(['plan', '--definitions', `${FIXTURES}/base`, ...redis]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toContain('view user_clicks: unchanged');
    expect(stdout).toContain('view user_last: unchanged');
    expect(stdout).toContain('stored: layout ');
    expect(stdout).toMatch(/plan: no changes \(2 unchanged\)\n$/);
  });

  it('(b) a new view and a changed window: new and changed, naming the window, needs bootstrap, exit 2', () => {
    const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, ...redis]);
    expect(code).toBe(2);
    expect(stdout).toContain('view user_amounts: new');
    expect(stdout).toContain('view user_clicks: changed');
    expect(stdout).toContain('feature changed: clicks_1h: window 1h -> 2h');
    expect(stdout).toContain('view user_last: unchanged');
    const clicks = stdout.slice(stdout.indexOf('view user_clicks'), stdout.indexOf('view user_last'));
    expect(clicks).toContain('needs bootstrap: yes');
    expect(clicks).toContain('2h windows (clicks_1h) would be empty at first and incomplete for 2h');
    expect(clicks).toMatch(/serving meanwhile: servers of the current definitions \(registry [0-9a-f]{16}\) keep serving the current version of user_clicks/);
    const amounts = stdout.slice(stdout.indexOf('view user_amounts'), stdout.indexOf('view user_clicks'));
    expect(amounts).toContain('needs bootstrap: yes');
    expect(amounts).toContain('7d windows (amount_mean_7d)');
    expect(amounts).toContain('answer 503 (not ready)');
    expect(stdout).toMatch(/plan: 1 new, 1 changed, 0 removed, 1 unchanged\n$/);
  });

  it('(c) a view no longer defined: removed, exit 2', () => {
    const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/removed`, ...redis]);
    expect(code).toBe(2);
    expect(stdout).toContain('view user_clicks: unchanged');
    expect(stdout).toMatch(/view user_last: removed\n {2}no longer defined \(recorded by registry [0-9a-f]{16}\)/);
    expect(stdout).toMatch(/plan: 0 new, 0 changed, 1 removed, 1 unchanged\n$/);
  });

  it('(d) --json gives the same result as JSON', () => {
    const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, ...redis, '--json']);
    expect(code).toBe(2);
    const plan = JSON.parse(stdout) as PlanResult;
    expect(plan.exitCode).toBe(2);
    expect(plan.changes).toBe(true);
    expect(plan.counts).toEqual({ unchanged: 1, new: 1, changed: 1, removed: 0 });
    expect(plan.online).toMatchObject({ kind: 'redis', prefix, watermark: new Date(T0 + 7_200_000).toISOString(), recorded: true });
    expect(plan.views.map((v) => [v.view, v.status, v.needsBootstrap])).toEqual([
      ['user_amounts', 'new', true],
      ['user_clicks', 'changed', true],
      ['user_last', 'unchanged', false],
    ]);
    const clicks = plan.views[1]!;
    expect(clicks.changes).toEqual({
      featuresAdded: [],
      featuresRemoved: [],
      featuresChanged: [{ feature: 'clicks_1h', changes: { window: { from: '1h', to: '2h' } } }],
      key: null,
      source: null,
      allowedLateness: null,
      layout: null,
      otherPlanDetails: false,
    });
    expect(clicks.stored).toMatchObject({ keys: 2, snapshot: true, recordedAt: new Date(T0 + 10_000_000).toISOString() });
    expect(clicks.bootstrapReasons.join(' ')).toContain('1d windows (amount_sum_1d)');
  });

  it('--views plans only the named views, and names an unknown one with TM_PLAN_UNKNOWN_VIEW', () => {
    const only = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, ...redis, '--views', 'user_last', '--json']);
    expect(only.code).toBe(0);
    expect((JSON.parse(only.stdout) as PlanResult).views.map((v) => v.view)).toEqual(['user_last']);
    const bad = tidemark(['plan', '--definitions', `${FIXTURES}/base`, ...redis, '--views', 'user_clicks,nope']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^TM_PLAN_UNKNOWN_VIEW: --views names nope, which is neither defined nor in the store; valid views: user_clicks, user_last/);
  });

  it('(e) definitions that do not compile: every error with its code, exit 1', () => {
    const text = tidemark(['plan', '--definitions', `${FIXTURES}/broken`, ...redis]);
    expect(text.code).toBe(1);
    expect(text.stdout).toBe('');
    expect(text.stderr).toContain('1 definition error(s); nothing was compared and no store was touched');
    expect(text.stderr).toContain('TM_DEF_BAD_DURATION featureView user_clicks, feature clicks_1h: window "5 minutes" is not a duration');
    const json = tidemark(['plan', '--definitions', `${FIXTURES}/broken`, ...redis, '--json']);
    expect(json.code).toBe(1);
    const { error } = JSON.parse(json.stdout) as { error: { code: string; errors: { code: string; feature: string }[] } };
    expect(error.code).toBe('TM_DEF_BAD_DURATION');
    expect(error.errors).toEqual([expect.objectContaining({ code: 'TM_DEF_BAD_DURATION', feature: 'clicks_1h' })]);
  });

  it('(f) an unreachable Redis: TM_STORE_UNREACHABLE within a few seconds, exit 1', async () => {
    const port = await freeLoopbackPort();
    const { code, stdout, stderr, ms } = tidemark(['plan', '--definitions', `${FIXTURES}/base`, '--redis-url', `redis://127.0.0.1:${port}`, '--timeout', '2000']);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(new RegExp(`^TM_STORE_UNREACHABLE: the Redis online store at redis://127.0.0.1:${port} is unreachable`));
    expect(ms).toBeLessThan(15_000);
  });

  it('(f) a Redis that accepts but never answers: TM_STORE_UNREACHABLE after --timeout, not a hang', async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { port } = silent.address() as AddressInfo;
      const { code, stdout, stderr, ms } = tidemark(['plan', '--definitions', `${FIXTURES}/base`, '--redis-url', `redis://127.0.0.1:${port}`, '--timeout', '1500', '--json']);
      expect(code).toBe(1);
      expect(stderr).toBe('');
      expect(JSON.parse(stdout)).toEqual({ error: { code: 'TM_STORE_UNREACHABLE', message: `the Redis online store at redis://127.0.0.1:${port} is unreachable: no answer within 1500 ms`, url: `redis://127.0.0.1:${port}`, timeoutMs: 1500 } });
      expect(ms).toBeGreaterThanOrEqual(1500);
      expect(ms).toBeLessThan(15_000);
    } finally {
      silent.close();
    }
  });

  it('reports the offline events of each view\'s source when an offline store is given (chDB folder)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-plan-'));
    try {
      const file = join(dir, 'clicks.ndjson');
      writeFileSync(file, ['{"ts":"2026-01-01T00:00:00Z","user":"a","amount":1}', '{"ts":"2026-01-03T12:00:00Z","user":"b","amount":2}', ''].join('\n'));
      const missing = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, ...redis, '--data-dir', join(dir, 'data'), '--json']);
      expect((JSON.parse(missing.stdout) as PlanResult).offline).toEqual({ location: null, note: `no offline store in ${join(dir, 'data')} (no chdb folder there)` });
      expect(tidemark(['backfill', '--definitions', `${FIXTURES}/base`, '--from', file, '--data-dir', join(dir, 'data')]).code).toBe(0);
      const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, ...redis, '--data-dir', join(dir, 'data')]);
      expect(code).toBe(2);
      expect(stdout).toContain(`offline store: ${join(dir, 'data', 'chdb')}`);
      expect(stdout).toContain('offline events of source clicks: 2 from 2026-01-01T00:00:00.000Z to 2026-01-03T12:00:00.000Z');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('against the in-memory store: nothing recorded, every view new, said so', () => {
    const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/base`, '--store', 'memory']);
    expect(code).toBe(2);
    expect(stdout).toContain('online store: in-memory: the in-memory store keeps nothing between runs');
    expect(stdout).toMatch(/plan: 2 new, 0 changed, 0 removed, 0 unchanged\n$/);
  });

  it('(g) leaves the store as it was: every key and value under the prefix identical', async () => {
    expect(before.length).toBeGreaterThan(3);
    expect(await dumpStore(client, prefix)).toEqual(before);
  });

  it('a second writer with changed definitions keeps the first snapshot; a view whose snapshot is gone plans as new', async () => {
    const otherPrefix = `${prefix}-2`;
    const base = await compileFixture('base');
    const changed = await compileFixture('changed');
    await claimStreamVersions(client, otherPrefix, base.registry);
    // The window change keeps the tile layout, so a store of the changed definitions passes the layout check.
    await claimStreamVersions(client, otherPrefix, changed.registry);
    const state = await readStoredRegistryState(client, otherPrefix);
    expect(state.snapshots.user_clicks!.registryVersion).toBe(base.registry.version);
    expect(state.snapshots.user_amounts!.registryVersion).toBe(changed.registry.version);
    await client.hdel(`${otherPrefix}:{meta}`, viewSnapshotField('user_last'));
    const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, '--redis-url', testRedisUrl(), '--prefix', otherPrefix]);
    expect(code).toBe(2);
    expect(stdout).toContain('feature changed: clicks_1h: window 1h -> 2h');
    expect(stdout).toContain('view user_amounts: unchanged');
    expect(stdout).toContain('view user_last: new');
    await client.del(...(await client.keys(`${otherPrefix}:*`)));
  });

  it('a prefix holding nothing: every view new, "no view recorded yet", exit 2', () => {
    const { code, stdout } = tidemark(['plan', '--definitions', `${FIXTURES}/base`, '--redis-url', testRedisUrl(), '--prefix', `${prefix}-empty`]);
    expect(code).toBe(2);
    expect(stdout).toContain(`prefix ${prefix}-empty, watermark none, no view recorded yet`);
    expect(stdout).toMatch(/plan: 2 new, 0 changed, 0 removed, 0 unchanged\n$/);
  });
});

describe('tidemark plan against a Redis Cluster', () => {
  it('reads the meta hash through a redis-cluster:// URL', async () => {
    const url = clusterUrl(testRedisClusterNodes());
    const cluster = createRedisClient(url);
    const prefix = `plan-cluster-${process.pid}-${Date.now().toString(36)}`;
    try {
      const base = await compileFixture('base');
      await claimStreamVersions(cluster, prefix, base.registry);
      const same = tidemark(['plan', '--definitions', `${FIXTURES}/base`, '--redis-url', url, '--prefix', prefix]);
      expect(same.code, same.stderr).toBe(0);
      expect(same.stdout).toMatch(/plan: no changes \(2 unchanged\)\n$/);
      const changed = tidemark(['plan', '--definitions', `${FIXTURES}/changed`, '--redis-url', url, '--prefix', prefix, '--json']);
      expect(changed.code).toBe(2);
      expect((JSON.parse(changed.stdout) as PlanResult).counts).toEqual({ unchanged: 1, new: 1, changed: 1, removed: 0 });
    } finally {
      await cluster.del(`${prefix}:{meta}`);
      await cluster.quit();
    }
  });
});
