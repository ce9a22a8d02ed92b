// `tidemark apply` and `tidemark bootstrap`, run as users run them, against the run's redis-server
// (and its Redis Cluster) and an offline store served by the ClickHouse HTTP test fixture (chDB):
// which offline rows a bootstrap takes (stream rows up to the offsets it records, file rows before
// the stream cut), the fences it leaves, the 503 of a version not bootstrapped, the registry
// history, --prune, the in-memory (embedded) target, and bad input that changes nothing.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, entityKeyValues, loadDefinitions, referenceViewValues, valuesAgree, type CompiledDefinitions, type ReferenceEvent, type ViewPlan } from '../../definitions/index.js';
import { EventDecoder, type DecodedEvent } from '../../ingest/index.js';
import { createRedisClient, evaluateFeature, MemoryOnlineStore, OnlineFeatureService, RedisOnlineStore, readStoredRegistryState, storeClockMs, tileRangesFor, type OnlineStore, type RedisClient } from '../../online/index.js';
import { OfflineStore } from '../../offline/index.js';
import { eventRow } from '../../offline/load.js';
import { keyFieldsOf } from '../../offline/tables.js';
import { bootstrapView } from '../../api/bootstrap.js';
import { buildServer } from '../../api/server.js';
import { startClickHouseHttpFixture, type ClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { testRedisClusterNodes, testRedisUrl } from '../support/redis.js';
import { clusterUrl } from '../online/redis-backends.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const FIXTURES = 'tests/fixtures/plan';
const T0 = Date.UTC(2026, 0, 10);
const HOUR = 3_600_000;

/** `tidemark <args>` as a child process; asynchronous, so the ClickHouse fixture in this process keeps answering. */
function tidemark(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function compileFixture(name: string): Promise<CompiledDefinitions> {
  return compileOrThrow((await loadDefinitions(join(ROOT, FIXTURES, name))).module);
}

async function dumpStore(client: RedisClient, prefix: string): Promise<[string, string][]> {
  const keys = (await client.keys(`${prefix}:*`)).sort();
  return Promise.all(keys.map(async (k): Promise<[string, string]> => [k, ((await client.dumpBuffer(k)) ?? Buffer.alloc(0)).toString('hex')]));
}

let fixture: ClickHouseHttpFixture;
let base: CompiledDefinitions;
let changed: CompiledDefinitions;
/** The events a bootstrap must take (stream rows, and file rows before the cut), per user. */
const taken = new Map<string, ReferenceEvent[]>();
const STREAM_TOPS = { 0: 0, 1: 0 };

beforeAll(async () => {
  base = await compileFixture('base');
  changed = await compileFixture('changed');
  fixture = await startClickHouseHttpFixture(join(mkdtempSync(join(tmpdir(), 'tm-versions-')), 'chdb'));
  const offline = await OfflineStore.open(changed, { clickhouseUrl: fixture.url });
  const source = changed.registry.sources[0]!;
  const decoder = new EventDecoder(changed, 'clicks');
  const decode = (raw: Record<string, unknown>): DecodedEvent => {
    const d = decoder.decodeValue(raw);
    if (!d.ok) throw new Error(d.bad.reason);
    return d.event;
  };
  const keep = (e: DecodedEvent): void => {
    const user = String(e.fields.user);
    taken.set(user, [...(taken.get(user) ?? []), { eventTimeMs: e.eventTimeMs, fields: e.fields }]);
  };
  // Stream rows of two partitions (the offline sink's loads), 40 users, over two days.
  const streamRows: Record<string, unknown>[] = [];
  for (let i = 0; i < 400; i++) {
    const e = decode({ ts: T0 + i * 7 * 60_000, user: `u${i % 40}`, amount: ((i * 37) % 11) - 3.25 });
    const partition = i % 2;
    const offset = Math.floor(i / 2);
    streamRows.push(eventRow(source, keyFieldsOf(changed.registry, source), e, `kafka:plan_clicks:${partition}`, offset));
    STREAM_TOPS[partition as 0 | 1] = offset;
    keep(e);
  }
  // File rows: history before the stream (taken), and one row after its first event (left out).
  const fileRows: Record<string, unknown>[] = [];
  for (let i = 0; i < 30; i++) {
    const e = decode({ ts: T0 - (i + 1) * HOUR, user: `u${(i * 3) % 50}`, amount: i });
    fileRows.push(eventRow(source, keyFieldsOf(changed.registry, source), e, 'file:history', i));
    keep(e);
  }
  fileRows.push(eventRow(source, keyFieldsOf(changed.registry, source), decode({ ts: T0 + 5 * HOUR, user: 'u1', amount: 1000 }), 'file:history', 30));
  await offline.executor.insert('tm_events_clicks', [...streamRows, ...fileRows]);
  const load = (id: string, rows: number) => ({ load_id: id, source: 'clicks', file: id, sha256: '', rows, events: rows, bad: 0, registry_version: changed.registry.version, loaded_at: Date.now() });
  await offline.executor.insert('tm_loads', [load('kafka:plan_clicks:0', 0), load('kafka:plan_clicks:1', 0), load('file:history', 31)]);
  await offline.close();
}, 120_000);

afterAll(async () => {
  await fixture?.close();
});

/** Every user of every view of `compiled`, read from `store` at its watermark, against the reference over the taken events. */
async function mismatches(compiled: CompiledDefinitions, store: OnlineStore): Promise<string[]> {
  const watermarkMs = (await store.watermarkMs())!;
  const t = storeClockMs('watermark', watermarkMs);
  const out: string[] = [];
  for (const view of compiled.registry.views) {
    const users = [...taken.keys()];
    const tiles = await store.readTiles(view.name, users, tileRangesFor(view, view.features, t, watermarkMs));
    users.forEach((user, i) => {
      const expected = referenceViewValues(view as ViewPlan, taken.get(user)!, entityKeyValues(user, 1), t);
      for (const f of view.features) {
        const got = evaluateFeature(view, f, tiles[i] ?? null, t, watermarkMs).value;
        if (!valuesAgree(f.agg, got, expected[f.name]!)) out.push(`${view.name}:${f.name} ${user}: online ${got}, reference ${expected[f.name]}`);
      }
    });
  }
  return out;
}

describe('tidemark apply and bootstrap against Redis', () => {
  const client = createRedisClient(testRedisUrl());
  const prefix = `versions-${process.pid}-${Date.now().toString(36)}`;
  const redis = ['--redis-url', testRedisUrl(), '--prefix', prefix];
  afterAll(async () => {
    await client.quit();
  });

  it('bad input changes nothing: an unknown view, definitions that do not compile, a version never applied, an unreachable store', async () => {
    const before = await dumpStore(client, prefix);
    const unknown = await tidemark(['bootstrap', '--definitions', `${FIXTURES}/base`, ...redis, '--clickhouse-url', fixture.url, '--views', 'user_clicks,nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^TM_PLAN_UNKNOWN_VIEW: --views names nope, not defined in these definitions; valid views: user_clicks, user_last/);
    const broken = await tidemark(['apply', '--definitions', `${FIXTURES}/broken`, ...redis, '--json']);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout).error.code).toMatch(/^TM_DEF_/);
    const unapplied = await tidemark(['bootstrap', '--definitions', `${FIXTURES}/base`, ...redis, '--clickhouse-url', fixture.url]);
    expect(unapplied.code).toBe(1);
    expect(unapplied.stderr).toMatch(/^TM_APPLY_NOT_APPLIED: user_clicks \(version user_clicks@[0-9a-f]{12}\), user_last .* not applied .* run tidemark apply/);
    const unreachable = await tidemark(['apply', '--definitions', `${FIXTURES}/base`, '--redis-url', 'redis://127.0.0.1:1', '--prefix', prefix, '--timeout', '1000']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^TM_STORE_UNREACHABLE/);
    expect(await dumpStore(client, prefix)).toEqual(before);
  });

  it('apply records pending versions and the history; bootstrap builds them from stream rows up to the recorded offsets and file rows before the cut; reads equal the reference', async () => {
    const applied = await tidemark(['apply', '--definitions', `${FIXTURES}/base`, ...redis]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/applied registry [0-9a-f]{16} as version 1/);
    let state = await readStoredRegistryState(client, prefix);
    expect(Object.values(state.statuses)).toEqual(['pending', 'pending']);
    expect(state.history).toHaveLength(1);

    // A server of these definitions answers 503 until the bootstrap is done.
    const guarded = new RedisOnlineStore(base.registry, client, { prefix, requireReadyVersions: true });
    const app = await buildServer({ service: new OnlineFeatureService(base.registry, guarded, 'watermark'), registryHistory: async () => (await readStoredRegistryState(client, prefix)).history });
    const read = async () => app.inject({ method: 'POST', url: '/get-online-features', payload: { features: ['user_clicks:clicks_1h'], entities: { user: ['u1'] } } });
    const pending = await read();
    expect(pending.statusCode).toBe(503);
    expect(pending.json()).toMatchObject({ code: 'TM_STORE_NEEDS_BOOTSTRAP' });
    expect(pending.json().message).toContain('tidemark bootstrap');

    const done = await tidemark(['bootstrap', '--definitions', `${FIXTURES}/base`, ...redis, '--clickhouse-url', fixture.url, '--batch-keys', '7', '--no-progress']);
    expect(done.code, done.stderr).toBe(0);
    expect(taken.size).toBeGreaterThan(40); // some users only in the file rows
    expect(done.stdout).toMatch(new RegExp(`user_clicks: version user_clicks@[0-9a-f]{12} ready: ${taken.size} keys`));
    expect(done.stdout).toContain('offsets clicks p0<=199 p1<=199');
    expect(done.stdout).toContain(`file rows before ${new Date(T0).toISOString()} (1 left out)`);
    state = await readStoredRegistryState(client, prefix);
    expect(Object.values(state.statuses)).toEqual(['ready', 'ready']);
    expect(Object.values(state.versions).map((v) => v.handover)).toEqual(['pending', 'pending']);
    // Every key carries the fences of every partition the bootstrap covered.
    const reader = new RedisOnlineStore(base.registry, client, { prefix });
    expect(await client.hgetall(reader.keyHashKey('user_clicks', 'u48'))).toMatchObject({ seen: '1', 'fence:clicks:0': String(STREAM_TOPS[0]), 'fence:clicks:1': String(STREAM_TOPS[1]) });
    expect(await mismatches(base, reader)).toEqual([]);
    expect((await read()).statusCode).toBe(200);
    const history = await app.inject({ method: 'GET', url: '/registry/history' });
    expect(history.json().versions).toMatchObject([{ version: 1, registryVersion: base.registry.version, views: { user_clicks: reader.namespaceOf('user_clicks') } }]);
    await app.close();

    // Run again: nothing to do.
    const again = await tidemark(['bootstrap', '--definitions', `${FIXTURES}/base`, ...redis, '--clickhouse-url', fixture.url]);
    expect(again.stdout).toContain('every view version is ready: nothing to bootstrap');
  });

  it('a changed registry: apply makes new versions beside the old, bootstrap builds them, --prune deletes what the latest registry does not use', async () => {
    const old = new RedisOnlineStore(base.registry, client, { prefix });
    const oldClicks = old.namespaceOf('user_clicks');
    const applied = await tidemark(['apply', '--definitions', `${FIXTURES}/changed`, ...redis, '--json']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(JSON.parse(applied.stdout).apply.pending.sort()).toEqual(['user_amounts', 'user_clicks']);
    const plan = await tidemark(['plan', '--definitions', `${FIXTURES}/changed`, ...redis]);
    expect(plan.stdout).toMatch(/view user_clicks: unchanged\n(.*\n)*? {2}version user_clicks@[0-9a-f]{12} is applied and pending/);
    const done = await tidemark(['bootstrap', '--definitions', `${FIXTURES}/changed`, ...redis, '--clickhouse-url', fixture.url, '--no-progress']);
    expect(done.code, done.stderr).toBe(0);
    const store = new RedisOnlineStore(changed.registry, client, { prefix, requireReadyVersions: true });
    expect(await mismatches(changed, store)).toEqual([]);
    // The old version is still there until pruned.
    expect((await client.keys(`${prefix}:{${oldClicks}:*`)).length).toBeGreaterThan(0);
    const pruned = await tidemark(['apply', '--definitions', `${FIXTURES}/changed`, ...redis, '--prune', '--scan-count', '10']);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stdout).toMatch(new RegExp(`pruned 1 version\\(s\\) \\(${oldClicks}\\): \\d+ keys deleted`));
    expect(await client.keys(`${prefix}:{${oldClicks}:*`)).toEqual([]);
    const state = await readStoredRegistryState(client, prefix);
    expect(Object.keys(state.statuses).sort()).toEqual(changed.registry.views.map((v) => store.namespaceOf(v.name)).sort());
    expect(state.history.map((h) => h.version)).toEqual([1, 2]);
    expect(await mismatches(changed, store)).toEqual([]);
  });
});

describe('bootstrap into a Redis Cluster and into the in-memory store', () => {
  it('a redis-cluster:// URL: the same values', async () => {
    const url = clusterUrl(testRedisClusterNodes());
    const prefix = `versions-cluster-${process.pid}-${Date.now().toString(36)}`;
    expect((await tidemark(['apply', '--definitions', `${FIXTURES}/changed`, '--redis-url', url, '--prefix', prefix])).code).toBe(0);
    const done = await tidemark(['bootstrap', '--definitions', `${FIXTURES}/changed`, '--redis-url', url, '--prefix', prefix, '--clickhouse-url', fixture.url, '--no-progress']);
    expect(done.code, done.stderr).toBe(0);
    const cluster = createRedisClient(url);
    try {
      expect(await mismatches(changed, new RedisOnlineStore(changed.registry, cluster, { prefix }))).toEqual([]);
    } finally {
      cluster.disconnect();
    }
  });

  it('the embedded store built by the same code: the same values', async () => {
    const offline = await OfflineStore.open(changed, { clickhouseUrl: fixture.url });
    try {
      const store = new MemoryOnlineStore(changed.registry);
      for (const view of changed.registry.views) await bootstrapView(view, { kind: 'memory', store }, { executor: offline.executor, registry: changed.registry, batchKeys: 9 });
      expect(await mismatches(changed, store)).toEqual([]);
    } finally {
      await offline.close();
    }
  });
});
