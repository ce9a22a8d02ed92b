// Monitor definitions: the compiler checks them like every other definition (all errors at once,
// each with a code, where, and a fix), and the type checker rejects unknown fields.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compile, compileOrThrow, eventTime, featureView, monitor, source } from '../../definitions/index.js';
import * as flights from '../../examples/flights/definitions.js';
import * as flightsMonitor from '../../examples/flights/monitor.js';

const base = {
  name: 'm',
  source: flights.flights,
  features: ['delay'] as const,
  reference: { from: '2001-01-01T00:00:00Z', to: '2001-02-01T00:00:00Z' },
};

function errorsOf(m: unknown): { code: string; definition: string; feature?: string; message: string; hint: string }[] {
  const result = compile({ ...flights, m });
  return result.ok ? [] : result.errors;
}

describe('monitor definitions', () => {
  it('compiles the flights monitor into a plan with a version outside the registry', () => {
    const compiled = compileOrThrow(flightsMonitor);
    const plan = compiled.monitors[0]!;
    expect(plan.name).toBe('flight_delays');
    expect(plan.features.map((f) => `${f.from}:${f.kind}`)).toContain('view:numeric');
    expect(plan.features.find((f) => f.name === 'destination')!.kind).toBe('categorical');
    expect(plan.intervalMs).toBe(7 * 86_400_000);
    expect(plan.slos.map((s) => s.name)).toEqual(['delay_distribution', 'model_auc', 'freshness']);
    expect(plan.slos[2]!.max).toBe(3_600_000);
    // Adding a monitor does not change the stores' layout version.
    const { flightDelays: _monitor, ...withoutMonitor } = flightsMonitor;
    expect(compiled.registry.version).toBe(compileOrThrow(withoutMonitor).registry.version);
    expect(plan.version).toMatch(/^[0-9a-f]{16}$/);
  });

  it('refuses a windowed last or first view feature, whose samples tiles alone cannot give', () => {
    const picks = featureView({
      name: 'picks',
      source: flights.flights,
      entity: flights.airport,
      keys: { airport: 'origin' },
      features: { last_delay_1d: { agg: 'last', field: 'delay', window: '1d' }, first_delay_1d: { agg: 'first', field: 'delay', window: '1d' } },
    });
    const result = compile({ ...flights, picks, m: monitor({ ...base, features: ['delay', 'picks:last_delay_1d', 'picks:first_delay_1d'] }) });
    const errors = result.ok ? [] : result.errors;
    expect(errors.map((e) => [e.code, e.feature])).toEqual([
      ['TM_DEF_BAD_MONITOR', 'picks:last_delay_1d'],
      ['TM_DEF_BAD_MONITOR', 'picks:first_delay_1d'],
    ]);
    expect(errors[0]!.hint).toContain('"delay"');
  });

  it('reports every problem at once, each with a code and a fix', () => {
    const errors = errorsOf(
      monitor({
        ...base,
        // @ts-expect-error the compiler must catch what the type checker would
        features: ['delay', 'no_such_field', 'origin_delays:nope', 'route_delays:delay_mean_7d', 'date'],
        slices: { band: { field: 'distance', bands: [500, 100] } },
        interval: '1h',
        windows: ['90m'],
        slos: {
          auc: { indicator: 'auc', min: 0.7, objective: 0.9 },
          psi: { indicator: 'psi', feature: 'delay', objective: 1.5 },
          fast: { indicator: 'drift', objective: 0.9 },
        },
      }),
    );
    const codes = errors.map((e) => e.code);
    expect(codes).toEqual(
      expect.arrayContaining(['TM_DEF_UNKNOWN_FIELD', 'TM_DEF_BAD_FEATURE', 'TM_DEF_SLICE_NOT_KEY', 'TM_DEF_BAD_MONITOR', 'TM_DEF_HOP_NOT_DIVIDING']),
    );
    const where = (text: string) => errors.find((e) => e.message.includes(text));
    expect(where('no_such_field')!.hint).toContain('delay');
    expect(where('bands must be')).toBeDefined();
    expect(where('auc needs labels')).toBeDefined();
    expect(where('objective 1.5')).toBeDefined();
    expect(where('psi needs max')).toBeDefined();
    // The default policy's 5m short window is shorter than an hourly interval.
    expect(where('shorter than the evaluation interval')!.hint).toContain('policy');
    for (const e of errors) expect(e.definition.startsWith('monitor m')).toBe(true);
  });

  it('checks labels against the prediction and label sources', () => {
    const predictions = source({ name: 'preds', topic: 'preds', schema: z.object({ id: z.string(), t: eventTime(), score: z.string() }), eventTimeField: 't' });
    const labels = source({ name: 'labs', topic: 'labs', schema: z.object({ id: z.string(), t: eventTime(), y: z.number() }), eventTimeField: 't' });
    const errors = errorsOf(
      monitor({
        ...base,
        slices: { origin: { field: 'origin' } },
        interval: '5m',
        labels: { predictions, labels, predictionId: 'id', labelId: 'id', score: 'score', label: 'y', kind: 'binary', labelDelay: '1h' },
        slos: { mae: { indicator: 'mae', max: 3, objective: 0.9 } },
      }),
    );
    expect(errors.map((e) => e.message)).toEqual(
      expect.arrayContaining([expect.stringContaining('score "score" is string'), expect.stringContaining('predictions source preds lacks'), expect.stringContaining('mae is not a binary metric')]),
    );
  });

  it('types: features and slices must be fields of the source', () => {
    monitor({
      ...base,
      // @ts-expect-error 'nope' is not a field of flights
      slices: { x: { field: 'nope' } },
    });
    monitor({
      ...base,
      // @ts-expect-error neither a field of flights nor view:feature
      features: ['nope'],
    });
    expect(true).toBe(true);
  });
});
