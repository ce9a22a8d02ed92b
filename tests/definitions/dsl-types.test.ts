// DSL typing: fields, aggregations, keys and durations are checked by tsc (@ts-expect-error lines), plus the runtime shape.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  compile,
  entity,
  eventTime,
  featureView,
  isDefinition,
  source,
  type Duration,
  type FeatureSpec,
  type NumericFields,
} from '../../definitions/index.js';

const schema = z.object({
  ts: eventTime(),
  user: z.string(),
  amount: z.number(),
  tip: z.number().nullable(),
  fee: z.number().optional(),
  note: z.string().nullable(),
  flag: z.boolean(),
});
type Out = z.output<typeof schema>;

const customer = entity({ name: 'customer', joinKeys: ['customer_id'] });
const pair = entity({ name: 'pair', joinKeys: ['a', 'b'] });
const payments = source({ name: 'payments', topic: 'payments', schema, eventTimeField: 'ts' });

describe('DSL types', () => {
  it('infers the event type, join keys and event-time field', () => {
    expectTypeOf(customer.joinKeys).toEqualTypeOf<readonly ['customer_id']>();
    expectTypeOf(pair.joinKeys).toEqualTypeOf<readonly ['a', 'b']>();
    expectTypeOf<Out['ts']>().toEqualTypeOf<number>();
    expectTypeOf(payments.eventTimeField).toEqualTypeOf<'ts' | 'user' | 'amount' | 'tip' | 'fee' | 'note' | 'flag'>();
    expect(customer).toEqual({ kind: 'entity', name: 'customer', joinKeys: ['customer_id'] });
    expect(payments.kind).toBe('source');
    expect(isDefinition(payments)).toBe(true);
    expect(isDefinition({ kind: 'other' })).toBe(false);
  });

  it('NumericFields keeps exactly the number fields, nullable or optional included', () => {
    expectTypeOf<NumericFields<Out>>().toEqualTypeOf<'ts' | 'amount' | 'tip' | 'fee'>();
    expectTypeOf<NumericFields<{ a: string; b: null; c: number | undefined }>>().toEqualTypeOf<'c'>();
    const n: NumericFields<Out> = 'amount';
    expect(n).toBe('amount');
  });

  it("the event-time field must be a key of the schema's output", () => {
    const bad = source({
      name: 'bad',
      topic: 'bad',
      schema,
      // @ts-expect-error 'when' is not a field of the schema
      eventTimeField: 'when',
    });
    expect(bad.eventTimeField).toBe('when');
  });

  it("a feature's field must be a key of the source schema's output", () => {
    const ok = featureView({
      name: 'ok',
      source: payments,
      entity: customer,
      keys: { customer_id: 'user' },
      features: {
        n: { agg: 'count', window: '1h' },
        n_tip: { agg: 'count', field: 'tip', window: '1h' },
        total: { agg: 'sum', field: 'amount', window: '1d', hop: '1h' },
        avg_tip: { agg: 'mean', field: 'tip', window: '1h' },
        lo: { agg: 'min', field: 'fee', window: '1h' },
        hi: { agg: 'max', field: 'amount', window: '1h' },
        v: { agg: 'var', field: 'amount', window: '1h' },
        sd: { agg: 'stddev', field: 'amount', window: '1h' },
        last_note: { agg: 'last', field: 'note' },
        last_flag: { agg: 'last', field: 'flag', ttl: '1d' },
        last_amount_1h: { agg: 'last', field: 'amount', window: '1h' },
      },
    });
    expectTypeOf(ok.features.total.agg).toEqualTypeOf<'sum'>();
    expectTypeOf(ok.features.total.field).toEqualTypeOf<'amount'>();
    expectTypeOf(ok.features.last_note.field).toEqualTypeOf<'note'>();
    expect(Object.keys(ok.features)).toHaveLength(11);
    expect(compile([ok]).ok).toBe(true);

    featureView({
      name: 'unknown_field',
      source: payments,
      entity: customer,
      keys: { customer_id: 'user' },
      features: {
        // @ts-expect-error 'amout' is not a field of the schema
        total: { agg: 'sum', field: 'amout', window: '1h' },
      },
    });
    featureView({
      name: 'unknown_field_count',
      source: payments,
      entity: customer,
      keys: { customer_id: 'user' },
      features: {
        // @ts-expect-error count's optional field must still be a schema field
        n: { agg: 'count', field: 'nope', window: '1h' },
      },
    });
    featureView({
      name: 'unknown_field_last',
      source: payments,
      entity: customer,
      keys: { customer_id: 'user' },
      features: {
        // @ts-expect-error last's field must be a schema field
        l: { agg: 'last', field: 'nope' },
      },
    });
  });

  it('numeric aggregations reject a string (or boolean) field', () => {
    const spec = (f: FeatureSpec<Out>): FeatureSpec<Out> => f;
    // @ts-expect-error sum of a string field
    spec({ agg: 'sum', field: 'user', window: '1h' });
    // @ts-expect-error mean of a string field
    spec({ agg: 'mean', field: 'note', window: '1h' });
    // @ts-expect-error min of a string field
    spec({ agg: 'min', field: 'user', window: '1h' });
    // @ts-expect-error max of a string field
    spec({ agg: 'max', field: 'user', window: '1h' });
    // @ts-expect-error var of a string field
    spec({ agg: 'var', field: 'user', window: '1h' });
    // @ts-expect-error stddev of a string field
    spec({ agg: 'stddev', field: 'user', window: '1h' });
    // @ts-expect-error sum of a boolean field
    spec({ agg: 'sum', field: 'flag', window: '1h' });
    // @ts-expect-error numeric aggregations need a field
    spec({ agg: 'sum', window: '1h' });
    // @ts-expect-error numeric aggregations need a window
    spec({ agg: 'mean', field: 'amount' });
    // @ts-expect-error approx_percentile of a string field
    spec({ agg: 'approx_percentile', field: 'note', window: '1h', quantile: 0.5 });
    // @ts-expect-error approx_percentile needs its quantile
    spec({ agg: 'approx_percentile', field: 'amount', window: '1h' });
    // @ts-expect-error approx_percentile needs a window
    spec({ agg: 'approx_percentile', field: 'amount', quantile: 0.9 });
    // @ts-expect-error only approx_percentile takes a quantile
    spec({ agg: 'max', field: 'amount', window: '1h', quantile: 0.9 });
    expect(spec({ agg: 'approx_percentile', field: 'tip', window: '1h', hop: '5m', quantile: 0.99 }).agg).toBe('approx_percentile');

    const v = featureView({
      name: 'strings',
      source: payments,
      entity: customer,
      keys: { customer_id: 'user' },
      features: {
        // @ts-expect-error sum of a string field inside a view
        total: { agg: 'sum', field: 'user', window: '1h' },
      },
    });
    expect(v.features['total']?.agg).toBe('sum');
  });

  it('count takes no field, last takes a string field', () => {
    const spec = (f: FeatureSpec<Out>): FeatureSpec<Out> => f;
    const count = spec({ agg: 'count', window: '1h' });
    const lastText = spec({ agg: 'last', field: 'user' });
    const lastTextWindowed = spec({ agg: 'last', field: 'note', window: '1h', hop: '5m' });
    expectTypeOf(count).toEqualTypeOf<FeatureSpec<Out>>();
    expect(count).toEqual({ agg: 'count', window: '1h' });
    expect(lastText.field).toBe('user');
    expect(lastTextWindowed.window).toBe('1h');
    // @ts-expect-error count needs a window
    spec({ agg: 'count' });
    // @ts-expect-error unknown aggregation
    spec({ agg: 'median', field: 'amount', window: '1h' });
  });

  it("keys only accepts the entity's join keys, mapped to schema fields", () => {
    const v = featureView({
      name: 'pairs',
      source: payments,
      entity: pair,
      keys: { a: 'user', b: 'note' },
      features: { n: { agg: 'count', window: '1h' } },
    });
    expectTypeOf(v.entity.joinKeys).toEqualTypeOf<readonly ['a', 'b']>();
    expect(v.keys).toEqual({ a: 'user', b: 'note' });

    featureView({
      name: 'bad_key',
      source: payments,
      entity: customer,
      // @ts-expect-error 'user' is not a join key of customer
      keys: { user: 'user' },
      features: { n: { agg: 'count', window: '1h' } },
    });
    featureView({
      name: 'bad_key_field',
      source: payments,
      entity: customer,
      // @ts-expect-error 'customer' is not a field of the schema
      keys: { customer_id: 'customer' },
      features: { n: { agg: 'count', window: '1h' } },
    });
  });

  it('bad duration text is a type error', () => {
    const ok: Duration[] = ['500ms', '30s', '5m', '1h', '1d', '7d'];
    expect(ok).toHaveLength(6);
    // @ts-expect-error unknown unit
    const bad: Duration = '5x';
    // @ts-expect-error no unit
    const bare: Duration = '5';
    // @ts-expect-error unit first
    const reversed: Duration = 'm5';
    expect([bad, bare, reversed]).toEqual(['5x', '5', 'm5']);
    const spec = (f: FeatureSpec<Out>): FeatureSpec<Out> => f;
    // @ts-expect-error bad window duration in a feature
    spec({ agg: 'count', window: '5x' });
    // @ts-expect-error bad hop duration in a feature
    spec({ agg: 'count', window: '1h', hop: 'five minutes' });
    // @ts-expect-error bad ttl duration in a feature
    spec({ agg: 'last', field: 'user', ttl: '1 day' });
    featureView({
      name: 'late',
      source: payments,
      entity: customer,
      keys: { customer_id: 'user' },
      features: { n: { agg: 'count', window: '1h' } },
      // @ts-expect-error bad allowedLateness
      allowedLateness: '1y',
    });
  });
});
