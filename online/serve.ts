// Online feature retrieval in Feast's get-online-features shape: validates a request against the
// registry (every bad name answered with the valid choices), reads the tiles of each requested
// view in one call per view, and merges windows at the read time.
import {
  canonicalKeyValue,
  entityKeyId,
  TidemarkError,
  type FeaturePlan,
  type FieldKind,
  type Registry,
  type Scalar,
  type ViewPlan,
} from '../definitions/index.js';
import { evaluateFeatures, needsHistory, tileRangesFor, type FeatureStatus } from './read.js';
import { readWithWatermark, storeClockMs, type KeyTiles, type OnlineStore, type StoreClock } from './store.js';

export type JoinKeyValue = string | number | boolean;

export interface OnlineFeaturesRequest {
  /** Feature references `view:feature`. */
  features: string[];
  /** Join key name -> one value per entity row. */
  entities: Record<string, JoinKeyValue[]>;
  /** Name features `view__feature` instead of `feature`. */
  full_feature_names?: boolean;
  /** Read time (epoch ms); default: the store clock. */
  at?: number;
}

export interface FeatureVector {
  values: (Scalar | JoinKeyValue)[];
  statuses: FeatureStatus[];
  event_timestamps: string[];
}

export interface OnlineFeaturesResponse {
  metadata: { feature_names: string[] };
  results: FeatureVector[];
}

const EPOCH_TIMESTAMP = '1970-01-01T00:00:00Z';

/** RFC 3339 as protobuf's JSON mapping writes it (Feast's event_timestamps). */
export function formatEventTimestamp(ms: number | null): string {
  if (ms === null) return EPOCH_TIMESTAMP;
  // Features of one read share few distinct times: remember the last one formatted.
  if (ms === lastFormatted.ms) return lastFormatted.text;
  const iso = new Date(ms).toISOString();
  lastFormatted = { ms, text: iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso };
  return lastFormatted.text;
}
let lastFormatted = { ms: Number.NaN, text: '' };

interface ResolvedFeature {
  ref: string;
  view: ViewPlan;
  feature: FeaturePlan;
}

export class OnlineFeatureService {
  private readonly features = new Map<string, ResolvedFeature>();
  private readonly joinKeyKinds = new Map<string, Set<FieldKind>>();

  constructor(
    readonly registry: Registry,
    readonly store: OnlineStore,
    readonly clock: StoreClock,
    private readonly nowMs: () => number = Date.now,
  ) {
    for (const view of registry.views) {
      for (const feature of view.features) this.features.set(`${view.name}:${feature.name}`, { ref: `${view.name}:${feature.name}`, view, feature });
      const source = registry.sources.find((s) => s.name === view.source)!;
      view.joinKeys.forEach((k, i) => {
        const kinds = this.joinKeyKinds.get(k) ?? new Set<FieldKind>();
        kinds.add(source.fields[view.keyFields[i]!]?.kind ?? 'other');
        this.joinKeyKinds.set(k, kinds);
      });
    }
  }

  /** Every valid feature reference. */
  featureRefs(): string[] {
    return [...this.features.keys()];
  }

  /**
   * Read features. With `eventTimes`, also each feature column's event times in epoch ms (null: no
   * event), in the order of the response's feature columns: the feature log's ages come from them
   * rather than from parsing the RFC 3339 texts back.
   */
  async getOnlineFeatures(request: OnlineFeaturesRequest, opts: { eventTimes?: boolean } = {}): Promise<{ response: OnlineFeaturesResponse; atMs: number; eventTimesMs?: (number | null)[][] }> {
    const resolved = this.resolveFeatures(request.features);
    const rows = this.validateEntities(request.entities, resolved);
    const nowMs = this.nowMs();
    const atOf = (watermarkMs: number | null): number => request.at ?? storeClockMs(this.clock, watermarkMs, nowMs);
    // The first view's read brings the watermark (with it, in one step where the store can); the
    // others read at the time it gives.
    let watermarkMs: number | null | undefined;

    const joinKeyNames = Object.keys(request.entities);
    const results: FeatureVector[] = joinKeyNames.map((k) => ({
      values: request.entities[k]!,
      statuses: request.entities[k]!.map(() => 'PRESENT' as const),
      event_timestamps: request.entities[k]!.map(() => EPOCH_TIMESTAMP),
    }));
    const featureNames = [...joinKeyNames];

    // One store read per view, covering every requested feature of it.
    const byView = new Map<ViewPlan, ResolvedFeature[]>();
    for (const r of resolved) byView.set(r.view, [...(byView.get(r.view) ?? []), r]);
    const vectors = new Map<ResolvedFeature, FeatureVector>();
    const times = opts.eventTimes ? new Map<ResolvedFeature, (number | null)[]>() : null;
    for (const [view, features] of byView) {
      const entityKeys = Array.from({ length: rows }, (_, row) =>
        entityKeyId(view.joinKeys.map((k) => canonicalKeyValue(request.entities[k]![row])!)),
      );
      const plans = features.map((f) => f.feature);
      let tiles: (KeyTiles | null)[];
      if (watermarkMs === undefined) {
        const first = await readWithWatermark(this.store, view.name, entityKeys, (wm) => tileRangesFor(view, plans, atOf(wm), wm));
        watermarkMs = first.watermarkMs;
        tiles = first.tiles;
      } else {
        tiles = await this.store.readTiles(view.name, entityKeys, tileRangesFor(view, plans, atOf(watermarkMs), watermarkMs));
      }
      const atMs = atOf(watermarkMs);
      // Keys written past t since the watermark was read: read again with their history tiles.
      const stale = entityKeys.flatMap((key, row) => (needsHistory(plans, tiles[row]!, atMs) ? [row] : []));
      if (stale.length > 0) {
        const again = await this.store.readTiles(view.name, stale.map((row) => entityKeys[row]!), tileRangesFor(view, plans, atMs, watermarkMs, 'always'));
        stale.forEach((row, i) => (tiles[row] = again[i]!));
      }
      const columns: FeatureVector[] = features.map(() => ({ values: new Array(rows), statuses: new Array(rows), event_timestamps: new Array(rows) }));
      const columnTimes = times === null ? null : features.map(() => new Array<number | null>(rows));
      for (let row = 0; row < rows; row++) {
        const values = evaluateFeatures(view, plans, tiles[row]!, atMs, watermarkMs);
        for (let k = 0; k < values.length; k++) {
          const column = columns[k]!;
          column.values[row] = values[k]!.value;
          column.statuses[row] = values[k]!.status;
          column.event_timestamps[row] = formatEventTimestamp(values[k]!.eventTimeMs);
          if (columnTimes !== null) columnTimes[k]![row] = values[k]!.eventTimeMs;
        }
      }
      features.forEach((f, k) => {
        vectors.set(f, columns[k]!);
        if (columnTimes !== null) times!.set(f, columnTimes[k]!);
      });
    }
    for (const r of resolved) {
      featureNames.push(request.full_feature_names ? `${r.view.name}__${r.feature.name}` : r.feature.name);
      results.push(vectors.get(r)!);
    }
    const response = { metadata: { feature_names: featureNames }, results };
    return times === null ? { response, atMs: atOf(watermarkMs ?? null) } : { response, atMs: atOf(watermarkMs ?? null), eventTimesMs: resolved.map((r) => times.get(r)!) };
  }

  private resolveFeatures(refs: readonly string[]): ResolvedFeature[] {
    if (refs.length === 0) {
      throw new TidemarkError('TM_READ_BAD_REQUEST', 'features is empty: name at least one feature as view:feature', { field: 'features', validFeatures: this.featureRefs() });
    }
    return refs.map((ref, i) => {
      const found = this.features.get(ref);
      if (found) return found;
      const viewName = ref.split(':')[0] ?? '';
      const sameView = this.featureRefs().filter((r) => r.startsWith(`${viewName}:`));
      const hint = !ref.includes(':') ? ' (write it as view:feature)' : sameView.length === 0 ? ` (no view named ${viewName})` : '';
      throw new TidemarkError('TM_READ_UNKNOWN_FEATURE', `unknown feature ${JSON.stringify(ref)} at features[${i}]${hint}`, {
        field: `features[${i}]`,
        validFeatures: sameView.length > 0 ? sameView : this.featureRefs(),
      });
    });
  }

  /** Checks join keys against the requested views; returns the number of entity rows. */
  private validateEntities(entities: Record<string, JoinKeyValue[]>, resolved: readonly ResolvedFeature[]): number {
    const needed = new Map<string, string>(); // join key -> a view needing it
    for (const r of resolved) for (const k of r.view.joinKeys) if (!needed.has(k)) needed.set(k, r.view.name);
    const given = Object.keys(entities);
    for (const k of given) {
      if (!needed.has(k)) {
        throw new TidemarkError('TM_READ_UNKNOWN_ENTITY', `entities.${k} is not a join key of the requested features`, {
          field: `entities.${k}`,
          validJoinKeys: [...needed.keys()],
        });
      }
    }
    for (const [k, view] of needed) {
      if (!(k in entities)) {
        throw new TidemarkError('TM_READ_MISSING_JOIN_KEY', `view ${view} needs join key ${k}: add entities.${k}`, {
          field: `entities.${k}`,
          validJoinKeys: [...needed.keys()],
        });
      }
    }
    let rows: number | null = null;
    for (const k of given) {
      const values = entities[k]!;
      if (rows !== null && values.length !== rows) {
        throw new TidemarkError('TM_READ_BAD_REQUEST', `entities.${k} has ${values.length} values but ${given[0]} has ${rows}: every join key needs one value per entity row`, { field: `entities.${k}` });
      }
      rows = values.length;
      const kinds = this.joinKeyKinds.get(k)!;
      values.forEach((value, i) => {
        const kind = typeof value === 'string' ? 'string' : typeof value === 'number' ? 'number' : typeof value === 'boolean' ? 'boolean' : 'other';
        const expected: string[] = [...kinds].filter((x) => x !== 'other' && x !== 'timestamp');
        if (canonicalKeyValue(value) === null || (expected.length > 0 && !expected.includes(kind))) {
          throw new TidemarkError('TM_READ_BAD_KEY', `entities.${k}[${i}] is ${JSON.stringify(value)} (${kind}); join key ${k} takes ${expected.join(' or ') || 'a scalar'} values`, {
            field: `entities.${k}[${i}]`,
            expected: expected.length > 0 ? expected : ['string', 'number', 'boolean'],
          });
        }
      });
    }
    return rows ?? 0;
  }
}
