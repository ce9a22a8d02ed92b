// Tile aggregates as ClickHouse SQL, shared by point-in-time datasets and the monitor's feature
// samples: the partial aggregates of a feature per (key, instant) or tile, how they combine, and
// the final value from combined parts, all read from the aggregation's spec
// (definitions/aggregations). Sums are compensated (Neumaier, as the online tiles): a part with
// combine 'compensatedSum' is a (sum, compensation) tuple, and rows combine by the fold of the
// spec's TwoSum over their tuples in row order (groupArray, then array functions; see
// compensated.ts), in a GROUP BY or over a window frame; where the fold provably equals the plain sum
// (integer data), the plain sum. Over a window that decision is per partition, from a column the
// query adds before the window (exactPartitionColumns). A part
// with combine 'sumMap' is a Map of counts (approx_percentile's buckets): sumMap across rows,
// mapAdd of two.
// ClickHouse's sumKahan is no substitute: as a window function it drops the compensation and its
// add is plain Kahan, which loses a small term added before a large one cancels.
import type { FeaturePlan } from '../definitions/index.js';
import { AGGREGATION_SPECS, sqlAddCompensated, sqlCompensatedSumOfPairsAggregate, sqlExactPartitionColumn, type SqlCombine, type SqlEventTerm } from '../definitions/aggregations/index.js';
import { ident } from './tables.js';

export interface AggPart {
  name: string;
  /** Per (key, ts) aggregate over events. */
  perTs: string;
  /** How parts combine across rows. */
  combine: SqlCombine;
  /** What one event adds when the tile is built in Node (SqlPartSpec.eventTerm). */
  eventTerm?: SqlEventTerm;
}

export function tileOf(t: string, hopMs: number): string {
  return `intDiv(${t} - positiveModulo(${t}, ${hopMs}), ${hopMs})`;
}

/** Whether a feature is computed from tile parts offline (else it is a `last`, picked by an ASOF join). */
export function isTiledOffline(f: FeaturePlan): boolean {
  return AGGREGATION_SPECS[f.agg].sql.parts !== null;
}

/** Whether a feature's parts read the key's center of its field (centerColumn). */
export function isCentered(f: FeaturePlan): boolean {
  return AGGREGATION_SPECS[f.agg].sql.centered;
}

export function partsOf(f: FeaturePlan, i: number): AggPart[] {
  const parts = AGGREGATION_SPECS[f.agg].sql.parts;
  if (parts === null) throw new Error(`${f.agg} is not tiled offline`);
  const x = f.field === null ? null : ident(f.field);
  const c = f.field === null ? 'NULL' : centerColumn(f.field);
  return parts.map((p) => ({ name: `f${i}_${p.suffix}`, perTs: p.perTs(x, c), combine: p.combine, eventTerm: p.eventTerm }));
}

/**
 * A part combined over the rows of a GROUP BY, or over a window frame when `over` is given (a
 * compensated sum then reads its exactPartitionColumns column, which the rows must carry); in a
 * GROUP BY a compensated sum folds in the order of `orderBy` when given.
 */
export function combinePart(p: AggPart, over?: string, orderBy?: string): string {
  if (p.combine === 'compensatedSum') return sqlCompensatedSumOfPairsAggregate(p.name, over === undefined ? undefined : { window: over, exactColumn: exactColumnOf(p) }, orderBy);
  return `${p.combine}(${p.name})${over === undefined ? '' : ` OVER ${over}`}`;
}

function exactColumnOf(p: AggPart): string {
  return `${p.name}_exact`;
}

/**
 * Columns the rows need before combinePart(p, over) of compensated sums: per partition (`partitionBy`
 * lists the window's PARTITION BY columns), whether the part's plain sum is its compensated sum.
 */
export function exactPartitionColumns(parts: readonly AggPart[], partitionBy: string): string[] {
  return parts.filter((p) => p.combine === 'compensatedSum').map((p) => `${sqlExactPartitionColumn(p.name, `(PARTITION BY ${partitionBy})`)} AS ${exactColumnOf(p)}`);
}

/** The value of a part on a row that holds no event (the probe rows of point-in-time windows). */
export function emptyPart(p: AggPart): string {
  if (p.combine === 'sum') return '0';
  if (p.combine === 'compensatedSum') return 'tuple(0., 0.)';
  if (p.combine === 'sumMap') return 'map()';
  return 'NULL';
}

/**
 * A part as plain columns, for the tables that are joined with join_use_nulls (a Nullable(Tuple)
 * needs a recent ClickHouse): a compensated sum becomes `<name>_hi` and `<name>_lo`. A Map cannot
 * be Nullable: an unmatched row reads an empty map, which is what it means.
 */
export function partColumns(p: AggPart): string[] {
  if (p.combine !== 'compensatedSum') return [p.name];
  return [`tupleElement(${p.name}, 1) AS ${p.name}_hi`, `tupleElement(${p.name}, 2) AS ${p.name}_lo`];
}

export function centerColumn(field: string): string {
  return `__c_${field}`;
}

/**
 * A key's center of a field, over a GROUP BY of the key's events, with the same bits every run and
 * in every query shape: when its values are all integers, their mean rounded to an integer (their
 * sum is exact in any order), so every x - c and (x - c)^2 is an integer and the variance's sums are
 * exact in any order; else the middle of its range, min / 2 + max / 2 (a parallel GROUP BY's avg of
 * floats adds in no fixed order; the middle keeps |x - c| within the range).
 */
export function centerSql(field: string): string {
  const x = ident(field);
  return `if(min(ifNull(${x} = floor(${x}), 1)), round(ifNull(avg(${x}), 0)), ifNull(min(${x}) / 2 + max(${x}) / 2, 0))`;
}

/** The final value of a windowed feature from its whole-tile (`w`) and head-tile (`r`) parts (see partColumns). */
export function finalExpr(f: FeaturePlan, i: number, w: string, r: string): string {
  const combine = new Map(partsOf(f, i).map((p) => [p.name, p.combine]));
  return AGGREGATION_SPECS[f.agg].sql.final((suffix) => {
    const name = `f${i}_${suffix}`;
    const [a, b] = [`${w}.${name}`, `${r}.${name}`];
    switch (combine.get(name)) {
      case 'sum':
        return `(ifNull(${a}, 0) + ifNull(${b}, 0))`;
      case 'min':
      case 'max':
        return `multiIf(isNull(${a}), ${b}, isNull(${b}), ${a}, ${combine.get(name) === 'min' ? 'least' : 'greatest'}(${a}, ${b}))`;
      case 'compensatedSum': {
        const total = sqlAddCompensated(`ifNull(${a}_hi, 0)`, `ifNull(${a}_lo, 0)`, `ifNull(${b}_hi, 0)`, `ifNull(${b}_lo, 0)`);
        return `(tupleElement(${total}, 1) + tupleElement(${total}, 2))`;
      }
      case 'sumMap':
        return `mapAdd(${a}, ${b})`;
      default:
        throw new Error(`no part ${name}`);
    }
  }, f);
}

/** The final value of a feature whose combined parts are plain columns `f<i>_<part>` (whole tiles only). */
export function finalOfColumns(f: FeaturePlan, i: number): string {
  const combine = new Map(partsOf(f, i).map((p) => [p.name, p.combine]));
  return AGGREGATION_SPECS[f.agg].sql.final((suffix) => {
    const name = `f${i}_${suffix}`;
    return combine.get(name) === 'compensatedSum' ? `(tupleElement(${name}, 1) + tupleElement(${name}, 2))` : name;
  }, f);
}
