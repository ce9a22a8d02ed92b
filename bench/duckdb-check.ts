// Checks the DuckDB benchmark baseline (bench/duckdb-point-in-time.ts) against the reference
// implementation: for each flights view, a random 20 000-row spine, the DuckDB dataset, then a few
// hundred of its rows recomputed by definitions/reference.ts over the decoded flights.
// Run: node bin/run-ts.mjs bench/duckdb-check.ts [spine rows] [checked rows]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { compileOrThrow, referenceViewValues, valuesAgree, type ReferenceEvent, type Scalar } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { EventDecoder, readParquetBatches } from '../ingest/index.js';
import { duckdbDataset, writeRandomSpine, type FlightsView } from './duckdb-point-in-time.js';

const SPINE_ROWS = Number(process.argv[2] ?? 20_000);
const CHECKED_ROWS = Number(process.argv[3] ?? 300);
const VIEWS: FlightsView[] = ['origin_delays', 'route_delays'];
const compiled = compileOrThrow(flights);
const dir = mkdtempSync(join(tmpdir(), 'tidemark-duckdb-check-'));
let failures = 0;

try {
  // 1. Datasets, and a sample of their rows (every row's id and position are checked in SQL).
  const samples = new Map<FlightsView, Record<string, unknown>[]>();
  for (const view of VIEWS) {
    const spine = join(dir, `${view}-spine.parquet`);
    const out = join(dir, `${view}-duckdb.parquet`);
    await writeRandomSpine({ eventsParquet: FLIGHTS_PARQUET_PATH, view, rows: SPINE_ROWS, outParquet: spine });
    const { rows, seconds } = await duckdbDataset({ eventsParquet: FLIGHTS_PARQUET_PATH, spineParquet: spine, view, outParquet: out });
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const file = `read_parquet('${out}', file_row_number = true)`;
    const [outRows, misplaced] = (await c.runAndReadAll(`SELECT count(*), count(*) FILTER (id <> file_row_number) FROM ${file}`)).getRows()[0]!.map(Number);
    const every = Math.max(1, Math.floor(SPINE_ROWS / CHECKED_ROWS));
    samples.set(view, (await c.runAndReadAll(`SELECT * FROM ${file} WHERE hash(id, 7) % ${every} = 0 ORDER BY id`)).getRowObjectsJS());
    c.closeSync();
    db.closeSync();
    console.log(`${view}: DuckDB dataset of ${rows} spine rows in ${seconds.toFixed(2)} s; output ${outRows} rows, ${misplaced} out of spine order`);
    if (outRows !== SPINE_ROWS || misplaced !== 0) failures++;
  }

  // 2. The reference over the decoded flights of the sampled keys.
  const decoder = new EventDecoder(compiled, 'flights');
  const eventsByKey = new Map<string, ReferenceEvent[]>();
  const keyOf = (view: FlightsView, r: Record<string, unknown>): string => (view === 'origin_delays' ? `o|${r.airport}` : `r|${r.origin}|${r.destination}`);
  const wanted = new Set(VIEWS.flatMap((v) => samples.get(v)!.map((r) => keyOf(v, r))));
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH)) {
    for (const row of batch.rows) {
      const d = decoder.decodeValue(row);
      if (!d.ok) continue;
      const e: ReferenceEvent = { eventTimeMs: d.event.eventTimeMs, fields: d.event.fields };
      for (const key of [keyOf('origin_delays', { airport: e.fields.origin }), keyOf('route_delays', e.fields)]) {
        if (wanted.has(key)) (eventsByKey.get(key) ?? eventsByKey.set(key, []).get(key)!).push(e);
      }
    }
  }
  for (const view of VIEWS) {
    const plan = compiled.registry.views.find((v) => v.name === view)!;
    let values = 0;
    let bad = 0;
    const tally = { nullValues: 0, ownInstant: 0 };
    for (const r of samples.get(view)!) {
      const keyValues = plan.joinKeys.map((k) => String(r[k]));
      const events = eventsByKey.get(keyOf(view, r)) ?? [];
      const t = Number(r.ts);
      const ref = referenceViewValues(plan, events, keyValues, t);
      if (events.some((e) => e.eventTimeMs === t)) tally.ownInstant++;
      for (const f of plan.features) {
        const raw = r[`${view}__${f.name}`];
        const got: Scalar = typeof raw === 'bigint' ? Number(raw) : (raw as Scalar);
        values++;
        if (got === null) tally.nullValues++;
        if (!valuesAgree(f.agg, got, ref[f.name]!)) {
          if (bad++ < 5) console.log(`  MISMATCH ${view} id=${r.id} key=${keyValues.join('/')} t=${t} ${f.name}: duckdb ${got}, reference ${ref[f.name]}`);
        }
      }
    }
    console.log(
      `${view}: checked ${samples.get(view)!.length} rows x ${plan.features.length} features = ${values} values against the reference ` +
        `(${tally.ownInstant} rows at an event's own instant, ${tally.nullValues} NULL values): ${bad} mismatches`,
    );
    if (bad > 0) failures++;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(failures === 0 ? 'OK: DuckDB baseline agrees with the reference' : `FAILED: ${failures} checks`);
process.exitCode = failures === 0 ? 0 : 1;
