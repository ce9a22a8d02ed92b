// The tile-plan strip of a compiled view (DASHBOARD.md, view detail): per tile group, the tiles one
// read merges for the group's longest window, the window start, and the retention span.
//
// Semantics drawn (SEMANTICS.md, definitions/reference.ts windowStartMs): at time t a window W with
// hop H covers [floor(t/H)*H - W, t), that is the W/H whole tiles before the tile holding t plus
// that head tile cut just before t. The head is drawn as a dashed tile filled up to "now".
import { formatDurationMs, LATEST_GROUP_HOP_MS, worstTilesPerRead, type FeaturePlan, type TileGroupPlan, type ViewPlan } from '../definitions/index.js';
import { CHART_COLOURS as C, chartSize, el, escapeXml, hatchPath, svgFrame, truncate } from './svg-core.js';

/** Above this many tiles (whole tiles plus the head) a window's whole tiles are drawn as one hatched band. */
export const MAX_DRAWN_TILES = 48;

export interface TilePlanOptions {
  width: number;
  /** Defaults to ROW_HEIGHT per tile group. */
  height?: number;
  maxDrawnTiles?: number;
}

const ROW_HEIGHT = 62;
/** Below these the captions and the strip no longer fit a row. */
const MIN_WIDTH = 120;
const MIN_ROW_HEIGHT = 60;
const LEFT = 4;
/** The head tile's smallest width in the capped form, so it stays visible beside a long band. */
const MIN_HEAD_WIDTH = 10;

interface Row {
  svg: string;
  title: string;
}

export function tilePlanStrip(view: ViewPlan, opts: TilePlanOptions): string {
  const rowsNeeded = Math.max(1, view.groups.length);
  const size = chartSize('tile-plan', { width: opts.width, height: opts.height ?? rowsNeeded * ROW_HEIGHT }, { width: MIN_WIDTH, height: rowsNeeded * MIN_ROW_HEIGHT });
  const rowHeight = size.height / rowsNeeded;
  const cap = opts.maxDrawnTiles ?? MAX_DRAWN_TILES;
  const rows = view.groups.map((g, i) => {
    const y = i * rowHeight;
    if (g.hopMs === LATEST_GROUP_HOP_MS) return latestRow(g, y, size.width);
    const windowed = view.features.filter((f) => f.hopMs === g.hopMs && f.windowMs !== null && f.tilesPerWindow !== null);
    if (windowed.length === 0) return historyRow(g, y, size.width);
    const longest = windowed.reduce((a, b) => (b.windowMs! > a.windowMs! ? b : a));
    return windowRow(g, longest, windowed, y, size.width, cap);
  });
  const title = rows.length === 0 ? `tile plan of view ${view.name}: no tile groups` : `tile plan of view ${view.name}: ${rows.map((r) => r.title).join('; ')}`;
  const body = rows.map((r, i) => el('g', { class: 'tile-group', 'data-hop-ms': String(view.groups[i]!.hopMs) }, r.svg)).join('');
  return svgFrame('tile-plan', size, title, body);
}

function caption(text: string, x: number, y: number, width: number, anchor: 'start' | 'end' = 'start', cls = 'caption'): string {
  return el('text', { class: cls, x, y, 'text-anchor': anchor, fill: 'currentColor' }, escapeXml(truncate(text, Math.max(4, Math.floor(width / 5.5)))));
}

/** The group's retention as a thin bar spanning the width, the part one read needs marked at its right end. */
function retentionBar(group: TileGroupPlan, readSpanMs: number, y: number, width: number): string {
  if (group.retentionMs === null) return '';
  const plotWidth = width - 2 * LEFT;
  const readWidth = Math.max(2, Math.min(plotWidth, (readSpanMs / group.retentionMs) * plotWidth));
  return (
    el('rect', { class: 'retention track', x: LEFT, y, width: plotWidth, height: 4, fill: C.track }) +
    el('rect', { class: 'retention-read cur', x: LEFT + plotWidth - readWidth, y, width: readWidth, height: 4, fill: C.cur }) +
    caption(`retention ${formatDurationMs(group.retentionMs)} (tiles older than the watermark minus this are trimmed)`, LEFT, y + 13, width)
  );
}

function windowRow(group: TileGroupPlan, longest: FeaturePlan, windowed: readonly FeaturePlan[], y: number, width: number, cap: number): Row {
  const hop = formatDurationMs(group.hopMs);
  const window = formatDurationMs(longest.windowMs!);
  const wholeTiles = longest.tilesPerWindow!;
  const names = windowed.filter((f) => f.windowMs === longest.windowMs).map((f) => f.name);
  const blocks = group.rollups.length > 0 ? `, rollups ${group.rollups.map((s) => `×${s}`).join(' ')}: at most ${worstTilesPerRead(wholeTiles, group.rollups)} blocks per read` : '';
  const head = `hop ${hop}, window ${window} (${names.join(', ')}): ${wholeTiles} whole tiles + the partial head tile${blocks}`;

  const stripTop = y + 16;
  const stripHeight = 14;
  const plotWidth = width - 2 * LEFT;
  const parts: string[] = [caption(head, LEFT, y + 11, width)];
  const tileWidth = plotWidth / (wholeTiles + 1);
  let headX: number;
  let headWidth: number;
  if (wholeTiles + 1 <= cap) {
    for (let j = 0; j < wholeTiles; j++) {
      parts.push(el('rect', { class: 'tile', x: LEFT + j * tileWidth + 0.5, y: stripTop, width: Math.max(0.5, tileWidth - 1), height: stripHeight, fill: C.cur, 'fill-opacity': 0.35, stroke: C.cur, 'stroke-width': 0.5 }));
    }
    headX = LEFT + wholeTiles * tileWidth;
    headWidth = tileWidth;
  } else {
    headWidth = Math.max(MIN_HEAD_WIDTH, tileWidth);
    headX = LEFT + plotWidth - headWidth;
    const bandWidth = headX - LEFT - 1;
    parts.push(
      el('rect', { class: 'tile-band', x: LEFT, y: stripTop, width: bandWidth, height: stripHeight, fill: C.cur, 'fill-opacity': 0.15, stroke: C.cur, 'stroke-width': 0.5 }),
      el('path', { class: 'hatch', d: hatchPath(LEFT, stripTop, bandWidth, stripHeight, 5), stroke: C.cur, 'stroke-width': 0.75, 'stroke-opacity': 0.6, fill: 'none' }),
      el('text', { class: 'band-label', x: LEFT + bandWidth / 2, y: stripTop + stripHeight / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle', fill: 'currentColor' }, escapeXml(`${wholeTiles} tiles × ${hop}`)),
    );
  }
  // "now" is drawn half-way through the head tile: the read takes only its part before t
  const nowX = headX + headWidth / 2;
  parts.push(
    el('rect', { class: 'tile head', x: headX + 0.5, y: stripTop, width: Math.max(0.5, headWidth - 1), height: stripHeight, fill: 'none', stroke: C.cur, 'stroke-width': 0.75, 'stroke-dasharray': '2 1' }),
    el('rect', { class: 'head-fill cur', x: headX + 0.5, y: stripTop, width: Math.max(0.25, nowX - headX - 0.5), height: stripHeight, fill: C.cur, 'fill-opacity': 0.35 }),
    el('line', { class: 'window-start', x1: LEFT, x2: LEFT, y1: stripTop - 3, y2: stripTop + stripHeight + 3, stroke: C.threshold, 'stroke-width': 1.5 }),
    el('line', { class: 'now', x1: nowX, x2: nowX, y1: stripTop - 3, y2: stripTop + stripHeight + 3, stroke: C.bad, 'stroke-width': 1.5 }),
    caption(`start = floor(now / ${hop}) * ${hop} - ${window}`, LEFT, stripTop + stripHeight + 10, width * 0.75),
    caption('now', width - LEFT, stripTop + stripHeight + 10, 40, 'end'),
    retentionBar(group, longest.windowMs! + group.hopMs, stripTop + stripHeight + 15, width),
  );
  const retention = group.retentionMs === null ? 'never trimmed' : `retention ${formatDurationMs(group.retentionMs)}`;
  return { svg: parts.join(''), title: `hop ${hop}: a ${window} read merges ${wholeTiles} whole tiles + the partial head tile${blocks}, ${retention}` };
}

/** A hop group of `last` features without a window: history tiles read only for times in the past. */
function historyRow(group: TileGroupPlan, y: number, width: number): Row {
  const hop = formatDurationMs(group.hopMs);
  const text = `hop ${hop}: history tiles of ${group.features.join(', ')} (no window; read only for times before the watermark)`;
  const svg = caption(text, LEFT, y + 11, width) + retentionBar(group, group.hopMs, y + 32, width);
  const retention = group.retentionMs === null ? 'never trimmed' : `retention ${formatDurationMs(group.retentionMs)}`;
  return { svg, title: `hop ${hop}: history tiles, ${retention}` };
}

/** The all-time latest cell: one cell per key holding the last value of each feature without window. */
function latestRow(group: TileGroupPlan, y: number, width: number): Row {
  const cellWidth = Math.min(80, width - 2 * LEFT);
  const svg =
    caption(`latest: ${group.features.join(', ')} (no window; one cell per key, never trimmed)`, LEFT, y + 11, width) +
    el('rect', { class: 'tile latest', x: width - LEFT - cellWidth, y: y + 16, width: cellWidth, height: 14, fill: C.cur, 'fill-opacity': 0.35, stroke: C.cur, 'stroke-width': 0.5 }) +
    el('text', { class: 'caption', x: width - LEFT - cellWidth / 2, y: y + 23, 'text-anchor': 'middle', 'dominant-baseline': 'middle', fill: 'currentColor' }, 'latest value');
  return { svg, title: `latest: one cell for ${group.features.length} latest value${group.features.length === 1 ? '' : 's'}` };
}
