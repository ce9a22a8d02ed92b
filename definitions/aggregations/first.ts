// first: the value of the event with the smallest time in the window; on equal times the smallest
// value (numbers numerically, text by code point, false < true), the mirror of last's tie rule, so
// arrival order never matters; null over none. Windowed only. Slots [ts] (NaN when empty) plus one
// value slot. Offline an ASOF join from the window start picks the per-instant smallest value.
import { compareLast } from './order.js';
import type { AggregationSpec } from './spec.js';

export const first: AggregationSpec = {
  name: 'first',
  width: 1,
  valueWidth: 1,
  field: 'ordered',
  tolerance: 0,
  init(nums, at, vals, valAt) {
    nums[at] = Number.NaN;
    vals[valAt] = null;
  },
  add(nums, at, vals, valAt, value, eventTimeMs) {
    const ts = nums[at]!;
    if (Number.isNaN(ts) || compareLast(eventTimeMs, value, ts, vals[valAt]!) < 0) {
      nums[at] = eventTimeMs;
      vals[valAt] = value;
    }
  },
  merge(intoNums, intoAt, intoVals, intoValAt, fromNums, fromAt, fromVals, fromValAt) {
    const tb = fromNums[fromAt]!;
    if (Number.isNaN(tb)) return;
    const ta = intoNums[intoAt]!;
    if (Number.isNaN(ta) || compareLast(tb, fromVals[fromValAt]!, ta, intoVals[intoValAt]!) < 0) {
      intoNums[intoAt] = tb;
      intoVals[intoValAt] = fromVals[fromValAt]!;
    }
  },
  finalize(nums, at, vals, valAt) {
    return Number.isNaN(nums[at]!) ? null : vals[valAt]!;
  },
  lua: {
    code: 'f',
    // NaN ~= NaN marks an empty slot
    merge: `local tb = bn[o]
    if tb == tb then
      local ta = an[o]
      if ta ~= ta or tb < ta or (tb == ta and compareValues(bv[vo], av[vo]) < 0) then
        an[o] = tb
        av[vo] = bv[vo]
      end
    end`,
  },
  sql: {
    parts: null,
    asof: { perTs: (x) => `min(${x})`, from: 'start' },
    centered: false,
    final: () => {
      throw new Error('first is not tiled offline');
    },
    // (ts, value): ClickHouse compares String bytewise, which in UTF-8 is code point order
    merge: (a, b) => {
      const [ta, va, tb, vb] = [`tupleElement(${a}, 1)`, `tupleElement(${a}, 2)`, `tupleElement(${b}, 1)`, `tupleElement(${b}, 2)`];
      return `if(isNaN(${tb}), ${a}, if(isNaN(${ta}) OR ${tb} < ${ta} OR (${tb} = ${ta} AND ${vb} < ${va}), ${b}, ${a}))`;
    },
  },
};
