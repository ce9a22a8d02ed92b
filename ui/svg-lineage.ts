// Lineage as a small SVG: the source box, its views, and the monitors reading them, with arrows.
import { CHART_COLOURS as C, chartSize, coord, el, escapeXml, svgFrame, truncate } from './svg-core.js';

export interface LineageOptions {
  width?: number;
  height?: number;
  /** The views each monitor reads; without it every view has an arrow to every monitor. */
  monitorViews?: Readonly<Record<string, readonly string[]>>;
}

/** Boxes per column; beyond it the last box reads "+N more" and takes the arrows of the hidden ones. */
const MAX_BOXES = 8;
const BOX_HEIGHT = 20;
const ROW_GAP = 8;

interface Box {
  label: string;
  names: string[];
  x: number;
  y: number;
}

function column(names: readonly string[], x: number, height: number): Box[] {
  const shown = names.length > MAX_BOXES ? [...names.slice(0, MAX_BOXES - 1).map((n) => [n]), names.slice(MAX_BOXES - 1)] : names.map((n) => [n]);
  const total = shown.length * BOX_HEIGHT + (shown.length - 1) * ROW_GAP;
  const top = (height - total) / 2;
  return shown.map((group, i) => ({
    label: group.length === 1 ? group[0]! : `+${group.length} more`,
    names: group,
    x,
    y: top + i * (BOX_HEIGHT + ROW_GAP),
  }));
}

function arrow(x1: number, y1: number, x2: number, y2: number): string {
  const angle = Math.atan2(y2 - y1, x2 - x1);
  const back = (d: number, side: number): [number, number] => [x2 - d * Math.cos(angle) - side * Math.sin(angle), y2 - d * Math.sin(angle) + side * Math.cos(angle)];
  const [ax, ay] = back(6, 3);
  const [bx, by] = back(6, -3);
  return (
    el('line', { class: 'edge', x1, y1, x2, y2, stroke: C.ref, 'stroke-width': 1 }) +
    el('path', { class: 'edge-head', d: `M${coord(x2)} ${coord(y2)}L${coord(ax)} ${coord(ay)}L${coord(bx)} ${coord(by)}Z`, fill: C.ref })
  );
}

export function lineage(source: string, views: readonly string[], monitors: readonly string[], opts: LineageOptions = {}): string {
  const rows = Math.max(1, Math.min(MAX_BOXES, Math.max(views.length, monitors.length)));
  const needed = rows * (BOX_HEIGHT + ROW_GAP) + ROW_GAP;
  const size = chartSize('lineage', { width: opts.width ?? 480, height: opts.height ?? needed }, { width: 120, height: needed });
  const gap = 24;
  const boxWidth = (size.width - 2 * gap - 4) / 3;
  const maxChars = Math.max(3, Math.floor((boxWidth - 8) / 6));
  const columns = [column([source], 2, size.height), column(views, 2 + boxWidth + gap, size.height), column(monitors, 2 + 2 * (boxWidth + gap), size.height)];
  const kinds = ['source', 'view', 'monitor'] as const;
  const parts: string[] = [];
  const [sourceBox, viewBoxes, monitorBoxes] = columns as [Box[], Box[], Box[]];
  const mid = (b: Box): number => b.y + BOX_HEIGHT / 2;
  for (const v of viewBoxes) parts.push(arrow(sourceBox[0]!.x + boxWidth, mid(sourceBox[0]!), v.x - 1, mid(v)));
  for (const m of monitorBoxes) {
    const read = new Set(m.names.flatMap((name) => opts.monitorViews?.[name] ?? views));
    for (const v of viewBoxes) if (v.names.some((n) => read.has(n))) parts.push(arrow(v.x + boxWidth, mid(v), m.x - 1, mid(m)));
  }
  columns.forEach((boxes, k) => {
    for (const b of boxes) {
      parts.push(
        el('g', { class: `node ${kinds[k]}` },
          el('title', {}, escapeXml(`${kinds[k]} ${b.names.join(', ')}`)) +
          el('rect', { x: b.x, y: b.y, width: boxWidth, height: BOX_HEIGHT, rx: 3, fill: 'none', stroke: k === 0 ? C.ref : C.cur, 'stroke-width': 1 }) +
          el('text', { x: b.x + boxWidth / 2, y: b.y + BOX_HEIGHT / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle', fill: 'currentColor' }, escapeXml(truncate(b.label, maxChars)))),
      );
    }
  });
  const list = (names: readonly string[]): string => (names.length <= 10 ? names.join(', ') : `${names.slice(0, 10).join(', ')} and ${names.length - 10} more`);
  const title = `lineage: source ${source} feeds ${views.length} view${views.length === 1 ? '' : 's'}${views.length > 0 ? ` (${list(views)})` : ''} and ${monitors.length} monitor${monitors.length === 1 ? '' : 's'}${monitors.length > 0 ? ` (${list(monitors)})` : ''}`;
  return svgFrame('lineage', size, title, parts.join(''));
}
