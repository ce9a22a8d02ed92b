// Argument parsers shared by the CLI's commands.
import { InvalidArgumentError } from 'commander';

/** The Redis every Redis command uses without --redis-url or $REDIS_URL. */
export const REDIS_URL_DEFAULT = 'redis://127.0.0.1:6379';

/** A commander parser for a whole number of at least `min`, naming the flag when it is not one. */
export function wholeNumber(name: string, min = 0): (text: string) => number {
  return (text: string): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}, got ${text}`);
    return n;
  };
}
