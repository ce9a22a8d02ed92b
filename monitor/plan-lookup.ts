// Resolving what a request names (a monitor, a feature, a slice, a window, an SLO) against the
// compiled monitor plans: each miss is a coded error whose details list the valid choices, so the
// API's 404 tells the caller what it could have asked for.
import { formatDurationMs, parseDurationMs, TidemarkError, type CompiledDefinitions, type MonitorFeaturePlan, type MonitorPlan, type SloPlan } from '../definitions/index.js';
import { ALL_SLICE } from './drift-sql.js';

/** The monitor plans of the definitions; throws TM_MONITOR_NOT_CONFIGURED when there are none. */
export function configuredMonitors(compiled: CompiledDefinitions | null): MonitorPlan[] {
  if (compiled === null || compiled.monitors.length === 0) {
    throw new TidemarkError('TM_MONITOR_NOT_CONFIGURED', 'no monitors are configured on this server (start it with the definitions that declare them)', { validMonitors: [] });
  }
  return compiled.monitors;
}

/** The monitor named, or the only one when none is named. */
export function findMonitor(compiled: CompiledDefinitions | null, name: string | undefined): MonitorPlan {
  const plans = configuredMonitors(compiled);
  const names = plans.map((m) => m.name);
  if (name === undefined) {
    if (plans.length === 1) return plans[0]!;
    throw new TidemarkError('TM_MONITOR_UNKNOWN', `the definitions hold ${names.length} monitors; name one with monitor=`, { field: 'monitor', validMonitors: names });
  }
  const plan = plans.find((m) => m.name === name);
  if (!plan) throw new TidemarkError('TM_MONITOR_UNKNOWN', `no monitor named ${JSON.stringify(name)}`, { field: 'monitor', validMonitors: names });
  return plan;
}

export function findFeature(plan: MonitorPlan, name: string): MonitorFeaturePlan {
  const feature = plan.features.find((f) => f.name === name);
  if (!feature) {
    throw new TidemarkError('TM_MONITOR_UNKNOWN_FEATURE', `monitor ${plan.name} does not watch a feature named ${JSON.stringify(name)}`, { field: 'feature', monitor: plan.name, validFeatures: plan.features.map((f) => f.name) });
  }
  return feature;
}

/** A window duration text of the plan; none given: the plan's first window. */
export function findWindowMs(plan: MonitorPlan, text: string | undefined): number {
  if (text === undefined) return plan.windowsMs[0]!;
  const ms = parseDurationMs(text);
  if (ms === null || !plan.windowsMs.includes(ms)) {
    throw new TidemarkError('TM_MONITOR_UNKNOWN_WINDOW', `monitor ${plan.name} has no window ${JSON.stringify(text)}`, { field: 'window', monitor: plan.name, validWindows: plan.windowsMs.map(formatDurationMs) });
  }
  return ms;
}

export function findSlo(plan: MonitorPlan, name: string): SloPlan {
  const slo = plan.slos.find((s) => s.name === name);
  if (!slo) throw new TidemarkError('TM_MONITOR_UNKNOWN_SLO', `monitor ${plan.name} has no SLO named ${JSON.stringify(name)}`, { field: 'slo', monitor: plan.name, validSlos: plan.slos.map((s) => s.name) });
  return slo;
}

/** Throws TM_MONITOR_UNKNOWN_SLICE unless the slice is `all` or `<slice>=<value>` of one of the plan's slices. */
export function checkSliceName(plan: MonitorPlan, slice: string): void {
  const name = slice.split('=')[0]!;
  if (slice === ALL_SLICE || (slice.includes('=') && plan.slices.some((s) => s.name === name))) return;
  unknownSlice(plan, slice, [ALL_SLICE, ...plan.slices.map((s) => `${s.name}=<value>`)]);
}

/** The slice has no stored results (or no such slice): `validSlices` are the ones there are. */
export function unknownSlice(plan: MonitorPlan, slice: string, validSlices: readonly string[]): never {
  throw new TidemarkError('TM_MONITOR_UNKNOWN_SLICE', `monitor ${plan.name} has no results for slice ${JSON.stringify(slice)}: give all or <slice>=<value>`, {
    field: 'slice',
    monitor: plan.name,
    validSlices,
  });
}
