// DuckDB's side of the offline benchmark, in its own process (so peak RSS is its own):
//   <events.parquet> <spine.parquet> <view> <out.parquet>   DuckDB's point-in-time dataset
//   compare <a.parquet> <b.parquet> [skip,...]               value check between two datasets
//   float-flights <flights.parquet> <out.parquet>            the events of bench/flights-float.ts
// Prints one JSON line.
import { compareDatasets, duckdbDataset } from './duckdb-point-in-time.js';

const args = process.argv.slice(2);
const figures: Record<string, unknown> = {};
if (args[0] === 'float-flights') {
  // bench/flights-float.ts's events: flights-3m.parquet with delay_h = delay / 60 (a DOUBLE), row order kept.
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  await c.run(`COPY (SELECT *, delay / 60 AS delay_h FROM read_parquet('${args[1]!.replaceAll("'", "''")}')) TO '${args[2]!.replaceAll("'", "''")}' (FORMAT parquet)`);
  c.closeSync();
  db.closeSync();
} else if (args[0] === 'compare') {
  // compare <a> <b> [skipped columns, comma-separated]
  const result = await compareDatasets(args[1]!, args[2]!, { skip: args[3] ? args[3].split(',') : [] });
  Object.assign(figures, { rows: result.rows, mismatches: result.mismatches, skipped: result.skipped });
  if (result.mismatches > 0) process.stderr.write(`dataset mismatches, e.g.:\n  ${result.examples.slice(0, 5).join('\n  ')}\n`);
} else {
  const [eventsParquet, spineParquet, view, outParquet] = args as [string, string, 'origin_delays' | 'route_delays', string];
  Object.assign(figures, await duckdbDataset({ eventsParquet, spineParquet, view, outParquet }));
}
figures.peakRssMb = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify(figures)}\n`);
