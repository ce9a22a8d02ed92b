// The live online/offline consistency probe (POST /consistency/sample): K entity keys of one view,
// read online at one instant through the OnlineFeatureService and computed offline as a
// point-in-time dataset at the same instant, every (key, feature) compared with valuesAgree (the
// tolerances of docs/semantics.md). Keys are given, or sampled deterministically from the offline
// store's events of the view's source inside its retention (ordered by cityHash64 of the key, so
// the same store and instant give the same sample). On a sharded offline store each shard samples
// the keys it owns and the offline values come from the sharded dataset: the same sample and values.
import { aggregationSpec, canonicalKeyValue, compareCodePoints, parseTimeMs, TidemarkError, valuesAgree, type Aggregation, type FieldKind, type Registry, type Scalar, type ViewPlan } from '../definitions/index.js';
import { COMPLETED_LOADS, eventTable, ident, keyColumn, ownedRowsSql, type OfflineStore } from '../offline/index.js';
import { storeClockMs, type JoinKeyValue, type OnlineFeatureService } from '../online/index.js';
import { limitExceeded } from './limits.js';

export const DEFAULT_SAMPLE_KEYS = 100;
/** Mismatching (key, feature) rows listed in one answer; the counts cover them all. */
export const MISMATCH_ROWS_SHOWN = 100;

export interface ConsistencyRequest {
  view: string;
  /** One list of join key values per entity (join key order), or join key -> one value per entity. */
  keys?: JoinKeyValue[][] | Record<string, JoinKeyValue[]>;
  /** Keys to sample when `keys` is absent (default 100). */
  sample?: number;
  /** Epoch ms or ISO-8601; default: the store clock's read time now. */
  at?: number | string;
}

export interface FeatureAgreement {
  feature: string;
  agg: Aggregation;
  /** Relative tolerance of valuesAgree for this aggregation (0: exact). */
  tolerance: number;
  /** Keys whose online and offline values are identical; null when no key was compared. */
  exactMatchRate: number | null;
  /** Keys whose values agree within the tolerance. */
  agreementRate: number | null;
  /** Largest |online - offline| over keys where both are numbers; null when there is none. */
  maxAbsDiff: number | null;
  /** Keys whose values do not agree. */
  mismatches: number;
}

export interface MismatchRow {
  key: Record<string, JoinKeyValue>;
  feature: string;
  online: Scalar;
  offline: Scalar;
}

export interface ConsistencyReport {
  view: string;
  at: string;
  atMs: number;
  keysFrom: 'request' | 'sample';
  keysCompared: number;
  joinKeys: string[];
  /** The keys compared, one list of values in join key order each, in probe order. */
  keys: JoinKeyValue[][];
  features: FeatureAgreement[];
  /** The first MISMATCH_ROWS_SHOWN mismatching (key, feature) pairs, keys in probe order. */
  mismatches: MismatchRow[];
  mismatchesOmitted: number;
}

function badRequest(field: string, message: string, details: Record<string, unknown> = {}): TidemarkError {
  return new TidemarkError('TM_CONSISTENCY_BAD_REQUEST', `${field}: ${message}`, { field, ...details });
}

/** Kind of each join key's event field, to type key text as the online read expects it. */
function joinKeyKinds(registry: Registry, view: ViewPlan): FieldKind[] {
  const source = registry.sources.find((s) => s.name === view.source)!;
  return view.keyFields.map((f) => source.fields[f]?.kind ?? 'string');
}

/** A join key value as its field's kind: the offline store keeps canonical text (a number as 12, a boolean as true). */
function typedKeyValue(text: string, kind: FieldKind, field: string): JoinKeyValue {
  if (kind === 'number') {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n)) throw badRequest(field, `${JSON.stringify(text)} is not a number, and this join key takes numbers`);
    return n;
  }
  if (kind === 'boolean') {
    if (text !== 'true' && text !== 'false') throw badRequest(field, `${JSON.stringify(text)} is not true or false, and this join key takes booleans`);
    return text === 'true';
  }
  return text;
}

/** The request's keys as rows of typed values in join key order. */
function givenKeys(view: ViewPlan, kinds: readonly FieldKind[], keys: NonNullable<ConsistencyRequest['keys']>): JoinKeyValue[][] {
  const typed = (value: unknown, i: number, field: string): JoinKeyValue => {
    const text = canonicalKeyValue(value);
    if (text === null) throw badRequest(field, `${JSON.stringify(value)} is not a join key value (a string, number or boolean)`);
    return typedKeyValue(text, kinds[i]!, field);
  };
  if (Array.isArray(keys)) {
    return keys.map((row, r) => {
      if (!Array.isArray(row) || row.length !== view.joinKeys.length) {
        throw badRequest(`keys[${r}]`, `view ${view.name} has ${view.joinKeys.length} join key(s) (${view.joinKeys.join(', ')}): give one list of that many values per entity`, { validJoinKeys: view.joinKeys });
      }
      return row.map((v, i) => typed(v, i, `keys[${r}][${i}]`));
    });
  }
  const unknown = Object.keys(keys).filter((k) => !view.joinKeys.includes(k));
  const missing = view.joinKeys.filter((k) => !(k in keys));
  if (unknown.length > 0 || missing.length > 0) {
    throw badRequest(`keys.${unknown[0] ?? missing[0]}`, `view ${view.name} is keyed by ${view.joinKeys.join(', ')}${unknown.length > 0 ? `, not ${unknown.join(', ')}` : `; add keys.${missing[0]}`}`, { validJoinKeys: view.joinKeys });
  }
  const rows = keys[view.joinKeys[0]!]!.length;
  for (const k of view.joinKeys) if (!Array.isArray(keys[k]) || keys[k].length !== rows) throw badRequest(`keys.${k}`, `every join key needs one value per entity: keys.${view.joinKeys[0]} has ${rows}`);
  return Array.from({ length: rows }, (_, r) => view.joinKeys.map((k, i) => typed(keys[k]![r], i, `keys.${k}[${r}]`)));
}

/** Up to `count` keys with events of the view's source in [at - retention, at), ordered by the hash of the key. */
async function sampledKeys(offline: OfflineStore, view: ViewPlan, kinds: readonly FieldKind[], atMs: number, count: number): Promise<JoinKeyValue[][]> {
  const columns = view.keyFields.map((f, i) => `${ident(keyColumn(f))} AS k${i}`);
  const keys = view.keyFields.map((_, i) => `k${i}`);
  const names = keys.join(', ');
  // `owned`: on shards, only the events of the keys this shard owns (the same placement as loads).
  const sql = (owned: string): string =>
    `SELECT ${names}, toString(cityHash64(${names})) AS h FROM (SELECT ${columns.join(', ')} FROM ${ident(eventTable(view.source))} WHERE ${COMPLETED_LOADS} AND __ts >= {from:Int64} AND __ts < {at:Int64}${owned} GROUP BY ${names}) ` +
    `ORDER BY cityHash64(${names}), ${names} LIMIT {count:UInt32}`;
  const params = { from: atMs - view.retentionMs, at: atMs, count };
  type Row = Record<string, string>;
  let rows: Row[];
  if (offline.shards === null) rows = await offline.executor.rows<Row>(sql(''), params);
  else {
    // Each shard's first `count` of the keys it owns (a source's events are also copied to the
    // shards of its other views' keys), merged in the single node's order: hash, then key text.
    const shards = offline.shards;
    const perShard = await shards.each((executor, shard) => executor.rows<Row>(sql(` AND ${ownedRowsSql(view.keyFields, shards.count)}`), { ...params, shard }));
    const hash = (r: Row): bigint => BigInt(r.h!);
    rows = perShard
      .flat()
      .sort((a, b) => {
        const ha = hash(a);
        const hb = hash(b);
        if (ha !== hb) return ha < hb ? -1 : 1;
        for (const k of keys) {
          const c = compareCodePoints(a[k]!, b[k]!);
          if (c !== 0) return c;
        }
        return 0;
      })
      .slice(0, count);
  }
  return rows.map((row) => view.keyFields.map((_, i) => typedKeyValue(row[`k${i}`]!, kinds[i]!, view.joinKeys[i]!)));
}

export async function runConsistencyProbe(service: OnlineFeatureService, offline: OfflineStore | null, request: ConsistencyRequest, maxKeys: number): Promise<ConsistencyReport> {
  const { registry } = service;
  const view = registry.views.find((v) => v.name === request.view);
  if (!view) {
    const validViews = registry.views.map((v) => v.name);
    throw new TidemarkError('TM_CONSISTENCY_UNKNOWN_VIEW', `no view named ${JSON.stringify(request.view)}; valid views: ${validViews.join(', ')}`, { field: 'view', validViews });
  }
  if (!offline) {
    throw new TidemarkError('TM_CONSISTENCY_NO_OFFLINE', 'this server has no offline store to compare with: start tidemark serve with --clickhouse-url <url> (or $CLICKHOUSE_URL) or --data-dir <chDB folder>', { flags: ['--clickhouse-url', '--data-dir'] });
  }
  let atMs: number;
  if (request.at === undefined) atMs = storeClockMs(service.clock, await service.store.watermarkMs());
  else {
    const parsed = parseTimeMs(request.at);
    if (parsed === null) throw badRequest('at', `${JSON.stringify(request.at)} is not a time: give epoch milliseconds or ISO-8601 UTC`);
    atMs = parsed;
  }
  const kinds = joinKeyKinds(registry, view);
  let keys: JoinKeyValue[][];
  if (request.keys !== undefined) {
    keys = givenKeys(view, kinds, request.keys);
    if (keys.length > maxKeys) throw limitExceeded('consistencyKeys', maxKeys, keys.length, 'keys');
  } else {
    const sample = request.sample ?? DEFAULT_SAMPLE_KEYS;
    if (sample > maxKeys) throw limitExceeded('consistencyKeys', maxKeys, sample, 'keys asked for with sample');
    keys = await sampledKeys(offline, view, kinds, atMs, sample);
  }

  const refs = view.features.map((f) => `${view.name}:${f.name}`);
  const online = keys.length === 0 ? [] : (await service.getOnlineFeatures({ features: refs, entities: Object.fromEntries(view.joinKeys.map((k, i) => [k, keys.map((row) => row[i]!)])), at: atMs })).response.results.slice(view.joinKeys.length);
  const offlineRows = keys.length === 0 ? [] : await pointInTimeRows(offline, view, keys, atMs, refs);

  const mismatches: MismatchRow[] = [];
  let mismatchCount = 0;
  const tallies = view.features.map(() => ({ exact: 0, agree: 0, maxAbsDiff: null as number | null }));
  // Key by key, then feature by feature: the listed mismatches read as a table.
  keys.forEach((key, row) => {
    view.features.forEach((f, k) => {
      const tally = tallies[k]!;
      const onlineValue = online[k]!.values[row] as Scalar;
      const offlineValue = (offlineRows[row]![`${view.name}__${f.name}`] ?? null) as Scalar;
      if (onlineValue === offlineValue) tally.exact++;
      if (typeof onlineValue === 'number' && typeof offlineValue === 'number') tally.maxAbsDiff = Math.max(tally.maxAbsDiff ?? 0, Math.abs(onlineValue - offlineValue));
      if (valuesAgree(f.agg, onlineValue, offlineValue)) tally.agree++;
      else if (mismatchCount++ < MISMATCH_ROWS_SHOWN) mismatches.push({ key: Object.fromEntries(view.joinKeys.map((j, i) => [j, key[i]!])), feature: f.name, online: onlineValue, offline: offlineValue });
    });
  });
  const rate = (n: number): number | null => (keys.length === 0 ? null : n / keys.length);
  const features = view.features.map((f, k): FeatureAgreement => {
    const { exact, agree, maxAbsDiff } = tallies[k]!;
    return { feature: f.name, agg: f.agg, tolerance: aggregationSpec(f.agg).tolerance, exactMatchRate: rate(exact), agreementRate: rate(agree), maxAbsDiff, mismatches: keys.length - agree };
  });
  return { view: view.name, at: new Date(atMs).toISOString(), atMs, keysFrom: request.keys !== undefined ? 'request' : 'sample', keysCompared: keys.length, joinKeys: view.joinKeys, keys, features, mismatches, mismatchesOmitted: mismatchCount - mismatches.length };
}

/** The view's features at `atMs` for every key, as a point-in-time dataset (one spine row per key, in key order; from the shards when the store has them). */
async function pointInTimeRows(offline: OfflineStore, view: ViewPlan, keys: readonly JoinKeyValue[][], atMs: number, refs: readonly string[]): Promise<Record<string, unknown>[]> {
  const spine = keys.map((key) => ({ ...Object.fromEntries(view.joinKeys.map((k, i) => [k, key[i]!])), ts: atMs }));
  const dataset = await offline.streamDataset(spine, refs);
  try {
    const decoder = new TextDecoder();
    let text = '';
    for await (const chunk of dataset.jsonLines()) text += decoder.decode(chunk, { stream: true });
    text += decoder.decode();
    return text
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  } finally {
    await dataset.release();
  }
}
