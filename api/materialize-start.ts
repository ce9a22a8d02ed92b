// What `tidemark materialize` checks before it joins its consumer group (docs/operations.md,
// "Definition changes"): every view version of its registry must be ready in the Redis store, and
// a version bootstrapped since the group last ran must get the events after the bootstrap's offsets.
//
// - A group with no committed offset reads the topics from the beginning: it claims the versions
//   nothing recorded (they are built from the first event).
// - A group with committed offsets and a version with no record: the version was never applied
//   (TM_STORE_NEEDS_BOOTSTRAP), or, when the store records no version at all, Redis lost its data
//   (TM_STORE_STATE_LOST). Either way nothing is written.
// - A version whose bootstrap finished (handover pending): the materializer reads each partition
//   again from the bootstrap's offset + 1 where the group had committed past it (it seeks there
//   before writing anything of the partition: MaterializerOptions.rewind). Every key's fences make
//   the records read twice harmless for the other views (ingest/fences.ts): their keys refuse what
//   they hold.
import { TidemarkError, type Registry } from '../definitions/index.js';
import type { KafkaConfig } from 'kafkajs';
import { createKafkaClient } from '../ingest/index.js';
import { claimStreamVersions, readStoredRegistryState, viewNamespace, writeVersionState, type RedisClient, type VersionState } from '../online/index.js';

export interface MaterializerStartOptions {
  client: RedisClient;
  prefix: string;
  registry: Registry;
  brokers: string[];
  /** kafkajs's TLS and SASL options (kafkaSecurityConfig). */
  security?: Pick<KafkaConfig, 'ssl' | 'sasl'>;
  groupId: string;
  log?: (message: string, details?: Record<string, unknown>) => void;
}

export interface MaterializerStartReport {
  claimed: string[];
  /** `topic:partition` -> the offset to read it again from (MaterializerOptions.rewind) */
  rewind: Map<string, number>;
}

export async function prepareMaterializerStart(o: MaterializerStartOptions): Promise<MaterializerStartReport> {
  const log = o.log ?? (() => undefined);
  const topics = [...new Set(o.registry.sources.map((s) => s.topic))];
  const kafka = createKafkaClient(o.brokers, `tidemark-materializer-${o.groupId}-start`, undefined, undefined, o.security);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const committed = new Map<string, Map<number, number>>();
    for (const entry of await admin.fetchOffsets({ groupId: o.groupId, topics })) {
      const byPartition = new Map<number, number>();
      for (const p of entry.partitions) if (Number(p.offset) >= 0) byPartition.set(p.partition, Number(p.offset));
      committed.set(entry.topic, byPartition);
    }
    const fresh = [...committed.values()].every((m) => m.size === 0);
    const report: MaterializerStartReport = { claimed: [], rewind: new Map() };
    if (fresh) report.claimed = await claimStreamVersions(o.client, o.prefix, o.registry);

    const state = await readStoredRegistryState(o.client, o.prefix);
    const anyVersion = Object.keys(state.statuses).length > 0;
    for (const view of o.registry.views) {
      const ns = viewNamespace(view);
      const status = state.statuses[ns];
      if (status === 'ready') continue;
      if (status === undefined && !anyVersion) {
        throw new TidemarkError(
          'TM_STORE_STATE_LOST',
          `consumer group ${o.groupId} has committed offsets, but Redis prefix ${o.prefix} records no view version (its data was lost: flushed, or restarted without persistence); nothing was written. Repair: tidemark apply --definitions <dir>, then tidemark bootstrap --definitions <dir>, then start the materializer again`,
          { group: o.groupId, prefix: o.prefix },
        );
      }
      throw new TidemarkError(
        'TM_STORE_NEEDS_BOOTSTRAP',
        status === undefined
          ? `view ${view.name}: version ${ns} was never applied to Redis prefix ${o.prefix}, and consumer group ${o.groupId} already committed offsets, so the stream alone would miss its history. Run: tidemark apply --definitions <dir>, then tidemark bootstrap --definitions <dir> --views ${view.name}`
          : `view ${view.name}: version ${ns} is ${status}: its tiles are not built yet. Run: tidemark bootstrap --definitions <dir> --views ${view.name}`,
        { view: view.name, namespace: ns, status: status ?? null },
      );
    }

    // Rewind to the bootstraps' offsets where the group is past them.
    const handovers: VersionState[] = o.registry.views.map((v) => state.versions[viewNamespace(v)]).filter((v): v is VersionState => v !== undefined && v.handover === 'pending' && v.bootstrap !== null);
    if (handovers.length === 0) return report;
    const targets = new Map<string, Map<number, number>>();
    const topicOffsets = new Map<string, Awaited<ReturnType<typeof admin.fetchTopicOffsets>>>();
    for (const version of handovers) {
      const view = o.registry.views.find((v) => v.name === version.view)!;
      const source = o.registry.sources.find((s) => s.name === view.source)!;
      const covered = version.bootstrap!.offsets[source.name] ?? {};
      if (!topicOffsets.has(source.topic)) topicOffsets.set(source.topic, await admin.fetchTopicOffsets(source.topic));
      const partitions = topicOffsets.get(source.topic)!;
      const byPartition = targets.get(source.topic) ?? new Map<number, number>();
      for (const p of partitions) {
        // A partition the bootstrap holds nothing of is read from its start.
        const from = covered[String(p.partition)] === undefined ? Number(p.low) : covered[String(p.partition)]! + 1;
        byPartition.set(p.partition, Math.min(byPartition.get(p.partition) ?? Number.POSITIVE_INFINITY, from));
      }
      targets.set(source.topic, byPartition);
    }
    for (const [topic, byPartition] of targets) {
      const at = committed.get(topic) ?? new Map<number, number>();
      for (const [p, from] of byPartition) if (at.has(p) && at.get(p)! > from) report.rewind.set(`${topic}:${p}`, from);
    }
    if (report.rewind.size === 0) {
      for (const version of handovers) await writeVersionState(o.client, o.prefix, { ...version, handover: 'done' });
    } else log('the consumer group will be rewound to the bootstrap offsets', { group: o.groupId, rewind: Object.fromEntries(report.rewind) });
    return report;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Record that a rewound partition's first batch is committed: once every rewound partition of a
 * version's topic is, its hand-over is done (the next start rewinds nothing). Two members
 * recording at once may lose one partition's mark; that partition is then rewound again at the
 * next start, which the fences make harmless.
 */
export async function recordRewound(client: RedisClient, prefix: string, registry: Registry, rewind: ReadonlyMap<string, number>, topic: string, partition: number): Promise<void> {
  const state = await readStoredRegistryState(client, prefix);
  for (const view of registry.views) {
    const version = state.versions[viewNamespace(view)];
    const source = registry.sources.find((s) => s.name === view.source)!;
    if (!version || version.handover !== 'pending' || source.topic !== topic) continue;
    const done = [...new Set([...(version.handoverDone ?? []), partition])].sort((a, b) => a - b);
    const all = [...rewind.keys()].filter((k) => k.startsWith(`${topic}:`)).map((k) => Number(k.slice(topic.length + 1)));
    await writeVersionState(client, prefix, { ...version, handoverDone: done, handover: all.every((p) => done.includes(p)) ? 'done' : 'pending' });
  }
}
