// Embedded file replay: rows of a Parquet file, in file order, through decode -> materializer core
// -> an online store. Bad rows go to the dead-letter sink; nothing stops the replay.
import type { CompiledDefinitions } from '../definitions/index.js';
import type { DeadLetterSink } from './dead-letters.js';
import { EventDecoder, type BadEvent, type DecodedEvent } from './decode.js';
import { TileBatchBuilder } from './materialize.js';
import { readParquetBatches } from './parquet.js';
import type { TileBatch } from '../definitions/index.js';

/** What a replay needs of a store: the in-memory store applies synchronously, others asynchronously. */
export interface TileBatchSink {
  apply(batch: TileBatch): Promise<{ lateTileEvents: number }> | { lateTileEvents: number };
}

export interface ReplayStats {
  rows: number;
  events: number;
  badEvents: number;
  lateTileEvents: number;
  seconds: number;
}

export interface ReplayOptions {
  source: string;
  limit?: number;
  batchRows?: number;
  deadLetters?: DeadLetterSink;
  onProgress?: (rowsDone: number) => void;
  /** Sees every decoded batch, good events and bad rows (another store loading the same events, a reference check). */
  onBatch?: (events: readonly DecodedEvent[], bad: readonly BadEvent[], rows: number) => Promise<void> | void;
  nowMs?: () => number;
}

export async function replayParquetFile(compiled: CompiledDefinitions, path: string, sink: TileBatchSink, opts: ReplayOptions): Promise<ReplayStats> {
  const decoder = new EventDecoder(compiled, opts.source, opts.nowMs);
  const builder = new TileBatchBuilder(compiled.registry);
  const started = performance.now();
  const stats: ReplayStats = { rows: 0, events: 0, badEvents: 0, lateTileEvents: 0, seconds: 0 };
  const readOpts: { limit?: number; batchRows?: number } = {};
  if (opts.limit !== undefined) readOpts.limit = opts.limit;
  if (opts.batchRows !== undefined) readOpts.batchRows = opts.batchRows;
  for await (const batch of readParquetBatches(path, readOpts)) {
    const events: DecodedEvent[] = [];
    const bad: BadEvent[] = [];
    for (let i = 0; i < batch.rows.length; i++) {
      // The position of a file row is its row number: partition 0, offset = row index.
      const result = decoder.decodeValue(batch.rows[i], { partition: 0, offset: batch.rowStart + i });
      if (result.ok) events.push(result.event);
      else bad.push(result.bad);
    }
    opts.deadLetters?.write(bad);
    await opts.onBatch?.(events, bad, batch.rows.length);
    const applied = await sink.apply(builder.build(events));
    stats.rows += batch.rows.length;
    stats.events += events.length;
    stats.badEvents += bad.length;
    stats.lateTileEvents += applied.lateTileEvents;
    opts.onProgress?.(stats.rows);
  }
  stats.seconds = (performance.now() - started) / 1000;
  return stats;
}
