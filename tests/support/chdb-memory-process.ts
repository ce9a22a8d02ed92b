// Run by tests/offline/chdb-memory.test.ts in a process of its own (the setting is read once per
// process, when libchdb loads): keepChdbMemory before the first executor, then after it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChdbExecutor, keepChdbMemory } from '../../offline/index.js';

const before = keepChdbMemory(Number(process.argv[2] ?? 60_000));
const dir = mkdtempSync(join(tmpdir(), 'tidemark-chdb-memory-'));
const executor = new ChdbExecutor(dir);
const [row] = await executor.rows<{ n: number }>('SELECT count() AS n FROM numbers(1000)');
const after = keepChdbMemory();
await executor.close();
rmSync(dir, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ before, after, conf: process.env.JE_MALLOC_CONF ?? null, n: row?.n })}\n`);
