// Shared pieces of the stream benchmark (bench/stream.ts and its workers): the flights definitions
// on a topic of the benchmark's own (so a real Kafka named by KAFKA_BROKERS keeps its `flights`
// topic untouched), the first flights as JSON records, and the consumer settings every client
// under test shares.
import { compileOrThrow, type CompiledDefinitions } from '../definitions/index.js';
import * as flights from '../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../examples/flights/data.js';
import { readParquetBatches } from '../ingest/index.js';

/** The example flights definitions with their source reading `topic` instead of `flights`. */
export function flightsOnTopic(topic: string): CompiledDefinitions {
  const source = { ...flights.flights, topic };
  const views = [flights.originDelays, flights.routeDelays, flights.destDelays].map((v) => ({ ...v, source }));
  return compileOrThrow({ airport: flights.airport, route: flights.route, source, views });
}

/** The first `limit` flights, as the JSON rows a producer sends (dates as epoch ms, as in the Parquet file). */
export async function flightRows(limit: number): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit })) for (const row of batch.rows) rows.push(row);
  return rows;
}

/**
 * Fetch and group settings of the no-op consumers: those `tidemark materialize` runs with when given
 * no flags (its session timeout and heartbeat, the Materializer's fetch defaults in
 * ingest/kafka-materializer.ts), so they differ from it only in what the handler does.
 */
export const CONSUMER_SETTINGS = {
  sessionTimeoutMs: 30_000,
  heartbeatIntervalMs: 3_000,
  maxWaitTimeMs: 250,
  minBytes: 1,
  maxBytes: 16 * 1024 * 1024,
  maxBytesPerPartition: 1024 * 1024,
  partitionsConsumedConcurrently: 8,
} as const;

/** Print a worker's result as the last line of stdout (bench/index.ts runWorker reads it). */
export function printResult(result: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Redis INFO counters: the server's CPU seconds, and calls and microseconds per command. */
export async function redisCounters(client: { info(section: string): Promise<string> }): Promise<{ cpuSeconds: number; commands: Map<string, { calls: number; usec: number }> }> {
  const info = await client.info('everything');
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) commands.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  return { cpuSeconds: field('used_cpu_user') + field('used_cpu_sys'), commands };
}

/** The Redis commands sent between two INFO readings, most time first: `name calls time`. */
export function commandsBetween(before: Map<string, { calls: number; usec: number }>, after: Map<string, { calls: number; usec: number }>): { command: string; calls: number; seconds: number }[] {
  return [...after]
    .map(([command, a]) => ({ command, calls: a.calls - (before.get(command)?.calls ?? 0), seconds: (a.usec - (before.get(command)?.usec ?? 0)) / 1e6 }))
    .filter((c) => c.calls > 0 && !['info', 'monitor'].includes(c.command))
    .sort((x, y) => y.seconds - x.seconds);
}
