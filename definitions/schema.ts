// Event schemas: the event-time type that turns epoch ms or ISO-8601 text into integer UTC
// milliseconds, and the introspection the compiler uses to check fields against a zod schema.
import { z } from 'zod';

const ISO_RE =
  /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * Milliseconds of ISO-8601 text. Text without an offset is UTC (never local time), fractions
 * below a millisecond are floored. Returns null for text that is not a valid instant.
 */
export function parseIsoUtcMs(text: string): number | null {
  const m = ISO_RE.exec(text);
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = m[4] === undefined ? 0 : Number(m[4]);
  const minute = m[5] === undefined ? 0 : Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const ms = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return null;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // setUTCFullYear keeps years 0..99 literal, unlike Date.UTC
  if (date.getUTCDate() !== day) return null; // 2001-02-30 and the like
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 23 || om > 59) return null;
    offsetMin = sign * (oh * 60 + om);
  }
  date.setUTCHours(hour, minute, second, ms);
  const result = date.getTime() - offsetMin * 60_000;
  return Number.isSafeInteger(result) ? result : null;
}

/**
 * Milliseconds of a time given as integer epoch milliseconds (a number, or text of digits) or as
 * ISO-8601 text; null when it is neither. Text is taken as it is (callers trim if they want to).
 */
export function parseTimeMs(value: unknown): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : null;
  if (typeof value !== 'string') return null;
  if (/^[+-]?\d+$/.test(value)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : null;
  }
  return parseIsoUtcMs(value);
}

const timestampSchemas = new WeakSet<z.ZodType>();

/**
 * An event-time field: accepts integer epoch milliseconds, ISO-8601 text (UTC unless it names an
 * offset) or a Date, and outputs integer UTC milliseconds since the epoch.
 */
export function eventTime() {
  const schema = z.union([z.number(), z.string(), z.date()]).transform((value, ctx): number => {
    if (typeof value === 'number') {
      if (Number.isSafeInteger(value)) return value;
      ctx.addIssue({ code: 'custom', message: `epoch milliseconds must be an integer, got ${value}` });
      return z.NEVER;
    }
    if (value instanceof Date) {
      const ms = value.getTime();
      if (Number.isSafeInteger(ms)) return ms;
      ctx.addIssue({ code: 'custom', message: 'invalid Date' });
      return z.NEVER;
    }
    const ms = parseIsoUtcMs(value);
    if (ms !== null) return ms;
    ctx.addIssue({ code: 'custom', message: `not an ISO-8601 time: ${JSON.stringify(value.slice(0, 64))}` });
    return z.NEVER;
  });
  timestampSchemas.add(schema);
  return schema;
}

/** What the compiler needs to know of a field's output type. */
export type FieldKind = 'number' | 'string' | 'boolean' | 'timestamp' | 'other';

export interface FieldInfo {
  kind: FieldKind;
  nullable: boolean;
}

interface ZodInternals {
  _zod: { def: { type: string; innerType?: z.ZodType; out?: z.ZodType; options?: z.ZodType[]; values?: unknown[]; entries?: Record<string, unknown> } };
}

/** The output kind of a zod schema, looking through optional, nullable, default and pipes. */
export function describeField(schema: z.ZodType): FieldInfo {
  if (timestampSchemas.has(schema)) return { kind: 'timestamp', nullable: false };
  const def = (schema as unknown as ZodInternals)._zod.def;
  switch (def.type) {
    case 'number':
    case 'int':
      return { kind: 'number', nullable: false };
    case 'string':
    case 'enum':
      return { kind: 'string', nullable: false };
    case 'boolean':
      return { kind: 'boolean', nullable: false };
    case 'literal': {
      const kinds = new Set((def.values ?? []).map((v) => typeof v));
      if (kinds.size === 1 && kinds.has('number')) return { kind: 'number', nullable: false };
      if (kinds.size === 1 && kinds.has('string')) return { kind: 'string', nullable: false };
      return { kind: 'other', nullable: false };
    }
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'catch':
    case 'readonly':
    case 'nonoptional': {
      const inner = describeField(def.innerType!);
      return { kind: inner.kind, nullable: inner.nullable || def.type === 'optional' || def.type === 'nullable' };
    }
    case 'pipe':
      return describeField(def.out!);
    case 'union': {
      const infos = (def.options ?? []).map(describeField);
      const kinds = new Set(infos.filter((i) => i.kind !== 'other').map((i) => i.kind));
      const nullable = infos.some((i) => i.nullable) || (def.options ?? []).some((o) => isNullish(o));
      if (kinds.size === 1) return { kind: [...kinds][0]!, nullable };
      return { kind: 'other', nullable };
    }
    default:
      return { kind: 'other', nullable: false };
  }
}

function isNullish(schema: z.ZodType): boolean {
  const t = (schema as unknown as ZodInternals)._zod.def.type;
  return t === 'null' || t === 'undefined';
}

/** The fields of an object schema, or null when the schema is not a z.object. */
export function objectShape(schema: z.ZodType): Record<string, z.ZodType> | null {
  const def = (schema as unknown as ZodInternals)._zod.def;
  if (def.type !== 'object') return null;
  return (schema as unknown as { shape: Record<string, z.ZodType> }).shape;
}

/**
 * What a field's schema accepts, when that is simple enough for another engine to check exactly
 * (bulk loaders decide there which rows are surely valid, and leave the rest to the schema itself):
 * a number (finite; integer; bounds), a string (bounds on its UTF-16 length; one of some values),
 * a boolean, or an event time. Fields are never null here: optional and nullable fields have no rule.
 */
export type FieldRule =
  | { kind: 'number'; integer: boolean; min: NumberBound | null; max: NumberBound | null }
  | { kind: 'string'; minLength: number | null; maxLength: number | null; values: string[] | null }
  | { kind: 'boolean' }
  | { kind: 'timestamp' };

export interface NumberBound {
  value: number;
  inclusive: boolean;
}

interface ZodCheckDef {
  check?: string;
  value?: unknown;
  inclusive?: boolean;
  format?: string;
  minimum?: number;
  maximum?: number;
  length?: number;
}

interface ZodRuleDef {
  type: string;
  format?: string;
  check?: string;
  checks?: { _zod: { def: ZodCheckDef } }[];
  entries?: Record<string, unknown>;
  catchall?: unknown;
  coerce?: boolean;
}

/**
 * The rule of a field's schema, or null when no rule states exactly what it accepts (a refinement,
 * a transform, a pattern, a default, an optional or nullable field, any type but the four above).
 */
export function fieldRule(schema: z.ZodType): FieldRule | null {
  if (timestampSchemas.has(schema)) return { kind: 'timestamp' };
  const def = (schema as unknown as { _zod: { def: ZodRuleDef } })._zod.def;
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  // z.coerce.*: accepts whatever converts, which is more than its type.
  if (def.coerce) return null;
  switch (def.type) {
    case 'number': {
      const rule: FieldRule = { kind: 'number', integer: false, min: null, max: null };
      // z.int() carries its format on the schema itself; z.number().int() as a check.
      const formats = [...(def.check === 'number_format' ? [def.format] : []), ...checks.filter((c) => c.check === 'number_format').map((c) => c.format)];
      for (const format of formats) {
        if (format !== 'safeint') return null;
        rule.integer = true;
      }
      for (const c of checks) {
        if (c.check === 'number_format') continue;
        if ((c.check !== 'greater_than' && c.check !== 'less_than') || typeof c.value !== 'number' || !Number.isFinite(c.value)) return null;
        const bound = { value: c.value, inclusive: c.inclusive === true };
        if (c.check === 'greater_than') rule.min = tighterBound(rule.min, bound, 1);
        else rule.max = tighterBound(rule.max, bound, -1);
      }
      return rule;
    }
    case 'string': {
      const rule: FieldRule = { kind: 'string', minLength: null, maxLength: null, values: null };
      for (const c of checks) {
        if (c.check === 'min_length' && typeof c.minimum === 'number') rule.minLength = Math.max(rule.minLength ?? 0, c.minimum);
        else if (c.check === 'max_length' && typeof c.maximum === 'number') rule.maxLength = Math.min(rule.maxLength ?? Number.POSITIVE_INFINITY, c.maximum);
        else if (c.check === 'length_equals' && typeof c.length === 'number') {
          rule.minLength = Math.max(rule.minLength ?? 0, c.length);
          rule.maxLength = Math.min(rule.maxLength ?? Number.POSITIVE_INFINITY, c.length);
        } else return null;
      }
      return rule;
    }
    case 'enum': {
      const values = Object.values(def.entries ?? {});
      if (checks.length > 0 || values.length === 0 || !values.every((v): v is string => typeof v === 'string')) return null;
      return { kind: 'string', minLength: null, maxLength: null, values };
    }
    case 'boolean':
      return checks.length === 0 ? { kind: 'boolean' } : null;
    default:
      return null;
  }
}

/** The stricter of two bounds on the same side (`side` 1: lower bounds, -1: upper bounds). */
function tighterBound(current: NumberBound | null, next: NumberBound, side: 1 | -1): NumberBound {
  if (current === null) return next;
  if (next.value * side > current.value * side) return next;
  if (next.value === current.value) return { value: next.value, inclusive: current.inclusive && next.inclusive };
  return current;
}

/**
 * The rules of every field of an object schema, or null when some field has none, or the object
 * itself refines, transforms or rejects unknown keys: then only the schema can tell valid rows.
 */
export function schemaRules(schema: z.ZodType): Record<string, FieldRule> | null {
  const shape = objectShape(schema);
  if (!shape) return null;
  const def = (schema as unknown as { _zod: { def: ZodRuleDef } })._zod.def;
  if ((def.checks ?? []).length > 0 || def.catchall !== undefined) return null;
  const rules: Record<string, FieldRule> = {};
  for (const [name, field] of Object.entries(shape)) {
    const rule = fieldRule(field);
    if (!rule) return null;
    rules[name] = rule;
  }
  return rules;
}
