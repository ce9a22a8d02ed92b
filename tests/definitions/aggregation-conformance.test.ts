// One aggregation, three languages: the same random tiles of every aggregation merged in the same
// order by TypeScript (mergeSlots), by Redis (EVAL of the production Lua, whose mergeSlot is
// generated from the specs) and by ClickHouse (chDB, arrayFold with each spec's SQL merge). Tiles
// come from folding random events (values that cancel, -0, large and tiny doubles, ties of `last`
// (and first) on text with astral characters, numbers and booleans; approx_percentile's values on
// bucket edges, just below them, zeros, subnormals and the largest doubles) through addToSlots.
// Every slot must be bit-identical (Object.is) in all three: the Lua and the SQL perform each
// spec's operations in the TypeScript order, on IEEE doubles, so no bound is needed anywhere;
// bucket counts must hold the same buckets with the same counts.
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'chdb';
import { afterAll, describe, expect, it } from 'vitest';
import {
  addCompensated,
  AGGREGATION_SPECS,
  sqlCompensatedSumAggregate,
  sqlCompensatedSumOfPairsAggregate,
  sqlExactPartitionColumn,
} from '../../definitions/aggregations/index.js';
import { addToSlots, initSlots, mergeSlots, type Aggregation, type BucketCounts, type Scalar, type TileValue } from '../../definitions/index.js';
import { createRedisClient } from '../../online/index.js';
import { decodeTile, encodeTile, LUA_TILES } from '../../online/redis.js';
import { percentileValue } from '../support/bucket-edges.js';
import { testRedisUrl } from '../support/redis.js';

/** A tile's slots for one aggregation at offset 0. */
interface Slots {
  nums: number[];
  vals: TileValue[];
}

/** The values a case folds: numbers, text, booleans, or numbers for approx_percentile's buckets. */
type ValueKind = 'number' | 'string' | 'boolean' | 'bucketed';

const client = createRedisClient(testRedisUrl());
// ioredis declares evalBuffer only on its command mixin; the store casts the same way.
const evalBuffer = (...args: (string | number | Buffer)[]): Promise<unknown> => (client as unknown as { evalBuffer(...a: (string | number | Buffer)[]): Promise<unknown> }).evalBuffer(...args);
const chdbDir = mkdtempSync(join(tmpdir(), 'tidemark-conformance-'));
const chdb = new Session(chdbDir);
afterAll(async () => {
  await client.quit();
  chdb.close();
  rmSync(chdbDir, { recursive: true, force: true });
});

// Values chosen to cancel (1e16 - 1e16 leaves 1 and 1e-9 to the compensation), -0, and doubles
// of every size short of overflowing M2 (delta^2 * n in var stays finite below 1e100).
const number = fc.oneof(
  fc.constantFrom(1e16, -1e16, 1, -1, 1e-9, -1e-9, 0.1, 0.2, 0.3, -0, 0, 2 ** 53, -(2 ** 53) - 2, 1e-300, 5e-324),
  fc.double({ min: -1e100, max: 1e100, noNaN: true }),
  fc.integer({ min: -3, max: 3 }),
);
// Few distinct texts so `last` ties on equal time are frequent; astral characters order after
// U+E000-FFFF by code point but before them by UTF-16 unit.
const text = fc.oneof(fc.constantFrom('', 'a', 'b', 'ab', '\uffff', '\ue000', '😀', '𝔸', 'é', 'e\u0301'), fc.string({ unit: 'binary', maxLength: 3 }));
const valueOf: Record<ValueKind, fc.Arbitrary<Scalar>> = { number, string: text, boolean: fc.boolean(), bucketed: percentileValue };

/** A tile: the events folded into fresh slots (no events: an empty tile). */
function tileArb(agg: Aggregation, kind: ValueKind): fc.Arbitrary<Slots> {
  const event = fc.record({ ts: fc.integer({ min: 0, max: 4 }), value: valueOf[kind] });
  // more values per tile where bucket counts grow past one per bucket
  return fc.array(event, { maxLength: kind === 'bucketed' ? 12 : 5 }).map((events) => {
    const slots = fresh(agg);
    for (const e of events) addToSlots(agg, true, slots.nums, 0, slots.vals, 0, e.value, e.ts);
    return slots;
  });
}

function fresh(agg: Aggregation): Slots {
  const spec = AGGREGATION_SPECS[agg];
  const slots: Slots = { nums: new Array<number>(spec.width).fill(0), vals: new Array<TileValue>(spec.valueWidth).fill(null) };
  initSlots(agg, slots.nums, 0, slots.vals, 0);
  return slots;
}

function mergeTs(agg: Aggregation, tiles: readonly Slots[]): Slots {
  const into = fresh(agg);
  for (const t of tiles) mergeSlots(agg, into.nums, 0, into.vals, 0, t.nums, 0, t.vals, 0);
  return into;
}

// Redis: the production LUA_TILES (parseLayout, readTile, mergeTiles, writeTile, the generated
// mergeSlot), folding each case's tiles into an empty tile. ARGV: layout, then per case the number
// of tiles, the empty tile and the tiles, all packed as the store packs them.
const LUA_FOLD = `${LUA_TILES}
local layout = parseLayout(ARGV[1])
local out = {}
local i = 2
while i <= #ARGV do
  local m = tonumber(ARGV[i])
  local acc = ARGV[i + 1]
  for k = 1, m do acc = mergeTiles(acc, ARGV[i + 1 + k], 1, layout) end
  out[#out + 1] = acc
  i = i + 2 + m
end
return out
`;

async function mergeLua(agg: Aggregation, cases: readonly (readonly Slots[])[]): Promise<Slots[]> {
  const spec = AGGREGATION_SPECS[agg];
  const pack = (s: Slots): Buffer => encodeTile({ minTs: 0, maxTs: 0, nums: s.nums, vals: s.vals });
  const args: (string | Buffer)[] = [`${spec.width} ${spec.valueWidth} ${spec.lua.code} 0 0`];
  for (const tiles of cases) args.push(String(tiles.length), pack(fresh(agg)), ...tiles.map(pack));
  const reply = (await evalBuffer(LUA_FOLD, 0, ...args)) as Buffer[];
  return reply.map((b) => {
    const t = decodeTile(b, spec.width, spec.valueWidth);
    return { nums: t.nums, vals: t.vals };
  });
}

// chDB: doubles travel as their bits (no decimal text in between), text as hex of its UTF-8.
const bits = (x: number): string => {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return view.getBigUint64(0).toString();
};
const fromBits = (text: string): number => {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(text));
  return view.getFloat64(0);
};
const sqlDouble = (x: number): string => `reinterpretAsFloat64(toUInt64('${bits(x)}'))`;
const VALUE_TYPE: Record<ValueKind, string> = { number: 'Nullable(Float64)', string: 'Nullable(String)', boolean: 'Nullable(Bool)', bucketed: 'Map(Int32, UInt64)' };

function sqlValue(v: TileValue): string {
  // bucket counts: SQL has no null map, an empty one means none
  if (v instanceof Map) return `map(${[...v].flat().join(', ')})`;
  if (v === null) return 'NULL';
  if (typeof v === 'number') return sqlDouble(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return `unhex('${Buffer.from(v, 'utf8').toString('hex')}')`;
}

function mergeSql(agg: Aggregation, kind: ValueKind, cases: readonly (readonly Slots[])[]): Slots[] {
  const spec = AGGREGATION_SPECS[agg];
  const type = `Tuple(${[...Array<string>(spec.width).fill('Float64'), ...Array<string>(spec.valueWidth).fill(VALUE_TYPE[kind])].join(', ')})`;
  const tuple = (s: Slots): string => `CAST(tuple(${[...s.nums.map(sqlDouble), ...s.vals.map((v) => (kind === 'bucketed' && v === null ? 'map()' : sqlValue(v)))].join(', ')}), '${type}')`;
  const rows = cases.map((tiles, i) => `(${i}, [${tiles.map(tuple).join(', ')}])`);
  const out = [
    ...Array.from({ length: spec.width }, (_, k) => `toString(reinterpretAsUInt64(tupleElement(r, ${k + 1})))`),
    ...Array.from({ length: spec.valueWidth }, (_, k) => {
      const v = `tupleElement(r, ${spec.width + k + 1})`;
      if (kind === 'number') return `if(isNull(${v}), NULL, toString(reinterpretAsUInt64(assumeNotNull(${v}))))`;
      if (kind === 'bucketed') return `toJSONString(${v})`;
      return kind === 'string' ? `hex(${v})` : `toString(${v})`;
    }),
  ];
  const sql =
    `SELECT [${out.join(', ')}] AS slots FROM (SELECT tupleElement(c, 1) AS i, arrayFold((a, b) -> ${spec.sql.merge('a', 'b')}, tupleElement(c, 2), ${tuple(fresh(agg))}) AS r ` +
    `FROM (SELECT arrayJoin([${rows.join(', ')}]) AS c)) ORDER BY i`;
  const text = chdb.query(sql, 'JSONEachRow').toString();
  return text
    .trim()
    .split('\n')
    .map((line) => {
      const slots = (JSON.parse(line) as { slots: (string | null)[] }).slots;
      const vals = slots.slice(spec.width).map((v): TileValue => {
        if (v === null) return null;
        if (kind === 'bucketed') {
          const counts = Object.entries(JSON.parse(v) as Record<string, number | string>);
          return counts.length === 0 ? null : new Map(counts.map(([b, c]) => [Number(b), Number(c)]));
        }
        if (kind === 'number') return fromBits(v);
        if (kind === 'boolean') return v === 'true';
        return Buffer.from(v, 'hex').toString('utf8');
      });
      return { nums: slots.slice(0, spec.width).map((v) => fromBits(v!)), vals };
    });
}

/** Slots as text that tells -0 from 0 and keeps NaN, bucket counts as [bucket, count] pairs in bucket order, for readable failures. */
const show = (s: Slots): string => JSON.stringify([...s.nums.map((x) => (Object.is(x, -0) ? '-0' : String(x))), ...s.vals.map((v) => (v instanceof Map ? sortedCounts(v) : v))]);

const sortedCounts = (counts: BucketCounts): [number, number][] => [...counts].sort(([a], [b]) => a - b);

/** Object.is, and for bucket counts: the same buckets with the same counts. */
function sameValue(a: TileValue | undefined, b: TileValue | undefined): boolean {
  if (a instanceof Map && b instanceof Map) {
    const [x, y] = [sortedCounts(a), sortedCounts(b)];
    return x.length === y.length && x.every(([bucket, count], i) => bucket === y[i]![0] && Object.is(count, y[i]![1]));
  }
  return Object.is(a, b);
}

function expectIdentical(what: string, got: readonly Slots[], expected: readonly Slots[], cases: readonly (readonly Slots[])[]): void {
  expect(got).toHaveLength(expected.length);
  expected.forEach((e, i) => {
    const g = got[i]!;
    const same = e.nums.every((x, k) => Object.is(x, g.nums[k])) && e.vals.every((v, k) => sameValue(v, g.vals[k]));
    if (!same) expect.fail(`${what} case ${i}: ${show(g)}, TypeScript ${show(e)}; tiles ${cases[i]!.map(show).join(' ')}`);
  });
}

const CASES: [Aggregation, ValueKind][] = [
  ['count', 'number'],
  ['sum', 'number'],
  ['mean', 'number'],
  ['min', 'number'],
  ['max', 'number'],
  ['var', 'number'],
  ['stddev', 'number'],
  ['last', 'number'],
  ['last', 'string'],
  ['last', 'boolean'],
  ['first', 'number'],
  ['first', 'string'],
  ['first', 'boolean'],
  ['approx_percentile', 'bucketed'],
];

describe('aggregation specs: TypeScript, Redis Lua and ClickHouse SQL merge tiles bit-identically', () => {
  it('covers every aggregation', () => {
    expect(new Set(CASES.map(([agg]) => agg))).toEqual(new Set(Object.keys(AGGREGATION_SPECS)));
  });

  for (const [agg, kind] of CASES) {
    it(`${agg} over ${kind} values: every slot identical (Object.is) in TypeScript, Lua and SQL`, async () => {
      const cases = fc.array(fc.array(tileArb(agg, kind), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 60 });
      await fc.assert(
        fc.asyncProperty(cases, async (batch) => {
          const expected = batch.map((tiles) => mergeTs(agg, tiles));
          expectIdentical('Lua', await mergeLua(agg, batch), expected, batch);
          expectIdentical('SQL', mergeSql(agg, kind, batch), expected, batch);
        }),
        { numRuns: 15 },
      );
    });
  }

  it('approx_percentile: the SQL buckets values and takes the nearest rank exactly as TypeScript does', () => {
    // Raw values per case (a null too, which counts nowhere), bucketed by the spec's per-instant SQL
    // and finished by its final SQL, against addToSlots then finalize: the bucket edges and the
    // representatives are built from bits in both, so every value must be the same double.
    const spec = AGGREGATION_SPECS.approx_percentile;
    const part = spec.sql.parts![0]!;
    const quantile = fc.oneof(fc.constantFrom(0, 0.01, 0.25, 0.5, 0.9, 0.99, 1), fc.double({ min: 0, max: 1, noNaN: true }));
    fc.assert(
      fc.property(fc.array(fc.array(percentileValue, { maxLength: 40 }), { minLength: 1, maxLength: 30 }), quantile, (cases, q) => {
        const expected = cases.map((values) => {
          const slots = fresh('approx_percentile');
          for (const v of values) addToSlots('approx_percentile', true, slots.nums, 0, slots.vals, 0, v, 0);
          return spec.finalize(slots.nums, 0, slots.vals, 0, { quantile: q }) as number | null;
        });
        const rows = cases.map((values, i) => `(${i}, CAST([${[...values.map(sqlDouble), 'NULL'].join(', ')}], 'Array(Nullable(Float64))'))`);
        const sql =
          `SELECT i, if(isNull(v), NULL, toString(reinterpretAsUInt64(assumeNotNull(v)))) AS v FROM (SELECT i, ${spec.sql.final(() => 'b', { quantile: q })} AS v FROM (` +
          `SELECT i, ${part.perTs('x', 'NULL')} AS b FROM (SELECT tupleElement(c, 1) AS i, arrayJoin(tupleElement(c, 2)) AS x FROM (SELECT arrayJoin([${rows.join(', ')}]) AS c)) GROUP BY i)) ORDER BY i`;
        const got = chdb
          .query(sql, 'JSONEachRow')
          .toString()
          .trim()
          .split('\n')
          .map((line) => {
            const v = (JSON.parse(line) as { v: string | null }).v;
            return v === null ? null : fromBits(v);
          });
        expect(got).toHaveLength(expected.length);
        expected.forEach((e, i) => {
          if (!Object.is(got[i], e)) expect.fail(`case ${i} at q=${q}: SQL ${got[i]}, TypeScript ${e}; values ${JSON.stringify(cases[i])}`);
        });
      }),
      { numRuns: 40 },
    );
  });

  it('the cancelling sum keeps what plain addition loses, in all three', async () => {
    // 1e16 + 1 + 1e-9 - 1e16 in separate tiles: a plain double sum gives 0
    const tiles = [1e16, 1, 1e-9, -1e16].map((x) => {
      const s = fresh('sum');
      addToSlots('sum', true, s.nums, 0, s.vals, 0, x, 0);
      return s;
    });
    const ts = mergeTs('sum', tiles);
    expect(AGGREGATION_SPECS.sum.finalize(ts.nums, 0, ts.vals, 0, {})).toBe(1.000000001);
    expectIdentical('Lua', await mergeLua('sum', [tiles]), [ts], [tiles]);
    expectIdentical('SQL', mergeSql('sum', 'number', [tiles]), [ts], [tiles]);
  });
});

describe('compensated sums in SQL (array functions, and the plain sum where it is exact) equal the TypeScript fold bit for bit', () => {
  // Integers too (the plain-sum shortcut), near 2^52 and past it (where a plain sum of integers
  // rounds and the shortcut must not be taken), mixed in some groups with the cancelling doubles.
  const integer = fc.oneof(
    fc.integer({ min: -1000, max: 1000 }),
    fc.constantFrom(2 ** 52 - 1, -(2 ** 52) + 1, 2 ** 51, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 60, 3, -3, -0),
  );
  const groupValues = fc.oneof(fc.array(integer, { maxLength: 8 }), fc.array(fc.oneof(integer, number), { maxLength: 8 }), fc.array(number, { maxLength: 8 }));
  const pair = (s: Slots): string => `tuple(${sqlDouble(s.nums[0]!)}, ${sqlDouble(s.nums[1]!)})`;
  const pairOut = (t: string): string => `[toString(reinterpretAsUInt64(tupleElement(${t}, 1))), toString(reinterpretAsUInt64(tupleElement(${t}, 2)))]`;
  const rowsOf = (sql: string): Slots[] =>
    chdb
      .query(sql, 'JSONEachRow')
      .toString()
      .trim()
      .split('\n')
      .map((line) => ({ nums: (JSON.parse(line) as { r: string[] }).r.map(fromBits), vals: [] }));
  const sumOf = (values: readonly (number | null)[]): Slots => {
    const slots = fresh('sum');
    for (const v of values) if (v !== null) addCompensated(slots.nums, 0, v, 0);
    return slots;
  };
  // a tile of `sum` slots: one integer (an exact pair, large ones often), integers, or any doubles
  // (compensations that are not 0)
  const tile = fc.oneof(integer.map((v) => sumOf([v])), groupValues.map(sumOf));

  it('of a GROUP BY of values (null left out), in the order the group holds them', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.oneof(integer, number, fc.constant(null)), { maxLength: 10 }), { minLength: 1, maxLength: 30 }), (groups) => {
        const rows = groups.flatMap((values, g) => values.map((v) => `(${g}, ${v === null ? 'NULL' : sqlDouble(v)})`));
        if (rows.length === 0) return;
        const sql =
          `SELECT g, ${pairOut(sqlCompensatedSumAggregate('x'))} AS r FROM (SELECT tupleElement(c, 1) AS g, CAST(tupleElement(c, 2), 'Nullable(Float64)') AS x FROM (SELECT arrayJoin([${rows.join(', ')}]) AS c)) ` +
          `GROUP BY g ORDER BY g SETTINGS max_threads = 1`;
        const expected = groups.filter((values) => values.length > 0).map(sumOf);
        expectIdentical('SQL', rowsOf(sql), expected, []);
      }),
      { numRuns: 40 },
    );
  });

  it('of a GROUP BY of (sum, compensation) pairs, and over window frames deciding the shortcut per partition', () => {
    fc.assert(
      fc.property(fc.array(fc.array(tile, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 4 }), (groups, preceding) => {
        const rows = groups.flatMap((tiles, g) => tiles.map((t, i) => `(${g}, ${i}, ${pair(t)})`));
        const source = `(SELECT tupleElement(c, 1) AS g, tupleElement(c, 2) AS i, tupleElement(c, 3) AS p FROM (SELECT arrayJoin([${rows.join(', ')}]) AS c))`;
        const grouped = `SELECT g, ${pairOut(sqlCompensatedSumOfPairsAggregate('p'))} AS r FROM ${source} GROUP BY g ORDER BY g SETTINGS max_threads = 1`;
        expectIdentical('SQL GROUP BY', rowsOf(grouped), groups.map((tiles) => mergeTs('sum', tiles)), []);
        const framed =
          `SELECT g, i, ${pairOut(sqlCompensatedSumOfPairsAggregate('p', { window: 'w', exactColumn: 'x' }))} AS r ` +
          `FROM (SELECT *, ${sqlExactPartitionColumn('p', '(PARTITION BY g)')} AS x FROM ${source}) ` +
          `WINDOW w AS (PARTITION BY g ORDER BY i RANGE BETWEEN ${preceding} PRECEDING AND CURRENT ROW) ORDER BY g, i`;
        const expected = groups.flatMap((tiles) => tiles.map((_, i) => mergeTs('sum', tiles.slice(Math.max(0, i - preceding), i + 1))));
        expectIdentical('SQL window', rowsOf(framed), expected, []);
      }),
      { numRuns: 40 },
    );
  });
});
