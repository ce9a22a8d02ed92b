// What GET /status/materializer answers: the online store's kind, clock, watermark and freshness,
// each view's version and status (Redis: from the meta hash, online/versions.ts) with its key
// count, and what the materializer itself reports: the embedded replay's stats (the quickstart), or
// the tidemark_materializer_* series scraped from a stream materializer's GET /metrics.
import { MemoryOnlineStore, RedisOnlineStore, readStoredRegistryState, storeClockMs, viewNamespace, type OnlineFeatureService, type VersionStatus } from '../online/index.js';

/** The embedded replay (quickstart): what it applied to the in-memory store before serving. */
export interface ReplayReport {
  kind: 'replay';
  /** Rebuilt from the offline store (tidemark bootstrap's code) rather than replayed from the file. */
  rebuilt: boolean;
  events: number;
  badEvents: number;
  lateTileEvents: number;
  seconds: number;
}

/** A stream materializer's Prometheus endpoint, scraped when the status is asked for. */
export type ScrapeReport =
  | ({ kind: 'metrics'; url: string; reachable: true; scrapedAt: string } & MaterializerMetricsSummary)
  | { kind: 'metrics'; url: string; reachable: false; error: string };

export type MaterializerReport = ReplayReport | ScrapeReport;

export interface MaterializerMetricsSummary {
  /** tidemark_materializer_healthy: whether its /healthz answers ok; null when the series is absent. */
  healthy: boolean | null;
  /** tidemark_materializer_watermark_ms; null before its first batch (the gauge reads 0 then). */
  watermarkMs: number | null;
  watermark: string | null;
  /** Wall time now minus that watermark (ms); null without one. */
  freshnessMs: number | null;
  /** tidemark_materializer_freshness_seconds, cumulative since the materializer started. */
  freshnessSeconds: { count: number; mean: number | null; p50AtMost: number | null; p99AtMost: number | null };
  /** tidemark_materializer_commit_lag: records after the committed offset, in total and per partition. */
  commitLag: { total: number; partitions: { topic: string; partition: string; lag: number }[] };
  /** tidemark_materializer_events_total, summed over sources. */
  events: number;
  /** tidemark_materializer_bad_events_total (dead letters), summed over sources and codes. */
  deadLetters: number;
  lateTileEvents: number;
  batchesInFlight: number | null;
}

export interface PrometheusSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE_LINE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL_PAIR = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

/**
 * The samples of Prometheus's text exposition format (version 0.0.4), as prom-client writes it:
 * `name{label="value",...} value [timestamp]`; comments (# HELP, # TYPE) and blank lines are
 * skipped, and so is a line that does not parse. No parser of this format is installed (prom-client
 * only writes it), and the materializer's lines are simple enough for these two expressions.
 */
export function parsePrometheusText(text: string): PrometheusSample[] {
  const samples: PrometheusSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2] !== undefined && m[2].trim() !== '') {
      LABEL_PAIR.lastIndex = 0;
      let pair: RegExpExecArray | null;
      while (LABEL_PAIR.lastIndex < m[2].length && (pair = LABEL_PAIR.exec(m[2])) !== null) {
        labels[pair[1]!] = pair[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
      }
    }
    const value = m[3] === '+Inf' ? Number.POSITIVE_INFINITY : m[3] === '-Inf' ? Number.NEGATIVE_INFINITY : Number(m[3]);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

const PREFIX = 'tidemark_materializer_';

/** The on-call figures of a materializer's samples (the tidemark_materializer_* series). */
export function summarizeMaterializerMetrics(samples: readonly PrometheusSample[], nowMs: number): MaterializerMetricsSummary {
  const of = (name: string): PrometheusSample[] => samples.filter((s) => s.name === PREFIX + name);
  const sum = (name: string): number => of(name).reduce((n, s) => n + s.value, 0);
  const single = (name: string): number | null => of(name)[0]?.value ?? null;
  const watermarkGauge = single('watermark_ms');
  // prom-client reports an unset gauge as 0: no batch has moved the watermark yet.
  const watermarkMs = watermarkGauge === null || watermarkGauge === 0 ? null : watermarkGauge;
  const healthy = single('healthy');
  const count = sum('freshness_seconds_count');
  const freshnessSum = sum('freshness_seconds_sum');
  const lag = of('commit_lag').map((s) => ({ topic: s.labels.topic ?? '', partition: s.labels.partition ?? '', lag: s.value }));
  return {
    healthy: healthy === null ? null : healthy === 1,
    watermarkMs,
    watermark: watermarkMs === null ? null : new Date(watermarkMs).toISOString(),
    freshnessMs: watermarkMs === null ? null : nowMs - watermarkMs,
    freshnessSeconds: { count, mean: count > 0 ? freshnessSum / count : null, p50AtMost: bucketBound(of('freshness_seconds_bucket'), 0.5), p99AtMost: bucketBound(of('freshness_seconds_bucket'), 0.99) },
    commitLag: { total: lag.reduce((n, p) => n + p.lag, 0), partitions: lag },
    events: sum('events_total'),
    deadLetters: sum('bad_events_total'),
    lateTileEvents: sum('late_tile_events_total'),
    batchesInFlight: single('batches_in_flight'),
  };
}

/**
 * The upper bound of the histogram bucket holding quantile q, over every label set (topics) of its
 * cumulative `_bucket` series summed by `le`; null without observations. A bound, not an estimate:
 * Prometheus's histogram_quantile would interpolate inside the bucket.
 */
function bucketBound(buckets: readonly PrometheusSample[], q: number): number | null {
  const byBound = new Map<number, number>();
  for (const b of buckets) {
    const le = b.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(b.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + b.value);
  }
  const bounds = [...byBound.entries()].sort((a, b) => a[0] - b[0]);
  const total = bounds.at(-1)?.[1] ?? 0;
  if (total === 0) return null;
  const hit = bounds.find(([, cumulative]) => cumulative >= q * total)!;
  // JSON has no Infinity: past the last finite bucket, say so with null.
  return Number.isFinite(hit[0]) ? hit[0] : null;
}

/** Scrape a materializer's GET /metrics; an unreachable or failing endpoint is reported, not thrown. */
export async function scrapeMaterializerMetrics(url: string, opts: { timeoutMs?: number; nowMs?: () => number } = {}): Promise<ScrapeReport> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(opts.timeoutMs ?? 2_000) });
    if (!res.ok) return { kind: 'metrics', url, reachable: false, error: `GET ${url} answered ${res.status} ${res.statusText}` };
    const samples = parsePrometheusText(await res.text());
    if (!samples.some((s) => s.name.startsWith(PREFIX))) return { kind: 'metrics', url, reachable: false, error: `GET ${url} holds no ${PREFIX}* series: is it a tidemark materializer's /metrics?` };
    const nowMs = (opts.nowMs ?? Date.now)();
    return { kind: 'metrics', url, reachable: true, scrapedAt: new Date(nowMs).toISOString(), ...summarizeMaterializerMetrics(samples, nowMs) };
  } catch (e) {
    const cause = (e as { cause?: { message?: string } }).cause?.message;
    return { kind: 'metrics', url, reachable: false, error: `GET ${url} failed: ${(e as Error).message}${cause ? ` (${cause})` : ''}` };
  }
}

export interface ViewStatus {
  view: string;
  /** `<view>@<version id>`: the key namespace of the version these definitions read. */
  namespace: string;
  /**
   * Redis: the version's status in the meta hash, or `unrecorded` when it has none (never applied
   * or materialized, or the store lost its data). Memory: `ready` (built before the server starts).
   */
  status: VersionStatus | 'unrecorded';
  /** Entity keys of that version; null when the store could not answer. */
  keys: number | null;
  /** Redis: how far the version's last bootstrap got (tidemark bootstrap); null when it had none. */
  bootstrap: { startedAt: string; finishedAt: string | null; keys: number; tiles: number; events: number; checkpoint: string | null } | null;
}

export interface StoreStatus {
  store: { kind: 'memory' | 'redis' | 'other'; prefix: string | null };
  registryVersion: string;
  clock: 'wall' | 'watermark';
  now: string;
  /** The time a read without `at` uses now (the store clock). */
  readTime: string;
  watermark: string | null;
  watermarkMs: number | null;
  freshnessMs: number | null;
  freshness: string;
  views: ViewStatus[];
  storeError?: string;
}

/** The online store's side of the status: clock, watermark, freshness and every view's version. */
export async function onlineStoreStatus(service: OnlineFeatureService, nowMs: number): Promise<StoreStatus> {
  const { store, registry, clock } = service;
  const redis = store instanceof RedisOnlineStore ? store : null;
  const kind = redis ? 'redis' : store instanceof MemoryOnlineStore ? 'memory' : 'other';
  const views: ViewStatus[] = registry.views.map((v) => ({ view: v.name, namespace: viewNamespace(v), status: redis ? 'unrecorded' : 'ready', keys: null, bootstrap: null }));
  let watermarkMs: number | null = null;
  let storeError: string | undefined;
  try {
    // One HGETALL of the meta hash on Redis (stats), and one more for the version records.
    const stats = await store.stats();
    watermarkMs = stats.watermarkMs;
    for (const v of views) v.keys = stats.keys[v.view] ?? 0;
    if (redis) {
      const state = await readStoredRegistryState(redis.client, redis.prefix);
      for (const v of views) {
        v.status = state.statuses[v.namespace] ?? 'unrecorded';
        const b = state.versions[v.namespace]?.bootstrap;
        v.bootstrap = b ? { startedAt: b.startedAt, finishedAt: b.finishedAt, keys: b.keys, tiles: b.tiles, events: b.events, checkpoint: b.checkpoint } : null;
      }
    }
  } catch (e) {
    storeError = `online store unavailable: ${(e as Error).message}`;
  }
  // Freshness is wall time minus the watermark: how far behind real time the store is. Under the
  // watermark clock (a replay of history) that difference is the age of the data, not a lag.
  const freshnessMs = watermarkMs === null ? null : nowMs - watermarkMs;
  const freshness =
    watermarkMs === null
      ? 'no event materialized yet'
      : clock === 'wall'
        ? 'wall clock now minus the watermark'
        : 'wall clock now minus the watermark; under the watermark clock (a replay of history) this is the age of the data, not a lag';
  return {
    store: { kind, prefix: redis ? redis.prefix : null },
    registryVersion: registry.version,
    clock,
    now: new Date(nowMs).toISOString(),
    readTime: new Date(storeClockMs(clock, watermarkMs, nowMs)).toISOString(),
    watermark: watermarkMs === null ? null : new Date(watermarkMs).toISOString(),
    watermarkMs,
    freshnessMs,
    freshness,
    views,
    ...(storeError === undefined ? {} : { storeError }),
  };
}
