// Issue 12, part 2: Kafka TLS and SASL. librdkafka's mock cluster (the tests' broker) speaks
// neither, so what runs here is (1) the settings -> kafkajs config function, unit tested, and (2)
// kafkajs with that config against a stand-in broker written below: a node:tls server with a
// throwaway CA's certificate that answers the first three Kafka requests a client sends
// (ApiVersions, SaslHandshake, SaslAuthenticate) and records what arrived. That shows the TLS
// handshake is verified against --kafka-ca and the SASL PLAIN user and password reach the wire; it
// is not a broker (no SCRAM exchange, no metadata, produce or fetch): see README "Security".
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TidemarkError } from '../../definitions/index.js';
import { describeKafkaSecurity, kafkaSecurityConfig } from '../../ingest/index.js';
import { kafkaSecurityOf } from '../../api/connections.js';
import { makeTestCertificates, type TestCertificates } from '../support/tls.js';

const PASSWORD = 'secret-kafka-pw-93aa';
const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'tidemark.mjs');

function configError(f: () => unknown): TidemarkError {
  try {
    f();
  } catch (e) {
    return e as TidemarkError;
  }
  throw new Error('expected a TM_SERVICE_CONFIG error');
}

// ---------------------------------------------------------------------------------------------
// A stand-in broker for the connection's first requests.

interface Seen {
  tls: boolean;
  apiKeys: number[];
  mechanism?: string;
  /** SASL PLAIN's auth bytes: authzid \0 user \0 password. */
  plain?: { user: string; password: string };
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}
function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
function kstring(s: string | null): Buffer {
  return s === null ? int16(-1) : Buffer.concat([int16(Buffer.byteLength(s)), Buffer.from(s)]);
}

/** Answer ApiVersions, SaslHandshake (PLAIN only) and SaslAuthenticate (accepts `password`); record them. */
function startStandInBroker(certs: TestCertificates, password: string): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer({ cert: certs.cert, key: certs.key }, (socket: TLSSocket) => {
    const s: Seen = { tls: socket.encrypted === true, apiKeys: [] };
    seen.push(s);
    let buf = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        const size = buf.readInt32BE(0);
        const req = buf.subarray(4, 4 + size);
        buf = buf.subarray(4 + size);
        const apiKey = req.readInt16BE(0);
        const correlationId = req.readInt32BE(4);
        const clientIdLength = req.readInt16BE(8);
        const body = req.subarray(10 + Math.max(0, clientIdLength));
        s.apiKeys.push(apiKey);
        let answer: Buffer;
        if (apiKey === 18) {
          // ApiVersions v0-2: error, [key, min, max], throttle time (v1+; kafkajs asks v2 first)
          const apis = [[18, 0, 2], [17, 0, 1], [36, 0, 0], [3, 0, 0]];
          answer = Buffer.concat([int16(0), int32(apis.length), ...apis.flatMap(([k, lo, hi]) => [int16(k!), int16(lo!), int16(hi!)]), int32(0)]);
        } else if (apiKey === 17) {
          s.mechanism = body.subarray(2, 2 + body.readInt16BE(0)).toString();
          answer = Buffer.concat([int16(0), int32(1), kstring('PLAIN')]);
        } else if (apiKey === 36) {
          const bytes = body.subarray(4, 4 + body.readInt32BE(0)).toString();
          const [, user, pw] = bytes.split('\0');
          s.plain = { user: user!, password: pw! };
          const ok = pw === password;
          // SaslAuthenticate v0: error (58 SASL_AUTHENTICATION_FAILED), message, auth bytes
          answer = Buffer.concat([int16(ok ? 0 : 58), kstring(ok ? null : 'Authentication failed: Invalid username or password'), int32(0)]);
        } else {
          socket.destroy();
          return;
        }
        const frame = Buffer.concat([int32(correlationId), answer]);
        socket.write(Buffer.concat([int32(frame.length), frame]));
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, seen })));
}

/** Connect an admin client with `config`; the outcome (the stand-in never answers Metadata) and the error, if any. */
async function tryConnect(port: number, config: ReturnType<typeof kafkaSecurityConfig>): Promise<Error | null> {
  const kafka = new Kafka({ clientId: 'tidemark-security-test', brokers: [`127.0.0.1:${port}`], logLevel: logLevel.NOTHING, connectionTimeout: 2_000, requestTimeout: 2_000, retry: { retries: 0 }, ...config });
  const admin = kafka.admin();
  try {
    await admin.connect();
    return null;
  } catch (e) {
    return e as Error;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

describe('Kafka TLS and SASL settings (kafkaSecurityConfig)', () => {
  let certs: TestCertificates;
  beforeAll(() => {
    certs = makeTestCertificates();
  });
  afterAll(() => certs?.remove());

  it('nothing given: plaintext, no SASL (the kafkajs defaults)', () => {
    expect(kafkaSecurityConfig({})).toEqual({});
    expect(kafkaSecurityOf({}, {})).toEqual({});
  });

  it('--kafka-ssl: TLS with the system CAs; --kafka-ca: TLS trusting that CA file', () => {
    expect(kafkaSecurityConfig({ ssl: true })).toEqual({ ssl: true });
    expect(kafkaSecurityConfig({ caFile: certs.caFile })).toEqual({ ssl: { ca: [certs.ca] } });
    expect(kafkaSecurityOf({}, { KAFKA_SSL: '1' })).toEqual({ ssl: true });
    expect(kafkaSecurityOf({}, { KAFKA_CA: certs.caFile })).toEqual({ ssl: { ca: [certs.ca] } });
  });

  it.each(['plain', 'scram-sha-256', 'scram-sha-512', 'SCRAM-SHA-512'])('SASL %s with the password from a file (its trailing newline dropped)', (mechanism) => {
    const file = join(certs.dir, 'kafka-password');
    writeFileSync(file, `${PASSWORD}\n`);
    const config = kafkaSecurityOf({ kafkaSsl: true, kafkaSaslMechanism: mechanism, kafkaUsername: 'svc-tidemark', kafkaPasswordFile: file }, {});
    expect(config).toEqual({ ssl: true, sasl: { mechanism: mechanism.toLowerCase(), username: 'svc-tidemark', password: PASSWORD } });
    expect(describeKafkaSecurity(config)).toBe(`TLS, SASL ${mechanism.toLowerCase()} as svc-tidemark`);
  });

  it('the environment: KAFKA_SASL_MECHANISM, KAFKA_USERNAME, KAFKA_PASSWORD_FILE or KAFKA_PASSWORD; a flag wins over its variable', () => {
    const file = join(certs.dir, 'kafka-password-env');
    writeFileSync(file, 'from-file');
    expect(kafkaSecurityOf({}, { KAFKA_SASL_MECHANISM: 'plain', KAFKA_USERNAME: 'u', KAFKA_PASSWORD: 'from-env' }).sasl).toEqual({ mechanism: 'plain', username: 'u', password: 'from-env' });
    expect(kafkaSecurityOf({}, { KAFKA_SASL_MECHANISM: 'plain', KAFKA_USERNAME: 'u', KAFKA_PASSWORD_FILE: file, KAFKA_PASSWORD: 'from-env' }).sasl).toEqual({ mechanism: 'plain', username: 'u', password: 'from-file' });
    expect(kafkaSecurityOf({ kafkaUsername: 'flag-user' }, { KAFKA_SASL_MECHANISM: 'plain', KAFKA_USERNAME: 'u', KAFKA_PASSWORD: 'p' }).sasl).toEqual({ mechanism: 'plain', username: 'flag-user', password: 'p' });
  });

  it('a missing password or CA file: TM_SERVICE_CONFIG naming the file and the flag', () => {
    const missing = join(certs.dir, 'no-such-file');
    const pw = configError(() => kafkaSecurityConfig({ saslMechanism: 'plain', username: 'u', passwordFile: missing }));
    expect(pw.code).toBe('TM_SERVICE_CONFIG');
    expect(pw.message).toBe(`cannot read the Kafka SASL password (--kafka-password-file) from ${missing}: ENOENT`);
    const ca = configError(() => kafkaSecurityConfig({ caFile: missing }));
    expect(ca.code).toBe('TM_SERVICE_CONFIG');
    expect(ca.message).toContain('--kafka-ca');
    const notPem = join(certs.dir, 'not-pem');
    writeFileSync(notPem, 'hello');
    expect(configError(() => kafkaSecurityConfig({ caFile: notPem })).message).toContain('holds no PEM certificate');
    const empty = join(certs.dir, 'empty-password');
    writeFileSync(empty, '\n');
    expect(configError(() => kafkaSecurityConfig({ saslMechanism: 'plain', username: 'u', passwordFile: empty })).message).toContain('is empty');
  });

  it('incomplete or unknown SASL settings: TM_SERVICE_CONFIG saying what is missing', () => {
    expect(configError(() => kafkaSecurityConfig({ saslMechanism: 'gssapi', username: 'u', password: 'p' })).message).toBe('--kafka-sasl-mechanism must be one of plain, scram-sha-256, scram-sha-512, got gssapi');
    expect(configError(() => kafkaSecurityConfig({ saslMechanism: 'plain', password: 'p' })).message).toContain('needs a user');
    expect(configError(() => kafkaSecurityConfig({ saslMechanism: 'scram-sha-256', username: 'u' })).message).toContain('needs a password');
    expect(configError(() => kafkaSecurityConfig({ username: 'u' })).message).toContain('without --kafka-sasl-mechanism');
    // a password never shows in these messages
    expect(configError(() => kafkaSecurityConfig({ saslMechanism: 'gssapi', username: 'u', password: PASSWORD })).message).not.toContain(PASSWORD);
  });

  it.each([
    ['offline-sink', []],
    ['materialize', []],
    ['serve', ['--redis-url', 'redis://127.0.0.1:1']],
  ])('tidemark %s with a missing --kafka-password-file: TM_SERVICE_CONFIG before connecting to anything', (command, extra) => {
    const missing = join(certs.dir, 'missing-kafka-password');
    const res = spawnSync(process.execPath, [BIN, command, '--definitions', 'tests/fixtures/plan/base', '--kafka-brokers', '127.0.0.1:1', '--kafka-sasl-mechanism', 'scram-sha-256', '--kafka-username', 'u', '--kafka-password-file', missing, ...extra], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(res.status).toBe(1);
    expect(res.stderr).toContain(`TM_SERVICE_CONFIG: cannot read the Kafka SASL password (--kafka-password-file) from ${missing}: ENOENT`);
  }, 60_000);

  describe('kafkajs with these options against a TLS stand-in broker (not a Kafka broker)', () => {
    let broker: Awaited<ReturnType<typeof startStandInBroker>>;
    beforeAll(async () => {
      broker = await startStandInBroker(certs, PASSWORD);
    });
    afterAll(async () => {
      broker.server.close();
      await once(broker.server, 'close').catch(() => undefined);
    });

    it('--kafka-ca and SASL PLAIN: the handshake verifies the CA, and the user and password arrive over TLS', async () => {
      const file = join(certs.dir, 'kafka-password-wire');
      writeFileSync(file, PASSWORD);
      const before = broker.seen.length;
      await tryConnect(broker.port, kafkaSecurityOf({ kafkaCa: certs.caFile, kafkaSaslMechanism: 'plain', kafkaUsername: 'svc-tidemark', kafkaPasswordFile: file }, {}));
      const s = broker.seen[before];
      expect(s).toBeDefined();
      expect(s!.tls).toBe(true);
      expect(s!.apiKeys.slice(0, 3)).toEqual([18, 17, 36]);
      expect(s!.mechanism).toBe('PLAIN');
      expect(s!.plain).toEqual({ user: 'svc-tidemark', password: PASSWORD });
    });

    it('a wrong SASL password: kafkajs reports the broker refusing it, without the password', async () => {
      const error = await tryConnect(broker.port, kafkaSecurityConfig({ caFile: certs.caFile, saslMechanism: 'plain', username: 'svc-tidemark', password: 'wrong-pw-1' }));
      expect(error?.message).toMatch(/SASL PLAIN authentication failed/);
      expect(error?.message).not.toContain('wrong-pw-1');
    });

    it('a CA that did not sign the certificate: the TLS handshake fails, and no request is sent', async () => {
      const before = broker.seen.length;
      const error = await tryConnect(broker.port, kafkaSecurityConfig({ caFile: certs.otherCaFile, saslMechanism: 'plain', username: 'u', password: PASSWORD }));
      expect(error).not.toBeNull();
      expect(`${error?.message} ${String((error as { cause?: unknown }).cause ?? '')}`).toMatch(/certificate|Connection error/i);
      expect(broker.seen.slice(before).flatMap((s) => s.apiKeys)).toEqual([]);
    });
  });
});
