// `tidemark plan`: compare compiled definitions with what the online store records it was
// materialized from (Redis: the `view:<view>` snapshots and `status:<view>@<id>` version states of the meta
// hash; the in-memory store records nothing between runs) and, when one is given, with the events
// the offline store holds per source. Read only: it never writes to any store.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { canonicalJson, formatDurationMs, TidemarkError, withoutPassword, type FeaturePlan, type Registry, type ViewPlan } from '../definitions/index.js';
import { createRedisClient, redisConnectionError, viewLayoutFingerprint, viewNamespace, type RedisConnectionOptions } from '../online/redis.js';
import { readStoredRegistryState, type StoredRegistryState, type ViewSnapshot } from '../online/versions.js';
import { ChdbExecutor } from '../offline/chdb.js';
import { ClickHouseExecutor, type ClickHouseConnectionOptions } from '../offline/clickhouse.js';
import type { OfflineExecutor } from '../offline/executor.js';
import { COMPLETED_LOADS, eventTable, ident, tableExists } from '../offline/tables.js';

export type ViewStatus = 'unchanged' | 'new' | 'changed' | 'removed';

export interface Change<T = unknown> {
  from: T;
  to: T;
}

export interface FeatureChange {
  feature: string;
  /** property -> from/to, in display form (durations as text: `1h`) */
  changes: Record<string, Change<string | number | null>>;
}

export interface ViewChanges {
  featuresAdded: string[];
  featuresRemoved: string[];
  featuresChanged: FeatureChange[];
  /** entity, join keys or the event fields they read */
  key: Change<{ entity: string; joinKeys: string[]; keyFields: string[] }> | null;
  /** The source's name, or (as the snapshot records them) its topic or event-time field. */
  source: Change<SourceRef> | null;
  allowedLateness: Change<string> | null;
  /** The stored tile layout fingerprint differs from the definitions' (the stored tiles cannot be read with them). */
  layout: Change<string | null> | null;
  /** Compiled plan details differ beyond the above (tile groups, retention, value types). */
  otherPlanDetails: boolean;
}

export interface SourceRef {
  name: string;
  topic: string | null;
  eventTimeField: string | null;
}

export interface OfflineEvents {
  source: string;
  /** Events of completed loads; 0 when the table is absent or empty. */
  events: number;
  from: string | null;
  to: string | null;
}

export interface ViewPlanResult {
  view: string;
  status: ViewStatus;
  /** Present for `changed` (and for a snapshot-less view, what could be compared). */
  changes: ViewChanges | null;
  /** Human lines naming each change. */
  summary: string[];
  needsBootstrap: boolean;
  bootstrapReasons: string[];
  whileBootstrapping: string;
  /** What the store records of this view. */
  stored: { layout: string | null; registryVersion: string | null; recordedAt: string | null; keys: number | null; snapshot: boolean } | null;
  offline: OfflineEvents | null;
  /** The definitions' version of the view (`<view>@<id>`, its key namespace) and its status in the store (null: no record). */
  version: { namespace: string; status: string | null } | null;
}

export interface PlanResult {
  definitions: { path: string; registryVersion: string };
  online: { kind: 'redis'; url: string; prefix: string; watermark: string | null; recorded: boolean } | { kind: 'memory'; recorded: false; note: string };
  offline: { location: string } | { location: null; note: string };
  views: ViewPlanResult[];
  counts: Record<ViewStatus, number>;
  changes: boolean;
  /** 0: no changes, 2: changes (Terraform's -detailed-exitcode convention). */
  exitCode: 0 | 2;
}

// ---------------------------------------------------------------------------------------------
// Reading the stores.

/** Read the meta hash of a Redis online store, or fail with TM_STORE_UNREACHABLE within `timeoutMs`. */
export async function readRedisState(url: string, prefix: string, timeoutMs: number, connection: RedisConnectionOptions = {}): Promise<StoredRegistryState> {
  if (prefix.length === 0 || /[{}]/.test(prefix)) {
    throw new TidemarkError('TM_STORE_BAD_CONFIG', `Redis key prefix ${JSON.stringify(prefix)} must be non-empty and contain no { or }`, { prefix });
  }
  const client = createRedisClient(url, { connectTimeout: timeoutMs, disconnectTimeout: 100, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: true }, connection);
  let lastError: Error | null = null;
  client.on('error', (e: Error) => {
    lastError = e;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return await Promise.race([readStoredRegistryState(client, prefix), timeout]);
  } catch (e) {
    const failure = redisConnectionError((lastError as Error | null) ?? e, url, [connection.password]);
    throw new TidemarkError(failure.code, failure.message, { ...failure.details, timeoutMs });
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/**
 * Row count and time range of each source's events in the offline store (completed loads only).
 * Read only: a chDB folder that does not exist is not created (null), and no table is created.
 */
export async function readOfflineEvents(registry: Registry, opts: { clickhouseUrl?: string; clickhouse?: ClickHouseConnectionOptions; dataDir?: string }): Promise<{ location: string; sources: Map<string, OfflineEvents> } | null> {
  let executor: OfflineExecutor;
  if (opts.clickhouseUrl) executor = new ClickHouseExecutor(opts.clickhouseUrl, opts.clickhouse);
  else {
    const dir = resolve(opts.dataDir ?? '.tidemark', 'chdb');
    if (!existsSync(dir)) return null;
    executor = new ChdbExecutor(opts.dataDir ?? '.tidemark');
  }
  try {
    const sources = new Map<string, OfflineEvents>();
    const loads = await tableExists(executor, 'tm_loads');
    for (const source of registry.sources) {
      if (!loads || !(await tableExists(executor, eventTable(source.name)))) {
        sources.set(source.name, { source: source.name, events: 0, from: null, to: null });
        continue;
      }
      const [row] = await executor.rows<{ n: number; lo: number | null; hi: number | null }>(
        `SELECT count() AS n, if(count() = 0, NULL, min(__ts)) AS lo, if(count() = 0, NULL, max(__ts)) AS hi FROM ${ident(eventTable(source.name))} WHERE ${COMPLETED_LOADS}`,
      );
      const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(Number(ms)).toISOString());
      sources.set(source.name, { source: source.name, events: Number(row?.n ?? 0), from: iso(row?.lo), to: iso(row?.hi) });
    }
    return { location: executor.location, sources };
  } finally {
    await executor.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Comparing.

const FEATURE_PROPERTIES = ['agg', 'field', 'window', 'hop', 'ttl', 'quantile', 'type'] as const;

function featureProperties(f: FeaturePlan): Record<(typeof FEATURE_PROPERTIES)[number], string | number | null> {
  const d = (ms: number | null): string | null => (ms === null ? null : formatDurationMs(ms));
  return { agg: f.agg, field: f.field, window: d(f.windowMs), hop: d(f.hopMs), ttl: d(f.ttlMs), quantile: f.quantile ?? null, type: f.valueKind };
}

function describeFeature(f: FeaturePlan): string {
  const quantile = f.quantile === undefined ? '' : `, quantile ${f.quantile}`;
  const span = f.windowMs === null ? `latest${f.ttlMs !== null ? `, ttl ${formatDurationMs(f.ttlMs)}` : ''}` : `window ${formatDurationMs(f.windowMs)}, hop ${formatDurationMs(f.hopMs)}`;
  return `${f.agg}(${f.field ?? ''}${quantile}) ${span}`;
}

function keyOf(v: ViewPlan): { entity: string; joinKeys: string[]; keyFields: string[] } {
  return { entity: v.entity, joinKeys: v.joinKeys, keyFields: v.keyFields };
}

function describeKey(k: { entity: string; joinKeys: string[]; keyFields: string[] }): string {
  return `${k.entity} (${k.joinKeys.map((j, i) => (j === k.keyFields[i] ? j : `${j} <- ${k.keyFields[i]}`)).join(', ')})`;
}

function sameSource(a: SourceRef, b: SourceRef): boolean {
  // A snapshot without source details (null) compares by name only.
  return a.name === b.name && (a.topic === null || b.topic === null || a.topic === b.topic) && (a.eventTimeField === null || b.eventTimeField === null || a.eventTimeField === b.eventTimeField);
}

function describeSource(s: SourceRef): string {
  return `${s.name}${s.topic === null ? '' : ` (topic ${s.topic}, event time ${s.eventTimeField})`}`;
}

export function diffViews(before: ViewPlan, after: ViewPlan, layoutBefore: string | null, layoutAfter: string, sources: { before?: SourceRef | null; after?: SourceRef | null } = {}): ViewChanges {
  const sourceBefore = sources.before ?? { name: before.source, topic: null, eventTimeField: null };
  const sourceAfter = sources.after ?? { name: after.source, topic: null, eventTimeField: null };
  const beforeFeatures = new Map(before.features.map((f) => [f.name, f]));
  const afterFeatures = new Map(after.features.map((f) => [f.name, f]));
  const featuresChanged: FeatureChange[] = [];
  for (const [name, a] of afterFeatures) {
    const b = beforeFeatures.get(name);
    if (!b) continue;
    const pb = featureProperties(b);
    const pa = featureProperties(a);
    const changes: FeatureChange['changes'] = {};
    for (const p of FEATURE_PROPERTIES) if (pb[p] !== pa[p]) changes[p] = { from: pb[p], to: pa[p] };
    if (Object.keys(changes).length > 0) featuresChanged.push({ feature: name, changes });
  }
  const key = canonicalJson(keyOf(before)) === canonicalJson(keyOf(after)) ? null : { from: keyOf(before), to: keyOf(after) };
  const changes: ViewChanges = {
    featuresAdded: after.features.filter((f) => !beforeFeatures.has(f.name)).map((f) => f.name),
    featuresRemoved: before.features.filter((f) => !afterFeatures.has(f.name)).map((f) => f.name),
    featuresChanged,
    key,
    source: sameSource(sourceBefore, sourceAfter) ? null : { from: sourceBefore, to: sourceAfter },
    allowedLateness: before.allowedLatenessMs === after.allowedLatenessMs ? null : { from: formatDurationMs(before.allowedLatenessMs), to: formatDurationMs(after.allowedLatenessMs) },
    layout: layoutBefore === layoutAfter ? null : { from: layoutBefore, to: layoutAfter },
    otherPlanDetails: false,
  };
  const named = changes.featuresAdded.length + changes.featuresRemoved.length + featuresChanged.length > 0 || key !== null || changes.source !== null || changes.allowedLateness !== null;
  // Everything else the plan holds is derived from the above; a difference with none of them named
  // (a compiler change, say: other slots, tile groups, retention) still counts.
  if (!named && canonicalJson(before) !== canonicalJson(after)) changes.otherPlanDetails = true;
  return changes;
}

function hasChanges(c: ViewChanges): boolean {
  return c.featuresAdded.length + c.featuresRemoved.length + c.featuresChanged.length > 0 || c.key !== null || c.source !== null || c.allowedLateness !== null || c.layout !== null || c.otherPlanDetails;
}

function summarize(c: ViewChanges, before: ViewPlan | null, after: ViewPlan): string[] {
  const lines: string[] = [];
  const afterFeatures = new Map(after.features.map((f) => [f.name, f]));
  const beforeFeatures = new Map((before?.features ?? []).map((f) => [f.name, f]));
  for (const name of c.featuresAdded) lines.push(`feature added: ${name}: ${describeFeature(afterFeatures.get(name)!)}`);
  for (const name of c.featuresRemoved) lines.push(`feature removed: ${name}: ${describeFeature(beforeFeatures.get(name)!)}`);
  for (const fc of c.featuresChanged) {
    lines.push(`feature changed: ${fc.feature}: ${Object.entries(fc.changes).map(([p, ch]) => `${p} ${ch.from ?? 'none'} -> ${ch.to ?? 'none'}`).join(', ')}`);
  }
  if (c.key) lines.push(`key changed: ${describeKey(c.key.from)} -> ${describeKey(c.key.to)}`);
  if (c.source) lines.push(`source changed: ${describeSource(c.source.from)} -> ${describeSource(c.source.to)}`);
  if (c.allowedLateness) lines.push(`allowedLateness changed: ${c.allowedLateness.from} -> ${c.allowedLateness.to}`);
  if (c.layout) lines.push(`tile layout changed: ${c.layout.from ?? 'none'} -> ${c.layout.to} (the stored tiles cannot be read with these definitions)`);
  if (c.otherPlanDetails) lines.push('compiled plan details changed (tile groups, slots or retention)');
  return lines;
}

/** Why a view built from empty tiles would answer wrongly for a while: one line per window length, and one for `last`. */
function historyReasons(view: ViewPlan): string[] {
  const byWindow = new Map<number, string[]>();
  const latest: FeaturePlan[] = [];
  for (const f of view.features) {
    if (f.windowMs !== null) byWindow.set(f.windowMs, [...(byWindow.get(f.windowMs) ?? []), f.name]);
    else latest.push(f);
  }
  const reasons = [...byWindow.entries()]
    .sort(([a], [b]) => b - a)
    .map(([ms, names]) => `${formatDurationMs(ms)} windows (${names.join(', ')}) would be empty at first and incomplete for ${formatDurationMs(ms)}`);
  if (latest.length > 0) {
    const ttls = latest.filter((f) => f.ttlMs !== null).map((f) => f.ttlMs!);
    const until = ttls.length === latest.length ? ` (up to ${formatDurationMs(Math.max(...ttls))}, the longest ttl)` : '';
    reasons.push(`latest values (${latest.map((f) => f.name).join(', ')}) would be missing for each key until its next event${until}`);
  }
  return reasons;
}

export interface PlanInputs {
  registry: Registry;
  definitionsPath: string;
  /** null: the in-memory store (nothing recorded). */
  stored: StoredRegistryState | null;
  redis?: { url: string; prefix: string };
  offline: { location: string; sources: Map<string, OfflineEvents> } | null;
  offlineNote?: string;
  /** Restrict to these views (already checked to exist). */
  views?: readonly string[];
}

export function computePlan(inputs: PlanInputs): PlanResult {
  const { registry, stored } = inputs;
  const defined = new Map(registry.views.map((v) => [v.name, v]));
  const storedNames = stored ? [...new Set([...Object.keys(stored.layouts), ...Object.keys(stored.snapshots)])] : [];
  const names = [...registry.views.map((v) => v.name), ...storedNames.filter((n) => !defined.has(n)).sort()].filter((n) => !inputs.views || inputs.views.includes(n));
  const offlineOf = (source: string | undefined): OfflineEvents | null => (source === undefined ? null : (inputs.offline?.sources.get(source) ?? null));

  const views = names.map((name): ViewPlanResult => {
    const after = defined.get(name) ?? null;
    const snapshot: ViewSnapshot | null = stored?.snapshots[name] ?? null;
    const storedLayout = stored?.layouts[name] ?? null;
    const storedInfo =
      stored && (storedLayout !== null || snapshot !== null)
        ? { layout: storedLayout, registryVersion: snapshot?.registryVersion ?? null, recordedAt: snapshot?.recordedAt ?? null, keys: stored.keys[name] ?? null, snapshot: snapshot !== null }
        : null;
    if (!after) {
      return {
        view: name,
        status: 'removed',
        changes: null,
        summary: [`no longer defined${snapshot ? ` (recorded by registry ${snapshot.registryVersion})` : ''}`],
        needsBootstrap: false,
        bootstrapReasons: [],
        whileBootstrapping: `serving keeps answering ${name} until apply removes it; its keys stay in the store until deleted`,
        stored: storedInfo,
        offline: offlineOf(snapshot?.view.source),
        version: snapshot ? { namespace: snapshot.namespace, status: stored?.statuses[snapshot.namespace] ?? null } : null,
      };
    }
    const layoutAfter = viewLayoutFingerprint(after);
    const offline = offlineOf(after.source);
    const version = { namespace: viewNamespace(after), status: stored?.statuses[viewNamespace(after)] ?? null };
    if (storedInfo === null) {
      return {
        view: name,
        status: 'new',
        changes: null,
        summary: [`${after.features.length} feature(s) of ${after.entity}, source ${after.source}`],
        needsBootstrap: true,
        bootstrapReasons: historyReasons(after),
        whileBootstrapping: stored
          ? `once applied, reads of ${name} answer 503 (not ready) until its bootstrap completes`
          : `the embedded store is built by replaying the events at every start (tidemark quickstart), before it serves: ${name} is served once the replay is done`,
        stored: null,
        offline,
        version,
      };
    }
    // storedInfo is non-null only with a snapshot (the layouts are read from the snapshots).
    const sourceAfter = registry.sources.find((s) => s.name === after.source);
    const changes = diffViews(snapshot!.view, after, storedLayout, layoutAfter, {
      before: snapshot!.source ?? null,
      after: sourceAfter ? { name: sourceAfter.name, topic: sourceAfter.topic, eventTimeField: sourceAfter.eventTimeField } : null,
    });
    const summary = summarize(changes, snapshot!.view, after);
    if (!hasChanges(changes)) {
      const status = version?.status ?? null;
      if (stored && status !== 'ready') {
        // Applied (tidemark apply) but not built yet, or a record the store lost.
        const why = status === null ? `version ${version!.namespace} has no record in the store (its data was lost?): run tidemark apply, then tidemark bootstrap` : `version ${version!.namespace} is applied and ${status}: its tiles are not built yet (tidemark bootstrap)`;
        return { view: name, status: 'unchanged', changes: null, summary: [...summary, why], needsBootstrap: true, bootstrapReasons: [why], whileBootstrapping: `reads of ${name} by servers of these definitions answer 503 TM_STORE_NEEDS_BOOTSTRAP until its bootstrap completes`, stored: storedInfo, offline, version };
      }
      return { view: name, status: 'unchanged', changes: null, summary, needsBootstrap: false, bootstrapReasons: [], whileBootstrapping: 'nothing changes for serving', stored: storedInfo, offline, version };
    }
    // A new version of a changed view is built beside the old one (its tiles start empty), so it
    // needs every feature's history, not only the changed ones'; a change of allowedLateness
    // alone only moves the retention horizon from now on.
    const latenessOnly = changes.allowedLateness !== null && changes.featuresAdded.length + changes.featuresRemoved.length + changes.featuresChanged.length === 0 && !changes.key && !changes.source && !changes.layout && !changes.otherPlanDetails;
    return {
      view: name,
      status: 'changed',
      changes,
      summary,
      needsBootstrap: !latenessOnly,
      bootstrapReasons: latenessOnly ? [] : [`the new version's tiles start empty: ${historyReasons(after).join('; ')}`],
      whileBootstrapping: latenessOnly ? 'nothing changes for serving but the retention horizon from now on' : `servers of the current definitions (registry ${snapshot!.registryVersion}) keep serving the current version of ${name}; servers of these definitions answer 503 TM_STORE_NEEDS_BOOTSTRAP for it until tidemark apply and tidemark bootstrap have built the new version`,
      stored: storedInfo,
      offline,
      version,
    };
  });
  const counts: Record<ViewStatus, number> = { unchanged: 0, new: 0, changed: 0, removed: 0 };
  for (const v of views) counts[v.status]++;
  const changed = counts.new + counts.changed + counts.removed > 0;
  return {
    definitions: { path: inputs.definitionsPath, registryVersion: registry.version },
    online:
      stored && inputs.redis
        ? { kind: 'redis', url: withoutPassword(inputs.redis.url), prefix: inputs.redis.prefix, watermark: stored.watermarkMs === null ? null : new Date(stored.watermarkMs).toISOString(), recorded: storedNames.length > 0 }
        : { kind: 'memory', recorded: false, note: 'the in-memory store keeps nothing between runs (tidemark quickstart replays its file at every start), so there is nothing to compare with: every view is new' },
    offline: inputs.offline ? { location: inputs.offline.location } : { location: null, note: inputs.offlineNote ?? 'no offline store given (--data-dir or --clickhouse-url)' },
    views,
    counts,
    changes: changed,
    exitCode: changed ? 2 : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Printing.

export function formatPlan(plan: PlanResult): string[] {
  const lines: string[] = [];
  lines.push(`tidemark plan: definitions ${plan.definitions.path} (registry ${plan.definitions.registryVersion})`);
  if (plan.online.kind === 'redis') {
    lines.push(`online store: Redis ${plan.online.url} prefix ${plan.online.prefix}, watermark ${plan.online.watermark ?? 'none'}${plan.online.recorded ? '' : ', no view recorded yet'}`);
  } else lines.push(`online store: in-memory: ${plan.online.note}`);
  lines.push(plan.offline.location === null ? `offline store: ${plan.offline.note}` : `offline store: ${plan.offline.location}`);
  for (const v of plan.views) {
    lines.push('');
    lines.push(`view ${v.view}: ${v.status}`);
    for (const s of v.summary) lines.push(`  ${s}`);
    if (v.stored) {
      const recorded = v.stored.snapshot ? `registry ${v.stored.registryVersion}, recorded ${v.stored.recordedAt}` : 'no snapshot';
      lines.push(`  stored: layout ${v.stored.layout ?? 'none'}, ${recorded}, ${v.stored.keys ?? 0} keys`);
    }
    if (v.status === 'new' || v.status === 'changed') {
      lines.push(`  needs bootstrap: ${v.needsBootstrap ? 'yes' : 'no'}`);
      for (const r of v.bootstrapReasons) lines.push(`    ${r}`);
    }
    if (v.status !== 'unchanged') lines.push(`  serving meanwhile: ${v.whileBootstrapping}`);
    if (v.offline) {
      lines.push(
        v.offline.events > 0
          ? `  offline events of source ${v.offline.source}: ${v.offline.events.toLocaleString('en-US')} from ${v.offline.from} to ${v.offline.to}`
          : `  offline events of source ${v.offline.source}: none${v.needsBootstrap ? ' (a bootstrap needs them: load them with tidemark backfill or offline-sink)' : ''}`,
      );
    }
  }
  lines.push('');
  const { counts } = plan;
  lines.push(
    plan.changes
      ? `plan: ${counts.new} new, ${counts.changed} changed, ${counts.removed} removed, ${counts.unchanged} unchanged`
      : `plan: no changes (${counts.unchanged} unchanged)`,
  );
  return lines;
}
