// Shared pieces of the dashboard's server-rendered SVG charts: XML escaping, number text, the
// <svg> frame (fixed viewBox, role="img", a title that states the key numbers) and fallback colours.
// Every builder returns a self-contained string: no ids, no external references, no scripts.
import { TidemarkError } from '../definitions/index.js';

/**
 * Fallback colours, written as presentation attributes: any CSS rule on the classes (`.cur`, `.ref`,
 * `.bad`, `.ok`, `.none`, `.threshold`, `.track`) overrides them, so the page themes the charts.
 */
export const CHART_COLOURS = {
  ref: '#4b5563',
  cur: '#2563eb',
  bad: '#dc2626',
  ok: '#16a34a',
  none: '#9ca3af',
  threshold: '#d97706',
  track: '#e5e7eb',
} as const;

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
// XML 1.0 forbids most C0 controls, lone surrogates and U+FFFE/U+FFFF even as references.
const INVALID_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text safe inside an XML element or a quoted attribute; characters XML cannot carry become U+FFFD. */
export function escapeXml(text: string): string {
  return String(text)
    .replace(INVALID_XML_CHARS, '\uFFFD')
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** A number with 4 significant digits, without an exponent from 1e-6 to 1e21; "n/a" when not finite. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (x === 0) return '0';
  const text = x.toPrecision(4);
  const rounded = Number(text);
  const abs = Math.abs(rounded);
  // beyond 1e21 (and where rounding up overflows past the largest double) the exponent form stays
  return abs >= 1e-6 && abs < 1e21 ? String(rounded) : text;
}

/** A fraction as a percentage with 4 significant digits ("0.1234" -> "12.34%"). */
export function formatPercent(fraction: number): string {
  return Number.isFinite(fraction) ? `${formatNumber(fraction * 100)}%` : 'n/a';
}

/** A coordinate rounded to 1/100 px; a non-finite one is a bug in a builder, never written out. */
export function coord(x: number): string {
  if (!Number.isFinite(x)) throw new TidemarkError('TM_INTERNAL', `an SVG coordinate came out as ${String(x)}`, { value: String(x) });
  return String(Math.round(x * 100) / 100);
}

export function badChartInput(chart: string, message: string, details: Record<string, unknown> = {}): TidemarkError {
  return new TidemarkError('TM_UI_BAD_CHART_INPUT', `${chart}: ${message}`, { chart, ...details });
}

/** One element; numbers go through coord, text through escapeXml; undefined attributes are left out. */
export function el(name: string, attributes: Record<string, string | number | undefined>, content?: string): string {
  let out = `<${name}`;
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined) continue;
    out += ` ${key}="${typeof value === 'number' ? coord(value) : escapeXml(value)}"`;
  }
  return content === undefined ? `${out}/>` : `${out}>${content}</${name}>`;
}

export interface ChartSize {
  width: number;
  height: number;
}

/** The size a builder was given, checked: both finite and positive, and at least `min` where a layout needs room. */
export function chartSize(chart: string, size: ChartSize, min: Partial<ChartSize> = {}): ChartSize {
  for (const key of ['width', 'height'] as const) {
    const v = size[key];
    if (!Number.isFinite(v) || v <= 0) throw badChartInput(chart, `${key} ${String(v)} is not a positive number`, { [key]: String(v) });
    const least = min[key];
    if (least !== undefined && v < least) throw badChartInput(chart, `${key} ${v} is too small: this chart needs at least ${least}`, { [key]: v });
  }
  return { width: size.width, height: size.height };
}

/** The <svg> root: fixed viewBox, role="img", the title both as <title> and aria-label. */
export function svgFrame(chart: string, size: ChartSize, title: string, body: string): string {
  const text = escapeXml(title);
  const w = coord(size.width);
  const h = coord(size.height);
  return `<svg xmlns="http://www.w3.org/2000/svg" class="tm-chart tm-${chart}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${text}" font-family="system-ui, sans-serif" font-size="10"><title>${text}</title>${body}</svg>`;
}

/** The small chart drawn instead of an empty one: the frame and a grey "no data". */
export function noDataSvg(chart: string, size: ChartSize, title: string): string {
  const body = el('text', { class: 'none', x: size.width / 2, y: size.height / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle', fill: CHART_COLOURS.none }, 'no data');
  return svgFrame(chart, size, title, body);
}

/** Position of v in [lo, hi] as 0..1 (clamped), without overflow for spans beyond the double range. */
export function unitScale(v: number, lo: number, hi: number): number {
  if (!(hi > lo)) return 0.5;
  const clamped = Math.min(hi, Math.max(lo, v));
  const span = hi - lo;
  const t = Number.isFinite(span) ? (clamped - lo) / span : (clamped / 2 - lo / 2) / (hi / 2 - lo / 2);
  return Math.min(1, Math.max(0, t));
}

/** Largest value of a list (a loop: spreading a long list into Math.max overflows the stack). */
export function maxOf(values: readonly number[]): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of values) if (v > max) max = v;
  return max;
}

export function minOf(values: readonly number[]): number {
  let min = Number.POSITIVE_INFINITY;
  for (const v of values) if (v < min) min = v;
  return min;
}

/** Text cut to `maxChars` with an ellipsis (labels in a fixed-width chart). */
export function truncate(text: string, maxChars: number): string {
  const chars = Array.from(text);
  if (chars.length <= maxChars) return text;
  return `${chars.slice(0, Math.max(1, maxChars - 1)).join('')}…`;
}

/**
 * A path of 45-degree hatching lines clipped to a rectangle (no <pattern>: a pattern needs an id,
 * and ids clash between charts inlined in one page).
 */
export function hatchPath(x: number, y: number, width: number, height: number, spacing: number): string {
  const parts: string[] = [];
  // line k runs from (a, y + height) up to (a + height, y); clip t in [0, 1] to x..x+width
  for (let a = x - height + spacing / 2; a < x + width; a += spacing) {
    const t0 = Math.max(0, (x - a) / height);
    const t1 = Math.min(1, (x + width - a) / height);
    if (t1 <= t0) continue;
    parts.push(`M${coord(a + t0 * height)} ${coord(y + height - t0 * height)}L${coord(a + t1 * height)} ${coord(y + height - t1 * height)}`);
  }
  return parts.join('');
}
