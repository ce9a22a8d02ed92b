// The offline store's Kafka sink, against the suite's Kafka-protocol broker (librdkafka's mock
// cluster, or KAFKA_BROKERS): stream events land in the same tables as file loads, bad ones in the
// dead-letter table, datasets over them equal the reference, and a full redelivery (a second group
// reading the topic from the start) stores nothing twice.
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOrThrow, referenceViewValues, valuesAgree, type ReferenceEvent } from '../../definitions/index.js';
import * as flights from '../../examples/flights/definitions.js';
import { FLIGHTS_PARQUET_PATH } from '../../examples/flights/data.js';
import { EventDecoder, readParquetBatches } from '../../ingest/index.js';
import { OfflineKafkaSink, OfflineStore, kafkaLoadId } from '../../offline/index.js';
import { testKafka, type KafkaCluster } from '../support/kafka.js';

const EVENTS = 3_000;
const BAD = ['{"date": 978307260000, "delay": "late", "distance": 1, "origin": "AAA", "destination": "BBB"}', 'not json'];
const compiled = compileOrThrow(flights);
let kafka: KafkaCluster;
let store: OfflineStore;
let topic: string;
const events: ReferenceEvent[] = [];

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const stored = async (): Promise<number> => Number((await store.executor.rows<{ n: number }>('SELECT count() AS n FROM tm_events_flights'))[0]!.n);

beforeAll(async () => {
  kafka = await testKafka();
  // the sink reads the registry's topic names; a fresh one per run keeps runs apart on a shared broker
  topic = `flights-${randomUUID().slice(0, 8)}`;
  (compiled.registry.sources[0] as { topic: string }).topic = topic;
  await kafka.createTopic(topic, 3);
  store = await OfflineStore.open(compiled, { dataDir: mkdtempSync(join(tmpdir(), 'tidemark-sink-')) });
  const decoder = new EventDecoder(compiled, 'flights');
  const messages: { partition: number; value: string }[] = [];
  for await (const batch of readParquetBatches(FLIGHTS_PARQUET_PATH, { limit: EVENTS })) {
    batch.rows.forEach((row, i) => {
      messages.push({ partition: (batch.rowStart + i) % 3, value: JSON.stringify(row) });
      const d = decoder.decodeValue(row);
      if (d.ok) events.push({ eventTimeMs: d.event.eventTimeMs, fields: d.event.fields });
    });
  }
  BAD.forEach((value, i) => messages.push({ partition: i % 3, value }));
  const producer = new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  await producer.send({ topic, messages });
  await producer.disconnect();
}, 120_000);

afterAll(async () => {
  await store?.close();
  await kafka?.stop();
});

describe('offline Kafka sink', () => {
  it('stores every stream event once, bad ones as dead letters, and redelivery changes nothing', async () => {
    const sink = new OfflineKafkaSink(store.executor, compiled, { brokers: kafka.brokers, groupId: `sink-${randomUUID().slice(0, 8)}` });
    await sink.start();
    try {
      await until(async () => (await stored()) === EVENTS && sink.stats.badEvents === BAD.length, `${EVENTS} stored events`);
    } finally {
      await sink.stop();
    }
    const dead = await store.executor.rows<{ code: string }>('SELECT code FROM tm_dead_letters WHERE startsWith(load_id, {p:String}) ORDER BY code', { p: `kafka:${topic}:` });
    expect(dead.map((d) => d.code)).toEqual(['TM_EVENT_INVALID_JSON', 'TM_EVENT_SCHEMA']);

    // A second group reads the whole topic again: every record is a redelivery to the store.
    const again = new OfflineKafkaSink(store.executor, compiled, { brokers: kafka.brokers, groupId: `sink-${randomUUID().slice(0, 8)}` });
    await again.start();
    try {
      await until(async () => again.stats.redelivered + again.stats.badEvents >= EVENTS, 'the redelivery');
    } finally {
      await again.stop();
    }
    expect(again.stats.events).toBe(0);
    expect(await stored()).toBe(EVENTS);
    const perPartition = await store.executor.rows<{ load: string; n: number; distinct: number }>(
      'SELECT __load AS load, count() AS n, uniqExact(__offset) AS distinct FROM tm_events_flights GROUP BY __load ORDER BY __load',
    );
    expect(perPartition.map((p) => p.load)).toEqual([0, 1, 2].map((p) => kafkaLoadId(topic, p)));
    for (const p of perPartition) expect(Number(p.n)).toBe(Number(p.distinct));
  });

  it('datasets over stream events equal the reference', async () => {
    const view = compiled.registry.views.find((v) => v.name === 'origin_delays')!;
    const t = Math.max(...events.map((e) => e.eventTimeMs)) + 1;
    const spine = ['ORD', 'ATL', 'SFO', 'DEN'].map((airport, i) => ({ airport, ts: t - i * 1_800_000, label: i }));
    const prepared = await store.prepareDataset(spine, view.features.map((f) => `origin_delays:${f.name}`));
    let text = '';
    try {
      for await (const chunk of store.executor.streamJsonLines(prepared.sql)) text += Buffer.from(chunk).toString('utf8');
    } finally {
      await prepared.release();
    }
    const rows = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, never>);
    rows.forEach((row, i) => {
      const expected = referenceViewValues(view, events, [spine[i]!.airport], spine[i]!.ts);
      for (const f of view.features) expect(valuesAgree(f.agg, row[`origin_delays__${f.name}`]!, expected[f.name]!), `${spine[i]!.airport} ${f.name}`).toBe(true);
    });
  });
});
