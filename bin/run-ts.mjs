#!/usr/bin/env node
// Runs a TypeScript entry point of this repository (the benchmarks) through tsx's loader; the
// script sees a normal argv: [node, script, ...its arguments].
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

register();
const script = resolve(process.argv[2]);
process.argv.splice(1, 2, script);
await import(pathToFileURL(script).href);
