// The bench's check against the reference implementation (definitions/reference.ts), in its own
// process: for one view's two datasets (tidemark's and DuckDB's, same spine, same row order), every
// feature of a sample of rows is recomputed by the reference over the decoded events of
// bench/flights-float.ts and compared with both files within docs/semantics.md's tolerances
// (valuesAgree). The sample: every row where the two files' float-field columns disagree (up to
// `maxDisagreements`; the reference decides those), plus about `sampleRows` rows drawn by a hash of
// the spine's id.
//   <events.parquet> <view> <tidemark.parquet> <duckdb.parquet> <sampleRows> <maxDisagreements> <float columns, comma-separated>
// Prints one JSON line.
import { DuckDBInstance } from '@duckdb/node-api';
import { compileOrThrow, referenceViewValues, valuesAgree, type ReferenceEvent, type Scalar } from '../definitions/index.js';
import { EventDecoder, readParquetBatches } from '../ingest/index.js';
import * as flightsFloat from './flights-float.js';

const [eventsParquet, view, ours, theirs, sampleRowsArg, maxDisagreementsArg, floatArg] = process.argv.slice(2) as [string, string, string, string, string, string, string];
const started = performance.now();
const compiled = compileOrThrow(flightsFloat);
const plan = compiled.registry.views.find((v) => v.name === view)!;
const floatColumns = floatArg.split(',').filter((c) => c.length > 0);

const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
const side = (file: string): string => `(SELECT *, file_row_number AS __row FROM read_parquet('${file.replaceAll("'", "''")}', file_row_number = true))`;
const differs = (col: string): string => `coalesce((a."${col}" IS NULL) <> (b."${col}" IS NULL) OR abs(a."${col}" - b."${col}") > 1e-9 * abs(b."${col}"), false)`;
const total = Number((await c.runAndReadAll(`SELECT count(*) FROM ${side(ours)}`)).getRows()[0]![0]);
const every = Math.max(1, Math.floor(total / Number(sampleRowsArg)));
const disagree = floatColumns.length === 0 ? 'false' : floatColumns.map(differs).join(' OR ');
const featureCols = plan.features.map((f) => `${view}__${f.name}`);
const picked = (
  await c.runAndReadAll(
    `SELECT a.__row AS row, ${disagree} AS disagree, ${plan.joinKeys.map((k) => `a."${k}" AS "${k}"`).join(', ')}, a.ts AS ts,
       ${featureCols.map((f) => `a."${f}" AS "a.${f}", b."${f}" AS "b.${f}"`).join(', ')}
     FROM ${side(ours)} a JOIN ${side(theirs)} b ON a.__row = b.__row
     WHERE a.__row IN (SELECT a.__row FROM ${side(ours)} a JOIN ${side(theirs)} b ON a.__row = b.__row WHERE ${disagree} ORDER BY a.__row LIMIT ${Number(maxDisagreementsArg)})
        OR hash(a.__row, 7) % ${every} = 0
     ORDER BY a.__row`,
  )
).getRowObjectsJS();
const disagreements = Number((await c.runAndReadAll(`SELECT count(*) FROM ${side(ours)} a JOIN ${side(theirs)} b ON a.__row = b.__row WHERE ${disagree}`)).getRows()[0]![0]);
c.closeSync();
db.closeSync();

// The events of the picked keys, decoded with the source's schema (bad events left out, as everywhere).
const keyOf = (r: Record<string, unknown>): string => plan.joinKeys.map((k) => String(r[k])).join('|');
const wanted = new Set(picked.map(keyOf));
const eventsByKey = new Map<string, ReferenceEvent[]>();
const decoder = new EventDecoder(compiled, 'flights');
const keyFields = plan.keyFields;
for await (const batch of readParquetBatches(eventsParquet)) {
  for (const row of batch.rows) {
    const d = decoder.decodeValue(row);
    if (!d.ok) continue;
    const key = keyFields.map((f) => String(d.event.fields[f])).join('|');
    if (wanted.has(key)) (eventsByKey.get(key) ?? eventsByKey.set(key, []).get(key)!).push({ eventTimeMs: d.event.eventTimeMs, fields: d.event.fields });
  }
}

const asScalar = (raw: unknown): Scalar => (typeof raw === 'bigint' ? Number(raw) : (raw as Scalar));
let [oursBad, theirsBad, oursFloatBad, theirsFloatBad, disagreeRows, values] = [0, 0, 0, 0, 0, 0];
const examples: string[] = [];
for (const r of picked) {
  const t = Number(r.ts);
  const ref = referenceViewValues(plan, eventsByKey.get(keyOf(r)) ?? [], plan.joinKeys.map((k) => String(r[k])), t);
  if (r.disagree) disagreeRows++;
  for (const f of plan.features) {
    const col = `${view}__${f.name}`;
    const [a, b] = [asScalar(r[`a.${col}`]), asScalar(r[`b.${col}`])];
    values++;
    if (!valuesAgree(f.agg, a, ref[f.name]!)) {
      oursBad++;
      if (floatColumns.includes(col)) oursFloatBad++;
      if (examples.length < 5) examples.push(`row ${r.row} ${col}: tidemark ${a}, reference ${ref[f.name]}`);
    }
    if (!valuesAgree(f.agg, b, ref[f.name]!)) {
      theirsBad++;
      if (floatColumns.includes(col)) theirsFloatBad++;
    }
  }
}
process.stdout.write(
  `${JSON.stringify({
    rows: picked.length,
    disagreeRowsChecked: disagreeRows,
    disagreements,
    values,
    tidemarkMismatches: oursBad,
    tidemarkFloatMismatches: oursFloatBad,
    duckdbMismatches: theirsBad,
    duckdbFloatMismatches: theirsFloatBad,
    examples,
    seconds: (performance.now() - started) / 1000,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  })}\n`,
);
