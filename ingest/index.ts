// Public surface of ingest/: decoding and validation, the materializer core, file replay.
export { EventDecoder } from './decode.js';
export type { DecodedEvent, BadEvent, DecodeResult, EventPosition } from './decode.js';
export { TileBatchBuilder } from './materialize.js';
