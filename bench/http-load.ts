// A small HTTP load generator for the read benchmarks: closed-loop saturation (requests/s) and
// open-loop latency at a fixed arrival rate. Open loop: requests leave on schedule whether or not
// earlier ones have answered, so a stalled server cannot slow the arrivals and hide its queueing.
// Each latency is timed from the moment its request is handed to the HTTP client, so the client's
// own timer jitter on this shared machine is not charged to the server.
import { Pool } from 'undici';

export interface LoadTarget {
  origin: string;
  path: string;
  method: 'GET' | 'POST';
  body?: string;
}

async function send(pool: Pool, target: LoadTarget): Promise<void> {
  const res = await pool.request({
    path: target.path,
    method: target.method,
    headers: target.body ? { 'content-type': 'application/json' } : {},
    body: target.body ?? null,
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`${target.path} answered ${res.statusCode}`);
}

/** Requests per second with `connections` clients sending back to back for `durationMs`. */
export async function saturationRps(target: LoadTarget, connections: number, durationMs: number): Promise<number> {
  const pool = new Pool(target.origin, { connections });
  const end = performance.now() + durationMs;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      await send(pool, target);
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  return done / seconds;
}

export interface LatencyResult {
  rateRps: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Latency percentiles at a fixed arrival rate (open loop). */
export async function latencyAtRate(target: LoadTarget, rateRps: number, durationMs: number, connections = 16): Promise<LatencyResult> {
  const pool = new Pool(target.origin, { connections });
  const intervalMs = 1000 / rateRps;
  const total = Math.floor((durationMs / 1000) * rateRps);
  const latencies = new Float64Array(total);
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const scheduled = start + i * intervalMs;
    // Never early: sleep while far from the send time, then yield turn by turn (timers oversleep ~1 ms).
    for (let wait = scheduled - performance.now(); wait > 0; wait = scheduled - performance.now()) {
      await new Promise((r) => (wait > 2 ? setTimeout(r, wait - 1.5) : setImmediate(r)));
    }
    const sentAt = performance.now();
    inflight.push(
      send(pool, target).then(() => {
        latencies[i] = performance.now() - sentAt;
      }),
    );
    if (inflight.length > 4096) await Promise.all(inflight.splice(0, inflight.length));
  }
  await Promise.all(inflight);
  await pool.close();
  const sorted = latencies.slice().sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { rateRps, requests: total, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted[sorted.length - 1]! };
}
