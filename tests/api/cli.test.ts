// The tidemark command line, run as a user runs it: validate (good and bad definitions) and the
// quickstart (replay, summary, and a served read).
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

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
