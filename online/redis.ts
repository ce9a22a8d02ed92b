// Redis OnlineStore (ioredis; a single Redis or a Redis Cluster). It keeps the same tiles as
// MemoryOnlineStore and merges them with the same arithmetic, in the same order, so every read
// (online/read.ts) answers with the same values bit for bit.
//
// Key layout, under a prefix P (default `tm`; no braces in it). <ns> is the view version's
// namespace `<view>@<version id>` (viewNamespace: a hash of what decides the view's tiles), so two
// versions of a view keep their keys apart and can be served at once (online/versions.ts):
//
//   P:{<ns>:<entityKey>}:k            hash: `seen` = 1 once the key was applied (a key with no tile
//                                     inside retention still exists, as in MemoryOnlineStore),
//                                     `fence:<source>:<partition>` = the key's fence F of that
//                                     partition: every event of the key from it with offset <= F is
//                                     merged, none after (ingest/fences.ts), and `lo:<hopMs>` = a
//                                     lower bound of the group's stored tile indexes (for trimming)
//   P:{<ns>:<entityKey>}:t:<hopMs>    hash: tile index (decimal) -> packed tile, one per tile group
//                                     (hop 0 is the all-time latest cell of `last` without window);
//                                     and `<span>:<index>` -> the rollup tile of that level over
//                                     the group's tiles [i*span, (i+1)*span): a cache built by reads
//                                     (ROLLUP_LUA) and dropped by the writes that change a tile under
//                                     it, trimmed with the group at ceil(trim / span); and `c`, `c@`:
//                                     the group's closed windows at head tile `c@` (READ_SCRIPT).
//   P:{meta}                          hash: `watermark` (greatest materialized event time, ms),
//                                     `tiles` (stored tile count), `keys:<ns>` (entity keys seen),
//                                     `fp:<ns>` (fingerprint of the version's tile layout, checked
//                                     by every store before its first read or write), and the
//                                     version records of online/versions.ts (`status:<ns>`,
//                                     `version:<ns>`, `view:<view>`)
//
// <entityKey> is the canonical entity key id as is, unless it holds a lone surrogate (which UTF-8
// key names cannot carry) or starts with NUL: then NUL + the hex of its UTF-16 code units.
// The hash tag `{<ns>:<entityKey>}` puts every key of one entity of one view version in one Cluster hash
// slot, so one script can update them atomically. (An entity key containing `}` cuts the tag short;
// all keys of that entity still share the cut tag, so they still share a slot.)
//
// A packed tile, little-endian: minTs f64, maxTs f64, `width` f64 slots (Tile.nums, NaN kept), then
// `valueWidth` values (Tile.vals), each a tag byte and a payload: `z` null, `F` false, `T` true,
// `n` + f64, `s` + u32 byte length + the text as UTF-16 code units, 2 bytes big-endian each, mapped
// so that comparing bytes compares code points (compareCodePoints): units below D800 stay, E000-FFFF
// move to D800-F7FF, surrogates D800-DFFF move to F800-FFFF; `h` + u32 pair count + that many
// (i32 bucket index, f64 count) pairs in ascending index order: approx_percentile's bucket counts
// (one form per state, as the scripts merge them: mergeBucketCounts). Doubles never pass through
// text, so every number round-trips exactly, and so does any JS string (lone surrogates included,
// which UTF-8 would replace). The scripts compare text bytewise by hand: Lua's `<` on strings uses
// strcoll, which follows the server's locale.
//
// Writes: apply() and applyConditional() read the watermark, then send EVALSHAs of APPLY_SCRIPT,
// each merging up to maxKeysPerCall entity keys (on a Cluster, keys of one hash slot), all at
// once (pipelined; ioredis routes each to its slot's node). The updates travel as one binary blob
// per call (applyCall documents it), tiles packed as above, so Redis parses two arguments rather
// than three per tile. Per key the script reads the key hash once (HMGET of seen, fences and lower
// bounds), checks the fences, then per group reads the stored tiles of the update at once (HMGET),
// merges (mergeSlots in Lua, generated from definitions/aggregations), writes them back at once
// (HSET) and drops the rollup tiles over them (HDEL); tiles behind the retention
// horizon of the watermark before the batch are skipped (counted as late), and a series that
// gains a tile drops its tiles behind the horizon: the range [lo, trim) by name when it is short,
// else by scanning the hash. Each key is one atomic step with its fences:
//
// - apply(): a key's optional plain fence (KeyTileUpdates.fence) skips the whole key update when
//   the stored fence of its partition is at or past the update's offset (a redelivery of the same
//   cut). Without fences apply() is not idempotent: a batch applied twice counts twice.
// - applyConditional(): compare-and-set fences (CasFence), one per partition the update holds
//   events of: the key is merged and its fences set only if each stored fence is at most the
//   fence's appliedThrough; otherwise the key is left untouched and reported with its stored
//   fences, so the caller can rebuild it from the events after them (ingest/fences.ts). That read
//   and that write are one script: no other writer can move a fence in between.
//
// A last call (META_SCRIPT) advances the watermark and the counters, after the tiles and only when
// every key was written (none failed or was refused), so a reader at the watermark clock never
// sees a watermark ahead of the tiles. The counters (stats only) can fall behind if the process
// dies between the two steps; values never depend on them. A script holds Redis for its whole
// run, so maxKeysPerCall and maxTileUpdatesPerCall bound what a read waits behind (about half a
// millisecond by default).
//
// Reads: readTiles() sends one EVALSHA of READ_SCRIPT for all the entity keys of a read (per hash
// slot on a Cluster, all pipelined, so one round trip per node; at most maxKeysPerCall keys per
// call) and gets back only the tiles inside the requested ranges: per key and group hash one
// HMGET of every wanted field, its own tiles' and its rollup levels' together (or HGETALL and
// filter when the hash holds fewer fields than asked); a rollup tile asked for and not stored is
// built there from the tiles under it, and stored.
import { createHash } from 'node:crypto';
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import {
  canonicalJson,
  emptyTile,
  groupSlots,
  TidemarkError,
  tileSeries,
  tileTemplate,
  trimTileIndex,
  isTlsCertificateError,
  withoutPassword,
  withoutSecrets,
  type ErrorCode,
  type BucketCounts,
  type KeyTileUpdates,
  type Registry,
  type Tile,
  type TileBatch,
  type TileGroupPlan,
  type TileSeries,
  type TileUpdate,
  type TileValue,
  type ViewPlan,
} from '../definitions/index.js';
import { closedWindowBlocks } from './read.js';
import { luaMergeSlot, LUA_AGG_CODE } from '../definitions/aggregations/index.js';
import type { CasFence, ConditionalApplyResult as IngestConditionalApplyResult, ConditionalKeyTileUpdates, ConditionalTileBatch } from '../ingest/index.js';
import { closedSeries, readAfterWatermark, type ApplyResult, type ClosedWindows, type KeyTiles, type OnlineStore, type StoreStats, type TileRange } from './store.js';

export type RedisClient = Redis | Cluster;

export interface RedisOnlineStoreOptions {
  /** Key prefix (namespace) of every key of this store; default `tm`. No `{` or `}`. */
  prefix?: string;
  /** Quit the client on close(); default false (the caller owns a client it passes in). */
  ownsClient?: boolean;
  /**
   * Most entity keys merged by one script call; default 64. Bigger calls cost Redis less per key,
   * but a script holds the server for its whole run, and reads wait behind it.
   */
  maxKeysPerCall?: number;
  /**
   * A call closes once its keys hold this many tile updates (a key is never split); default 256,
   * about half a millisecond of Redis time (a tile update costs it 1 to 3 us).
   */
  maxTileUpdatesPerCall?: number;
  /**
   * Refuse to read or write a view version that is not ready (status field `status:<namespace>` of
   * the meta hash, see online/versions.ts): reads and writes of a version still to bootstrap fail
   * with TM_STORE_NEEDS_BOOTSTRAP, and with TM_STORE_STATE_LOST when the field is gone (Redis lost
   * its data). `tidemark serve` and `tidemark materialize` set it; default false.
   */
  requireReadyVersions?: boolean;
  /**
   * How long a script call keeps retrying while a Redis Cluster moves its slot (ASK, MOVED,
   * TRYAGAIN, CLUSTERDOWN) before failing with the retryable TM_STORE_SLOT_MIGRATING; default
   * 10 000 ms. A legacy migration moves a slot key by key, and a script whose keys are split between
   * the two nodes cannot run until the slot is whole again (seconds at most, per slot).
   */
  clusterRetryMs?: number;
}

export interface RedisApplyResult extends ApplyResult {
  /** Key updates skipped whole because their plain fence showed them applied already (redelivery). */
  fencedKeys: number;
  /** The watermark after this apply (greatest materialized event time), null before any event. */
  watermarkMs: number | null;
}

export type { CasFence, ConditionalKeyTileUpdates, ConditionalTileBatch };

export interface ConditionalApplyResult extends RedisApplyResult, IngestConditionalApplyResult {}

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

/**
 * Shared Lua: packed tiles, the `last` value order, and mergeSlots (mergeSlot and addCompensated
 * generated from definitions/aggregations). Exported for the aggregation conformance test.
 */
export const LUA_TILES = `
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

-- approx_percentile: packed bucket counts a and b (\`z\` while empty) merged into packed counts,
-- walking both ascending and adding the counts of equal indexes (integers: exact in doubles)
local function mergeBucketCounts(a, b)
  if string.byte(b, 1) == 122 then return a end
  if string.byte(a, 1) == 122 then return b end
  local na, pa = struct.unpack('<I4', a, 2)
  local nb, pb = struct.unpack('<I4', b, 2)
  local ka, ca, kb, cb
  if na > 0 then ka, ca, pa = struct.unpack('<i4d', a, pa) end
  if nb > 0 then kb, cb, pb = struct.unpack('<i4d', b, pb) end
  local out, n = {}, 0
  while na > 0 or nb > 0 do
    local k, c
    if nb == 0 or (na > 0 and ka < kb) then
      k, c = ka, ca
      na = na - 1
      if na > 0 then ka, ca, pa = struct.unpack('<i4d', a, pa) end
    elseif na == 0 or kb < ka then
      k, c = kb, cb
      nb = nb - 1
      if nb > 0 then kb, cb, pb = struct.unpack('<i4d', b, pb) end
    else
      k, c = ka, ca + cb
      na, nb = na - 1, nb - 1
      if na > 0 then ka, ca, pa = struct.unpack('<i4d', a, pa) end
      if nb > 0 then kb, cb, pb = struct.unpack('<i4d', b, pb) end
    end
    n = n + 1
    out[n] = struct.pack('<i4d', k, c)
  end
  return 'h' .. struct.pack('<I4', n) .. table.concat(out)
end

-- layout: "width valueWidth agg offset valueOffset agg offset valueOffset ..." (offsets 0-based).
-- A tile in Lua is a table {minTs, maxTs, nums...} (so a slot at offset o sits at o + 3) and a
-- table of its packed values.
local function parseLayout(text)
  local words = {}
  for w in string.gmatch(text, '%S+') do words[#words + 1] = w end
  local width = tonumber(words[1])
  local layout = { width = width, valueWidth = tonumber(words[2]), fmt = '<dd' .. string.rep('d', width), slots = {} }
  for i = 3, #words, 3 do
    layout.slots[#layout.slots + 1] = { agg = words[i], o = tonumber(words[i + 1]) + 3, vo = tonumber(words[i + 2]) + 1 }
  end
  return layout
end

-- the packed tile at byte position at of blob (an update sits inside the apply blob)
local function readTile(blob, at, layout)
  local t = { struct.unpack(layout.fmt, blob, at) }
  local p = t[#t]
  t[#t] = nil
  local vals = {}
  for k = 1, layout.valueWidth do
    local tag = string.byte(blob, p)
    local size = 1
    if tag == 110 then
      size = 9
    elseif tag == 115 then
      size = 5 + struct.unpack('<I4', blob, p + 1)
    elseif tag == 104 then
      size = 5 + 12 * struct.unpack('<I4', blob, p + 1)
    end
    vals[k] = string.sub(blob, p, p + size - 1)
    p = p + size
  end
  return t, vals
end

local function writeTile(t, vals, layout)
  local head = struct.pack(layout.fmt, unpack(t, 1, 2 + layout.width))
  if layout.valueWidth == 0 then return head end
  return head .. table.concat(vals, '', 1, layout.valueWidth)
end

${luaMergeSlot()}
-- merge tile (b, bv) into tile (a, av), as mergeTileInto
local function mergeInto(a, av, b, bv, layout)
  if b[1] < a[1] then a[1] = b[1] end
  if b[2] > a[2] then a[2] = b[2] end
  for _, s in ipairs(layout.slots) do mergeSlot(s.agg, s.o, s.vo, a, av, b, bv) end
end

-- a stored packed tile with a packed update merged in (the aggregation conformance test folds with it)
local function mergeTiles(stored, update, at, layout)
  local a, av = readTile(stored, 1, layout)
  local b, bv = readTile(update, at, layout)
  mergeInto(a, av, b, bv, layout)
  return writeTile(a, av, layout)
end

-- redis.call with a key and a long list of arguments, in chunks (Lua's unpack is bounded);
-- returns the sum of the integer replies
local function callChunked(command, key, list, step)
  local n = 0
  for i = 1, #list, step do
    n = n + redis.call(command, key, unpack(list, i, math.min(#list, i + step - 1)))
  end
  return n
end
`;

/**
 * Lua fieldIndex(f, prefix): the tile index of field f of a group's tiles hash in the series with
 * field prefix `prefix` ('' for the group's own tiles, '<span>:' for a rollup level), nil for a
 * field of another series: for the apply script's trims.
 */
const LUA_FIELD_INDEX = `
local function fieldIndex(f, prefix)
  local n = #prefix
  -- tonumber of a rollup field ('6:12') is nil, so the group's own tiles skip them
  if n == 0 then return tonumber(f) end
  if string.sub(f, 1, n) == prefix then return tonumber(string.sub(f, n + 1)) end
  return nil
end
`;

/**
 * Merge the tile updates of several entity keys (all in one hash slot on a Cluster), each key
 * atomically with its fence. ARGV[1]: the apply blob (see applyCall); ARGV[2...]: its string table
 * (fence fields; per tile group, its layout, its lower-bound field and its rollup spans). KEYS, per
 * entity key in blob order: its key hash, then the tiles hash of each of its groups.
 * Per key: one HMGET of its key hash (fence, seen, lower bounds), then per group one HMGET and one
 * HSET of its tiles, one HDEL of the rollup tiles over them (reads build those again, see
 * ROLLUP_LUA), and one HSET of the key hash; trimming deletes a known range (HDEL).
 * Returns {applied updates, late tile events, tile count change, keys skipped by a plain fence,
 * {new keys: blob index (0-based), ...}, {{refused key: blob index, its stored fences ('-1' for
 * none), in its fences' order}, ...}, {key with late tile events: blob index, events, ...}}.
 */
const APPLY_SCRIPT = `${LUA_TILES}${LUA_FIELD_INDEX}
local blob = ARGV[1]
local nKeys, p = struct.unpack('<I4', blob, 1)
local k = 1
local applied, late, delta, fenced = 0, 0, 0, 0
local newKeys, refused, lateKeys = {}, {}, {}

-- a group's layout with its rollup spans, parsed once per call: ARGV[d] its slot layout, ARGV[d + 1]
-- its lower-bound field, ARGV[d + 2] its rollup spans
local layouts = {}
local function groupLayout(d)
  local layout = layouts[d]
  if layout == nil then
    layout = parseLayout(ARGV[d])
    layout.spans = {}
    for w in string.gmatch(ARGV[d + 2], '%S+') do layout.spans[#layout.spans + 1] = tonumber(w) end
    layouts[d] = layout
  end
  return layout
end

-- the fields of one series of a tiles hash (field prefix '' for the group's own tiles, '<span>:' for
-- a rollup level) with an index below trim, appended to old; lo is a lower bound of its indexes, nil
-- when unknown (then the hash is scanned). hash = {key = ...} caches HLEN and HKEYS for one group.
local function trimFields(hash, prefix, lo, trim, old)
  if lo ~= nil and trim - lo > 32 and hash.len == nil then hash.len = redis.call('HLEN', hash.key) end
  if lo ~= nil and (trim - lo <= 32 or trim - lo <= hash.len) then
    for j = lo, trim - 1 do old[#old + 1] = prefix .. string.format('%d', j) end
    return
  end
  if hash.keys == nil then hash.keys = redis.call('HKEYS', hash.key) end
  for _, f in ipairs(hash.keys) do
    local index = fieldIndex(f, prefix)
    if index ~= nil and index < trim then old[#old + 1] = f end
  end
end

for i = 1, nKeys do
  local size, mode, groups, nFences
  size, mode, groups, nFences, p = struct.unpack('<I4BHH', blob, p)
  local recordEnd = p + size
  local keyHash = KEYS[k]
  -- one read of the key hash: seen, its fences, the lower bounds of its groups
  local wanted = { 'seen' }
  local fenceFields, offsets, conds = {}, {}, {}
  for f = 1, nFences do
    local at
    at, offsets[f], conds[f], p = struct.unpack('<I2dd', blob, p)
    fenceFields[f] = ARGV[at]
    wanted[1 + f] = fenceFields[f]
  end
  local descriptors, trims, loAt = {}, {}, {}
  for g = 1, groups do
    descriptors[g], trims[g], p = struct.unpack('<I2d', blob, p)
    if trims[g] == trims[g] then
      local loField = ARGV[descriptors[g] + 1]
      wanted[#wanted + 1] = loField
      loAt[g] = #wanted
    end
  end
  local state = redis.call('HMGET', keyHash, unpack(wanted))
  local seen = state[1]
  local skip = false
  if mode == 1 then
    -- plain fence: skip an update this key has applied already
    local stored = state[2]
    if stored and tonumber(stored) >= offsets[1] then
      skip = true
      fenced = fenced + 1
    end
  elseif mode == 2 then
    -- compare-and-set: refuse the key if a write moved a fence past what its update was built from
    for f = 1, nFences do
      local stored = state[1 + f]
      if stored and tonumber(stored) > conds[f] then skip = true end
    end
    if skip then
      local entry = { i - 1 }
      for f = 1, nFences do entry[1 + f] = state[1 + f] or '-1' end
      refused[#refused + 1] = entry
    end
  end
  if skip then
    p = recordEnd
  else
    local keyWrites = {}
    for f = 1, nFences do
      keyWrites[#keyWrites + 1] = fenceFields[f]
      keyWrites[#keyWrites + 1] = string.format('%d', offsets[f])
    end
    if not seen then
      keyWrites[#keyWrites + 1] = 'seen'
      keyWrites[#keyWrites + 1] = '1'
      newKeys[#newKeys + 1] = i - 1
    end
    local keyLate = 0
    for g = 1, groups do
      local tilesKey = KEYS[k + g]
      local d, trim = descriptors[g], trims[g]
      local hasTrim = trim == trim
      local count
      count, p = struct.unpack('<I4', blob, p)
      local fields, starts, lens, indexes = {}, {}, {}, {}
      for _ = 1, count do
        local index, events, len
        index, events, len, p = struct.unpack('<dI4I4', blob, p)
        if hasTrim and index < trim then
          keyLate = keyLate + events
        else
          local n = #fields + 1
          fields[n] = string.format('%d', index)
          starts[n] = p
          lens[n] = len
          indexes[n] = index
        end
        p = p + len
      end
      if #fields > 0 then
        local layout = groupLayout(d)
        local spans = layout.spans
        -- the updated tiles and the closed windows' head ('c@', if stored: changing a tile before it drops them)
        local want = {}
        for j = 1, #fields do want[j] = fields[j] end
        local closedAt = #want + 1
        want[closedAt] = 'c@'
        local stored = {}
        for j = 1, #want, 1000 do
          local part = redis.call('HMGET', tilesKey, unpack(want, j, math.min(#want, j + 999)))
          for m = 1, #part do stored[j + m - 1] = part[m] end
        end
        -- (a key's tile indexes are distinct within a group: the store checks that before sending)
        local writes = {}
        local minAdded = nil
        for j = 1, #fields do
          local tile
          if stored[j] then
            tile = mergeTiles(stored[j], blob, starts[j], layout)
          else
            tile = string.sub(blob, starts[j], starts[j] + lens[j] - 1)
            delta = delta + 1
            if minAdded == nil or indexes[j] < minAdded then minAdded = indexes[j] end
          end
          writes[#writes + 1] = fields[j]
          writes[#writes + 1] = tile
        end
        applied = applied + #fields
        callChunked('HSET', tilesKey, writes, 1000)
        -- rollup tiles are a cache that reads build (README "Rollup tiles"): drop every one over a changed tile
        if #spans > 0 then
          local drop, dropped = {}, {}
          for l = 1, #spans do
            local span = spans[l]
            for j = 1, #indexes do
              local field = string.format('%d:%d', span, math.floor(indexes[j] / span))
              if dropped[field] == nil then
                dropped[field] = true
                drop[#drop + 1] = field
              end
            end
          end
          callChunked('HDEL', tilesKey, drop, 1000)
        end
        if stored[closedAt] then
          local head, least = tonumber(stored[closedAt]), indexes[1]
          for j = 2, #indexes do if indexes[j] < least then least = indexes[j] end end
          if least < head then redis.call('HDEL', tilesKey, 'c', 'c@') end
        end
        if hasTrim and minAdded ~= nil then
          -- as MemoryOnlineStore: a group that gains a tile drops its tiles behind the horizon and
          -- each rollup level's over any of them (rollupTrimIndex: before ceil(trim / span)); lo (field lo:<hop> of the key hash) is a
          -- lower bound of the group's tile indexes, so a known range is deleted by name rather than
          -- the hash scanned (a level's tiles lie at or after floor(lo / span): each is built from
          -- stored tiles under it). Without one (tiles stored before the first horizon) the hash is
          -- scanned once.
          local loText = state[loAt[g]]
          local lo = nil
          if loText then lo = math.min(tonumber(loText), minAdded) elseif not seen then lo = minAdded end
          if lo == nil or lo < trim then
            local hash, old, rolled = { key = tilesKey }, {}, {}
            trimFields(hash, '', lo, trim, old)
            for l = 1, #spans do
              local span = spans[l]
              local levelLo, levelTrim = lo and math.floor(lo / span), math.floor((trim + span - 1) / span)
              if levelLo == nil or levelLo < levelTrim then trimFields(hash, string.format('%d:', span), levelLo, levelTrim, rolled) end
            end
            -- only the group's own tiles count in the stats (rollup tiles come and go with reads)
            if #old > 0 then delta = delta - callChunked('HDEL', tilesKey, old, 1000) end
            if #rolled > 0 then callChunked('HDEL', tilesKey, rolled, 1000) end
            lo = trim
          end
          if not loText or tonumber(loText) ~= lo then
            keyWrites[#keyWrites + 1] = ARGV[d + 1]
            keyWrites[#keyWrites + 1] = string.format('%d', lo)
          end
        end
      end
    end
    if #keyWrites > 0 then redis.call('HSET', keyHash, unpack(keyWrites)) end
    if keyLate > 0 then
      late = late + keyLate
      lateKeys[#lateKeys + 1] = i - 1
      lateKeys[#lateKeys + 1] = keyLate
    end
  end
  k = k + 1 + groups
end
return {applied, late, delta, fenced, newKeys, refused, lateKeys}
`;

/**
 * Tiles of several entity keys inside the same ranges (one call per read, or per hash slot on a
 * Cluster). ARGV[1]: h, the tiles hashes per key; then per hash: its group's rollup spans
 * (space-separated), its slot layout, its series count, and per series (a group's own tiles or
 * one rollup level, which share the group's hash): its field prefix ('' or '<span>:'), its range
 * count r, then r pairs of first and last tile index; then '0', or '1' and the group's closed
 * windows asked for (see closedRecord). KEYS, per entity key: its key hash, then its h tiles
 * hashes.
 * Per key and hash, one HMGET of every wanted field (series and ranges together, and the closed
 * windows' record), or one HGETALL when the hash holds fewer fields than that; a record for
 * another head costs one more HMGET of the window blocks and an HSET; a rollup tile not stored
 * one HMGET per level built (buildRollup) and an HSET. Returns per key 0 for a key
 * never applied, else one string: per series in ARGV order, u32 tile count, then per tile f64
 * index, u32 length, the tile; then per hash with closed windows, u32 length and the record.
 * With a last ARGV 'w' and a last key (the meta hash; single Redis only, where every key is on one
 * node), one more element after the keys' replies: the watermark ('' for none), read in the same atomic step as
 * the tiles, so a read needs no round trip of its own for it.
 */
const READ_SCRIPT = `${LUA_TILES}
local h = tonumber(ARGV[1])
local a = 2
-- the plan, shared by every key: per hash its rollup spans, its layout (parsed when a rollup tile
-- or a record is built: hashLayout), its series, their ranges and the fields they name
local hashes = {}
local seriesCount = 0
for x = 1, h do
  local hash = { series = {}, n = 0, spans = {}, levelOf = {}, layoutText = ARGV[a + 1] }
  for w in string.gmatch(ARGV[a], '%S+') do
    hash.spans[#hash.spans + 1] = tonumber(w)
    hash.levelOf[w] = #hash.spans
  end
  local ns = tonumber(ARGV[a + 2])
  a = a + 3
  for _ = 1, ns do
    seriesCount = seriesCount + 1
    local prefix, nr = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    local ranges = {}
    for _ = 1, nr do
      local from, to = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
      a = a + 2
      if to >= from then
        ranges[#ranges + 1] = { from, to }
        hash.n = hash.n + to - from + 1
      end
    end
    local level = 0
    if prefix ~= '' then level = hash.levelOf[string.sub(prefix, 1, -2)] end
    hash.series[#hash.series + 1] = { prefix = prefix, ranges = ranges, slot = seriesCount, level = level }
  end
  -- '1': the group's closed windows at a head tile are asked for: the head index, the count of the
  -- arguments that follow (its initial tile, then per feature (layout slot) its block fields in
  -- merge order), parsed only when a record has to be folded (closedPlan)
  local asked = ARGV[a]
  a = a + 1
  if asked == '1' then
    hash.closed = { head = tonumber(ARGV[a]), from = a + 2 }
    a = a + 2 + tonumber(ARGV[a + 1])
  end
  hashes[x] = hash
end

local function hashLayout(hash)
  if hash.layout == nil then hash.layout = parseLayout(hash.layoutText) end
  return hash.layout
end

-- Rollup tile r of level l (span spans[l]) of a tiles hash, when it is not stored: built from the
-- tiles one level down under it ([r*m, r*m + m - 1], m = spans[l] / spans[l - 1]; the group's own
-- tiles under level 1), each stored or built the same way: the first there copied, the others
-- merged into it in ascending order, as MemoryOnlineStore builds them (definitions/tiles.ts,
-- rollupChildren), so both stores hold the same bits. Stored once built (pcall: a reader that may
-- not write still answers); false when no tile lies under it. built: this key's tiles built so far.
local function buildRollup(hash, key, l, r, built)
  local name = string.format('%d:%d', hash.spans[l], r)
  if built[name] ~= nil then return built[name] end
  local below = 1
  if l > 1 then below = hash.spans[l - 1] end
  local m = hash.spans[l] / below
  local prefix = ''
  if l > 1 then prefix = string.format('%d:', below) end
  local names = {}
  for j = 1, m do names[j] = prefix .. string.format('%d', r * m + j - 1) end
  local got = redis.call('HMGET', key, unpack(names))
  local first, acc, accv = nil, nil, nil
  for j = 1, m do
    local child = got[j]
    if not child and l > 1 then child = buildRollup(hash, key, l - 1, r * m + j - 1, built) end
    if child then
      if first == nil then
        first = child
      else
        local layout = hashLayout(hash)
        if acc == nil then acc, accv = readTile(first, 1, layout) end
        local b, bv = readTile(child, 1, layout)
        mergeInto(acc, accv, b, bv, layout)
      end
    end
  end
  local packed = false
  if first ~= nil then
    packed = first
    if acc ~= nil then packed = writeTile(acc, accv, hashLayout(hash)) end
    redis.pcall('HSET', key, name, packed)
  end
  built[name] = packed
  return packed
end

-- The level and index of a rollup field ('<span>:<index>'), nil for any other field.
local function rollupField(hash, field)
  local colon = string.find(field, ':', 1, true)
  if colon == nil then return nil end
  local l = hash.levelOf[string.sub(field, 1, colon - 1)]
  if l == nil then return nil end
  return l, tonumber(string.sub(field, colon + 1))
end

-- the fields a hash's ranges name, built once and only when asked by name (a range may be wide),
-- then its closed windows' field 'c' (slot 0) when they are asked for
local function fieldsOf(hash)
  if hash.fields == nil then
    hash.fields, hash.slot, hash.index, hash.level = {}, {}, {}, {}
    for _, series in ipairs(hash.series) do
      for _, range in ipairs(series.ranges) do
        for i = range[1], range[2] do
          local text = string.format('%d', i)
          hash.fields[#hash.fields + 1] = series.prefix .. text
          hash.slot[#hash.fields] = series.slot
          hash.index[#hash.fields] = i
          hash.level[#hash.fields] = series.level
        end
      end
    end
    if hash.closed then
      hash.fields[#hash.fields + 1] = 'c'
      hash.slot[#hash.fields] = 0
      hash.level[#hash.fields] = 0
    end
  end
  return hash.fields
end

-- A group's closed windows at the asked head: the stored record 'c' when it is for that head, else
-- folded here from the blocks (each feature's slots from the initial tile, its blocks merged newest
-- first, as evaluation folds them; a rollup block not stored is built) and stored (even when empty)
-- unless a record for a later head is, with 'c@' its head (the apply script drops both when it
-- changes a tile before that head). A record: f64 head, f64 greatest event time per feature (NaN
-- for none), the packed tile.
-- the fold's plan from the arguments (once per call, on the first record to fold)
local function closedPlan(c)
  local a = c.from
  -- the initial tile comes as hex: with a binary argument ioredis would send every argument as a buffer of its own
  c.init = string.gsub(ARGV[a], '%x%x', function(cc) return string.char(tonumber(cc, 16)) end)
  c.blocks = {}
  local nf = tonumber(ARGV[a + 1])
  a = a + 2
  for f = 1, nf do
    local nb, list = tonumber(ARGV[a]), {}
    for b = 1, nb do list[b] = ARGV[a + b] end
    c.blocks[f] = list
    a = a + 1 + nb
  end
end

local function closedRecord(hash, key, stored, built)
  local c = hash.closed
  local storedHead = stored and struct.unpack('<d', stored, 1)
  if storedHead == c.head then return stored end
  if c.fields == nil then
    closedPlan(c)
    c.fields, c.at = {}, {}
    for f = 1, #c.blocks do
      for _, field in ipairs(c.blocks[f]) do
        if c.at[field] == nil then
          c.fields[#c.fields + 1] = field
          c.at[field] = #c.fields
        end
      end
    end
  end
  local got = {}
  for j = 1, #c.fields, 1000 do
    local part = redis.call('HMGET', key, unpack(c.fields, j, math.min(#c.fields, j + 999)))
    for m = 1, #part do got[j + m - 1] = part[m] end
  end
  for j = 1, #c.fields do
    if not got[j] then
      local l, r = rollupField(hash, c.fields[j])
      if l ~= nil then got[j] = buildRollup(hash, key, l, r, built) end
    end
  end
  local layout = hashLayout(hash)
  local acc, accv = readTile(c.init, 1, layout)
  local parsed, times = {}, {}
  for f = 1, #c.blocks do
    local s, latest = layout.slots[f], nil
    for _, field in ipairs(c.blocks[f]) do
      local at = c.at[field]
      local blob = got[at]
      if blob then
        local tile = parsed[at]
        if tile == nil then
          local t, v = readTile(blob, 1, layout)
          tile = { t = t, v = v }
          parsed[at] = tile
        end
        mergeSlot(s.agg, s.o, s.vo, acc, accv, tile.t, tile.v)
        if latest == nil or tile.t[2] > latest then latest = tile.t[2] end
      end
    end
    times[f] = latest or (0 / 0)
  end
  local record = struct.pack('<d', c.head)
  if #times > 0 then record = record .. struct.pack('<' .. string.rep('d', #times), unpack(times)) end
  record = record .. writeTile(acc, accv, layout)
  if storedHead == nil or storedHead < c.head then
    -- pcall: a reader that may not write (a replica, an ACL user without HSET) still answers, folding every time
    redis.pcall('HSET', key, 'c', record, 'c@', string.format('%d', c.head))
  end
  return record
end

local function inRanges(ranges, i)
  for _, range in ipairs(ranges) do
    if i >= range[1] and i <= range[2] then return true end
  end
  return false
end

-- A rollup level's tiles inside a series' ranges from a whole hash (HGETALL): stored, or built
-- where a stored tile lies under them (any level below), in ascending index order.
local function rollupsFromAll(hash, key, series, all, built, f)
  local l, span = series.level, hash.spans[series.level]
  local stored, wanted, order = {}, {}, {}
  for m = 1, #all, 2 do
    local field = all[m]
    local index, fl = tonumber(field), 0
    if index == nil then fl, index = rollupField(hash, field) end
    if fl ~= nil and fl <= l then
      local r = index
      if fl < l then
        local from = 1
        if fl > 0 then from = hash.spans[fl] end
        r = math.floor(index * from / span)
      else
        stored[r] = all[m + 1]
      end
      if wanted[r] == nil and inRanges(series.ranges, r) then
        wanted[r] = true
        order[#order + 1] = r
      end
    end
  end
  table.sort(order)
  for _, r in ipairs(order) do
    local tile = stored[r] or buildRollup(hash, key, l, r, built)
    if tile then
      f[#f + 1] = struct.pack('<dI4', r, #tile)
      f[#f + 1] = tile
    end
  end
end

-- after the plan, 'w': the last key is the meta hash, whose watermark comes after the keys' replies
local withMeta = ARGV[a] == 'w'
local entityKeys = (#KEYS - (withMeta and 1 or 0)) / (1 + h)
local out = {}
local k = 1
for i = 1, entityKeys do
  if redis.call('EXISTS', KEYS[k]) == 0 then
    out[i] = 0
  else
    local found, closed = {}, {}
    for s = 1, seriesCount do found[s] = {} end
    for x = 1, h do
      local hash, key = hashes[x], KEYS[k + x]
      local n = hash.n
      if hash.closed then n = n + 1 end
      local stored = nil
      local built = {}
      -- a short list is asked by name; a long one only when the hash holds at least as many fields
      if n > 0 and (n <= 256 or n <= redis.call('HLEN', key)) then
        local fields = fieldsOf(hash)
        for j = 1, n, 1000 do
          local last = math.min(n, j + 999)
          local values = redis.call('HMGET', key, unpack(fields, j, last))
          for m = 1, #values do
            local at = j + m - 1
            local value = values[m]
            if not value and hash.level[at] > 0 then value = buildRollup(hash, key, hash.level[at], hash.index[at], built) end
            if value then
              local slot = hash.slot[at]
              if slot == 0 then
                stored = value
              else
                local f = found[slot]
                f[#f + 1] = struct.pack('<dI4', hash.index[at], #value)
                f[#f + 1] = value
              end
            end
          end
        end
      elseif n > 0 then
        local all = redis.call('HGETALL', key)
        for m = 1, #all, 2 do
          if all[m] == 'c' then stored = all[m + 1] end
        end
        for _, series in ipairs(hash.series) do
          local f = found[series.slot]
          if series.level > 0 then
            rollupsFromAll(hash, key, series, all, built, f)
          else
            for m = 1, #all, 2 do
              local index = tonumber(all[m])
              if index ~= nil and inRanges(series.ranges, index) then
                f[#f + 1] = struct.pack('<dI4', index, #all[m + 1])
                f[#f + 1] = all[m + 1]
              end
            end
          end
        end
      end
      if hash.closed then closed[#closed + 1] = closedRecord(hash, key, stored, built) end
    end
    -- one string per key (ioredis then parses one reply rather than two per tile): per series a
    -- u32 tile count, then per tile f64 index, u32 length and the packed tile; then per hash whose
    -- closed windows were asked for, u32 length and the record
    local parts = {}
    for s = 1, seriesCount do
      parts[#parts + 1] = struct.pack('<I4', #found[s] / 2)
      parts[#parts + 1] = table.concat(found[s])
    end
    for _, record in ipairs(closed) do
      parts[#parts + 1] = struct.pack('<I4', #record)
      parts[#parts + 1] = record
    end
    out[i] = table.concat(parts)
  end
  k = k + 1 + h
end
if withMeta then out[entityKeys + 1] = redis.call('HGET', KEYS[#KEYS], 'watermark') or '' end
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

const TAG_NULL = 0x7a; // z
const TAG_FALSE = 0x46; // F
const TAG_TRUE = 0x54; // T
const TAG_NUMBER = 0x6e; // n
const TAG_TEXT = 0x73; // s
const TAG_BUCKETS = 0x68; // h

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

function valueSize(v: TileValue): number {
  if (typeof v === 'number') return 9;
  if (typeof v === 'string') return 5 + 2 * v.length;
  if (v instanceof Map) return 5 + 12 * v.size;
  return 1;
}

/**
 * A growing byte buffer: packed tiles and the apply blob are written through it, straight into
 * one buffer per script call.
 */
class BlobWriter {
  buf: Buffer;
  private view: DataView;
  p = 0;

  constructor(initialBytes = 4096) {
    this.buf = Buffer.allocUnsafe(initialBytes);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  ensure(bytes: number): void {
    if (this.p + bytes <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.p + bytes));
    this.buf.copy(grown, 0, 0, this.p);
    this.buf = grown;
    this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.p++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.p, v, true);
    this.p += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.p, v, true);
    this.p += 4;
  }

  /** Overwrite a u32 written before (a length known afterwards). */
  u32At(at: number, v: number): void {
    this.view.setUint32(at, v, true);
  }

  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.p, v, true);
    this.p += 8;
  }

  /** A packed tile (see the file header); returns its byte length. */
  tile(tile: Tile): number {
    const nums = tile.nums;
    const vals = tile.vals;
    let size = 16 + 8 * nums.length;
    for (let k = 0; k < vals.length; k++) size += valueSize(vals[k]!);
    this.ensure(size);
    const view = this.view;
    const buf = this.buf;
    let p = this.p;
    view.setFloat64(p, tile.minTs, true);
    view.setFloat64(p + 8, tile.maxTs, true);
    p += 16;
    for (let i = 0; i < nums.length; i++) {
      view.setFloat64(p, nums[i]!, true);
      p += 8;
    }
    for (let k = 0; k < vals.length; k++) {
      const v = vals[k]!;
      if (v === null) buf[p++] = TAG_NULL;
      else if (v === true) buf[p++] = TAG_TRUE;
      else if (v === false) buf[p++] = TAG_FALSE;
      else if (typeof v === 'number') {
        buf[p] = TAG_NUMBER;
        view.setFloat64(p + 1, v, true);
        p += 9;
      } else if (typeof v === 'string') {
        buf[p] = TAG_TEXT;
        view.setUint32(p + 1, 2 * v.length, true);
        p += 5;
        for (let i = 0; i < v.length; i++) {
          view.setUint16(p, orderedUnit(v.charCodeAt(i)), false);
          p += 2;
        }
      } else {
        // ascending indexes: the one packed form of these counts, as mergeBucketCounts writes it
        buf[p] = TAG_BUCKETS;
        view.setUint32(p + 1, v.size, true);
        p += 5;
        for (const bucket of [...v.keys()].sort((a, b) => a - b)) {
          view.setInt32(p, bucket, true);
          view.setFloat64(p + 4, v.get(bucket)!, true);
          p += 12;
        }
      }
    }
    this.p = p;
    return size;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.p);
  }
}

/** A tile packed as the scripts read it (see the file header). */
export function encodeTile(tile: Tile): Buffer {
  const w = new BlobWriter(64);
  w.tile(tile);
  return w.bytes();
}

/** A packed tile of a group with `width` slots and `valueWidth` values; throws on a tile that does not fit. */
export function decodeTile(buf: Buffer, width: number, valueWidth: number): Tile {
  return decodeTileAt(buf, 0, buf.length, width, valueWidth);
}

/** The packed tile in bytes [start, end) of `buf` (a read reply holds many; no copy of them is made). */
function decodeTileAt(buf: Buffer, start: number, end: number, width: number, valueWidth: number): Tile {
  try {
    if (end > buf.length) throw new RangeError('past the end');
    return unpackTile(buf, start, end, width, valueWidth);
  } catch (e) {
    if (e instanceof RangeError) throw new Error(`corrupt packed tile: ${end - start} bytes end before the layout (${width} slots, ${valueWidth} values) does`);
    throw e;
  }
}

/** Double arrays of NaN by length, to copy: a copy is a packed double array of the right size from the start. */
const NAN_ROWS: number[][] = [];

function nanRow(width: number): number[] {
  let row = NAN_ROWS[width];
  if (row === undefined) {
    row = [Number.NaN];
    for (let i = 1; i < width; i++) row.push(Number.NaN);
    row.length = width;
    NAN_ROWS[width] = row;
  }
  return row;
}

const NO_VALUES = Object.freeze([]) as unknown as TileValue[];

function unpackTile(buf: Buffer, start: number, end: number, width: number, valueWidth: number): Tile {
  const minTs = buf.readDoubleLE(start);
  const maxTs = buf.readDoubleLE(start + 8);
  let p = start + 16;
  const nums = nanRow(width).slice();
  for (let i = 0; i < width; i++) {
    nums[i] = buf.readDoubleLE(p);
    p += 8;
  }
  // a read never writes into a tile it decoded, so tiles without values share one empty list
  if (valueWidth === 0) {
    if (p !== end) throw new Error(`corrupt packed tile: ${end - start} bytes, layout reads ${p - start}`);
    return { minTs, maxTs, nums, vals: NO_VALUES };
  }
  const vals: TileValue[] = [];
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
    } else if (tag === TAG_BUCKETS) {
      const pairs = buf.readUInt32LE(p + 1);
      p += 5;
      const counts: BucketCounts = new Map();
      for (let i = 0; i < pairs; i++) counts.set(buf.readInt32LE(p + 12 * i), buf.readDoubleLE(p + 12 * i + 4));
      p += 12 * pairs;
      vals.push(counts);
    } else {
      throw new Error(`corrupt packed tile: value tag ${tag} at byte ${p}`);
    }
  }
  if (p !== end) throw new Error(`corrupt packed tile: ${end - start} bytes, layout reads ${p - start}`);
  return { minTs, maxTs, nums, vals };
}

/** READ_SCRIPT's arguments asking for a group's closed windows at a head tile (after its '1'). */
function closedArgs(view: ViewPlan, group: GroupRuntime, head: number): string[] {
  const memo = group.closedArgs;
  if (memo?.head === head) return memo.args;
  const plan: string[] = [group.initTile, String(group.plan.features.length)];
  for (const { blocks } of closedWindowBlocks(view, group.plan.hopMs, head)) {
    plan.push(String(blocks.length), ...blocks.map((b) => (b.span === 1 ? String(b.index) : `${b.span}:${b.index}`)));
  }
  const args = [String(head), String(plan.length), ...plan];
  group.closedArgs = { head, args };
  return args;
}

/** A closed-windows record of READ_SCRIPT in bytes [start, end) of `buf`, as [head, windows]. */
function decodeClosedWindows(buf: Buffer, start: number, end: number, plan: TileGroupPlan): [number, ClosedWindows] {
  const head = buf.readDoubleLE(start);
  const eventTimes: number[] = [];
  let p = start + 8;
  for (let f = 0; f < plan.features.length; f++, p += 8) eventTimes.push(buf.readDoubleLE(p));
  return [head, { ...decodeTileAt(buf, p, end, plan.width, plan.valueWidth), eventTimes }];
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

/** CRC-16/XMODEM, the checksum of Redis Cluster key slots. */
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    table[i] = c;
  }
  return table;
})();

/** The Redis Cluster hash slot of a key name: CRC16 of its hash tag (the text inside its first `{...}`, if not empty) or of the whole name, mod 16384. */
export function hashSlot(keyName: string): number {
  let bytes = Buffer.from(keyName, 'utf8');
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff]!;
  return crc & 0x3fff;
}

/** One tile series of a group (its own tiles, or one rollup level), as the scripts see it. */
interface GroupRuntime {
  plan: TileGroupPlan;
  /** 1 for the group's own tiles, else the rollup span. */
  span: number;
  /** Its name in KeyTiles and its lower-bound field (`lo:<series>`). */
  series: TileSeries;
  /** Prefix of its fields in the group's tiles hash: '' for the group's own tiles, `<span>:` for a rollup level. */
  fieldPrefix: string;
  /** The group's slot layout as APPLY_SCRIPT parses it (rollup tiles share it). */
  layout: string;
  /** The group's rollup levels (on the group's own series only). */
  rollups: GroupRuntime[];
  /** The group's initial tile, packed, in hex: where READ_SCRIPT folds closed windows from. */
  initTile: string;
  /** The last closed-windows arguments built (a read of many keys at one head builds them once). */
  closedArgs?: { head: number; args: string[] };
}

interface ViewRuntime {
  view: ViewPlan;
  /** hop -> the group's own series */
  groups: Map<number, GroupRuntime>;
  /** Fingerprint of the tile layout of every group, stored as `fp:<namespace>`. */
  fingerprint: string;
  /** `<view>@<version id>`: the namespace of its keys (viewNamespace). */
  namespace: string;
}

function viewRuntime(view: ViewPlan): ViewRuntime {
  const groups = new Map<number, GroupRuntime>();
  const described: unknown[] = [];
  for (const g of view.groups) {
    const slots = groupSlots(view, g);
    const layout = [g.width, g.valueWidth, ...slots.flatMap((s) => [LUA_AGG_CODE[s.feature.agg], s.offset, s.valueOffset])].join(' ');
    const initTile = encodeTile(emptyTile(tileTemplate(slots, g))).toString('hex');
    const rollups = g.rollups.map((span): GroupRuntime => ({ plan: g, span, series: tileSeries(g.hopMs, span), fieldPrefix: `${span}:`, layout, rollups: [], initTile }));
    groups.set(g.hopMs, { plan: g, span: 1, series: g.hopMs, fieldPrefix: '', layout, rollups, initTile });
    // Rollup levels change what is stored, so they are part of the layout (a group without keeps
    // its old fingerprint); 'fields' marks rollup tiles kept as `<span>:<index>` fields of the
    // group's hash (an earlier layout kept them in hashes of their own); 'closed' marks the closed
    // windows' record 'c' that writers must drop (an earlier writer would leave it stale);
    // 'built' marks rollup tiles built by reads and dropped by writes (an earlier reader would take
    // a rollup tile not built yet for an empty one).
    const windowed = view.features.some((f) => f.hopMs === g.hopMs && f.windowMs !== null);
    described.push([...(g.rollups.length > 0 ? [g.hopMs, layout, g.rollups, 'fields', 'built'] : [g.hopMs, layout]), ...(windowed ? ['closed'] : [])]);
  }
  const fingerprint = createHash('sha256').update(JSON.stringify(described)).digest('hex').slice(0, 16);
  return { view, groups, fingerprint, namespace: `${view.name}@${versionIdOf(view, fingerprint)}` };
}

/**
 * A view version's id: a hash of everything that decides what its tiles hold (source, key, features,
 * tile layout), not of what only moves the retention horizon (allowedLateness). A changed view gets
 * a new id, so its keys live beside the old version's and both can be served at once.
 */
function versionIdOf(view: ViewPlan, fingerprint: string): string {
  const identity = { source: view.source, entity: view.entity, joinKeys: view.joinKeys, keyFields: view.keyFields, features: view.features, layout: fingerprint };
  return createHash('sha256').update(canonicalJson(identity)).digest('hex').slice(0, 12);
}

/** A key update checked and grouped for APPLY_SCRIPT. */
interface PreparedKey {
  /** Its Redis keys: the key hash, then the tiles hash of each group, in `groups` order. */
  names: string[];
  groups: GroupRuntime[];
  /** Per group, its tile updates in batch order. */
  updates: TileUpdate[][];
  fences: readonly { source: string; partition: number; offset: number; appliedThrough: number }[];
  /** 0 no fence, 1 plain fence (skip if applied), 2 compare-and-set. */
  mode: 0 | 1 | 2;
}

/** APPLY_SCRIPT's reply (see there). */
type ApplyReply = [applied: number, late: number, delta: number, fenced: number, newKeys: number[], refused: [number, ...Buffer[]][], lateKeys: number[]];

interface BufferEval {
  evalshaBuffer(...args: (string | number | Buffer)[]): Promise<unknown>;
  evalBuffer(...args: (string | number | Buffer)[]): Promise<unknown>;
}

function sameRanges(a: readonly TileRange[], b: readonly TileRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.hopMs === b[i]!.hopMs && (r.span ?? 1) === (b[i]!.span ?? 1) && r.closed === b[i]!.closed && r.fromIndex === b[i]!.fromIndex && r.toIndex === b[i]!.toIndex);
}

function isNoScript(e: unknown): boolean {
  return e instanceof Error && e.message.startsWith('NOSCRIPT');
}

/** EVALSHA through `send`; on NOSCRIPT (the script did not run) EVAL it whole, which also caches it on that node. */
async function withScriptFallback(script: LuaScript, send: (command: keyof BufferEval, first: string) => Promise<unknown>): Promise<unknown> {
  try {
    return await send('evalshaBuffer', script.sha);
  } catch (e) {
    if (!isNoScript(e)) throw e;
    return await send('evalBuffer', script.lua);
  }
}

/**
 * A Cluster error that means "not here, or not now" while a slot moves: the script did not run
 * (Redis checks a script's keys before running it), so sending it again is safe. ioredis re-drives
 * these for single commands, but not inside a pipeline (auto-pipelining included) once its
 * redirection budget is spent.
 */
function clusterRedirect(e: unknown): { kind: 'ask' | 'moved'; host: string; port: number } | { kind: 'wait' } | null {
  if (!(e instanceof Error)) return null;
  const to = /^(ASK|MOVED) \d+ (.+):(\d+)$/.exec(e.message);
  if (to) return { kind: to[1] === 'ASK' ? 'ask' : 'moved', host: to[2]!, port: Number(to[3]) };
  // ioredis refuses, before sending anything, an auto-pipeline whose commands its slot map (just
  // refreshed by a move) places on different nodes: sent again once the map has settled
  return /^(?:TRYAGAIN|CLUSTERDOWN)\b|Too many Cluster redirections|All keys in the pipeline should belong to the same slots allocation group/.test(e.message) ? { kind: 'wait' } : null;
}

export class RedisOnlineStore implements OnlineStore {
  readonly prefix: string;
  private readonly views = new Map<string, ViewRuntime>();
  private readonly metaKey: string;
  private readonly ownsClient: boolean;
  private readonly maxKeysPerCall: number;
  private readonly maxTileUpdatesPerCall: number;
  private readiness: Promise<void> | null = null;
  private readonly requireReadyVersions: boolean;
  private readonly clusterRetryMs: number;
  private retriedCalls = 0;
  /** The watermark the last read saw: the next read computes its ranges from it (readAtWatermark). */
  private lastReadWatermark: number | null | undefined = undefined;
  /** namespace -> its checked status and when (reads check at most once a second). */
  private readonly versionChecks = new Map<string, { atMs: number; error: RedisStoreError | null }>();

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
    this.maxKeysPerCall = options.maxKeysPerCall ?? 64;
    this.maxTileUpdatesPerCall = options.maxTileUpdatesPerCall ?? 256;
    for (const [name, value] of [
      ['maxKeysPerCall', this.maxKeysPerCall],
      ['maxTileUpdatesPerCall', this.maxTileUpdatesPerCall],
    ] as const) {
      if (!Number.isInteger(value) || value < 1 || value > 65_535) throw new RedisStoreError('TM_STORE_BAD_CONFIG', `${name} must be an integer from 1 to 65535, got ${value}`, { [name]: value });
    }
    this.metaKey = `${this.prefix}:{meta}`;
    this.requireReadyVersions = options.requireReadyVersions ?? false;
    this.clusterRetryMs = options.clusterRetryMs ?? 10_000;
    if (!(this.clusterRetryMs >= 0)) throw new RedisStoreError('TM_STORE_BAD_CONFIG', `clusterRetryMs must be >= 0, got ${this.clusterRetryMs}`, { clusterRetryMs: this.clusterRetryMs });
    for (const view of registry.views) this.views.set(view.name, viewRuntime(view));
  }

  /** The error for a version status field's value, or null when the version is ready. */
  private versionError(view: string, status: string | null): RedisStoreError | null {
    if (status === 'ready') return null;
    const ns = this.namespaceOf(view);
    const details = { view, namespace: ns, prefix: this.prefix, status };
    if (status === null) {
      return new RedisStoreError(
        'TM_STORE_STATE_LOST',
        `view ${view}: Redis prefix ${this.prefix} holds no state for version ${ns} (field status:${ns} of ${this.metaKey} is missing: the store lost its data, or these definitions were never applied); nothing was written. Repair: tidemark apply --definitions <dir>, then tidemark bootstrap --definitions <dir>`,
        details,
      );
    }
    return new RedisStoreError(
      'TM_STORE_NEEDS_BOOTSTRAP',
      `view ${view}: version ${ns} is ${status}, not ready: its tiles are not built yet. Run: tidemark bootstrap --definitions <dir> --views ${view}`,
      details,
    );
  }

  /** Throw the version error of a view that is not ready (a ready view is checked at most once a second). */
  private async checkReadable(view: string): Promise<void> {
    if (!this.requireReadyVersions) return;
    const ns = this.namespaceOf(view);
    const now = Date.now();
    let check = this.versionChecks.get(ns);
    // A ready version is taken as ready for a second; one that is not is asked again every read, so
    // reads answer as soon as its bootstrap is done.
    if (!check || check.error !== null || now - check.atMs > 1_000) {
      check = { atMs: now, error: this.versionError(view, await this.client.hget(this.metaKey, `status:${ns}`)) };
      this.versionChecks.set(ns, check);
    }
    if (check.error) throw check.error;
  }

  /** The watermark; with requireReadyVersions, in the same read, the status of every view version of the batch (else throws). */
  private async watermarkForWrite(batch: TileBatch): Promise<number | null> {
    if (!this.requireReadyVersions) return this.watermarkMs();
    const views = [...new Set(batch.keys.map((k) => k.view))].filter((v) => this.views.has(v));
    const [watermark, ...statuses] = await this.client.hmget(this.metaKey, 'watermark', ...views.map((v) => `status:${this.namespaceOf(v)}`));
    views.forEach((v, i) => {
      const error = this.versionError(v, statuses[i] ?? null);
      if (error) throw error;
    });
    return watermark === null || watermark === undefined ? null : Number(watermark);
  }

  /**
   * Delete every Redis key of these entity keys of a view (its key hash and tile hashes), for
   * tidemark bootstrap, which rebuilds a key whole. Counters (`keys:`, `tiles`) are left as they are.
   */
  async deleteKeys(view: string, entityKeys: readonly string[]): Promise<void> {
    const r = this.views.get(view);
    if (!r) throw new RedisStoreError('TM_STORE_BAD_UPDATE', `view ${view} is not in this store's registry`, { view });
    const hops = [...r.groups.keys()];
    await Promise.all(entityKeys.map((k) => this.client.unlink(this.keyHashKey(view, k), ...hops.map((h) => this.tilesKey(view, k, h)))));
  }

  /** The hash of an entity key: `seen` and its fences. */
  keyHashKey(view: string, entityKey: string): string {
    return `${this.prefix}:{${this.namespaceOf(view)}:${redisKeyText(entityKey)}}:k`;
  }

  /** The key namespace of a view of this store's registry: `<view>@<version id>`. */
  namespaceOf(view: string): string {
    const r = this.views.get(view);
    if (!r) throw new RedisStoreError('TM_STORE_BAD_UPDATE', `view ${view} is not in this store's registry`, { view });
    return r.namespace;
  }

  /** The hash of an entity key's tiles of one group, its rollup levels' tiles included (fields `<span>:<index>`). */
  tilesKey(view: string, entityKey: string, hopMs: number): string {
    return `${this.prefix}:{${this.namespaceOf(view)}:${redisKeyText(entityKey)}}:t:${hopMs}`;
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
    await Promise.all(runtimes.map((r) => this.client.hsetnx(this.metaKey, `fp:${r.namespace}`, r.fingerprint)));
    const stored = runtimes.length === 0 ? [] : await this.client.hmget(this.metaKey, ...runtimes.map((r) => `fp:${r.namespace}`));
    runtimes.forEach((r, i) => {
      if (stored[i] !== r.fingerprint) {
        throw new RedisStoreError(
          'TM_STORE_LAYOUT_MISMATCH',
          `view ${r.view.name}: the tiles under Redis prefix ${this.prefix} have another layout (${stored[i]}) than these definitions (${r.fingerprint}), so they cannot be read or merged with them; materialize these definitions under a new prefix, or delete the version's keys (${this.prefix}:{${r.namespace}:*) and the field fp:${r.namespace} of ${this.metaKey}`,
          { view: r.view.name, prefix: this.prefix, stored: stored[i], expected: r.fingerprint },
        );
      }
    });
    // Best effort: calls fall back to EVAL on NOSCRIPT anyway (a restarted or new node).
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    await Promise.all(nodes.flatMap((node) => Object.values(SCRIPTS).map((s) => node.script('LOAD', s.lua)))).catch(() => undefined);
  }

  /** Script calls sent again because their Redis Cluster slot was moving (a counter since start). */
  clusterRetries(): number {
    return this.retriedCalls;
  }

  private async evalScript(script: LuaScript, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<unknown> {
    const started = Date.now();
    let delayMs = 5;
    // The node a redirection named, and whether it wants ASKING first.
    let target: { host: string; port: number; asking: boolean } | null = null;
    for (;;) {
      try {
        return target ? await this.evalOnNode(target, script, keys, args) : await this.evalOnce(script, keys, args);
      } catch (e) {
        const redirect = clusterRedirect(e);
        if (redirect === null || !(this.client instanceof Cluster)) throw e;
        const waitedMs = Date.now() - started;
        if (waitedMs >= this.clusterRetryMs) {
          const slot = hashSlot(keys[0]!);
          throw new RedisStoreError('TM_STORE_SLOT_MIGRATING', `Redis Cluster slot ${slot} (key ${keys[0]}) is moving between nodes and could not be reached for ${waitedMs} ms (last answer: ${(e as Error).message}); retry shortly`, { slot, key: keys[0], waitedMs });
        }
        this.retriedCalls++;
        if (redirect.kind === 'wait') {
          target = null;
          await new Promise((r) => setTimeout(r, delayMs));
          delayMs = Math.min(delayMs * 2, 200);
        } else {
          // ASK: the key already moved, the target answers it after ASKING (once per command).
          // MOVED: the slot moved; an auto-pipelined command does not refresh ioredis' slot map
          // by itself, so go to the named node and have the map refreshed for the next calls.
          target = { host: redirect.host, port: redirect.port, asking: redirect.kind === 'ask' };
          if (redirect.kind === 'moved') this.client.refreshSlotsCache();
        }
      }
    }
  }

  private evalOnce(script: LuaScript, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<unknown> {
    // ioredis has the Buffer-reply variants of EVALSHA/EVAL at run time but not in its types; the
    // generic callBuffer() loses its command name under enableAutoPipelining (ioredis 6.0.0).
    const client = this.client as unknown as BufferEval;
    return withScriptFallback(script, (command, first) => client[command](first, keys.length, ...keys, ...args));
  }

  /** The call on the node a redirection named; after an ASK, preceded by ASKING on the same connection (a pipeline keeps the pair together). */
  private evalOnNode(target: { host: string; port: number; asking: boolean }, script: LuaScript, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<unknown> {
    const node = (this.client as Cluster).nodes('master').find((n) => n.options.host === target.host && n.options.port === target.port);
    if (!node) return Promise.reject(new Error(`TRYAGAIN the redirection target ${target.host}:${target.port} is not a known master yet`));
    return withScriptFallback(script, async (command, first) => {
      const pipeline = (target.asking ? node.pipeline().asking() : node.pipeline()) as unknown as { exec(): Promise<[Error | null, unknown][]> } & BufferEval;
      void pipeline[command](first, keys.length, ...keys, ...args);
      const results = await pipeline.exec();
      const [err, value] = results[results.length - 1]!;
      if (err) throw err;
      return value;
    });
  }

  async apply(batch: TileBatch): Promise<RedisApplyResult> {
    const result = await this.applyKeys(batch, false);
    return { appliedUpdates: result.appliedUpdates, lateTileEvents: result.lateTileEvents, fencedKeys: result.fencedKeys, watermarkMs: result.watermarkMs };
  }

  /**
   * Apply key updates each under compare-and-set fences (CasFence, and the file header): a key
   * whose stored fence of one of its partitions is past that fence's `appliedThrough` is left
   * untouched and reported in `refused` with its stored fences; the others are merged and fenced.
   * The watermark moves only when no key was refused (and no call failed).
   */
  async applyConditional(batch: ConditionalTileBatch): Promise<ConditionalApplyResult> {
    return this.applyKeys(batch, true);
  }

  private async applyKeys(batch: TileBatch, conditional: boolean): Promise<ConditionalApplyResult> {
    await this.ready();
    // Lateness is judged against the watermark before this batch, so a batch is never late to itself.
    const horizonWatermark = await this.watermarkForWrite(batch);
    const trims = new Map<GroupRuntime, number>();
    for (const r of this.views.values()) {
      for (const g of r.groups.values()) {
        // (a rollup level's trim is floor(trim / span), taken by the script)
        trims.set(g, trimTileIndex(g.plan, horizonWatermark) ?? Number.NaN);
      }
    }
    // Validate the whole batch before writing any of it.
    const prepared = batch.keys.map((key) => this.prepare(key, conditional, trims));
    const calls = this.planCalls(prepared);
    const replies = await Promise.allSettled(calls.map((members) => this.applyCall(prepared, members, trims)));

    const result: ConditionalApplyResult = { appliedUpdates: 0, lateTileEvents: 0, fencedKeys: 0, refused: [], lateKeys: [], watermarkMs: horizonWatermark };
    let tileDelta = 0;
    const newKeys = new Map<string, number>();
    let failure: PromiseRejectedResult | null = null;
    for (let c = 0; c < calls.length; c++) {
      const r = replies[c]!;
      if (r.status === 'rejected') {
        failure ??= r;
        continue;
      }
      const [applied, late, delta, fenced, created, refused, lateKeys] = r.value;
      const members = calls[c]!;
      result.appliedUpdates += applied;
      result.lateTileEvents += late;
      result.fencedKeys += fenced;
      tileDelta += delta;
      for (const i of created) {
        const ns = this.namespaceOf(batch.keys[members[i]!]!.view);
        newKeys.set(ns, (newKeys.get(ns) ?? 0) + 1);
      }
      for (const [index, ...stored] of refused) result.refused.push({ key: members[index as number]!, storedFences: stored.map((f) => Number(String(f))) });
      for (let j = 0; j < lateKeys.length; j += 2) result.lateKeys.push({ key: members[lateKeys[j]!]!, lateTileEvents: lateKeys[j + 1]! });
    }
    result.refused.sort((x, y) => x.key - y.key);
    result.lateKeys.sort((x, y) => x.key - y.key);
    // The watermark moves only once every key of the batch is written; the counters follow
    // whatever was written, even when some keys failed or were refused (the caller retries those).
    const complete = failure === null && result.refused.length === 0;
    const watermarkArg = complete && batch.maxEventTimeMs !== null ? String(batch.maxEventTimeMs) : '';
    if (watermarkArg !== '' || tileDelta !== 0 || newKeys.size > 0) {
      const args = [watermarkArg, String(tileDelta)];
      for (const [view, n] of newKeys) args.push(view, String(n));
      const meta = this.evalScript(SCRIPTS.meta, [this.metaKey], args);
      if (failure === null) {
        const wm = String(await meta);
        result.watermarkMs = wm === '' ? null : Number(wm);
      } else await meta.catch(() => undefined);
    }
    if (failure !== null) throw failure.reason;
    return result;
  }

  /**
   * Which keys go into which script call: in batch order, at most maxKeysPerCall keys and about
   * maxTileUpdatesPerCall tile updates per call (a key is never split); on a Cluster, the keys of
   * one call share a hash slot (a script may only touch one slot).
   */
  private planCalls(keys: readonly PreparedKey[]): number[][] {
    return this.slotCalls(
      keys.length,
      (i) => keys[i]!.names[0]!,
      (i) => keys[i]!.updates.reduce((n, u) => n + u.length, 0),
      this.maxTileUpdatesPerCall,
    );
  }

  /**
   * Items 0..count-1 cut into script calls in order: on a Cluster the items of one call share the
   * hash slot of their key name (a script may only touch one slot); a call closes at
   * maxKeysPerCall items or once the items' weights reach maxWeight.
   */
  private slotCalls(count: number, keyName: (i: number) => string, weight: (i: number) => number, maxWeight: number): number[][] {
    const calls: number[][] = [];
    const open = new Map<number, { members: number[]; weight: number }>();
    const cluster = this.client instanceof Cluster;
    for (let i = 0; i < count; i++) {
      const slot = cluster ? hashSlot(keyName(i)) : 0;
      let call = open.get(slot);
      if (!call) {
        call = { members: [], weight: 0 };
        open.set(slot, call);
        calls.push(call.members);
      }
      call.members.push(i);
      call.weight += weight(i);
      if (call.members.length >= this.maxKeysPerCall || call.weight >= maxWeight) open.delete(slot);
    }
    return calls;
  }

  /**
   * One EVALSHA of APPLY_SCRIPT for the keys `members` (indexes into `keys`). The apply blob, all
   * little-endian: u32 key count; per key: u32 byte length of the rest of its record, u8 fence mode
   * (0 none, 1 plain, 2 compare-and-set), u16 group count, u16 fence count; per fence: u16
   * string-table index of its field, f64 fence offset, f64 appliedThrough; per group: u16
   * string-table index of its layout (its lower-bound field `lo:<hop>` and its rollup spans follow it) and f64 trim
   * index (NaN for none); then per group: u32 tile count and per tile: f64 tile index, u32 events,
   * u32 packed length, the packed tile.
   */
  private async applyCall(keys: readonly PreparedKey[], members: readonly number[], trims: ReadonlyMap<GroupRuntime, number>): Promise<ApplyReply> {
    // The string table (ARGV[2...]): fence fields, and per group its layout, its `lo:<hop>` field and its rollup spans.
    const table: string[] = [];
    const fenceFields = new Map<string, number>();
    const groupStrings = new Map<GroupRuntime, number>();
    const redisKeys: string[] = [];
    const w = new BlobWriter(16_384);
    w.u32(members.length);
    for (const i of members) {
      const key = keys[i]!;
      for (const name of key.names) redisKeys.push(name);
      const start = w.p;
      w.u32(0);
      w.u8(key.mode);
      w.u16(key.groups.length);
      w.u16(key.fences.length);
      for (const f of key.fences) {
        const field = `fence:${f.source}:${f.partition}`;
        let at = fenceFields.get(field);
        if (at === undefined) {
          at = 2 + table.length;
          table.push(field);
          fenceFields.set(field, at);
        }
        w.u16(at);
        w.f64(f.offset);
        w.f64(f.appliedThrough);
      }
      for (const g of key.groups) {
        let d = groupStrings.get(g);
        if (d === undefined) {
          d = 2 + table.length;
          table.push(g.layout, `lo:${g.series}`, g.plan.rollups.join(' '));
          groupStrings.set(g, d);
        }
        w.u16(d);
        w.f64(trims.get(g)!);
      }
      for (const updates of key.updates) {
        w.u32(updates.length);
        for (const u of updates) {
          w.f64(u.tileIndex);
          w.u32(u.events);
          const at = w.p;
          w.u32(0);
          w.u32At(at, w.tile(u.tile));
        }
      }
      w.u32At(start, w.p - start - 9);
    }
    return (await this.evalScript(SCRIPTS.apply, redisKeys, [w.bytes(), ...table])) as ApplyReply;
  }

  /** Check a key update against the registry and group its tile updates by tile group, in batch order. */
  private prepare(key: KeyTileUpdates, conditional: boolean, trims: ReadonlyMap<GroupRuntime, number>): PreparedKey {
    const r = this.views.get(key.view);
    if (!r) throw new RedisStoreError('TM_STORE_BAD_UPDATE', `tile update for unknown view ${key.view}`, { view: key.view });
    const base = `${this.prefix}:{${r.namespace}:${redisKeyText(key.entityKey)}}:`;
    const prepared: PreparedKey = { names: [`${base}k`], groups: [], updates: [], fences: [], mode: 0 };
    for (const u of key.tiles) {
      const g = r.groups.get(u.hopMs);
      if (!g) throw new RedisStoreError('TM_STORE_BAD_UPDATE', `tile update for unknown tile group ${key.view}/${u.hopMs}`, { view: key.view, hopMs: u.hopMs });
      if (u.tile.nums.length !== g.plan.width || u.tile.vals.length !== g.plan.valueWidth || !Number.isSafeInteger(u.tileIndex) || !(u.events >= 0 && u.events <= 0xffffffff)) {
        throw new RedisStoreError('TM_STORE_BAD_UPDATE', `tile update ${key.view}/${u.hopMs}/${u.tileIndex} does not fit the group's layout`, { view: key.view, hopMs: u.hopMs });
      }
      const at = prepared.groups.indexOf(g);
      if (at >= 0) prepared.updates[at]!.push(u);
      else {
        prepared.groups.push(g);
        prepared.updates.push([u]);
        prepared.names.push(`${base}t:${u.hopMs}`);
      }
    }
    // APPLY_SCRIPT reads a group's stored tiles at once, so a key has one update per tile.
    const groupCount = prepared.groups.length;
    for (let j = 0; j < groupCount; j++) {
      const g = prepared.groups[j]!;
      const updates = prepared.updates[j]!;
      if (updates.length > 1 && new Set(updates.map((u) => u.tileIndex)).size !== updates.length) {
        throw new RedisStoreError('TM_STORE_BAD_UPDATE', `two updates of one tile of ${key.view}/${g.plan.hopMs} for key ${key.entityKey} in one batch`, { view: key.view, hopMs: g.plan.hopMs });
      }
    }
    const f = key.fence;
    if (conditional) {
      const fences = (key as Partial<ConditionalKeyTileUpdates>).fences;
      const bad = (why: string): RedisStoreError =>
        new RedisStoreError('TM_STORE_BAD_UPDATE', `conditional update of ${key.view} key ${key.entityKey}: ${why}`, { view: key.view, fences });
      if (f) throw bad('compare-and-set fences go in `fences`, not `fence`');
      if (!Array.isArray(fences) || fences.length === 0 || fences.length > 65_535) throw bad('needs 1 to 65535 fences');
      for (const c of fences) {
        if (c.source.length === 0 || !Number.isSafeInteger(c.partition) || c.partition < 0 || !Number.isSafeInteger(c.offset) || !Number.isSafeInteger(c.appliedThrough) || c.appliedThrough < -1 || c.appliedThrough >= c.offset) {
          throw bad(`bad fence ${JSON.stringify(c)} (integer offsets, -1 <= appliedThrough < offset)`);
        }
      }
      if (fences.length > 1 && new Set(fences.map((c) => `${c.source}:${c.partition}`)).size !== fences.length) throw bad('two fences of one partition');
      prepared.fences = fences;
      prepared.mode = 2;
    } else if (f) {
      if (f.source.length === 0 || !Number.isSafeInteger(f.partition) || f.partition < 0 || !Number.isSafeInteger(f.offset)) {
        throw new RedisStoreError('TM_STORE_BAD_UPDATE', `bad fence ${JSON.stringify(f)} on ${key.view} key ${key.entityKey}`, { view: key.view, fence: f });
      }
      prepared.fences = [{ ...f, appliedThrough: -1 }];
      prepared.mode = 1;
    }
    return prepared;
  }

  async readTiles(view: string, entityKeys: readonly string[], ranges: readonly TileRange[]): Promise<(KeyTiles | null)[]> {
    return (await this.readTilesOnce(view, entityKeys, ranges, false)).tiles;
  }

  /**
   * On a single Redis, the watermark comes in the read's own script call, atomically with the
   * tiles: the ranges are computed from the watermark the last read saw and checked against the
   * one read; they differ only when the watermark crossed something the ranges depend on (a tile
   * edge), and then the read is sent again. On a Cluster the watermark (on another node) is read
   * first, as before: tiles read after it hold at least what it covers.
   */
  async readAtWatermark(view: string, entityKeys: readonly string[], rangesAt: (watermarkMs: number | null) => readonly TileRange[]): Promise<{ watermarkMs: number | null; tiles: (KeyTiles | null)[] }> {
    if (this.client instanceof Cluster || !this.views.has(view)) return readAfterWatermark(this, view, entityKeys, rangesAt);
    let guess = this.lastReadWatermark === undefined ? await this.watermarkMs() : this.lastReadWatermark;
    for (let attempt = 0; ; attempt++) {
      const ranges = rangesAt(guess);
      const read = await this.readTilesOnce(view, entityKeys, ranges, true);
      const watermarkMs = read.watermarkMs!;
      this.lastReadWatermark = watermarkMs;
      if (watermarkMs === guess || sameRanges(rangesAt(watermarkMs), ranges)) return { watermarkMs, tiles: read.tiles };
      // The watermark moves on while the reads go out: after a few tries, read it first as a Cluster does.
      if (attempt === 2) return { watermarkMs, tiles: await this.readTiles(view, entityKeys, rangesAt(watermarkMs)) };
      guess = watermarkMs;
    }
  }

  private async readTilesOnce(view: string, entityKeys: readonly string[], ranges: readonly TileRange[], withWatermark: boolean): Promise<{ tiles: (KeyTiles | null)[]; watermarkMs?: number | null }> {
    const r = this.views.get(view);
    if (!r) return { tiles: entityKeys.map(() => null) };
    await this.ready();
    await this.checkReadable(view);
    // The ranges per series, grouped by the group hash holding them, in first-seen order.
    const hashes = new Map<number, Map<TileSeries, { runtime: GroupRuntime; bounds: string[] }>>();
    for (const range of ranges) {
      const group = r.groups.get(range.hopMs);
      const runtime = range.span === undefined || range.span === 1 ? group : group?.rollups.find((l) => l.span === range.span);
      if (!runtime) continue;
      let series = hashes.get(range.hopMs);
      if (!series) hashes.set(range.hopMs, (series = new Map()));
      let entry = series.get(runtime.series);
      if (!entry) series.set(runtime.series, (entry = { runtime, bounds: [] }));
      entry.bounds.push(String(range.fromIndex), String(range.toIndex));
    }
    // Closed windows asked for, per hop: their head tile (the hop's hash is read for them too).
    const closedHeads = new Map<number, number>();
    for (const range of ranges) {
      if (range.closed !== true || !r.groups.has(range.hopMs)) continue;
      closedHeads.set(range.hopMs, range.fromIndex);
      if (!hashes.has(range.hopMs)) hashes.set(range.hopMs, new Map());
    }
    const hops = [...hashes.keys()];
    const wanted = [...hashes.values()].flatMap((series) => [...series.values()]);
    const closedOrder: GroupRuntime[] = [];
    const args: string[] = [String(hops.length)];
    for (const [hop, series] of hashes) {
      const group = r.groups.get(hop)!;
      args.push(group.plan.rollups.join(' '), group.layout, String(series.size));
      for (const w of series.values()) args.push(w.runtime.fieldPrefix, String(w.bounds.length / 2), ...w.bounds);
      const head = closedHeads.get(hop);
      if (head === undefined) args.push('0');
      else {
        closedOrder.push(group);
        args.push('1', ...closedArgs(r.view, group, head));
      }
    }
    // One script call for all keys (per hash slot on a Cluster, pipelined: one round trip per
    // node), at most maxKeysPerCall keys each, so one call never holds Redis for long.
    const calls = this.slotCalls(entityKeys.length, (i) => this.keyHashKey(view, entityKeys[i]!), () => 0, Number.POSITIVE_INFINITY);
    // the watermark rides on the first call (single Redis: one node, calls run in order)
    if (withWatermark && calls.length === 0) calls.push([]);
    const replies = await Promise.all(
      calls.map((members, c) => {
        const keys = members.flatMap((i) => [this.keyHashKey(view, entityKeys[i]!), ...hops.map((hop) => this.tilesKey(view, entityKeys[i]!, hop))]);
        if (!withWatermark || c > 0) return this.evalScript(SCRIPTS.read, keys, args);
        keys.push(this.metaKey);
        return this.evalScript(SCRIPTS.read, keys, [...args, 'w']);
      }),
    );
    const out: (KeyTiles | null)[] = entityKeys.map(() => null);
    calls.forEach((members, c) => {
      const reply = replies[c] as (0 | Buffer)[];
      members.forEach((i, m) => {
        const found = reply[m]!;
        if (found === 0) return;
        const keyTiles = new Map<TileSeries, Map<number, Tile>>();
        let p = 0;
        for (const { runtime } of wanted) {
          const count = found.readUInt32LE(p);
          p += 4;
          if (count === 0) continue;
          const plan = runtime.plan;
          const tiles = new Map<number, Tile>();
          for (let j = 0; j < count; j++) {
            const index = found.readDoubleLE(p);
            const length = found.readUInt32LE(p + 8);
            p += 12;
            tiles.set(index, decodeTileAt(found, p, p + length, plan.width, plan.valueWidth));
            p += length;
          }
          keyTiles.set(runtime.series, tiles);
        }
        for (const group of closedOrder) {
          const length = found.readUInt32LE(p);
          keyTiles.set(closedSeries(group.plan.hopMs), new Map([decodeClosedWindows(found, p + 4, p + 4 + length, group.plan)]));
          p += 4 + length;
        }
        out[i] = keyTiles;
      });
    });
    if (!withWatermark) return { tiles: out };
    const text = (replies[0] as (0 | Buffer)[])[calls[0]!.length] as Buffer;
    return { tiles: out, watermarkMs: text.length === 0 ? null : Number(text.toString()) };
  }

  async watermarkMs(): Promise<number | null> {
    const text = await this.client.hget(this.metaKey, 'watermark');
    return text === null ? null : Number(text);
  }

  async stats(): Promise<StoreStats> {
    const meta = await this.client.hgetall(this.metaKey);
    const keys: Record<string, number> = {};
    for (const [name, r] of this.views) keys[name] = Number(meta[`keys:${r.namespace}`] ?? 0);
    return { keys, tiles: Number(meta.tiles ?? 0), watermarkMs: meta.watermark === undefined ? null : Number(meta.watermark) };
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.quit();
  }
}

/** TLS and credentials of a Redis connection, beyond what its URL says (they override the URL's user and password). */
export interface RedisConnectionOptions {
  /** PEM CA certificates trusted for a `rediss://` or `rediss-cluster://` URL (default: Node's CAs). */
  ca?: Buffer | string;
  /** ACL user (Redis 6+). */
  username?: string;
  password?: string;
}

const REDIS_URL_FORMS = 'redis://host:port, rediss://host:port (TLS), redis-cluster://host:port,host:port or rediss-cluster://host:port,host:port (TLS)';

/**
 * A client for a Redis URL: `redis://[user:password@]host:port[/db]` (or `rediss://`, TLS) for one
 * Redis, `redis-cluster://[user:password@]host:port,host:port,...` (or `rediss-cluster://`, TLS to
 * every node) for a Redis Cluster (the nodes are seeds; the client discovers the rest). Commands
 * issued together are pipelined (enableAutoPipelining), one pipeline per Cluster node. Error
 * messages name the URL without its password.
 */
export function createRedisClient(url: string, options: RedisOptions = {}, connection: RedisConnectionOptions = {}): RedisClient {
  const shown = withoutPassword(url);
  const cluster = /^(rediss?)-cluster:\/\/(?:([^/]*)@)?([^@/]+)\/?$/.exec(url);
  const tlsScheme = cluster ? cluster[1] === 'rediss' : /^rediss:\/\//.test(url);
  if (!cluster && !/^rediss?:\/\//.test(url)) {
    throw new RedisStoreError('TM_STORE_BAD_CONFIG', `bad Redis URL ${shown}: expected ${REDIS_URL_FORMS}`, { url: shown });
  }
  if (connection.ca !== undefined && !tlsScheme) {
    throw new RedisStoreError('TM_STORE_BAD_CONFIG', `a Redis CA file was given, but ${shown} is not a TLS URL: use rediss:// (or rediss-cluster://)`, { url: shown });
  }
  const tls = tlsScheme ? { tls: connection.ca === undefined ? {} : { ca: connection.ca } } : {};
  if (cluster) {
    const [, , credentials, hosts] = cluster;
    const redisOptions: RedisOptions = { ...options, ...tls };
    if (credentials) {
      const i = credentials.indexOf(':');
      if (i >= 0) {
        if (i > 0) redisOptions.username = decodeURIComponent(credentials.slice(0, i));
        redisOptions.password = decodeURIComponent(credentials.slice(i + 1));
      } else redisOptions.username = decodeURIComponent(credentials);
    }
    if (connection.username !== undefined) redisOptions.username = connection.username;
    if (connection.password !== undefined) redisOptions.password = connection.password;
    const nodes: ClusterNode[] = hosts!.split(',').map((hostPort) => {
      const i = hostPort.lastIndexOf(':');
      const port = Number(hostPort.slice(i + 1));
      if (i <= 0 || !Number.isInteger(port)) throw new RedisStoreError('TM_STORE_BAD_CONFIG', `bad Redis Cluster node ${hostPort} in ${shown}: expected host:port`, { url: shown });
      return { host: hostPort.slice(0, i), port };
    });
    // Nodes are dialled by the address they announce: keep it (no DNS) so the certificate's IP or name is checked against it.
    return new Cluster(nodes, { enableAutoPipelining: true, redisOptions, ...(tlsScheme ? { dnsLookup: (address: string, done: (e: Error | null, a: string) => void) => done(null, address) } : {}) });
  }
  let target = url;
  const credentials: RedisOptions = {};
  if (connection.username !== undefined || connection.password !== undefined) {
    // ioredis lets the URL's user info win over options: move it out of the URL, then override.
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new RedisStoreError('TM_STORE_BAD_CONFIG', `bad Redis URL ${shown}: expected ${REDIS_URL_FORMS}`, { url: shown });
    }
    if (parsed.username) credentials.username = decodeURIComponent(parsed.username);
    if (parsed.password) credentials.password = decodeURIComponent(parsed.password);
    parsed.username = '';
    parsed.password = '';
    target = parsed.toString();
    if (connection.username !== undefined) credentials.username = connection.username;
    if (connection.password !== undefined) credentials.password = connection.password;
  }
  return new Redis(target, { enableAutoPipelining: true, ...options, ...tls, ...credentials });
}

/**
 * A coded error for a failed Redis connection: the TLS handshake (TM_STORE_TLS), the user and
 * password (TM_STORE_AUTH), else TM_STORE_UNREACHABLE; the URL without its password, and no secret
 * in the message.
 */
export function redisConnectionError(e: unknown, url: string, secrets: readonly (string | undefined)[] = []): RedisStoreError {
  const shown = withoutPassword(url);
  const reason = withoutSecrets(e instanceof Error ? e.message : String(e), secrets);
  if (isTlsCertificateError(e)) {
    return new RedisStoreError('TM_STORE_TLS', `the TLS connection to Redis at ${shown} failed: ${reason} (check --redis-ca names the CA that signed the server's certificate, and the URL is rediss:// only if the port speaks TLS)`, { url: shown });
  }
  if (/WRONGPASS|NOAUTH|NOPERM|invalid password|invalid username-password|AUTH failed/i.test(reason)) {
    return new RedisStoreError('TM_STORE_AUTH', `Redis at ${shown} refused the credentials: ${reason} (check the user and the password: the URL's user info, --redis-user, --redis-password-file or REDIS_PASSWORD_FILE)`, { url: shown });
  }
  return new RedisStoreError('TM_STORE_UNREACHABLE', `the Redis online store at ${shown} is unreachable: ${reason}`, { url: shown });
}

/** A store over a client it owns (closed by close()), for a URL as createRedisClient takes. */
export function connectRedisOnlineStore(registry: Registry, url: string, options: Omit<RedisOnlineStoreOptions, 'ownsClient'> = {}, connection: RedisConnectionOptions = {}): RedisOnlineStore {
  return new RedisOnlineStore(registry, createRedisClient(url, {}, connection), { ...options, ownsClient: true });
}

// ---------------------------------------------------------------------------------------------
// What the version records (online/versions.ts) need of a view's runtime.

/** The fingerprint of a view plan's tile layout (the store's own check, field `fp:<namespace>`). */
export function viewLayoutFingerprint(view: ViewPlan): string {
  return viewRuntime(view).fingerprint;
}

/** The namespace of a view version's keys, `<view>@<version id>`: the hash tag `{<namespace>:<entityKey>}` of each key. */
export function viewNamespace(view: ViewPlan): string {
  return viewRuntime(view).namespace;
}
