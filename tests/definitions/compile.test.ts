// Compiler: every definition error reported at once with stable codes, and the registry (JSON, version, default hops, tile plans).
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  compile,
  compileOrThrow,
  defaultHopMs,
  DefinitionErrors,
  entity,
  eventTime,
  featureView,
  formatDefinitionError,
  LATEST_GROUP_HOP_MS,
  MAX_TILES_PER_WINDOW,
  parseDurationMs,
  source,
  viewPlan,
  type DefinitionError,
  type ErrorCode,
} from '../../definitions/index.js';
import * as flights from '../../examples/flights/definitions.js';

const schema = z.object({ ts: eventTime(), user: z.string(), amount: z.number().nullable(), note: z.string(), flag: z.boolean() });
const user = entity({ name: 'user', joinKeys: ['user'] });
const payments = source({ name: 'payments', topic: 'payments', schema, eventTimeField: 'ts' });

/** A view over `payments` with the given (possibly ill-typed) features. */
function view(name: string, features: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return featureView({ name, source: payments, entity: user, features: features as never, ...extra });
}

function errorsOf(input: unknown): DefinitionError[] {
  const result = compile(input);
  if (result.ok) throw new Error('expected definition errors, compiled fine');
  return result.errors;
}

function only(errors: DefinitionError[], code: ErrorCode): DefinitionError[] {
  return errors.filter((e) => e.code === code);
}

describe('compile: definition errors', () => {
  it('unknown field names the view and the feature', () => {
    const errors = errorsOf([view('v', { total: { agg: 'sum', field: 'amout', window: '1h' } })]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'TM_DEF_UNKNOWN_FIELD', definition: 'featureView v', feature: 'total' });
    expect(errors[0]!.message).toContain('amout');
    expect(errors[0]!.hint).toContain('amount');
  });

  it('unknown field of a count, a last and a key mapping', () => {
    const errors = errorsOf([
      view('v', { n: { agg: 'count', field: 'nope', window: '1h' }, l: { agg: 'last', field: 'gone' } }),
    ]);
    expect(errors.map((e) => [e.code, e.feature])).toEqual([
      ['TM_DEF_UNKNOWN_FIELD', 'n'],
      ['TM_DEF_UNKNOWN_FIELD', 'l'],
    ]);
  });

  it('non-numeric field for each numeric aggregation', () => {
    const features = Object.fromEntries(
      ['sum', 'mean', 'min', 'max', 'var', 'stddev'].map((agg) => [`${agg}_note`, { agg, field: agg === 'var' ? 'flag' : 'note', window: '1h' }]),
    );
    const errors = errorsOf([view('v', features)]);
    expect(errors).toHaveLength(6);
    for (const e of errors) {
      expect(e.code).toBe('TM_DEF_NON_NUMERIC_FIELD');
      expect(e.definition).toBe('featureView v');
      expect(e.hint).toContain('amount');
    }
    expect(errors.map((e) => e.feature)).toEqual(Object.keys(features));
    // count and last of the same text field are fine
    expect(compile([view('w', { n: { agg: 'count', field: 'note', window: '1h' }, l: { agg: 'last', field: 'note' } })]).ok).toBe(true);
  });

  it('hop not dividing the window: named, and the hint suggests a dividing hop', () => {
    const cases: [string, string | undefined][] = [
      ['1h', '7m'],
      ['90m', '1h'],
      ['10s', undefined], // default hop 5m does not divide 10s
      ['1d', '7h'],
      ['25ms', '10ms'],
    ];
    const features = Object.fromEntries(cases.map(([window, hop], i) => [`f${i}`, hop ? { agg: 'count', window, hop } : { agg: 'count', window }]));
    const errors = errorsOf([view('v', features)]);
    expect(errors).toHaveLength(cases.length);
    errors.forEach((e, i) => {
      expect(e).toMatchObject({ code: 'TM_DEF_HOP_NOT_DIVIDING', definition: 'featureView v', feature: `f${i}` });
      const suggested = /hop: '([^']+)'/.exec(e.hint)?.[1];
      expect(suggested, e.hint).toBeDefined();
      const hopMs = parseDurationMs(suggested!);
      const windowMs = parseDurationMs(cases[i]![0])!;
      expect(hopMs).not.toBeNull();
      expect(windowMs % hopMs!).toBe(0);
      // the suggestion, used as written, compiles
      expect(compile([view('fixed', { f: { agg: 'count', window: cases[i]![0], hop: suggested } })]).ok).toBe(true);
    });
  });

  it('duplicate names of views, sources and entities', () => {
    const user2 = entity({ name: 'user', joinKeys: ['user'] });
    const payments2 = source({ name: 'payments', topic: 'payments_again', schema, eventTimeField: 'ts' });
    const a = view('dup', { n: { agg: 'count', window: '1h' } });
    const b = featureView({ name: 'dup', source: payments2, entity: user2, features: { n: { agg: 'count', window: '1h' } } });
    const errors = errorsOf([a, b]);
    const dups = only(errors, 'TM_DEF_DUPLICATE_NAME');
    expect(dups.map((e) => e.definition).sort()).toEqual(['entity user', 'featureView dup', 'source payments']);
    expect(errors).toHaveLength(3);
  });

  it('two sources on one topic are reported as a duplicate', () => {
    const other = source({ name: 'other', topic: 'payments', schema, eventTimeField: 'ts' });
    const errors = errorsOf([view('a', { n: { agg: 'count', window: '1h' } }), featureView({ name: 'b', source: other, entity: user, features: { n: { agg: 'count', window: '1h' } } })]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'TM_DEF_DUPLICATE_NAME', definition: 'source other' });
  });

  it('a join key whose field is missing from the schema', () => {
    const account = entity({ name: 'account', joinKeys: ['account_id'] });
    const unmapped = featureView({ name: 'unmapped', source: payments, entity: account, features: { n: { agg: 'count', window: '1h' } } });
    const misMapped = featureView({
      name: 'mis_mapped',
      source: payments,
      entity: account,
      keys: { account_id: 'acct' } as never,
      features: { n: { agg: 'count', window: '1h' } },
    });
    const notAJoinKey = featureView({ name: 'not_a_join_key', source: payments, entity: user, keys: { customer: 'user' } as never, features: { n: { agg: 'count', window: '1h' } } });
    const errors = errorsOf([unmapped, misMapped, notAJoinKey]);
    expect(errors.map((e) => [e.code, e.definition])).toEqual([
      ['TM_DEF_MISSING_KEY_FIELD', 'featureView unmapped'],
      ['TM_DEF_MISSING_KEY_FIELD', 'featureView mis_mapped'],
      ['TM_DEF_MISSING_KEY_FIELD', 'featureView not_a_join_key'],
    ]);
    expect(errors[0]!.message).toContain('account_id');
    expect(errors[1]!.message).toContain('acct');
    expect(errors[2]!.message).toContain('customer');
    // mapping the key to an existing field fixes it
    expect(compile([featureView({ name: 'mapped', source: payments, entity: account, keys: { account_id: 'user' }, features: { n: { agg: 'count', window: '1h' } } })]).ok).toBe(true);
  });

  it(`more than ${MAX_TILES_PER_WINDOW} tiles per window`, () => {
    const errors = errorsOf([
      view('v', {
        too_many: { agg: 'count', window: '1d', hop: '1s' },
        just_over: { agg: 'count', window: '10001ms', hop: '1ms' },
        at_limit: { agg: 'count', window: '10s', hop: '1ms' },
      }),
    ]);
    expect(errors.map((e) => [e.code, e.feature])).toEqual([
      ['TM_DEF_TOO_MANY_TILES', 'too_many'],
      ['TM_DEF_TOO_MANY_TILES', 'just_over'],
    ]);
    expect(errors[0]!.message).toContain('86400');
  });

  it('bad duration text in window, hop, ttl and allowedLateness', () => {
    const errors = errorsOf([
      view(
        'v',
        {
          w: { agg: 'count', window: '5x' },
          h: { agg: 'count', window: '1h', hop: 'five' },
          t: { agg: 'last', field: 'note', ttl: '1 day' },
          frac: { agg: 'count', window: '1.5h' },
          neg: { agg: 'count', window: '-5m' },
          zero: { agg: 'count', window: '0s' },
        },
        { allowedLateness: '1y' },
      ),
    ]);
    const bad = only(errors, 'TM_DEF_BAD_DURATION');
    expect(bad).toHaveLength(errors.length);
    expect(bad.map((e) => e.feature)).toEqual([undefined, 'w', 'h', 't', 'frac', 'neg', 'zero']);
    expect(bad[0]!.message).toContain('1y');
    expect(bad[1]!.message).toContain('5x');
  });

  it('missing or non-timestamp event-time field', () => {
    const missing = source({ name: 'missing', topic: 'missing', schema, eventTimeField: 'when' as never });
    const text = source({ name: 'text', topic: 'text', schema, eventTimeField: 'note' });
    const bool = source({ name: 'bool', topic: 'bool', schema, eventTimeField: 'flag' });
    const views = [missing, text, bool].map((s) => featureView({ name: `v_${s.name}`, source: s, entity: user, features: { n: { agg: 'count', window: '1h' } } }));
    const errors = errorsOf(views);
    expect(errors.map((e) => [e.code, e.definition])).toEqual([
      ['TM_DEF_EVENT_TIME', 'source missing'],
      ['TM_DEF_EVENT_TIME', 'source text'],
      ['TM_DEF_EVENT_TIME', 'source bool'],
    ]);
    expect(errors[0]!.message).toContain('when');
    expect(errors[0]!.hint).toContain('eventTime()');
  });

  it('reports every error of one input together, each naming its definition and feature', () => {
    const dupEntity = entity({ name: 'user', joinKeys: ['user'] });
    const badTime = source({ name: 'bad_time', topic: 'bad_time', schema, eventTimeField: 'note' });
    const input = {
      a: view('orders', {
        unknown: { agg: 'sum', field: 'nope', window: '1h' },
        text_sum: { agg: 'sum', field: 'note', window: '1h' },
        bad_hop: { agg: 'count', window: '1h', hop: '7m' },
        many: { agg: 'count', window: '7d', hop: '1m' },
        bad_dur: { agg: 'count', window: '5x' },
      }),
      b: featureView({ name: 'orders', source: badTime, entity: dupEntity, keys: { user: 'who' } as never, features: { n: { agg: 'count', window: '1h' } } }),
    };
    const errors = errorsOf(input);
    const codes = new Set(errors.map((e) => e.code));
    expect([...codes].sort()).toEqual(
      [
        'TM_DEF_UNKNOWN_FIELD',
        'TM_DEF_NON_NUMERIC_FIELD',
        'TM_DEF_HOP_NOT_DIVIDING',
        'TM_DEF_TOO_MANY_TILES',
        'TM_DEF_BAD_DURATION',
        'TM_DEF_DUPLICATE_NAME',
        'TM_DEF_MISSING_KEY_FIELD',
        'TM_DEF_EVENT_TIME',
      ].sort(),
    );
    const featureErrors = errors.filter((e) => e.feature !== undefined);
    expect(featureErrors.map((e) => [e.code, e.definition, e.feature])).toEqual([
      ['TM_DEF_UNKNOWN_FIELD', 'featureView orders', 'unknown'],
      ['TM_DEF_NON_NUMERIC_FIELD', 'featureView orders', 'text_sum'],
      ['TM_DEF_HOP_NOT_DIVIDING', 'featureView orders', 'bad_hop'],
      ['TM_DEF_TOO_MANY_TILES', 'featureView orders', 'many'],
      ['TM_DEF_BAD_DURATION', 'featureView orders', 'bad_dur'],
    ]);
    for (const e of errors) {
      expect(e.message.length).toBeGreaterThan(0);
      expect(e.hint.length).toBeGreaterThan(0);
      expect(e.definition).toMatch(/^(entity|source|featureView) \w+$/);
    }

    // compileOrThrow carries the same errors, and its message formats each of them
    let thrown: unknown;
    try {
      compileOrThrow(input);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(DefinitionErrors);
    expect((thrown as DefinitionErrors).errors).toEqual(errors);
    for (const e of errors) expect((thrown as DefinitionErrors).message).toContain(formatDefinitionError(e));
  });

  it('formatDefinitionError prints code, definition, feature and the fix', () => {
    const withFeature: DefinitionError = { code: 'TM_DEF_UNKNOWN_FIELD', definition: 'featureView v', feature: 'f', message: 'field "x" is not in the schema', hint: 'use one of: a, b' };
    expect(formatDefinitionError(withFeature)).toBe('TM_DEF_UNKNOWN_FIELD featureView v, feature f: field "x" is not in the schema\n    fix: use one of: a, b');
    const { feature: _ignored, ...withoutFeature } = withFeature;
    expect(formatDefinitionError(withoutFeature)).toBe('TM_DEF_UNKNOWN_FIELD featureView v: field "x" is not in the schema\n    fix: use one of: a, b');
  });

  it('bad names, malformed features and an empty module have their own codes', () => {
    const errors = errorsOf([
      view('bad-name', { n: { agg: 'count', window: '1h' } }),
      view('v', {
        a__b: { agg: 'count', window: '1h' },
        no_field: { agg: 'sum', window: '1h' },
        no_window: { agg: 'mean', field: 'amount' },
        ttl_on_count: { agg: 'count', window: '1h', ttl: '1h' },
        ttl_and_window: { agg: 'last', field: 'note', window: '1h', ttl: '1h' },
        median: { agg: 'median', field: 'amount', window: '1h' },
      }),
    ]);
    // deduplicated: a feature may carry more than one error of a code
    const seen = [...new Set(errors.map((e) => JSON.stringify([e.code, e.definition, e.feature ?? null])))].map((x) => JSON.parse(x) as unknown);
    expect(seen).toEqual([
      ['TM_DEF_BAD_NAME', 'featureView bad-name', null],
      ['TM_DEF_BAD_NAME', 'featureView v', 'a__b'],
      ['TM_DEF_BAD_FEATURE', 'featureView v', 'no_field'],
      ['TM_DEF_BAD_FEATURE', 'featureView v', 'no_window'],
      ['TM_DEF_BAD_FEATURE', 'featureView v', 'ttl_on_count'],
      ['TM_DEF_BAD_FEATURE', 'featureView v', 'ttl_and_window'],
      ['TM_DEF_BAD_FEATURE', 'featureView v', 'median'],
    ]);
    expect(errorsOf({}).map((e) => e.code)).toEqual(['TM_DEF_EMPTY']);
    expect(errorsOf([user, payments]).map((e) => e.code)).toEqual(['TM_DEF_EMPTY']);
  });

  // BUG (definitions/compile.ts, compileView): the "a windowed last takes no ttl" check does not
  // look at agg, so a windowed count with a ttl gets that (wrong) message as a second error.
  it('a windowed count with a ttl is told that ttl applies only to last, and nothing about a last', () => {
    const errors = errorsOf([view('v', { n: { agg: 'count', window: '1h', ttl: '1h' } })]);
    expect(errors.map((e) => e.message)).toEqual(['ttl applies only to last']);
  });

  it('compiles the same errors in the same order twice', () => {
    const input = [view('v', { a: { agg: 'sum', field: 'nope', window: '1h' }, b: { agg: 'count', window: '1h', hop: '7m' } })];
    expect(errorsOf(input)).toEqual(errorsOf(input));
  });
});

describe('compile: registry', () => {
  it('round-trips through JSON', () => {
    const { registry } = compileOrThrow(flights);
    expect(JSON.parse(JSON.stringify(registry))).toStrictEqual(registry);
  });

  it('has a version stable across compiles that changes with a window', () => {
    const make = (window: '1h' | '2h') => [view('v', { n: { agg: 'count', window }, s: { agg: 'sum', field: 'amount', window: '1d' } })];
    const v1 = compileOrThrow(make('1h')).registry.version;
    const v2 = compileOrThrow(make('1h')).registry.version;
    const v3 = compileOrThrow(make('2h')).registry.version;
    expect(v1).toMatch(/^[0-9a-f]{16}$/);
    expect(v2).toBe(v1);
    expect(v3).not.toBe(v1);
    expect(compileOrThrow(flights).registry.version).toBe(compileOrThrow(flights).registry.version);
  });

  it('picks default hops: 5m under 12h, 1h under 12d, 1d otherwise', () => {
    const h = 3_600_000;
    const d = 86_400_000;
    expect(defaultHopMs(1 * h)).toBe(300_000);
    expect(defaultHopMs(12 * h - 1)).toBe(300_000);
    expect(defaultHopMs(12 * h)).toBe(h);
    expect(defaultHopMs(12 * d - 1)).toBe(h);
    expect(defaultHopMs(12 * d)).toBe(d);
    expect(defaultHopMs(30 * d)).toBe(d);
    const { registry } = compileOrThrow([
      view('v', {
        w1h: { agg: 'count', window: '1h' },
        w11h: { agg: 'count', window: '11h' },
        w12h: { agg: 'count', window: '12h' },
        w11d: { agg: 'count', window: '11d' },
        w12d: { agg: 'count', window: '12d' },
        w30d: { agg: 'count', window: '30d' },
      }),
    ]);
    const hops = Object.fromEntries(registry.views[0]!.features.map((f) => [f.name, f.hopMs]));
    expect(hops).toEqual({ w1h: 300_000, w11h: 300_000, w12h: h, w11d: h, w12d: d, w30d: d });
  });

  it('plans the tiles of the flights example', () => {
    const { registry } = compileOrThrow(flights);
    expect(registry.views.map((v) => v.name).sort()).toEqual(['dest_delays', 'origin_delays', 'route_delays']);
    const origin = viewPlan(registry, 'origin_delays')!;
    expect(origin.joinKeys).toEqual(['airport']);
    expect(origin.keyFields).toEqual(['origin']);
    expect(origin.groups.map((g) => g.hopMs)).toEqual([300_000, 3_600_000, LATEST_GROUP_HOP_MS]);
    expect(LATEST_GROUP_HOP_MS).toBe(0);
    const byName = Object.fromEntries(origin.features.map((f) => [f.name, f]));
    expect(byName['flights_1h']).toMatchObject({ agg: 'count', field: null, windowMs: 3_600_000, hopMs: 300_000, tilesPerWindow: 12 });
    expect(byName['delay_mean_1h']).toMatchObject({ windowMs: 3_600_000, hopMs: 300_000, tilesPerWindow: 12 });
    expect(byName['delay_mean_1d']).toMatchObject({ windowMs: 86_400_000, hopMs: 3_600_000, tilesPerWindow: 24 });
    expect(byName['delay_max_1d']).toMatchObject({ tilesPerWindow: 24 });
    expect(byName['distance_sum_1d']).toMatchObject({ tilesPerWindow: 24 });
    expect(byName['delay_stddev_7d']).toMatchObject({ windowMs: 604_800_000, hopMs: 3_600_000, tilesPerWindow: 168 });
    expect(byName['last_delay']).toMatchObject({ agg: 'last', windowMs: null, ttlMs: null, tilesPerWindow: null });
    expect(byName['last_delay']!.latestSlot).not.toBeNull();
    expect(origin.groups[0]!.features).toEqual(['flights_1h', 'delay_mean_1h']);
    expect(origin.groups[2]!.features).toEqual(['last_delay']);
    // every feature lands in the group of its hop, and slots do not overlap
    for (const g of origin.groups.filter((g) => g.hopMs !== LATEST_GROUP_HOP_MS)) {
      for (const name of g.features) expect(byName[name]!.hopMs).toBe(g.hopMs);
    }
    const route = viewPlan(registry, 'route_delays')!;
    expect(route.joinKeys).toEqual(['origin', 'destination']);
    expect(route.keyFields).toEqual(['origin', 'destination']);
    expect(route.features.map((f) => f.tilesPerWindow)).toEqual([168, 168]);
    expect(route.groups.map((g) => g.hopMs)).toEqual([3_600_000]);
    const flightsSource = registry.sources.find((s) => s.name === 'flights')!;
    expect(flightsSource.views.sort()).toEqual(['dest_delays', 'origin_delays', 'route_delays']);
    expect(flightsSource.fields['date']).toEqual({ kind: 'timestamp', nullable: false });
    expect(flightsSource.deadLetter).toBe('flights.dlq');
  });

  it('keeps retention at least window + hop + allowed lateness', () => {
    const { registry } = compileOrThrow([view('v', { n: { agg: 'count', window: '1h' }, l: { agg: 'last', field: 'note', ttl: '2h' } }, { allowedLateness: '30m' })]);
    const plan = registry.views[0]!;
    expect(plan.allowedLatenessMs).toBe(1_800_000);
    for (const f of plan.features) {
      const group = plan.groups.find((g) => g.hopMs === f.hopMs)!;
      expect(group.retentionMs).toBeGreaterThanOrEqual((f.windowMs ?? f.ttlMs ?? 0) + f.hopMs + plan.allowedLatenessMs);
      expect(plan.retentionMs).toBeGreaterThanOrEqual(group.retentionMs!);
    }
  });
});
