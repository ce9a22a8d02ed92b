// count: the number of events (no field) or of events whose field is present; slots [n].
import type { AggregationSpec } from './spec.js';

export const count: AggregationSpec = {
  name: 'count',
  width: 1,
  valueWidth: 0,
  field: 'optional',
  tolerance: 0,
  init(nums, at) {
    nums[at] = 0;
  },
  // Also called for every event of a count without field (addToSlots), whatever the value.
  add(nums, at) {
    nums[at]! += 1;
  },
  merge(intoNums, intoAt, _intoVals, _intoValAt, fromNums, fromAt) {
    intoNums[intoAt]! += fromNums[fromAt]!;
  },
  finalize(nums, at) {
    return nums[at]!;
  },
  lua: {
    code: 'c',
    merge: `an[o] = an[o] + bn[o]`,
  },
  sql: {
    parts: [{ suffix: 'n', perTs: (x) => (x === null ? 'count()' : `count(${x})`), combine: 'sum', eventTerm: 'count' }],
    centered: false,
    final: (part) => part('n'),
    merge: (a, b) => `tuple(tupleElement(${a}, 1) + tupleElement(${b}, 1))`,
  },
};
