import { spawnSync } from 'node:child_process';
import { startMockKafka } from '../tests/support/kafka.js';
import { startRedisServer } from '../tests/support/redis.js';
const kafka = await startMockKafka();
const redis = await startRedisServer();
await kafka.createTopic('flights', 4);
const run = (args: string[], extra: string[] = []) => {
  const r = spawnSync(process.execPath, [...extra, 'bin/run-ts.mjs', 'bench/stream-worker.ts', ...args], { cwd: '/work/main', encoding: 'utf8' });
  console.log(r.stdout.split('\n').filter(Boolean).pop(), r.stderr.slice(-2000));
};
run(['produce', kafka.bootstrap, 'flights', '200000', '4']);
run(['materialize', kafka.bootstrap, 'flights', redis.url, 'p1', '200000'], process.env.PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof/out'] : []);
await redis.stop(); await kafka.stop();
