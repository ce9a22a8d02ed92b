// Feature logging: the record format of what serving answered (a logged read) and of a model's
// score for a request (a logged prediction), their validation, the Kafka topic they travel on, and
// the bounded queue between the serving path and a destination. A record is encoded to its JSON
// text once, when offered (the text is what the topic carries and what the offline store keeps);
// a served read's text waits as bytes in the queue's arena (feature-log-arena.ts), nothing of it
// on the JS heap for the garbage collector to copy. The queue never blocks a response: a full
// queue drops the record and counts the drop (prom-client), and so does a write that fails
// (Kafka down). Destinations: Kafka (`<prefix>.feature_log`, read
// by `tidemark offline-sink`), or the offline store directly (embedded mode, offline/feature-log.ts).
import { Kafka, logLevel, Partitioners, type KafkaConfig, type Producer } from 'kafkajs';
import { Counter, Gauge, Registry as MetricsRegistry } from 'prom-client';
import { z } from 'zod';
import type { ErrorCode } from '../definitions/index.js';
import { ReadArena, type ReadBatch } from './feature-log-arena.js';

/** The version of a prediction record, and of the first read format (still read). */
export const FEATURE_LOG_FORMAT_VERSION = 1;
/** The version of the read records serving writes (LoggedReadV3, with FeatureSetRecord). */
export const FEATURE_LOG_READ_VERSION = 3;

/** The Kafka topic of a deployment's feature log: `<prefix>.feature_log`. */
export function featureLogTopic(prefix: string): string {
  return `${prefix}.feature_log`;
}

const Scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const LoggedFeature = z.strictObject({
  view: z.string().min(1),
  feature: z.string().min(1),
  values: z.array(Scalar),
  statuses: z.array(z.enum(['PRESENT', 'NULL_VALUE', 'NOT_FOUND', 'OUTSIDE_MAX_AGE'])),
  event_times_ms: z.array(z.number().int().nullable()),
});

const LoggedRead = z.strictObject({
  kind: z.literal('read'),
  v: z.literal(FEATURE_LOG_FORMAT_VERSION),
  request_id: z.string().min(1).max(200),
  read_time_ms: z.number().int(),
  registry_version: z.string(),
  /** join key -> one value per entity row, as the request gave them */
  entities: z.record(z.string(), z.array(z.union([z.string(), z.number(), z.boolean()]))),
  features: z.array(LoggedFeature).min(1),
});

/** Status letters of a version-2 read: one per entity row. */
export const STATUS_LETTERS = { PRESENT: 'P', NULL_VALUE: 'N', NOT_FOUND: 'F', OUTSIDE_MAX_AGE: 'O' } as const;
export type FeatureStatus = keyof typeof STATUS_LETTERS;
const STATUS_OF_LETTER = Object.fromEntries(Object.entries(STATUS_LETTERS).map(([status, letter]) => [letter, status])) as Record<string, FeatureStatus>;

/**
 * Version 2 of a logged read (what serving writes): the same content with each name written once.
 * `features` are the `view:feature` refs read; per ref, in that order, `values` holds one value per
 * entity row, `statuses` one letter per entity row (STATUS_LETTERS), and `ages_ms` the read time
 * minus each value's event time (null: no event behind it). About 0.6 KB for 1 entity x 7
 * features against 1.1 KB for version 1, which is still read.
 */
const LoggedReadV2 = z.strictObject({
  kind: z.literal('read'),
  v: z.literal(2),
  request_id: z.string().min(1).max(200),
  read_time_ms: z.number().int(),
  registry_version: z.string(),
  entities: z.record(z.string(), z.array(z.union([z.string(), z.number(), z.boolean()]))),
  features: z.array(z.string().regex(/^[^:]+:[^:]+$/, 'a view:feature ref')).min(1),
  values: z.array(z.array(Scalar)),
  statuses: z.array(z.string().regex(/^[PNFO]*$/, 'one of the letters P, N, F, O per entity row')),
  ages_ms: z.array(z.array(z.number().int().nullable())),
});

/**
 * Version 3 of a logged read (what serving writes): the `view:feature` refs and the registry
 * version are named once per feature set (a FeatureSetRecord, `features_id`), not per read; the
 * values, status letters and ages are flat, feature by feature: feature i's entity row r is entry
 * i x rows + r. About 0.2 KB for 1 entity x 7 features against 0.6 KB for version 2, and less than
 * half its encoding time: the serving path's share of the logging cost, and the bytes every
 * destination takes, fall with it.
 */
const LoggedReadV3 = z.strictObject({
  kind: z.literal('read'),
  v: z.literal(3),
  request_id: z.string().min(1).max(200),
  read_time_ms: z.number().int(),
  features_id: z.string().min(1).max(64),
  entities: z.record(z.string(), z.array(z.union([z.string(), z.number(), z.boolean()]))),
  values: z.array(Scalar),
  statuses: z.string().regex(/^[PNFO]*$/, 'one of the letters P, N, F, O per value'),
  ages_ms: z.array(z.number().int().nullable()),
});

/**
 * The features a version-3 read names by `features_id`: the registry version and the refs, in the
 * read's order. Written once per destination before the reads that use it (and in every Kafka
 * message that carries such reads, so that each message stands alone).
 */
const FeatureSet = z.strictObject({
  kind: z.literal('features'),
  v: z.literal(3),
  features_id: z.string().min(1).max(64),
  registry_version: z.string(),
  features: z.array(z.string().regex(/^[^:]+:[^:]+$/, 'a view:feature ref')).min(1),
});

const LoggedPrediction = z.strictObject({
  kind: z.literal('prediction'),
  v: z.literal(FEATURE_LOG_FORMAT_VERSION),
  request_id: z.string().min(1).max(200),
  score: z.number().finite(),
  model: z.string().nullable(),
  at_ms: z.number().int(),
});

const FeatureLogRecordSchema = z.discriminatedUnion('kind', [LoggedRead, LoggedPrediction]);

/** A logged read in version 1's shape (one object per feature). */
export type LoggedReadV1Record = z.infer<typeof LoggedRead>;
export type LoggedReadV2Record = z.infer<typeof LoggedReadV2>;
export type LoggedReadV3Record = z.infer<typeof LoggedReadV3>;
export type FeatureSetRecord = z.infer<typeof FeatureSet>;
export type LoggedReadRecord = LoggedReadV1Record | LoggedReadV2Record | LoggedReadV3Record;
export type LoggedPredictionRecord = z.infer<typeof LoggedPrediction>;
export type FeatureLogRecord = LoggedReadRecord | LoggedPredictionRecord | FeatureSetRecord;

/**
 * A logged read's features, one object each (version 1's shape), whatever its version; null for a
 * version-3 read whose feature set is unknown (`sets` looks it up by features_id).
 */
export function loggedFeaturesOf(record: LoggedReadRecord, sets: (featuresId: string) => FeatureSetRecord | undefined = () => undefined): LoggedReadV1Record['features'] | null {
  if (record.v === FEATURE_LOG_FORMAT_VERSION) return record.features;
  if (record.v === 3) {
    const set = sets(record.features_id);
    if (set === undefined) return null;
    const rows = entityRowsOf(record);
    return set.features.map((ref, i) => {
      const colon = ref.indexOf(':');
      // Feature i's entries: i x rows + each entity row.
      const range = Array.from({ length: rows }, (_, row) => i * rows + row);
      return {
        view: ref.slice(0, colon),
        feature: ref.slice(colon + 1),
        values: range.map((j) => record.values[j] ?? null),
        statuses: range.map((j) => STATUS_OF_LETTER[record.statuses[j] ?? '']!),
        event_times_ms: range.map((j) => {
          const age = record.ages_ms[j];
          return age === null || age === undefined ? null : record.read_time_ms - age;
        }),
      };
    });
  }
  return record.features.map((ref, i) => {
    const colon = ref.indexOf(':');
    const statuses = [...(record.statuses[i] ?? '')].map((letter) => STATUS_OF_LETTER[letter]!);
    return { view: ref.slice(0, colon), feature: ref.slice(colon + 1), values: record.values[i] ?? [], statuses, event_times_ms: (record.ages_ms[i] ?? []).map((age) => (age === null ? null : record.read_time_ms - age)) };
  });
}

export interface BadFeatureLogRecord {
  code: ErrorCode;
  /** The failing field (dotted path), or null when the whole record is at fault. */
  field: string | null;
  reason: string;
  raw: string;
}

export type FeatureLogDecodeResult = { ok: true; record: FeatureLogRecord } | { ok: false; bad: BadFeatureLogRecord };

/** How many entity rows a read has: the length of its first join key's values. */
function entityRowsOf(record: { entities: Record<string, unknown[]> }): number {
  const first = Object.keys(record.entities)[0];
  return first === undefined ? 0 : record.entities[first]!.length;
}

/**
 * Split a Kafka message of the feature-log topic into its records: one JSON record per line (a
 * message of tidemark's producer holds a batch: its feature sets first, then reads and
 * predictions; another producer may send one record per message). Empty lines are skipped.
 */
export function featureLogLinesOf(raw: string | Uint8Array): { line: number; text: string }[] {
  const text = typeof raw === 'string' ? raw : Buffer.from(raw).toString('utf8');
  const out: { line: number; text: string }[] = [];
  text.split('\n').forEach((t, line) => {
    if (t.trim() !== '') out.push({ line, text: t });
  });
  return out;
}

/** Validate a feature-log record (JSON bytes or text): the schema, then that every column has one entry per entity row. */
export function decodeFeatureLogRecord(raw: string | Uint8Array): FeatureLogDecodeResult {
  const text = typeof raw === 'string' ? raw : Buffer.from(raw).toString('utf8');
  const bad = (field: string | null, reason: string): FeatureLogDecodeResult => ({ ok: false, bad: { code: 'TM_LOG_BAD_RECORD', field, reason, raw: text } });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return bad(null, `feature-log record is not JSON: ${(e as Error).message}`);
  }
  // A read is checked against its version's schema (version 1 unless it says 2 or 3).
  const { kind, v } = typeof json === 'object' && json !== null ? (json as { kind?: unknown; v?: unknown }) : {};
  const parsed = kind === 'features' ? FeatureSet.safeParse(json) : kind === 'read' && v === 3 ? LoggedReadV3.safeParse(json) : kind === 'read' && v === 2 ? LoggedReadV2.safeParse(json) : FeatureLogRecordSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.length === 0 ? null : issue.path.join('.');
    return bad(field, `feature-log record${field === null ? '' : `, field ${field}`}: ${issue.message}`);
  }
  const record = parsed.data;
  if (record.kind === 'read') {
    const keys = Object.keys(record.entities);
    if (keys.length === 0) return bad('entities', 'feature-log record, field entities: names no join key');
    const rows = record.entities[keys[0]!]!.length;
    for (const k of keys) {
      if (record.entities[k]!.length !== rows) return bad(`entities.${k}`, `feature-log record, field entities.${k}: ${record.entities[k]!.length} values, but entities.${keys[0]} has ${rows}`);
    }
    if (record.v === 3) {
      for (const column of ['statuses', 'ages_ms'] as const) {
        if (record[column].length !== record.values.length) return bad(column, `feature-log record, field ${column}: ${record[column].length} entries for ${record.values.length} values`);
      }
      if (rows === 0 || record.values.length % rows !== 0 || record.values.length === 0) return bad('values', `feature-log record, field values: ${record.values.length} values is not a whole number of features x ${rows} entity rows`);
    } else if (record.v === 2) {
      for (const column of ['values', 'statuses', 'ages_ms'] as const) {
        if (record[column].length !== record.features.length) return bad(column, `feature-log record, field ${column}: ${record[column].length} entries for ${record.features.length} features`);
        for (const [i, entry] of record[column].entries()) {
          if (entry.length !== rows) return bad(`${column}.${i}`, `feature-log record, field ${column}.${i} (${record.features[i]}): ${entry.length} entries for ${rows} entity rows`);
        }
      }
    } else {
      for (const [i, f] of record.features.entries()) {
        for (const column of ['values', 'statuses', 'event_times_ms'] as const) {
          if (f[column].length !== rows) return bad(`features.${i}.${column}`, `feature-log record, field features.${i}.${column} (${f.view}:${f.feature}): ${f[column].length} entries for ${rows} entity rows`);
        }
      }
    }
  }
  return { ok: true, record };
}

/** A record as the queue holds it: encoded once, when offered. */
export interface EncodedFeatureLogRecord {
  kind: FeatureLogRecord['kind'];
  requestId: string;
  /** The read time of a read, the prediction time of a prediction (epoch ms). */
  timeMs: number;
  /**
   * The record's JSON text: the Kafka message value, and what the offline store keeps. A read
   * queued as a record holds it as UTF-8 bytes: a Buffer's bytes live off the JS heap, while a
   * string (the encoder's chain of pieces) waiting in the queue is copied by every
   * young-generation collection it survives. Served reads (offerRead) skip the record altogether.
   */
  json: string | Buffer;
  /** A version-3 read's feature set (the same object for every read of it): written before the read, once per destination. */
  features?: EncodedFeatureSet;
  /** Told once the record is written (null) or dropped (the reason): offerAndWait's records only. */
  settle?: (error: Error | null) => void;
}

/** A feature set as queued reads refer to it: its id and its record's JSON text. */
export interface EncodedFeatureSet {
  id: string;
  json: string;
}

/** Encode a read or a prediction (a feature set travels with its reads: EncodedFeatureLogRecord.features). */
export function encodeFeatureLogRecord(record: LoggedReadRecord | LoggedPredictionRecord, features?: FeatureSetRecord): EncodedFeatureLogRecord & { json: string } {
  return {
    kind: record.kind,
    requestId: record.request_id,
    timeMs: record.kind === 'read' ? record.read_time_ms : record.at_ms,
    json: JSON.stringify(record),
    ...(features ? { features: { id: features.features_id, json: JSON.stringify(features) } } : {}),
  };
}

/** The feature sets a batch's reads name, each once, in order of first use; `skip` leaves out sets the destination holds. */
export function featureSetsOf(records: readonly EncodedFeatureLogRecord[], skip: (id: string) => boolean = () => false): EncodedFeatureSet[] {
  const sets = new Map<string, EncodedFeatureSet>();
  for (const r of records) if (r.features && !sets.has(r.features.id) && !skip(r.features.id)) sets.set(r.features.id, r.features);
  return [...sets.values()];
}

/** Where logged records go. A write that throws counts its records as dropped. */
export interface FeatureLogSink {
  readonly destination: string;
  /** Records as objects: predictions, and reads queued as records (offer, offerEncoded). */
  write(records: readonly EncodedFeatureLogRecord[]): Promise<void>;
  /**
   * A batch whose served reads (offerRead) are bytes in the queue's arena, valid until the write
   * ends. A sink without it is given those reads as records (ReadBatch.records) through write.
   */
  writeBatch?(batch: FeatureLogBatch): Promise<void>;
  close?(): Promise<void>;
}

/** What the queue hands a sink at once: records as objects, and served reads as bytes. */
export interface FeatureLogBatch {
  records: readonly EncodedFeatureLogRecord[];
  reads: ReadBatch;
}

/**
 * The feature log's metrics (prom-client), served by the API's GET /metrics. The per-read figures
 * (reads sampled out, the queue depth) are read from the queue when the metrics are collected, not
 * updated per read: a prom-client update per read cost the serving path more than the sampling.
 */
export class FeatureLogMetrics {
  readonly registry = new MetricsRegistry();
  readonly records = new Counter({
    name: 'tidemark_feature_log_records_total',
    help: 'Feature-log records by kind (read, prediction) and outcome: written, dropped_queue_full, dropped_write_failed',
    labelNames: ['kind', 'outcome'],
    registers: [this.registry],
  });
  readonly sampledOut: Counter;
  readonly queueDepth: Gauge;
  readonly queueLimit = new Gauge({ name: 'tidemark_feature_log_queue_limit', help: 'Most records the queue holds before it drops', registers: [this.registry] });

  constructor(read: () => { sampledOut: number; queueDepth: number }) {
    let counted = 0;
    this.sampledOut = new Counter({
      name: 'tidemark_feature_log_sampled_out_total',
      help: 'Served reads left out of the log by the sample rate',
      registers: [this.registry],
      collect() {
        const now = read().sampledOut;
        this.inc(now - counted);
        counted = now;
      },
    });
    this.queueDepth = new Gauge({
      name: 'tidemark_feature_log_queue_depth',
      help: 'Records waiting to be written',
      registers: [this.registry],
      collect() {
        this.set(read().queueDepth);
      },
    });
  }
}

export interface FeatureLogQueueOptions {
  /** Fraction of served reads logged, 0 to 1 (predictions are always logged). */
  sampleRate: number;
  /** Most records waiting; more are dropped (default 10 000). */
  queueLimit?: number;
  /** Most records per write (default 5 000). */
  batchRecords?: number;
  /** How long after the oldest queued record a write waits for more, while fewer than batchRecords are queued (default 500 ms): fewer, bigger writes. flush() does not wait. */
  lingerMs?: number;
  /** A write taking longer than this counts as failed (default 10 000 ms); the queue moves on. */
  writeTimeoutMs?: number;
  /** Random numbers in [0, 1) for sampling (tests). */
  random?: () => number;
  log?: (level: 'error' | 'info', message: string, details: Record<string, unknown>) => void;
}

export interface FeatureLogQueueStats {
  queued: number;
  written: number;
  droppedQueueFull: number;
  droppedWriteFailed: number;
  sampledOut: number;
}

/**
 * The bounded queue between serving and a sink. `offer` is synchronous and never waits: the
 * records are written by one background loop, a batch at a time.
 */
export class FeatureLogQueue {
  readonly metrics = new FeatureLogMetrics(() => ({ sampledOut: this.stats.sampledOut, queueDepth: this.depth }));
  readonly stats: FeatureLogQueueStats = { queued: 0, written: 0, droppedQueueFull: 0, droppedWriteFailed: 0, sampledOut: 0 };
  readonly sampleRate: number;
  private readonly queueLimit: number;
  private readonly batchRecords: number;
  private readonly writeTimeoutMs: number;
  private readonly lingerMs: number;
  private readonly random: () => number;
  /** Records queued as objects: predictions, and reads given as records. */
  private pending: EncodedFeatureLogRecord[] = [];
  /** Served reads queued as bytes (offerRead). */
  private readonly reads: ReadArena;
  /** When the oldest pending record was queued (performance.now()): a write lingers until lingerMs after it, not lingerMs after the last write. */
  private oldestQueuedAt = 0;
  private endLinger: (() => void) | null = null;
  private flushing = 0;
  /** Records queued by offerAndWait and not yet written or dropped: while there are any, a write does not linger. */
  private waiting = 0;
  private writing: Promise<void> | null = null;
  private lastError: string | null = null;

  constructor(
    readonly sink: FeatureLogSink,
    private readonly opts: FeatureLogQueueOptions,
  ) {
    if (!(opts.sampleRate >= 0 && opts.sampleRate <= 1)) throw new RangeError(`feature-log sample rate must be from 0 to 1, got ${opts.sampleRate}`);
    this.sampleRate = opts.sampleRate;
    this.queueLimit = opts.queueLimit ?? 10_000;
    this.batchRecords = opts.batchRecords ?? 5_000;
    this.lingerMs = opts.lingerMs ?? 500;
    this.writeTimeoutMs = opts.writeTimeoutMs ?? 10_000;
    this.random = opts.random ?? Math.random;
    this.metrics.queueLimit.set(this.queueLimit);
    this.reads = new ReadArena(this.queueLimit);
  }

  /** Records waiting to be written (not those of the write under way). */
  private get depth(): number {
    return this.pending.length + this.reads.count;
  }

  /** Whether the next served read is to be logged (the sample rate); one left out is counted. */
  sample(): boolean {
    const take = this.draw();
    if (!take) this.countSampledOut();
    return take;
  }

  /** The sample rate's draw alone, made before a read (so that it asks for what logging needs); countSampledOut once the read is served and left out. */
  draw(): boolean {
    return this.sampleRate >= 1 || (this.sampleRate > 0 && this.random() < this.sampleRate);
  }

  countSampledOut(): void {
    this.stats.sampledOut++;
  }

  /** Queue a record; false when the queue was full and the record was dropped (and counted). */
  offer(record: LoggedReadRecord | LoggedPredictionRecord): boolean {
    return this.offerEncoded(encodeFeatureLogRecord(record));
  }

  /**
   * Queue a record and wait until it is written; rejects with the reason when it is dropped (queue
   * full, write failed or timed out). A write does not linger while such a record waits: it goes
   * out at once with whatever else is queued, and records arriving during a write go in the next
   * (group commit). A prediction is logged this way: its sender is told whether it was stored.
   */
  offerAndWait(record: LoggedReadRecord | LoggedPredictionRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const encoded: EncodedFeatureLogRecord = {
        ...encodeFeatureLogRecord(record),
        settle: (error) => {
          this.waiting--;
          if (error === null) resolve();
          else reject(error);
        },
      };
      this.waiting++;
      if (!this.offerEncoded(encoded)) {
        this.waiting--;
        reject(new Error(`the feature-log queue is full (${this.queueLimit} records): writing to ${this.sink.destination} is behind or failing`));
        return;
      }
      // Someone waits: write now, with whatever else is queued (what arrives meanwhile goes in the next write).
      this.endLinger?.();
    });
  }

  /** Queue a record already encoded; false when dropped. */
  offerEncoded(record: EncodedFeatureLogRecord): boolean {
    if (!this.admit(record.kind)) return false;
    // The record is the caller's to hand over: its text becomes bytes in place (no copy of the record).
    if (record.kind === 'read' && typeof record.json === 'string') record.json = Buffer.from(record.json, 'utf8');
    this.pending.push(record);
    this.queued();
    return true;
  }

  /**
   * Queue a served read by its JSON text (online/feature-log.ts's encoding, version 3: it starts
   * with the request id), its read time and its feature set: the text goes into the queue's arena
   * as bytes, and nothing of the read stays on the JS heap while it waits. False when dropped.
   */
  offerRead(json: string, timeMs: number, features: EncodedFeatureSet): boolean {
    if (!this.admit('read')) return false;
    this.reads.push(json, timeMs, features);
    this.queued();
    return true;
  }

  /** Whether the queue has room for a record; a full queue drops it and counts the drop. */
  private admit(kind: EncodedFeatureLogRecord['kind']): boolean {
    const depth = this.depth;
    if (depth >= this.queueLimit) {
      this.stats.droppedQueueFull++;
      this.metrics.records.inc({ kind, outcome: 'dropped_queue_full' });
      return false;
    }
    // Records left behind by a full batch keep the older time (they go out without lingering).
    if (depth === 0) this.oldestQueuedAt = performance.now();
    return true;
  }

  /** After a record is queued: count it, and start the writer or end its linger. */
  private queued(): void {
    this.stats.queued++;
    // A full batch does not wait out the linger (else the queue fills while the writer sleeps).
    if (this.endLinger !== null && this.depth >= this.batchRecords) this.endLinger();
    if (this.writing === null) this.writing = this.drain().finally(() => (this.writing = null));
  }

  /** Wait until every queued record is written or dropped. */
  async flush(): Promise<void> {
    this.flushing++;
    try {
      this.endLinger?.();
      while (this.writing !== null) await this.writing;
    } finally {
      this.flushing--;
    }
  }

  /** Flush, then close the sink. */
  async close(): Promise<void> {
    await this.flush();
    await this.sink.close?.();
  }

  private async drain(): Promise<void> {
    while (this.depth > 0) {
      // Linger for more records, up to lingerMs after the oldest was queued: records that waited
      // during the last write go out at once (else the queue drains at most batchRecords per
      // lingerMs, and drops what comes faster).
      const lingerLeft = this.oldestQueuedAt + this.lingerMs - performance.now();
      if (this.depth < this.batchRecords && lingerLeft > 0 && this.flushing === 0 && this.waiting === 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, lingerLeft);
          this.endLinger = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.endLinger = null;
      }
      const records = this.pending.splice(0, this.batchRecords);
      const reads = this.reads.take(this.batchRecords - records.length);
      const total = records.length + reads.count;
      let timedOut = false;
      try {
        const write = this.sink.writeBatch ? this.sink.writeBatch({ records, reads }) : this.sink.write(reads.count === 0 ? records : [...records, ...reads.records()]);
        await withTimeout(write, this.writeTimeoutMs, `no answer from ${this.sink.destination} within ${this.writeTimeoutMs} ms`, () => (timedOut = true));
        this.stats.written += total;
        this.count(records, reads.count, 'written', null);
        if (this.lastError !== null) this.opts.log?.('info', 'feature log: writing again', { destination: this.sink.destination });
        this.lastError = null;
      } catch (e) {
        this.stats.droppedWriteFailed += total;
        const message = e instanceof Error ? e.message : String(e);
        this.count(records, reads.count, 'dropped_write_failed', new Error(`writing to ${this.sink.destination} failed: ${message}`));
        // Once per outage, not once per batch.
        if (this.lastError === null) this.opts.log?.('error', `feature log: writing to ${this.sink.destination} failed; records are dropped and counted until it works again`, { error: message, dropped: total });
        this.lastError = message;
      } finally {
        // A write given up on may still be reading the arena's bytes: those chunks are not reused.
        reads.release(!timedOut);
      }
    }
  }

  /** Count a batch's records by kind (one counter update per kind, not per record), and tell the records that wait for it. */
  private count(records: readonly EncodedFeatureLogRecord[], arenaReads: number, outcome: 'written' | 'dropped_write_failed', error: Error | null): void {
    let reads = arenaReads;
    for (const r of records) {
      if (r.kind === 'read') reads++;
      r.settle?.(error);
    }
    if (reads > 0) this.metrics.records.inc({ kind: 'read', outcome }, reads);
    if (records.length + arenaReads > reads) this.metrics.records.inc({ kind: 'prediction', outcome }, records.length + arenaReads - reads);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string, onTimeout: () => void = () => undefined): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Error(message));
    }, ms);
  });
  promise.catch(() => undefined); // a late failure after the timeout is not unhandled
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const NEWLINE = Buffer.from('\n');
/** About how many bytes of records a Kafka message carries: under the brokers' default 1 MB limit (message.max.bytes), with room for the sets. */
const KAFKA_MESSAGE_BYTES = 512 * 1024;

/** Feature-log records produced to `<prefix>.feature_log`, many per message, one per line (kafkajs). */
export class KafkaFeatureLogSink implements FeatureLogSink {
  readonly destination: string;
  private readonly producer: Producer;
  private connected: Promise<void> | null = null;

  constructor(
    readonly topic: string,
    opts: { brokers: string[]; security?: Pick<KafkaConfig, 'ssl' | 'sasl'>; retries?: number },
  ) {
    this.destination = `kafka:${topic}`;
    const kafka = new Kafka({ clientId: 'tidemark-feature-log', brokers: opts.brokers, logLevel: logLevel.NOTHING, retry: { retries: opts.retries ?? 3, initialRetryTime: 100, maxRetryTime: 1_000 }, ...opts.security });
    this.producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: true });
  }

  async write(records: readonly EncodedFeatureLogRecord[]): Promise<void> {
    await this.send(this.messagesOf(records));
  }

  /** The records as messages, and the arena's reads cut into messages from their bytes. */
  async writeBatch({ records, reads }: FeatureLogBatch): Promise<void> {
    const messages = this.messagesOf(records);
    let from = 0;
    let bytes = 0;
    const cut = (to: number): void => {
      if (to === from) return;
      // The message's feature sets, one a line, then its reads' lines, without the last newline (as write's messages).
      const value = Buffer.concat([...reads.featureSets(from, to).map((set) => Buffer.from(`${set.json}\n`, 'utf8')), ...reads.lines(from, to)]);
      messages.push({ value: value.subarray(0, value.length - 1) });
      from = to;
      bytes = 0;
    };
    for (let i = 0; i < reads.count; i++) {
      bytes += reads.lineBytes(i);
      if (bytes >= KAFKA_MESSAGE_BYTES) cut(i + 1);
    }
    cut(reads.count);
    await this.send(messages);
  }

  private async send(messages: { value: Buffer }[]): Promise<void> {
    if (messages.length === 0) return;
    // Connect lazily, and again after a failed attempt: serving starts whether Kafka is up or not.
    this.connected ??= this.producer.connect().catch((e: unknown) => {
      this.connected = null;
      throw e;
    });
    await this.connected;
    await this.producer.send({ topic: this.topic, acks: -1, messages });
  }

  private messagesOf(records: readonly EncodedFeatureLogRecord[]): { value: Buffer }[] {
    // Many records per message (lines, each message with the feature sets its reads use): a
    // message per record cost kafkajs more than the read it logged.
    const messages: { value: Buffer }[] = [];
    let start = 0;
    let bytes = 0;
    const cut = (end: number): void => {
      if (end === start) return;
      // One record per line, the feature sets the message's reads name first.
      const chunk = records.slice(start, end);
      const lines = [...featureSetsOf(chunk).map((set) => Buffer.from(set.json, 'utf8')), ...chunk.map((r) => (typeof r.json === 'string' ? Buffer.from(r.json, 'utf8') : r.json))];
      messages.push({ value: Buffer.concat(lines.flatMap((l, i) => (i === 0 ? [l] : [NEWLINE, l]))) });
      start = end;
      bytes = 0;
    };
    for (let i = 0; i < records.length; i++) {
      bytes += records[i]!.json.length + 1;
      if (bytes >= KAFKA_MESSAGE_BYTES) cut(i + 1);
    }
    cut(records.length);
    return messages;
  }

  async close(): Promise<void> {
    await this.producer.disconnect().catch(() => undefined);
  }
}
