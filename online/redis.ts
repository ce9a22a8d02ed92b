// Redis OnlineStore (ioredis; a single Redis or a Redis Cluster). It keeps the same tiles as
// MemoryOnlineStore and merges them with the same arithmetic, in the same order, so every read
// (online/read.ts) answers with the same values bit for bit.
//
// Key layout, under a prefix P (default `tm`; no braces in it):
//
//   P:{<view>:<entityKey>}:k          hash: `seen` = 1 once the key was applied (a key with no tile
//                                     inside retention still exists, as in MemoryOnlineStore), and
//                                     `fence:<source>:<partition>` = highest applied log offset
//   P:{<view>:<entityKey>}:t:<hopMs>  hash: tile index (decimal) -> packed tile, one per tile group
//                                     (hop 0 is the all-time latest cell of `last` without window)
//   P:{meta}                          hash: `watermark` (greatest materialized event time, ms),
//                                     `tiles` (stored tile count), `keys:<view>` (entity keys seen),
//                                     `layout:<view>` (fingerprint of the view's tile layout)
//
// <entityKey> is the canonical entity key id as is, unless it holds a lone surrogate (which UTF-8
// key names cannot carry) or starts with NUL: then NUL + the hex of its UTF-16 code units.
// The hash tag `{<view>:<entityKey>}` puts every key of one entity of one view in one Cluster hash
// slot, so one script can update them atomically. (An entity key containing `}` cuts the tag short;
// all keys of that entity still share the cut tag, so they still share a slot.)
//
// A packed tile, little-endian: minTs f64, maxTs f64, `width` f64 slots (Tile.nums, NaN kept), then
// `valueWidth` values (Tile.vals), each a tag byte and a payload: `z` null, `F` false, `T` true,
// `n` + f64, `s` + u32 byte length + the text as UTF-16 code units, 2 bytes big-endian each, mapped
// so that comparing bytes compares code points (compareCodePoints): units below D800 stay, E000-FFFF
// move to D800-F7FF, surrogates D800-DFFF move to F800-FFFF. Doubles never pass through text, so
// every number round-trips exactly, and so does any JS string (lone surrogates included, which
// UTF-8 would replace). The scripts compare text bytewise by hand: Lua's `<` on strings uses
// strcoll, which follows the server's locale.
//
// Writes: apply() reads the watermark, then sends one EVALSHA of APPLY_SCRIPT per entity key, all
// at once (pipelined; for a Cluster, ioredis routes each to its slot's node). Each script call
// merges the key's tile updates into the stored tiles (mergeSlots re-implemented in Lua: count,
// sum, mean, min, max, var/stddev by Chan et al., last with its tie rule), skips tiles behind the
// retention horizon of the watermark before the batch (counted as late), trims a group's older
// tiles when it gains a tile, and honours the key's optional fence. A last call (META_SCRIPT)
// advances the watermark and the counters, after the tiles, so a reader at the watermark clock
// never sees a watermark ahead of the tiles. Without fences apply() is not idempotent: a batch
// applied twice counts twice. The counters (stats only) can fall behind if the process dies
// between the two steps; values never depend on them.
//
// Reads: readTiles() sends one EVALSHA of READ_SCRIPT per entity key, all at once, and gets back
// only the tiles inside the requested ranges (HMGET of the wanted indexes, or HGETALL and filter
// when the range is wider than what is stored).
import { createHash } from 'node:crypto';
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import {
  groupSlots,
  TidemarkError,
  trimTileIndex,
  type Aggregation,
  type ErrorCode,
  type KeyTileUpdates,
  type Registry,
  type Scalar,
  type Tile,
  type TileBatch,
  type TileGroupPlan,
  type ViewPlan,
} from '../definitions/index.js';
import type { ApplyResult, KeyTiles, OnlineStore, StoreStats, TileRange } from './store.js';

export type RedisClient = Redis | Cluster;

export interface RedisOnlineStoreOptions {
  /** Key prefix (namespace) of every key of this store; default `tm`. No `{` or `}`. */
  prefix?: string;
  /** Quit the client on close(); default false (the caller owns a client it passes in). */
  ownsClient?: boolean;
}

export interface RedisApplyResult extends ApplyResult {
  /** Key updates skipped whole because their fence showed them applied already (redelivery). */
  fencedKeys: number;
}

export type RedisStoreErrorCode = Extract<ErrorCode, `TM_STORE_${string}`>;

/** A coded error of the Redis store: a TidemarkError, so the API, CLI and logs print its code. */
export class RedisStoreError extends TidemarkError {
  declare readonly code: RedisStoreErrorCode;
  constructor(code: RedisStoreErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(code, message, details);
    this.name = 'RedisStoreError';
  }
}

// ---------------------------------------------------------------------------------------------
// Lua

/** Shared Lua: packed tiles, the `last` value order, and mergeSlots. */
const LUA_TILES = `
local function compareBytes(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local ca, cb = string.byte(a, i), string.byte(b, i)
    if ca ~= cb then
      if ca < cb then return -1 else return 1 end
    end
    i = i + 1
  end
  if #a < #b then return -1 else return 1 end
end

-- null < booleans < numbers < text, as compareScalars orders mixed types
local RANK = { [122] = 0, [70] = 1, [84] = 1, [110] = 2, [115] = 3 }

local function compareValues(a, b)
  if a == b then return 0 end
  local ta, tb = string.byte(a, 1), string.byte(b, 1)
  local ra, rb = RANK[ta], RANK[tb]
  if ra ~= rb then
    if ra < rb then return -1 else return 1 end
  end
  if ra == 0 then return 0 end
  if ra == 1 then
    if ta < tb then return -1 else return 1 end
  end
  if ra == 2 then
    local x = struct.unpack('<d', a, 2)
    local y = struct.unpack('<d', b, 2)
    if x < y then return -1 elseif x > y then return 1 else return 0 end
  end
  return compareBytes(string.sub(a, 6), string.sub(b, 6))
end

local function readTile(blob, width, valueWidth)
  local minTs, maxTs, p = struct.unpack('<dd', blob)
  local nums = {}
  for i = 1, width do
    nums[i], p = struct.unpack('<d', blob, p)
  end
  local vals = {}
  for k = 1, valueWidth do
    local tag = string.byte(blob, p)
    local size = 1
    if tag == 110 then
      size = 9
    elseif tag == 115 then
      size = 5 + struct.unpack('<I4', blob, p + 1)
    end
    vals[k] = string.sub(blob, p, p + size - 1)
    p = p + size
  end
  return minTs, maxTs, nums, vals
end

local function writeTile(minTs, maxTs, nums, vals, width, valueWidth)
  local parts = { struct.pack('<dd', minTs, maxTs) }
  for i = 1, width do parts[#parts + 1] = struct.pack('<d', nums[i]) end
  for k = 1, valueWidth do parts[#parts + 1] = vals[k] end
  return table.concat(parts)
end

-- layout: "width valueWidth agg offset valueOffset agg offset valueOffset ..." (offsets 0-based)
local function parseLayout(text)
  local words = {}
  for w in string.gmatch(text, '%S+') do words[#words + 1] = w end
  local layout = { width = tonumber(words[1]), valueWidth = tonumber(words[2]), slots = {} }
  for i = 3, #words, 3 do
    layout.slots[#layout.slots + 1] = { agg = words[i], o = tonumber(words[i + 1]) + 1, vo = tonumber(words[i + 2]) + 1 }
  end
  return layout
end

-- definitions/aggregates.ts mergeSlots, into = stored (an, av), from = update (bn, bv), same order
-- of operations so results are bit-identical
-- aggregates.ts addCompensated: Neumaier's compensated sum at an[o], an[o + 1]
local function addCompensated(an, o, value, valueCompensation)
  local sum = an[o]
  local t = sum + value
  local err
  if math.abs(sum) >= math.abs(value) then err = sum - t + value else err = value - t + sum end
  an[o] = t
  an[o + 1] = an[o + 1] + valueCompensation + err
end

local function mergeSlot(agg, o, vo, an, av, bn, bv)
  if agg == 'c' then
    an[o] = an[o] + bn[o]
  elseif agg == 's' then
    addCompensated(an, o, bn[o], bn[o + 1])
  elseif agg == 'm' then
    an[o] = an[o] + bn[o]
    addCompensated(an, o + 1, bn[o + 1], bn[o + 2])
  elseif agg == 'i' or agg == 'x' then
    local nb = bn[o]
    if nb ~= 0 then
      local b = bn[o + 1]
      if an[o] == 0 or (agg == 'i' and b < an[o + 1]) or (agg == 'x' and b > an[o + 1]) then an[o + 1] = b end
      an[o] = an[o] + nb
    end
  elseif agg == 'v' then
    local nb = bn[o]
    if nb ~= 0 then
      local na = an[o]
      if na == 0 then
        an[o] = nb
        an[o + 1] = bn[o + 1]
        an[o + 2] = bn[o + 2]
      else
        local ma = an[o + 1]
        local n = na + nb
        local delta = bn[o + 1] - ma
        an[o] = n
        an[o + 1] = ma + (delta * nb) / n
        an[o + 2] = an[o + 2] + bn[o + 2] + (delta * delta * na * nb) / n
      end
    end
  elseif agg == 'l' then
    local tb = bn[o]
    if tb == tb then
      local ta = an[o]
      if ta ~= ta or tb > ta or (tb == ta and compareValues(bv[vo], av[vo]) > 0) then
        an[o] = tb
        av[vo] = bv[vo]
      end
    end
  else
    error('unknown aggregation code ' .. tostring(agg))
  end
end

local function mergeTiles(stored, update, layout)
  local aMin, aMax, an, av = readTile(stored, layout.width, layout.valueWidth)
  local bMin, bMax, bn, bv = readTile(update, layout.width, layout.valueWidth)
  if bMin < aMin then aMin = bMin end
  if bMax > aMax then aMax = bMax end
  for _, s in ipairs(layout.slots) do mergeSlot(s.agg, s.o, s.vo, an, av, bn, bv) end
  return writeTile(aMin, aMax, an, av, layout.width, layout.valueWidth)
end
`;

/**
 * Merge one entity key's tile updates. KEYS[1]: the key hash; KEYS[1+g]: the tiles of group g.
 * ARGV: fence source ('' for none), fence partition, fence offset, group count, then per group:
 * trim index ('' for none), layout, tile count, and per tile: index, events, packed tile.
 * Returns {fenced, new key, applied updates, late tile events, tile count change}.
 */
const APPLY_SCRIPT = `${LUA_TILES}
local keyHash = KEYS[1]
if ARGV[1] ~= '' then
  local fenceField = 'fence:' .. ARGV[1] .. ':' .. ARGV[2]
  local stored = redis.call('HGET', keyHash, fenceField)
  if stored and tonumber(stored) >= tonumber(ARGV[3]) then return {1, 0, 0, 0, 0} end
  redis.call('HSET', keyHash, fenceField, ARGV[3])
end
local isNew = redis.call('HSETNX', keyHash, 'seen', '1')
local applied, late, delta = 0, 0, 0
local p = 5
for g = 1, tonumber(ARGV[4]) do
  local tilesKey = KEYS[1 + g]
  local trim = nil
  if ARGV[p] ~= '' then trim = tonumber(ARGV[p]) end
  local layoutText = ARGV[p + 1]
  local count = tonumber(ARGV[p + 2])
  p = p + 3
  local layout = nil
  local added = false
  for _ = 1, count do
    local field, events, blob = ARGV[p], tonumber(ARGV[p + 1]), ARGV[p + 2]
    p = p + 3
    if trim ~= nil and tonumber(field) < trim then
      late = late + events
    else
      local stored = redis.call('HGET', tilesKey, field)
      if stored then
        if layout == nil then layout = parseLayout(layoutText) end
        redis.call('HSET', tilesKey, field, mergeTiles(stored, blob, layout))
      else
        redis.call('HSET', tilesKey, field, blob)
        added = true
        delta = delta + 1
      end
      applied = applied + 1
    end
  end
  -- as MemoryOnlineStore: a group that gains a tile drops its tiles behind the horizon
  if added and trim ~= nil then
    local old = {}
    for _, f in ipairs(redis.call('HKEYS', tilesKey)) do
      if tonumber(f) < trim then old[#old + 1] = f end
    end
    for i = 1, #old, 1000 do
      redis.call('HDEL', tilesKey, unpack(old, i, math.min(#old, i + 999)))
    end
    delta = delta - #old
  end
end
return {0, isNew, applied, late, delta}
`;

/**
 * Tiles of one entity key inside ranges. KEYS[1]: the key hash; KEYS[1+g]: the tiles of group g.
 * ARGV[2g-1], ARGV[2g]: first and last tile index wanted from group g.
 * Returns {0} for a key never applied, else {1, {index, tile, ...} per group}.
 */
const READ_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local out = {1}
for g = 1, #KEYS - 1 do
  local key = KEYS[g + 1]
  local from, to = tonumber(ARGV[2 * g - 1]), tonumber(ARGV[2 * g])
  local found = {}
  if to >= from then
    local stored = redis.call('HLEN', key)
    if stored > 0 and to - from + 1 <= stored then
      local j = from
      while j <= to do
        local last = math.min(to, j + 999)
        local fields = {}
        for i = j, last do fields[#fields + 1] = string.format('%d', i) end
        local values = redis.call('HMGET', key, unpack(fields))
        for i = 1, #fields do
          if values[i] then
            found[#found + 1] = fields[i]
            found[#found + 1] = values[i]
          end
        end
        j = last + 1
      end
    elseif stored > 0 then
      local all = redis.call('HGETALL', key)
      for i = 1, #all, 2 do
        local index = tonumber(all[i])
        if index >= from and index <= to then
          found[#found + 1] = all[i]
          found[#found + 1] = all[i + 1]
        end
      end
    end
  end
  out[g + 1] = found
end
return out
`;

/**
 * Advance the watermark and the counters. KEYS[1]: the meta hash. ARGV: batch max event time
 * ('' for none), tile count change, then pairs of (view, new keys). Returns the watermark ('' for none).
 */
const META_SCRIPT = `
local wm = redis.call('HGET', KEYS[1], 'watermark')
if ARGV[1] ~= '' and (not wm or tonumber(ARGV[1]) > tonumber(wm)) then
  redis.call('HSET', KEYS[1], 'watermark', ARGV[1])
  wm = ARGV[1]
end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], 'tiles', ARGV[2]) end
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], 'keys:' .. ARGV[i], ARGV[i + 1]) end
return wm or ''
`;

interface LuaScript {
  lua: string;
  sha: string;
}

function luaScript(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

const SCRIPTS = { apply: luaScript(APPLY_SCRIPT), read: luaScript(READ_SCRIPT), meta: luaScript(META_SCRIPT) };

// ---------------------------------------------------------------------------------------------
// Packed tiles

const AGG_CODE: Record<Aggregation, string> = { count: 'c', sum: 's', mean: 'm', min: 'i', max: 'x', var: 'v', stddev: 'v', last: 'l' };

const TAG_NULL = 0x7a; // z
const TAG_FALSE = 0x46; // F
const TAG_TRUE = 0x54; // T
const TAG_NUMBER = 0x6e; // n
const TAG_TEXT = 0x73; // s

/** A UTF-16 code unit mapped so that byte order is code point order (see the file header). */
function orderedUnit(u: number): number {
  if (u < 0xd800) return u;
  if (u >= 0xe000) return u - 0x800;
  return u + 0x2000;
}

function unitFromOrdered(v: number): number {
  if (v < 0xd800) return v;
  if (v >= 0xf800) return v - 0x2000;
  return v + 0x800;
}

function valueSize(v: Scalar): number {
  if (typeof v === 'number') return 9;
  if (typeof v === 'string') return 5 + 2 * v.length;
  return 1;
}

/** A tile packed as the scripts read it (see the file header). */
export function encodeTile(tile: Tile): Buffer {
  let size = 16 + 8 * tile.nums.length;
  for (const v of tile.vals) size += valueSize(v);
  const buf = Buffer.allocUnsafe(size);
  buf.writeDoubleLE(tile.minTs, 0);
  buf.writeDoubleLE(tile.maxTs, 8);
  let p = 16;
  for (const n of tile.nums) {
    buf.writeDoubleLE(n, p);
    p += 8;
  }
  for (const v of tile.vals) {
    if (v === null) buf[p++] = TAG_NULL;
    else if (v === true) buf[p++] = TAG_TRUE;
    else if (v === false) buf[p++] = TAG_FALSE;
    else if (typeof v === 'number') {
      buf[p] = TAG_NUMBER;
      buf.writeDoubleLE(v, p + 1);
      p += 9;
    } else {
      buf[p] = TAG_TEXT;
      buf.writeUInt32LE(2 * v.length, p + 1);
      p += 5;
      for (let i = 0; i < v.length; i++) {
        buf.writeUInt16BE(orderedUnit(v.charCodeAt(i)), p);
        p += 2;
      }
    }
  }
  return buf;
}

/** A packed tile of a group with `width` slots and `valueWidth` values; throws on a tile that does not fit. */
export function decodeTile(buf: Buffer, width: number, valueWidth: number): Tile {
  try {
    return unpackTile(buf, width, valueWidth);
  } catch (e) {
    if (e instanceof RangeError) throw new Error(`corrupt packed tile: ${buf.length} bytes end before the layout (${width} slots, ${valueWidth} values) does`);
    throw e;
  }
}

function unpackTile(buf: Buffer, width: number, valueWidth: number): Tile {
  const minTs = buf.readDoubleLE(0);
  const maxTs = buf.readDoubleLE(8);
  let p = 16;
  const nums: number[] = [];
  for (let i = 0; i < width; i++) {
    nums.push(buf.readDoubleLE(p));
    p += 8;
  }
  const vals: Scalar[] = [];
  for (let k = 0; k < valueWidth; k++) {
    const tag = buf[p];
    if (tag === TAG_NULL) {
      vals.push(null);
      p += 1;
    } else if (tag === TAG_TRUE || tag === TAG_FALSE) {
      vals.push(tag === TAG_TRUE);
      p += 1;
    } else if (tag === TAG_NUMBER) {
      vals.push(buf.readDoubleLE(p + 1));
      p += 9;
    } else if (tag === TAG_TEXT) {
      const bytes = buf.readUInt32LE(p + 1);
      p += 5;
      const units: number[] = new Array(bytes / 2);
      for (let i = 0; i < units.length; i++) units[i] = unitFromOrdered(buf.readUInt16BE(p + 2 * i));
      p += bytes;
      let text = '';
      for (let i = 0; i < units.length; i += 4096) text += String.fromCharCode(...units.slice(i, i + 4096));
      vals.push(text);
    } else {
      throw new Error(`corrupt packed tile: value tag ${tag} at byte ${p}`);
    }
  }
  if (p !== buf.length) throw new Error(`corrupt packed tile: ${buf.length} bytes, layout reads ${p}`);
  return { minTs, maxTs, nums, vals };
}

// ---------------------------------------------------------------------------------------------
// The store

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * An entity key as it goes into Redis key names, which are sent as UTF-8. UTF-8 cannot carry a lone
 * surrogate (it would become U+FFFD, merging distinct keys), so such a key, and any key starting
 * with NUL, is written as NUL + the hex of its UTF-16 code units; every other key is written as is.
 * The mapping is one-to-one.
 */
export function redisKeyText(entityKey: string): string {
  if (!LONE_SURROGATE.test(entityKey) && !entityKey.startsWith('\0')) return entityKey;
  let hex = '\0';
  for (let i = 0; i < entityKey.length; i++) hex += entityKey.charCodeAt(i).toString(16).padStart(4, '0');
  return hex;
}

interface GroupRuntime {
  plan: TileGroupPlan;
  /** The group's slot layout as APPLY_SCRIPT parses it. */
  layout: string;
}

interface ViewRuntime {
  view: ViewPlan;
  groups: Map<number, GroupRuntime>;
  /** Fingerprint of the tile layout of every group, stored as `layout:<view>`. */
  fingerprint: string;
}

function viewRuntime(view: ViewPlan): ViewRuntime {
  const groups = new Map<number, GroupRuntime>();
  const described: unknown[] = [];
  for (const g of view.groups) {
    const slots = groupSlots(view, g);
    const layout = [g.width, g.valueWidth, ...slots.flatMap((s) => [AGG_CODE[s.feature.agg], s.offset, s.valueOffset])].join(' ');
    groups.set(g.hopMs, { plan: g, layout });
    described.push([g.hopMs, layout]);
  }
  const fingerprint = createHash('sha256').update(JSON.stringify(described)).digest('hex').slice(0, 16);
  return { view, groups, fingerprint };
}

interface BufferEval {
  evalshaBuffer(...args: (string | number | Buffer)[]): Promise<unknown>;
  evalBuffer(...args: (string | number | Buffer)[]): Promise<unknown>;
}

function isNoScript(e: unknown): boolean {
  return e instanceof Error && e.message.startsWith('NOSCRIPT');
}

export class RedisOnlineStore implements OnlineStore {
  readonly prefix: string;
  private readonly views = new Map<string, ViewRuntime>();
  private readonly metaKey: string;
  private readonly ownsClient: boolean;
  private readiness: Promise<void> | null = null;

  constructor(
    registry: Registry,
    readonly client: RedisClient,
    options: RedisOnlineStoreOptions = {},
  ) {
    this.prefix = options.prefix ?? 'tm';
    if (this.prefix.length === 0 || /[{}]/.test(this.prefix)) {
      throw new RedisStoreError('TM_STORE_BAD_CONFIG', `Redis key prefix ${JSON.stringify(this.prefix)} must be non-empty and contain no { or }`, { prefix: this.prefix });
    }
    this.ownsClient = options.ownsClient ?? false;
    this.metaKey = `${this.prefix}:{meta}`;
    for (const view of registry.views) this.views.set(view.name, viewRuntime(view));
  }

  /** The hash of an entity key: `seen` and its fences. */
  keyHashKey(view: string, entityKey: string): string {
    return `${this.prefix}:{${view}:${redisKeyText(entityKey)}}:k`;
  }

  /** The hash of an entity key's tiles of one group. */
  tilesKey(view: string, entityKey: string, hopMs: number): string {
    return `${this.prefix}:{${view}:${redisKeyText(entityKey)}}:t:${hopMs}`;
  }

  /**
   * Once per store: check that the tiles under this prefix have this registry's layout (the
   * first store to run records it), and load the scripts where it can.
   */
  private ready(): Promise<void> {
    if (this.readiness === null) {
      this.readiness = this.checkLayouts().catch((e: unknown) => {
        this.readiness = null;
        throw e;
      });
    }
    return this.readiness;
  }

  private async checkLayouts(): Promise<void> {
    const runtimes = [...this.views.values()];
    await Promise.all(runtimes.map((r) => this.client.hsetnx(this.metaKey, `layout:${r.view.name}`, r.fingerprint)));
    const stored = runtimes.length === 0 ? [] : await this.client.hmget(this.metaKey, ...runtimes.map((r) => `layout:${r.view.name}`));
    runtimes.forEach((r, i) => {
      if (stored[i] !== r.fingerprint) {
        throw new RedisStoreError(
          'TM_STORE_LAYOUT_MISMATCH',
          `view ${r.view.name}: the tiles under Redis prefix ${this.prefix} have another layout (${stored[i]}) than these definitions (${r.fingerprint}), so they cannot be read or merged with them; materialize these definitions under a new prefix, or delete the view's keys (${this.prefix}:{${r.view.name}:*) and the field layout:${r.view.name} of ${this.metaKey}`,
          { view: r.view.name, prefix: this.prefix, stored: stored[i], expected: r.fingerprint },
        );
      }
    });
    // Best effort: calls fall back to EVAL on NOSCRIPT anyway (a restarted or new node).
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    await Promise.all(nodes.flatMap((node) => Object.values(SCRIPTS).map((s) => node.script('LOAD', s.lua)))).catch(() => undefined);
  }

  private async evalScript(script: LuaScript, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<unknown> {
    // ioredis has the Buffer-reply variants of EVALSHA/EVAL at run time but not in its types; the
    // generic callBuffer() loses its command name under enableAutoPipelining (ioredis 6.0.0).
    const client = this.client as unknown as BufferEval;
    try {
      return await client.evalshaBuffer(script.sha, keys.length, ...keys, ...args);
    } catch (e) {
      // The script did not run: send it whole (which also caches it on that node).
      if (!isNoScript(e)) throw e;
      return await client.evalBuffer(script.lua, keys.length, ...keys, ...args);
    }
  }

  async apply(batch: TileBatch): Promise<RedisApplyResult> {
    await this.ready();
    // Validate the whole batch before writing any of it.
    for (const key of batch.keys) this.checkUpdate(key);
    // Lateness is judged against the watermark before this batch, so a batch is never late to itself.
    const horizonWatermark = await this.watermarkMs();
    const trimArgs = new Map<string, Map<number, string>>();
    for (const [name, r] of this.views) {
      trimArgs.set(name, new Map([...r.groups].map(([hop, g]) => [hop, String(trimTileIndex(g.plan, horizonWatermark) ?? '')])));
    }
    const replies = await Promise.allSettled(batch.keys.map((key) => this.applyKey(key, trimArgs.get(key.view)!)));

    const result: RedisApplyResult = { appliedUpdates: 0, lateTileEvents: 0, fencedKeys: 0 };
    let tileDelta = 0;
    const newKeys = new Map<string, number>();
    let failure: PromiseRejectedResult | null = null;
    for (let i = 0; i < replies.length; i++) {
      const r = replies[i]!;
      if (r.status === 'rejected') {
        failure ??= r;
        continue;
      }
      const [fenced, isNew, applied, late, delta] = r.value;
      result.fencedKeys += fenced!;
      result.appliedUpdates += applied!;
      result.lateTileEvents += late!;
      tileDelta += delta!;
      if (isNew === 1) newKeys.set(batch.keys[i]!.view, (newKeys.get(batch.keys[i]!.view) ?? 0) + 1);
    }
    // The watermark moves only once every key of the batch is written; the counters follow
    // whatever was written, even when some keys failed (the caller retries those).
    const watermarkArg = failure === null && batch.maxEventTimeMs !== null ? String(batch.maxEventTimeMs) : '';
    if (watermarkArg !== '' || tileDelta !== 0 || newKeys.size > 0) {
      const args = [watermarkArg, String(tileDelta)];
      for (const [view, n] of newKeys) args.push(view, String(n));
      const meta = this.evalScript(SCRIPTS.meta, [this.metaKey], args);
      if (failure === null) await meta;
      else await meta.catch(() => undefined);
    }
    if (failure !== null) throw failure.reason;
    return result;
  }

  private checkUpdate(key: KeyTileUpdates): void {
    const r = this.views.get(key.view);
    if (!r) throw new RedisStoreError('TM_STORE_BAD_UPDATE', `tile update for unknown view ${key.view}`, { view: key.view });
    for (const u of key.tiles) {
      const g = r.groups.get(u.hopMs);
      if (!g) throw new RedisStoreError('TM_STORE_BAD_UPDATE', `tile update for unknown tile group ${key.view}/${u.hopMs}`, { view: key.view, hopMs: u.hopMs });
      if (u.tile.nums.length !== g.plan.width || u.tile.vals.length !== g.plan.valueWidth || !Number.isSafeInteger(u.tileIndex)) {
        throw new RedisStoreError('TM_STORE_BAD_UPDATE', `tile update ${key.view}/${u.hopMs}/${u.tileIndex} does not fit the group's layout`, { view: key.view, hopMs: u.hopMs });
      }
    }
    const f = key.fence;
    if (f && (f.source.length === 0 || !Number.isSafeInteger(f.partition) || f.partition < 0 || !Number.isSafeInteger(f.offset))) {
      throw new RedisStoreError('TM_STORE_BAD_UPDATE', `bad fence ${JSON.stringify(f)} on ${key.view} key ${key.entityKey}`, { view: key.view, fence: f });
    }
  }

  private async applyKey(key: KeyTileUpdates, trims: ReadonlyMap<number, string>): Promise<number[]> {
    const r = this.views.get(key.view)!;
    // Updates of one group go together, in batch order.
    const byHop = new Map<number, (string | Buffer)[]>();
    for (const u of key.tiles) {
      let list = byHop.get(u.hopMs);
      if (!list) byHop.set(u.hopMs, (list = []));
      list.push(String(u.tileIndex), String(u.events), encodeTile(u.tile));
    }
    const keys = [this.keyHashKey(key.view, key.entityKey)];
    const f = key.fence;
    const args: (string | Buffer)[] = f ? [f.source, String(f.partition), String(f.offset)] : ['', '', ''];
    args.push(String(byHop.size));
    for (const [hopMs, list] of byHop) {
      keys.push(this.tilesKey(key.view, key.entityKey, hopMs));
      args.push(trims.get(hopMs)!, r.groups.get(hopMs)!.layout, String(list.length / 3), ...list);
    }
    return (await this.evalScript(SCRIPTS.apply, keys, args)) as number[];
  }

  async readTiles(view: string, entityKeys: readonly string[], ranges: readonly TileRange[]): Promise<(KeyTiles | null)[]> {
    const r = this.views.get(view);
    if (!r) return entityKeys.map(() => null);
    await this.ready();
    const wanted = ranges.filter((range) => r.groups.has(range.hopMs));
    const rangeArgs = wanted.flatMap((range) => [String(range.fromIndex), String(range.toIndex)]);
    const replies = await Promise.all(
      entityKeys.map((entityKey) =>
        this.evalScript(SCRIPTS.read, [this.keyHashKey(view, entityKey), ...wanted.map((range) => this.tilesKey(view, entityKey, range.hopMs))], rangeArgs),
      ),
    );
    return replies.map((reply) => {
      const [exists, ...groups] = reply as [number, ...Buffer[][]];
      if (exists !== 1) return null;
      const keyTiles = new Map<number, Map<number, Tile>>();
      wanted.forEach((range, g) => {
        const found = groups[g] ?? [];
        if (found.length === 0) return;
        const plan = r.groups.get(range.hopMs)!.plan;
        const tiles = new Map<number, Tile>();
        for (let i = 0; i < found.length; i += 2) tiles.set(Number(found[i]!.toString('latin1')), decodeTile(found[i + 1]!, plan.width, plan.valueWidth));
        keyTiles.set(range.hopMs, tiles);
      });
      return keyTiles;
    });
  }

  async watermarkMs(): Promise<number | null> {
    const text = await this.client.hget(this.metaKey, 'watermark');
    return text === null ? null : Number(text);
  }

  async stats(): Promise<StoreStats> {
    const meta = await this.client.hgetall(this.metaKey);
    const keys: Record<string, number> = {};
    for (const name of this.views.keys()) keys[name] = Number(meta[`keys:${name}`] ?? 0);
    return { keys, tiles: Number(meta.tiles ?? 0), watermarkMs: meta.watermark === undefined ? null : Number(meta.watermark) };
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.quit();
  }
}

/**
 * A client for a Redis URL: `redis://[user:password@]host:port[/db]` (or `rediss://`) for one
 * Redis, `redis-cluster://[user:password@]host:port,host:port,...` for a Redis Cluster (the nodes
 * are seeds; the client discovers the rest). Commands issued together are pipelined
 * (enableAutoPipelining), one pipeline per Cluster node.
 */
export function createRedisClient(url: string, options: RedisOptions = {}): RedisClient {
  const cluster = /^redis-cluster:\/\/(?:([^@/]*)@)?([^/]+)\/?$/.exec(url);
  if (cluster) {
    const [, credentials, hosts] = cluster;
    const redisOptions: RedisOptions = { ...options };
    if (credentials) {
      const i = credentials.indexOf(':');
      if (i >= 0) {
        if (i > 0) redisOptions.username = decodeURIComponent(credentials.slice(0, i));
        redisOptions.password = decodeURIComponent(credentials.slice(i + 1));
      } else redisOptions.username = decodeURIComponent(credentials);
    }
    const nodes: ClusterNode[] = hosts!.split(',').map((hostPort) => {
      const i = hostPort.lastIndexOf(':');
      const port = Number(hostPort.slice(i + 1));
      if (i <= 0 || !Number.isInteger(port)) throw new RedisStoreError('TM_STORE_BAD_CONFIG', `bad Redis Cluster node ${hostPort} in ${url}: expected host:port`, { url });
      return { host: hostPort.slice(0, i), port };
    });
    return new Cluster(nodes, { enableAutoPipelining: true, redisOptions });
  }
  if (!/^rediss?:\/\//.test(url)) {
    throw new RedisStoreError('TM_STORE_BAD_CONFIG', `bad Redis URL ${url}: expected redis://host:port, rediss://host:port or redis-cluster://host:port,host:port`, { url });
  }
  return new Redis(url, { enableAutoPipelining: true, ...options });
}

/** A store over a client it owns (closed by close()), for a URL as createRedisClient takes. */
export function connectRedisOnlineStore(registry: Registry, url: string, options: Omit<RedisOnlineStoreOptions, 'ownsClient'> = {}): RedisOnlineStore {
  return new RedisOnlineStore(registry, createRedisClient(url), { ...options, ownsClient: true });
}
