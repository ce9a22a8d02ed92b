// computePlan without a store: what `tidemark plan` names for each kind of change, against a
// stored state built the way the Redis store records it (layout fingerprints and view snapshots).
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { compileOrThrow, entity, eventTime, featureView, source, type FeatureSpec, type Registry } from '../../definitions/index.js';
import { viewLayoutFingerprint, viewNamespace } from '../../online/redis.js';
import type { StoredRegistryState } from '../../online/versions.js';
import { computePlan, formatPlan } from '../../api/plan.js';

const user = entity({ name: 'user', joinKeys: ['user'] });
const schema = z.object({ ts: eventTime(), user: z.string(), uid: z.string(), amount: z.number() });

function registryOf(opts: { features?: Record<string, FeatureSpec<z.infer<typeof schema>>>; keys?: { user: 'user' | 'uid' }; topic?: string; allowedLateness?: '1d' | '2h' } = {}): Registry {
  const clicks = source({ name: 'clicks', topic: opts.topic ?? 'clicks', schema, eventTimeField: 'ts' });
  return compileOrThrow([
    featureView({
      name: 'v',
      source: clicks,
      entity: user,
      keys: opts.keys ?? { user: 'user' },
      ...(opts.allowedLateness ? { allowedLateness: opts.allowedLateness } : {}),
      features: opts.features ?? { n_1h: { agg: 'count', window: '1h' }, amount_sum_1d: { agg: 'sum', field: 'amount', window: '1d' } },
    }),
  ]).registry;
}

/** What the Redis store records after materializing `registry` (recordViewSnapshots). */
function storedOf(registry: Registry): StoredRegistryState {
  const state: StoredRegistryState = { layouts: {}, snapshots: {}, statuses: {}, versions: {}, unreadable: [], keys: {}, watermarkMs: 1_000, history: [] };
  for (const view of registry.views) {
    state.layouts[view.name] = viewLayoutFingerprint(view);
    state.keys[view.name] = 5;
    state.statuses[viewNamespace(view)] = 'ready';
    const s = registry.sources.find((x) => x.name === view.source)!;
    state.snapshots[view.name] = { registryVersion: registry.version, recordedAt: new Date(0).toISOString(), layout: viewLayoutFingerprint(view), namespace: viewNamespace(view), view, source: { name: s.name, topic: s.topic, eventTimeField: s.eventTimeField } };
  }
  return state;
}

function plan(before: Registry, after: Registry) {
  return computePlan({ registry: after, definitionsPath: 'defs', stored: storedOf(before), redis: { url: 'redis://u:secret@h:1', prefix: 'tm' }, offline: null });
}

describe('computePlan', () => {
  it('same registry: unchanged, exit 0; the printed URL hides the password', () => {
    const p = plan(registryOf(), registryOf());
    expect(p.views.map((v) => v.status)).toEqual(['unchanged']);
    expect(p.exitCode).toBe(0);
    expect(formatPlan(p)[1]).toContain('redis://u:***@h:1');
  });

  it('features added, removed and changed (agg, field), with the new tile layout', () => {
    const after = registryOf({ features: { n_1h: { agg: 'sum', field: 'amount', window: '1h' }, amount_max_1d: { agg: 'max', field: 'amount', window: '1d' } } });
    const [v] = plan(registryOf(), after).views;
    expect(v!.status).toBe('changed');
    expect(v!.changes).toMatchObject({
      featuresAdded: ['amount_max_1d'],
      featuresRemoved: ['amount_sum_1d'],
      featuresChanged: [{ feature: 'n_1h', changes: { agg: { from: 'count', to: 'sum' }, field: { from: null, to: 'amount' } } }],
      key: null,
      source: null,
    });
    expect(v!.changes!.layout).not.toBeNull();
    expect(v!.summary).toEqual([
      'feature added: amount_max_1d: max(amount) window 1d, hop 1h',
      'feature removed: amount_sum_1d: sum(amount) window 1d, hop 1h',
      'feature changed: n_1h: agg count -> sum, field none -> amount',
      expect.stringMatching(/^tile layout changed: [0-9a-f]{16} -> [0-9a-f]{16} \(the stored tiles cannot be read with these definitions\)$/),
    ]);
    expect(v!.needsBootstrap).toBe(true);
  });

  it('a hop change and a key change are named', () => {
    const [hop] = plan(registryOf(), registryOf({ features: { n_1h: { agg: 'count', window: '1h', hop: '10m' }, amount_sum_1d: { agg: 'sum', field: 'amount', window: '1d' } } })).views;
    expect(hop!.summary[0]).toBe('feature changed: n_1h: hop 5m -> 10m');
    const [key] = plan(registryOf(), registryOf({ keys: { user: 'uid' } })).views;
    expect(key!.summary).toEqual(['key changed: user (user) -> user (user <- uid)']);
    expect(key!.needsBootstrap).toBe(true);
  });

  it("a source's topic change is a source change", () => {
    const [v] = plan(registryOf(), registryOf({ topic: 'clicks_v2' })).views;
    expect(v!.summary).toEqual(['source changed: clicks (topic clicks, event time ts) -> clicks (topic clicks_v2, event time ts)']);
    expect(v!.needsBootstrap).toBe(true);
  });

  it('allowedLateness alone: changed, but no bootstrap', () => {
    const [v] = plan(registryOf(), registryOf({ allowedLateness: '2h' })).views;
    expect(v!.status).toBe('changed');
    expect(v!.summary).toEqual(['allowedLateness changed: 1d -> 2h']);
    expect(v!.needsBootstrap).toBe(false);
    expect(v!.bootstrapReasons).toEqual([]);
  });

  it('an applied version not yet bootstrapped: unchanged, but needs a bootstrap, and serving answers 503 meanwhile', () => {
    const registry = registryOf();
    const stored = storedOf(registry);
    stored.statuses[viewNamespace(registry.views[0]!)] = 'pending';
    const v = computePlan({ registry, definitionsPath: 'defs', stored, redis: { url: 'redis://h:1', prefix: 'tm' }, offline: null }).views[0]!;
    expect(v.status).toBe('unchanged');
    expect(v.needsBootstrap).toBe(true);
    expect(v.bootstrapReasons[0]).toMatch(/is applied and pending/);
    expect(v.whileBootstrapping).toMatch(/503 TM_STORE_NEEDS_BOOTSTRAP/);
    expect(v.version).toEqual({ namespace: viewNamespace(registry.views[0]!), status: 'pending' });
  });

});
