// The table of aggregations: every path (tiles in TypeScript, Redis Lua, ClickHouse SQL, the
// compiler's field rules, the tolerances of the tests) reads an aggregation from here.
import type { Aggregation } from '../dsl.js';
import { LUA_ADD_COMPENSATED } from './compensated.js';
import { count } from './count.js';
import { max, min } from './extreme.js';
import { mean } from './mean.js';
import { approxPercentile } from './percentile.js';
import { first, last } from './pick.js';
import type { AggregationSpec } from './spec.js';
import { sum } from './sum.js';
import { stddev, variance } from './variance.js';

export type { AggregationParams, AggregationSpec, AggregationSql, FieldRule, SqlCombine, SqlEventTerm, SqlPartSpec } from './spec.js';
export { compareCodePoints, compareLast, compareScalars } from './order.js';
export {
  addCompensated,
  sqlAddCompensated,
  sqlCompensatedSumAggregate,
  sqlCompensatedSumOfPairsAggregate,
  sqlExactIntegerAggregate,
  sqlExactPartitionColumn,
  sqlFixedFits,
  sqlFixedPointOfValue,
  sqlFromFixedPoint,
} from './compensated.js';

export const AGGREGATION_SPECS: Record<Aggregation, AggregationSpec> = {
  count,
  sum,
  mean,
  min,
  max,
  var: variance,
  stddev,
  last,
  first,
  approx_percentile: approxPercentile,
};

/** Each aggregation's code in Redis tile layouts (online/redis.ts). */
export const LUA_AGG_CODE = Object.fromEntries(Object.values(AGGREGATION_SPECS).map((s) => [s.name, s.lua.code])) as Record<Aggregation, string>;

/**
 * Lua of mergeSlot(agg, o, vo, an, av, bn, bv), one branch per aggregation code, generated from the
 * specs; needs compareValues (the value order) and mergeBucketCounts (packed bucket counts) defined
 * before it. Includes addCompensated.
 */
export function luaMergeSlot(): string {
  const bodies = new Map<string, string>();
  for (const spec of Object.values(AGGREGATION_SPECS)) {
    const other = bodies.get(spec.lua.code);
    // aggregations that share a code (var, stddev) must share the merge
    if (other !== undefined && other !== spec.lua.merge) throw new Error(`Lua code ${spec.lua.code} has two merges`);
    bodies.set(spec.lua.code, spec.lua.merge);
  }
  const branches = [...bodies].map(([code, body], i) => `  ${i === 0 ? 'if' : 'elseif'} agg == '${code}' then\n    ${body}`);
  return `${LUA_ADD_COMPENSATED}
-- generated from definitions/aggregations: into = stored (an, av), from = update (bn, bv), the
-- operations of each spec's merge in the same order, so results are bit-identical
local function mergeSlot(agg, o, vo, an, av, bn, bv)
${branches.join('\n')}
  else
    error('unknown aggregation code ' .. tostring(agg))
  end
end
`;
}
