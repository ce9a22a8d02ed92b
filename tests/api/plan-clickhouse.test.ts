// `tidemark plan --clickhouse-url`: the offline events per source read through @clickhouse/client,
// from the chDB-backed HTTP test fixture (tests/support/clickhouse-http-fixture.ts; not a
// ClickHouse server) in this process, so the CLI runs asynchronously here; and an unreachable
// ClickHouse, which is TM_OFFLINE_UNREACHABLE.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, loadDefinitions } from '../../definitions/index.js';
import { OfflineStore } from '../../offline/index.js';
import type { PlanResult } from '../../api/plan.js';
import { startClickHouseHttpFixture, type ClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { freeLoopbackPort } from '../support/services.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const FIXTURES = 'tests/fixtures/plan';

function tidemark(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('tidemark plan with a ClickHouse offline store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tm-plan-ch-'));
  let fixture: ClickHouseHttpFixture;

  beforeAll(async () => {
    fixture = await startClickHouseHttpFixture(join(dir, 'chdb'));
    const base = compileOrThrow((await loadDefinitions(join(ROOT, FIXTURES, 'base'))).module);
    const store = await OfflineStore.open(base, { clickhouseUrl: fixture.url });
    try {
      const file = join(dir, 'clicks.ndjson');
      writeFileSync(file, ['{"ts":"2026-01-01T00:00:00Z","user":"a","amount":1}', '{"ts":"2026-01-02T00:00:00Z","user":"b","amount":2}', '{"ts":"2026-01-08T00:00:00Z","user":"a","amount":3}', ''].join('\n'));
      expect((await store.loadEvents('clicks', file)).events).toBe(3);
    } finally {
      await store.close();
    }
  }, 60_000);

  afterAll(async () => {
    await fixture?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("gives each view its source's event count and time range", async () => {
    const { code, stdout } = await tidemark(['plan', '--definitions', `${FIXTURES}/changed`, '--store', 'memory', '--clickhouse-url', fixture.url, '--json']);
    expect(code).toBe(2);
    const plan = JSON.parse(stdout) as PlanResult;
    expect(plan.offline.location).not.toBeNull();
    for (const v of plan.views) expect(v.offline).toEqual({ source: 'clicks', events: 3, from: '2026-01-01T00:00:00.000Z', to: '2026-01-08T00:00:00.000Z' });
  });

  it('an unreachable ClickHouse is TM_OFFLINE_UNREACHABLE, exit 1', async () => {
    const port = await freeLoopbackPort();
    const { code, stderr } = await tidemark(['plan', '--definitions', `${FIXTURES}/base`, '--store', 'memory', '--clickhouse-url', `http://127.0.0.1:${port}`]);
    expect(code).toBe(1);
    expect(stderr).toMatch(new RegExp(`^TM_OFFLINE_UNREACHABLE: ClickHouse at http://127.0.0.1:${port} is unreachable`));
  });
});
