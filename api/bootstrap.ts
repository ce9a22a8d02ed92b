// `tidemark bootstrap`: build a view version's tiles from the offline store's events and write them
// to the online store, so a new or changed view serves full windows at once, and a store that lost
// its data gets it back.
//
// What a bootstrap holds, exactly (docs/operations.md, "Definition changes"):
// - Stream rows (written by `tidemark offline-sink`, load `kafka:<topic>:<partition>`): those with
//   offset <= B[partition], B being the highest offset the offline store held per partition when the
//   bootstrap started. Each key is written with fence B[p] for every partition p (ingest/fences.ts),
//   and the materializer is rewound to B[p] + 1 when it next starts (api/materialize-start.ts), so
//   the stream continues with no event missed and none counted twice.
// - File rows (`tidemark backfill`, no Kafka offset): those before the stream cut, the earliest event
//   time among the source's stream rows (all of them when the source has none). A file holds
//   history from before the topic's first event; tidemark cannot tell a file row from the same event
//   read from Kafka, so rows at or after the cut are left out and counted.
//
// Keys are built in ascending order, a batch of keys at a time (bounded memory): each key's Redis
// keys are deleted and written whole, then the batch's last key is recorded as the checkpoint. A
// rerun after a kill resumes after the checkpoint with the same B and cut; a batch redone is
// rewritten whole, so nothing is counted twice. The tiles are built by the materializer's own
// TileBatchBuilder from the same events, so they hold what the stream would have built.
import { entityKeyId, entityKeyValues, TidemarkError, type Registry, type ViewPlan } from '../definitions/index.js';
import { TileBatchBuilder, type DecodedEvent } from '../ingest/index.js';
import { readVersionState, viewNamespace, writeVersionState, type BootstrapProgress, type OnlineStore, type RedisOnlineStore, type VersionState } from '../online/index.js';
import { COMPLETED_LOADS, eventTable, ident, keyColumn, tableExists, type OfflineExecutor } from '../offline/index.js';

export interface BootstrapOptions {
  executor: OfflineExecutor;
  registry: Registry;
  /** Keys per batch; default 2 000. */
  batchKeys?: number;
  /** Called after each batch: keys done so far and the view's key total. */
  onProgress?: (view: string, done: number, total: number) => void;
  nowMs?: () => number;
}

export interface ViewBootstrapReport {
  view: string;
  namespace: string;
  /** `built`, `resumed` (a previous run's checkpoint was used) or `skipped` (already ready). */
  outcome: 'built' | 'resumed' | 'skipped';
  keys: number;
  tiles: number;
  events: number;
  fileRowsLeftOut: number;
  offsets: Record<string, Record<string, number>>;
  fileCutMs: number | null;
  seconds: number;
}

/** What a bootstrap knows of the offline rows it takes. */
interface RowSelection {
  loads: string[];
  tops: number[];
  fileCutMs: number | null;
}

const STREAM_LOAD = `startsWith(__load, 'kafka:')`;

/** The highest stored offset per partition of a source's stream rows, and the file-row cut. */
async function coveredOffsets(executor: OfflineExecutor, view: ViewPlan, topic: string): Promise<{ offsets: Record<string, number>; fileCutMs: number | null }> {
  const table = ident(eventTable(view.source));
  const rows = await executor.rows<{ load: string; top: number | string; first: number | string }>(
    `SELECT __load AS load, max(__offset) AS top, min(__ts) AS first FROM ${table} WHERE ${STREAM_LOAD} AND ${COMPLETED_LOADS} GROUP BY __load`,
  );
  const offsets: Record<string, number> = {};
  let cut: number | null = null;
  for (const r of rows) {
    const partition = r.load.slice(r.load.lastIndexOf(':') + 1);
    if (r.load !== `kafka:${topic}:${partition}`) continue;
    offsets[partition] = Number(r.top);
    cut = cut === null ? Number(r.first) : Math.min(cut, Number(r.first));
  }
  return { offsets, fileCutMs: cut };
}

function selectionOf(topic: string, progress: BootstrapProgress, source: string): RowSelection {
  const offsets = progress.offsets[source] ?? {};
  const parts = Object.keys(offsets);
  return { loads: parts.map((p) => `kafka:${topic}:${p}`), tops: parts.map((p) => offsets[p]!), fileCutMs: progress.fileCutMs };
}

/** The rows a bootstrap takes (bound parameters: loads, tops, cut). */
function rowFilter(sel: RowSelection): string {
  const stream = `(${STREAM_LOAD} AND __offset <= transform(__load, {loads:Array(String)}, {tops:Array(Int64)}, toInt64(-1)))`;
  const files = sel.fileCutMs === null ? `(NOT ${STREAM_LOAD})` : `(NOT ${STREAM_LOAD} AND __ts < {cut:Int64})`;
  return `${COMPLETED_LOADS} AND (${stream} OR ${files})`;
}

function rowParams(sel: RowSelection): Record<string, unknown> {
  return { loads: sel.loads, tops: sel.tops, ...(sel.fileCutMs === null ? {} : { cut: sel.fileCutMs }) };
}

/** A registry holding only `view` and its source feeding only it: the builder makes tiles of this view alone. */
function singleViewRegistry(registry: Registry, view: ViewPlan): Registry {
  const source = registry.sources.find((s) => s.name === view.source)!;
  return { ...registry, sources: [{ ...source, views: [view.name] }], views: [view] };
}

/**
 * The SQL of each join key's canonical text. A text field's canonical key is the text itself, so
 * its own column serves, also for rows stored before the view existed (the sink writes `__k_`
 * columns only for the key fields of the views it knows); other kinds use the `__k_` column.
 */
function keyColumns(registry: Registry, view: ViewPlan): string[] {
  const source = registry.sources.find((s) => s.name === view.source)!;
  return view.keyFields.map((f) => (source.fields[f]?.kind === 'string' ? `ifNull(${ident(f)}, '')` : ident(keyColumn(f))));
}

/**
 * Which rows a view's tiles need, in time: those inside the view's retention before `latestMs`
 * (the latest event time the bootstrap takes; older tiles would be trimmed anyway), and each key's
 * rows at its latest event time: they carry a `last` without a window, and they make every key
 * exist, as on the stream path (a key whose tiles are all behind the horizon is still seen; the
 * store skips those tiles as late). Null: every row (a latest-value group holding anything but `last`).
 */
function timeFilter(view: ViewPlan, latestMs: number | null): { horizonMs: number } | null {
  if (latestMs === null) return null;
  if (view.features.some((f) => f.windowMs === null && f.agg !== 'last')) return null;
  return { horizonMs: latestMs - view.retentionMs };
}

/**
 * The view's events of the keys after `after` (an entity key id), in one query ordered by key,
 * then event time: yielded a key at a time with its events, so a batch never splits a key and
 * memory holds one batch. One pass over the table however many keys there are.
 */
async function* eventsByKey(executor: OfflineExecutor, registry: Registry, view: ViewPlan, sel: RowSelection, after: string | null, time: { horizonMs: number } | null): AsyncGenerator<{ key: string; events: DecodedEvent[] }> {
  const source = registry.sources.find((s) => s.name === view.source)!;
  const cols = keyColumns(registry, view);
  const table = ident(eventTable(view.source));
  const tuple = `tuple(${cols.join(', ')})`;
  const fields = [...new Set(view.features.map((f) => f.field).filter((f): f is string => f !== null))];
  const params: Record<string, unknown> = rowParams(sel);
  const afterValues = after === null ? null : entityKeyValues(after, view.keyFields.length);
  afterValues?.forEach((v, i) => (params[`a${i}`] = v));
  const keyRange = `${rowFilter(sel)}${afterValues === null ? '' : ` AND ${tuple} > tuple(${afterValues.map((_, i) => `{a${i}:String}`).join(', ')})`}`;
  let timeCond = '';
  if (time !== null) {
    params.horizon = time.horizonMs;
    timeCond = ` AND (__ts >= {horizon:Int64} OR (${cols.join(', ')}, __ts) IN (SELECT ${cols.join(', ')}, max(__ts) FROM ${table} WHERE ${keyRange} GROUP BY ${cols.join(', ')}))`;
  }
  const sql = `SELECT __ts, ${cols.map((c, i) => `${c} AS k${i}`).join(', ')}${fields.map((f, i) => `, ${ident(f)} AS v${i}`).join('')} FROM ${table}
     WHERE ${keyRange}${timeCond}
     ORDER BY ${cols.map((_, i) => `k${i}`).join(', ')}, __ts, __load, __offset`;
  let pending = '';
  let key: string | null = null;
  let events: DecodedEvent[] = [];
  for await (const chunk of executor.streamJsonLines(sql, params)) {
    pending += Buffer.from(chunk).toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.length === 0) continue;
      const r = JSON.parse(line) as Record<string, unknown>;
      const id = entityKeyId(view.keyFields.map((_, i) => String(r[`k${i}`])));
      if (id !== key) {
        if (key !== null) yield { key, events };
        key = id;
        events = [];
      }
      const values: Record<string, unknown> = {};
      fields.forEach((f, i) => (values[f] = typedValue(source.fields[f]?.kind, r[`v${i}`])));
      events.push({ source: source.name, eventTimeMs: Number(r.__ts), fields: values, viewKeys: [id] });
    }
  }
  if (pending.trim().length > 0) throw new TidemarkError('TM_BOOTSTRAP_FAILED', `view ${view.name}: the offline store's answer ended mid-row`, { view: view.name });
  if (key !== null) yield { key, events };
}

/** A column value as the event decoder gives it (64-bit integers may arrive as text). */
function typedValue(kind: string | undefined, v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (kind === 'number' || kind === 'timestamp') return typeof v === 'number' ? v : Number(v);
  if (kind === 'boolean') return v === true || v === 1 || v === 'true';
  return v;
}

async function countKeys(executor: OfflineExecutor, registry: Registry, view: ViewPlan, sel: RowSelection): Promise<number> {
  const cols = keyColumns(registry, view);
  const [row] = await executor.rows<{ n: number | string }>(`SELECT count() AS n FROM (SELECT DISTINCT ${cols.join(', ')} FROM ${ident(eventTable(view.source))} WHERE ${rowFilter(sel)})`, rowParams(sel));
  return Number(row?.n ?? 0);
}

async function latestTakenMs(executor: OfflineExecutor, view: ViewPlan, sel: RowSelection): Promise<number | null> {
  const [row] = await executor.rows<{ t: number | string | null }>(`SELECT if(count() = 0, NULL, max(__ts)) AS t FROM ${ident(eventTable(view.source))} WHERE ${rowFilter(sel)}`, rowParams(sel));
  return row?.t === null || row?.t === undefined ? null : Number(row.t);
}

async function fileRowsLeftOut(executor: OfflineExecutor, view: ViewPlan, cut: number | null): Promise<number> {
  if (cut === null) return 0;
  const [row] = await executor.rows<{ n: number | string }>(`SELECT count() AS n FROM ${ident(eventTable(view.source))} WHERE ${COMPLETED_LOADS} AND NOT ${STREAM_LOAD} AND __ts >= {cut:Int64}`, { cut });
  return Number(row?.n ?? 0);
}

/** Where a bootstrap writes: a Redis store (versions, fences, checkpoints) or the in-memory store. */
export type BootstrapTarget = { kind: 'redis'; store: RedisOnlineStore } | { kind: 'memory'; store: OnlineStore };

/**
 * Build one view's tiles from the offline store into `target`. Redis: only a version that is not
 * ready (unless `force`), resuming a started bootstrap; the version is ready at the end, with the
 * materializer's hand-over pending. Memory: the store is assumed empty (the embedded rebuild).
 */
export async function bootstrapView(view: ViewPlan, target: BootstrapTarget, o: BootstrapOptions & { force?: boolean }): Promise<ViewBootstrapReport> {
  const started = performance.now();
  const now = o.nowMs ?? Date.now;
  const ns = viewNamespace(view);
  const source = o.registry.sources.find((s) => s.name === view.source);
  if (!source) throw new TidemarkError('TM_BOOTSTRAP_FAILED', `view ${view.name}: its source ${view.source} is not in the registry`, { view: view.name });
  const report: ViewBootstrapReport = { view: view.name, namespace: ns, outcome: 'built', keys: 0, tiles: 0, events: 0, fileRowsLeftOut: 0, offsets: {}, fileCutMs: null, seconds: 0 };

  let state: VersionState | null = null;
  if (target.kind === 'redis') {
    const s = target.store;
    state = await readVersionState(s.client, s.prefix, ns);
    if (state === null) {
      throw new TidemarkError('TM_APPLY_NOT_APPLIED', `view ${view.name}: version ${ns} is not applied to Redis prefix ${s.prefix}; run tidemark apply --definitions <dir> first`, { view: view.name, namespace: ns });
    }
    if (state.status === 'ready' && !o.force) return { ...report, outcome: 'skipped', seconds: 0 };
  }
  const hasTable = await tableExists(o.executor, eventTable(view.source));
  let progress: BootstrapProgress;
  if (state?.status === 'bootstrapping' && state.bootstrap !== null && state.bootstrap.finishedAt === null) {
    progress = state.bootstrap;
    report.outcome = 'resumed';
  } else {
    const covered = hasTable ? await coveredOffsets(o.executor, view, source.topic) : { offsets: {}, fileCutMs: null };
    progress = {
      offsets: { [source.name]: covered.offsets },
      fileCutMs: covered.fileCutMs,
      startedAt: new Date(now()).toISOString(),
      checkpoint: null,
      keys: 0,
      tiles: 0,
      events: 0,
      fileRowsLeftOut: hasTable ? await fileRowsLeftOut(o.executor, view, covered.fileCutMs) : 0,
      finishedAt: null,
    };
  }
  const save = async (patch: Partial<VersionState>): Promise<void> => {
    if (target.kind !== 'redis' || state === null) return;
    state = { ...state, ...patch, bootstrap: progress };
    await writeVersionState(target.store.client, target.store.prefix, state);
  };
  await save({ status: 'bootstrapping' });

  const sel = selectionOf(source.topic, progress, source.name);
  const fences = Object.entries(progress.offsets[source.name] ?? {}).map(([p, offset]) => ({ source: source.name, partition: Number(p), offset, appliedThrough: -1 }));
  const total = hasTable ? await countKeys(o.executor, o.registry, view, sel) : 0;
  const latestMs = hasTable ? await latestTakenMs(o.executor, view, sel) : null;
  const time = timeFilter(view, latestMs);
  // The store's watermark moves to the latest event first, so that tiles behind the retention
  // horizon are skipped, not written and trimmed later (the stream path never keeps them either).
  if (latestMs !== null) await target.store.apply({ keys: [], eventCount: 0, maxEventTimeMs: latestMs });
  const builder = new TileBatchBuilder(singleViewRegistry(o.registry, view));
  const batchKeys = o.batchKeys ?? 2_000;
  o.onProgress?.(view.name, progress.keys, total);
  const write = async (keys: string[], events: DecodedEvent[]): Promise<void> => {
    const batch = builder.build(events);
    if (target.kind === 'redis') {
      await target.store.deleteKeys(view.name, keys);
      if (fences.length > 0) {
        const result = await target.store.applyConditional({ ...batch, keys: batch.keys.map((k) => ({ ...k, fences })) });
        if (result.refused.length > 0) {
          throw new TidemarkError('TM_BOOTSTRAP_FAILED', `view ${view.name}: ${result.refused.length} key(s) were written by another writer during the bootstrap (is a materializer of this version running?); rerun tidemark bootstrap`, { view: view.name });
        }
      } else await target.store.apply(batch);
    } else await target.store.apply(batch);
    progress.keys += keys.length;
    progress.events += events.length;
    progress.tiles += batch.keys.reduce((n, k) => n + k.tiles.length, 0);
    progress.checkpoint = keys[keys.length - 1]!;
    await save({});
    o.onProgress?.(view.name, progress.keys, total);
  };
  if (hasTable) {
    let keys: string[] = [];
    let events: DecodedEvent[] = [];
    for await (const k of eventsByKey(o.executor, o.registry, view, sel, progress.checkpoint, time)) {
      keys.push(k.key);
      for (const e of k.events) events.push(e);
      if (keys.length >= batchKeys) {
        await write(keys, events);
        keys = [];
        events = [];
      }
    }
    if (keys.length > 0) await write(keys, events);
  }
  progress.finishedAt = new Date(now()).toISOString();
  await save({ status: 'ready', readyAt: progress.finishedAt, handover: 'pending' });
  return { ...report, keys: progress.keys, tiles: progress.tiles, events: progress.events, fileRowsLeftOut: progress.fileRowsLeftOut, offsets: progress.offsets, fileCutMs: progress.fileCutMs, seconds: (performance.now() - started) / 1000 };
}
