// Burn-rate alerting on a fake clock: the incremental windows equal the plain definition, and
// alerts fire, repeat and resolve at the exact evaluations the SRE Workbook table predicts
// (expected indexes worked out here from the window sizes and thresholds, not by the code under
// test); a budget-sustainable rate never fires; a restart in the middle changes nothing.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TidemarkError } from '../../definitions/index.js';
import { MemoryAlertStateStore } from '../../monitor/alert-store.js';
import { BurnRateAlerts, type AlertNotification } from '../../monitor/alerts.js';
import {
  BurnRateEvaluator,
  burnRateOf,
  DEFAULT_BURN_RATE_POLICY,
  exceedsBurnRate,
  ruleId,
  windowBurnRate,
  type SloObservation,
} from '../../monitor/burn-rate.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const STEP = 5 * MINUTE;
/** Evaluations per day at a 5-minute cadence. */
const PER_DAY = DAY / STEP;
const T0 = Date.UTC(2026, 0, 5);
const OBJECTIVE = 0.99;

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TidemarkError);
    expect((e as TidemarkError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('policy and definitions', () => {
  it('the default policy is the SRE Workbook table', () => {
    expect(DEFAULT_BURN_RATE_POLICY).toEqual([
      { severity: 'page', longWindowMs: HOUR, shortWindowMs: 5 * MINUTE, burnRate: 14.4 },
      { severity: 'page', longWindowMs: 6 * HOUR, shortWindowMs: 30 * MINUTE, burnRate: 6 },
      { severity: 'ticket', longWindowMs: 3 * DAY, shortWindowMs: 6 * HOUR, burnRate: 1 },
    ]);
    expect(DEFAULT_BURN_RATE_POLICY.map(ruleId)).toEqual(['page:1h/5m>14.4', 'page:6h/30m>6', 'ticket:3d/6h>1']);
  });

  it('burn rate is the bad fraction over the error budget; an empty window has none and never fires', () => {
    expect(burnRateOf(90, 10, 0.99)).toBeCloseTo(10, 12);
    expect(burnRateOf(0, 0, 0.99)).toBeNull();
    expect(exceedsBurnRate(null, 0)).toBe(false);
    // 10% bad against a 90% objective is a burn rate of exactly 1, which does not exceed 1,
    // although 0.1 / (1 - 0.9) is 1.0000000000000002 in floating point.
    expect(exceedsBurnRate(burnRateOf(9, 1, 0.9), 1)).toBe(false);
    expect(exceedsBurnRate(burnRateOf(8, 2, 0.9), 1)).toBe(true);
  });

  it('the window is (t - W, t]: an observation exactly W old is out, one at t is in', () => {
    const obs: SloObservation[] = [
      { timeMs: 0, good: 0, bad: 1 },
      { timeMs: HOUR, good: 1, bad: 0 },
    ];
    expect(windowBurnRate(obs, HOUR, HOUR, OBJECTIVE)).toMatchObject({ good: 1, bad: 0 });
    const ev = new BurnRateEvaluator({ objective: OBJECTIVE });
    ev.add('s', obs[0]!);
    ev.add('s', obs[1]!);
    const long1h = ev.evaluate('s', HOUR).severities[0]!.rules[0]!.long;
    expect(long1h).toEqual({ windowMs: HOUR, good: 1, bad: 0, burnRate: 0 });
  });

  it('bad policies, observations and out-of-order times are coded errors', () => {
    expectCode(() => new BurnRateEvaluator({ objective: 1 }), 'TM_SLO_BAD_POLICY');
    expectCode(() => new BurnRateEvaluator({ objective: 0.99, policy: [] }), 'TM_SLO_BAD_POLICY');
    expectCode(() => new BurnRateEvaluator({ objective: 0.99, policy: [{ severity: 'page', longWindowMs: 5 * MINUTE, shortWindowMs: HOUR, burnRate: 2 }] }), 'TM_SLO_BAD_POLICY');
    expectCode(() => new BurnRateEvaluator({ objective: 0.99, policy: [{ severity: 'page', longWindowMs: HOUR, shortWindowMs: 5 * MINUTE, burnRate: 0 }] }), 'TM_SLO_BAD_POLICY');
    const ev = new BurnRateEvaluator({ objective: 0.99, name: 'auc_floor' });
    expectCode(() => ev.add('s', { timeMs: 0, good: -1, bad: 0 }), 'TM_SLO_BAD_OBSERVATION');
    expectCode(() => ev.add('s', { timeMs: Number.NaN, good: 1, bad: 0 }), 'TM_SLO_BAD_OBSERVATION');
    ev.observe('s', { timeMs: 10 * MINUTE, good: 1, bad: 0 });
    expectCode(() => ev.add('s', { timeMs: 5 * MINUTE, good: 1, bad: 0 }), 'TM_SLO_OUT_OF_ORDER');
    expectCode(() => ev.evaluate('s', 5 * MINUTE), 'TM_SLO_OUT_OF_ORDER');
    // Another series has its own clock.
    expect(() => ev.observe('t', { timeMs: 0, good: 1, bad: 0 })).not.toThrow();
  });
});

describe('incremental windows', () => {
  it('equal the plain definition for any observations (counts, equal times, gaps) and evaluation times', () => {
    const policy = [
      { severity: 'page' as const, longWindowMs: 60, shortWindowMs: 10, burnRate: 3 },
      { severity: 'ticket' as const, longWindowMs: 300, shortWindowMs: 45, burnRate: 1.5 },
    ];
    const step = fc.record({
      gap: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 100, max: 400 })),
      good: fc.integer({ min: 0, max: 5 }),
      bad: fc.integer({ min: 0, max: 5 }),
      evaluate: fc.boolean(),
      extraEvalGap: fc.integer({ min: 0, max: 30 }),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 120 }), (steps) => {
        const ev = new BurnRateEvaluator({ objective: 0.9, policy });
        const seen: SloObservation[] = [];
        let t = 1000;
        for (const s of steps) {
          t += s.gap;
          const o = { timeMs: t, good: s.good, bad: s.bad };
          ev.add('x', o);
          seen.push(o);
          if (!s.evaluate) continue;
          t += s.extraEvalGap;
          const result = ev.evaluate('x', t);
          for (const sev of result.severities) {
            for (const r of sev.rules) {
              expect(r.long).toEqual(windowBurnRate(seen, t, r.rule.longWindowMs, 0.9));
              expect(r.short).toEqual(windowBurnRate(seen, t, r.rule.shortWindowMs, 0.9));
            }
          }
          // Nothing older than the longest window is kept.
          expect(ev.retainedObservations('x')).toBe(new Set(seen.filter((o2) => o2.timeMs > t - 300).map((o2) => o2.timeMs)).size);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a month of 5-minute evaluations over 100 series: bounded memory, fast', () => {
    const ev = new BurnRateEvaluator({ objective: OBJECTIVE });
    const series = Array.from({ length: 100 }, (_, i) => `slice_${i}`);
    const evaluations = 30 * PER_DAY;
    const started = performance.now();
    let firing = 0;
    for (let i = 0; i < evaluations; i++) {
      const timeMs = T0 + i * STEP;
      for (let s = 0; s < series.length; s++) {
        const bad = (i * 7 + s * 13) % 97 === 0 ? 1 : 0;
        const result = ev.observe(series[s]!, { timeMs, good: 1 - bad, bad });
        if (result.severities[0]!.firing) firing++;
      }
    }
    const ms = performance.now() - started;
    // 3 days at one evaluation per 5 minutes: at most 864 instants per series.
    for (const s of series) expect(ev.retainedObservations(s)).toBeLessThanOrEqual(3 * PER_DAY);
    expect(ev.seriesCount).toBe(100);
    expect(firing).toBeGreaterThanOrEqual(0);
    // 864 000 observations; a few seconds even on a loaded 2-core machine.
    expect(ms).toBeLessThan(8000);
  });

  it('a firing rule holds on its short window alone: the long window falling under does not resolve it', () => {
    // Irregular times and counts, one rule 1h/5m > 14.4 at 99% (bad fraction > 14.4%):
    //   :20 5 good            1h 0/5 = 0%
    //   :25 5 good, 2 bad     1h 2/12 = 16.7%, 5m 2/7 = 28.6%: fires
    //   :28 5 good            1h 2/17 = 11.8% (under), 5m (:23, :28] 2/12 = 16.7% (over): still firing
    const policy = [DEFAULT_BURN_RATE_POLICY[0]!];
    const obs = [
      { timeMs: 20 * MINUTE, good: 5, bad: 0 },
      { timeMs: 25 * MINUTE, good: 5, bad: 2 },
      { timeMs: 28 * MINUTE, good: 5, bad: 0 },
    ];
    const ev = new BurnRateEvaluator({ objective: OBJECTIVE, policy });
    const firing = obs.map((o) => ev.observe('s', o).severities[0]!.firing);
    expect(firing).toEqual([false, true, true]);
    // Not firing before, the same windows do not start it.
    const fresh = new BurnRateEvaluator({ objective: OBJECTIVE, policy });
    fresh.add('s', obs[0]!);
    fresh.add('s', obs[1]!);
    expect(fresh.observe('s', obs[2]!).severities[0]!.firing).toBe(false);
    // Restored firing state (what a restart does from the persisted alert) holds it again.
    const restored = new BurnRateEvaluator({ objective: OBJECTIVE, policy });
    restored.add('s', obs[0]!);
    restored.add('s', obs[1]!);
    restored.setFiringRules('s', [ruleId(policy[0]!)]);
    expect(restored.observe('s', obs[2]!).severities[0]!.rules[0]).toMatchObject({ firing: true, long: { burnRate: (2 / 17) / 0.01 } });
  });

  it('a series that stops reporting resolves: an empty short window is under any threshold', () => {
    const ev = new BurnRateEvaluator({ objective: OBJECTIVE });
    for (let i = 0; i < 12; i++) ev.observe('s', { timeMs: T0 + i * STEP, good: 0, bad: 1 });
    expect(ev.firingRuleIds('s')).toContain('page:1h/5m>14.4');
    // Ten minutes later, nothing new: the 5m window is empty, the 30m window is not.
    const later = ev.evaluate('s', T0 + 13 * STEP);
    expect(later.severities[0]!.rules[0]).toMatchObject({ firing: false, stopped: true, short: { good: 0, bad: 0, burnRate: null } });
    expect(later.severities[0]!.firing).toBe(true);
  });
});

// ---- alerts driven by the burn-rate evaluator on a fake clock ---------------------------------

interface Seen {
  index: number;
  severity: string;
  kind: string;
  status: string;
}

type Pattern = (i: number) => { good: number; bad: number };

const SLICE = { feature: 'delay', slice: 'origin=SFO' };
const SLO = { name: 'delay_psi', objective: OBJECTIVE, indicator: 'psi', max: 0.2 };

async function openAlerts(store: MemoryAlertStateStore, repeatIntervalMs?: number): Promise<BurnRateAlerts> {
  return BurnRateAlerts.open(store, { slos: [SLO], externalURL: 'http://tidemark.test', monitor: 'flights', repeatIntervalMs });
}

/** Run evaluations [from, to) of a pattern through the alerts, collecting notifications by index. */
function run(alerts: BurnRateAlerts, pattern: Pattern, from: number, to: number, out: Seen[] = []): Seen[] {
  for (let i = from; i < to; i++) {
    const notes = alerts.observe(SLO.name, SLICE, { timeMs: T0 + i * STEP, ...pattern(i), indicatorValue: 0.05 });
    for (const n of notes) out.push({ index: i, severity: n.labels.severity!, kind: n.kind, status: n.status });
  }
  return out;
}

describe('burn-rate alerts on a fake clock (5-minute evaluations, objective 99%)', () => {
  // Four days of good evaluations (more than the longest window, 3d), then an outage.
  const s = 4 * PER_DAY;
  const outage = 24; // two hours of bad evaluations
  const e = s + outage; // first good evaluation after it
  const outagePattern: Pattern = (i) => (i >= s && i < e ? { good: 0, bad: 1 } : { good: 1, bad: 0 });
  const total = e + 4 * PER_DAY;

  // Expected indexes, from the table (budget 1%):
  // page 1h&5m > 14.4: the 1h window holds 12 evaluations; it needs k/12 > 14.4 * 1% = 0.144,
  // k > 1.728, so k = 2 bad: the 2nd bad evaluation, s + 1 (the 5m window holds that one bad).
  const pageFiresAt = s + (Math.floor(12 * 0.144) + 1) - 1;
  // page 6h&30m > 6: 6h holds 72: k/72 > 0.06, k > 4.32, k = 5: s + 4 (already paging).
  // ticket 3d&6h > 1: 3d holds 864: k/864 > 0.01, k > 8.64, k = 9: s + 8 (6h: 9/72 > 0.01 too).
  const ticketFiresAt = s + (Math.floor(864 * 0.01) + 1) - 1;
  // Resolution: each firing rule holds until its short window is at or under its threshold.
  // 1h/5m: the first good evaluation e. 6h/30m: 30m holds 6 evaluations and needs k/6 <= 0.06,
  // so k = 0: the 6th good evaluation, e + 5. The page resolves when both rules have: e + 5.
  const pageResolvesAt = e + 6 - 1;
  // 3d/6h: 6h holds 72 evaluations and needs k/72 <= 0.01, k = 0: the 72nd good one, e + 71.
  const ticketResolvesAt = e + 72 - 1;
  // Repeat interval 4h = 48 evaluations: the ticket is still firing 48 evaluations after it
  // fired (the page is not: it lasts from s + 1 to e + 5, 29 evaluations).
  const ticketRepeatsAt = ticketFiresAt + (4 * HOUR) / STEP;

  it('pages, tickets, repeats and resolves at the predicted evaluations', async () => {
    expect([pageFiresAt, ticketFiresAt, pageResolvesAt, ticketResolvesAt, ticketRepeatsAt]).toEqual([s + 1, s + 8, e + 5, e + 71, s + 56]);
    const alerts = await openAlerts(new MemoryAlertStateStore());
    const seen = run(alerts, outagePattern, 0, total);
    expect(seen).toEqual([
      { index: pageFiresAt, severity: 'page', kind: 'firing', status: 'firing' },
      { index: ticketFiresAt, severity: 'ticket', kind: 'firing', status: 'firing' },
      { index: pageResolvesAt, severity: 'page', kind: 'resolved', status: 'resolved' },
      { index: ticketRepeatsAt, severity: 'ticket', kind: 'repeat', status: 'firing' },
      { index: ticketResolvesAt, severity: 'ticket', kind: 'resolved', status: 'resolved' },
    ]);
    const page = alerts.alerts().find((a) => a.labels.severity === 'page')!;
    expect(page).toMatchObject({ status: 'resolved', startsAtMs: T0 + pageFiresAt * STEP, endsAtMs: T0 + pageResolvesAt * STEP });
  });

  it('a second outage later is a new episode with a new startsAt and a new notification id', async () => {
    const second = e + 2 * PER_DAY;
    const twice: Pattern = (i) => ((i >= s && i < e) || (i >= second && i < second + 3) ? { good: 0, bad: 1 } : { good: 1, bad: 0 });
    const alerts = await openAlerts(new MemoryAlertStateStore(), 0);
    const notes: AlertNotification[] = [];
    for (let i = 0; i < second + 20; i++) notes.push(...alerts.observe(SLO.name, SLICE, { timeMs: T0 + i * STEP, ...twice(i) }));
    const pages = notes.filter((n) => n.labels.severity === 'page');
    expect(pages.map((n) => [n.status, (n.startsAtMs - T0) / STEP])).toEqual([
      ['firing', s + 1],
      ['resolved', s + 1],
      // The second outage is 3 bad evaluations: only the 1h/5m rule fires (2nd bad), and it
      // resolves at the first good one.
      ['firing', second + 1],
      ['resolved', second + 1],
    ]);
    expect(new Set(pages.map((n) => n.fingerprint)).size).toBe(1);
    expect(new Set(pages.map((n) => n.id)).size).toBe(4);
  });

  it('a budget-sustainable rate (0.5% bad at 99%) never fires in 30 days', async () => {
    // One bad evaluation in 200: over 3d that is 4 or 5 bad of 864 (burn rate <= 0.58).
    const sustainable: Pattern = (i) => (i % 200 === 199 ? { good: 0, bad: 1 } : { good: 1, bad: 0 });
    const alerts = await openAlerts(new MemoryAlertStateStore());
    expect(run(alerts, sustainable, 0, 30 * PER_DAY)).toEqual([]);
  });

  it('a slow burn (5% of events bad, per-event counts) opens a ticket and never pages', async () => {
    // 100 events per evaluation; from s on, 5 of them bad: burn rate 5, under both page
    // thresholds (14.4, 6). The ticket needs the 3d window over 1%: after k bad evaluations,
    // 5k / 86 400 > 0.01, k > 172.8, k = 173: evaluation s + 172. (The 6h window passed 1%
    // at k = 15.)
    const slow: Pattern = (i) => (i >= s ? { good: 95, bad: 5 } : { good: 100, bad: 0 });
    const ticketAt = s + (Math.floor((864 * 100 * 0.01) / 5) + 1) - 1;
    expect(ticketAt).toBe(s + 172);
    const alerts = await openAlerts(new MemoryAlertStateStore(), 0);
    expect(run(alerts, slow, 0, s + 2 * PER_DAY)).toEqual([{ index: ticketAt, severity: 'ticket', kind: 'firing', status: 'firing' }]);
  });

  it('with a 5m short window at a 5-minute cadence, 1 bad in 3 flaps until the 6h rule holds the page', async () => {
    // Bad at s, s+3, s+6...: the 5m window holds one evaluation, so the 1h/5m rule fires on a bad
    // one once the 1h window has 2 bad (s+3) and stops on the next good one. The 6h/30m rule
    // needs 5 bad in 6h (s+12) and holds while the 30m window (6 evaluations) has a bad one,
    // which 1 in 3 always does.
    const third: Pattern = (i) => (i >= s && (i - s) % 3 === 0 ? { good: 0, bad: 1 } : { good: 1, bad: 0 });
    const alerts = await openAlerts(new MemoryAlertStateStore(), 0);
    const pages = run(alerts, third, 0, s + 30).filter((x) => x.severity === 'page');
    expect(pages.map((x) => [x.index - s, x.status])).toEqual([
      [3, 'firing'],
      [4, 'resolved'],
      [6, 'firing'],
      [7, 'resolved'],
      [9, 'firing'],
      [10, 'resolved'],
      [12, 'firing'],
    ]);
  });

  it('a restart keeps a rule that only its short window holds firing (the hysteresis is persisted)', async () => {
    // The irregular series of the hysteresis test above, through the alerts and a restart
    // between :25 (fires) and :28 (long window under, short window over: still firing).
    const slo = { name: 'short_holds', objective: OBJECTIVE, policy: [DEFAULT_BURN_RATE_POLICY[0]!] };
    const obs = [
      { timeMs: T0 + 20 * MINUTE, good: 5, bad: 0 },
      { timeMs: T0 + 25 * MINUTE, good: 5, bad: 2 },
      { timeMs: T0 + 28 * MINUTE, good: 5, bad: 0 },
      { timeMs: T0 + 31 * MINUTE, good: 5, bad: 0 },
    ];
    const store = new MemoryAlertStateStore();
    const open = () => BurnRateAlerts.open(store, { slos: [slo], externalURL: 'http://tidemark.test' });
    let alerts = await open();
    expect(alerts.observe(slo.name, {}, obs[0]!)).toEqual([]);
    expect(alerts.observe(slo.name, {}, obs[1]!).map((n) => n.status)).toEqual(['firing']);
    await alerts.save();
    alerts = await open();
    // Replay from the warm-up point: :20 and :25 only refill the windows.
    expect(alerts.observe(slo.name, {}, obs[0]!)).toEqual([]);
    expect(alerts.observe(slo.name, {}, obs[1]!)).toEqual([]);
    expect(alerts.observe(slo.name, {}, obs[2]!)).toEqual([]);
    // :31: the 5m window (:26, :31] holds 0 bad of 10: resolved.
    const resolved = alerts.observe(slo.name, {}, obs[3]!);
    expect(resolved.map((n) => [n.status, n.startsAtMs, n.endsAtMs])).toEqual([['resolved', obs[1]!.timeMs, obs[3]!.timeMs]]);
  });

  it.each([
    ['just after the page fired', s + 1],
    ['mid-outage', s + 10],
    ['after the page resolved, ticket still firing', e + 2],
    ['while only the 6h/30m rule holds the page', e + 3],
    ['long after', e + 3 * PER_DAY],
  ])('a restart %s neither re-fires nor re-notifies: same notifications as an uninterrupted run', async (_label, restartAt) => {
    const uninterrupted = run(await openAlerts(new MemoryAlertStateStore()), outagePattern, 0, total);

    const store = new MemoryAlertStateStore();
    let alerts = await openAlerts(store);
    const seen = run(alerts, outagePattern, 0, restartAt + 1);
    await alerts.save();
    // Drop the objects; a new monitor reloads the state and replays from where it says.
    alerts = await openAlerts(store);
    const fromMs = alerts.warmUpFromMs()!;
    expect(fromMs).toBe(T0 + restartAt * STEP - 3 * DAY);
    const resumeIndex = Math.max(0, (fromMs - T0) / STEP);
    const afterRestart = run(alerts, outagePattern, resumeIndex, total);
    expect(afterRestart.every((x) => x.index > restartAt)).toBe(true);
    expect([...seen, ...afterRestart]).toEqual(uninterrupted);
  });
});
