#!/usr/bin/env node
// Runs a TypeScript entry point of this repository (the benchmarks) through tsx's loader.
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

register();
await import(pathToFileURL(resolve(process.argv[2])).href);
