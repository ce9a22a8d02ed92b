// Shared plumbing of the stream-path tests (tests/kafka/*.test.ts): flights produced to Kafka as
// JSON, bad records of every kind, the reference check of every key of every view read back from
// Redis, and the tidemark CLI run as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Kafka, logLevel, type IHeaders, type Producer } from 'kafkajs';
import { valuesAgree, type CompiledDefinitions } from '../../definitions/index.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { readParquetBatches } from '../../ingest/index.js';
import { evaluateFeature, storeClockMs, tileRangesFor, type OnlineStore } from '../../online/index.js';
import type { FlightsFixture } from '../support/flights.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'tidemark.mjs');

export function kafkaClient(brokers: string[]): Kafka {
  return new Kafka({ clientId: 'tidemark-tests', brokers, logLevel: logLevel.NOTHING, retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 } });
}

/** The first `limit` flights as the JSON a producer would send (dates as epoch ms, as the Parquet file has them). */
export async function flightRecords(limit: number): Promise<string[]> {
  const out: string[] = [];
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit })) for (const row of batch.rows) out.push(JSON.stringify(row));
  return out;
}

/** Bad records of every kind docs/semantics.md lists, each with the code and field it must be dead-lettered with. */
export const BAD_RECORDS: { value: string; code: string; field: string }[] = [
  { value: '{"date": 978307200000, "delay": 3,', code: 'TM_EVENT_INVALID_JSON', field: '' },
  { value: JSON.stringify({ date: 978307200000, delay: 'late', distance: 100, origin: 'SFO', destination: 'LAX' }), code: 'TM_EVENT_SCHEMA', field: 'delay' },
  // the flights schema requires its join key fields, so a missing key fails the schema on that field
  { value: JSON.stringify({ date: 978307200000, delay: 1, distance: 100, destination: 'LAX' }), code: 'TM_EVENT_SCHEMA', field: 'origin' },
  { value: JSON.stringify({ date: 'the day after tomorrow', delay: 1, distance: 100, origin: 'SFO', destination: 'LAX' }), code: 'TM_EVENT_TIME', field: 'date' },
  { value: JSON.stringify({ date: 4102444800000, delay: 1, distance: 100, origin: 'SFO', destination: 'LAX' }), code: 'TM_EVENT_FUTURE', field: 'date' },
];

/** Produce `values` to `topic`, record i to partition i % partitions, in chunks. */
export async function produce(producer: Producer, topic: string, values: readonly string[], partitions: number, firstIndex = 0): Promise<void> {
  const chunk = 2000;
  for (let i = 0; i < values.length; i += chunk) {
    const messages = values.slice(i, i + chunk).map((value, j) => ({ partition: (firstIndex + i + j) % partitions, value }));
    await producer.send({ topic, messages, acks: -1 });
  }
}

/** Resolves when `check` holds (polling), or fails after `timeoutMs`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Sum of the committed offsets of a group on a topic (records it has committed past). */
export async function committedTotal(kafka: Kafka, groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return (t?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

/** Every record of a topic (all partitions) with its headers, read by a throwaway group. */
export async function readTopic(kafka: Kafka, topic: string, expected: number): Promise<{ partition: number; offset: number; value: Buffer | null; headers: Record<string, string> }[]> {
  const consumer = kafka.consumer({ groupId: `reader-${topic}-${Math.random().toString(36).slice(2)}`, maxWaitTimeInMs: 100 });
  const out: { partition: number; offset: number; value: Buffer | null; headers: Record<string, string> }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        out.push({ partition, offset: Number(message.offset), value: message.value, headers: headerText(message.headers ?? {}) });
      },
    });
    await until(() => out.length >= expected, `${expected} records on ${topic}`, 30_000);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

function headerText(headers: IHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) out[k] = Array.isArray(v) ? v.map(String).join(',') : v === undefined ? '' : v.toString();
  return out;
}

/**
 * Every key of every view of the reference, read from `store` at the watermark clock and compared
 * with the reference; returns the mismatches (empty when all agree) and how many values were compared.
 */
export async function compareWithReference(compiled: CompiledDefinitions, store: OnlineStore, fx: FlightsFixture): Promise<{ compared: number; mismatches: string[]; watermarkMs: number }> {
  const watermarkMs = await store.watermarkMs();
  if (watermarkMs === null) return { compared: 0, mismatches: ['the store has no watermark: nothing was materialized'], watermarkMs: 0 };
  const t = storeClockMs('watermark', watermarkMs);
  let compared = 0;
  const mismatches: string[] = [];
  for (const view of compiled.registry.views) {
    const keys = [...fx.eventsByKey.get(view.name)!.keys()];
    const ranges = tileRangesFor(view, view.features, t, watermarkMs);
    for (let i = 0; i < keys.length; i += 500) {
      const slice = keys.slice(i, i + 500);
      const tiles = await store.readTiles(view.name, slice, ranges);
      slice.forEach((key, j) => {
        const expected = fx.reference(view, key, t);
        for (const f of view.features) {
          const got = evaluateFeature(view, f, tiles[j] ?? null, t, watermarkMs).value;
          compared++;
          if (!valuesAgree(f.agg, got, expected[f.name]!)) mismatches.push(`${view.name}:${f.name} key ${key}: online ${got}, reference ${expected[f.name]}`);
        }
      });
    }
  }
  return { compared, mismatches, watermarkMs };
}

/** The greatest event time of the first `limit` flights (what the watermark must reach). */
export function maxEventTime(fx: FlightsFixture): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const byKey of fx.eventsByKey.values()) for (const events of byKey.values()) for (const e of events) if (e.eventTimeMs > max) max = e.eventTimeMs;
  return max;
}

export interface CliChild {
  child: ChildProcess;
  output(): string;
  exit: Promise<number | string>;
}

/** Run `tidemark <args>` as a child process (stdout and stderr kept for failure messages). */
export function runCli(args: string[], env: Record<string, string> = {}): CliChild {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const keep = (d: Buffer): void => {
    text = (text + d.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exit = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  return { child, output: () => text, exit };
}

/** GET a JSON endpoint; null when nothing answers. */
export async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> } | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } catch {
    return null;
  }
}
