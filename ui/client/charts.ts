// Interactive charts with uPlot, fed by tidemark's JSON API (the same numbers the API serves).
// Every chart of a page shares one cursor (uPlot's cursor.sync), and each fills the folded table of
// its numbers under it, so the numbers are readable without the canvas.
import uPlot from 'uplot';

export const SYNC_KEY = 'tidemark';

export interface Series {
  label: string;
  values: (number | null)[];
  /** CSS colour. */
  stroke: string;
  fill?: string;
  dash?: number[];
  kind?: 'line' | 'step' | 'bars' | 'points';
  /** Second y axis (right). */
  scale?: string;
  width?: number;
}

export interface TimeChartSpec {
  /** Epoch ms, ascending. */
  t: number[];
  series: Series[];
  height?: number;
  /** Spans [fromMs, toMs] shaded behind the lines (firing spans), with their colour. */
  bands?: { fromMs: number; toMs: number; fill: string }[];
  /** Vertical markers (alert start/end). */
  markers?: { atMs: number; label: string; stroke: string }[];
  yLabel?: string;
  y2Label?: string;
  /** Called with the x (epoch ms) of a clicked point. */
  onClick?: (tMs: number) => void;
}

function pathOf(kind: Series['kind']): uPlot.Series.PathBuilder | undefined {
  if (kind === 'step') return uPlot.paths.stepped!({ align: 1 });
  if (kind === 'bars') return uPlot.paths.bars!({ size: [0.6, 40] });
  if (kind === 'points') return () => null;
  return undefined;
}

/** A time chart in `el` (uPlot wants seconds on its time axis). */
export function timeChart(el: HTMLElement, spec: TimeChartSpec): uPlot {
  const hasY2 = spec.series.some((s) => s.scale === 'y2');
  const opts: uPlot.Options = {
    width: Math.max(320, el.clientWidth || 640),
    height: spec.height ?? 220,
    cursor: { sync: { key: SYNC_KEY, setSeries: false }, drag: { x: false, y: false } },
    scales: { x: { time: true } },
    series: [
      { label: 'window end', value: (_u, v) => (v === null ? '-' : new Date(v * 1000).toISOString().slice(0, 16).replace('T', ' ')) },
      ...spec.series.map((s) => ({
        label: s.label,
        stroke: s.stroke,
        width: s.width ?? (s.kind === 'points' ? 0 : 2),
        ...(s.fill ? { fill: s.fill } : {}),
        ...(s.dash ? { dash: s.dash } : {}),
        scale: s.scale ?? 'y',
        spanGaps: false,
        paths: pathOf(s.kind),
        points: s.kind === 'points' ? { show: true, size: 9, stroke: s.stroke, fill: s.fill ?? s.stroke } : { show: false },
      })),
    ],
    axes: [{}, { scale: 'y', label: spec.yLabel ?? '' }, ...(hasY2 ? [{ scale: 'y2', side: 1 as const, label: spec.y2Label ?? '', grid: { show: false } }] : [])],
    hooks: {
      drawClear: [
        (u: uPlot) => {
          // Firing spans under the series, as Pyrra shades them.
          for (const b of spec.bands ?? []) {
            const x0 = u.valToPos(b.fromMs / 1000, 'x', true);
            const x1 = u.valToPos(b.toMs / 1000, 'x', true);
            u.ctx.save();
            u.ctx.fillStyle = b.fill;
            u.ctx.fillRect(Math.max(u.bbox.left, x0), u.bbox.top, Math.max(2, Math.min(u.bbox.left + u.bbox.width, x1) - Math.max(u.bbox.left, x0)), u.bbox.height);
            u.ctx.restore();
          }
        },
      ],
      draw: [
        (u: uPlot) => {
          for (const m of spec.markers ?? []) {
            const x = u.valToPos(m.atMs / 1000, 'x', true);
            u.ctx.save();
            u.ctx.strokeStyle = m.stroke;
            u.ctx.setLineDash([4, 3]);
            u.ctx.lineWidth = 2;
            u.ctx.beginPath();
            u.ctx.moveTo(x, u.bbox.top);
            u.ctx.lineTo(x, u.bbox.top + u.bbox.height);
            u.ctx.stroke();
            u.ctx.fillStyle = m.stroke;
            u.ctx.font = `${12 * devicePixelRatio}px sans-serif`;
            u.ctx.fillText(m.label, x + 4, u.bbox.top + 14 * devicePixelRatio);
            u.ctx.restore();
          }
        },
      ],
    },
  };
  const data: uPlot.AlignedData = [spec.t.map((t) => t / 1000), ...spec.series.map((s) => s.values)];
  const chart = new uPlot(opts, data, el);
  if (spec.onClick) {
    chart.over.addEventListener('click', () => {
      const i = chart.cursor.idx;
      if (i !== null && i !== undefined) spec.onClick!(spec.t[i]!);
    });
    chart.over.style.cursor = 'pointer';
  }
  return chart;
}

/** Fill the chart's folded numbers table (a <details> right after the chart element). */
export function fillNumbers(el: HTMLElement, header: string[], rows: (string | number | null)[][]): void {
  let details = el.nextElementSibling;
  if (!(details instanceof HTMLDetailsElement)) {
    details = document.createElement('details');
    details.className = 'numbers';
    el.after(details);
  }
  const cell = (v: string | number | null): string => (v === null ? '-' : typeof v === 'number' ? formatNumber(v) : v);
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  for (const h of header) head.appendChild(document.createElement('th')).textContent = h;
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    for (const v of r) tr.insertCell().textContent = cell(v);
  }
  details.replaceChildren(Object.assign(document.createElement('summary'), { textContent: `${el.dataset.title ?? 'chart'}: the numbers` }), table);
}

export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return '-';
  if (x !== 0 && (Math.abs(x) >= 1e9 || Math.abs(x) < 1e-4)) return x.toExponential(3);
  return String(Number(x.toPrecision(4)));
}

export function isoMinute(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}
