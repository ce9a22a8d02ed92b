// One measurement of npm start's first and later runs, in its own process:
//   decode                          baseline: hyparquet decodes flights-3m.parquet (every row, as the replay reads it)
//   count                           baseline: chDB counts the rows of the same file with ClickHouse's Parquet reader
//   start <dataDir> <port> [flags]  `tidemark quickstart` (npm start) on <dataDir>: seconds until POST
//                                   /get-online-features answers 200, the split the run prints, and
//                                   (when the monitor runs in the background) seconds until its summary
// BENCH_QUICKSTART_OUTPUT=<file> appends what each run printed to that file.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { query } from 'chdb';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { readParquetBatches } from '../ingest/index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const [mode, dataDir, port, ...flags] = process.argv.slice(2);
const started = performance.now();
const seconds = (): number => (performance.now() - started) / 1000;
let out: Record<string, number> = {};

/** The number in the first printed line matching `re` (its first group), or -1. */
function printed(lines: readonly string[], re: RegExp): number {
  for (const line of lines) {
    const m = re.exec(line);
    if (m) return Number(m[1]!.replace(/,/g, ''));
  }
  return -1;
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/get-online-features`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ features: ['origin_delays:flights_1h'], entities: { airport: ['ORD'] } }) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

if (mode === 'decode') {
  let rows = 0;
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH)) rows += batch.rows.length;
  out = { rows, seconds: seconds() };
} else if (mode === 'count') {
  const rows = Number(query(`SELECT count(*) FROM file('${FLIGHTS_PARQUET_PATH.replace(/'/g, "\\'")}', 'Parquet')`, 'TSV').trim());
  out = { rows, seconds: seconds() };
} else if (mode === 'start') {
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ['--max-semi-space-size=64', join(ROOT, 'bin', 'tidemark.mjs'), 'quickstart', '--data-dir', dataDir!, '--port', port!, '--no-progress', ...flags], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let pending = '';
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString();
    const parts = pending.split('\n');
    pending = parts.pop()!;
    lines.push(...parts);
  });
  let exited = false;
  child.on('exit', () => (exited = true));
  // Ask only once the server says it listens, then until it answers.
  while (!exited && !lines.some((l) => l.startsWith('serving the HTTP API'))) await new Promise((r) => setTimeout(r, 50));
  while (!exited && !(await answers(url))) await new Promise((r) => setTimeout(r, 50));
  const total = seconds();
  let monitorDone = -1;
  if (lines.some((l) => / weeks in the background/.test(l))) {
    while (!exited && !lines.some((l) => l.startsWith('  alerts: ') || l.startsWith('monitor failed'))) await new Promise((r) => setTimeout(r, 100));
    monitorDone = seconds();
  }
  child.kill('SIGTERM');
  if (!exited) await new Promise((r) => child.once('exit', r));
  if (total <= 0 || !lines.some((l) => l.startsWith('serving the HTTP API'))) throw new Error(`quickstart ended before serving:\n${lines.join('\n')}`);
  out = {
    seconds: total,
    loadSeconds: printed(lines, /^loaded [\d,]+ events into the offline store with ClickHouse's Parquet reader in ([\d.]+) s/),
    rebuildSeconds: printed(lines, /^rebuilt from the offline store [\d,]+ events in ([\d.]+) s/),
    replaySeconds: printed(lines, /^replayed [\d,]+ events in ([\d.]+) s/),
    monitorSeconds: printed(lines, /evaluated \d+ weeks in ([\d.]+) s/),
    monitorDoneSeconds: monitorDone,
  };
  if (process.env.BENCH_QUICKSTART_OUTPUT) appendFileSync(process.env.BENCH_QUICKSTART_OUTPUT, [`$ tidemark quickstart ${flags.join(' ')} (data dir ${dataDir})`, ...lines, pending, ''].join('\n'));
} else throw new Error(`unknown mode ${mode}`);
process.stdout.write(JSON.stringify(out) + '\n');
