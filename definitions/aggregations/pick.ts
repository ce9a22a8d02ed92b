// last and first: the value of one event of the window, picked by time and a tie rule on equal
// times, so arrival order never matters; null over none. `last` keeps the event with the greatest
// time and, on equal times, the greatest value (numbers numerically, text by code point, false <
// true); `first` mirrors it: the smallest time, then the smallest value (windowed only). One
// factory, as the two differ only in the direction of the comparison. Slots [ts] (NaN when empty)
// plus one value slot. Offline they are not tiled: an ASOF join picks the per-instant value, from
// the end of the window (ts < t) for last, from its start (ts >= tail(t)) for first
// (offline/point-in-time.ts).
import type { Scalar } from '../aggregates.js';
import type { Aggregation } from '../dsl.js';
import { compareLast } from './order.js';
import type { AggregationSpec } from './spec.js';

function pick(name: Extract<Aggregation, 'last' | 'first'>, code: string): AggregationSpec {
  // +1: a candidate wins when it compares greater (last); -1: when it compares smaller (first).
  const wins = name === 'last' ? 1 : -1;
  const op = name === 'last' ? '>' : '<';
  return {
    name,
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
      if (Number.isNaN(ts) || compareLast(eventTimeMs, value, ts, vals[valAt] as Scalar) * wins > 0) {
        nums[at] = eventTimeMs;
        vals[valAt] = value;
      }
    },
    merge(intoNums, intoAt, intoVals, intoValAt, fromNums, fromAt, fromVals, fromValAt) {
      const tb = fromNums[fromAt]!;
      if (Number.isNaN(tb)) return;
      const ta = intoNums[intoAt]!;
      if (Number.isNaN(ta) || compareLast(tb, fromVals[fromValAt] as Scalar, ta, intoVals[intoValAt] as Scalar) * wins > 0) {
        intoNums[intoAt] = tb;
        intoVals[intoValAt] = fromVals[fromValAt]!;
      }
    },
    finalize(nums, at, vals, valAt) {
      return Number.isNaN(nums[at]!) ? null : (vals[valAt] as Scalar);
    },
    lua: {
      code,
      // NaN ~= NaN marks an empty slot
      merge: `local tb = bn[o]
    if tb == tb then
      local ta = an[o]
      if ta ~= ta or tb ${op} ta or (tb == ta and compareValues(bv[vo], av[vo]) ${op} 0) then
        an[o] = tb
        av[vo] = bv[vo]
      end
    end`,
    },
    sql: {
      parts: null,
      asof: name === 'last' ? { perTs: (x) => `max(${x})`, from: 'end' } : { perTs: (x) => `min(${x})`, from: 'start' },
      centered: false,
      final: () => {
        throw new Error(`${name} is not tiled offline`);
      },
      // (ts, value): ClickHouse compares String bytewise, which in UTF-8 is code point order
      merge: (a, b) => {
        const [ta, va, tb, vb] = [`tupleElement(${a}, 1)`, `tupleElement(${a}, 2)`, `tupleElement(${b}, 1)`, `tupleElement(${b}, 2)`];
        return `if(isNaN(${tb}), ${a}, if(isNaN(${ta}) OR ${tb} ${op} ${ta} OR (${tb} = ${ta} AND ${vb} ${op} ${va}), ${b}, ${a}))`;
      },
    },
  };
}

export const last = pick('last', 'l');
export const first = pick('first', 'f');
