// The shared OnlineStore suite on the in-memory store (the model the other stores follow).
import { MemoryOnlineStore } from '../../online/index.js';
import { runStoreSuite } from './store-suite.js';

runStoreSuite({ name: 'in-memory', create: (registry) => new MemoryOnlineStore(registry), fences: 'ignored' });
