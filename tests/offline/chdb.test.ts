// The offline suite on chDB, the embedded default.
import { OfflineStore } from '../../offline/index.js';
import { runOfflineSuite } from './offline-suite.js';

runOfflineSuite({
  name: 'chDB (embedded)',
  open: (files, dir) => OfflineStore.open(files.compiled, { dataDir: dir }),
});
