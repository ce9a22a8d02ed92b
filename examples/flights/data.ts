// Location of the flights Parquet file shipped by the npm package vega-datasets.
import { fileURLToPath } from 'node:url';

// The package exports only its JS entry (build/index.js); the data folder sits beside build/.
export const FLIGHTS_PARQUET_PATH = fileURLToPath(new URL('../data/flights-3m.parquet', import.meta.resolve('vega-datasets')));
