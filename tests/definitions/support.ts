// Shared helpers for the definitions suites: test schema, civil-date arithmetic, tolerances, the embedded materialization path.
import { z } from 'zod';
import {
  compileOrThrow,
  entity,
  eventTime,
  source,
  type CompiledDefinitions,
  type ReferenceEvent,
  type Scalar,
} from '../../definitions/index.js';
import { EventDecoder, type DecodedEvent } from '../../ingest/decode.js';
import { TileBatchBuilder } from '../../ingest/materialize.js';
import { MemoryOnlineStore } from '../../online/memory.js';

/** One test event: `ts` is epoch ms or ISO text, `k`/`n` are join keys, `x` numeric, `s` text. */
export const eventSchema = z.object({
  ts: eventTime(),
  k: z.string(),
  n: z.number(),
  x: z.number().nullable(),
  s: z.string().nullable(),
});
export type TestEvent = z.input<typeof eventSchema>;

export const user = entity({ name: 'user', joinKeys: ['k'] });
export const pair = entity({ name: 'pair', joinKeys: ['k', 'n'] });
export const events = source({ name: 'ev', topic: 'ev', schema: eventSchema, eventTimeField: 'ts' });

/**
 * Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil), so ISO
 * parsing is checked against arithmetic that shares nothing with `Date`.
 */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const mp = (month + 9) % 12;
  const doy = Math.floor((153 * mp + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** UTC ms of a civil date-time, computed without `Date`. */
export function civilMs(year: number, month: number, day: number, h = 0, m = 0, s = 0, ms = 0): number {
  return daysFromCivil(year, month, day) * 86_400_000 + ((h * 60 + m) * 60 + s) * 1000 + ms;
}

/** Wall time far beyond any test event, so the future-skew rule never fires. */
export const FAR_FUTURE_NOW = (): number => Math.floor(Number.MAX_SAFE_INTEGER / 2);

/** Decode raw events through the real decoder; every one must be valid. */
export function decodeAll(compiled: CompiledDefinitions, raw: readonly unknown[], sourceName = 'ev'): DecodedEvent[] {
  const decoder = new EventDecoder(compiled, sourceName, FAR_FUTURE_NOW);
  return raw.map((value, i) => {
    const result = decoder.decodeValue(value, { partition: 0, offset: i });
    if (!result.ok) throw new Error(`test event ${i} rejected: ${result.bad.reason}`);
    return result.event;
  });
}

/** Reference events of decoded events; the record id is the log position. */
export function referenceEvents(decoded: readonly DecodedEvent[]): ReferenceEvent[] {
  return decoded.map((e) => ({
    eventTimeMs: e.eventTimeMs,
    fields: e.fields,
    recordId: e.position ? `ev/${e.position.partition}/${e.position.offset}` : undefined,
  }));
}

/** Materialize decoded events, batch by batch, into a fresh in-memory store. */
export function materialize(compiled: CompiledDefinitions, batches: readonly (readonly DecodedEvent[])[]): MemoryOnlineStore {
  const builder = new TileBatchBuilder(compiled.registry);
  const store = new MemoryOnlineStore(compiled.registry);
  for (const batch of batches) store.applySync(builder.build(batch));
  return store;
}

/** Split a list into consecutive batches of the given sizes (cycled). */
export function splitIntoBatches<T>(items: readonly T[], sizes: readonly number[]): T[][] {
  const out: T[][] = [];
  let i = 0;
  let s = 0;
  while (i < items.length) {
    const size = Math.max(1, sizes.length === 0 ? items.length : sizes[s++ % sizes.length]!);
    out.push(items.slice(i, i + size));
    i += size;
  }
  return out;
}

/** Compile a view over the test source (throws on definition errors). */
export function compileWith(...defs: unknown[]): CompiledDefinitions {
  return compileOrThrow(defs);
}
