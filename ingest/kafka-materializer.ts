// The stream materializer: a member of a Kafka consumer group (kafkajs) that reads the topics of
// the registry's sources, decodes each record (EventDecoder.decodeJson, position = {partition,
// offset}), sends bad records to the source's dead-letter topic, turns the good ones into tile
// batches and applies them to an online store, then commits the offsets. Counters go to a
// prom-client registry (ingest/materializer-server.ts serves them with /healthz).
//
// Effectively-once. Kafka delivers at least once: after a crash, a rebalance or a failed commit,
// records after the last committed offset come again, cut into batches anywhere. Every key update
// carries, per partition it holds events of, a compare-and-set fence that the store checks and
// sets atomically with the merge (ingest/fences.ts explains the invariant, online/redis.ts
// APPLY_SCRIPT implements it in one Lua call per group of keys). The first attempt reads nothing:
// it assumes no key has applied any of the batch; the keys the store refuses (their fence is past
// the batch's first offset: a redelivery, a retry of a partly written attempt, or another writer)
// come back with their stored fences, are rebuilt from the events after them and tried again,
// conditional on those fences. So a redelivered record never changes a value twice, and a
// "zombie" (a member that stalled past its session timeout and still writes while the partition's
// new owner writes too) can neither double-count nor lose an event: whichever writes a key first,
// the other is refused on it. When refusals come back, the member heartbeats; if its group is
// rebalancing, it gives the batches up uncommitted and leaves them to the partitions' owners.
//
// Write-behind with group commit (ingest/write-behind.ts): a decoded batch is queued and kafkajs
// fetches on from its end while the store applies earlier batches, so decoding and the store's
// work overlap. One writer takes the queue in order; each write takes every queued batch, at most
// one per partition, as one tile batch (the tiles several partitions share are merged once per
// write), then awaits their dead letters and commits their offsets together. A partition's batches
// are written and committed one after the other, in offset order. Batches fetched before a group
// join are not written or committed after it (the new generation fetches again from the committed
// offsets), and once a batch of a partition is given up (its write or its dead letters failed past
// the shutdown grace period, or the group was rebalancing), the later batches of that partition
// fetched in the same generation are given up too: writing them would leave a hole behind their
// fences. A full queue (the store is slow or down) holds the consumer back, heartbeating.
//
// Offsets. A batch's offset is committed only after its store write, and its dead letters, were
// acknowledged (and those of every earlier batch of its partition); a failed write or commit is
// retried with backoff and reports the materializer degraded. The watermark lives in the store
// (moved by the apply). stop() fetches nothing more, writes and commits what is queued (retrying
// for up to shutdownGraceMs), then leaves the group.
//
// Dead letters are delivered at least once: a crash (or a dropped batch) between producing a
// batch's dead letters and committing its offset produces them again when the batch is
// redelivered. Each carries its source, partition and offset in its headers, so consumers of the
// dead-letter topic can deduplicate on (topic, partition, offset).
//
// Freshness: tidemark_materializer_freshness_seconds observes, per record with a good event, the
// wall time when the store write covering it succeeded minus the record's Kafka timestamp
// (CreateTime, set by the producer, unless the topic is configured with LogAppendTime, the
// broker's append time), clamped at 0 (clock skew between hosts). For a replay of old records it
// measures how old they were when they became visible.
//
// Late events (behind the retention horizon of the watermark before their batch, see
// online/store.ts) are counted, not applied. Partitions of a topic are consumed concurrently, so
// how late an event is depends on how far the partitions drift apart in event time: with the
// default allowed lateness of a day, partitions more than a day apart in event time would drop events.
import { Kafka, logLevel, Partitioners, type Admin, type Consumer, type EachBatchPayload, type IHeaders, type KafkaConfig, type KafkaMessage, type LogEntry, type Producer } from 'kafkajs';
import { Counter, Gauge, Histogram, Registry as MetricsRegistry, collectDefaultMetrics } from 'prom-client';
import { TidemarkError, type CompiledDefinitions, type SourcePlan } from '../definitions/index.js';
import { EventDecoder, type BadEvent, type DecodedEvent } from './decode.js';
import { applyRunsExactlyOnce, FencedBatchBuilder, type ConditionalStore, type FencedBatch, type LogRun } from './fences.js';
import { WriteBehindQueue } from './write-behind.js';

/** What the materializer needs of an online store: applies under compare-and-set fences (RedisOnlineStore). */
export type MaterializerStore = ConditionalStore;

export type MaterializerLog = (level: 'info' | 'warn' | 'error', message: string, details?: Record<string, unknown>) => void;

export interface MaterializerOptions {
  compiled: CompiledDefinitions;
  /** Kafka bootstrap servers. */
  brokers: string[];
  /** kafkajs's TLS and SASL options (kafkaSecurityConfig); default plaintext, no SASL. */
  security?: Pick<KafkaConfig, 'ssl' | 'sasl'>;
  groupId: string;
  store: MaterializerStore;
  /** Whether the store's connection is up, for /healthz (e.g. ioredis status === 'ready'); default: always. */
  storeReady?: () => boolean;
  clientId?: string;
  /** Consumer group session timeout; default 30 000 ms. */
  sessionTimeoutMs?: number;
  /** Default 3 000 ms. */
  heartbeatIntervalMs?: number;
  /** Longest a fetch waits for data; default 250 ms (freshness). */
  maxWaitTimeMs?: number;
  /**
   * Kafka batches of different partitions decoded at once; default 8. Batches queued together are
   * written together (write-behind with group commit), so a member owning many partitions writes
   * fewer, larger batches.
   */
  partitionsConsumedConcurrently?: number;
  /** Most bytes per partition per fetch (bounds a batch); default 1 MiB. */
  maxBytesPerPartition?: number;
  /** Decoded batches waiting for their store write before the consumer is held back; default 2 x partitionsConsumedConcurrently. */
  maxQueuedBatches?: number;
  /** Most bytes per fetch, all partitions of a broker together; default 16 MiB. */
  maxBytes?: number;
  /** Least bytes a fetch waits for (up to maxWaitTimeMs) before it returns; default 1. */
  minBytes?: number;
  /** Consecutive consumer crashes restarted before giving up (the process should then exit); default 30. */
  maxConsecutiveRestarts?: number;
  /** How long stop() keeps retrying the queued batches' writes, dead letters and commits; default 30 000 ms. */
  shutdownGraceMs?: number;
  /** Backoff of retried writes, commits and dead letters: doubles from `initial` up to `max`; default 100 and 5 000 ms. */
  retryBackoffMs?: { initial: number; max: number };
  /** How often /healthz's Kafka probe runs (partition leaders reachable, high watermarks); default 1 000 ms. */
  probeIntervalMs?: number;
  /** Wall time for the decoder's future-skew rule. */
  nowMs?: () => number;
  log?: MaterializerLog;
  /** Add Node.js process metrics (CPU, memory, event loop) to the registry; default true. */
  processMetrics?: boolean;
  /**
   * Partitions to read again from an earlier offset than the group committed (`topic:partition` ->
   * offset): a view version bootstrapped at that offset - 1 must get every record after it
   * (api/materialize-start.ts). A batch of such a partition that starts later is dropped and the
   * consumer seeks back before anything of it is written (the fences assume every record before a
   * batch is applied to every key); `onRewound` runs once a batch from the offset is committed.
   */
  rewind?: { targets: ReadonlyMap<string, number>; onRewound(topic: string, partition: number): Promise<void> };
}

export interface MaterializerHealth {
  status: 'ok' | 'degraded';
  group: string;
  /** Partitions this member owns, per topic. */
  assigned: Record<string, number[]>;
  /** Why the status is degraded (empty when ok). */
  problems: string[];
  /** Consumer crashes restarted since the last committed batch or group join. */
  restarts: number;
}

/** Counters since start, for logs and tests (the same figures as /metrics). */
export interface MaterializerStats {
  events: number;
  badEvents: number;
  lateTileEvents: number;
  batches: number;
  /** (event, view) pairs left out of a batch because their key had applied them (redelivery). */
  alreadyApplied: number;
  /** Key updates refused by their compare-and-set fence (and rebuilt). */
  refusedKeys: number;
  /** Batches given up uncommitted because this member no longer owned their partition. */
  droppedBatches: number;
  /** Batches received and not yet written and committed (a stuck store shows here). */
  batchesInFlight: number;
}

class RetryAborted extends Error {}

const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID']);

function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = e instanceof TidemarkError ? ` ${e.code}` : '';
  return `${e.name}${code}: ${e.message}`;
}

/** Store errors that no retry can fix (another registry's layout under the prefix, a bad update): fatal. */
function isFatalStoreError(e: unknown): boolean {
  return e instanceof TidemarkError && e.code.startsWith('TM_STORE_');
}

function isRebalance(e: unknown): boolean {
  return typeof e === 'object' && e !== null && REBALANCE_ERRORS.has((e as { type?: string }).type ?? '');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A kafkajs client whose log lines go to `log` (warnings and errors only), with TLS and SASL as `security` says (ingest/kafka-connection.ts). */
export function createKafkaClient(brokers: string[], clientId: string, log?: MaterializerLog, retry?: { retries: number; initialRetryTime: number; maxRetryTime: number }, security: Pick<KafkaConfig, 'ssl' | 'sasl'> = {}): Kafka {
  const logCreator = () => (entry: LogEntry) => {
    if (!log) return;
    const { message, ...rest } = entry.log;
    log(entry.level <= logLevel.ERROR ? 'error' : 'warn', `kafkajs${entry.namespace ? ` ${entry.namespace}` : ''}: ${message}`, rest as Record<string, unknown>);
  };
  return new Kafka({ clientId, brokers, logLevel: logLevel.WARN, logCreator, retry: retry ?? { retries: 8, initialRetryTime: 200, maxRetryTime: 5000 }, ...security });
}

/** The prom-client metrics of one materializer. */
export class MaterializerMetrics {
  readonly registry = new MetricsRegistry();
  readonly events = new Counter({ name: 'tidemark_materializer_events_total', help: 'Good events decoded and applied to the online store', labelNames: ['source'], registers: [this.registry] });
  readonly badEvents = new Counter({ name: 'tidemark_materializer_bad_events_total', help: 'Bad events sent to the dead-letter topic, by error code', labelNames: ['source', 'code'], registers: [this.registry] });
  readonly lateTileEvents = new Counter({ name: 'tidemark_materializer_late_tile_events_total', help: '(event, tile group) pairs behind the retention horizon, kept out of the online store', labelNames: ['source'], registers: [this.registry] });
  readonly batches = new Counter({ name: 'tidemark_materializer_batches_total', help: 'Batches applied and committed', labelNames: ['topic'], registers: [this.registry] });
  readonly alreadyApplied = new Counter({ name: 'tidemark_materializer_redelivered_key_events_total', help: '(event, view) pairs redelivered and left out because their key had applied them', labelNames: ['source'], registers: [this.registry] });
  readonly refusedKeys = new Counter({
    name: 'tidemark_materializer_fence_refusals_total',
    help: 'Key updates the store refused because their compare-and-set fence had moved: round "first" (a redelivery, a retried write, or another writer of the partition), "later" (another writer for sure)',
    labelNames: ['source', 'round'],
    registers: [this.registry],
  });
  readonly droppedBatches = new Counter({ name: 'tidemark_materializer_dropped_batches_total', help: 'Batches given up uncommitted because this member no longer owned their partition (left to the owner)', labelNames: ['topic'], registers: [this.registry] });
  readonly freshness = new Histogram({
    name: 'tidemark_materializer_freshness_seconds',
    help: "Per record: wall time when the online store write covering it succeeded minus the record's Kafka timestamp (CreateTime, or LogAppendTime if the topic uses it), clamped at 0",
    labelNames: ['topic'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  });
  readonly writeBatches = new Histogram({
    name: 'tidemark_materializer_write_batches',
    help: 'Kafka batches (one per partition) written to the online store together by one group commit',
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });
  readonly retries = new Counter({ name: 'tidemark_materializer_retries_total', help: 'Retried operations after a failure', labelNames: ['operation'], registers: [this.registry] });
  readonly restarts = new Counter({ name: 'tidemark_materializer_consumer_restarts_total', help: 'Kafka consumer crashes followed by a restart', registers: [this.registry] });
  readonly commitLag = new Gauge({ name: 'tidemark_materializer_commit_lag', help: 'Records in a partition after the committed offset (high watermark - committed), for partitions this member owns', labelNames: ['topic', 'partition'], registers: [this.registry] });
  readonly committedOffset = new Gauge({ name: 'tidemark_materializer_committed_offset', help: 'Last offset committed by this member, per partition', labelNames: ['topic', 'partition'], registers: [this.registry] });
  readonly watermark = new Gauge({ name: 'tidemark_materializer_watermark_ms', help: 'Greatest event time materialized (epoch ms), as the store reports it after a batch', registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'tidemark_materializer_batches_in_flight', help: 'Batches received and not yet written and committed', registers: [this.registry] });
  readonly healthy = new Gauge({ name: 'tidemark_materializer_healthy', help: '1 when /healthz answers ok, 0 when degraded', registers: [this.registry] });
  readonly batchSeconds = new Histogram({
    name: 'tidemark_materializer_batch_seconds',
    help: 'Time from a batch reaching the materializer to its offsets committed',
    labelNames: ['topic'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  constructor(processMetrics: boolean, store?: MaterializerStore) {
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tidemark_materializer_' });
    // A Redis Cluster moving slots: script calls the store sent again (online/redis.ts, clusterRetryMs).
    const retried = store && 'clusterRetries' in store && typeof store.clusterRetries === 'function' ? (store.clusterRetries as () => number).bind(store) : null;
    if (retried) {
      new Counter({
        name: 'tidemark_store_cluster_retries_total',
        help: 'Online store script calls sent again because their Redis Cluster slot was moving (ASK, MOVED, TRYAGAIN, CLUSTERDOWN)',
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(retried());
        },
      });
    }
  }
}

interface SourceRuntime {
  plan: SourcePlan;
  decoder: EventDecoder;
}

/** One Kafka batch between its decoding and its commit. */
interface WriteUnit {
  topic: string;
  partition: number;
  firstOffset: number;
  lastOffset: number;
  /** Its good events, one run per source of the topic that has some. */
  runs: LogRun[];
  /** Decoded events and bad records per source of the topic (for the counters, after the commit). */
  perSource: { source: string; events: number; badCodes: string[] }[];
  /** Kafka timestamps of the records with a good event (freshness). */
  goodTimestamps: number[];
  /** Its dead letters being produced (retried); rejects when given up. */
  deadLetters: Promise<void>;
  /** The group generation (join count) it was fetched in. */
  generation: number;
  payload: EachBatchPayload;
  receivedAt: number;
}

/** A group's first tile batch, built while the write before it runs. */
interface PreparedWrite {
  units: WriteUnit[];
  built: FencedBatch;
}


/** One member of the materializer consumer group. */
export class Materializer {
  readonly metrics: MaterializerMetrics;
  readonly groupId: string;
  private readonly opts: MaterializerOptions;
  private readonly sourcesByTopic = new Map<string, SourceRuntime[]>();
  private readonly builder: FencedBatchBuilder;
  private readonly kafka: Kafka;
  private readonly probeKafka: Kafka;
  private consumer: Consumer | null = null;
  private producer: Producer | null = null;
  private admin: Admin | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private readonly log: MaterializerLog;
  private readonly backoff: { initial: number; max: number };

  private stopping = false;
  /** consumer.run() was called (pause() works from then on). */
  private consuming = false;
  private stopped: Promise<boolean> | null = null;
  /** A batch was given up during stop() (its writes are fenced; it is redelivered later). */
  private abandoned = false;
  private stopDeadline = Number.POSITIVE_INFINITY;
  private assigned: Record<string, number[]> = {};
  private consecutiveRestarts = 0;
  private readonly problems = new Map<string, string>();
  private readonly committed = new Map<string, number>();
  private failure: Error | null = null;
  private failed: (e: Error) => void = () => undefined;
  /** Rejects when the consumer crashed for good (restarts exhausted or a non-retriable error). */
  readonly done: Promise<never>;
  private readonly counts: MaterializerStats = { events: 0, badEvents: 0, lateTileEvents: 0, batches: 0, alreadyApplied: 0, refusedKeys: 0, droppedBatches: 0, batchesInFlight: 0 };
  /** Decoded batches waiting for, or in, their store write and commit. */
  private readonly writes: WriteBehindQueue<WriteUnit, PreparedWrite>;
  /** Rewinds still to do (MaterializerOptions.rewind), and rewound partitions whose first batch is not committed yet. */
  private readonly rewindTargets: Map<string, number>;
  private readonly rewindCommits = new Set<string>();
  /** Group joins so far: batches of an earlier join are not written or committed (their partitions may have moved). */
  private generation = 0;
  /** `topic:partition` -> the generation in which one of its batches was given up: its later batches of that generation are given up too. */
  private readonly brokenPartitions = new Map<string, number>();

  constructor(opts: MaterializerOptions) {
    this.opts = opts;
    this.groupId = opts.groupId;
    this.rewindTargets = new Map(opts.rewind?.targets ?? []);
    this.log = opts.log ?? (() => undefined);
    this.backoff = opts.retryBackoffMs ?? { initial: 100, max: 5000 };
    this.metrics = new MaterializerMetrics(opts.processMetrics ?? true, opts.store);
    this.builder = new FencedBatchBuilder(opts.compiled.registry);
    const concurrency = opts.partitionsConsumedConcurrently ?? 8;
    this.writes = new WriteBehindQueue(
      (units) => this.prepareWrite(units),
      (units, prepared) => this.writeUnits(units, prepared),
      (unit) => `${unit.topic}:${unit.partition}`,
      opts.maxQueuedBatches ?? 2 * concurrency,
    );
    for (const plan of opts.compiled.registry.sources) {
      const list = this.sourcesByTopic.get(plan.topic) ?? [];
      list.push({ plan, decoder: new EventDecoder(opts.compiled, plan.name, opts.nowMs) });
      this.sourcesByTopic.set(plan.topic, list);
    }
    const clientId = opts.clientId ?? `tidemark-materializer-${opts.groupId}`;
    this.kafka = createKafkaClient(opts.brokers, clientId, this.log, undefined, opts.security);
    // The probe must fail fast, not retry for seconds: it measures reachability right now.
    this.probeKafka = createKafkaClient(opts.brokers, `${clientId}-probe`, undefined, { retries: 0, initialRetryTime: 100, maxRetryTime: 100 }, opts.security);
    this.done = new Promise<never>((_, reject) => {
      this.failed = reject;
    });
    this.done.catch(() => undefined);
    this.problems.set('group', 'not yet a member of the consumer group');
    this.metrics.healthy.set(0);
  }

  /** The topics this materializer reads. */
  get topics(): string[] {
    return [...this.sourcesByTopic.keys()];
  }

  stats(): MaterializerStats {
    return { ...this.counts };
  }

  /** Connect, join the group and start consuming; resolves after the first join (a failed join is retried in the background). */
  async start(): Promise<void> {
    const o = this.opts;
    this.producer = this.kafka.producer({ allowAutoTopicCreation: true, createPartitioner: Partitioners.DefaultPartitioner });
    this.admin = this.probeKafka.admin();
    const consumer = this.kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: o.heartbeatIntervalMs ?? 3_000,
      rebalanceTimeout: Math.max(60_000, o.sessionTimeoutMs ?? 30_000),
      maxWaitTimeInMs: o.maxWaitTimeMs ?? 250,
      maxBytesPerPartition: o.maxBytesPerPartition ?? 1024 * 1024,
      maxBytes: o.maxBytes ?? 16 * 1024 * 1024,
      minBytes: o.minBytes ?? 1,
      retry: {
        retries: 5,
        initialRetryTime: 300,
        maxRetryTime: 5_000,
        // kafkajs restarts a crashed consumer without end; cap consecutive restarts.
        restartOnFailure: async (e: Error) => {
          this.consecutiveRestarts++;
          this.metrics.restarts.inc();
          const restart = !this.stopping && this.failure === null && this.consecutiveRestarts <= (o.maxConsecutiveRestarts ?? 30);
          this.log(restart ? 'warn' : 'error', restart ? 'Kafka consumer crashed; restarting' : 'Kafka consumer crashed too often; giving up', { error: errorText(e), consecutiveRestarts: this.consecutiveRestarts });
          return restart;
        },
      },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      // A new generation fetches from the committed offsets: what is queued from before is not written.
      this.generation++;
      // A rewound partition whose first batch was not committed is rewound again (by whoever owns it now).
      for (const k of this.rewindCommits) this.rewindTargets.set(k, o.rewind!.targets.get(k)!);
      this.rewindCommits.clear();
      // Seek now, so a partition with no new records is read again too (handleBatch also drops any
      // batch fetched from the committed offset before the seek lands).
      for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) {
        for (const partition of partitions) {
          const offset = this.rewindTargets.get(`${topic}:${partition}`);
          if (offset !== undefined) consumer.seek({ topic, partition, offset: String(offset) });
        }
      }
      this.brokenPartitions.clear();
      this.assigned = Object.fromEntries(Object.entries(e.payload.memberAssignment).map(([t, ps]) => [t, [...ps].sort((a, b) => a - b)]));
      this.problems.delete('group');
      this.problems.delete('consumer');
      this.consecutiveRestarts = 0;
      // Lag is reported only for partitions this member owns.
      this.metrics.commitLag.reset();
      this.log('info', 'joined the consumer group', { group: o.groupId, memberId: e.payload.memberId, assigned: this.assigned });
      this.updateHealthGauge();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      this.problems.set('consumer', `consumer crashed: ${errorText(e.payload.error)}${e.payload.restart ? ' (restarting)' : ''}`);
      this.updateHealthGauge();
      if (!e.payload.restart && !this.stopping) this.fail(e.payload.error);
    });
    await this.producer.connect();
    await this.admin.connect().catch((e: unknown) => this.problems.set('kafka', `Kafka unreachable: ${errorText(e)}`));
    await consumer.connect();
    for (const topic of this.topics) await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: o.partitionsConsumedConcurrently ?? 8,
      eachBatch: (payload) => this.handleBatch(payload),
    });
    this.consuming = true;
    this.probeTimer = setInterval(() => void this.probe(), o.probeIntervalMs ?? 1_000);
    this.probeTimer.unref();
  }

  /**
   * Stop: finish the in-flight batches (their writes and commits, retried for up to
   * shutdownGraceMs), leave the group, disconnect. Resolves false if a batch was abandoned.
   */
  stop(): Promise<boolean> {
    this.stopped ??= this.shutDown();
    return this.stopped;
  }

  private async shutDown(): Promise<boolean> {
    this.stopping = true;
    this.stopDeadline = Date.now() + (this.opts.shutdownGraceMs ?? 30_000);
    if (this.probeTimer) clearInterval(this.probeTimer);
    let clean = true;
    const step = async (what: string, run: () => Promise<void>): Promise<void> => {
      try {
        await run();
      } catch (e) {
        clean = false;
        this.log('warn', `stop: ${what} failed`, { error: errorText(e) });
      }
    };
    // Fetch nothing more; write and commit what is queued (retried until the grace period ends).
    if (this.consuming) await step('consumer pause', async () => this.consumer?.pause(this.topics.map((topic) => ({ topic }))));
    await this.writes.idle();
    // kafkajs waits for the batches in flight before it leaves the group.
    await step('consumer disconnect', async () => this.consumer?.disconnect());
    await step('producer disconnect', async () => this.producer?.disconnect());
    await step('admin disconnect', async () => this.admin?.disconnect());
    return clean && !this.abandoned;
  }

  /** Give up for good: `done` rejects (the process should exit and be restarted by its supervisor). */
  private fail(e: Error): void {
    if (this.failure !== null) return;
    this.failure = e;
    this.log('error', 'materializer failed', { error: errorText(e) });
    // Fetch nothing more (stop() leaves the group).
    if (this.consuming) {
      try {
        this.consumer?.pause(this.topics.map((topic) => ({ topic })));
      } catch {
        // not running: nothing to pause
      }
    }
    this.updateHealthGauge();
    this.failed(e);
  }

  health(): MaterializerHealth {
    const storeUp = this.opts.storeReady?.() ?? true;
    const problems = [...this.problems.values()];
    if (!storeUp) problems.push('online store connection is down');
    if (this.failure) problems.push(`materializer failed: ${errorText(this.failure)}`);
    return { status: problems.length === 0 ? 'ok' : 'degraded', group: this.groupId, assigned: this.assigned, problems, restarts: this.consecutiveRestarts };
  }

  private updateHealthGauge(): void {
    this.metrics.healthy.set(this.health().status === 'ok' ? 1 : 0);
  }

  private setProblem(key: string, problem: string | null): void {
    if (problem === null) this.problems.delete(key);
    else this.problems.set(key, problem);
    this.updateHealthGauge();
  }

  /** Whether the partition leaders of the topics answer, and the lag of the partitions this member owns. */
  private async probe(): Promise<void> {
    if (this.stopping || !this.admin) return;
    try {
      for (const topic of this.topics) {
        const offsets = await this.admin.fetchTopicOffsets(topic);
        for (const p of offsets) {
          const committed = this.committed.get(`${topic}:${p.partition}`);
          if ((this.assigned[topic] ?? []).includes(p.partition)) {
            this.metrics.commitLag.set({ topic, partition: String(p.partition) }, Number(p.high) - (committed ?? 0));
          }
        }
      }
      this.setProblem('kafka', null);
    } catch (e) {
      this.setProblem('kafka', `cannot reach the Kafka partition leaders: ${errorText(e)}`);
    }
  }

  /**
   * Run `op` until it succeeds, with backoff, heartbeating between attempts (`beat`). Gives up
   * (throws) when `abortOn` says so, when a heartbeat finds the group rebalancing, or when
   * stopping past the grace period.
   */
  private async retry<T>(what: string, op: () => Promise<T>, options: { beat?: () => Promise<void>; abortOn?: (e: unknown) => boolean; giveUp?: () => boolean } = {}): Promise<T> {
    let delay = this.backoff.initial;
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await op();
        if (attempt > 1) this.log('info', `${what} succeeded after ${attempt} attempts`);
        this.setProblem(what, null);
        return result;
      } catch (e) {
        if (options.abortOn?.(e)) throw e;
        this.setProblem(what, `${what} failing: ${errorText(e)}`);
        this.metrics.retries.inc({ operation: what });
        if (attempt === 1 || attempt % 10 === 0) this.log('warn', `${what} failed; retrying`, { attempt, error: errorText(e) });
        if (this.stopping && Date.now() > this.stopDeadline) {
          this.abandoned = true;
          throw new RetryAborted(`${what}: still failing when the shutdown grace period ran out: ${errorText(e)}`);
        }
        if (options.giveUp?.()) throw new RetryAborted(`${what}: given up (${errorText(e)})`);
        await sleep(delay);
        delay = Math.min(this.backoff.max, delay * 2);
        try {
          await options.beat?.();
        } catch (h) {
          // A broker that is down fails heartbeats too: keep retrying. A rebalance ends it.
          if (isRebalance(h)) throw h;
        }
      }
    }
  }

  /**
   * One Kafka batch: decode it, wait for room in the write-behind queue (heartbeating), queue it
   * and let kafkajs fetch on from its end. Its store write, dead letters and commit happen in
   * writeUnits, after those of the partition's earlier batches.
   */
  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const messages = batch.messages;
    if (messages.length === 0 || this.stopping || this.failure !== null) return;
    const receivedAt = performance.now();
    const generation = this.generation;
    const { topic, partition } = batch;
    const firstOffset = Number(messages[0]!.offset);
    const lastOffset = Number(messages[messages.length - 1]!.offset);
    const rewindTo = this.rewindTargets.get(`${topic}:${partition}`);
    if (rewindTo !== undefined) {
      if (firstOffset > rewindTo) {
        // Nothing of this batch is written: read the partition again from the rewind offset.
        this.consumer?.seek({ topic, partition, offset: String(rewindTo) });
        return;
      }
      this.rewindTargets.delete(`${topic}:${partition}`);
      this.rewindCommits.add(`${topic}:${partition}`);
    }
    const sources = this.sourcesByTopic.get(topic) ?? [];

    // Decode. A record good for at least one source becomes visible with the store write; its
    // Kafka timestamp goes to the freshness histogram then.
    const decoded = sources.map(() => ({ events: [] as DecodedEvent[], bad: [] as { bad: BadEvent; message: KafkaMessage }[] }));
    const goodTimestamps: number[] = [];
    for (const message of messages) {
      const position = { partition, offset: Number(message.offset) };
      const text = message.value === null ? '' : message.value.toString('utf8');
      let good = false;
      for (let i = 0; i < sources.length; i++) {
        const result = sources[i]!.decoder.decodeJson(text, position);
        if (result.ok) {
          decoded[i]!.events.push(result.event);
          good = true;
        } else decoded[i]!.bad.push({ bad: result.bad, message });
      }
      if (good) goodTimestamps.push(Number(message.timestamp));
    }

    this.counts.batchesInFlight++;
    this.metrics.inFlight.inc();
    // Heartbeat while the queue is full (the store is slow or down), so the group keeps this member.
    const beat = setInterval(() => {
      payload.heartbeat().catch(() => undefined);
    }, this.opts.heartbeatIntervalMs ?? 3_000);
    try {
      await this.writes.room();
    } finally {
      clearInterval(beat);
    }
    if (this.stopping || this.failure !== null || generation !== this.generation) {
      // Not queued: fetched again later, by this member or the partition's new owner.
      this.counts.batchesInFlight--;
      this.metrics.inFlight.dec();
      return;
    }
    const deadLetters = this.retry('dead letters', () => this.sendDeadLetters(topic, sources, decoded.map((d) => d.bad)), { beat: () => payload.heartbeat() });
    deadLetters.catch(() => undefined);
    this.writes.push({
      topic,
      partition,
      firstOffset,
      lastOffset,
      runs: sources.map((s, i) => ({ source: s.plan, partition, firstOffset, lastOffset, events: decoded[i]!.events })).filter((r) => r.events.length > 0),
      perSource: sources.map((s, i) => ({ source: s.plan.name, events: decoded[i]!.events.length, badCodes: decoded[i]!.bad.map((b) => b.bad.code) })),
      goodTimestamps,
      deadLetters,
      generation,
      payload,
      receivedAt,
    });
    // Fetch on from the batch's end; the commit comes after the write.
    payload.resolveOffset(messages[messages.length - 1]!.offset);
  }

  /** Whether a batch can no longer be written and committed: fetched in an earlier generation, or after a batch of its partition was given up. */
  private isStale(unit: WriteUnit): boolean {
    return unit.generation !== this.generation || this.brokenPartitions.get(`${unit.topic}:${unit.partition}`) === unit.generation;
  }

  /** Give a batch up uncommitted, and the later batches of its partition in this generation with it. */
  private giveUp(unit: WriteUnit, why: string, dropped: boolean): void {
    this.brokenPartitions.set(`${unit.topic}:${unit.partition}`, unit.generation);
    if (dropped) {
      this.counts.droppedBatches++;
      this.metrics.droppedBatches.inc({ topic: unit.topic });
    }
    this.log('warn', 'batch given up uncommitted (it is redelivered, and deduplicated by the fences)', { topic: unit.topic, partition: unit.partition, firstOffset: unit.firstOffset, lastOffset: unit.lastOffset, why });
  }

  /** A queued batch is done with (committed or given up). */
  private finish(): void {
    this.counts.batchesInFlight--;
    this.metrics.inFlight.dec();
  }

  /**
   * One write of the batches queued together (writes.ts): applied exactly once per key
   * (fences.ts), retried until written; then their dead letters are awaited and their offsets
   * committed together. When keys are refused, the batches involved are checked for ownership
   * (a heartbeat) and, if the group is rebalancing, given up. Never throws.
   */
  /** A group's optimistic tile batch (ingest/fences.ts), built ahead of its write. */
  private prepareWrite(units: WriteUnit[]): PreparedWrite {
    return { units, built: this.builder.build(units.flatMap((u) => u.runs)) };
  }

  private async writeUnits(queued: WriteUnit[], prepared: PreparedWrite): Promise<void> {
    let units = queued.filter((u) => {
      if (!this.isStale(u)) return true;
      this.finish();
      return false;
    });
    const written = units.length;
    try {
      if (units.length === 0) return;
      // The store write, retried; batches that go stale meanwhile (a rebalance) leave the write.
      let lost: Error | null = null;
      const result = await this.retry(
        'online store write',
        async () => {
          units = units.filter((u) => !this.isStale(u));
          if (units.length === 0) return null;
          const runs = units.flatMap((u) => u.runs);
          // The batch built ahead holds exactly these runs unless some batches went stale since.
          const firstBatch = units.length === prepared.units.length ? prepared.built : undefined;
          return applyRunsExactlyOnce(this.opts.store, this.builder, runs, {
            ...(firstBatch ? { firstBatch } : {}),
            dropRuns: async () => {
              // Refused keys: a redelivery, or another writer. If this member lost its
              // partitions (the group is rebalancing), none of these batches may be committed.
              try {
                await units[0]!.payload.heartbeat();
              } catch (e) {
                if (isRebalance(e)) {
                  lost = e as Error;
                  return new Set(runs.map((_, r) => r));
                }
              }
              return new Set<number>();
            },
          });
        },
        { abortOn: (e) => this.abortWrite(e), giveUp: () => units.every((u) => this.isStale(u)) },
      ).catch((e: unknown) => {
        for (const u of units) if (!this.isStale(u)) this.giveUp(u, `store write: ${errorText(e)}`, false);
        return null;
      });
      if (result === null) return;
      const visibleAtMs = Date.now();
      this.metrics.writeBatches.observe(units.length);
      if (result.watermarkMs !== null) this.metrics.watermark.set(result.watermarkMs);
      for (const [source, n] of result.lateTileEvents) {
        this.counts.lateTileEvents += n;
        this.metrics.lateTileEvents.inc({ source }, n);
      }
      for (const [source, n] of result.alreadyApplied) {
        this.counts.alreadyApplied += n;
        this.metrics.alreadyApplied.inc({ source }, n);
      }
      for (const [round, bySource] of [['first', result.refusedFirstRound], ['later', result.refusedLaterRounds]] as const) {
        for (const [source, n] of bySource) {
          this.counts.refusedKeys += n;
          this.metrics.refusedKeys.inc({ source, round }, n);
        }
      }
      if (result.refusedLaterRounds.size > 0) {
        this.log('warn', 'another writer moved the fences of keys of these partitions while this member wrote them (a member that lost its partitions and still writes?); rebuilt and applied exactly once', {
          partitions: units.map((u) => `${u.topic}/${u.partition}`),
          rounds: result.rounds,
        });
      }
      if (lost !== null) {
        for (const u of units) this.giveUp(u, `the group is rebalancing: ${errorText(lost)}`, true);
        return;
      }

      // Dead letters, then the commit: only batches whose dead letters are all delivered.
      const committable: WriteUnit[] = [];
      for (const u of units) {
        try {
          await u.deadLetters;
          committable.push(u);
        } catch (e) {
          this.giveUp(u, `dead letters: ${errorText(e)}`, false);
        }
      }
      const toCommit = committable.filter((u) => !this.isStale(u));
      if (toCommit.length === 0) return;
      const byTopic = new Map<string, { partition: number; offset: string }[]>();
      for (const u of toCommit) {
        const list = byTopic.get(u.topic) ?? [];
        list.push({ partition: u.partition, offset: String(u.lastOffset + 1) });
        byTopic.set(u.topic, list);
      }
      const topics = [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
      const committed = await this.retry('offset commit', () => toCommit[0]!.payload.commitOffsetsIfNecessary({ topics }), { abortOn: isRebalance, giveUp: () => toCommit.some((u) => this.isStale(u)) }).then(
        () => true,
        (e: unknown) => {
          for (const u of toCommit) this.giveUp(u, `offset commit: ${errorText(e)}`, false);
          return false;
        },
      );
      if (!committed) return;
      this.consecutiveRestarts = 0;
      for (const u of toCommit) {
        if (this.rewindCommits.delete(`${u.topic}:${u.partition}`)) {
          await this.opts.rewind!.onRewound(u.topic, u.partition).catch((e: unknown) => this.log('warn', 'could not record the rewind (it is done again at the next start, harmlessly)', { error: errorText(e) }));
          this.log('info', 'partition rewound to the bootstrap offset and committed', { topic: u.topic, partition: u.partition });
        }
        this.committed.set(`${u.topic}:${u.partition}`, u.lastOffset + 1);
        this.metrics.committedOffset.set({ topic: u.topic, partition: String(u.partition) }, u.lastOffset + 1);
        const freshness = this.metrics.freshness.labels({ topic: u.topic });
        for (const ts of u.goodTimestamps) freshness.observe(Math.max(0, visibleAtMs - ts) / 1000);
        for (const s of u.perSource) {
          this.counts.events += s.events;
          this.counts.badEvents += s.badCodes.length;
          this.metrics.events.inc({ source: s.source }, s.events);
          for (const code of s.badCodes) this.metrics.badEvents.inc({ source: s.source, code });
        }
        this.counts.batches++;
        this.metrics.batches.inc({ topic: u.topic });
        this.metrics.batchSeconds.observe({ topic: u.topic }, (performance.now() - u.receivedAt) / 1000);
      }
    } finally {
      for (let i = 0; i < written; i++) this.finish();
    }
  }

  /** Whether a failed store write ends the batch's retries: fatal store errors fail the materializer. */
  private abortWrite(e: unknown): boolean {
    if (!isFatalStoreError(e)) return false;
    this.fail(e as Error);
    return true;
  }

  /** Bad records of one batch to their sources' dead-letter topics, original bytes and key, reason in headers. */
  private async sendDeadLetters(topic: string, sources: SourceRuntime[], bad: { bad: BadEvent; message: KafkaMessage }[][]): Promise<void> {
    const byTopic = new Map<string, { key: Buffer | null; value: Buffer | null; headers: IHeaders }[]>();
    sources.forEach((s, i) => {
      for (const { bad: b, message } of bad[i]!) {
        const list = byTopic.get(s.plan.deadLetter) ?? [];
        list.push({
          key: message.key,
          value: message.value,
          headers: {
            ...(message.headers ?? {}),
            source: s.plan.name,
            topic,
            partition: String(b.position!.partition),
            offset: String(b.position!.offset),
            code: b.code,
            field: b.field ?? '',
            reason: b.reason,
          },
        });
        byTopic.set(s.plan.deadLetter, list);
      }
    });
    if (byTopic.size === 0) return;
    await this.producer!.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([t, messages]) => ({ topic: t, messages })) });
  }
}
