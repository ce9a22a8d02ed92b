// Bench-only definitions: the flights of examples/flights with a float field, `delay_h`, the
// departure delay in hours (delay / 60, a double that is not an integer for most flights), and a
// mean of it in each of the two views the offline bench times, so the point-in-time datasets are
// measured on float data too (where a difference of prefix sums of doubles is not exact). The file
// with the field is written by the bench (bench/duckdb-worker.ts, mode `float-flights`) from
// flights-3m.parquet; everything else is examples/flights' definitions.
import { z } from 'zod';
import { eventTime, featureView, source } from '../definitions/index.js';
import { airport, destDelays, originDelays, route, routeDelays } from '../examples/flights/definitions.js';

export { airport, route };

export const flights = source({
  name: 'flights',
  topic: 'flights',
  schema: z.object({
    date: eventTime(),
    delay: z.number(),
    /** Departure delay in hours: delay / 60. */
    delay_h: z.number(),
    distance: z.number(),
    origin: z.string().min(1),
    destination: z.string().min(1),
  }),
  eventTimeField: 'date',
});

export const origin_delays = featureView({
  name: 'origin_delays',
  source: flights,
  entity: airport,
  keys: { airport: 'origin' },
  features: { ...originDelays.features, delay_h_mean_1d: { agg: 'mean', field: 'delay_h', window: '1d' } },
});

export const route_delays = featureView({
  name: 'route_delays',
  source: flights,
  entity: route,
  features: { ...routeDelays.features, delay_h_mean_7d: { agg: 'mean', field: 'delay_h', window: '7d' } },
});

export const dest_delays = featureView({ name: 'dest_delays', source: flights, entity: airport, keys: { airport: 'destination' }, features: { ...destDelays.features } });
