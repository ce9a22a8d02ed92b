// Throwaway TLS material and a TLS Redis for the tests of issue 12's service security: a CA and a
// server certificate for 127.0.0.1/localhost made with `openssl` in a temporary directory (and a
// second, unrelated CA, for the "wrong CA" cases), and a `redis-server` (Debian's build has TLS)
// listening only on a TLS port, with an ACL user.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { captureOutput, exited, freeLoopbackPort, requireExecutable, sleep, spawnTethered, stopTethered } from './services.js';

export interface TestCertificates {
  dir: string;
  /** PEM files. */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** A CA that did not sign the server's certificate. */
  otherCaFile: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, a server certificate it signed (SAN IP:127.0.0.1, DNS:localhost), and another CA. */
export function makeTestCertificates(): TestCertificates {
  requireExecutable('openssl', 'openssl');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-tls-'));
  const subj = (cn: string): string[] => ['-subj', `/CN=${cn}`];
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', ...subj('tidemark test CA')], dir);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other-ca.key', '-out', 'other-ca.crt', '-days', '2', ...subj('another CA')], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', ...subj('127.0.0.1')], dir);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext'], dir);
  const file = (name: string): string => join(dir, name);
  return {
    dir,
    caFile: file('ca.crt'),
    certFile: file('server.crt'),
    keyFile: file('server.key'),
    otherCaFile: file('other-ca.crt'),
    ca: readFileSync(file('ca.crt')),
    cert: readFileSync(file('server.crt')),
    key: readFileSync(file('server.key')),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface TlsRedisServer {
  port: number;
  /** rediss://127.0.0.1:<port> (no credentials). */
  url: string;
  stop(): Promise<void>;
}

/** PING over TLS as `user`; true on +PONG. */
function pingTls(port: number, ca: Buffer, user: string, password: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    let reply = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('secureConnect', () => socket.write(`AUTH ${user} ${password}\r\nPING\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('+PONG')) finish(true);
      else if (reply.includes('-')) finish(false);
    });
  });
}

/**
 * redis-server with no plaintext port (--port 0), TLS on a free port with the certificates
 * (clients need not present one), the default user off and one ACL user `user` with `password`
 * and every permission.
 */
export async function startTlsRedisServer(certs: TestCertificates, user: string, password: string, options: { cluster?: boolean } = {}): Promise<TlsRedisServer> {
  requireExecutable('redis-server', 'redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-redis-tls-'));
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const args = [
      '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning',
      '--tls-cert-file', certs.certFile, '--tls-key-file', certs.keyFile, '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no',
      '--user', 'default', 'off', '--user', user, 'on', `>${password}`, '~*', '&*', '+@all',
    ];
    // A cluster node: TLS on its cluster bus too, so CLUSTER SLOTS announces the TLS ports.
    if (options.cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-port', String(await freeLoopbackPort()), '--tls-cluster', 'yes');
    const child = spawnTethered('redis-server', args, dir);
    const output = captureOutput(child);
    const deadline = Date.now() + 15_000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      if (await pingTls(port, certs.ca, user, password)) {
        up = true;
        break;
      }
      await sleep(50);
    }
    if (up) {
      return {
        port,
        url: `rediss://127.0.0.1:${port}`,
        async stop() {
          await stopTethered(child);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stopTethered(child);
    await exited(child);
    if (attempt >= 3) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server with TLS on port ${port} did not answer:\n${output()}`);
    }
  }
}

export interface TlsRedisCluster {
  nodes: TlsRedisServer[];
  /** rediss-cluster://127.0.0.1:<port>,... (no credentials). */
  url: string;
  stop(): Promise<void>;
}

/** Three TLS masters with the ACL user, joined by `redis-cli --tls --cluster create`; resolves at cluster_state:ok. */
export async function startTlsRedisCluster(certs: TestCertificates, user: string, password: string): Promise<TlsRedisCluster> {
  requireExecutable('redis-cli', 'redis-server');
  const nodes = await Promise.all([0, 1, 2].map(() => startTlsRedisServer(certs, user, password, { cluster: true })));
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  const cli = ['--tls', '--cacert', certs.caFile, '--user', user, '--pass', password, '--no-auth-warning'];
  try {
    execFileSync('redis-cli', [...cli, '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'pipe', timeout: 30_000 });
    const deadline = Date.now() + 30_000;
    for (const n of nodes) {
      while (!execFileSync('redis-cli', [...cli, '-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`TLS Redis Cluster node ${n.port} not ok after 30 s`);
        await sleep(50);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { nodes, url: `rediss-cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`, stop };
}
