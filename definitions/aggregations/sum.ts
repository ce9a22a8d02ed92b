// sum: the sum of present values, 0 over none; slots [sum, compensation] (Neumaier, see
// compensated.ts), so the result does not depend on the order of terms that cancel.
import { addCompensated, sqlAddCompensated, sqlCompensatedSumAggregate } from './compensated.js';
import type { AggregationSpec } from './spec.js';

export const sum: AggregationSpec = {
  name: 'sum',
  width: 2,
  valueWidth: 0,
  field: 'numeric',
  tolerance: 1e-9,
  init(nums, at) {
    nums[at] = 0;
    nums[at + 1] = 0;
  },
  add(nums, at, _vals, _valAt, value) {
    addCompensated(nums, at, value as number, 0);
  },
  merge(intoNums, intoAt, _intoVals, _intoValAt, fromNums, fromAt) {
    addCompensated(intoNums, intoAt, fromNums[fromAt]!, fromNums[fromAt + 1]!);
  },
  finalize(nums, at) {
    return nums[at]! + nums[at + 1]!;
  },
  lua: {
    code: 's',
    merge: `addCompensated(an, o, bn[o], bn[o + 1])`,
  },
  sql: {
    parts: [{ suffix: 's', perTs: (x) => sqlCompensatedSumAggregate(x!), combine: 'compensatedSum', eventTerm: 'value' }],
    centered: false,
    final: (part) => part('s'),
    merge: (a, b) => sqlAddCompensated(`tupleElement(${a}, 1)`, `tupleElement(${a}, 2)`, `tupleElement(${b}, 1)`, `tupleElement(${b}, 2)`),
  },
};
