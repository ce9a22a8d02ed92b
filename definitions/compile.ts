// The compiler: definitions in, a validated JSON-serialisable registry out (with a content hash as
// its version and the per-view tile plans), or every definition error at once.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { SLOT_WIDTH, valueWidth } from './aggregates.js';
import { AGGREGATION_SPECS } from './aggregations/index.js';
import {
  AGGREGATIONS,
  isDefinition,
  isDefinitionName,
  type Aggregation,
  type AnyDefinition,
  type EntityDefinition,
  type FeatureViewDefinition,
  type SourceDefinition,
} from './dsl.js';
import { formatDurationMs, parseDurationMs } from './duration.js';
import { compileMonitor, type MonitorDefinition, type MonitorPlan } from './monitor.js';
import { DefinitionErrors, type DefinitionError, type ErrorCode } from './errors.js';
import { describeField, objectShape, type FieldInfo } from './schema.js';

export const MAX_TILES_PER_WINDOW = 10_000;
const DEFAULT_ALLOWED_LATENESS_MS = 86_400_000;
const DEFAULT_FUTURE_SKEW_MS = 300_000;
/** Hop of the history tiles of a `last` without window and without ttl. */
const DEFAULT_LATEST_HOP_MS = 3_600_000;
/** Tile group of the all-time latest cell of each `last` without window. */
export const LATEST_GROUP_HOP_MS = 0;

export interface EntityPlan {
  name: string;
  joinKeys: string[];
}

export interface SourcePlan {
  name: string;
  topic: string;
  eventTimeField: string;
  deadLetter: string;
  allowedFutureSkewMs: number;
  fields: Record<string, FieldInfo>;
  /** JSON Schema of the accepted input (for documentation and the registry hash). */
  jsonSchema: unknown;
  views: string[];
}

export interface FeaturePlan {
  name: string;
  agg: Aggregation;
  field: string | null;
  /** null for a `last` without window */
  windowMs: number | null;
  hopMs: number;
  ttlMs: number | null;
  tilesPerWindow: number | null;
  /** Offset of this feature's numeric slots in the tiles of its hop group. */
  slot: number;
  /** Offset of its value slot (a `last`'s value) in the tiles of its hop group, else null. */
  valueSlot: number | null;
  /** Offsets in the latest cell (hop group 0), for a `last` without window. */
  latestSlot: number | null;
  latestValueSlot: number | null;
  valueKind: FieldInfo['kind'];
  /** approx_percentile's quantile in [0, 1]; absent for every other aggregation (so their registry hashes stay as they were). */
  quantile?: number;
}

export interface TileGroupPlan {
  /** Tile size; 0 is the all-time latest cell. */
  hopMs: number;
  /** Numeric slots per tile. */
  width: number;
  /** Value slots per tile (one per `last`). */
  valueWidth: number;
  /** Tiles older than the watermark minus this are trimmed (null: never). */
  retentionMs: number | null;
  /** Features with slots in this group, in slot order. */
  features: string[];
  /**
   * Rollup levels: spans in tiles (ascending, each dividing the next) of coarser tiles that hold
   * the merge of `span` aligned tiles, kept beside them so a long window is read from a handful of
   * tiles (windowBlocks in tiles.ts). Empty when the group's windows are short enough.
   */
  rollups: number[];
}

export interface ViewPlan {
  name: string;
  source: string;
  entity: string;
  joinKeys: string[];
  /** Event field read for each join key, in join-key order. */
  keyFields: string[];
  features: FeaturePlan[];
  groups: TileGroupPlan[];
  allowedLatenessMs: number;
  /** Largest group retention: reads before watermark minus this are refused. */
  retentionMs: number;
}

export interface Registry {
  version: string;
  entities: EntityPlan[];
  sources: SourcePlan[];
  views: ViewPlan[];
}

/** The registry plus what cannot be JSON: the zod schema of each source. */
export interface CompiledDefinitions {
  registry: Registry;
  schemas: ReadonlyMap<string, z.ZodType>;
  /** Monitor plans; kept out of the registry so adding a monitor never changes the stores' layout version. */
  monitors: MonitorPlan[];
}

export type CompileResult = { ok: true; compiled: CompiledDefinitions } | { ok: false; errors: DefinitionError[] };


/** Default hop of a window (Chronon's resolution): 5m under 12h, 1h under 12d, else 1d. */
export function defaultHopMs(windowMs: number): number {
  if (windowMs < 12 * 3_600_000) return 300_000;
  if (windowMs < 12 * 86_400_000) return 3_600_000;
  return 86_400_000;
}

/** Collect definitions from a module namespace, an object of them, or (nested) arrays. */
export function collectDefinitions(input: unknown): AnyDefinition[] {
  const out: AnyDefinition[] = [];
  const seen = new Set<unknown>();
  const visit = (value: unknown, depth: number): void => {
    if (seen.has(value) || depth > 3) return;
    if (isDefinition(value)) {
      seen.add(value);
      out.push(value);
      if (value.kind === 'featureView') {
        visit(value.source, depth);
        visit(value.entity, depth);
      }
      if (value.kind === 'monitor') {
        visit(value.source, depth);
        visit(value.labels?.predictions, depth);
        visit(value.labels?.labels, depth);
      }
      return;
    }
    if (Array.isArray(value)) {
      seen.add(value);
      for (const v of value) visit(v, depth + 1);
    } else if (typeof value === 'object' && value !== null) {
      seen.add(value);
      for (const v of Object.values(value)) visit(v, depth + 1);
    }
  };
  visit(input, 0);
  return out;
}

export function compile(input: unknown): CompileResult {
  const errors: DefinitionError[] = [];
  const err = (code: ErrorCode, definition: string, message: string, hint: string, feature?: string): void => {
    errors.push(feature === undefined ? { code, definition, message, hint } : { code, definition, feature, message, hint });
  };
  const defs = collectDefinitions(input);
  const entities = defs.filter((d): d is EntityDefinition => d.kind === 'entity');
  const sources = defs.filter((d): d is SourceDefinition => d.kind === 'source');
  const views = defs.filter((d): d is FeatureViewDefinition => d.kind === 'featureView');
  const monitors = defs.filter((d): d is MonitorDefinition => d.kind === 'monitor');
  if (views.length === 0) {
    err('TM_DEF_EMPTY', 'definitions', 'no featureView found', 'export at least one featureView(...) from the definitions module');
  }

  const checkNames = (kind: string, items: readonly { name: string }[]): void => {
    const byName = new Map<string, number>();
    for (const item of items) {
      if (!isDefinitionName(item.name)) {
        err('TM_DEF_BAD_NAME', `${kind} ${String(item.name)}`, 'names must start with a letter, hold only letters, digits and single underscores', 'rename it, e.g. origin_delays');
      }
      byName.set(item.name, (byName.get(item.name) ?? 0) + 1);
    }
    for (const [name, count] of byName) {
      if (count > 1) err('TM_DEF_DUPLICATE_NAME', `${kind} ${name}`, `${count} ${kind} definitions are named ${name}`, `give each ${kind} a unique name`);
    }
  };
  checkNames('entity', entities);
  checkNames('source', sources);
  checkNames('featureView', views);
  checkNames('monitor', monitors);

  const duration = (text: unknown, definition: string, what: string, feature?: string): number | null => {
    const ms = typeof text === 'string' ? parseDurationMs(text) : null;
    if (ms === null) {
      err('TM_DEF_BAD_DURATION', definition, `${what} ${JSON.stringify(text)} is not a duration`, 'write a positive whole number and a unit: 500ms, 30s, 5m, 1h, 1d, 7d', feature);
    }
    return ms;
  };

  const entityPlans: EntityPlan[] = entities.map((e) => {
    if (!Array.isArray(e.joinKeys) || e.joinKeys.length === 0) {
      err('TM_DEF_MISSING_KEY_FIELD', `entity ${e.name}`, 'an entity needs at least one join key', "declare joinKeys: ['id']");
    }
    return { name: e.name, joinKeys: [...e.joinKeys] };
  });

  const schemas = new Map<string, z.ZodType>();
  const sourcePlans: SourcePlan[] = sources.map((s) => {
    const where = `source ${s.name}`;
    const shape = objectShape(s.schema as z.ZodType);
    const fields: Record<string, FieldInfo> = {};
    if (!shape) {
      err('TM_DEF_EVENT_TIME', where, 'schema must be a z.object(...)', 'describe one event as z.object({ ... })');
    } else {
      for (const [name, fieldSchema] of Object.entries(shape)) fields[name] = describeField(fieldSchema);
      const timeField = fields[s.eventTimeField];
      if (!timeField) {
        err('TM_DEF_EVENT_TIME', where, `event-time field "${s.eventTimeField}" is not in the schema`, `add ${s.eventTimeField}: eventTime() to the schema or name one of: ${Object.keys(fields).join(', ')}`);
      } else if (timeField.kind !== 'timestamp' && timeField.kind !== 'number') {
        err('TM_DEF_EVENT_TIME', where, `event-time field "${s.eventTimeField}" does not output epoch milliseconds`, `declare it as ${s.eventTimeField}: eventTime()`);
      }
    }
    if (typeof s.topic !== 'string' || s.topic.length === 0) {
      err('TM_DEF_BAD_NAME', where, 'topic is empty', "name the Kafka topic, e.g. topic: 'flights'");
    }
    const skew = s.allowedFutureSkew === undefined ? DEFAULT_FUTURE_SKEW_MS : duration(s.allowedFutureSkew, where, 'allowedFutureSkew');
    schemas.set(s.name, s.schema as z.ZodType);
    let jsonSchema: unknown = null;
    try {
      jsonSchema = z.toJSONSchema(s.schema as z.ZodType, { io: 'input', unrepresentable: 'any' });
    } catch {
      jsonSchema = null; // a schema JSON Schema cannot describe still compiles; it only goes undocumented
    }
    return {
      name: s.name,
      topic: s.topic,
      eventTimeField: s.eventTimeField,
      deadLetter: s.deadLetter ?? `${s.topic}.dlq`,
      allowedFutureSkewMs: skew ?? DEFAULT_FUTURE_SKEW_MS,
      fields,
      jsonSchema,
      views: views.filter((v) => v.source === s).map((v) => v.name),
    };
  });
  const topics = new Map<string, string>();
  for (const s of sourcePlans) {
    const other = topics.get(s.topic);
    if (other !== undefined) err('TM_DEF_DUPLICATE_NAME', `source ${s.name}`, `topic ${s.topic} is also read by source ${other}`, 'give each source its own topic');
    topics.set(s.topic, s.name);
  }

  const viewPlans = views.map((v) => compileView(v, sourcePlans.find((s) => s.name === v.source.name), err, duration));
  const monitorPlans = monitors.map((m) => compileMonitor(m, sourcePlans, viewPlans, err, duration, contentHash));

  if (errors.length > 0) return { ok: false, errors };
  const body = { entities: entityPlans, sources: sourcePlans, views: viewPlans };
  return { ok: true, compiled: { registry: { version: contentHash(body), ...body }, schemas, monitors: monitorPlans } };
}

export function compileOrThrow(input: unknown): CompiledDefinitions {
  const result = compile(input);
  if (!result.ok) throw new DefinitionErrors(result.errors);
  return result.compiled;
}

type ErrFn = (code: ErrorCode, definition: string, message: string, hint: string, feature?: string) => void;
type DurationFn = (text: unknown, definition: string, what: string, feature?: string) => number | null;

function compileView(v: FeatureViewDefinition, source: SourcePlan | undefined, err: ErrFn, duration: DurationFn): ViewPlan {
  const where = `featureView ${v.name}`;
  const fields = source?.fields ?? {};
  const fieldList = Object.keys(fields).join(', ');
  const joinKeys = [...(v.entity?.joinKeys ?? [])];
  const keyMap = (v.keys ?? {}) as Record<string, string | undefined>;
  for (const mapped of Object.keys(keyMap)) {
    if (!joinKeys.includes(mapped)) {
      err('TM_DEF_MISSING_KEY_FIELD', where, `keys names "${mapped}", which is not a join key of entity ${v.entity?.name}`, `use the entity's join keys: ${joinKeys.join(', ')}`);
    }
  }
  const keyFields = joinKeys.map((k) => keyMap[k] ?? k);
  keyFields.forEach((f, i) => {
    if (source && !(f in fields)) {
      err('TM_DEF_MISSING_KEY_FIELD', where, `join key ${joinKeys[i]} reads event field "${f}", which is not in the schema of source ${source.name}`, `map it to one of: ${fieldList} (keys: { ${joinKeys[i]}: '<field>' })`);
    }
  });
  const allowedLatenessMs = v.allowedLateness === undefined ? DEFAULT_ALLOWED_LATENESS_MS : (duration(v.allowedLateness, where, 'allowedLateness') ?? 0);

  const features: FeaturePlan[] = [];
  const featureEntries = Object.entries(v.features ?? {});
  if (featureEntries.length === 0) err('TM_DEF_BAD_FEATURE', where, 'a featureView needs at least one feature', "add features: { name: { agg: 'count', window: '1h' } }");
  for (const [name, spec] of featureEntries) {
    if (!isDefinitionName(name)) {
      err('TM_DEF_BAD_NAME', where, 'feature names must start with a letter, hold only letters, digits and single underscores', 'rename the feature', name);
    }
    const s = spec as { agg?: unknown; field?: unknown; window?: unknown; hop?: unknown; ttl?: unknown; quantile?: unknown };
    const agg = s.agg as Aggregation;
    if (!AGGREGATIONS.includes(agg)) {
      err('TM_DEF_BAD_FEATURE', where, `unknown aggregation ${JSON.stringify(s.agg)}`, `use one of: ${AGGREGATIONS.join(', ')}`, name);
      continue;
    }
    const field = s.field === undefined ? null : String(s.field);
    const fieldRule = AGGREGATION_SPECS[agg].field;
    if (field === null && fieldRule !== 'optional') err('TM_DEF_BAD_FEATURE', where, `${agg} needs a field`, `add field: '<one of ${fieldList}>'`, name);
    let valueKind: FieldInfo['kind'] = 'number';
    if (field !== null && source) {
      const info = fields[field];
      if (!info) {
        err('TM_DEF_UNKNOWN_FIELD', where, `field "${field}" is not in the schema of source ${source.name}`, `use one of: ${fieldList}`, name);
      } else {
        valueKind = info.kind;
        if (fieldRule === 'ordered' && (info.kind === 'other' || info.kind === 'timestamp')) {
          const ordered = Object.entries(fields).filter(([, i]) => i.kind === 'number' || i.kind === 'string' || i.kind === 'boolean').map(([f]) => f);
          err('TM_DEF_UNORDERED_FIELD', where, `${agg} needs a number, text or boolean field (its tie rule orders values), but "${field}" is ${info.kind === 'other' ? 'neither (a mixed union, array or object)' : 'the event time'}`, `use one of: ${ordered.join(', ')}`, name);
        }
        if (fieldRule === 'numeric' && info.kind !== 'number') {
          const numeric = Object.entries(fields).filter(([, i]) => i.kind === 'number').map(([f]) => f);
          err('TM_DEF_NON_NUMERIC_FIELD', where, `${agg} needs a numeric field, but "${field}" is ${info.kind}`, `use a numeric field (${numeric.join(', ') || 'none in this schema'}) or agg 'last'/'count'`, name);
        }
      }
    }
    const windowMs = s.window === undefined ? null : duration(s.window, where, 'window', name);
    if (s.window === undefined && agg !== 'last') err('TM_DEF_BAD_FEATURE', where, `${agg} needs a window`, "add window: '1h' (or use agg 'last' for a latest value)", name);
    if (s.ttl !== undefined && agg !== 'last') err('TM_DEF_BAD_FEATURE', where, 'ttl applies only to last', 'drop ttl, or use a window', name);
    if (s.ttl !== undefined && s.window !== undefined && agg === 'last') err('TM_DEF_BAD_FEATURE', where, 'a windowed last takes no ttl', 'drop ttl (the window bounds it) or drop window', name);
    const ttlMs = s.ttl === undefined ? null : duration(s.ttl, where, 'ttl', name);
    const takesQuantile = AGGREGATION_SPECS[agg].quantile === true;
    const quantile = typeof s.quantile === 'number' && s.quantile >= 0 && s.quantile <= 1 ? s.quantile : undefined;
    if (takesQuantile && quantile === undefined) {
      const what = s.quantile === undefined ? 'needs a quantile' : `quantile ${typeof s.quantile === 'number' ? String(s.quantile) : JSON.stringify(s.quantile)} is not a number from 0 to 1`;
      err('TM_DEF_BAD_QUANTILE', where, `${agg} ${what}`, 'name the quantile as a number from 0 to 1: quantile: 0.5 (median), 0.9, 0.99', name);
    }
    if (!takesQuantile && s.quantile !== undefined) err('TM_DEF_BAD_FEATURE', where, 'quantile applies only to approx_percentile', "drop quantile, or use agg 'approx_percentile'", name);
    let hopMs: number | null;
    if (s.hop !== undefined) hopMs = duration(s.hop, where, 'hop', name);
    else if (windowMs !== null) hopMs = defaultHopMs(windowMs);
    else hopMs = ttlMs !== null ? defaultHopMs(ttlMs) : DEFAULT_LATEST_HOP_MS;
    if (ttlMs !== null && hopMs !== null && ttlMs / hopMs > MAX_TILES_PER_WINDOW) {
      err('TM_DEF_TOO_MANY_TILES', where, `ttl ${formatDurationMs(ttlMs)} with hop ${formatDurationMs(hopMs)} spans ${Math.ceil(ttlMs / hopMs)} tiles (at most ${MAX_TILES_PER_WINDOW})`, `use a hop of at least ${formatDurationMs(Math.ceil(ttlMs / MAX_TILES_PER_WINDOW))}`, name);
    }
    let tilesPerWindow: number | null = null;
    if (windowMs !== null && hopMs !== null) {
      if (windowMs % hopMs !== 0) {
        err('TM_DEF_HOP_NOT_DIVIDING', where, `hop ${formatDurationMs(hopMs)} does not divide window ${formatDurationMs(windowMs)}`, `give an explicit hop that divides ${formatDurationMs(windowMs)}, e.g. hop: '${formatDurationMs(largestDividingHop(windowMs, hopMs))}'`, name);
      } else {
        tilesPerWindow = windowMs / hopMs;
        if (tilesPerWindow > MAX_TILES_PER_WINDOW) {
          err('TM_DEF_TOO_MANY_TILES', where, `window ${formatDurationMs(windowMs)} with hop ${formatDurationMs(hopMs)} needs ${tilesPerWindow} tiles (at most ${MAX_TILES_PER_WINDOW})`, `use a hop of at least ${formatDurationMs(Math.ceil(windowMs / MAX_TILES_PER_WINDOW))} that divides the window`, name);
        }
      }
    }
    const plan: FeaturePlan = { name, agg, field, windowMs, hopMs: hopMs ?? 1, ttlMs, tilesPerWindow, slot: 0, valueSlot: null, latestSlot: null, latestValueSlot: null, valueKind: agg === 'count' ? 'number' : valueKind };
    if (takesQuantile && quantile !== undefined) plan.quantile = quantile;
    features.push(plan);
  }

  // Group features by hop; each group's tiles hold the slots of its features side by side.
  const groups = new Map<number, TileGroupPlan>();
  const latest: TileGroupPlan = { hopMs: LATEST_GROUP_HOP_MS, width: 0, valueWidth: 0, retentionMs: null, features: [], rollups: [] };
  for (const f of features) {
    let group = groups.get(f.hopMs);
    if (!group) {
      group = { hopMs: f.hopMs, width: 0, valueWidth: 0, retentionMs: 0, features: [], rollups: [] };
      groups.set(f.hopMs, group);
    }
    f.slot = group.width;
    group.width += SLOT_WIDTH[f.agg];
    if (valueWidth(f.agg) > 0) {
      f.valueSlot = group.valueWidth;
      group.valueWidth += valueWidth(f.agg);
    }
    group.features.push(f.name);
    const reachMs = (f.windowMs ?? f.ttlMs ?? 0) + f.hopMs + allowedLatenessMs;
    group.retentionMs = Math.max(group.retentionMs!, reachMs);
    if (f.windowMs === null) {
      f.latestSlot = latest.width;
      latest.width += SLOT_WIDTH.last;
      f.latestValueSlot = latest.valueWidth;
      latest.valueWidth += valueWidth('last');
      latest.features.push(f.name);
    }
  }
  for (const group of groups.values()) {
    const longest = Math.max(0, ...features.filter((f) => f.hopMs === group.hopMs && f.tilesPerWindow !== null).map((f) => f.tilesPerWindow!));
    group.rollups = rollupSpans(longest);
  }
  const groupList = [...groups.values()].sort((a, b) => a.hopMs - b.hopMs);
  if (latest.features.length > 0) groupList.push(latest);
  const retentionMs = Math.max(0, ...groupList.map((g) => g.retentionMs ?? 0));
  return { name: v.name, source: v.source?.name, entity: v.entity?.name, joinKeys, keyFields, features, groups: groupList, allowedLatenessMs, retentionMs };
}

/** Most tiles a windowed read merges (head tile included) that needs no rollup level. */
export const MAX_TILES_PER_READ = 32;
/** Each rollup level spans this many tiles of the level below. */
const ROLLUP_FANOUT = 6;

/**
 * Rollup spans for a window of `tilesPerWindow` tiles: add levels (x6 each) while a read could
 * merge more than MAX_TILES_PER_READ tiles and a level still lowers that bound. A level costs one
 * more tile write per updated tile, so short windows get none.
 */
export function rollupSpans(tilesPerWindow: number): number[] {
  const spans: number[] = [];
  let bound = worstTilesPerRead(tilesPerWindow, spans);
  while (bound > MAX_TILES_PER_READ) {
    const next = [...spans, (spans.at(-1) ?? 1) * ROLLUP_FANOUT];
    const nextBound = worstTilesPerRead(tilesPerWindow, next);
    if (nextBound >= bound) break;
    spans.splice(0, spans.length, ...next);
    bound = nextBound;
  }
  return spans;
}

/**
 * An upper bound of the tiles one windowed read merges: the head tile, the top level's blocks, and
 * at each level below at most (fanout - 1) blocks on either side of the next level's run.
 */
export function worstTilesPerRead(tilesPerWindow: number, spans: readonly number[]): number {
  let bound = 1 + Math.ceil(tilesPerWindow / (spans.at(-1) ?? 1));
  let below = 1;
  for (const span of spans) {
    bound += 2 * (span / below - 1);
    below = span;
  }
  return bound;
}

/** The largest hop no greater than `hopMs` that divides `windowMs` (for the error hint). */
function largestDividingHop(windowMs: number, hopMs: number): number {
  for (const unit of [86_400_000, 3_600_000, 60_000, 1_000, 1]) {
    for (let h = Math.floor(hopMs / unit) * unit; h >= unit; h -= unit) if (windowMs % h === 0) return h;
  }
  return 1;
}

/** A short sha256 of a value's canonical JSON. */
function contentHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted, so equal registries hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Look up a view's plan by name. */
export function viewPlan(registry: Registry, name: string): ViewPlan | undefined {
  return registry.views.find((v) => v.name === name);
}
