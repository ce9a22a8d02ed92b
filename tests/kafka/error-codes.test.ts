// Every stable error code the code base sends (a 'TM_...' string literal in api/, ingest/, online/,
// offline/, monitor/, definitions/ or bin/) is declared in definitions/errors.ts, so the API, the
// CLI and the logs only ever print codes that the ErrorCode type (and its docs) know.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support.js';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mjs)$/.test(name) ? [path] : [];
  });
}

describe('error codes', () => {
  it('every TM_ code in the sources is declared in definitions/errors.ts', () => {
    const declared = new Set([...readFileSync(join(ROOT, 'definitions', 'errors.ts'), 'utf8').matchAll(/\|\s*'(TM_[A-Z_]+)'/g)].map((m) => m[1]!));
    expect(declared.size).toBeGreaterThan(40);
    const undeclared: string[] = [];
    for (const dir of ['api', 'ingest', 'online', 'offline', 'monitor', 'definitions', 'bin']) {
      for (const file of sourceFiles(join(ROOT, dir))) {
        for (const m of readFileSync(file, 'utf8').matchAll(/['"`](TM_[A-Z_]+[A-Z])['"`]/g)) {
          if (!declared.has(m[1]!)) undeclared.push(`${file.slice(ROOT.length + 1)}: ${m[1]}`);
        }
      }
    }
    expect(undeclared).toEqual([]);
  });
});
