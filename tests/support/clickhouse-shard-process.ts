// TEST FIXTURE, NOT CLICKHOUSE. One shard of a test "cluster": a process that serves ClickHouse's HTTP
// interface from its own chDB session (clickhouse-http-fixture.ts; libchdb binds one data
// directory per process, so each shard is a process). Started by startClickHouseShards below, or
// by hand: node bin/run-ts.mjs tests/support/clickhouse-shard-process.ts <data dir>
// It prints one JSON line {"url": ...} when it listens, and stops on SIGTERM or when stdin closes.
import { startClickHouseHttpFixture } from './clickhouse-http-fixture.js';

const [dataDir] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: clickhouse-shard-process.ts <data dir>');
const fixture = await startClickHouseHttpFixture(dataDir);
process.stdout.write(`${JSON.stringify({ url: fixture.url, pid: process.pid })}\n`);
let stopping = false;
const stop = async (): Promise<void> => {
  if (stopping) return;
  stopping = true;
  await fixture.close();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.stdin.on('end', () => void stop());
process.stdin.resume();
