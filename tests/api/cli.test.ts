// The tidemark command line, run as a user runs it: validate (good and bad definitions), the
// quickstart (replay, summary, and a served read), and serve with and without an offline store.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { databaseUrls, startClickHouseShards } from '../support/clickhouse-shards.js';
import { testRedisUrl } from '../support/redis.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');

function tidemark(args: string[]) {
  const res = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('tidemark validate', () => {
  it('prints the registry summary of the flights example', () => {
    const { code, stdout } = tidemark(['validate', '--definitions', 'examples/flights']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^registry [0-9a-f]{16}: 2 entities, 1 sources, 3 feature views/);
    expect(stdout).toContain('delay_stddev_7d: stddev(delay) window 7d = 168 x 1h tiles');
    expect(stdout).toContain('featureView route_delays: entity route (origin, destination)');
  });

  it('reports every definition error at once and exits non-zero', () => {
    const { code, stderr } = tidemark(['validate', '--definitions', 'tests/fixtures/bad-definitions.ts']);
    expect(code).toBe(1);
    for (const expected of [
      /TM_DEF_UNKNOWN_FIELD featureView rider_stats, feature fare_sum_bogus: field "tip" is not in the schema of source trips/,
      /TM_DEF_NON_NUMERIC_FIELD featureView rider_stats, feature city_mean: mean needs a numeric field, but "city" is string/,
      /TM_DEF_HOP_NOT_DIVIDING featureView rider_stats, feature fare_mean_odd: hop 7m does not divide window 1h/,
      /TM_DEF_TOO_MANY_TILES featureView rider_stats, feature fare_max_fine: window 7d with hop 1m needs 10080 tiles/,
      /TM_DEF_BAD_DURATION featureView rider_stats, feature fare_min_typo: window "5 minutes" is not a duration/,
      /TM_DEF_DUPLICATE_NAME featureView rider_stats: 2 featureView definitions are named rider_stats/,
      /TM_DEF_MISSING_KEY_FIELD featureView rider_stats: join key rider_id reads event field "rider"/,
    ]) {
      expect(stderr).toMatch(expected);
    }
    expect(stderr).toContain('fix: ');
  });

  it('names a definitions path that does not exist', () => {
    const { code, stderr } = tidemark(['validate', '--definitions', 'no/such/place']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/TM_DEF_LOAD: definitions path .*no\/such\/place does not exist/);
  });
});

describe('tidemark quickstart', () => {
  it('replays, prints the summary and a sample read, verifies against the reference, and exits with --no-serve', () => {
    const { code, stdout } = tidemark(['quickstart', '--limit', '20000', '--no-serve', '--no-progress', '--verify']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/replayed 20,000 events in [\d.]+ s: [\d,]+ events\/s/);
    expect(stdout).toMatch(/origin_delays\s+\d+ keys x 7 features/);
    expect(stdout).toMatch(/origin_delays:delay_mean_1h\s+-?[\d.]+\s+-?[\d.]+/);
    expect(stdout).toMatch(/verified [\d,]+ values \(every key of every view\) against the reference implementation at .*: all equal/);
  });

  it('serves the API on the printed port', async () => {
    const child = spawn(process.execPath, [BIN, 'quickstart', '--limit', '5000', '--port', '0', '--no-progress'], { cwd: ROOT });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /serving the HTTP API on (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on('exit', (c) => reject(new Error(`quickstart exited ${c}: ${out}`)));
      });
      const res = await fetch(`${url}/get-online-features`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] } }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { metadata: { feature_names: string[] } };
      expect(body.metadata.feature_names).toEqual(['airport', 'flights_1h']);
    } finally {
      child.kill('SIGTERM');
    }
  });
});

describe('tidemark serve with an offline store', () => {
  /** `tidemark serve <args>` until it prints its address; asynchronous, so servers in this process keep answering. */
  async function serve(args: string[], env: Record<string, string> = {}): Promise<{ url: string; out: () => string; stop: () => void }> {
    const child = spawn(process.execPath, [BIN, 'serve', '--definitions', 'examples/flights/monitor.ts', '--redis-url', testRedisUrl(), '--prefix', `serve-${process.pid}-${Date.now().toString(36)}`, '--port', '0', ...args], {
      cwd: ROOT,
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'CLICKHOUSE_URL' && k !== 'CLICKHOUSE_SHARDS')), ...env },
    });
    let out = '';
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /serving online features from .* on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (c) => reject(new Error(`serve exited ${c}: ${out}`)));
    });
    return { url, out: () => out, stop: () => child.kill('SIGTERM') };
  }
  const post = (url: string, body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('--data-dir: serves datasets, the monitor routes, the consistency probe and the scraped materializer status', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-serve-'));
    const metrics = createServer((_req, res) => res.end('# TYPE tidemark_materializer_watermark_ms gauge\ntidemark_materializer_watermark_ms 978336000000\ntidemark_materializer_events_total{source="flights"} 12\n'));
    await new Promise<void>((resolve) => metrics.listen(0, '127.0.0.1', resolve));
    const metricsUrl = `http://127.0.0.1:${(metrics.address() as AddressInfo).port}/metrics`;
    const server = await serve(['--data-dir', dir, '--materializer-metrics-url', metricsUrl]);
    try {
      expect(server.out()).toContain(`datasets and monitors from ${dir}`);
      const dataset = await post(`${server.url}/datasets/historical`, { features: ['origin_delays:flights_1h'], spine: [{ airport: 'SFO', ts: 978336000000 }] });
      expect(dataset.status).toBe(200);
      expect(JSON.parse((await dataset.text()).trim())).toMatchObject({ airport: 'SFO', origin_delays__flights_1h: 0 });
      const alerts = await fetch(`${server.url}/alerts?monitor=flight_delays`);
      expect(alerts.status).toBe(200);
      expect(await alerts.json()).toEqual({ alerts: [], pendingNotifications: 0 });
      // An empty offline store: no key to sample, nothing compared, and no error.
      const probe = await post(`${server.url}/consistency/sample`, { view: 'origin_delays' });
      expect(probe.status).toBe(200);
      expect(await probe.json()).toMatchObject({ view: 'origin_delays', keysFrom: 'sample', keysCompared: 0, mismatches: [] });
      const status = await fetch(`${server.url}/status/materializer`);
      expect(status.status).toBe(200);
      expect(await status.json()).toMatchObject({ store: { kind: 'redis' }, clock: 'wall', materializer: { kind: 'metrics', url: metricsUrl, reachable: true, watermarkMs: 978336000000, events: 12 } });
    } finally {
      server.stop();
      await new Promise((resolve) => metrics.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--clickhouse-shards (or $CLICKHOUSE_SHARDS): serves datasets and the consistency probe from the shards, the monitor routes from the home shard', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-serve-shards-'));
    const shards = await startClickHouseShards(dir, 2);
    try {
      const urls = await databaseUrls(shards.urls, 'tm_serve_shards');
      for (const [args, env] of [[['--clickhouse-shards', urls.join(',')], {}], [[], { CLICKHOUSE_SHARDS: urls.join(',') }]] as const) {
        const server = await serve([...args], env);
        try {
          expect(server.out()).toContain(`datasets and monitors from 2 shards (${urls.map((u) => u.replace(/\/$/, '')).join(', ')})`);
          const spine = [{ airport: 'SFO', ts: 978336000000, label: 1 }, { airport: 'ORD', ts: 978336000001, label: 0 }, { airport: 'JFK', ts: 978336000002, label: 1 }];
          const dataset = await post(`${server.url}/datasets/historical`, { features: ['origin_delays:flights_1h'], spine });
          expect(dataset.status).toBe(200);
          expect(dataset.headers.get('x-tidemark-rows')).toBe('3');
          const rows = (await dataset.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
          expect(rows).toEqual(spine.map((r) => ({ ...r, origin_delays__flights_1h: 0 })));
          // Where tidemark monitor --clickhouse-shards stores its results: nothing evaluated yet.
          const metrics = await fetch(`${server.url}/monitor/metrics`);
          expect(metrics.status).toBe(200);
          expect(await metrics.json()).toEqual({ metrics: [] });
          // Empty shards: no key to sample, nothing compared (tests/offline/sharded-store.test.ts compares values).
          const probe = await post(`${server.url}/consistency/sample`, { view: 'origin_delays' });
          expect(probe.status, await probe.clone().text()).toBe(200);
          expect(await probe.json()).toMatchObject({ view: 'origin_delays', keysFrom: 'sample', keysCompared: 0, mismatches: [] });
        } finally {
          server.stop();
        }
      }
    } finally {
      await shards.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('without --clickhouse-url or --data-dir: no dataset or monitor routes, and the probe says which flag to give', async () => {
    const server = await serve([]);
    try {
      expect(server.out()).not.toContain('datasets and monitors from');
      expect((await post(`${server.url}/datasets/historical`, { features: ['origin_delays:flights_1h'], spine: [{ airport: 'SFO', ts: 0 }] })).status).toBe(404);
      const probe = await post(`${server.url}/consistency/sample`, { view: 'origin_delays' });
      expect(probe.status).toBe(501);
      expect(await probe.json()).toMatchObject({ code: 'TM_CONSISTENCY_NO_OFFLINE', message: expect.stringContaining('--clickhouse-url') });
      expect(await (await fetch(`${server.url}/status/materializer`)).json()).toMatchObject({ materializer: null });
    } finally {
      server.stop();
    }
  });
});
