// Shared fixture: the first N flights replayed into an in-memory store, plus the decoded events
// grouped by key for the reference implementation.
import { compileOrThrow, entityKeyValues, referenceViewValues, type CompiledDefinitions, type ReferenceEvent, type Scalar, type ViewPlan } from '../../definitions/index.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { EventDecoder, readParquetBatches, replayParquetFile, type ReplayStats } from '../../ingest/index.js';
import { MemoryOnlineStore } from '../../online/index.js';

export interface FlightsFixture {
  compiled: CompiledDefinitions;
  store: MemoryOnlineStore;
  replay: ReplayStats;
  /** view -> entity key id -> that key's events */
  eventsByKey: Map<string, Map<string, ReferenceEvent[]>>;
  reference(view: ViewPlan, entityKey: string, tMs: number): Record<string, Scalar>;
}

export async function loadFlightsFixture(limit: number): Promise<FlightsFixture> {
  const compiled = compileOrThrow(flightsDefinitions);
  const store = new MemoryOnlineStore(compiled.registry);
  const replay = await replayParquetFile(compiled, FLIGHTS_PARQUET_PATH, { apply: (b) => store.applySync(b) }, { source: 'flights', limit });

  // Decode the same rows again, independently of the replay, for the reference.
  const decoder = new EventDecoder(compiled, 'flights');
  const source = compiled.registry.sources[0]!;
  const eventsByKey = new Map<string, Map<string, ReferenceEvent[]>>(source.views.map((v) => [v, new Map()]));
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit })) {
    for (const row of batch.rows) {
      const result = decoder.decodeValue(row);
      if (!result.ok) throw new Error(result.bad.reason);
      const e = result.event;
      source.views.forEach((view, i) => {
        const byKey = eventsByKey.get(view)!;
        const list = byKey.get(e.viewKeys[i]!) ?? [];
        list.push({ eventTimeMs: e.eventTimeMs, fields: e.fields });
        byKey.set(e.viewKeys[i]!, list);
      });
    }
  }
  return {
    compiled,
    store,
    replay,
    eventsByKey,
    reference: (view, entityKey, tMs) =>
      referenceViewValues(view, eventsByKey.get(view.name)!.get(entityKey) ?? [], entityKeyValues(entityKey, view.joinKeys.length), tMs),
  };
}
