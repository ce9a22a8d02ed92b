// A pool of worker threads computing drift test statistics (monitor/drift-statistics.ts) off the
// main thread: the Monte Carlo p-values of a replay cost about as much CPU as ClickHouse's
// counting, and on the main thread they also hold up the API a quickstart serves meanwhile. Each
// test's statistics are a pure, seeded function of its counts, so which thread computes a test
// does not change a bit of its result. Batches go to whichever worker is free, in order.
import { build } from 'esbuild';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TidemarkError, type ErrorCode } from '../definitions/index.js';
import { driftTestStatistics, type DriftTestInput, type DriftTestStatistics } from './drift-statistics.js';

/** Tests per message: small enough to balance slow (Monte Carlo to the budget) and fast tests. */
const BATCH_TESTS = 64;

interface Job {
  tests: DriftTestInput[];
  resolve: (results: DriftTestStatistics[]) => void;
  reject: (error: Error) => void;
}

type Reply = { ready: true } | { id: number; results: DriftTestStatistics[] } | { id: number; error: { message: string; code?: string; details?: Record<string, unknown> } };

export interface StatisticsComputer {
  compute(tests: readonly DriftTestInput[]): Promise<DriftTestStatistics[]>;
  close(): Promise<void>;
}

/** Statistics on the calling thread (few tests, or no worker threads). */
export const inlineStatistics: StatisticsComputer = {
  compute: async (tests) => tests.map(driftTestStatistics),
  close: async () => {},
};

function runInline(job: Job): void {
  try {
    job.resolve(job.tests.map(driftTestStatistics));
  } catch (e) {
    job.reject(e as Error);
  }
}

/**
 * The worker's code: drift-statistics.ts and what it imports, bundled by esbuild into one script
 * (once per process) with a loop that answers each batch of tests. A worker then starts in about
 * 50 ms; loading the TypeScript sources through tsx's loader took about 550 ms of CPU per worker,
 * more than the statistics of an evaluation of a few thousand tests.
 */
const WORKER_ENTRY = `import { parentPort } from 'node:worker_threads';
import { driftTestStatistics } from './drift-statistics.ts';
parentPort.on('message', ({ id, tests }) => {
  try {
    parentPort.postMessage({ id, results: tests.map(driftTestStatistics) });
  } catch (e) {
    parentPort.postMessage({ id, error: { message: e instanceof Error ? e.message : String(e), code: e?.code, details: e?.details } });
  }
});
parentPort.postMessage({ ready: true });`;

let workerCode: Promise<string> | null = null;

function workerSource(): Promise<string> {
  workerCode ??= build({
    stdin: { contents: WORKER_ENTRY, resolveDir: fileURLToPath(new URL('.', import.meta.url)), loader: 'ts', sourcefile: 'statistics-worker.ts' },
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    write: false,
    logLevel: 'silent',
  }).then(
    (result) => result.outputFiles[0]!.text,
    (e: unknown) => {
      workerCode = null;
      throw e;
    },
  );
  return workerCode;
}

export class StatisticsPool implements StatisticsComputer {
  private readonly idle: Worker[] = [];
  private readonly queue: { id: number; job: Job }[] = [];
  private readonly running = new Map<Worker, { id: number; job: Job }>();
  private nextId = 0;
  private failure: Error | null = null;

  private constructor(private readonly workers: Worker[]) {}

  /** Start `threads` workers (default: one per available core) and wait until they are ready. */
  static async open(threads = availableParallelism()): Promise<StatisticsPool> {
    const code = await workerSource();
    const workers = Array.from({ length: Math.max(1, threads) }, () => new Worker(code, { eval: true }));
    const pool = new StatisticsPool(workers);
    // Listeners are removed one by one: Worker keeps internal ones (removeAllListeners would stop its messages).
    const starting: (() => void)[] = [];
    try {
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              const onReady = (): void => resolve();
              const onExit = (code: number): void => reject(new Error(`statistics worker exited with code ${code} before it was ready`));
              w.once('message', onReady);
              w.once('error', reject);
              w.once('exit', onExit);
              starting.push(() => {
                w.off('message', onReady);
                w.off('error', reject);
                w.off('exit', onExit);
              });
            }),
        ),
      );
    } catch (e) {
      await pool.close();
      throw e;
    } finally {
      for (const stop of starting) stop();
    }
    for (const w of workers) {
      w.on('message', (reply: Reply) => pool.onReply(w, reply));
      w.on('error', (e) => pool.fail(w, e));
      w.on('exit', (code) => pool.fail(w, new Error(`statistics worker exited with code ${code}`)));
      pool.idle.push(w);
    }
    return pool;
  }

  compute(tests: readonly DriftTestInput[]): Promise<DriftTestStatistics[]> {
    const batches: Promise<DriftTestStatistics[]>[] = [];
    for (let i = 0; i < tests.length; i += BATCH_TESTS) {
      batches.push(new Promise((resolve, reject) => this.enqueue({ tests: tests.slice(i, i + BATCH_TESTS), resolve, reject })));
    }
    return Promise.all(batches).then((parts) => parts.flat());
  }

  /** Stop the workers; what is still outstanding is computed on this thread. */
  async close(): Promise<void> {
    this.failure ??= new Error('statistics pool closed');
    const workers = this.workers.splice(0);
    for (const w of workers) for (const event of ['message', 'error', 'exit'] as const) w.removeAllListeners(event);
    const outstanding = [...this.running.values(), ...this.queue.splice(0)];
    this.running.clear();
    this.idle.length = 0;
    for (const { job } of outstanding) runInline(job);
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private enqueue(job: Job): void {
    if (this.failure) return runInline(job);
    this.queue.push({ id: this.nextId++, job });
    this.dispatch();
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const next = this.queue.shift()!;
      this.running.set(worker, next);
      worker.postMessage({ id: next.id, tests: next.job.tests });
    }
  }

  private onReply(worker: Worker, reply: Reply): void {
    const current = this.running.get(worker);
    if (!current || 'ready' in reply || reply.id !== current.id) return;
    this.running.delete(worker);
    this.idle.push(worker);
    if ('error' in reply) current.job.reject(new TidemarkError((reply.error.code ?? 'TM_MONITOR_BAD_INPUT') as ErrorCode, reply.error.message, reply.error.details ?? {}));
    else current.job.resolve(reply.results);
    this.dispatch();
  }

  /**
   * A worker died (out of memory, killed): the pool stops using workers and computes what is
   * outstanding, and everything after, on this thread. Same results, only slower.
   */
  private fail(worker: Worker, error: Error): void {
    if (this.failure) return;
    this.failure = error;
    const outstanding = [...this.running.values(), ...this.queue.splice(0)];
    this.running.clear();
    this.idle.length = 0;
    void this.close();
    void worker;
    for (const { job } of outstanding) runInline(job);
  }
}
