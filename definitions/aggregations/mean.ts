// mean: sum / n of present values, null over none; slots [n, sum, compensation] (the sum
// compensated as in sum.ts).
import { addCompensated, sqlAddCompensated, sqlCompensatedSumAggregate } from './compensated.js';
import type { AggregationSpec } from './spec.js';

export const mean: AggregationSpec = {
  name: 'mean',
  width: 3,
  valueWidth: 0,
  field: 'numeric',
  tolerance: 1e-9,
  init(nums, at) {
    nums[at] = 0;
    nums[at + 1] = 0;
    nums[at + 2] = 0;
  },
  add(nums, at, _vals, _valAt, value) {
    nums[at]! += 1;
    addCompensated(nums, at + 1, value as number, 0);
  },
  merge(intoNums, intoAt, _intoVals, _intoValAt, fromNums, fromAt) {
    intoNums[intoAt]! += fromNums[fromAt]!;
    addCompensated(intoNums, intoAt + 1, fromNums[fromAt + 1]!, fromNums[fromAt + 2]!);
  },
  finalize(nums, at) {
    const n = nums[at]!;
    return n === 0 ? null : (nums[at + 1]! + nums[at + 2]!) / n;
  },
  lua: {
    code: 'm',
    merge: `an[o] = an[o] + bn[o]
    addCompensated(an, o + 1, bn[o + 1], bn[o + 2])`,
  },
  sql: {
    parts: [
      { suffix: 'n', perTs: (x) => `count(${x})`, combine: 'sum', eventTerm: 'count' },
      { suffix: 's', perTs: (x) => sqlCompensatedSumAggregate(x!), combine: 'compensatedSum', eventTerm: 'value' },
    ],
    centered: false,
    final: (part) => `if(${part('n')} = 0, NULL, ${part('s')} / ${part('n')})`,
    merge: (a, b) => {
      const s = sqlAddCompensated(`tupleElement(${a}, 2)`, `tupleElement(${a}, 3)`, `tupleElement(${b}, 2)`, `tupleElement(${b}, 3)`);
      return `tuple(tupleElement(${a}, 1) + tupleElement(${b}, 1), tupleElement(${s}, 1), tupleElement(${s}, 2))`;
    },
  },
};
