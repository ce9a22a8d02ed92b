// The feature-log queue's offerAndWait (how POST /feature-log/predictions logs a prediction): the
// answer comes once the record is written, without the linger reads are batched with, together
// with whatever else was queued; a failed write or a full queue rejects it with the reason.
import { describe, expect, it } from 'vitest';
import { FeatureLogQueue, FEATURE_LOG_FORMAT_VERSION, type EncodedFeatureLogRecord, type LoggedPredictionRecord } from '../../ingest/index.js';

const prediction = (id: string): LoggedPredictionRecord => ({ kind: 'prediction', v: FEATURE_LOG_FORMAT_VERSION, request_id: id, score: 0.5, model: null, at_ms: 1 });

describe('FeatureLogQueue.offerAndWait', () => {
  it('writes at once, with what was queued before, and resolves once written', async () => {
    const writes: string[][] = [];
    const queue = new FeatureLogQueue({ destination: 'memory', write: async (records) => void writes.push(records.map((r: EncodedFeatureLogRecord) => r.requestId)) }, { sampleRate: 1, lingerMs: 60_000 });
    queue.offer(prediction('a'));
    queue.offer(prediction('b'));
    await new Promise((r) => setTimeout(r, 100));
    expect(writes).toEqual([]); // plain offers linger (60 s here)
    const started = performance.now();
    await queue.offerAndWait(prediction('c'));
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(writes).toEqual([['a', 'b', 'c']]);
    expect(queue.stats).toMatchObject({ written: 3, droppedWriteFailed: 0 });
    await queue.close();
  });

  it('rejects with the reason when the write fails or the queue is full, and counts the drop', async () => {
    const failing = new FeatureLogQueue({ destination: 'broken', write: async () => Promise.reject(new Error('connection refused')) }, { sampleRate: 1 });
    await expect(failing.offerAndWait(prediction('x'))).rejects.toThrow('writing to broken failed: connection refused');
    expect(failing.stats).toMatchObject({ written: 0, droppedWriteFailed: 1 });
    let release = (): void => {};
    const blocked = new FeatureLogQueue({ destination: 'slow', write: () => new Promise<void>((r) => (release = r)) }, { sampleRate: 1, queueLimit: 1 });
    const first = blocked.offerAndWait(prediction('1')); // taken by the write, which hangs
    const second = blocked.offerAndWait(prediction('2')); // waits in the queue (1 record)
    await expect(blocked.offerAndWait(prediction('3'))).rejects.toThrow('the feature-log queue is full (1 records)');
    expect(blocked.stats.droppedQueueFull).toBe(1);
    release();
    await first;
    release();
    await second;
    expect(blocked.stats).toMatchObject({ written: 2, droppedQueueFull: 1 });
  });
});

describe('FeatureLogQueue batching', () => {
  it('lingers from the oldest record queued: records that waited through a write go out at once, not a linger later', async () => {
    const writes: { ids: string[]; at: number }[] = [];
    let release = (): void => {};
    const queue = new FeatureLogQueue(
      {
        destination: 'slow',
        write: (records) => {
          writes.push({ ids: records.map((r) => r.requestId), at: performance.now() });
          return writes.length === 1 ? new Promise<void>((r) => (release = r)) : Promise.resolve();
        },
      },
      { sampleRate: 1, lingerMs: 1_000 },
    );
    queue.offer(prediction('a'));
    await new Promise((r) => setTimeout(r, 1_200)); // a lingered 1 s, then its write started (and hangs)
    expect(writes.map((w) => w.ids)).toEqual([['a']]);
    queue.offer(prediction('b'));
    await new Promise((r) => setTimeout(r, 1_200)); // b waits through the write, longer than the linger
    const released = performance.now();
    release();
    await new Promise((r) => setTimeout(r, 600)); // no flush: it would end a linger too
    // Before, b lingered a full second after the write ended: the queue wrote at most one batch per linger.
    expect(writes.map((w) => w.ids)).toEqual([['a'], ['b']]);
    expect(writes[1]!.at - released).toBeLessThan(500);
    await queue.close();
  });

  it('writes a full batch at once, without waiting out the linger', async () => {
    const writes: string[][] = [];
    const queue = new FeatureLogQueue({ destination: 'memory', write: async (records) => void writes.push(records.map((r) => r.requestId)) }, { sampleRate: 1, lingerMs: 60_000, batchRecords: 2 });
    queue.offer(prediction('a'));
    await new Promise((r) => setTimeout(r, 50));
    expect(writes).toEqual([]); // lingering for more
    queue.offer(prediction('b'));
    queue.offer(prediction('c'));
    await new Promise((r) => setTimeout(r, 100));
    expect(writes).toEqual([['a', 'b']]); // c lingers
    await queue.close();
    expect(writes).toEqual([['a', 'b'], ['c']]);
  });

  it('reports the reads sampled out and the queue depth in its metrics when collected', async () => {
    const draws = [0.1, 0.9, 0.2, 0.8, 0.7];
    const queue = new FeatureLogQueue({ destination: 'memory', write: async () => undefined }, { sampleRate: 0.5, lingerMs: 60_000, random: () => draws.shift()! });
    const metric = async (name: string): Promise<number> => (await queue.metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => l.startsWith(name)).map((l) => Number(l.split(' ')[1]))[0]!;
    expect([1, 2, 3].map(() => queue.sample())).toEqual([true, false, true]);
    queue.offer(prediction('a'));
    queue.offer(prediction('b'));
    expect([await metric('tidemark_feature_log_sampled_out_total'), await metric('tidemark_feature_log_queue_depth')]).toEqual([1, 2]);
    expect([queue.sample(), queue.sample()]).toEqual([false, false]);
    await queue.flush();
    expect([await metric('tidemark_feature_log_sampled_out_total'), await metric('tidemark_feature_log_queue_depth')]).toEqual([3, 0]);
  });

  it('holds a read as the UTF-8 bytes of its JSON text while queued', async () => {
    const written: unknown[] = [];
    const queue = new FeatureLogQueue({ destination: 'memory', write: async (records) => void written.push(...records.map((r) => r.json)) }, { sampleRate: 1 });
    const json = JSON.stringify({ kind: 'read', note: 'caf\u00e9' });
    queue.offerEncoded({ kind: 'read', requestId: 'r', timeMs: 1, json });
    await queue.flush();
    expect(written).toEqual([Buffer.from(json, 'utf8')]);
  });
});
