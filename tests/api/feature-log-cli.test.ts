// The feature-log flags of the command line, run as a user runs them: --log-features on quickstart
// (reads and predictions straight to the chDB offline store) and on serve (Redis reads, logged to
// the offline store given with --data-dir), their refusals of a bad rate or a missing destination,
// `dataset --from-log` with and without a labels spine, and offline-sink's --feature-log.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testRedisUrl } from '../support/redis.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
// No service from the environment: each test names its own.
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'CLICKHOUSE_URL' && k !== 'KAFKA_BROKERS'));

function tidemark(args: string[]) {
  const res = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: ENV });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** Start `tidemark <args>` and wait for the line with its address. */
async function start(args: string[], addressLine: RegExp): Promise<{ url: string; out: () => string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: ENV });
  let out = '';
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = addressLine.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((c) => reject(new Error(`tidemark ${args[0]} exited ${c}: ${out}`)));
  });
  return {
    url,
    out: () => out,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const read = (url: string, body: unknown, headers: Record<string, string> = {}) => fetch(`${url}/get-online-features`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('--log-features refusals', () => {
  it('takes a rate from 0 to 1 only', () => {
    for (const command of ['serve', 'quickstart']) {
      const { code, stderr } = tidemark([command, '--definitions', 'examples/flights', '--log-features', '1.5']);
      expect(code, command).toBe(1);
      expect(stderr).toContain('--log-features takes a sample rate from 0 to 1 (1: every read), got 1.5');
    }
  });

  it('serve needs a destination: Kafka or an offline store', () => {
    const { code, stderr } = tidemark(['serve', '--definitions', 'examples/flights', '--redis-url', testRedisUrl(), '--log-features', '0.5']);
    expect(code).toBe(1);
    expect(stderr).toContain('--log-features needs a destination: --kafka-brokers (topic <prefix>.feature_log) or an offline store (--clickhouse-url, --clickhouse-shards or --data-dir)');
  });

  it('dataset needs --spine and --features unless --from-log; offline-sink lists --feature-log', () => {
    const { code, stderr } = tidemark(['dataset', '--definitions', 'examples/flights', '--out', join(tmpdir(), 'never.csv')]);
    expect(code).toBe(1);
    expect(stderr).toContain('dataset needs --spine <file> and --features <list> (or --from-log); missing: --spine, --features');
    expect(tidemark(['offline-sink', '--help']).stdout).toMatch(/--feature-log\s+also append the feature log, topic\s+<prefix>\.feature_log/);
  });
});

describe('quickstart --log-features, then dataset --from-log', () => {
  it('logs reads and predictions to the offline store; the dataset holds the values served, labels joined by request id', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-log-cli-'));
    try {
      const quickstart = await start(['quickstart', '--limit', '5000', '--port', '0', '--no-progress', '--no-monitor', '--data-dir', dir, '--log-features', '1'], /serving the HTTP API on (http:\/\/\S+)/);
      // printed just after the address line
      await until(() => quickstart.out().includes('feature log: '));
      expect(quickstart.out()).toContain('feature log: 100% of reads to offline store');
      const features = ['origin_delays:flights_1h', 'origin_delays:delay_mean_1h'];
      const res = await read(quickstart.url, { features, entities: { airport: ['ORD', 'ATL'] } }, { 'x-request-id': 'cli-req-1' });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe('cli-req-1');
      const body = (await res.json()) as { metadata: { request_id: string }; results: { values: unknown[] }[] };
      expect(body.metadata.request_id).toBe('cli-req-1');
      const second = await read(quickstart.url, { features, entities: { airport: ['DEN'] }, request_id: 'cli-req-2' });
      expect(second.headers.get('x-request-id')).toBe('cli-req-2');
      const prediction = await fetch(`${quickstart.url}/feature-log/predictions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: 'cli-req-1', score: 0.9 }) });
      expect(prediction.status).toBe(200);
      const metrics = await (await fetch(`${quickstart.url}/metrics`)).text();
      expect(metrics).toContain('tidemark_feature_log_queue_limit 10000');
      expect(await quickstart.stop()).toBe(0);

      const out = join(dir, 'served.csv');
      const plain = tidemark(['dataset', '--definitions', 'examples/flights', '--data-dir', dir, '--from-log', '--out', out]);
      expect(plain.code, plain.stderr).toBe(0);
      expect(plain.stdout).toContain(`wrote 3 rows x 5 columns to ${out} from the feature log`);
      const lines = readFileSync(out, 'utf8').trim().split('\n');
      expect(lines[0]).toBe('"request_id","ts","airport","origin_delays__delay_mean_1h","origin_delays__flights_1h"');
      const ord = lines.find((l) => l.startsWith('"cli-req-1"') && l.includes('"ORD"'))!;
      expect(ord.split(',')[4]).toBe(String(body.results[1]!.values[0]));

      const labels = join(dir, 'labels.ndjson');
      writeFileSync(labels, `${JSON.stringify({ request_id: 'cli-req-2', delayed: true })}\n${JSON.stringify({ request_id: 'cli-req-1', delayed: false })}\n`);
      const labelled = join(dir, 'labelled.ndjson');
      const withSpine = tidemark(['dataset', '--definitions', 'examples/flights', '--data-dir', dir, '--from-log', '--spine', labels, '--features', 'origin_delays:flights_1h', '--out', labelled]);
      expect(withSpine.code, withSpine.stderr).toBe(0);
      const rows = readFileSync(labelled, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(rows.map((r) => [r.request_id, r.airport, r.delayed])).toEqual([['cli-req-2', 'DEN', true], ['cli-req-1', 'ORD', false], ['cli-req-1', 'ATL', false]]);
      expect(Object.keys(rows[0]!)).toEqual(['request_id', 'ts', 'airport', 'origin_delays__flights_1h', 'delayed']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('serve --log-features --data-dir', () => {
  it('answers every read with a request id and logs it to the offline store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tm-log-serve-'));
    const redis = ['--definitions', 'examples/flights', '--redis-url', testRedisUrl(), '--prefix', `log-cli-${process.pid}-${Date.now().toString(36)}`];
    try {
      // serve reads only bootstrapped view versions: record the definitions and build them (from the empty offline store)
      for (const step of [['apply', ...redis], ['bootstrap', ...redis, '--data-dir', dir, '--no-progress']]) {
        const done = tidemark(step);
        expect(done.code, `${step[0]}: ${done.stdout}${done.stderr}`).toBe(0);
      }
      const server = await start(['serve', ...redis, '--port', '0', '--data-dir', dir, '--log-features', '1'], /serving online features from .* on (http:\/\/\S+)/);
      await until(() => server.out().includes('feature log: '));
      expect(server.out()).toContain(`feature log: 100% of reads to offline store ${dir}`);
      const res = await read(server.url, { features: ['origin_delays:flights_1h'], entities: { airport: ['SFO'] } });
      expect(res.status).toBe(200);
      const id = res.headers.get('x-request-id');
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(await server.stop()).toBe(0);
      const out = join(dir, 'served.ndjson');
      const dataset = tidemark(['dataset', '--definitions', 'examples/flights', '--data-dir', dir, '--from-log', '--out', out]);
      expect(dataset.code, dataset.stderr).toBe(0);
      expect(JSON.parse(readFileSync(out, 'utf8').trim())).toMatchObject({ request_id: id, airport: 'SFO', origin_delays__flights_1h: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
