// Event and spine files, read in row order and in batches so memory stays bounded: Parquet
// (hyparquet), NDJSON (one JSON object a line; a bad line keeps its original text) and CSV with a
// header (csv-parse; every value is text, typed later by the reader's caller).
import { parse as parseCsv } from 'csv-parse';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { extname } from 'node:path';
import { TidemarkError } from '../definitions/index.js';
import { readParquetBatches } from './parquet.js';

export type FileFormat = 'parquet' | 'ndjson' | 'csv';

export interface FileRow {
  /** The parsed row, or undefined when the line is not a JSON object (NDJSON). */
  value: Record<string, unknown> | undefined;
  /** The original text of an NDJSON line (kept for dead letters), else undefined. */
  raw?: string;
  /** Why the row could not be parsed, when it could not. */
  error?: string;
}

export interface FileBatch {
  rows: FileRow[];
  /** 0-based index of the first row of the batch in the file (data rows, header excluded). */
  rowStart: number;
}

export function fileFormatOf(path: string): FileFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.parquet') return 'parquet';
  if (ext === '.ndjson' || ext === '.jsonl' || ext === '.json') return 'ndjson';
  if (ext === '.csv') return 'csv';
  throw new TidemarkError('TM_FILE_READ', `cannot tell the format of ${path} from its extension ${JSON.stringify(ext)}`, {
    path,
    validExtensions: ['.parquet', '.ndjson', '.jsonl', '.csv'],
  });
}

/** The rows of a file in order, `batchRows` at a time. */
export async function* readFileBatches(path: string, opts: { batchRows?: number; format?: FileFormat } = {}): AsyncGenerator<FileBatch> {
  const format = opts.format ?? fileFormatOf(path);
  const batchRows = opts.batchRows ?? 50_000;
  if (format === 'parquet') {
    for await (const b of readParquetBatches(path, { batchRows })) yield { rows: b.rows.map((value) => ({ value })), rowStart: b.rowStart };
    return;
  }
  const stream = createReadStream(path);
  const opened = new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (e) => reject(new TidemarkError('TM_FILE_READ', `cannot open ${path}: ${e.message}`, { path })));
  });
  await opened;
  let rows: FileRow[] = [];
  let rowStart = 0;
  let index = 0;
  if (format === 'ndjson') {
    for await (const line of createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY })) {
      if (line.trim() === '') continue;
      let value: unknown;
      let error: string | undefined;
      try {
        value = JSON.parse(line);
        if (typeof value !== 'object' || value === null || Array.isArray(value)) error = 'not a JSON object';
      } catch (e) {
        error = `not valid JSON: ${(e as Error).message}`;
      }
      rows.push(error === undefined ? { value: value as Record<string, unknown>, raw: line } : { value: undefined, raw: line, error });
      index++;
      if (rows.length >= batchRows) {
        yield { rows, rowStart };
        rows = [];
        rowStart = index;
      }
    }
  } else {
    const parser = stream.pipe(parseCsv({ columns: true, skip_empty_lines: true, relax_column_count: false }));
    try {
      for await (const record of parser) {
        rows.push({ value: record as Record<string, unknown> });
        index++;
        if (rows.length >= batchRows) {
          yield { rows, rowStart };
          rows = [];
          rowStart = index;
        }
      }
    } catch (e) {
      throw new TidemarkError('TM_FILE_READ', `${path}: CSV row ${index + 1}: ${(e as Error).message}`, { path, row: index + 1 });
    }
  }
  if (rows.length > 0) yield { rows, rowStart };
}

const NUMERIC_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/**
 * Types one CSV value for a field of the given kind, so that CSV rows decode like JSON events:
 * empty text is null; numeric text becomes a number for number and timestamp fields; true/false
 * become booleans. Anything else stays text, and the schema then names the field that is wrong.
 */
export function typeCsvValue(text: unknown, kind: string): unknown {
  if (typeof text !== 'string') return text;
  if (text === '') return null;
  if ((kind === 'number' || kind === 'timestamp') && NUMERIC_TEXT.test(text.trim())) return Number(text);
  if (kind === 'boolean' && (text === 'true' || text === 'false')) return text === 'true';
  return text;
}
