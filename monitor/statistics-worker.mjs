// Worker thread of the drift statistics pool (monitor/statistics-pool.ts): computes
// driftTestStatistics for each batch of tests it is posted. Sources are TypeScript, loaded
// through tsx's loader as bin/tidemark.mjs does.
import { parentPort } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { driftTestStatistics } = await import('./drift-statistics.ts');
parentPort.on('message', ({ id, tests }) => {
  try {
    parentPort.postMessage({ id, results: tests.map(driftTestStatistics) });
  } catch (e) {
    parentPort.postMessage({ id, error: { message: e instanceof Error ? e.message : String(e), code: e?.code, details: e?.details } });
  }
});
parentPort.postMessage({ ready: true });
