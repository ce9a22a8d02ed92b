// The sensor monitor fixture (tests/fixtures/sensor-monitor.ts) loaded into a chDB offline store and
// evaluated over its whole range, with the in-memory online store built from the same events: a
// small, complete tidemark (drift that pages, label metrics, alerts) for the API and dashboard tests.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootstrapView } from '../../api/bootstrap.js';
import { compileOrThrow, type CompiledDefinitions } from '../../definitions/index.js';
import { MonitorRunner } from '../../monitor/index.js';
import { OfflineStore } from '../../offline/index.js';
import { MemoryOnlineStore } from '../../online/index.js';
import * as sensorDefinitions from '../fixtures/sensor-monitor.js';
import { END_HOUR, HOUR, REFERENCE_HOURS, T0, sensorData } from '../fixtures/sensor-monitor.js';

export interface SensorMonitorStore {
  compiled: CompiledDefinitions;
  offline: OfflineStore;
  online: MemoryOnlineStore;
  runner: MonitorRunner;
  close(): Promise<void>;
}

/** Load, evaluate every hour after the reference up to END_HOUR, and build the online store. */
export async function openSensorMonitorStore(externalURL: string): Promise<SensorMonitorStore> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-sensors-'));
  const compiled = compileOrThrow(sensorDefinitions);
  const data = sensorData();
  const write = (name: string, rows: readonly unknown[]): string => {
    const path = join(dir, `${name}.ndjson`);
    writeFileSync(path, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    return path;
  };
  const offline = await OfflineStore.open(compiled, { dataDir: join(dir, 'data') });
  await offline.loadEvents('readings', write('readings', data.readings));
  await offline.loadEvents('predictions', write('predictions', data.predictions));
  await offline.loadEvents('labels', write('labels', data.labels));
  const runner = await MonitorRunner.open(offline.executor, compiled, 'sensors', { externalURL });
  await runner.evaluate(T0 + REFERENCE_HOURS * HOUR, T0 + END_HOUR * HOUR);
  const online = new MemoryOnlineStore(compiled.registry);
  for (const view of compiled.registry.views) await bootstrapView(view, { kind: 'memory', store: online }, { executor: offline.executor, registry: compiled.registry });
  return {
    compiled,
    offline,
    online,
    runner,
    close: async () => {
      await offline.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
