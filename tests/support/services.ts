// Shared plumbing of the service harness (tests/support/redis.ts, kafka.ts): free loopback ports,
// "is this installed" checks that fail with the exact install command, and child processes that
// die with the test run even when it is killed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';

/** Raised when a service the tests need is not installed; its message says what to install. */
export class ServiceUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServiceUnavailableError';
  }
}

/** The exact install command for Debian packages, as this project's machines (Debian 12) need it. */
export function aptInstallCommand(packages: readonly string[]): string {
  return `apt-get update && apt-get install -y ${packages.join(' ')}`;
}

/** Fail with the install command when an executable is missing from PATH. */
export function requireExecutable(name: string, debianPackage: string, alternative?: string): void {
  if (spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0) return;
  throw new ServiceUnavailableError(
    `${name} is not installed, and the tests need it. Install it (Debian/Ubuntu, as root): ${aptInstallCommand([debianPackage])}` +
      (alternative ? `\n  or ${alternative}` : ''),
  );
}

/** Fail with the install command when a file a package provides (a C header) is missing. */
export function requireFile(path: string, debianPackage: string, alternative?: string): void {
  if (existsSync(path)) return;
  throw new ServiceUnavailableError(
    `${path} is missing (package ${debianPackage}), and the tests need it. Install it (Debian/Ubuntu, as root): ${aptInstallCommand([debianPackage])}` +
      (alternative ? `\n  or ${alternative}` : ''),
  );
}

/** A TCP port free on 127.0.0.1 right now (another process may still take it: callers retry). */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/**
 * Start `command args` under a shell watchdog: the program runs while our pipe to the watchdog's
 * stdin stays open. Closing it (see stopTethered), or this process dying in any way (even
 * SIGKILL, which runs no exit handler), sends the program SIGTERM, so no server outlives its run.
 */
export function spawnTethered(command: string, args: readonly string[], cwd: string): ChildProcess {
  const script = [
    'exec 3<&0',
    '"$@" </dev/null &',
    'pid=$!',
    '( cat <&3 >/dev/null; kill -TERM "$pid" 2>/dev/null ) &',
    'watchdog=$!',
    'exec 3<&-',
    'wait "$pid"',
    'status=$?',
    'kill "$watchdog" 2>/dev/null',
    'exit "$status"',
  ].join('\n');
  return spawn('sh', ['-c', script, 'tethered', command, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Keep the last lines a child wrote, for error messages. */
export function captureOutput(child: ChildProcess, maxChars = 4000): () => string {
  let text = '';
  const keep = (chunk: Buffer): void => {
    text = (text + chunk.toString('utf8')).slice(-maxChars);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text;
}

/** Resolves with the exit code (or signal name) once the child has exited. */
export function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  if (child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
}

/** Stop a tethered child: close its stdin (the program gets SIGTERM), then SIGKILL after a grace period. */
export async function stopTethered(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
