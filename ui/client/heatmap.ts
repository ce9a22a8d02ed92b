// The drift heatmap: feature x window end, one plain canvas (its cell count would make SVG or a
// chart library slow). The cell colour is PSI; an outlined cell is a drift decision; a hatched
// cell is "no decision" (too few rows, no reference). Clicking a cell opens that feature at that time.
import { fillNumbers, formatNumber, isoMinute } from './charts.js';

export interface HeatmapData {
  features: string[];
  /** Window ends, epoch ms ascending. */
  t: number[];
  /** psi[f][i]: PSI of features[f] at t[i]; null where no PSI was computed. */
  psi: (number | null)[][];
  /** drift[f][i]: the decision; null: no decision. */
  drift: (boolean | null)[][];
}

const LABEL_W = 220;
const HEAD_H = 28;

/** White -> amber -> red over PSI 0 .. 0.5 (PSI 0.1 and 0.25 are the usual "shift" marks). */
export function psiColor(psi: number): string {
  const x = Math.max(0, Math.min(1, psi / 0.5));
  const r = 255;
  const g = Math.round(255 - 180 * x);
  const b = Math.round(255 - 230 * Math.min(1, x * 1.6));
  return `rgb(${r},${g},${b})`;
}

export function drawHeatmap(el: HTMLElement, data: HeatmapData, onPick: (feature: string, endMs: number) => void): void {
  const cols = data.t.length;
  const rows = data.features.length;
  const cellW = Math.max(6, Math.min(36, Math.floor(((el.clientWidth || 800) - LABEL_W) / Math.max(1, cols))));
  const cellH = 18;
  const canvas = document.createElement('canvas');
  const dpr = window.devicePixelRatio || 1;
  const width = LABEL_W + cols * cellW;
  const height = HEAD_H + rows * cellH;
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `PSI heatmap of ${rows} features over ${cols} evaluations`);
  const ctx = canvas.getContext('2d')!;
  ctx.scale(dpr, dpr);
  ctx.font = '12px sans-serif';
  ctx.fillStyle = '#222';
  const step = Math.max(1, Math.ceil(70 / cellW));
  for (let i = 0; i < cols; i += step) ctx.fillText(new Date(data.t[i]!).toISOString().slice(5, 10), LABEL_W + i * cellW, HEAD_H - 10);
  for (let f = 0; f < rows; f++) {
    const y = HEAD_H + f * cellH;
    ctx.fillStyle = '#222';
    ctx.fillText(data.features[f]!.slice(0, 32), 4, y + 13);
    for (let i = 0; i < cols; i++) {
      const x = LABEL_W + i * cellW;
      const psi = data.psi[f]![i] ?? null;
      const drift = data.drift[f]![i] ?? null;
      ctx.fillStyle = psi === null ? '#f2f2f2' : psiColor(psi);
      ctx.fillRect(x, y, cellW - 1, cellH - 1);
      if (drift === null) {
        // Hatched: no decision.
        ctx.strokeStyle = '#9a9a9a';
        ctx.lineWidth = 1;
        ctx.beginPath();
        for (let d = -cellH; d < cellW; d += 5) {
          ctx.moveTo(x + Math.max(0, d), y + Math.max(0, -d));
          ctx.lineTo(x + Math.min(cellW - 1, d + cellH - 1), y + Math.min(cellH - 1, cellH - 1 - d + Math.min(0, d)));
        }
        ctx.stroke();
      } else if (drift) {
        ctx.strokeStyle = '#8b0000';
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, cellW - 3, cellH - 3);
      }
    }
  }
  const tip = document.createElement('p');
  tip.className = 'heatmap-tip';
  tip.textContent = 'Hover a cell for its PSI; click to open that feature at that time. Outlined: drift; hatched: no decision.';
  canvas.addEventListener('mousemove', (e) => {
    const cell = cellAt(e);
    if (!cell) return;
    const psi = data.psi[cell.f]![cell.i] ?? null;
    const drift = data.drift[cell.f]![cell.i] ?? null;
    tip.textContent = `${data.features[cell.f]} at ${isoMinute(data.t[cell.i]!)}: PSI ${psi === null ? '-' : formatNumber(psi)}, ${drift === null ? 'no decision' : drift ? 'drift' : 'no drift'}`;
  });
  canvas.addEventListener('click', (e) => {
    const cell = cellAt(e);
    if (cell) onPick(data.features[cell.f]!, data.t[cell.i]!);
  });
  function cellAt(e: MouseEvent): { f: number; i: number } | null {
    const r = canvas.getBoundingClientRect();
    const i = Math.floor((e.clientX - r.left - LABEL_W) / cellW);
    const f = Math.floor((e.clientY - r.top - HEAD_H) / cellH);
    return i >= 0 && i < cols && f >= 0 && f < rows ? { f, i } : null;
  }
  el.replaceChildren(canvas, tip);
  fillNumbers(
    el,
    ['feature', ...data.t.map((t) => isoMinute(t))],
    data.features.map((name, f) => [name, ...data.psi[f]!.map((p, i) => (p === null ? null : `${formatNumber(p)}${data.drift[f]![i] ? ' (drift)' : ''}`))]),
  );
}
