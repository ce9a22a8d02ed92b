// The dashboard's small charts as server-rendered SVG strings (DASHBOARD.md section 4): table
// sparklines, reference-vs-current histograms on shared bins, per-bin PSI contributions and the
// error-budget bar here; the tile-plan strip and the lineage graph in their own files. Pure
// functions of plain data, so pages stay readable without scripts and tests need no browser.
import {
  CHART_COLOURS as C,
  badChartInput,
  chartSize,
  coord,
  el,
  escapeXml,
  formatNumber,
  formatPercent,
  maxOf,
  minOf,
  noDataSvg,
  svgFrame,
  truncate,
  unitScale,
  type ChartSize,
} from './svg-core.js';

export { escapeXml, formatNumber, formatPercent, CHART_COLOURS } from './svg-core.js';
export type { ChartSize } from './svg-core.js';
export { tilePlanStrip, MAX_DRAWN_TILES } from './svg-tile-plan.js';
export type { TilePlanOptions } from './svg-tile-plan.js';
export { lineage } from './svg-lineage.js';
export type { LineageOptions } from './svg-lineage.js';

/** A drift decision at one point: drift decided, no drift, or no decision (too few rows, no reference). */
export type DriftMarker = 'drift' | 'ok' | 'none';

export interface SparklineOptions extends ChartSize {
  /** Drawn as a dashed line when it lies inside the value range. */
  threshold?: number;
  min?: number;
  max?: number;
  /** One per value: filled = drift, hollow = no drift, grey = no decision. */
  markers?: readonly (DriftMarker | null)[];
  /** What the values are, for the title ("PSI"). */
  label?: string;
}

const PAD = 4;
const MARKER_CLASS: Record<DriftMarker, { cls: string; fill: string; stroke: string }> = {
  drift: { cls: 'marker bad', fill: C.bad, stroke: C.bad },
  ok: { cls: 'marker ok', fill: 'none', stroke: C.ok },
  none: { cls: 'marker none', fill: C.none, stroke: C.none },
};

/**
 * A line over the values with gaps at nulls (and at NaN or infinite values), an optional dashed
 * threshold and decision markers. A marker at a point without a value sits on the bottom edge, so
 * a "no decision" without a statistic still shows.
 */
export function sparkline(values: readonly (number | null)[], opts: SparklineOptions): string {
  const size = chartSize('sparkline', opts);
  const label = opts.label ?? 'series';
  const markers = opts.markers ?? [];
  if (opts.markers !== undefined && markers.length !== values.length) {
    throw badChartInput('sparkline', `${markers.length} markers for ${values.length} values`, { markers: markers.length, values: values.length });
  }
  const points = values.map((v) => (typeof v === 'number' && Number.isFinite(v) ? v : null));
  const present = points.filter((v): v is number => v !== null);
  if (present.length === 0) return noDataSvg('sparkline', size, `${label}: no data (${values.length} points, none with a value)`);

  const threshold = opts.threshold !== undefined && Number.isFinite(opts.threshold) ? opts.threshold : null;
  const withThreshold = threshold === null ? present : [...present, threshold];
  let lo = opts.min !== undefined && Number.isFinite(opts.min) ? opts.min : minOf(withThreshold);
  let hi = opts.max !== undefined && Number.isFinite(opts.max) ? opts.max : maxOf(withThreshold);
  if (lo > hi) [lo, hi] = [hi, lo];
  const { width: w, height: h } = size;
  // the padding keeps markers whole at the edges, and shrinks with a very small chart
  const padX = Math.min(PAD, w / 4);
  const padY = Math.min(PAD, h / 4);
  const n = points.length;
  const x = (i: number): number => (n === 1 ? w / 2 : padX + (i * (w - 2 * padX)) / (n - 1));
  const y = (v: number): number => h - padY - unitScale(v, lo, hi) * (h - 2 * padY);

  const parts: string[] = [];
  if (threshold !== null && threshold >= lo && threshold <= hi) {
    parts.push(el('line', { class: 'threshold', x1: padX, x2: w - padX, y1: y(threshold), y2: y(threshold), stroke: C.threshold, 'stroke-width': 1, 'stroke-dasharray': '3 2' }));
  }
  // runs of consecutive values; a run of one is a dot, since a path needs two points to show
  let d = '';
  points.forEach((v, i) => {
    if (v === null) return;
    const joined = i > 0 && points[i - 1] !== null;
    const continues = i < n - 1 && points[i + 1] !== null;
    if (!joined && !continues) parts.push(el('circle', { class: 'cur', cx: x(i), cy: y(v), r: 1.5, fill: C.cur }));
    else d += `${joined ? 'L' : 'M'}${coord(x(i))} ${coord(y(v))}`;
  });
  if (d !== '') parts.push(el('path', { class: 'cur', d, fill: 'none', stroke: C.cur, 'stroke-width': 1.5, 'stroke-linejoin': 'round', 'stroke-linecap': 'round' }));
  const counts: Record<DriftMarker, number> = { drift: 0, ok: 0, none: 0 };
  markers.forEach((m, i) => {
    if (m === null || m === undefined) return;
    counts[m] += 1;
    const v = points[i];
    const style = MARKER_CLASS[m];
    parts.push(el('circle', { class: style.cls, cx: x(i), cy: v === null || v === undefined ? h - padY : y(v), r: 2.5, fill: style.fill, stroke: style.stroke, 'stroke-width': 1 }));
  });

  const last = [...points].reverse().find((v) => v !== null)!;
  const facts = [
    `${n} points${n > present.length ? ` (${n - present.length} missing)` : ''}`,
    `last ${formatNumber(last)}`,
    `min ${formatNumber(minOf(present))}`,
    `max ${formatNumber(maxOf(present))}`,
  ];
  if (threshold !== null) facts.push(`threshold ${formatNumber(threshold)}`);
  if (opts.markers !== undefined) facts.push(`${counts.drift} drift, ${counts.ok} no drift, ${counts.none} no decision`);
  return svgFrame('sparkline', size, `${label}: ${facts.join(', ')}`, parts.join(''));
}

/** Counts (finite, >= 0) as proportions of their total; all zeros when the total is 0. */
function proportions(chart: string, which: string, counts: readonly number[]): { shares: number[]; total: number } {
  counts.forEach((c, i) => {
    if (!Number.isFinite(c) || c < 0) throw badChartInput(chart, `${which}[${i}] is ${String(c)}; counts must be finite and >= 0`, { which, bin: i });
  });
  const max = maxOf(counts);
  if (!(max > 0)) return { shares: counts.map(() => 0), total: 0 };
  // divided by the largest first, so a sum of huge counts cannot overflow
  const scaled = counts.map((c) => c / max);
  const sum = scaled.reduce((a, b) => a + b, 0);
  return { shares: scaled.map((s) => s / sum), total: max * sum };
}

export interface BinChartOptions extends ChartSize {
  /** One label per bin (under its centre), or one per inner edge (bins - 1, under the boundaries). */
  labels?: readonly string[];
}

const LABEL_BAND = 12;

/** The plot area of a bin chart and its tick labels, thinned so they do not overlap. */
function binLayout(chart: string, size: ChartSize, bins: number, labels: readonly string[] | undefined) {
  if (labels !== undefined && labels.length > 0 && labels.length !== bins && labels.length !== bins - 1) {
    throw badChartInput(chart, `${labels.length} labels for ${bins} bins: give one per bin or one per inner edge (${bins - 1})`, { labels: labels.length, bins });
  }
  const texts = (labels ?? []).map((l) => truncate(l, 8));
  const labelWidth = maxOf(texts.map((t) => Array.from(t).length)) * 5.5 + 4;
  // tick labels only when one fits across and the chart keeps a plot above them
  const withTicks = texts.length > 0 && size.height >= 2 * LABEL_BAND && size.width >= labelWidth;
  const left = Math.min(2, size.width / 4);
  const top = Math.min(4, size.height / 4);
  const base = size.height - (withTicks ? LABEL_BAND : Math.min(2, size.height / 4));
  const binWidth = (size.width - 2 * left) / bins;
  const ticks: string[] = [];
  if (withTicks) {
    const onEdges = texts.length === bins - 1;
    const step = Math.max(1, Math.ceil(labelWidth / binWidth));
    texts.forEach((text, i) => {
      if (i % step !== 0) return;
      const at = left + (onEdges ? i + 1 : i + 0.5) * binWidth;
      const cx = Math.min(size.width - labelWidth / 2, Math.max(labelWidth / 2, at));
      ticks.push(el('text', { class: 'tick', x: cx, y: size.height - 2, 'text-anchor': 'middle', 'font-size': 8, fill: 'currentColor' }, escapeXml(text)));
    });
  }
  return { left, top, base, binWidth, ticks: ticks.join('') };
}

/** A bin as the title names it: its label, or its range between the edge labels. */
function binName(i: number, bins: number, labels: readonly string[] | undefined): string {
  if (!labels || labels.length === 0) return `bin ${i + 1}`;
  if (labels.length === bins) return `bin ${i + 1} (${labels[i]})`;
  if (bins === 1) return 'bin 1';
  if (i === 0) return `bin 1 (below ${labels[0]})`;
  if (i === bins - 1) return `bin ${bins} (above ${labels[bins - 2]})`;
  return `bin ${i + 1} (${labels[i - 1]} to ${labels[i]})`;
}

/**
 * Reference and current distributions on the same bins (an index axis): both normalised to
 * proportions and drawn on one scale, the current as filled bars, the reference as a step line.
 */
export function overlaidHistogram(reference: readonly number[], current: readonly number[], opts: BinChartOptions): string {
  const size = chartSize('histogram', opts);
  if (reference.length !== current.length) {
    throw badChartInput('histogram', `reference has ${reference.length} bins and current ${current.length}; both must use the same bins`, { reference: reference.length, current: current.length });
  }
  const bins = reference.length;
  if (bins === 0) return noDataSvg('histogram', size, 'reference vs current: no bins');
  const ref = proportions('histogram', 'reference', reference);
  const cur = proportions('histogram', 'current', current);
  const { left, top, base, binWidth, ticks } = binLayout('histogram', size, bins, opts.labels);
  const top1 = Math.max(maxOf(ref.shares), maxOf(cur.shares));
  const barHeight = (share: number): number => (top1 > 0 ? (share / top1) * (base - top) : 0);
  const gap = Math.min(1, binWidth * 0.1);
  const name = (i: number): string => binName(i, bins, opts.labels);

  const bars = cur.shares.map((s, i) =>
    el('rect', { class: 'cur', x: left + i * binWidth + gap, y: base - barHeight(s), width: binWidth - 2 * gap, height: barHeight(s), fill: C.cur, 'fill-opacity': 0.55 },
      el('title', {}, escapeXml(`${name(i)}: reference ${formatPercent(ref.shares[i]!)}, current ${formatPercent(s)}`))),
  );
  let step = '';
  ref.shares.forEach((s, i) => {
    const yRef = base - barHeight(s);
    step += i === 0 ? `M${coord(left)} ${coord(yRef)}` : `V${coord(yRef)}`;
    step += `H${coord(left + (i + 1) * binWidth)}`;
  });
  const parts = [el('line', { class: 'axis', x1: left, x2: size.width - left, y1: base, y2: base, stroke: C.none, 'stroke-width': 1 }), ...bars];
  if (ref.total > 0) parts.push(el('path', { class: 'ref', d: step, fill: 'none', stroke: C.ref, 'stroke-width': 1.5 }));
  parts.push(ticks);

  const facts = [`reference vs current on ${bins} bins`, `reference n=${formatNumber(ref.total)}`, `current n=${formatNumber(cur.total)}`];
  if (ref.total > 0 && cur.total > 0) {
    let k = 0;
    cur.shares.forEach((s, i) => {
      if (Math.abs(s - ref.shares[i]!) > Math.abs(cur.shares[k]! - ref.shares[k]!)) k = i;
    });
    facts.push(`largest difference at ${name(k)}: reference ${formatPercent(ref.shares[k]!)}, current ${formatPercent(cur.shares[k]!)}`);
  }
  return svgFrame('histogram', size, facts.join(', '), parts.join(''));
}

/** Per-bin PSI contributions (each >= 0) as bars on one scale, the largest highlighted. */
export function contributionBars(contributions: readonly number[], opts: BinChartOptions): string {
  const size = chartSize('contributions', opts);
  const bins = contributions.length;
  contributions.forEach((c, i) => {
    if (!Number.isFinite(c) || c < 0) throw badChartInput('contributions', `contribution[${i}] is ${String(c)}; PSI contributions are finite and >= 0`, { bin: i });
  });
  if (bins === 0) return noDataSvg('contributions', size, 'PSI contributions: no bins');
  const { left, top, base, binWidth, ticks } = binLayout('contributions', size, bins, opts.labels);
  const max = maxOf(contributions);
  const largest = contributions.indexOf(max);
  const gap = Math.min(1, binWidth * 0.1);
  const total = max > 0 ? max * contributions.reduce((a, c) => a + c / max, 0) : 0;
  const name = (i: number): string => binName(i, bins, opts.labels);
  const bars = contributions.map((c, i) => {
    const height = max > 0 ? (c / max) * (base - top) : 0;
    const top1 = i === largest && max > 0;
    return el('rect', { class: top1 ? 'contribution bad' : 'contribution cur', x: left + i * binWidth + gap, y: base - height, width: binWidth - 2 * gap, height, fill: top1 ? C.bad : C.cur },
      el('title', {}, escapeXml(`${name(i)}: ${formatNumber(c)}`)));
  });
  const axis = el('line', { class: 'axis', x1: left, x2: size.width - left, y1: base, y2: base, stroke: C.none, 'stroke-width': 1 });
  const title = max > 0
    ? `PSI contribution per bin over ${bins} bins, total ${formatNumber(total)}; largest at ${name(largest)}: ${formatNumber(max)} (${formatPercent(max / total)} of the total)`
    : `PSI contribution per bin over ${bins} bins: all 0`;
  return svgFrame('contributions', size, title, axis + bars.join('') + ticks);
}

/**
 * The error budget left (1 = untouched, 0 = spent, below 0 = overspent) as a horizontal bar:
 * green to the right of 0, red to the left. The scale reaches down to -100%; an overspend beyond
 * that fills the red side and the text states the figure.
 */
export function budgetBar(remaining: number, opts: ChartSize = { width: 160, height: 16 }): string {
  const size = chartSize('budget', opts);
  if (!Number.isFinite(remaining)) return noDataSvg('budget', size, 'error budget remaining: no data');
  const textWidth = Math.min(56, size.width / 3);
  const left = 1;
  const right = Math.max(left, size.width - textWidth - 2);
  const lo = Math.min(0, Math.max(remaining, -1));
  const x = (v: number): number => left + unitScale(v, lo, 1) * (right - left);
  const barTop = size.height * 0.2;
  const barHeight = size.height * 0.6;
  const ok = remaining >= 0;
  const [from, to] = ok ? [x(0), x(remaining)] : [x(remaining), x(0)];
  const parts = [
    el('rect', { class: 'track', x: left, y: barTop, width: right - left, height: barHeight, fill: C.track }),
    el('rect', { class: ok ? 'budget ok' : 'budget bad', x: from, y: barTop, width: to - from, height: barHeight, fill: ok ? C.ok : C.bad }),
    el('line', { class: 'zero', x1: x(0), x2: x(0), y1: 0, y2: size.height, stroke: 'currentColor', 'stroke-width': 1 }),
    el('text', { class: ok ? 'ok' : 'bad', x: size.width - 1, y: size.height / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', fill: 'currentColor' }, escapeXml(formatPercent(remaining))),
  ];
  const title = ok ? `error budget remaining: ${formatPercent(remaining)}` : `error budget overspent: ${formatPercent(remaining)} remaining`;
  return svgFrame('budget', size, title, parts.join(''));
}
