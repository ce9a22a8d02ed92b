// File replay: reads a Parquet file in row order, one row group at a time, as plain JSON-like rows
// (timestamps as epoch ms, 64-bit integers as numbers) so that they decode like stream events.
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { TidemarkError } from '../definitions/index.js';

export interface ParquetBatch {
  rows: Record<string, unknown>[];
  /** Index of the first row of this batch in the file. */
  rowStart: number;
}

/** A Parquet value as JSON would carry it: timestamps as epoch ms, 64-bit integers as numbers where exact. */
function toPlainValue(value: unknown): unknown {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  return value;
}

export async function parquetRowCount(path: string): Promise<number> {
  const file = await openParquet(path);
  const metadata = await parquetMetadataAsync(file);
  return Number(metadata.num_rows);
}

/** A Parquet file's footer: its schema elements (root first, depth first) and row count. */
export async function parquetFileMetadata(path: string): Promise<{ schema: ParquetSchemaElement[]; rows: number }> {
  const metadata = await readMetadata(await openParquet(path), path);
  return { schema: metadata.schema as ParquetSchemaElement[], rows: Number(metadata.num_rows) };
}

/** One element of a Parquet schema, as hyparquet reads the footer. */
export interface ParquetSchemaElement {
  name: string;
  type?: string;
  repetition_type?: string;
  converted_type?: string;
  logical_type?: { type: string; unit?: string; bitWidth?: number };
  num_children?: number;
}

async function openParquet(path: string) {
  try {
    return await asyncBufferFromFile(path);
  } catch (e) {
    throw new TidemarkError('TM_FILE_READ', `cannot open Parquet file ${path}: ${(e as Error).message}`, { path });
  }
}

/**
 * Yields chosen rows of a Parquet file (row numbers in ascending order), decoded as
 * readParquetBatches decodes them, `batchRows` at a time: only the row groups holding them are read.
 */
export async function* readParquetRows(path: string, rowNumbers: readonly number[], opts: { batchRows?: number } = {}): AsyncGenerator<{ rows: Record<string, unknown>[]; rowNumbers: number[] }> {
  if (rowNumbers.length === 0) return;
  const file = await openParquet(path);
  const metadata = await readMetadata(file, path);
  const batchRows = opts.batchRows ?? 50_000;
  let next = 0;
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    let last = next;
    while (last < rowNumbers.length && rowNumbers[last]! < groupEnd) last++;
    if (last > next) {
      const first = rowNumbers[next]!;
      const decoded = (await parquetReadObjects({ file, metadata, rowStart: first, rowEnd: rowNumbers[last - 1]! + 1, compressors })) as Record<string, unknown>[];
      for (let i = next; i < last; i += batchRows) {
        const chosen = rowNumbers.slice(i, Math.min(last, i + batchRows));
        const rows = chosen.map((n) => plainRow(decoded[n - first]!));
        yield { rows, rowNumbers: chosen };
      }
      next = last;
    }
    if (next >= rowNumbers.length) break;
    groupStart = groupEnd;
  }
}

/** A decoded row with every value made plain (toPlainValue), in place. */
function plainRow(row: Record<string, unknown>): Record<string, unknown> {
  for (const k in row) row[k] = toPlainValue(row[k]);
  return row;
}

async function readMetadata(file: Awaited<ReturnType<typeof openParquet>>, path: string) {
  try {
    return await parquetMetadataAsync(file);
  } catch (e) {
    throw new TidemarkError('TM_FILE_READ', `${path} is not a readable Parquet file: ${(e as Error).message}`, { path });
  }
}

/** Yields the rows of a Parquet file in file order, `batchRows` at a time, stopping after `limit` rows. */
export async function* readParquetBatches(path: string, opts: { limit?: number; batchRows?: number } = {}): AsyncGenerator<ParquetBatch> {
  const file = await openParquet(path);
  const metadata = await readMetadata(file, path);
  const total = Math.min(Number(metadata.num_rows), opts.limit ?? Number.POSITIVE_INFINITY);
  const batchRows = opts.batchRows ?? 50_000;
  // Decode one row group at a time (decoding a slice of a group decompresses the whole group),
  // then hand it out in batches.
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    if (groupStart >= total) break;
    const groupEnd = Math.min(total, groupStart + Number(group.num_rows));
    const rows = (await parquetReadObjects({ file, metadata, rowStart: groupStart, rowEnd: groupEnd, compressors })) as Record<string, unknown>[];
    for (const row of rows) plainRow(row);
    for (let i = 0; i < rows.length; i += batchRows) yield { rows: rows.slice(i, i + batchRows), rowStart: groupStart + i };
    groupStart = groupEnd;
  }
}
