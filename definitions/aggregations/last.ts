// last: the value of the event with the greatest time; on equal times the greatest value (numbers
// numerically, text by code point, false < true), so arrival order never matters; null over none.
// Slots [ts] (NaN when empty) plus one value slot. Offline it is not tiled: an ASOF join on the
// per-instant greatest value picks it (offline/point-in-time.ts).
import { compareLast } from './order.js';
import type { AggregationSpec } from './spec.js';

export const last: AggregationSpec = {
  name: 'last',
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
    if (Number.isNaN(ts) || compareLast(eventTimeMs, value, ts, vals[valAt]!) > 0) {
      nums[at] = eventTimeMs;
      vals[valAt] = value;
    }
  },
  merge(intoNums, intoAt, intoVals, intoValAt, fromNums, fromAt, fromVals, fromValAt) {
    const tb = fromNums[fromAt]!;
    if (Number.isNaN(tb)) return;
    const ta = intoNums[intoAt]!;
    if (Number.isNaN(ta) || compareLast(tb, fromVals[fromValAt]!, ta, intoVals[intoValAt]!) > 0) {
      intoNums[intoAt] = tb;
      intoVals[intoValAt] = fromVals[fromValAt]!;
    }
  },
  finalize(nums, at, vals, valAt) {
    return Number.isNaN(nums[at]!) ? null : vals[valAt]!;
  },
  lua: {
    code: 'l',
    // NaN ~= NaN marks an empty slot
    merge: `local tb = bn[o]
    if tb == tb then
      local ta = an[o]
      if ta ~= ta or tb > ta or (tb == ta and compareValues(bv[vo], av[vo]) > 0) then
        an[o] = tb
        av[vo] = bv[vo]
      end
    end`,
  },
  sql: {
    parts: null,
    asof: { perTs: (x) => `max(${x})`, from: 'end' },
    centered: false,
    final: () => {
      throw new Error('last is not tiled offline');
    },
    // (ts, value): ClickHouse compares String bytewise, which in UTF-8 is code point order
    merge: (a, b) => {
      const [ta, va, tb, vb] = [`tupleElement(${a}, 1)`, `tupleElement(${a}, 2)`, `tupleElement(${b}, 1)`, `tupleElement(${b}, 2)`];
      return `if(isNaN(${tb}), ${a}, if(isNaN(${ta}) OR ${tb} > ${ta} OR (${tb} = ${ta} AND ${vb} > ${va}), ${b}, ${a}))`;
    },
  },
};
