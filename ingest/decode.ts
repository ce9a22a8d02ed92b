// Decoding and validation of raw events: JSON text or objects in, events with integer event time
// and canonical entity keys out, or a bad event naming the failing field. The stream path, the push
// API and file replay all decode through here, so every path applies the same rules.
import type { z } from 'zod';
import { canonicalKeyValue, entityKeyId, TidemarkError, type CompiledDefinitions, type ErrorCode, type SourcePlan, type ViewPlan } from '../definitions/index.js';

/** Where a record came from in its log (Kafka partition and offset, or the in-process log). */
export interface EventPosition {
  partition: number;
  offset: number;
}

export interface DecodedEvent {
  source: string;
  eventTimeMs: number;
  /** The schema's output. */
  fields: Record<string, unknown>;
  /** Entity key id for each view of the source, in `SourcePlan.views` order. */
  viewKeys: string[];
  position?: EventPosition;
}

export interface BadEvent {
  source: string;
  position?: EventPosition;
  code: ErrorCode;
  /** The failing field (dotted path), or null when the whole record is at fault. */
  field: string | null;
  reason: string;
  /** The original input, untouched. */
  raw: unknown;
}

export type DecodeResult = { ok: true; event: DecodedEvent } | { ok: false; bad: BadEvent };

/** Decodes the events of one source. Wall time is injectable for the future-skew rule. */
export class EventDecoder {
  readonly source: SourcePlan;
  private readonly schema: z.ZodType;
  private readonly views: ViewPlan[];
  private readonly nowMs: () => number;

  constructor(compiled: CompiledDefinitions, sourceName: string, nowMs: () => number = Date.now) {
    const source = compiled.registry.sources.find((s) => s.name === sourceName);
    const schema = compiled.schemas.get(sourceName);
    if (!source || !schema) {
      throw new TidemarkError('TM_READ_BAD_REQUEST', `unknown source ${sourceName}`, {
        validSources: compiled.registry.sources.map((s) => s.name),
      });
    }
    this.source = source;
    this.schema = schema;
    this.views = source.views.map((name) => compiled.registry.views.find((v) => v.name === name)!);
    this.nowMs = nowMs;
  }

  /** Decode JSON bytes or text. */
  decodeJson(raw: string | Uint8Array, position?: EventPosition): DecodeResult {
    let parsed: unknown;
    try {
      // a Buffer is read in place (Buffer.from(buffer) would copy it)
      parsed = JSON.parse(typeof raw === 'string' ? raw : (Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)).toString('utf8'));
    } catch (e) {
      return this.bad(raw, position, 'TM_EVENT_INVALID_JSON', null, `not valid JSON: ${(e as Error).message}`);
    }
    return this.decodeValue(parsed, position, raw);
  }

  /** Decode an already parsed value (push API bodies, file rows). */
  decodeValue(value: unknown, position?: EventPosition, raw: unknown = value): DecodeResult {
    const parsed = this.schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = issue.path.length > 0 ? issue.path.join('.') : null;
      const code: ErrorCode = field === this.source.eventTimeField ? 'TM_EVENT_TIME' : 'TM_EVENT_SCHEMA';
      const more = parsed.error.issues.length > 1 ? ` (and ${parsed.error.issues.length - 1} more)` : '';
      return this.bad(raw, position, code, field, `${field ?? 'event'}: ${issue.message}${more}`);
    }
    const fields = parsed.data as Record<string, unknown>;
    const eventTimeMs = fields[this.source.eventTimeField];
    if (typeof eventTimeMs !== 'number' || !Number.isSafeInteger(eventTimeMs)) {
      return this.bad(raw, position, 'TM_EVENT_TIME', this.source.eventTimeField, `${this.source.eventTimeField}: event time must be integer epoch milliseconds, got ${String(eventTimeMs)}`);
    }
    const limit = this.nowMs() + this.source.allowedFutureSkewMs;
    if (eventTimeMs > limit) {
      return this.bad(raw, position, 'TM_EVENT_FUTURE', this.source.eventTimeField, `${this.source.eventTimeField}: ${new Date(eventTimeMs).toISOString()} is more than ${this.source.allowedFutureSkewMs} ms ahead of wall time`);
    }
    const viewKeys: string[] = new Array(this.views.length);
    for (let v = 0; v < this.views.length; v++) {
      const view = this.views[v]!;
      const values: string[] = new Array(view.keyFields.length);
      for (let k = 0; k < view.keyFields.length; k++) {
        const field = view.keyFields[k]!;
        const canonical = canonicalKeyValue(fields[field]);
        if (canonical === null) {
          return this.bad(raw, position, 'TM_EVENT_MISSING_KEY', field, `${field}: join key ${view.joinKeys[k]} of view ${view.name} is missing or not a scalar`);
        }
        values[k] = canonical;
      }
      viewKeys[v] = entityKeyId(values);
    }
    const event: DecodedEvent = { source: this.source.name, eventTimeMs, fields, viewKeys };
    if (position) event.position = position;
    return { ok: true, event };
  }

  private bad(raw: unknown, position: EventPosition | undefined, code: ErrorCode, field: string | null, reason: string): DecodeResult {
    const bad: BadEvent = { source: this.source.name, code, field, reason, raw };
    if (position) bad.position = position;
    return { ok: false, bad };
  }
}
