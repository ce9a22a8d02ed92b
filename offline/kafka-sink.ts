// The offline store's Kafka sink: a consumer group of its own (default `tidemark-offline`) that
// appends stream events to the same event tables as file loads, in batches, effectively once.
//
// Why a redelivered record is never stored twice: the events of a partition are stored with
// __load = `kafka:<topic>:<partition>` and __offset = their Kafka offset, and one consumer of the
// group owns a partition at a time. Before a batch is inserted, the sink reads the highest offset
// already stored for that partition and drops every record at or below it; each batch is one
// INSERT (atomic in MergeTree), and offsets are committed only after it succeeded. A crash after
// the insert and before the commit redelivers records the fence then drops. Bad events are written
// to tm_dead_letters before the batch's events: a crash in between re-writes dead letters (they are
// diagnostics, deduplicated by (load_id, position) when read) but never events. With
// `featureLogTopic`, the feature log (`<prefix>.feature_log`) is appended the same way to
// tm_feature_log_records and tm_prediction_log, its bad records to tm_dead_letters (TM_LOG_BAD_RECORD;
// the lines of one message share its offset as their position, and their reason names the line:
// deduplicate those by (load_id, position, reason)).
//
// On a sharded store (offline/shards.ts) each event goes to the shards its keys name, and the
// fence is kept per shard: a batch is one INSERT per shard, so after a crash between two shards'
// inserts, the redelivered records are dropped where they are stored and stored where they are not.
// The feature log and dead letters go to the home shard.
import { Kafka, logLevel, type Consumer, type EachBatchPayload, type KafkaConfig } from 'kafkajs';
import { TidemarkError, type CompiledDefinitions, type SourcePlan } from '../definitions/index.js';
import { decodeFeatureLogRecord, EventDecoder, featureLogLinesOf, type BadEvent, type FeatureLogRecord, type FeatureSetRecord } from '../ingest/index.js';
import { featureLogDeadLetterRow, insertFeatureLogRecords, storedFeatureSets } from './feature-log.js';
import type { OfflineExecutor } from './executor.js';
import { deadLetterRow, eventRow, shardSetOf, type EventTarget } from './load.js';
import { eventRowShards, sourcePlacements, type ShardSet } from './shards.js';
import { eventTable, FEATURE_LOG_TABLE, ident, keyFieldsOf, PREDICTION_LOG_TABLE } from './tables.js';

export interface OfflineKafkaSinkOptions {
  brokers: string[];
  /** kafkajs's TLS and SASL options (ingest's kafkaSecurityConfig); default plaintext, no SASL. */
  security?: Pick<KafkaConfig, 'ssl' | 'sasl'>;
  groupId?: string;
  clientId?: string;
  /** Wall time for the future-skew rule (tests). */
  nowMs?: () => number;
  /** Also append this feature-log topic (`<prefix>.feature_log`) to tm_feature_log_records and tm_prediction_log. */
  featureLogTopic?: string;
}

export interface OfflineKafkaSinkStats {
  batches: number;
  events: number;
  badEvents: number;
  /** Records dropped because they were stored already (redelivery). */
  redelivered: number;
  /** Feature-log records stored, and those sent to tm_dead_letters (TM_LOG_BAD_RECORD). */
  logRecords: number;
  badLogRecords: number;
}

export function kafkaLoadId(topic: string, partition: number): string {
  return `kafka:${topic}:${partition}`;
}

export class OfflineKafkaSink {
  readonly stats: OfflineKafkaSinkStats = { batches: 0, events: 0, badEvents: 0, redelivered: 0, logRecords: 0, badLogRecords: 0 };
  private readonly consumer: Consumer;
  private readonly sources = new Map<string, { plan: SourcePlan; decoder: EventDecoder; keyFields: string[]; shardsOf: (row: Record<string, unknown>) => number[] }>();
  /** Highest stored offset per load id, read from the table when a partition is (re)assigned. */
  private readonly fences = new Map<string, number>();
  /** The feature sets stored (read from the store at the first feature-log batch, then kept up to date): a version-3 read is checked against its set. */
  private featureSets: Map<string, FeatureSetRecord> | null = null;
  private readonly registered = new Set<string>();
  private readonly featureLogTopic: string | null;

  private readonly shards: ShardSet;
  /** The home shard: the feature log and dead letters. */
  private readonly executor: OfflineExecutor;

  constructor(
    target: EventTarget,
    private readonly compiled: CompiledDefinitions,
    opts: OfflineKafkaSinkOptions,
  ) {
    this.shards = shardSetOf(target);
    this.executor = this.shards.home;
    this.featureLogTopic = opts.featureLogTopic ?? null;
    for (const source of compiled.registry.sources) {
      this.sources.set(source.topic, {
        plan: source,
        decoder: new EventDecoder(compiled, source.name, opts.nowMs),
        keyFields: keyFieldsOf(compiled.registry, source),
        shardsOf: eventRowShards(sourcePlacements(compiled.registry, source), this.shards.count),
      });
    }
    const kafka = new Kafka({ clientId: opts.clientId ?? 'tidemark-offline-sink', brokers: opts.brokers, logLevel: logLevel.NOTHING, retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2000 }, ...opts.security });
    this.consumer = kafka.consumer({ groupId: opts.groupId ?? 'tidemark-offline', sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 200 });
    // After a rebalance another member may have written: read fences again.
    this.consumer.on(this.consumer.events.GROUP_JOIN, () => this.fences.clear());
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [...this.sources.keys(), ...(this.featureLogTopic === null ? [] : [this.featureLogTopic])], fromBeginning: true });
    await this.consumer.run({ eachBatchAutoResolve: false, autoCommit: true, eachBatch: (payload) => this.onBatch(payload) });
  }

  async stop(): Promise<void> {
    await this.consumer.disconnect();
  }

  /** The highest offset of a partition (load id) stored in a table of a shard (default the home shard). */
  private async fence(table: string, loadId: string, shard = 0): Promise<number> {
    const known = this.fences.get(fenceKey(table, loadId, shard));
    if (known !== undefined) return known;
    const [row] = await this.shards.on(shard, (executor) => executor.rows<{ n: number; top: number }>(`SELECT count() AS n, max(__offset) AS top FROM ${ident(table)} WHERE __load = {id:String}`, { id: loadId }));
    const fence = row && Number(row.n) > 0 ? Number(row.top) : -1;
    this.fences.set(fenceKey(table, loadId, shard), fence);
    return fence;
  }

  /**
   * A batch of the feature-log topic: reads and predictions are fenced per table like events (a
   * record at or below the table's highest stored offset of this partition is a redelivery); bad
   * records go to tm_dead_letters with TM_LOG_BAD_RECORD, the field and the reason.
   */
  private async onFeatureLogBatch({ batch, resolveOffset, heartbeat }: EachBatchPayload): Promise<void> {
    const loadId = kafkaLoadId(batch.topic, batch.partition);
    const readFence = await this.fence(FEATURE_LOG_TABLE, loadId);
    const predictionFence = await this.fence(PREDICTION_LOG_TABLE, loadId);
    const records: { record: FeatureLogRecord; raw: string; offset: number; context: string }[] = [];
    const dead: Record<string, unknown>[] = [];
    let redelivered = 0;
    for (const message of batch.messages) {
      const offset = Number(message.offset);
      if (message.value === null) {
        // Dead letters are diagnostics (deduplicated by load id and position when read): a redelivered bad record is written again.
        dead.push(featureLogDeadLetterRow({ code: 'TM_LOG_BAD_RECORD', field: null, reason: 'empty message (tombstone)', raw: '' }, loadId, offset));
        continue;
      }
      // A message holds one record per line (tidemark's producer: a batch, its feature sets first).
      const lines = featureLogLinesOf(message.value);
      for (const { line, text } of lines) {
        const decoded = decodeFeatureLogRecord(text);
        const where = lines.length > 1 ? `line ${line + 1} of the message at offset ${offset}: ` : '';
        if (!decoded.ok) {
          dead.push(featureLogDeadLetterRow({ ...decoded.bad, reason: where + decoded.bad.reason }, loadId, offset));
          continue;
        }
        if (offset <= (decoded.record.kind === 'prediction' ? predictionFence : readFence)) {
          if (decoded.record.kind !== 'features') redelivered++;
          continue;
        }
        records.push({ record: decoded.record, raw: text, offset, context: where });
      }
    }
    if (dead.length > 0) await this.executor.insert('tm_dead_letters', dead);
    this.featureSets ??= await storedFeatureSets(this.executor);
    const bad = await insertFeatureLogRecords(this.executor, this.compiled.registry, records, loadId, this.featureSets);
    for (const { record, offset } of records) {
      const table = record.kind === 'prediction' ? PREDICTION_LOG_TABLE : FEATURE_LOG_TABLE;
      this.fences.set(fenceKey(table, loadId, 0), Math.max(this.fences.get(fenceKey(table, loadId, 0)) ?? -1, offset));
    }
    this.stats.batches++;
    this.stats.logRecords += records.filter((r) => r.record.kind !== 'features').length - bad;
    this.stats.badLogRecords += dead.length + bad;
    this.stats.redelivered += redelivered;
    const last = batch.messages[batch.messages.length - 1];
    if (last) resolveOffset(last.offset);
    await heartbeat();
  }

  private async onBatch(payload: EachBatchPayload): Promise<void> {
    if (payload.batch.topic === this.featureLogTopic) return this.onFeatureLogBatch(payload);
    const { batch, resolveOffset, heartbeat } = payload;
    const source = this.sources.get(batch.topic);
    if (!source) throw new TidemarkError('TM_OFFLINE_QUERY', `no source reads topic ${batch.topic}`, { topic: batch.topic });
    const table = eventTable(source.plan.name);
    const loadId = kafkaLoadId(batch.topic, batch.partition);
    if (!this.registered.has(loadId)) {
      // A Kafka partition is one open-ended load: registered once (on every shard), so queries see its rows.
      await this.shards.each(async (executor) => {
        const [known] = await executor.rows<{ n: number }>('SELECT count() AS n FROM tm_loads WHERE load_id = {id:String}', { id: loadId });
        if (!known || Number(known.n) === 0) {
          await executor.insert('tm_loads', [
            { load_id: loadId, source: source.plan.name, file: `kafka:${batch.topic}`, sha256: '', rows: 0, events: 0, bad: 0, registry_version: this.compiled.registry.version, loaded_at: Date.now() },
          ]);
        }
      });
      this.registered.add(loadId);
    }
    const fences = await this.shards.each((_, shard) => this.fence(table, loadId, shard));
    const minFence = Math.min(...fences);
    const perShard: Record<string, unknown>[][] = fences.map(() => []);
    const bad: BadEvent[] = [];
    let good = 0;
    let redelivered = 0;
    for (const message of batch.messages) {
      const offset = Number(message.offset);
      if (offset <= minFence) {
        redelivered++;
        continue;
      }
      const position = { partition: batch.partition, offset };
      const decoded = message.value === null ? null : source.decoder.decodeJson(message.value, position);
      if (decoded === null) bad.push({ source: source.plan.name, position, code: 'TM_EVENT_INVALID_JSON', field: null, reason: 'empty message (tombstone)', raw: '' });
      else if (!decoded.ok) bad.push(decoded.bad);
      else {
        const row = eventRow(source.plan, source.keyFields, decoded.event, loadId, offset);
        // stored where its shard's fence is below it; a record stored on every shard it goes to is a redelivery
        const targets = source.shardsOf(row).filter((shard) => offset > fences[shard]!);
        if (targets.length === 0) redelivered++;
        else good++;
        for (const shard of targets) perShard[shard]!.push(row);
      }
    }
    if (bad.length > 0) await this.shards.on(0, (home) => home.insert('tm_dead_letters', bad.map((b) => deadLetterRow(b, loadId))));
    await this.shards.each(async (executor, shard) => {
      const rows = perShard[shard]!;
      if (rows.length === 0) return;
      await executor.insert(table, rows);
      this.fences.set(fenceKey(table, loadId, shard), rows.reduce((top, r) => Math.max(top, r.__offset as number), fences[shard]!));
    });
    this.stats.batches++;
    this.stats.events += good;
    this.stats.badEvents += bad.length;
    this.stats.redelivered += redelivered;
    const last = batch.messages[batch.messages.length - 1];
    if (last) resolveOffset(last.offset);
    await heartbeat();
  }
}

function fenceKey(table: string, loadId: string, shard: number): string {
  return `${table} ${loadId} ${shard}`;
}
