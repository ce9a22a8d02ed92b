// Tile aggregates as ClickHouse SQL, shared by point-in-time datasets and the monitor's feature
// samples: the partial aggregates of a feature per (key, instant) or tile, how they combine, and
// the final value from combined parts (the same intermediate values the online tiles keep).
import type { FeaturePlan } from '../definitions/index.js';
import { ident } from './tables.js';

export interface AggPart {
  name: string;
  /** Per (key, ts) aggregate over events. */
  perTs: string;
  /** How parts combine across rows: sum, min or max. */
  combine: 'sum' | 'min' | 'max';
}

export function tileOf(t: string, hopMs: number): string {
  return `intDiv(${t} - positiveModulo(${t}, ${hopMs}), ${hopMs})`;
}

export function partsOf(f: FeaturePlan, i: number): AggPart[] {
  const x = f.field === null ? null : ident(f.field);
  const p = (suffix: string): string => `f${i}_${suffix}`;
  switch (f.agg) {
    case 'count':
      return [{ name: p('n'), perTs: x === null ? 'count()' : `count(${x})`, combine: 'sum' }];
    case 'sum':
      return [{ name: p('s'), perTs: `sum(ifNull(${x}, 0))`, combine: 'sum' }];
    case 'mean':
      return [
        { name: p('n'), perTs: `count(${x})`, combine: 'sum' },
        { name: p('s'), perTs: `sum(ifNull(${x}, 0))`, combine: 'sum' },
      ];
    case 'min':
    case 'max':
      return [{ name: p('m'), perTs: `${f.agg}(${x})`, combine: f.agg }];
    case 'var':
    case 'stddev': {
      const dx = `(${x} - ${centerColumn(f.field!)})`;
      return [
        { name: p('n'), perTs: `count(${x})`, combine: 'sum' },
        { name: p('s'), perTs: `sum(ifNull(${dx}, 0))`, combine: 'sum' },
        { name: p('ss'), perTs: `sum(ifNull(${dx} * ${dx}, 0))`, combine: 'sum' },
      ];
    }
    case 'last':
      throw new Error('last is not tiled offline');
  }
}

export function centerColumn(field: string): string {
  return `__c_${field}`;
}

/** The final value of a windowed feature from its whole-tile (`w`) and head-tile (`r`) parts. */
export function finalExpr(f: FeaturePlan, i: number, w: string, r: string): string {
  const part = (suffix: string): string => `(ifNull(${w}.f${i}_${suffix}, 0) + ifNull(${r}.f${i}_${suffix}, 0))`;
  const [a, b] = [`${w}.f${i}_m`, `${r}.f${i}_m`];
  return finalOf(f, part, `multiIf(isNull(${a}), ${b}, isNull(${b}), ${a}, ${f.agg === 'min' ? 'least' : 'greatest'}(${a}, ${b}))`);
}

/** The final value of a feature whose combined parts are plain columns `f<i>_<part>` (whole tiles only). */
export function finalOfColumns(f: FeaturePlan, i: number): string {
  return finalOf(f, (suffix) => `f${i}_${suffix}`, `f${i}_m`);
}

/** The final value from an expression per combined part, and the min/max part's expression. */
function finalOf(f: FeaturePlan, part: (suffix: string) => string, extreme: string): string {
  switch (f.agg) {
    case 'count':
      return part('n');
    case 'sum':
      return part('s');
    case 'mean':
      return `if(${part('n')} = 0, NULL, ${part('s')} / ${part('n')})`;
    case 'min':
    case 'max':
      return extreme;
    case 'var':
    case 'stddev': {
      const variance = `greatest(0, ${part('ss')} / ${part('n')} - pow(${part('s')} / ${part('n')}, 2))`;
      return `if(${part('n')} = 0, NULL, ${f.agg === 'var' ? variance : `sqrt(${variance})`})`;
    }
    case 'last':
      throw new Error('last is not tiled offline');
  }
}
