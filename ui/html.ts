// HTML rendered on the server: a tagged template that escapes every interpolated value unless it
// is marked raw (our own markup: SVG builders, nested templates), and the page layout shared by
// every dashboard page. Pages stay readable with scripts off; charts are added by ui/client.

/** Markup that is already safe (built by `html` or by the SVG builders). */
export class Raw {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export function raw(text: string): Raw {
  return new Raw(text);
}

export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function piece(value: unknown): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return value.map(piece).join('');
  return escapeHtml(value);
}

/** `html\`<td>${value}</td>\``: values are escaped, arrays joined, Raw kept, null/undefined/false dropped. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Raw {
  let out = strings[0]!;
  values.forEach((v, i) => (out += piece(v) + strings[i + 1]!));
  return new Raw(out);
}

/** A query string from the defined entries of `params` (state lives in the URL). */
export function query(params: Readonly<Record<string, string | number | boolean | null | undefined>>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Four significant digits, no exponent for ordinary values; '-' for null. */
export function num(x: number | null | undefined, digits = 4): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  if (x !== 0 && (Math.abs(x) >= 1e9 || Math.abs(x) < 1e-4)) return x.toExponential(digits - 1);
  return String(Number(x.toPrecision(digits)));
}

export function isoMinute(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

export interface PageOptions {
  title: string;
  /** The top navigation entry to mark current. */
  section: 'overview' | 'views' | 'monitor' | 'alerts';
  body: Raw;
  /** Breadcrumb links before the title: [text, href]. */
  crumbs?: readonly (readonly [string, string])[];
}

const NAV: readonly (readonly [PageOptions['section'], string, string])[] = [
  ['overview', 'Overview', '/ui/'],
  ['views', 'Views', '/ui/views'],
  ['monitor', 'Drift', '/ui/monitor'],
  ['alerts', 'Alerts', '/ui/alerts'],
];

export function page(opts: PageOptions): string {
  return `<!doctype html>${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${opts.title} · tidemark</title>
<link rel="stylesheet" href="/ui/assets/uPlot.min.css"><link rel="stylesheet" href="/ui/assets/app.css">
<script type="module" src="/ui/assets/app.js"></script></head>
<body><header><a class="brand" href="/ui/">tidemark</a><nav>${NAV.map(([id, text, href]) => html`<a href="${href}"${raw(id === opts.section ? ' aria-current="page"' : '')}>${text}</a>`)}</nav>
<a class="docs" href="/docs">API reference</a></header>
<main>${opts.crumbs && opts.crumbs.length > 0 ? html`<p class="crumbs">${opts.crumbs.map(([t, h]) => html`<a href="${h}">${t}</a> / `)}</p>` : ''}<h1>${opts.title}</h1>
${opts.body}</main></body></html>`.text}`;
}

/** A page that says what is unknown and lists the valid choices (served with HTTP 404). */
export function unknownPage(section: PageOptions['section'], what: string, value: string, choices: readonly { text: string; href: string }[]): string {
  return page({
    title: `Unknown ${what}`,
    section,
    body: html`<p class="error" data-unknown="${what}">There is no ${what} <code>${value}</code>.</p>
${choices.length === 0 ? html`<p>There are no ${what}s to choose from.</p>` : html`<p>Valid ${what}s:</p><ul class="choices">${choices.slice(0, 500).map((c) => html`<li><a href="${c.href}">${c.text}</a></li>`)}</ul>${choices.length > 500 ? html`<p>and ${choices.length - 500} more.</p>` : ''}`}`,
  });
}

/** A table of numbers behind a chart, folded (every chart has one). */
export function numbersTable(caption: string, header: readonly string[], rows: readonly (readonly unknown[])[]): Raw {
  return html`<details class="numbers"><summary>${caption}: the numbers</summary><table><thead><tr>${header.map((h) => html`<th>${h}</th>`)}</tr></thead>
<tbody>${rows.map((r) => html`<tr>${r.map((c) => html`<td>${typeof c === 'number' ? num(c) : c}</td>`)}</tr>`)}</tbody></table></details>`;
}
