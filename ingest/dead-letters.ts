// Dead letters of the batch paths: one NDJSON line per bad event, with the original input, the
// source, the position and the reason, in `<dataDir>/dead-letters/<source>.ndjson`.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BadEvent } from './decode.js';

export interface DeadLetterSink {
  write(bad: readonly BadEvent[]): void;
  /** Bad events written so far, by error code. */
  readonly counts: Readonly<Record<string, number>>;
}

export class DeadLetterFile implements DeadLetterSink {
  readonly counts: Record<string, number> = {};
  private created = false;

  constructor(readonly dir: string) {}

  pathOf(source: string): string {
    return join(this.dir, `${source}.ndjson`);
  }

  write(bad: readonly BadEvent[]): void {
    if (bad.length === 0) return;
    if (!this.created) {
      mkdirSync(this.dir, { recursive: true });
      this.created = true;
    }
    const bySource = new Map<string, string[]>();
    for (const b of bad) {
      this.counts[b.code] = (this.counts[b.code] ?? 0) + 1;
      const raw = b.raw instanceof Uint8Array ? Buffer.from(b.raw).toString('utf8') : b.raw;
      const line = JSON.stringify({ source: b.source, position: b.position ?? null, code: b.code, field: b.field, reason: b.reason, raw });
      bySource.set(b.source, [...(bySource.get(b.source) ?? []), line]);
    }
    for (const [source, lines] of bySource) appendFileSync(this.pathOf(source), `${lines.join('\n')}\n`);
  }
}
