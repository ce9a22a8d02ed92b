// keepChdbMemory: set before chDB loads (its allocator reads the setting then), refused after, and
// a JE_MALLOC_CONF of the user's own left alone. Each case in a process of its own.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..', '..');

function run(env: Record<string, string | undefined>, ms?: number): { before: boolean; after: boolean; conf: string | null; n: number } {
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  const out = execFileSync(process.execPath, [join(REPO, 'bin/run-ts.mjs'), join(REPO, 'tests/support/chdb-memory-process.ts'), ...(ms === undefined ? [] : [String(ms)])], { env: childEnv, encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('keepChdbMemory', () => {
  it('sets how long chDB keeps freed memory when called before the first executor, and not after it', () => {
    expect(run({ JE_MALLOC_CONF: undefined }, 30_000)).toEqual({ before: true, after: false, conf: 'dirty_decay_ms:30000', n: 1000 });
  });

  it("leaves a JE_MALLOC_CONF of the user's own alone", () => {
    expect(run({ JE_MALLOC_CONF: 'narenas:2' })).toEqual({ before: false, after: false, conf: 'narenas:2', n: 1000 });
  });
});
