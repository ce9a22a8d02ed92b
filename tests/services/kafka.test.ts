// Smoke tests of the Kafka-protocol broker the suite runs against: librdkafka's mock cluster (or
// KAFKA_BROKERS), driven by kafkajs as tidemark drives Kafka. What they cover on the mock, and
// what it cannot show, is said per test (ARCHITECTURE.md, "Real services in tests").
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kafka, logLevel, Partitioners, type Consumer, type LogEntry } from 'kafkajs';
import { startMockKafka, testKafka, type KafkaCluster } from '../support/kafka.js';

let kafka: KafkaCluster;
beforeAll(async () => {
  kafka = await testKafka();
});
afterAll(async () => {
  await kafka.stop();
});

const uniqueName = (what: string): string => `${what}-${randomUUID().slice(0, 8)}`;

function client(brokers: string[], logCreator?: (entry: LogEntry) => void): Kafka {
  return new Kafka({
    clientId: 'tidemark-tests',
    brokers,
    logLevel: logCreator ? logLevel.ERROR : logLevel.NOTHING,
    ...(logCreator ? { logCreator: () => logCreator } : {}),
    retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
  });
}

/** Resolves when `check` holds, polling; gives up (failing the test) after 30 s. */
async function until(check: () => boolean, what = 'the condition'): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function groupConsumer(k: Kafka, groupId: string): Consumer {
  return k.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 100 });
}

// Concurrent: each test has its own topics and groups (the fault test its own cluster), and a
// consumer group's first join waits out the broker's initial rebalance delay (3 s on the mock).
describe.concurrent('Kafka services (kafkajs against the mock cluster or KAFKA_BROKERS)', () => {
  it('produces to and consumes from every partition of a topic created with N partitions', async () => {
    const topic = uniqueName('smoke');
    await kafka.createTopic(topic, 3);
    const k = client(kafka.brokers);
    const producer = k.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const sent = Array.from({ length: 90 }, (_, i) => ({ partition: i % 3, key: `key${i}`, value: JSON.stringify({ i }) }));
    await producer.send({ topic, messages: sent });
    await producer.disconnect();

    const consumer = groupConsumer(k, uniqueName('group'));
    const received: { partition: number; offset: string; key: string; value: string }[] = [];
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          received.push({ partition, offset: message.offset, key: message.key!.toString(), value: message.value!.toString() });
        },
      });
      await until(() => received.length >= sent.length, 'all 90 messages');
    } finally {
      await consumer.disconnect();
    }
    expect(received).toHaveLength(90);
    for (const p of [0, 1, 2]) {
      const mine = received.filter((r) => r.partition === p);
      // each partition in order, offsets 0..29
      expect(mine.map((r) => Number(r.offset))).toEqual(Array.from({ length: 30 }, (_, i) => i));
      expect(mine.map((r) => r.key)).toEqual(sent.filter((s) => s.partition === p).map((s) => s.key));
    }
  });

  it('two members of one consumer group started together split the partitions between them', async () => {
    // On the mock (librdkafka 2.0.2) members must start together: a member joining an established
    // group never completes its sync. Real Kafka has no such limit; this covers the shared case.
    const topic = uniqueName('group');
    await kafka.createTopic(topic, 4);
    const k = client(kafka.brokers);
    const producer = k.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    await producer.send({ topic, messages: Array.from({ length: 40 }, (_, i) => ({ partition: i % 4, value: String(i) })) });
    await producer.disconnect();

    // The mock completes a group's sync as soon as the leader's SyncGroup arrives, so now and then
    // a follower's late SyncGroup fails (error 42) and that member never joins (ARCHITECTURE.md).
    // When that happens the whole group is started again under a new id, up to three times; real
    // Kafka has no such race. Every attempt asserts the same split below.
    let partitionsOf: Set<number>[] = [];
    let assigned: number[][] = [];
    let total = 0;
    for (let attempt = 1; ; attempt++) {
      const groupId = uniqueName('split');
      const members = [groupConsumer(k, groupId), groupConsumer(k, groupId)];
      partitionsOf = members.map(() => new Set<number>());
      assigned = members.map(() => []);
      total = 0;
      try {
        await Promise.all(
          members.map(async (consumer, m) => {
            consumer.on(consumer.events.GROUP_JOIN, (e) => {
              assigned[m] = [...(e.payload.memberAssignment[topic] ?? [])].sort();
            });
            await consumer.connect();
            await consumer.subscribe({ topic, fromBeginning: true });
            await consumer.run({
              eachMessage: async ({ partition }) => {
                partitionsOf[m]!.add(partition);
                total++;
              },
            });
          }),
        );
        await until(() => total >= 40, 'both members to consume all 40 messages');
        // the race shows as a member left with no partitions while the other took them all
        if (assigned.some((a) => a.length === 0)) throw new Error(`a member never completed its join: assignments ${JSON.stringify(assigned)}`);
        break;
      } catch (e) {
        if (attempt === 3) throw e;
        console.log(`group split test: attempt ${attempt}: the mock did not complete the two-member group; starting the whole group again`);
      } finally {
        await Promise.all(members.map((c) => c.disconnect()));
      }
    }
    expect(total).toBe(40);
    for (const a of assigned) expect(a.length).toBeGreaterThan(0);
    expect([...assigned[0]!, ...assigned[1]!].sort()).toEqual([0, 1, 2, 3]);
    // each member consumed exactly the partitions it was assigned
    assigned.forEach((a, m) => expect([...partitionsOf[m]!].sort()).toEqual(a));
  });

  it('a produce to a partition whose leader is down is retried and succeeds once the broker is back up', async () => {
    // Broker faults need a private cluster: the shared one serves every test file of the run.
    const mock = await startMockKafka({ brokers: 3 });
    const failures: string[] = [];
    const k = client(mock.brokers, (entry) => {
      if (entry.level <= logLevel.ERROR) failures.push(entry.log.message);
    });
    const producer = k.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    try {
      const topic = uniqueName('faults');
      await mock.createTopic(topic, 3);
      const admin = k.admin();
      await admin.connect();
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      await admin.disconnect();
      const leader = metadata.topics[0]!.partitions.find((p) => p.partitionId === 0)!.leader;
      await producer.connect();

      await mock.brokerDown(leader);
      let settled = false;
      const send = producer.send({ topic, messages: [{ partition: 0, value: 'survives' }] }).finally(() => {
        settled = true;
      });
      // Wait until kafkajs has seen the broker refuse, then bring it back.
      await until(() => failures.some((m) => /Failed to send messages|Connection error/.test(m)), 'kafkajs to report the refused connection');
      expect(settled).toBe(false);
      await mock.brokerUp(leader);
      const [result] = await send;
      expect(result).toMatchObject({ topicName: topic, partition: 0, errorCode: 0 });

      const consumer = k.consumer({ groupId: uniqueName('after-up'), maxWaitTimeInMs: 100 });
      const values: string[] = [];
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => void values.push(message.value!.toString()) });
      await until(() => values.length >= 1, 'the message produced after up');
      await consumer.disconnect();
      expect(values).toEqual(['survives']);
    } finally {
      await producer.disconnect();
      await mock.stop();
    }
  });

  it('the mock answers bad commands with an error line and keeps serving', async () => {
    const mock = await startMockKafka({ brokers: 1 });
    try {
      expect(await mock.command('bogus')).toMatch(/^error unknown command/);
      expect(await mock.command('down 7')).toMatch(/^error usage/);
      expect(await mock.command('topic x 0')).toMatch(/^error usage/);
      expect(await mock.command('topic fine 2')).toBe('ok');
    } finally {
      await mock.stop();
    }
  });
});
