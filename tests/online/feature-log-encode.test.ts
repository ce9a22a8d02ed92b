// The serving path's encoding of a logged read (online/feature-log.ts): encodeLoggedRead writes
// exactly JSON.stringify(loggedReadOf(...).read), the text decodes as a valid feature-log record,
// its feature set too, and together they give back every value, status and event time.
import { describe, expect, it } from 'vitest';
import { decodeFeatureLogRecord, loggedFeaturesOf, type FeatureSetRecord, type LoggedReadRecord } from '../../ingest/index.js';
import { encodeLoggedRead, loggedReadOf, MemoryOnlineStore, OnlineFeatureService, type OnlineFeaturesRequest, type OnlineFeaturesResponse } from '../../online/index.js';
import { FEATURES, flightsCompiled, replayFlights } from '../support/feature-log.js';

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
        { values: [false, 1e21], statuses: ['PRESENT', 'OUTSIDE_MAX_AGE'], event_timestamps: ['2024-03-01T00:00:00Z', '2024-02-01T00:00:00Z'] },
      ],
    };
    const encoded = encodeLoggedRead(request, response, 1_709_000_000_123, 'req-1\t"quoted"', 'registry-v1');
    const { read, features } = loggedReadOf(request, response, 1_709_000_000_123, 'req-1\t"quoted"', 'registry-v1');
    expect(encoded.json).toBe(JSON.stringify(read));
    // From the event times in ms the texts were formatted from (a fraction of a ms dropped, as a Date drops it), the same text.
    const times = response.results.slice(2).map((c) => c.event_timestamps.map((t) => (t === '1970-01-01T00:00:00Z' ? null : Date.parse(t) + 0.5)));
    expect(encodeLoggedRead(request, response, 1_709_000_000_123, 'req-1\t"quoted"', 'registry-v1', times).json).toBe(encoded.json);
    expect(encoded).toMatchObject({ kind: 'read', requestId: 'req-1\t"quoted"', timeMs: 1_709_000_000_123, features: { id: features.features_id, json: JSON.stringify(features) } });
    expect(features).toEqual({ kind: 'features', v: 3, features_id: expect.stringMatching(/^[0-9a-f]{16}$/), registry_version: 'registry-v1', features: ['v:a', 'v:b', 'w:c'] });
    // Another registry version or feature list is another set; the same one, the same id.
    expect(encodeLoggedRead(request, response, 1, 'r', 'registry-v2').features!.id).not.toBe(features.features_id);
    expect(encodeLoggedRead(request, response, 1, 'r', 'registry-v1').features!.id).toBe(features.features_id);
    const decoded = decodeFeatureLogRecord(encoded.json);
    const set = decodeFeatureLogRecord(encoded.features!.json);
    expect(decoded.ok && set.ok).toBe(true);
    const back = loggedFeaturesOf(decoded.ok ? (decoded.record as LoggedReadRecord) : read, (id) => (set.ok && id === features.features_id ? (set.record as FeatureSetRecord) : undefined));
    expect(back).toEqual([
      { view: 'v', feature: 'a', values: [1.5, null], statuses: ['PRESENT', 'NOT_FOUND'], event_times_ms: [Date.parse('2024-03-01T12:34:56.789Z'), null] },
      { view: 'v', feature: 'b', values: ['text \u00e9\u2603', 0], statuses: ['PRESENT', 'PRESENT'], event_times_ms: [Date.parse('2024-03-01T00:00:00Z'), Date.parse('2024-03-02T00:00:00.001Z')] },
      { view: 'w', feature: 'c', values: [false, 1e21], statuses: ['PRESENT', 'OUTSIDE_MAX_AGE'], event_times_ms: [Date.parse('2024-03-01T00:00:00Z'), null] },
    ]);
    // Without its set, a version-3 read cannot be expanded.
    expect(loggedFeaturesOf(read)).toBeNull();
  });

  it('writes the same ages from the service\'s event times in ms as from the response\'s texts', async () => {
    const compiled = flightsCompiled();
    const store = new MemoryOnlineStore(compiled.registry);
    await replayFlights(compiled, store, 3_000);
    const service = new OnlineFeatureService(compiled.registry, store, 'watermark');
    const request: OnlineFeaturesRequest = { features: [...FEATURES, 'origin_delays:last_delay'], entities: { airport: ['ORD', 'ATL', 'nowhere', 'SFO', 'LAX'] } };
    let compared = 0;
    for (const at of [undefined, Date.UTC(2001, 0, 1, 6), Date.UTC(2001, 0, 1, 1), Date.UTC(2001, 0, 1, 2)]) {
      const read = await service.getOnlineFeatures(at === undefined ? request : { ...request, at }, { eventTimes: true });
      expect(read.eventTimesMs).toHaveLength(request.features.length);
      const fromTimes = encodeLoggedRead(request, read.response, read.atMs, 'r', 'v', read.eventTimesMs).json;
      const fromTexts = encodeLoggedRead(request, read.response, read.atMs, 'r', 'v').json;
      expect(fromTimes).toBe(fromTexts);
      const ages = (JSON.parse(fromTexts) as { ages_ms: (number | null)[] }).ages_ms;
      compared += ages.filter((a) => a !== null).length;
      expect(ages.some((a) => a === null)).toBe(true); // 'nowhere' has no events
    }
    expect(compared).toBeGreaterThan(50);
    // Without the option, no event times come back.
    expect((await service.getOnlineFeatures(request)).eventTimesMs).toBeUndefined();
  });
});
