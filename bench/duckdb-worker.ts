// DuckDB's side of the offline benchmark, in its own process (so peak RSS is its own):
//   <events.parquet> <spine.parquet> <view> <out.parquet>   DuckDB's point-in-time dataset
//   compare <a.parquet> <b.parquet>                          value check between two datasets
// Prints one JSON line.
import { compareDatasets, duckdbDataset } from './duckdb-point-in-time.js';

const args = process.argv.slice(2);
const figures: Record<string, unknown> = {};
if (args[0] === 'compare') {
  const result = await compareDatasets(args[1]!, args[2]!);
  Object.assign(figures, { rows: result.rows, mismatches: result.mismatches });
  if (result.mismatches > 0) process.stderr.write(`dataset mismatches, e.g.:\n  ${result.examples.slice(0, 5).join('\n  ')}\n`);
} else {
  const [eventsParquet, spineParquet, view, outParquet] = args as [string, string, 'origin_delays' | 'route_delays', string];
  Object.assign(figures, await duckdbDataset({ eventsParquet, spineParquet, view, outParquet }));
}
figures.peakRssMb = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify(figures)}\n`);
