// Issue 12, part 2: the @clickhouse/client path over HTTPS with a user and password. The server is
// the chDB HTTP fixture (tests/support/clickhouse-http-fixture.ts) serving HTTPS with a throwaway
// CA's certificate and checking credentials as a server does: a test fixture, not a ClickHouse
// server (CLICKHOUSE_URL is not used here: a real server's TLS and users are the operator's).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkError } from '../../definitions/index.js';
import { ClickHouseExecutor } from '../../offline/index.js';
import { clickhouseConnectionOf } from '../../api/connections.js';
import { startClickHouseHttpFixture, type ClickHouseHttpFixture } from '../support/clickhouse-http-fixture.js';
import { makeTestCertificates, type TestCertificates } from '../support/tls.js';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');
const USER = 'tidemark';
const PASSWORD = 'secret-ch-pw-51c9';

/** Run the CLI without blocking this process's event loop (the fixture answers from it). */
function tidemark(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, CLICKHOUSE_URL: '', ...env } });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

describe('ClickHouse over HTTPS with a user (the chDB fixture serving HTTPS and checking credentials)', () => {
  let certs: TestCertificates;
  let fixture: ClickHouseHttpFixture;
  let dataDir: string;
  const executors: ClickHouseExecutor[] = [];
  const executor = (url: string, connection: ConstructorParameters<typeof ClickHouseExecutor>[1]): ClickHouseExecutor => {
    const e = new ClickHouseExecutor(url, connection);
    executors.push(e);
    return e;
  };

  beforeAll(async () => {
    certs = makeTestCertificates();
    dataDir = mkdtempSync(join(tmpdir(), 'tidemark-ch-tls-'));
    fixture = await startClickHouseHttpFixture(dataDir, { tls: { cert: certs.cert, key: certs.key }, users: { [USER]: PASSWORD } });
  }, 60_000);

  afterAll(async () => {
    for (const e of executors) await e.close();
    await fixture?.close();
    rmSync(dataDir, { recursive: true, force: true });
    certs?.remove();
  });

  it('serves https', () => {
    expect(fixture.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('a query with the CA and the right user and password works', async () => {
    const ch = executor(fixture.url, { ca: certs.ca, username: USER, password: PASSWORD });
    expect(await ch.rows<{ x: number }>('SELECT 1 + {n:UInt8} AS x', { n: 1 })).toEqual([{ x: 2 }]);
    expect(ch.location).toBe(fixture.url);
  });

  it('the user and password may come in the URL; the executor shows it without the password', async () => {
    const url = fixture.url.replace('https://', `https://${USER}:${PASSWORD}@`);
    const ch = executor(url, { ca: certs.ca });
    expect(await ch.rows<{ x: number }>('SELECT 3 AS x')).toEqual([{ x: 3 }]);
    expect(ch.location).not.toContain(PASSWORD);
    expect(ch.location).toContain(`${USER}:***@`);
  });

  it('a wrong password: TM_OFFLINE_AUTH, and neither password in the error', async () => {
    const wrong = 'wrong-ch-pw-0b3e';
    const ch = executor(fixture.url.replace('https://', `https://${USER}:${wrong}@`), { ca: certs.ca });
    const error = await ch.rows('SELECT 1').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TidemarkError);
    expect((error as TidemarkError).code).toBe('TM_OFFLINE_AUTH');
    expect((error as TidemarkError).message).toContain('AUTHENTICATION_FAILED');
    const text = `${(error as Error).message} ${JSON.stringify(error)} ${(error as Error).stack}`;
    expect(text).not.toContain(wrong);
    expect(text).not.toContain(PASSWORD);
  });

  it('no password for a user that has one: TM_OFFLINE_AUTH (REQUIRED_PASSWORD)', async () => {
    const error = await executor(fixture.url, { ca: certs.ca, username: USER }).rows('SELECT 1').catch((e: unknown) => e);
    expect((error as TidemarkError).code).toBe('TM_OFFLINE_AUTH');
  });

  it('a CA that did not sign the certificate: TM_OFFLINE_TLS naming --clickhouse-ca; no CA: the same', async () => {
    for (const ca of [readFileSync(certs.otherCaFile), undefined]) {
      const error = await executor(fixture.url, { ...(ca ? { ca } : {}), username: USER, password: PASSWORD }).rows('SELECT 1').catch((e: unknown) => e);
      expect((error as TidemarkError).code).toBe('TM_OFFLINE_TLS');
      expect((error as TidemarkError).message).toMatch(/certificate/i);
      expect((error as TidemarkError).message).toContain('--clickhouse-ca');
      expect((error as Error).message).not.toContain(PASSWORD);
    }
  });

  it('--clickhouse-password-file and CLICKHOUSE_PASSWORD; a missing file is TM_SERVICE_CONFIG', () => {
    const file = join(certs.dir, 'ch-password');
    writeFileSync(file, `${PASSWORD}\n`);
    expect(clickhouseConnectionOf({ clickhouseUser: USER, clickhousePasswordFile: file, clickhouseCa: certs.caFile }, {})).toEqual({ ca: certs.ca, username: USER, password: PASSWORD });
    expect(clickhouseConnectionOf({}, { CLICKHOUSE_USER: 'u', CLICKHOUSE_PASSWORD: 'p' })).toEqual({ username: 'u', password: 'p' });
    expect(() => clickhouseConnectionOf({ clickhousePasswordFile: join(certs.dir, 'missing') }, {})).toThrow(/cannot read the ClickHouse password .*missing: ENOENT/);
  });

  it('tidemark plan: the right password file reads the offline store; a wrong one is TM_OFFLINE_AUTH; no password in any output', async () => {
    const file = join(certs.dir, 'ch-password-cli');
    writeFileSync(file, `${PASSWORD}\n`);
    const base = ['plan', '--definitions', 'tests/fixtures/plan/base', '--store', 'memory', '--clickhouse-ca', certs.caFile, '--clickhouse-user', USER];
    const ok = await tidemark([...base, '--clickhouse-url', fixture.url, '--clickhouse-password-file', file]);
    expect(ok.out).toContain(`offline store: ${fixture.url}`);
    expect(ok.code, ok.out).toBe(2);
    const wrong = await tidemark([...base, '--clickhouse-url', fixture.url.replace('https://', `https://${USER}:secret-wrong@`)]);
    expect(wrong.code).toBe(1);
    expect(wrong.out).toContain('TM_OFFLINE_AUTH');
    for (const out of [ok.out, wrong.out]) {
      expect(out).not.toContain(PASSWORD);
      expect(out).not.toContain('secret');
    }
  }, 120_000);
});
