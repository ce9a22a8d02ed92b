// Neumaier's compensated sum, in the three languages the tiles are merged in (TypeScript, Redis
// Lua, ClickHouse SQL), with the same operations in the same order so they agree bit for bit.
// A plain double sum depends on the order of its terms when they cancel (-2 + 2 + 1e-9), and the
// contract allows 1e-9 relative; the rounding error of each addition is kept exactly and added
// back at the end.

/** Add (value, valueCompensation) into the compensated sum at nums[at], nums[at + 1]. */
export function addCompensated(nums: number[], at: number, value: number, valueCompensation: number): void {
  const sum = nums[at]!;
  const t = sum + value;
  const error = Math.abs(sum) >= Math.abs(value) ? sum - t + value : value - t + sum;
  nums[at] = t;
  nums[at + 1] = nums[at + 1]! + valueCompensation + error;
}

/** Lua of addCompensated, at an[o], an[o + 1] (shared by the generated mergeSlot). */
export const LUA_ADD_COMPENSATED = `
local function addCompensated(an, o, value, valueCompensation)
  local sum = an[o]
  local t = sum + value
  local err
  if math.abs(sum) >= math.abs(value) then err = sum - t + value else err = value - t + sum end
  an[o] = t
  an[o + 1] = an[o + 1] + valueCompensation + err
end
`;

/**
 * SQL of addCompensated on (sum, compensation) expressions: a tuple (sum', compensation').
 * Parenthesised as the TypeScript evaluates, left to right.
 */
export function sqlAddCompensated(sum: string, compensation: string, value: string, valueCompensation: string): string {
  const t = `(${sum} + ${value})`;
  const error = `if(abs(${sum}) >= abs(${value}), ((${sum} - ${t}) + ${value}), ((${value} - ${t}) + ${sum}))`;
  return `tuple(${t}, ((${compensation} + ${valueCompensation}) + ${error}))`;
}

/** The lambda `(a, b) -> a + b` on (sum, compensation) tuples, for arrayFold. */
export const SQL_COMPENSATED_FOLD = `(a, b) -> ${sqlAddCompensated('a.1', 'a.2', 'b.1', 'b.2')}`;

/** The compensated sum of an array of doubles, as a (sum, compensation) tuple. */
export function sqlCompensatedSumOfArray(values: string): string {
  return `arrayFold(${SQL_COMPENSATED_FOLD}, arrayMap(v -> tuple(toFloat64(v), 0.), ${values}), tuple(0., 0.))`;
}

/** The compensated sum of an array of (sum, compensation) tuples. */
export function sqlCompensatedSumOfPairs(pairs: string): string {
  return `arrayFold(${SQL_COMPENSATED_FOLD}, ${pairs}, tuple(0., 0.))`;
}
