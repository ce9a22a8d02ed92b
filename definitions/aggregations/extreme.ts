// min and max: the smallest / largest present value, null over none; slots [n, v] (n tells an
// empty tile from one holding 0). One factory, as the two differ only in the comparison.
import type { Aggregation } from '../dsl.js';
import type { AggregationSpec } from './spec.js';

function extreme(name: Extract<Aggregation, 'min' | 'max'>, code: string): AggregationSpec {
  // b replaces a when (isMin ? b < a : b > a); equal values keep a (add makes -0 0).
  const isMin = name === 'min';
  const op = name === 'min' ? '<' : '>';
  return {
    name,
    width: 2,
    valueWidth: 0,
    field: 'numeric',
    tolerance: 0,
    init(nums, at) {
      nums[at] = 0;
      nums[at + 1] = 0;
    },
    add(nums, at, _vals, _valAt, value) {
      if (nums[at] === 0 || (isMin ? (value as number) < nums[at + 1]! : (value as number) > nums[at + 1]!)) nums[at + 1] = value as number;
      nums[at]! += 1;
    },
    merge(intoNums, intoAt, _intoVals, _intoValAt, fromNums, fromAt) {
      const nb = fromNums[fromAt]!;
      if (nb === 0) return;
      const b = fromNums[fromAt + 1]!;
      if (intoNums[intoAt] === 0 || (isMin ? b < intoNums[intoAt + 1]! : b > intoNums[intoAt + 1]!)) intoNums[intoAt + 1] = b;
      intoNums[intoAt]! += nb;
    },
    finalize(nums, at) {
      return nums[at] === 0 ? null : nums[at + 1]!;
    },
    lua: {
      code,
      merge: `local nb = bn[o]
    if nb ~= 0 then
      local b = bn[o + 1]
      if an[o] == 0 or b ${op} an[o + 1] then an[o + 1] = b end
      an[o] = an[o] + nb
    end`,
    },
    sql: {
      parts: [{ suffix: 'm', perTs: (x) => `${name}(${x})`, combine: name, eventTerm: 'value' }],
      centered: false,
      final: (part) => part('m'),
      merge: (a, b) => {
        const [na, va, nb, vb] = [`tupleElement(${a}, 1)`, `tupleElement(${a}, 2)`, `tupleElement(${b}, 1)`, `tupleElement(${b}, 2)`];
        return `if(${nb} = 0, ${a}, tuple(${na} + ${nb}, if(${na} = 0 OR ${vb} ${op} ${va}, ${vb}, ${va})))`;
      },
    },
  };
}

export const min = extreme('min', 'i');
export const max = extreme('max', 'x');
