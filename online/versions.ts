// View versions and the registry history of a Redis online store, kept in its meta hash: what
// `tidemark plan`, `apply`, `bootstrap`, `materialize` and `serve` read and write.
//
// A view version is one compiled shape of a view; its keys live under their own namespace
// `<view>@<version id>` (online/redis.ts, viewNamespace), so a changed view's new version is built
// beside the old one and readers of either registry keep working. Fields of the meta hash P:{meta}:
//
//   status:<namespace>   `pending` (applied, tiles not built), `bootstrapping`, or `ready`: what
//                        serving and the materializer check (RedisOnlineStore requireReadyVersions)
//   version:<namespace>  VersionState (JSON): created when and by which registry, the bootstrap's
//                        offsets and progress, whether the materializer still has to rewind to them
//   view:<view>          ViewSnapshot (JSON) of the view's current version: the one applied last
//                        (tidemark apply) or, never applied, the one first materialized
//   fp:<namespace>, keys:<namespace>   the version's layout fingerprint and key count (redis.ts)
//
// and the list P:{meta}:history, one RegistryHistoryEntry (JSON) per apply, oldest first.
//
// A Redis that lost its data (flushed, restarted without persistence) has no status fields: a
// materializer whose consumer group has committed offsets then refuses to write (TM_STORE_STATE_LOST)
// rather than building windows from the middle of the stream.
import type { Registry, ViewPlan } from '../definitions/index.js';
import { viewLayoutFingerprint, viewNamespace, type RedisClient } from './redis.js';

export type VersionStatus = 'pending' | 'bootstrapping' | 'ready';

/** `view:<view>`: the view plan of the view's current version. */
export interface ViewSnapshot {
  /** Version of the registry that recorded it. */
  registryVersion: string;
  recordedAt: string;
  /** The layout fingerprint of `view`. */
  layout: string;
  /** Its key namespace `<view>@<version id>`. */
  namespace: string;
  view: ViewPlan;
  source: { name: string; topic: string; eventTimeField: string } | null;
}

/** What a bootstrap of a version covers and how far it got. */
export interface BootstrapProgress {
  /** Per source: partition -> the highest Kafka offset whose events the tiles hold (offline-sink rows). */
  offsets: Record<string, Record<string, number>>;
  /** File rows (no offset) are taken only before this event time (ms); null: all of them. */
  fileCutMs: number | null;
  startedAt: string;
  /** The last entity key id built (keys are built in ascending order); null before the first batch. */
  checkpoint: string | null;
  keys: number;
  tiles: number;
  events: number;
  /** File rows left out because they are at or after the cut. */
  fileRowsLeftOut: number;
  finishedAt: string | null;
}

export interface VersionState {
  namespace: string;
  view: string;
  status: VersionStatus;
  /** `stream`: claimed by a materializer starting its consumer group from the topics' beginning; `apply`: created by tidemark apply. */
  origin: 'stream' | 'apply';
  registryVersion: string;
  createdAt: string;
  readyAt: string | null;
  bootstrap: BootstrapProgress | null;
  /**
   * `pending` after a bootstrap until a materializer has rewound its consumer group to the
   * bootstrap's offsets (so the stream continues right after what the tiles hold); then `done`.
   */
  handover: 'pending' | 'done' | null;
  /** Partitions whose rewind is committed while the hand-over is pending. */
  handoverDone?: number[];
}

export interface RegistryHistoryEntry {
  /** 1, 2, ... in apply order. */
  version: number;
  /** The registry's content hash (definitions hash). */
  registryVersion: string;
  appliedAt: string;
  /** The definitions path given to apply. */
  definitions: string;
  /** view -> the namespace of its version in this registry. */
  views: Record<string, string>;
  /** One line per view that changed, as plan printed it. */
  changes: string[];
}

/** What the meta hash records of a store (read only). */
export interface StoredRegistryState {
  /** view -> the layout fingerprint of its current version (from its snapshot) */
  layouts: Record<string, string>;
  /** view -> its `view:<view>` snapshot (a field that does not parse is left out and named in `unreadable`) */
  snapshots: Record<string, ViewSnapshot>;
  /** namespace -> status */
  statuses: Record<string, VersionStatus>;
  /** namespace -> its version record */
  versions: Record<string, VersionState>;
  unreadable: string[];
  /** view -> entity keys of its current version */
  keys: Record<string, number>;
  watermarkMs: number | null;
  history: RegistryHistoryEntry[];
}

export function metaKeyOf(prefix: string): string {
  return `${prefix}:{meta}`;
}

export function historyKeyOf(prefix: string): string {
  return `${prefix}:{meta}:history`;
}

export function viewSnapshotField(view: string): string {
  return `view:${view}`;
}

export function snapshotOf(registry: Registry, view: ViewPlan, recordedAtMs: number): ViewSnapshot {
  const source = registry.sources.find((s) => s.name === view.source);
  return {
    registryVersion: registry.version,
    recordedAt: new Date(recordedAtMs).toISOString(),
    layout: viewLayoutFingerprint(view),
    namespace: viewNamespace(view),
    view,
    source: source ? { name: source.name, topic: source.topic, eventTimeField: source.eventTimeField } : null,
  };
}

export function newVersionState(registry: Registry, view: ViewPlan, origin: VersionState['origin'], atMs: number): VersionState {
  const ready = origin === 'stream';
  const at = new Date(atMs).toISOString();
  return { namespace: viewNamespace(view), view: view.name, status: ready ? 'ready' : 'pending', origin, registryVersion: registry.version, createdAt: at, readyAt: ready ? at : null, bootstrap: null, handover: null };
}

export async function readStoredRegistryState(client: RedisClient, prefix: string): Promise<StoredRegistryState> {
  const [meta, history] = await Promise.all([client.hgetall(metaKeyOf(prefix)), client.lrange(historyKeyOf(prefix), 0, -1)]);
  const state: StoredRegistryState = { layouts: {}, snapshots: {}, statuses: {}, versions: {}, unreadable: [], keys: {}, watermarkMs: meta.watermark === undefined ? null : Number(meta.watermark), history: [] };
  const keysByNamespace = new Map<string, number>();
  const parse = <T>(field: string, value: string): T | null => {
    try {
      return JSON.parse(value) as T;
    } catch {
      state.unreadable.push(field);
      return null;
    }
  };
  for (const [field, value] of Object.entries(meta)) {
    const colon = field.indexOf(':');
    const [kind, name] = [field.slice(0, colon), field.slice(colon + 1)];
    if (kind === 'keys') keysByNamespace.set(name, Number(value));
    else if (kind === 'status') state.statuses[name] = value as VersionStatus;
    else if (kind === 'version') {
      const v = parse<VersionState>(field, value);
      if (v) state.versions[name] = v;
    } else if (kind === 'view') {
      const snapshot = parse<ViewSnapshot>(field, value);
      if (snapshot) {
        state.snapshots[name] = snapshot;
        state.layouts[name] = snapshot.layout;
      }
    }
  }
  for (const [view, snapshot] of Object.entries(state.snapshots)) state.keys[view] = keysByNamespace.get(snapshot.namespace) ?? 0;
  history.forEach((text, i) => {
    const entry = parse<RegistryHistoryEntry>(`history[${i}]`, text);
    if (entry) state.history.push(entry);
  });
  return state;
}

/** Write a version's record and status together (one HSET). */
export async function writeVersionState(client: RedisClient, prefix: string, state: VersionState): Promise<void> {
  await client.hset(metaKeyOf(prefix), `status:${state.namespace}`, state.status, `version:${state.namespace}`, JSON.stringify(state));
}

export async function readVersionState(client: RedisClient, prefix: string, namespace: string): Promise<VersionState | null> {
  const text = await client.hget(metaKeyOf(prefix), `version:${namespace}`);
  return text === null ? null : (JSON.parse(text) as VersionState);
}

/**
 * A materializer starting its consumer group from the beginning of the topics builds every view
 * from its first event: claim each view version with no record as ready (HSETNX, so a version
 * applied meanwhile keeps its record), and record the snapshot of a view that has none.
 */
export async function claimStreamVersions(client: RedisClient, prefix: string, registry: Registry, atMs: number = Date.now()): Promise<string[]> {
  const meta = metaKeyOf(prefix);
  const claimed: string[] = [];
  for (const view of registry.views) {
    const state = newVersionState(registry, view, 'stream', atMs);
    if ((await client.hsetnx(meta, `version:${state.namespace}`, JSON.stringify(state))) === 1) {
      await client.hset(meta, `status:${state.namespace}`, 'ready');
      claimed.push(view.name);
    }
    await client.hsetnx(meta, viewSnapshotField(view.name), JSON.stringify(snapshotOf(registry, view, atMs)));
  }
  return claimed;
}

export async function appendRegistryHistory(client: RedisClient, prefix: string, entry: RegistryHistoryEntry): Promise<void> {
  await client.rpush(historyKeyOf(prefix), JSON.stringify(entry));
}
