// `tidemark backfill` and `tidemark monitor --replay` as a user runs them: the sensor fixture's
// events loaded from files, the monitor replayed over history, a page delivered to a real
// Alertmanager-format webhook receiver, and a second replay that finds nothing left to do; the same
// replay on a sharded offline store (--clickhouse-shards, 2 chDB shard processes) prints the same
// evaluations and alerts.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { END_HOUR, HOUR, REFERENCE_HOURS, T0, sensorData } from '../fixtures/sensor-monitor.js';
import { databaseUrls, startClickHouseShards } from '../support/clickhouse-shards.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const DEFINITIONS = join(ROOT, 'tests', 'fixtures', 'sensor-monitor.ts');

/** Run the CLI without blocking this process (the webhook receiver lives here). */
function tidemark(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let dir: string;
let receiver: Server;
let url: string;
const bodies: { status: string; alerts: { status: string; labels: Record<string, string> }[] }[] = [];
/** The single-node replay's evaluation and alert lines, for the sharded replay to match. */
let singleNodeLines: string[] = [];

/** The lines of a replay's output that report evaluations (they start with the time) and alerts (indented). */
function evaluationLines(stdout: string): string[] {
  return stdout.split('\n').filter((line) => /^\d{4}-\d\d-\d\dT|^ {4}(FIRING|RESOLVED)/.test(line));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tidemark-monitor-cli-'));
  const data = sensorData();
  for (const [name, rows] of Object.entries({ readings: data.readings, predictions: data.predictions, labels: data.labels })) {
    writeFileSync(join(dir, `${name}.ndjson`), `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  }
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      bodies.push(JSON.parse(body));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
});

afterAll(async () => {
  await new Promise((r) => receiver?.close(r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('tidemark monitor --replay', () => {
  it('loads the files, replays the monitor, and pages the webhook', async () => {
    const data = join(dir, 'data');
    for (const source of ['readings', 'predictions', 'labels']) {
      const load = await tidemark(['backfill', '--definitions', DEFINITIONS, '--source', source, '--from', join(dir, `${source}.ndjson`), '--data-dir', data]);
      expect(load.stderr).toBe('');
      expect(load.code).toBe(0);
    }
    const from = new Date(T0 + REFERENCE_HOURS * HOUR).toISOString();
    const to = String(T0 + END_HOUR * HOUR);
    const run = await tidemark(['monitor', '--definitions', DEFINITIONS, '--replay', '--from', from, '--to', to, '--alertmanager-url', url, '--no-log-alerts', '--data-dir', data]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('monitor sensors: replaying');
    expect(run.stdout).toMatch(/2026-01-02T08:00Z .* drifted: .*sensor=b/);
    expect(run.stdout).toMatch(/FIRING {3}page value_drift value sensor=b/);
    const pages = bodies.flatMap((b) => b.alerts).filter((a) => a.status === 'firing' && a.labels.slo === 'value_drift');
    expect(pages.map((a) => a.labels.slice)).toContain('sensor=b');
    singleNodeLines = evaluationLines(run.stdout);

    const again = await tidemark(['monitor', '--definitions', DEFINITIONS, '--replay', '--from', from, '--to', to, '--data-dir', data]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to do');
  }, 120_000);

  it('on --clickhouse-shards (2 shards): backfill and replay print the single node\'s evaluations and alerts', async () => {
    expect(singleNodeLines.length).toBeGreaterThan(END_HOUR - REFERENCE_HOURS);
    const shards = await startClickHouseShards(join(dir, 'shards'), 2);
    try {
      const urls = (await databaseUrls(shards.urls, 'tm_monitor_cli')).join(',');
      for (const source of ['readings', 'predictions', 'labels']) {
        const load = await tidemark(['backfill', '--definitions', DEFINITIONS, '--source', source, '--from', join(dir, `${source}.ndjson`), '--clickhouse-shards', urls]);
        expect(load.stderr).toBe('');
        expect(load.code).toBe(0);
      }
      // Without --to: the latest event of every shard decides where the replay ends (the single node's END_HOUR).
      const run = await tidemark(['monitor', '--definitions', DEFINITIONS, '--replay', '--from', new Date(T0 + REFERENCE_HOURS * HOUR).toISOString(), '--no-log-alerts', '--clickhouse-shards', urls]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expect(evaluationLines(run.stdout)).toEqual(singleNodeLines);
    } finally {
      await shards.close();
    }
  }, 120_000);

  it('names a bad time and exits non-zero', async () => {
    const run = await tidemark(['monitor', '--definitions', DEFINITIONS, '--replay', '--from', 'yesterday', '--data-dir', join(dir, 'data')]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('--from must be ISO-8601 UTC or epoch ms, got yesterday');
  });
});
