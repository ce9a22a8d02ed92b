// A sharded offline store (--clickhouse-shards): N ClickHouse nodes, each with the single-node
// tables, and one placement rule for every entity-keyed row.
//
// Placement: a row whose entity key is the texts k1..kn (the canonical key text of each join key,
// in the entity's order) lives on shard
//
//     xxHash64(k1 <0x1f> k2 ... kn) % N          (one key: xxHash64(k1) % N)
//
// computed by shardOfKey in Node (loads, the Kafka sink, spines) and by shardSql in ClickHouse, the
// same function (tests/offline/sharded-store.test.ts checks them against each other). xxHash64 and
// not cityHash64: ClickHouse has it built in, and Node has a well-kept binding of the reference
// implementation (@node-rs/xxhash); CityHash's version in ClickHouse is an old one of its own.
//
// An event is stored on every shard that one of its source's key placements names (a flights event
// is keyed by origin for origin_delays, by (origin, destination) for route_delays and by destination
// for dest_delays): so each view's events of a key sit on that key's shard, and the single-node SQL
// runs unchanged on each shard's local tables. A copy on a shard whose spine rows do not have its
// key for a view is never read for that view: the point-in-time SQL reads only the events whose key
// is in the (local) spine. Counting events across shards therefore counts an event once per shard
// holding it; sources that no view keys (predictions, labels) go to the home shard (shard 0), as do
// dead letters and the feature log.
import { xxh64 } from '@node-rs/xxhash';
import { TidemarkError, type Registry, type SourcePlan } from '../definitions/index.js';
import type { OfflineExecutor } from './executor.js';
import { ident, keyColumn } from './tables.js';

/** XXH64 with seed 0 of the bytes: ClickHouse's xxHash64 of a String. */
export function xxHash64(bytes: Uint8Array): bigint {
  return xxh64(bytes);
}

/** Between the texts of a composite key. */
const KEY_SEPARATOR = '\x1f';

/** Shard numbers of keys seen lately: a load repeats few keys many times. */
const shardCache = new Map<string, number>();

/** The shard (0-based) of an entity key given as its canonical key texts, among `shardCount` shards. */
export function shardOfKey(keyTexts: readonly string[], shardCount: number): number {
  if (shardCount <= 1) return 0;
  const text = keyTexts.length === 1 ? keyTexts[0]! : keyTexts.join(KEY_SEPARATOR);
  const cacheKey = `${shardCount}${KEY_SEPARATOR}${text}`;
  const known = shardCache.get(cacheKey);
  if (known !== undefined) return known;
  const shard = Number(xxHash64(Buffer.from(text, 'utf8')) % BigInt(shardCount));
  if (shardCache.size >= 200_000) shardCache.clear();
  shardCache.set(cacheKey, shard);
  return shard;
}

/** The same placement in ClickHouse SQL, over String expressions holding the key texts. */
export function shardSql(keyExprs: readonly string[], shardCount: number): string {
  const text = keyExprs.length === 1 ? keyExprs[0]! : `concatWithSeparator(char(31), ${keyExprs.join(', ')})`;
  return `xxHash64(${text}) % ${shardCount}`;
}

/** The distinct key-field tuples of the views that read a source (its placements). */
export function sourcePlacements(registry: Registry, source: SourcePlan): string[][] {
  const seen = new Map<string, string[]>();
  for (const view of registry.views) if (view.source === source.name) seen.set(view.keyFields.join(KEY_SEPARATOR), [...view.keyFields]);
  return [...seen.values()];
}

/**
 * SQL true for the events-table rows that shard {shard:UInt32} owns by these key fields' placement
 * (their __k_<field> key texts): a query filtered so on every shard reads each row of that
 * placement exactly once, on the shard that has all of its key's rows.
 */
export function ownedRowsSql(keyFields: readonly string[], shardCount: number): string {
  return `${shardSql(keyFields.map((f) => ident(keyColumn(f))), shardCount)} = {shard:UInt32}`;
}

/**
 * SQL true for the rows of a source that shard {shard:UInt32} counts when every event must count
 * once: an event sits on the shard of each of its placements, and the first placement's shard
 * (registry order) is the one that counts it; a source no view keys is all on the home shard.
 */
export function ownedEventsSql(registry: Registry, source: SourcePlan, shardCount: number): string {
  const [first] = sourcePlacements(registry, source);
  return first ? ownedRowsSql(first, shardCount) : '{shard:UInt32} = 0';
}

/** Which shards an events-table row (with its __k_<field> key texts) goes to: one per placement, deduplicated; the home shard when no view keys the source. */
export function eventRowShards(placements: readonly string[][], shardCount: number): (row: Record<string, unknown>) => number[] {
  if (shardCount <= 1 || placements.length === 0) return () => [0];
  const columns = placements.map((fields) => fields.map(keyColumn));
  return (row) => {
    const out: number[] = [];
    for (const cols of columns) {
      const shard = shardOfKey(cols.map((c) => String(row[c])), shardCount);
      if (!out.includes(shard)) out.push(shard);
    }
    return out;
  };
}

/** Split rows by shard; a row may go to several. */
export function splitByShard<T>(rows: readonly T[], shardsOf: (row: T) => number[], shardCount: number): T[][] {
  const out: T[][] = Array.from({ length: shardCount }, () => []);
  for (const row of rows) for (const s of shardsOf(row)) out[s]!.push(row);
  return out;
}

/** The shards of an offline store: one executor per shard, and the cluster name when DDL goes ON CLUSTER. */
export class ShardSet {
  private constructor(
    readonly executors: readonly OfflineExecutor[],
    /** With a cluster name (and Keeper on the servers), DDL is sent once, ON CLUSTER, to the home shard. */
    readonly cluster: string | null,
  ) {}

  static of(executors: readonly OfflineExecutor[], cluster: string | null = null): ShardSet {
    if (executors.length === 0) throw new TidemarkError('TM_SERVICE_CONFIG', 'a sharded offline store needs at least one shard URL');
    return new ShardSet(executors, cluster);
  }

  get count(): number {
    return this.executors.length;
  }

  /** The home shard: dead letters, sources no view keys, the feature log. */
  get home(): OfflineExecutor {
    return this.executors[0]!;
  }

  /** Run on every shard at once; the first failure is raised with the shard named (after all have settled). */
  async each<T>(fn: (executor: OfflineExecutor, shard: number) => Promise<T>): Promise<T[]> {
    return settleAll(this.executors.map((executor, shard) => fn(executor, shard).catch((e: unknown) => Promise.reject(this.shardError(e, shard)))));
  }

  /** Run on one shard, its errors named as `each` names them. */
  async on<T>(shard: number, fn: (executor: OfflineExecutor) => Promise<T>): Promise<T> {
    try {
      return await fn(this.executors[shard]!);
    } catch (e) {
      throw this.shardError(e, shard);
    }
  }

  /** An error of one shard with the shard's number and URL in its message and details; a shard that cannot be reached is TM_OFFLINE_SHARD_UNREACHABLE. */
  shardError(e: unknown, shard: number): unknown {
    // one node: its errors as they are
    if (this.count === 1 || (e instanceof TidemarkError && e.details.shard !== undefined)) return e;
    const location = this.executors[shard]!.location;
    const where = `shard ${shard + 1} of ${this.count} (${location})`;
    const details = { ...(e instanceof TidemarkError ? e.details : {}), shard: shard + 1, shards: this.count, url: location };
    if (e instanceof TidemarkError && e.code === 'TM_OFFLINE_UNREACHABLE') {
      return new TidemarkError('TM_OFFLINE_SHARD_UNREACHABLE', `ClickHouse ${where} is unreachable: ${e.message.replace(/^ClickHouse at \S+ is unreachable: /, '')}`, details);
    }
    const message = e instanceof Error ? e.message : String(e);
    return new TidemarkError(e instanceof TidemarkError ? e.code : 'TM_OFFLINE_QUERY', `${where}: ${message}`, details);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.executors.map((e) => e.close()));
  }
}

/** Wait for every promise; then raise the first rejection, if any (no failure left unobserved, no shard still running). */
export async function settleAll<T>(promises: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}
