// The flights definitions plus a drift and quality monitor over them: a delay model's predictions
// and labels as two more sources, and the monitor with its SLOs. Kept apart from definitions.ts so
// the stream path (whose materializer reads every source's topic) is unchanged by them.
import { z } from 'zod';
import { eventTime, monitor, source } from '../../definitions/index.js';
import { flights } from './definitions.js';

export * from './definitions.js';

/** Scores of a model that predicts, before departure, whether a flight leaves 15+ minutes late. */
export const delayPredictions = source({
  name: 'delay_predictions',
  topic: 'delay_predictions',
  schema: z.object({
    prediction_id: z.string().min(1),
    /** When the prediction was made. */
    date: eventTime(),
    origin: z.string().min(1),
    destination: z.string().min(1),
    distance: z.number(),
    /** Probability of a departure delay of 15 minutes or more. */
    score: z.number().min(0).max(1),
  }),
  eventTimeField: 'date',
});

/** What happened: 1 when the flight left 15+ minutes late; arrives at departure, after its prediction. */
export const delayLabels = source({
  name: 'delay_labels',
  topic: 'delay_labels',
  schema: z.object({
    prediction_id: z.string().min(1),
    date: eventTime(),
    delayed: z.number().int().min(0).max(1),
  }),
  eventTimeField: 'date',
});

/**
 * Drift of flight delays per origin airport against January 2001, evaluated weekly over the last
 * week and the last four weeks, and the delay model's quality once its labels are in.
 */
export const flightDelays = monitor({
  name: 'flight_delays',
  source: flights,
  features: [
    'delay',
    'distance',
    'destination',
    'origin_delays:flights_1h',
    'origin_delays:delay_mean_1h',
    'origin_delays:delay_mean_1d',
    'origin_delays:delay_max_1d',
    'origin_delays:delay_stddev_7d',
    'origin_delays:distance_sum_1d',
    'route_delays:delay_mean_7d',
  ],
  slices: { origin: { field: 'origin' } },
  reference: { from: '2001-01-01T00:00:00Z', to: '2001-02-01T00:00:00Z' },
  interval: '7d',
  windows: ['7d', '28d'],
  // Shifts smaller than PSI 0.1 are not worth a page here, however significant on a big airport.
  drift: { psiFloor: 0.1 },
  labels: {
    predictions: delayPredictions,
    labels: delayLabels,
    predictionId: 'prediction_id',
    labelId: 'prediction_id',
    score: 'score',
    label: 'delayed',
    kind: 'binary',
    threshold: 0.5,
    labelDelay: '1d',
  },
  slos: {
    // Weekly evaluations, so the policy's windows are weeks: page when the last 3 weeks and the
    // last week both burn the budget more than 4.5x (all 3 drifted); ticket when more than 40% of
    // the last 4 weeks and of the last 2 drifted.
    delay_distribution: {
      indicator: 'drift',
      feature: 'delay',
      objective: 0.8,
      window: '7d',
      policy: [
        { severity: 'page', long: '21d', short: '7d', burnRate: 4.5 },
        { severity: 'ticket', long: '28d', short: '14d', burnRate: 2 },
      ],
    },
    model_auc: {
      indicator: 'auc',
      min: 0.6,
      objective: 0.9,
      window: '7d',
      policy: [
        { severity: 'page', long: '21d', short: '7d', burnRate: 9 },
        { severity: 'ticket', long: '28d', short: '14d', burnRate: 3 },
      ],
    },
    freshness: {
      indicator: 'freshness',
      max: '1h',
      objective: 0.99,
      window: '7d',
      policy: [{ severity: 'page', long: '14d', short: '7d', burnRate: 50 }],
    },
  },
});
