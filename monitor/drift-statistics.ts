// The statistics of one drift test, a pure function of its counts: PSI, binned KS, and their
// p-values under no drift (monitor/calibration.ts). Kept apart from drift.ts so the statistics
// pool's worker threads (monitor/statistics-pool.ts) load only this and what it needs.
import { categoricalPsiTestCounts, psiPValue } from './calibration.js';
import { binnedKs, ksPValue } from './ks.js';
import { psi } from './psi.js';

/** Monte Carlo budget of PSI's no-drift p-value; its smallest p-value is 1 / (budget + 1). */
export const PSI_MONTE_CARLO_REPLICATES = 1000;

/** One test's counts. Plain data, so that it can be posted to a worker thread. */
export interface DriftTestInput {
  kind: 'numeric' | 'categorical';
  /** Reference counts per bin: 100 fine bins (numeric) or 1 + categories (bin 0: unseen). */
  refCounts: Float64Array;
  refN: number;
  /** Current counts in the same bins. */
  cur: Float64Array;
  nCur: number;
  /** Categorical: the current counts of the categories unseen in the reference, one each (they share bin 0). */
  unseenCounts: number[];
}

export interface DriftTestStatistics {
  psi: number;
  ks: number | null;
  ksErrorBound: number | null;
  psiPValue: number | null;
  ksPValue: number | null;
  /** The current counts in the bins the PSI was computed from (numeric: the 10 deciles). */
  currentBins: number[];
}

/** PSI's 10 decile bins from the 100 fine bins: fine bin j lies in decile bin floor(j / 10). */
export function decileCounts(fine: ArrayLike<number>): Float64Array {
  const out = new Float64Array(10);
  for (let j = 0; j < fine.length; j++) out[Math.min(9, Math.floor(j / 10))]! += fine[j]!;
  return out;
}

export function driftTestStatistics(t: DriftTestInput): DriftTestStatistics {
  const options = { maxReplicates: PSI_MONTE_CARLO_REPLICATES };
  if (t.kind === 'categorical') {
    // PSI lumps unseen categories into one bin (SEMANTICS); its no-drift p-value is a permutation
    // test over every category, the unseen ones kept apart (a plug-in model of the reference's
    // categories alarms too often when many are rare).
    const value = psi(t.refCounts, t.cur);
    const refAligned = [...t.refCounts.subarray(1), ...t.unseenCounts.map(() => 0)];
    const curAligned = [...t.cur.subarray(1), ...t.unseenCounts];
    const pPsi = categoricalPsiTestCounts(refAligned, curAligned, options).pValue;
    return { psi: value, ks: null, ksErrorBound: null, psiPValue: pPsi, ksPValue: null, currentBins: [...t.cur] };
  }
  const refDeciles = decileCounts(t.refCounts);
  const curDeciles = decileCounts(t.cur);
  const value = psi(refDeciles, curDeciles);
  const ks = binnedKs(t.refCounts, t.cur);
  const pKs = ksPValue(ks.statistic, t.refN, t.nCur, 'asymp');
  // The test's p-value is 2 min(pPsi, pKs) (driftTestPValue). When pKs is below anything the PSI's
  // Monte Carlo can return, pPsi cannot change it: skip the simulation (the costliest step).
  const pPsi = 2 * pKs < 1 / (PSI_MONTE_CARLO_REPLICATES + 1) ? null : psiPValue(value, refDeciles, t.nCur, { ...options, kind: 'numeric' });
  return { psi: value, ks: ks.statistic, ksErrorBound: ks.errorBound, psiPValue: pPsi, ksPValue: pKs, currentBins: [...curDeciles] };
}
