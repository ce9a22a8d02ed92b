// Canonical entity keys: values compare as strings, numbers in their shortest decimal form.

/** The canonical text of one join-key value, or null when the value is missing or not a scalar. */
export function canonicalKeyValue(value: unknown): string | null {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
      if (!Number.isFinite(value)) return null;
      // ECMAScript's Number-to-String is the shortest round-trip decimal; -0 becomes "0".
      return String(value);
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value ? 'true' : 'false';
    default:
      return null;
  }
}

/** One string identifying an entity key: the value itself for one join key, a JSON array for several. */
export function entityKeyId(values: readonly string[]): string {
  return values.length === 1 ? values[0]! : JSON.stringify(values);
}

/** Inverse of entityKeyId for an entity with `joinKeyCount` join keys. */
export function entityKeyValues(id: string, joinKeyCount: number): string[] {
  return joinKeyCount === 1 ? [id] : (JSON.parse(id) as string[]);
}
