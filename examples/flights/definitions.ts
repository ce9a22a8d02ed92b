// Feature definitions over the vega-datasets flights data (3 million US flights, Jan-Jun 2001).
// These names are public: serving code and training jobs refer to them.
import { z } from 'zod';
import { entity, eventTime, featureView, source } from '../../definitions/index.js';

export const airport = entity({ name: 'airport', joinKeys: ['airport'], description: 'A US airport by IATA code' });
export const route = entity({ name: 'route', joinKeys: ['origin', 'destination'], description: 'An origin-destination pair' });

export const flights = source({
  name: 'flights',
  topic: 'flights',
  schema: z.object({
    /** Departure time: epoch ms or ISO-8601 text in UTC. */
    date: eventTime(),
    /** Departure delay in minutes (negative: early). */
    delay: z.number(),
    /** Miles. */
    distance: z.number(),
    origin: z.string().min(1),
    destination: z.string().min(1),
  }),
  eventTimeField: 'date',
});

export const originDelays = featureView({
  name: 'origin_delays',
  source: flights,
  entity: airport,
  keys: { airport: 'origin' },
  features: {
    flights_1h: { agg: 'count', window: '1h' },
    delay_mean_1h: { agg: 'mean', field: 'delay', window: '1h' },
    delay_mean_1d: { agg: 'mean', field: 'delay', window: '1d' },
    delay_max_1d: { agg: 'max', field: 'delay', window: '1d' },
    delay_stddev_7d: { agg: 'stddev', field: 'delay', window: '7d' },
    distance_sum_1d: { agg: 'sum', field: 'distance', window: '1d' },
    last_delay: { agg: 'last', field: 'delay' },
  },
});

export const routeDelays = featureView({
  name: 'route_delays',
  source: flights,
  entity: route,
  features: {
    flights_7d: { agg: 'count', window: '7d' },
    delay_mean_7d: { agg: 'mean', field: 'delay', window: '7d' },
  },
});

export const destDelays = featureView({
  name: 'dest_delays',
  source: flights,
  entity: airport,
  keys: { airport: 'destination' },
  features: {
    delay_mean_1d: { agg: 'mean', field: 'delay', window: '1d' },
  },
});
