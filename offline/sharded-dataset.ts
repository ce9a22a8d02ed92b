// Point-in-time datasets on a sharded offline store: the single-node SQL (point-in-time.ts) runs on
// each shard's local tables, and the per-shard answers, each in spine order, are merged back into
// spine order in Node, streaming.
//
//   1. Spine rows are read once, in batches, and each goes to the shard of its entity key
//      (shards.ts), keeping its spine row number __row. Features of entities with different join
//      keys (an airport and a route) are separate groups: a row goes to one shard per group, into
//      that group's spine table.
//   2. Each shard runs the single-node query for a group over its part of the spine, with __row as
//      the first output column, as JSON lines (JSONEachRow); windows and ASOF joins stay
//      shard-local because every event of a key is on that key's shard.
//   3. A k-way merge on __row (one pending line per shard: bounded memory) gives the group's rows in
//      spine order; with several groups, each group's merged lines go to a temporary file and the
//      files are zipped line by line.
//   4. The rows are written to `<out>.partial`: JSON lines as they come; other formats are
//      converted by ClickHouse in-process (chDB reads the merged JSON lines with the column types
//      the shards reported), then renamed to `<out>`. A failed shard leaves no output file.
//      Over HTTP (OfflineStore.streamDataset, POST /datasets/historical), steps 1-3 are the same
//      (openShardedDataset) and the merged lines are streamed, converted by chDB in chunks of rows
//      where the format or the column order asks for it.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { TidemarkError, type CompiledDefinitions } from '../definitions/index.js';
import type { FileResultFormat } from './executor.js';
import { checkNoOutputClash, pointInTimeSql, requiredJoinKeys, resolveFeatureRefs, type RequestedFeature } from './point-in-time.js';
import { shardOfKey, type ShardSet } from './shards.js';
import { checkColumns, inferType, joinKeyColumn, spineBatches, spineRow, spineTableDdl, type SpineInput } from './spine.js';
import { ident, sqlString } from './tables.js';

export interface ShardedDatasetResult {
  rows: number;
  columns: string[];
  seconds: number;
  /** Spine rows per shard (of the first feature group). */
  rowsPerShard: number[];
}

/** Features that share their entity's join keys: their spine rows are placed by those keys. */
interface FeatureGroup {
  joinKeys: string[];
  features: RequestedFeature[];
  table: string;
  /** Spine rows on each shard. */
  rows: number[];
}

const ROW_PREFIX = '{"__row":';

/** The spine row number at the head of a JSON line and the rest of the line after it (`"col":...}`), or null. */
function splitRowLine(line: string): { row: number; rest: string } | null {
  if (!line.startsWith(ROW_PREFIX)) return null;
  const comma = line.indexOf(',', ROW_PREFIX.length);
  const end = comma < 0 ? line.length - 1 : comma;
  return { row: Number(line.slice(ROW_PREFIX.length, end)), rest: comma < 0 ? '}' : line.slice(comma + 1) };
}

/** Lines of a byte stream (UTF-8, newline-separated; the last line may lack its newline). */
async function* linesOf(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let tail = '';
  for await (const chunk of chunks) {
    const text = tail + decoder.decode(chunk, { stream: true });
    const parts = text.split('\n');
    tail = parts.pop()!;
    for (const line of parts) if (line.length > 0) yield line;
  }
  tail += decoder.decode();
  if (tail.length > 0) yield tail;
}

/**
 * Merge streams of JSON lines, each ascending in __row, into one ascending stream of `rest`s (the
 * line after its __row). One pending line per stream; rows must be disjoint across streams.
 */
export async function* mergeByRow(streams: readonly AsyncIterator<string>[], label: (stream: number) => string): AsyncGenerator<{ row: number; rest: string }> {
  const heads: ({ row: number; rest: string } | null)[] = [];
  const next = async (i: number): Promise<{ row: number; rest: string } | null> => {
    const step = await streams[i]!.next();
    if (step.done) return null;
    const parsed = splitRowLine(step.value);
    if (!parsed) throw new TidemarkError('TM_OFFLINE_QUERY', `${label(i)}: a dataset line does not start with its spine row number: ${step.value.slice(0, 80)}`);
    return parsed;
  };
  for (let i = 0; i < streams.length; i++) heads.push(await next(i));
  let last = -1;
  for (;;) {
    let min = -1;
    for (let i = 0; i < heads.length; i++) if (heads[i] && (min < 0 || heads[i]!.row < heads[min]!.row)) min = i;
    if (min < 0) return;
    const head = heads[min]!;
    if (head.row <= last) throw new TidemarkError('TM_OFFLINE_QUERY', `${label(min)}: spine row ${head.row + 1} came out of order or twice`, { row: head.row + 1 });
    last = head.row;
    yield head;
    heads[min] = await next(min);
  }
}

/** Write text to a file stream, waiting when its buffer is full (a write error rejects). */
async function writeText(out: WriteStream, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

async function closeStream(out: WriteStream): Promise<void> {
  await new Promise<void>((resolveEnd, reject) => {
    out.once('error', reject);
    out.end(() => resolveEnd());
  });
}

/** Write lines to a file in chunks; returns how many. */
async function writeLines(path: string, lines: AsyncIterable<string>): Promise<number> {
  const out = createWriteStream(path);
  let n = 0;
  let buffer = '';
  try {
    for await (const line of lines) {
      buffer += line;
      buffer += '\n';
      n++;
      if (buffer.length >= 1 << 16) {
        await writeText(out, buffer);
        buffer = '';
      }
    }
    if (buffer.length > 0) await writeText(out, buffer);
  } finally {
    await closeStream(out);
  }
  return n;
}

/** Convert a JSON-lines file with a known structure to a format, in file order, with ClickHouse in-process (chDB). */
async function convertJsonLines(from: string, structure: string, columns: readonly string[], format: FileResultFormat, to: string): Promise<void> {
  const { queryBindAsync } = await import('chdb');
  await queryBindAsync(
    `SELECT ${columns.map(ident).join(', ')} FROM file({from:String}, 'JSONEachRow', {structure:String}) INTO OUTFILE ${sqlString(resolve(to))} TRUNCATE FORMAT ${format} SETTINGS max_threads = 1, input_format_parallel_parsing = 0, precise_float_parsing = 1, output_format_json_quote_64bit_integers = 0, output_format_arrow_compression_method = 'none'`,
    { from: resolve(from), structure },
    { format: 'Null' },
  );
}

/** A sharded dataset whose spine is placed and whose per-shard queries are built: its rows come from `lines()`, once. */
export interface ShardedDataset {
  rows: number;
  /** The output's columns: the spine's, then one per requested feature. */
  columns: string[];
  /** The output's column names and ClickHouse types as the shards compute them (group order); empty when opened with `describe: false`. */
  structure: [string, string][];
  /** Spine rows per shard (of the first feature group). */
  rowsPerShard: number[];
  /** Feature groups (entities with different join keys): with more than one, lines carry the features in group order, not `columns` order. */
  groups: number;
  /**
   * The merged rows in spine order, one JSON object per line (no newline), each shard's query
   * streamed and merged by __row (mergeByRow); with several groups, each group's merged lines go
   * to a temporary file `<temporaryBase>.g<i>.ndjson` first, then are zipped. Errors name the shard.
   */
  lines(): AsyncGenerator<string>;
  /** Drop the spine tables (on every shard that answers) and the temporary files. */
  release(): Promise<void>;
}

/**
 * Place a spine on the shards and build each shard's query (errors in the spine, the features or a
 * shard that cannot be reached are raised here, before any row). `temporaryBase`: a path prefix for
 * the files of a several-group merge. `describe: false`: no column types (a caller that reads the
 * JSON lines only), which saves a DESCRIBE of the query on the home shard.
 */
export async function openShardedDataset(shards: ShardSet, compiled: Pick<CompiledDefinitions, 'registry'>, spine: SpineInput, featureRefs: readonly string[], temporaryBase: string, opts: { describe?: boolean } = {}): Promise<ShardedDataset> {
  const requested = resolveFeatureRefs(compiled.registry, featureRefs);
  const allJoinKeys = requiredJoinKeys(requested);
  const tag = `${Date.now()}_${randomBytes(4).toString('hex')}`;
  const groups: FeatureGroup[] = [];
  for (const r of requested) {
    const id = r.view.joinKeys.join(',');
    let group = groups.find((g) => g.joinKeys.join(',') === id);
    if (!group) {
      group = { joinKeys: [...r.view.joinKeys], features: [], table: `tm_spine_${tag}_g${groups.length}`, rows: shards.executors.map(() => 0) };
      groups.push(group);
    }
    group.features.push(r);
  }
  const path = typeof spine === 'string' ? spine : 'in the request';
  const temporary: string[] = [];
  const release = async (): Promise<void> => {
    await Promise.all(temporary.map((f) => rm(f, { force: true })));
    // Spine tables go on every shard that answers; a shard that is down keeps its copy (named tm_spine_*).
    await Promise.allSettled(shards.executors.map(async (executor) => {
      for (const g of groups) await executor.command(`DROP TABLE IF EXISTS ${ident(g.table)}`);
    }));
  };
  let columns: [string, string][] | null = null;
  let rows = 0;
  const timeRange: [number, number] = [Infinity, -Infinity];
  try {
    // 1. Route the spine.
    for await (const batch of spineBatches(spine, 50_000)) {
      if (columns === null) {
        const names: string[] = [];
        for (const r of batch.rows) for (const k of Object.keys(r.value ?? {})) if (!names.includes(k)) names.push(k);
        checkColumns(path, names, allJoinKeys);
        checkNoOutputClash(names, requested);
        const cols = names.map((n): [string, string] => [n, inferType(batch.rows.map((r) => r.value?.[n]))]);
        columns = cols;
        await shards.each(async (executor) => {
          for (const g of groups) await executor.command(spineTableDdl(g.table, allJoinKeys, cols));
        });
      }
      const cols = columns;
      const out = batch.rows.map((r, i) => spineRow(r, batch.rowStart + i, allJoinKeys, cols));
      for (const row of out) {
        const t = row.__t as number;
        if (t < timeRange[0]) timeRange[0] = t;
        if (t > timeRange[1]) timeRange[1] = t;
      }
      const perShard = groups.map(() => shards.executors.map((): Record<string, unknown>[] => []));
      for (const row of out) {
        groups.forEach((g, gi) => {
          const shard = shardOfKey(g.joinKeys.map((k) => row[joinKeyColumn(k)] as string), shards.count);
          perShard[gi]![shard]!.push(row);
          g.rows[shard]!++;
        });
      }
      await shards.each(async (executor, shard) => {
        for (let gi = 0; gi < groups.length; gi++) await executor.insert(groups[gi]!.table, perShard[gi]![shard]!);
      });
      rows += out.length;
    }
    if (columns === null || rows === 0) throw new TidemarkError('TM_SPINE_EMPTY', `spine ${path} has no rows: a dataset needs at least one (join keys, ts) row`, { path });
    const spineColumns = columns;

    // 2. One query per (group, shard with rows); the first group carries the spine's columns.
    const queries = groups.map((g, gi) =>
      pointInTimeSql(g.features, { table: g.table, rows: 0, columns: [['__row', 'UInt64'], ...(gi === 0 ? spineColumns : [])], timeRangeMs: timeRange }),
    );
    // The output's column types, as the shards compute them (for formats other than JSON lines).
    const structure: [string, string][] = [];
    for (let gi = 0; gi < groups.length && opts.describe !== false; gi++) {
      const described = await shards.on(0, (home) => home.rows<{ name: string; type: string }>(`DESCRIBE (${queries[gi]!})`));
      for (const d of described) if (d.name !== '__row' && !structure.some(([n]) => n === d.name)) structure.push([d.name, d.type]);
    }
    const groupLines = (gi: number): AsyncGenerator<{ row: number; rest: string }> => {
      const live = shards.executors.map((_, s) => s).filter((s) => groups[gi]!.rows[s]! > 0);
      const streams = live.map((s) => {
        const lines = linesOf(shards.executors[s]!.streamJsonLines(queries[gi]!));
        // errors of a stream name its shard
        return (async function* named(): AsyncGenerator<string> {
          try {
            yield* lines;
          } catch (e) {
            throw shards.shardError(e, s);
          }
        })();
      });
      return mergeByRow(streams, (i) => `shard ${live[i]! + 1} of ${shards.count} (${shards.executors[live[i]!]!.location})`);
    };
    const checkCount = (n: number): void => {
      if (n !== rows) throw new TidemarkError('TM_OFFLINE_QUERY', `the shards returned ${n} dataset rows for a spine of ${rows}`, { rows, returned: n });
    };
    const total = rows;

    // 3. Merge.
    async function* lines(): AsyncGenerator<string> {
      if (groups.length === 1) {
        let n = 0;
        for await (const { rest } of groupLines(0)) {
          n++;
          yield `{${rest}`;
        }
        checkCount(n);
        return;
      }
      const files = groups.map((_, gi) => `${temporaryBase}.g${gi}.ndjson`);
      temporary.push(...files);
      for (let gi = 0; gi < groups.length; gi++) {
        checkCount(await writeLines(files[gi]!, (async function* groupRests(): AsyncGenerator<string> {
          for await (const { rest } of groupLines(gi)) yield rest.slice(0, -1);
        })()));
      }
      const readers = files.map((f) => createInterface({ input: createReadStream(f), crlfDelay: Infinity }));
      try {
        const iterators = readers.map((r) => r[Symbol.asyncIterator]());
        for (let i = 0; i < total; i++) {
          const parts: string[] = [];
          for (const reader of iterators) parts.push((await reader.next()).value as string);
          yield `{${parts.join(',')}}`;
        }
      } finally {
        for (const r of readers) r.close();
      }
    }

    return {
      rows,
      columns: [...spineColumns.map(([n]) => n), ...requested.map((r) => r.column)],
      structure,
      rowsPerShard: [...groups[0]!.rows],
      groups: groups.length,
      lines,
      release,
    };
  } catch (e) {
    await release();
    throw e;
  }
}

/**
 * The point-in-time rows of a spine held in memory (the skew check's logged reads), computed on
 * the shards exactly as a dataset is (openShardedDataset: each row on its key's shard, merged back)
 * and returned in spine order, one parsed object per spine row.
 */
export async function shardedPointInTimeRows(shards: ShardSet, compiled: Pick<CompiledDefinitions, 'registry'>, spine: readonly Record<string, unknown>[], featureRefs: readonly string[]): Promise<Record<string, unknown>[]> {
  const dataset = await openShardedDataset(shards, compiled, spine, featureRefs, join(tmpdir(), `tidemark-pit-${Date.now()}-${randomBytes(4).toString('hex')}`), { describe: false });
  try {
    const out: Record<string, unknown>[] = [];
    for await (const line of dataset.lines()) out.push(JSON.parse(line) as Record<string, unknown>);
    return out;
  } finally {
    await dataset.release();
  }
}

/** The JSON lines of dataset rows converted to another format by ClickHouse in-process (chDB), columns in `columns` order. */
export async function convertJsonLinesText(text: string, structure: readonly [string, string][], columns: readonly string[], format: 'JSONEachRow' | 'ArrowStream'): Promise<Uint8Array> {
  const { queryBindAsync } = await import('chdb');
  const result = await queryBindAsync(
    `SELECT ${columns.map(ident).join(', ')} FROM format(JSONEachRow, {structure:String}, {data:String}) SETTINGS max_threads = 1, input_format_parallel_parsing = 0, precise_float_parsing = 1, output_format_json_quote_64bit_integers = 0, output_format_arrow_compression_method = 'none'`,
    { structure: structure.map(([n, t]) => `${ident(n)} ${t}`).join(', '), data: text },
    { format },
  );
  return result.bytes();
}

/**
 * Write a dataset from a sharded store to `outPath` in `format`: complete, or no file at all (a
 * shard that fails or cannot be reached raises its error, naming the shard).
 */
export async function writeShardedDataset(shards: ShardSet, compiled: CompiledDefinitions, spine: SpineInput, featureRefs: readonly string[], outPath: string, format: FileResultFormat): Promise<ShardedDatasetResult> {
  const started = performance.now();
  const partial = `${outPath}.partial`;
  const dataset = await openShardedDataset(shards, compiled, spine, featureRefs, partial);
  const merged = format === 'JSONEachRow' && dataset.groups === 1 ? partial : `${outPath}.partial.ndjson`;
  try {
    // 3. Merge, then 4. write.
    await writeLines(merged, dataset.lines());
    if (merged !== partial) {
      await convertJsonLines(merged, dataset.structure.map(([n, t]) => `${ident(n)} ${t}`).join(', '), dataset.columns, format, partial);
    }
    await rename(partial, outPath);
    return { rows: dataset.rows, columns: dataset.columns, seconds: (performance.now() - started) / 1000, rowsPerShard: dataset.rowsPerShard };
  } catch (e) {
    await rm(partial, { force: true });
    throw e;
  } finally {
    if (merged !== partial) await rm(merged, { force: true });
    await dataset.release();
  }
}
