// The definitions DSL: entity, source and featureView are plain factory functions whose generic
// parameters carry the event type, so the editor rejects a feature over an unknown or
// non-numeric field; the compiler checks the same rules again at run time.
import type { z } from 'zod';
import type { Duration } from './duration.js';
import type { MonitorDefinition } from './monitor.js';
import { AGGREGATION_SPECS } from './aggregations/index.js';

export const AGGREGATIONS = ['count', 'sum', 'mean', 'min', 'max', 'var', 'stddev', 'last', 'first', 'approx_percentile'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];
/** Aggregations whose field must be numeric (their specs' field rule). */
export const NUMERIC_AGGREGATIONS: readonly Aggregation[] = AGGREGATIONS.filter((a) => AGGREGATION_SPECS[a].field === 'numeric');

export interface EntityDefinition<K extends readonly string[] = readonly string[]> {
  readonly kind: 'entity';
  readonly name: string;
  readonly joinKeys: K;
  readonly description?: string;
}

/** An entity: what features describe, identified by one or more join keys in a declared order. */
export function entity<const K extends readonly [string, ...string[]]>(def: {
  name: string;
  joinKeys: K;
  description?: string;
}): EntityDefinition<K> {
  return { kind: 'entity', ...def };
}

export type AnyObjectSchema = z.ZodType<Record<string, unknown>>;

export interface SourceDefinition<S extends AnyObjectSchema = AnyObjectSchema> {
  readonly kind: 'source';
  readonly name: string;
  /** Kafka topic the events arrive on (also the in-process log's name in embedded mode). */
  readonly topic: string;
  /** zod schema of one event; its output is what features read. */
  readonly schema: S;
  /** The field holding event time; its schema must output integer epoch ms (use `eventTime()`). */
  readonly eventTimeField: keyof z.output<S> & string;
  /** Where bad events go; default `<topic>.dlq`. */
  readonly deadLetter?: string;
  /** Events further in the future than this (against wall time) are bad events; default 5m. */
  readonly allowedFutureSkew?: Duration;
  readonly description?: string;
}

/** An event source: a topic of JSON events validated by a zod schema. */
export function source<S extends AnyObjectSchema>(def: {
  name: string;
  topic: string;
  schema: S;
  eventTimeField: keyof z.output<S> & string;
  deadLetter?: string;
  allowedFutureSkew?: Duration;
  description?: string;
}): SourceDefinition<S> {
  return { kind: 'source', ...def };
}

type Fields<T> = keyof T & string;
/** Fields whose output type is a number (possibly null or optional). */
export type NumericFields<T> = {
  [K in Fields<T>]-?: [NonNullable<T[K]>] extends [never] ? never : NonNullable<T[K]> extends number ? K : never;
}[Fields<T>];

/** One feature of a view; `field` is checked against the source's event type. */
export type FeatureSpec<T> =
  | { agg: 'count'; field?: Fields<T>; window: Duration; hop?: Duration; description?: string }
  | {
      agg: 'sum' | 'mean' | 'min' | 'max' | 'var' | 'stddev';
      field: NumericFields<T>;
      window: Duration;
      hop?: Duration;
      description?: string;
    }
  | { agg: 'last'; field: Fields<T>; window?: Duration; hop?: Duration; ttl?: Duration; description?: string }
  | { agg: 'first'; field: Fields<T>; window: Duration; hop?: Duration; description?: string }
  /** The value at `quantile` (0 to 1: 0.5 the median, 0.99 p99) within 2^-7 relative error (docs/semantics.md). */
  | { agg: 'approx_percentile'; field: NumericFields<T>; window: Duration; hop?: Duration; quantile: number; description?: string };

export interface FeatureViewDefinition<
  S extends AnyObjectSchema = AnyObjectSchema,
  E extends EntityDefinition = EntityDefinition,
  F extends Record<string, FeatureSpec<z.output<S>>> = Record<string, FeatureSpec<z.output<S>>>,
> {
  readonly kind: 'featureView';
  readonly name: string;
  readonly source: SourceDefinition<S>;
  readonly entity: E;
  /** Event field of each join key; a join key defaults to the field of the same name. */
  readonly keys?: Partial<Record<E['joinKeys'][number], Fields<z.output<S>>>>;
  readonly features: F;
  /** How late an event may arrive and still update online tiles; default 1d. */
  readonly allowedLateness?: Duration;
  readonly description?: string;
}

/** A feature view: windowed aggregations of one source, keyed by one entity. */
export function featureView<
  S extends AnyObjectSchema,
  E extends EntityDefinition,
  const F extends Record<string, FeatureSpec<z.output<S>>>,
>(def: {
  name: string;
  source: SourceDefinition<S>;
  entity: E;
  keys?: Partial<Record<E['joinKeys'][number], Fields<z.output<S>>>>;
  features: F;
  allowedLateness?: Duration;
  description?: string;
}): FeatureViewDefinition<S, E, F> {
  return { kind: 'featureView', ...def };
}

/** Names of definitions, features, slices and SLOs: a letter, then letters, digits and underscores. */
export const NAME_RE = /^[A-Za-z][A-Za-z0-9_]*$/;

/** A definition or feature name: NAME_RE without `__`, which joins view and feature in column names. */
export function isDefinitionName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name) && !name.includes('__');
}

export type AnyDefinition = EntityDefinition | SourceDefinition | FeatureViewDefinition | MonitorDefinition;

export function isDefinition(value: unknown): value is AnyDefinition {
  if (typeof value !== 'object' || value === null) return false;
  const kind = (value as { kind?: unknown }).kind;
  return kind === 'entity' || kind === 'source' || kind === 'featureView' || kind === 'monitor';
}
