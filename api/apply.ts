// `tidemark apply`: record a registry in the Redis online store (online/versions.ts). Each view
// whose version has no record gets one, `pending` until `tidemark bootstrap` builds its tiles; the
// view's snapshot moves to the new version (what `plan` compares with next); the registry joins the
// history. Old versions keep their keys and records, so servers and materializers of the previous
// registry keep working until they are switched; `--prune` then deletes the keys of versions the
// latest registry does not use, in bounded SCAN batches.
import { Cluster, type Redis } from 'ioredis';
import type { Registry } from '../definitions/index.js';
import {
  appendRegistryHistory,
  metaKeyOf,
  newVersionState,
  readStoredRegistryState,
  snapshotOf,
  viewNamespace,
  viewSnapshotField,
  writeVersionState,
  type RedisClient,
  type RegistryHistoryEntry,
} from '../online/index.js';
import type { PlanResult } from './plan.js';

export interface ApplyOutcome {
  /** The history entry written, or null when this registry was already the latest applied. */
  entry: RegistryHistoryEntry | null;
  /** Views whose version was created pending (they need `tidemark bootstrap`). */
  pending: string[];
  /** Views whose version exists already (with its status). */
  existing: { view: string; namespace: string; status: string }[];
  /** Views no longer defined: their snapshot is dropped; their keys stay until --prune. */
  removed: string[];
  pruned: PruneOutcome | null;
}

export interface PruneOutcome {
  namespaces: string[];
  keysDeleted: number;
}

export async function applyRegistry(client: RedisClient, prefix: string, registry: Registry, plan: PlanResult, opts: { definitions: string; prune?: boolean; nowMs?: number; scanCount?: number }): Promise<ApplyOutcome> {
  const now = opts.nowMs ?? Date.now();
  const before = await readStoredRegistryState(client, prefix);
  const outcome: ApplyOutcome = { entry: null, pending: [], existing: [], removed: [], pruned: null };
  for (const view of registry.views) {
    const ns = viewNamespace(view);
    const status = before.statuses[ns];
    if (status === undefined) {
      await writeVersionState(client, prefix, newVersionState(registry, view, 'apply', now));
      outcome.pending.push(view.name);
    } else outcome.existing.push({ view: view.name, namespace: ns, status });
    // The view's current version is now this one (plan compares with it).
    if (before.snapshots[view.name]?.namespace !== ns) await client.hset(metaKeyOf(prefix), viewSnapshotField(view.name), JSON.stringify(snapshotOf(registry, view, now)));
  }
  const defined = new Set(registry.views.map((v) => v.name));
  for (const name of Object.keys(before.snapshots)) {
    if (defined.has(name)) continue;
    await client.hdel(metaKeyOf(prefix), viewSnapshotField(name));
    outcome.removed.push(name);
  }
  const latest = before.history[before.history.length - 1];
  if (latest?.registryVersion !== registry.version) {
    outcome.entry = {
      version: (latest?.version ?? 0) + 1,
      registryVersion: registry.version,
      appliedAt: new Date(now).toISOString(),
      definitions: opts.definitions,
      views: Object.fromEntries(registry.views.map((v) => [v.name, viewNamespace(v)])),
      changes: plan.views.filter((v) => v.status !== 'unchanged').map((v) => `${v.view}: ${v.status}${v.summary.length > 0 ? ` (${v.summary.join('; ')})` : ''}`),
    };
    await appendRegistryHistory(client, prefix, outcome.entry);
  }
  if (opts.prune) outcome.pruned = await pruneVersions(client, prefix, new Set(registry.views.map((v) => viewNamespace(v))), opts.scanCount ?? 500);
  return outcome;
}

/** Namespaces the meta hash records (any status, version, fp or keys field). */
export function recordedNamespaces(meta: Record<string, string>): string[] {
  const names = new Set<string>();
  for (const field of Object.keys(meta)) {
    const m = /^(?:status|version|fp|keys):(.+@.+)$/.exec(field);
    if (m) names.add(m[1]!);
  }
  return [...names].sort();
}

/**
 * Delete the keys and records of every version not in `keep`: SCAN (never KEYS) each master for
 * `P:{<namespace>:*`, UNLINK per batch of `count`, then drop the version's meta fields.
 */
export async function pruneVersions(client: RedisClient, prefix: string, keep: ReadonlySet<string>, count: number): Promise<PruneOutcome> {
  const namespaces = recordedNamespaces(await client.hgetall(metaKeyOf(prefix))).filter((ns) => !keep.has(ns));
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  let keysDeleted = 0;
  for (const ns of namespaces) {
    // Glob-escape the namespace: `[`, `]`, `*`, `?` and `\` are special in MATCH (`{` is not).
    const pattern = `${prefix}:{${ns}:*`.replace(/[[\]*?\\]/g, (c) => `\\${c}`).replace(/\\\*$/, '*');
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
        cursor = next;
        // Keys of one entity share a slot; one UNLINK per key is safe on a Cluster.
        if (keys.length > 0) keysDeleted += (await Promise.all(keys.map((k) => node.unlink(k)))).reduce((a, b) => a + b, 0);
      } while (cursor !== '0');
    }
    await client.hdel(metaKeyOf(prefix), `status:${ns}`, `version:${ns}`, `fp:${ns}`, `keys:${ns}`);
  }
  return { namespaces, keysDeleted };
}
