// The flights example: definitions and where its data lives.
export * from './definitions.js';
export { FLIGHTS_PARQUET_PATH } from './data.js';
