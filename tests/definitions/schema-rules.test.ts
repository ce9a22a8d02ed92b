// fieldRule / schemaRules: what a zod schema accepts, when another engine can check it exactly
// (the SQL load of Parquet files decides its surely valid rows from these), and null for anything
// only the schema itself can tell (refinements, transforms, patterns, optional or nullable fields).
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { eventTime, fieldRule, schemaRules } from '../../definitions/index.js';

describe('fieldRule', () => {
  it('states numbers with their bounds and integrality', () => {
    expect(fieldRule(z.number())).toEqual({ kind: 'number', integer: false, min: null, max: null });
    expect(fieldRule(z.number().min(0).max(1))).toEqual({ kind: 'number', integer: false, min: { value: 0, inclusive: true }, max: { value: 1, inclusive: true } });
    expect(fieldRule(z.number().positive().lt(5))).toEqual({ kind: 'number', integer: false, min: { value: 0, inclusive: false }, max: { value: 5, inclusive: false } });
    expect(fieldRule(z.number().int().min(0).max(1))).toEqual({ kind: 'number', integer: true, min: { value: 0, inclusive: true }, max: { value: 1, inclusive: true } });
    expect(fieldRule(z.int())).toEqual({ kind: 'number', integer: true, min: null, max: null });
    // Two bounds on a side: the stricter one; at equal values, exclusive wins.
    expect(fieldRule(z.number().min(0).min(3).max(9).lt(9))).toEqual({ kind: 'number', integer: false, min: { value: 3, inclusive: true }, max: { value: 9, inclusive: false } });
  });

  it('states strings with their lengths and enums with their values', () => {
    expect(fieldRule(z.string())).toEqual({ kind: 'string', minLength: null, maxLength: null, values: null });
    expect(fieldRule(z.string().min(1).max(8))).toEqual({ kind: 'string', minLength: 1, maxLength: 8, values: null });
    expect(fieldRule(z.string().length(3))).toEqual({ kind: 'string', minLength: 3, maxLength: 3, values: null });
    expect(fieldRule(z.enum(['a', 'b']))).toEqual({ kind: 'string', minLength: null, maxLength: null, values: ['a', 'b'] });
    expect(fieldRule(z.boolean())).toEqual({ kind: 'boolean' });
    expect(fieldRule(eventTime())).toEqual({ kind: 'timestamp' });
  });

  it('has no rule for what only the schema can check', () => {
    for (const schema of [
      z.number().refine((x) => x > 0),
      z.number().multipleOf(2),
      z.int32(),
      z.string().trim(),
      z.string().regex(/^[A-Z]+$/),
      z.string().email(),
      z.number().optional(),
      z.number().nullable(),
      z.number().default(0),
      z.string().transform((s) => s.length),
      z.coerce.number(),
      z.literal('x'),
      z.date(),
      z.array(z.number()),
    ] as z.ZodType[]) {
      expect(fieldRule(schema)).toBeNull();
    }
  });
});

describe('schemaRules', () => {
  it('gives every field of a plain object its rule', () => {
    expect(schemaRules(z.object({ t: eventTime(), v: z.number(), k: z.string().min(1) }))).toEqual({
      t: { kind: 'timestamp' },
      v: { kind: 'number', integer: false, min: null, max: null },
      k: { kind: 'string', minLength: 1, maxLength: null, values: null },
    });
  });

  it('is null when a field has no rule, or the object refines, transforms or rejects unknown keys', () => {
    expect(schemaRules(z.object({ t: eventTime(), v: z.number().optional() }))).toBeNull();
    expect(schemaRules(z.object({ t: eventTime() }).strict())).toBeNull();
    expect(schemaRules(z.object({ t: eventTime() }).refine(() => true))).toBeNull();
    expect(schemaRules(z.object({ t: eventTime() }).transform((o) => o))).toBeNull();
    expect(schemaRules(z.number())).toBeNull();
  });
});
