// Served reads queued as bytes in the feature-log queue's arena (FeatureLogQueue.offerRead): every
// read reaches the sink once, byte for byte and in order, while the arena's chunks are reused
// across batches, written to during a write and outgrown by a large read; a sink without
// writeBatch gets them as records (request id and all); a full queue drops and counts them; a
// write given up on keeps its bytes (its chunks are not reused); and the Kafka sink sends the
// arena's reads as the same messages as their records.
import { describe, expect, it } from 'vitest';
import { FeatureLogQueue, KafkaFeatureLogSink, type EncodedFeatureLogRecord, type EncodedFeatureSet, type FeatureLogBatch } from '../../ingest/index.js';

const SETS: EncodedFeatureSet[] = [
  { id: 'set-a', json: '{"kind":"features","v":3,"features_id":"set-a","registry_version":"r","features":["v:a"]}' },
  { id: 'set-b', json: '{"kind":"features","v":3,"features_id":"set-b","registry_version":"r","features":["v:b"]}' },
];

/** A version-3 read's text as encodeLoggedRead writes it (the request id first), padded to vary its size. */
function readText(requestId: string, i: number, pad: number): string {
  return `{"kind":"read","v":3,"request_id":${JSON.stringify(requestId)},"read_time_ms":${i},"features_id":"${SETS[i % 2]!.id}","entities":{"k":[${JSON.stringify('x'.repeat(pad) + 'caf\u00e9 \u2603')}]},"values":[${i}],"statuses":"P","ages_ms":[0]}`;
}

interface Seen {
  json: string;
  timeMs: number;
  requestId: string;
  set: string | undefined;
}

describe('FeatureLogQueue.offerRead', () => {
  it('writes every read once, byte for byte and in order, through reused chunks, a write under way and a read larger than a chunk', async () => {
    const seen: Seen[] = [];
    const lines: string[] = [];
    const setsPerBatch: [string, string][] = [];
    const sink = {
      destination: 'memory',
      write: async () => {
        throw new Error('the arena sink is given batches');
      },
      writeBatch: async ({ records, reads }: FeatureLogBatch) => {
        expect(records).toEqual([]);
        // The write waits while 3 000 more reads (3 MB, more than a chunk) come: their bytes must not land on this batch's.
        if (!offering.done) await new Promise<void>((resolve) => (offering.waiter = { until: offering.count + 3_000, resolve }));
        for (let i = 0; i < reads.count; i++) seen.push({ json: reads.json(i).toString('utf8'), timeMs: reads.timeMs(i), requestId: reads.requestId(i), set: reads.features(i)?.id });
        lines.push(Buffer.concat(reads.lines()).toString('utf8'));
        // Reads alternate between the two sets: a batch names each set it uses once, in order of first use.
        setsPerBatch.push([reads.featureSets().map((s) => s.id).join(','), [...new Set(Array.from({ length: reads.count }, (_, i) => reads.features(i)!.id))].join(',')]);
      },
    };
    const offering: { count: number; done: boolean; waiter: { until: number; resolve: () => void } | null } = { count: 0, done: false, waiter: null };
    const queue = new FeatureLogQueue(sink, { sampleRate: 1, batchRecords: 700, queueLimit: 100_000, lingerMs: 1 });
    const expected: Seen[] = [];
    // About 9 MB of reads (several times the chunks kept), a request id needing escapes, and one read of 2.5 MB.
    for (let i = 0; i < 9_000; i++) {
      const requestId = i === 17 ? 'q"uo\\te\u00e9' : `req-${i}`;
      const json = readText(requestId, i, i === 8_765 ? 2_500_000 : 900 + (i % 50));
      expect(queue.offerRead(json, i, SETS[i % 2]!)).toBe(true);
      expected.push({ json, timeMs: i, requestId, set: SETS[i % 2]!.id });
      offering.count++;
      if (offering.waiter !== null && offering.count >= offering.waiter.until) {
        offering.waiter.resolve();
        offering.waiter = null;
      }
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    offering.done = true;
    offering.waiter?.resolve();
    await queue.flush();
    expect(seen.length).toBe(expected.length);
    for (let i = 0; i < expected.length; i++) if (seen[i]!.json !== expected[i]!.json) expect(seen[i]).toEqual(expected[i]); // one failure names the read
    expect(seen).toEqual(expected);
    expect(lines.join('')).toBe(expected.map((e) => `${e.json}\n`).join(''));
    expect(setsPerBatch.length).toBeGreaterThan(8);
    expect(setsPerBatch.filter(([named, used]) => named !== used)).toEqual([]);
    expect(queue.stats).toMatchObject({ queued: 9_000, written: 9_000, droppedQueueFull: 0, droppedWriteFailed: 0 });
  });

  it('gives a sink without writeBatch the reads as records, with their request ids, bytes it may keep, and the predictions queued beside them', async () => {
    const written: EncodedFeatureLogRecord[] = [];
    const queue = new FeatureLogQueue({ destination: 'memory', write: async (records) => void written.push(...records) }, { sampleRate: 1, lingerMs: 1 });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 2_000; i++) queue.offerRead(readText(`r${round}-${i}`, i, 400), i, SETS[0]!);
      await queue.flush();
    }
    queue.offer({ kind: 'prediction', v: 1, request_id: 'p', score: 1, model: null, at_ms: 5 });
    await queue.flush();
    expect(written).toHaveLength(6_001);
    // The first round's bytes are intact after the arena's chunks were reused by the next rounds.
    expect(written.slice(0, 3).map((r) => [r.kind, r.requestId, r.timeMs, r.json.toString(), r.features?.id])).toEqual([0, 1, 2].map((i) => ['read', `r0-${i}`, i, readText(`r0-${i}`, i, 400), 'set-a']));
    expect(written[5_999]).toMatchObject({ kind: 'read', requestId: 'r2-1999' });
    expect(written[6_000]).toMatchObject({ kind: 'prediction', requestId: 'p' });
  });

  it('drops reads past the queue limit (counting the queued records of both kinds) and counts them in the metrics', async () => {
    let release = (): void => {};
    const queue = new FeatureLogQueue({ destination: 'slow', write: () => new Promise<void>((r) => (release = r)) }, { sampleRate: 1, queueLimit: 3, lingerMs: 0 });
    expect(queue.offerRead(readText('a', 1, 0), 1, SETS[0]!)).toBe(true);
    await new Promise((r) => setTimeout(r, 20)); // a is taken by the write, which hangs
    expect(queue.offer({ kind: 'prediction', v: 1, request_id: 'p', score: 1, model: null, at_ms: 5 })).toBe(true);
    expect([queue.offerRead(readText('b', 2, 0), 2, SETS[0]!), queue.offerRead(readText('c', 3, 0), 3, SETS[0]!), queue.offerRead(readText('d', 4, 0), 4, SETS[0]!)]).toEqual([true, true, false]);
    expect(queue.stats.droppedQueueFull).toBe(1);
    const metrics = await queue.metrics.registry.getSingleMetricAsString('tidemark_feature_log_records_total');
    expect(metrics).toContain('tidemark_feature_log_records_total{kind="read",outcome="dropped_queue_full"} 1');
    release();
    await new Promise((r) => setTimeout(r, 20));
    release();
    await queue.flush();
    expect(queue.stats).toMatchObject({ queued: 4, written: 4, droppedQueueFull: 1 });
  });

  it('does not reuse the chunks of a write it gave up on: the sink may still be reading them', async () => {
    let hung: FeatureLogBatch | null = null;
    const sink = {
      destination: 'stuck once',
      write: async () => undefined,
      writeBatch: (batch: FeatureLogBatch) => {
        if (hung !== null) return Promise.resolve();
        hung = batch;
        return new Promise<void>(() => undefined);
      },
    };
    const queue = new FeatureLogQueue(sink, { sampleRate: 1, lingerMs: 1, writeTimeoutMs: 50 });
    const first = Array.from({ length: 1_000 }, (_, i) => readText(`first-${i}`, i, 1_500));
    first.forEach((json, i) => queue.offerRead(json, i, SETS[0]!));
    await queue.flush();
    expect(queue.stats.droppedWriteFailed).toBe(1_000);
    // Several chunks' worth of later reads, written at once.
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 2_000; i++) queue.offerRead(readText(`later-${i}`, i, 1_500), i, SETS[1]!);
      await queue.flush();
    }
    const batch = hung as unknown as FeatureLogBatch;
    expect(Array.from({ length: batch.reads.count }, (_, i) => batch.reads.json(i).toString())).toEqual(first);
  });

  it('the Kafka sink cuts a batch of arena reads into the same messages as write() of their records: about 512 KB each, its feature sets first', async () => {
    const sent: Buffer[][] = [];
    const sink = new KafkaFeatureLogSink('t.feature_log', { brokers: ['127.0.0.1:1'] });
    // The producer stood in for: the messages are what is compared.
    Object.assign(sink, { producer: { connect: async () => undefined, disconnect: async () => undefined, send: async ({ messages }: { messages: { value: Buffer }[] }) => void sent.push(messages.map((m) => Buffer.from(m.value))) } });
    const records: EncodedFeatureLogRecord[] = [];
    const queue = new FeatureLogQueue({ destination: 'records', write: async () => undefined, writeBatch: async (batch) => void records.push(...batch.reads.records()) }, { sampleRate: 1, lingerMs: 60_000 });
    for (let i = 0; i < 4_000; i++) queue.offerRead(readText(`k-${i}`, i, i % 7 === 0 ? 3_000 : 100), i, SETS[Math.floor(i / 1_500) % 2]!);
    // The batch is written to Kafka while the queue still holds its bytes (before the write returns).
    const writes: Promise<void>[] = [];
    const kafkaQueue = new FeatureLogQueue({ destination: 'kafka', write: (records) => sink.write(records), writeBatch: (batch) => ((writes.push(sink.writeBatch(batch)), writes.at(-1)!)) }, { sampleRate: 1, lingerMs: 60_000 });
    for (let i = 0; i < 4_000; i++) kafkaQueue.offerRead(readText(`k-${i}`, i, i % 7 === 0 ? 3_000 : 100), i, SETS[Math.floor(i / 1_500) % 2]!);
    await kafkaQueue.flush();
    const fromBytes = sent.splice(0);
    await queue.flush();
    await sink.write(records);
    const fromRecords = sent.splice(0);
    expect(fromBytes.flat().length).toBeGreaterThan(4);
    expect(fromBytes.flat().map((m) => m.toString())).toEqual(fromRecords.flat().map((m) => m.toString()));
    const messages = fromBytes.flat().map((m) => m.toString().split('\n'));
    expect(messages.every((lines) => lines.join('\n').length < 520 * 1024 && JSON.parse(lines[0]!).kind === 'features')).toBe(true);
    expect(messages.flatMap((lines) => lines.filter((l) => JSON.parse(l).kind === 'read').map((l) => JSON.parse(l).request_id))).toEqual(Array.from({ length: 4_000 }, (_, i) => `k-${i}`));
  });
});
