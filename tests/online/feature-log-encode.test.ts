// The serving path's encoding of a logged read (online/feature-log.ts): encodeLoggedRead writes
// exactly JSON.stringify(loggedReadOf(...)), and the text decodes as a valid feature-log record.
import { describe, expect, it } from 'vitest';
import { decodeFeatureLogRecord } from '../../ingest/index.js';
import { encodeLoggedRead, loggedReadOf, type OnlineFeaturesRequest, type OnlineFeaturesResponse } from '../../online/index.js';

describe('encodeLoggedRead', () => {
  it('writes the same text as JSON.stringify of the record, for numbers, text, booleans, nulls and absent values', () => {
    const request: OnlineFeaturesRequest = { features: ['v:a', 'v:b', 'w:c'], entities: { k: ['x"y', 12], j: [true, 'z\\n'] } };
    const response: OnlineFeaturesResponse = {
      metadata: { feature_names: ['k', 'j', 'a', 'b', 'c'] },
      results: [
        { values: ['x"y', 12], statuses: ['PRESENT', 'PRESENT'], event_timestamps: ['1970-01-01T00:00:00Z', '1970-01-01T00:00:00Z'] },
        { values: [true, 'z\\n'], statuses: ['PRESENT', 'PRESENT'], event_timestamps: ['1970-01-01T00:00:00Z', '1970-01-01T00:00:00Z'] },
        { values: [1.5, null], statuses: ['PRESENT', 'NOT_FOUND'], event_timestamps: ['2024-03-01T12:34:56.789Z', '1970-01-01T00:00:00Z'] },
        { values: ['text \u00e9\u2603', -0], statuses: ['PRESENT', 'PRESENT'], event_timestamps: ['2024-03-01T00:00:00Z', '2024-03-02T00:00:00.001Z'] },
        { values: [false, 1e21], statuses: ['PRESENT', 'OUTSIDE_MAX_AGE'], event_timestamps: ['2024-03-01T00:00:00Z', '1970-01-01T00:00:00Z'] },
      ],
    };
    const encoded = encodeLoggedRead(request, response, 1_709_000_000_123, 'req-1\t"quoted"', 'registry-v1');
    expect(encoded.json).toBe(JSON.stringify(loggedReadOf(request, response, 1_709_000_000_123, 'req-1\t"quoted"', 'registry-v1')));
    expect(encoded).toMatchObject({ kind: 'read', requestId: 'req-1\t"quoted"', timeMs: 1_709_000_000_123 });
    const decoded = decodeFeatureLogRecord(encoded.json);
    expect(decoded.ok).toBe(true);
  });
});
