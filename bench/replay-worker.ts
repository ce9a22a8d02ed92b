// One replay measurement in its own process (so peak RSS is its own): `baseline` only reads the
// Parquet file row by row; `replay` decodes, materializes and applies to the in-memory store,
// timing decode (zod) and the core (tile batch build + apply) separately.
import { compileOrThrow, type TileBatch } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { EventDecoder, readParquetBatches, TileBatchBuilder, type DecodedEvent } from '../ingest/index.js';
import { MemoryOnlineStore } from '../online/index.js';

const mode = process.argv[2];
const limit = process.argv[3] ? Number(process.argv[3]) : undefined;
const batchRows = Number(process.env.BATCH_ROWS ?? 50_000);
const readOpts = limit === undefined ? { batchRows } : { limit, batchRows };
const started = performance.now();
let rows = 0;
let decodeMs = 0;
let coreMs = 0;
let checksum = 0;

if (mode === 'baseline') {
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, readOpts)) {
    for (const row of batch.rows) checksum += row.delay as number; // touch each row, as decode would
    rows += batch.rows.length;
  }
} else {
  const compiled = compileOrThrow(flights);
  const decoder = new EventDecoder(compiled, 'flights');
  const builder = new TileBatchBuilder(compiled.registry);
  const store = new MemoryOnlineStore(compiled.registry);
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, readOpts)) {
    let t = performance.now();
    const events: DecodedEvent[] = [];
    for (let i = 0; i < batch.rows.length; i++) {
      const r = decoder.decodeValue(batch.rows[i], { partition: 0, offset: batch.rowStart + i });
      if (r.ok) events.push(r.event);
    }
    decodeMs += performance.now() - t;
    t = performance.now();
    const tiles: TileBatch = builder.build(events);
    store.applySync(tiles);
    coreMs += performance.now() - t;
    rows += batch.rows.length;
  }
  checksum = (await store.stats()).tiles;
}
const totalMs = performance.now() - started;
process.stdout.write(
  JSON.stringify({ mode, rows, totalMs, decodeMs, coreMs, checksum, peakRssMb: process.resourceUsage().maxRSS / 1024 }) + '\n',
);
