// Loads a definitions module (a .ts/.js file, or a folder with index.ts / definitions.ts) by path.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TidemarkError } from './errors.js';

const FOLDER_ENTRIES = ['index.ts', 'definitions.ts', 'index.js', 'index.mjs', 'definitions.js'];

export function resolveDefinitionsPath(path: string): string {
  const absolute = resolve(path);
  if (!existsSync(absolute)) {
    throw new TidemarkError('TM_DEF_LOAD', `definitions path ${absolute} does not exist`, { path: absolute });
  }
  if (!statSync(absolute).isDirectory()) return absolute;
  const entry = FOLDER_ENTRIES.map((f) => join(absolute, f)).find((f) => existsSync(f));
  if (!entry) {
    throw new TidemarkError('TM_DEF_LOAD', `folder ${absolute} has none of ${FOLDER_ENTRIES.join(', ')}`, { path: absolute });
  }
  return entry;
}

/** The module namespace of a definitions file or folder; compile() collects the definitions in it. */
export async function loadDefinitions(path: string): Promise<{ path: string; module: unknown }> {
  const file = resolveDefinitionsPath(path);
  try {
    return { path: file, module: await import(pathToFileURL(file).href) };
  } catch (e) {
    throw new TidemarkError('TM_DEF_LOAD', `cannot load definitions from ${file}: ${(e as Error).message}`, { path: file });
  }
}
