// var and stddev: population variance (divide by n) and its square root, null over none; slots
// [n, mean, M2], folded by Welford's update and merged by Chan et al.'s parallel combination, both
// stable where sum-of-squares cancels. Offline, sums of (x - c) and (x - c)^2 with c the key's
// mean (no cancellation in the subtraction either).
import type { Aggregation } from '../dsl.js';
import type { AggregationSpec } from './spec.js';

function varianceSpec(name: Extract<Aggregation, 'var' | 'stddev'>): AggregationSpec {
  const isVar = name === 'var';
  return {
    name,
    width: 3,
    valueWidth: 0,
    field: 'numeric',
    tolerance: 1e-6,
    init(nums, at) {
      nums[at] = 0;
      nums[at + 1] = 0;
      nums[at + 2] = 0;
    },
    add(nums, at, _vals, _valAt, value) {
      const x = value as number;
      const n = nums[at]! + 1;
      const mean = nums[at + 1]!;
      const delta = x - mean;
      const nextMean = mean + delta / n;
      nums[at] = n;
      nums[at + 1] = nextMean;
      nums[at + 2]! += delta * (x - nextMean);
    },
    merge(intoNums, intoAt, _intoVals, _intoValAt, fromNums, fromAt) {
      const nb = fromNums[fromAt]!;
      if (nb === 0) return;
      const na = intoNums[intoAt]!;
      if (na === 0) {
        intoNums[intoAt] = nb;
        intoNums[intoAt + 1] = fromNums[fromAt + 1]!;
        intoNums[intoAt + 2] = fromNums[fromAt + 2]!;
        return;
      }
      const ma = intoNums[intoAt + 1]!;
      const n = na + nb;
      const delta = fromNums[fromAt + 1]! - ma;
      intoNums[intoAt] = n;
      intoNums[intoAt + 1] = ma + (delta * nb) / n;
      intoNums[intoAt + 2] = intoNums[intoAt + 2]! + fromNums[fromAt + 2]! + (delta * delta * na * nb) / n;
    },
    finalize(nums, at) {
      const n = nums[at]!;
      if (n === 0) return null;
      const v = Math.max(0, nums[at + 2]! / n);
      return isVar ? v : Math.sqrt(v);
    },
    lua: {
      // var and stddev share their slots and merge, so one code
      code: 'v',
      merge: `local nb = bn[o]
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
    end`,
    },
    sql: {
      parts: [
        { suffix: 'n', perTs: (x) => `count(${x})`, combine: 'sum', eventTerm: 'count' },
        { suffix: 's', perTs: (x, c) => `sum(ifNull(${x} - ${c}, 0))`, combine: 'sum', eventTerm: 'deviation' },
        { suffix: 'ss', perTs: (x, c) => `sum(ifNull((${x} - ${c}) * (${x} - ${c}), 0))`, combine: 'sum', eventTerm: 'squaredDeviation' },
      ],
      centered: true,
      final: (part) => {
        const v = `greatest(0, ${part('ss')} / ${part('n')} - pow(${part('s')} / ${part('n')}, 2))`;
        return `if(${part('n')} = 0, NULL, ${isVar ? v : `sqrt(${v})`})`;
      },
      merge: (a, b) => {
        const [na, ma, m2a] = [1, 2, 3].map((i) => `tupleElement(${a}, ${i})`);
        const [nb, mb, m2b] = [1, 2, 3].map((i) => `tupleElement(${b}, ${i})`);
        const n = `(${na} + ${nb})`;
        const delta = `(${mb} - ${ma})`;
        const merged = `tuple(${n}, (${ma} + ((${delta} * ${nb}) / ${n})), ((${m2a} + ${m2b}) + ((((${delta} * ${delta}) * ${na}) * ${nb}) / ${n})))`;
        return `if(${nb} = 0, ${a}, if(${na} = 0, ${b}, ${merged}))`;
      },
    },
  };
}

export const variance = varianceSpec('var');
export const stddev = varianceSpec('stddev');
