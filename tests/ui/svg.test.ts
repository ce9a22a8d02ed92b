// The dashboard's SVG string builders (ui/svg.ts): every output parses as XML, states its numbers in
// its title, escapes text, stays inside its viewBox with no NaN/Infinity, and draws what it is given
// (bar heights, threshold position, tile counts) — read back from the parsed elements.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compileOrThrow,
  featureView,
  formatDurationMs,
  LATEST_GROUP_HOP_MS,
  windowStartMs,
  worstTilesPerRead,
  type ViewPlan,
} from '../../definitions/index.js';
import { budgetBar, contributionBars, escapeXml, formatNumber, formatPercent, lineage, overlaidHistogram, sparkline, tilePlanStrip } from '../../ui/svg.js';
import * as flightsDefinitions from '../../examples/flights/definitions.js';
import { clicks, user } from '../fixtures/plan/common.js';
import { allText, classes, descendants, parseXml, withClass, type XmlElement } from './xml-tree.js';

const HOSTILE = `<script>&"'`;
const badInput = expect.objectContaining({ code: 'TM_UI_BAD_CHART_INPUT' });

/** Absolute path commands (the only ones the builders write) as points; H/V carry one coordinate. */
function pathCoordinates(d: string): { xs: number[]; ys: number[]; moves: number } {
  const xs: number[] = [];
  const ys: number[] = [];
  let moves = 0;
  for (const [, cmd, args] of d.matchAll(/([MLHVZ])([^MLHVZ]*)/g)) {
    const nums = args!.trim() === '' ? [] : args!.trim().split(/[\s,]+/).map(Number);
    if (cmd === 'M') moves++;
    if (cmd === 'M' || cmd === 'L') {
      expect(nums.length % 2).toBe(0);
      for (let k = 0; k < nums.length; k += 2) {
        xs.push(nums[k]!);
        ys.push(nums[k + 1]!);
      }
    } else if (cmd === 'H') xs.push(...nums);
    else if (cmd === 'V') ys.push(...nums);
    else expect(nums).toEqual([]);
  }
  return { xs, ys, moves };
}

/**
 * Parse a chart and check what every chart owes: an <svg> root with a fixed viewBox equal to its
 * size, role="img", a first-child <title> equal to aria-label, no scripts, ids or external
 * references, no NaN/Infinity, and every coordinate inside the viewBox.
 */
function checkChart(svg: string): { root: XmlElement; width: number; height: number; title: string } {
  expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  expect(svg).not.toMatch(/<script|href|url\(|\bid=|javascript:/i);
  const root = parseXml(svg);
  expect(root.name).toBe('svg');
  expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
  expect(root.attrs.role).toBe('img');
  const [x0, y0, width, height] = root.attrs.viewBox!.split(' ').map(Number) as [number, number, number, number];
  expect([x0, y0]).toEqual([0, 0]);
  expect(Number(root.attrs.width)).toBe(width);
  expect(Number(root.attrs.height)).toBe(height);
  const titleEl = root.children[0]!;
  expect(titleEl.name).toBe('title');
  const title = titleEl.text;
  expect(title.length).toBeGreaterThan(0);
  expect(root.attrs['aria-label']).toBe(title);
  const eps = 0.011;
  const inX = (v: number): void => {
    expect(Number.isFinite(v)).toBe(true);
    expect(v).toBeGreaterThanOrEqual(-eps);
    expect(v).toBeLessThanOrEqual(width + eps);
  };
  const inY = (v: number): void => {
    expect(Number.isFinite(v)).toBe(true);
    expect(v).toBeGreaterThanOrEqual(-eps);
    expect(v).toBeLessThanOrEqual(height + eps);
  };
  for (const e of descendants(root).slice(1)) {
    const a = e.attrs;
    for (const k of ['x', 'x1', 'x2', 'cx'] as const) if (a[k] !== undefined) inX(Number(a[k]));
    for (const k of ['y', 'y1', 'y2', 'cy'] as const) if (a[k] !== undefined) inY(Number(a[k]));
    if (e.name === 'rect') {
      expect(Number(a.width)).toBeGreaterThanOrEqual(0);
      expect(Number(a.height)).toBeGreaterThanOrEqual(0);
      inX(Number(a.x) + Number(a.width));
      inY(Number(a.y) + Number(a.height));
    }
    if (e.name === 'path') {
      const { xs, ys } = pathCoordinates(a.d!);
      xs.forEach(inX);
      ys.forEach(inY);
    }
  }
  return { root, width, height, title };
}

describe('escapeXml and number text', () => {
  it('escapes markup, quotes and characters XML cannot carry', () => {
    expect(escapeXml(HOSTILE)).toBe('&lt;script&gt;&amp;&quot;&apos;');
    expect(escapeXml('a\u0001b\u0000')).toBe('a\uFFFDb\uFFFD');
    expect(escapeXml('lone \uD800 surrogate, pair \uD83D\uDE00 kept')).toBe('lone \uFFFD surrogate, pair \uD83D\uDE00 kept');
    expect(parseXml(`<t a="${escapeXml(HOSTILE)}">${escapeXml(HOSTILE)}</t>`)).toMatchObject({ attrs: { a: HOSTILE }, text: HOSTILE });
  });

  it('formats 4 significant digits without an exponent for ordinary values', () => {
    const cases: [number, string][] = [
      [0.123456, '0.1235'],
      [123456, '123500'],
      [1234.5, '1235'],
      [99999, '100000'],
      [0.1, '0.1'],
      [-0.000012346, '-0.00001235'],
      [-0, '0'],
      [1e-7, '1.000e-7'],
      [1.5e300, '1.500e+300'],
      [Number.MAX_VALUE, '1.798e+308'],
      [Number.NaN, 'n/a'],
      [Number.POSITIVE_INFINITY, 'n/a'],
    ];
    for (const [x, text] of cases) expect(formatNumber(x), String(x)).toBe(text);
    expect(formatPercent(0.1234)).toBe('12.34%');
  });
});

describe('the test XML parser', () => {
  it('rejects what is not well-formed, so the checks below can fail', () => {
    for (const bad of ['<a><b></a></b>', '<a>&</a>', '<a>&nbsp;</a>', '<a x="1" x="2"/>', '<a/><b/>', '<a x=1/>', '<a><!-- c --></a>', '<a>\u0001</a>', '<a>', 'text<a/>', '<a x="<"/>']) {
      expect(() => parseXml(bad), bad).toThrow();
    }
    expect(parseXml('<a x="&amp;&#60;"><b/>t&gt;</a>')).toMatchObject({ name: 'a', attrs: { x: '&<' }, text: 't>', children: [{ name: 'b' }] });
  });
});

describe('sparkline', () => {
  const size = { width: 100, height: 24 };

  it('puts the threshold at its value on the same scale as the points', () => {
    const { root, title } = checkChart(sparkline([0, 0.1, 0.2], { ...size, threshold: 0.1, label: 'PSI' }));
    const [line] = withClass(root, 'threshold');
    // range 0..0.2 over the 24px height minus 4px padding on each side: 0.1 sits at 24 - 4 - 8
    expect(Number(line!.attrs.y1)).toBe(12);
    expect(line!.attrs.y2).toBe(line!.attrs.y1);
    expect(line!.attrs['stroke-dasharray']).toBeDefined();
    const { ys } = pathCoordinates(withClass(root, 'cur')[0]!.attrs.d!);
    expect(ys).toEqual([20, 12, 4]);
    expect(title).toBe('PSI: 3 points, last 0.2, min 0, max 0.2, threshold 0.1');
  });

  it('leaves the threshold out when it lies outside a given range, and clamps points into it', () => {
    const { root } = checkChart(sparkline([-5, 0.5, 50], { ...size, threshold: 2, min: 0, max: 1 }));
    expect(withClass(root, 'threshold')).toEqual([]);
    const { ys } = pathCoordinates(withClass(root, 'cur')[0]!.attrs.d!);
    expect(ys).toEqual([20, 12, 4]);
  });

  it('breaks the line at nulls and non-finite values; a lone value is a dot', () => {
    const { root, title } = checkChart(sparkline([1, 2, null, 3, 4, Number.NaN, 5], size));
    const paths = descendants(root).filter((e) => e.name === 'path');
    expect(paths).toHaveLength(1);
    const { xs, moves } = pathCoordinates(paths[0]!.attrs.d!);
    expect(moves).toBe(2);
    expect(xs).toHaveLength(4);
    const dots = descendants(root).filter((e) => e.name === 'circle' && classes(e).includes('cur'));
    expect(dots).toHaveLength(1);
    expect(title).toContain('7 points (2 missing)');
    expect(title).toContain('last 5');
  });

  it('draws drift markers filled, no-drift hollow, no-decision grey, even without a value', () => {
    const { root, height, title } = checkChart(
      sparkline([0.05, 0.3, null, 0.02], { ...size, threshold: 0.1, markers: ['ok', 'drift', 'none', null] }),
    );
    const drift = withClass(root, 'marker', 'bad');
    const ok = withClass(root, 'marker', 'ok');
    const none = withClass(root, 'marker', 'none');
    expect([drift.length, ok.length, none.length]).toEqual([1, 1, 1]);
    expect(drift[0]!.attrs.fill).not.toBe('none');
    expect(ok[0]!.attrs.fill).toBe('none');
    expect(Number(none[0]!.attrs.cy)).toBe(height - 4);
    expect(title).toContain('1 drift, 1 no drift, 1 no decision');
  });

  it('draws a small "no data" chart for empty and all-null input', () => {
    for (const values of [[], [null, null], [Number.NaN, Number.POSITIVE_INFINITY]]) {
      const { root, title } = checkChart(sparkline(values, size));
      expect(allText(root)).toContain('no data');
      expect(title).toContain('no data');
      expect(descendants(root).some((e) => e.name === 'path' || e.name === 'circle')).toBe(false);
    }
  });

  it('rejects markers that do not match the values, and a size that is not positive', () => {
    expect(() => sparkline([1, 2], { ...size, markers: ['drift'] })).toThrow(badInput);
    expect(() => sparkline([1, 2], { width: 0, height: 10 })).toThrow(badInput);
    expect(() => sparkline([1, 2], { width: Number.NaN, height: 10 })).toThrow(badInput);
  });

  it('escapes its label', () => {
    const { root, title } = checkChart(sparkline([1, 2], { ...size, label: HOSTILE }));
    expect(title.startsWith(HOSTILE)).toBe(true);
    expect(descendants(root).map((e) => e.name)).not.toContain('script');
  });

  it('stays well-formed and inside its viewBox for any values (nulls, zeros, huge, non-finite)', () => {
    const value = fc.oneof(
      fc.constant(null),
      fc.constant(0),
      fc.double(),
      fc.constantFrom(Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 1e300, -1e300),
    );
    const marker = fc.constantFrom('drift' as const, 'ok' as const, 'none' as const, null);
    fc.assert(
      fc.property(fc.array(fc.tuple(value, marker), { maxLength: 60 }), fc.option(fc.double(), { nil: undefined }), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 60 }), (pairs, threshold, width, height) => {
        const values = pairs.map(([v]) => v);
        const svg = sparkline(values, { width, height, threshold, markers: pairs.map(([, m]) => m) });
        const { root } = checkChart(svg);
        const finite = values.filter((v) => v !== null && Number.isFinite(v));
        if (finite.length > 0) expect(withClass(root, 'marker').length).toBe(pairs.filter(([, m]) => m !== null).length);
      }),
      { numRuns: 300 },
    );
  });
});

/** Heights of the current bars and y of the reference step, per bin. */
function histogramShapes(root: XmlElement): { heights: number[]; refYs: number[]; base: number } {
  const heights = withClass(root, 'cur').filter((e) => e.name === 'rect').map((e) => Number(e.attrs.height));
  const ref = withClass(root, 'ref')[0];
  const base = Number(withClass(root, 'axis')[0]!.attrs.y1);
  return { heights, refYs: ref ? pathCoordinates(ref.attrs.d!).ys : [], base };
}

describe('overlaidHistogram', () => {
  const size = { width: 160, height: 48 };

  it('draws both as proportions on one scale: equal shares from different totals line up', () => {
    const { root, title } = checkChart(overlaidHistogram([1, 1, 2], [100, 100, 200], size));
    const { heights, refYs, base } = histogramShapes(root);
    expect(refYs).toHaveLength(3);
    heights.forEach((h, i) => expect(base - h).toBeCloseTo(refYs[i]!, 1));
    expect(title).toContain('reference n=4');
    expect(title).toContain('current n=400');
  });

  it('draws current bar heights proportional to the counts, and the reference step at its shares', () => {
    const reference = [10, 10, 10, 10, 10, 10, 10, 10, 10, 10];
    const current = [5, 8, 12, 10, 10, 10, 10, 10, 15, 10];
    const { root, title } = checkChart(overlaidHistogram(reference, current, { ...size, labels: ['1', '2', '3', '4', '5', '6', '7', '8', '9'] }));
    const { heights, refYs, base } = histogramShapes(root);
    expect(heights).toHaveLength(10);
    const plot = base - 4; // the plot's top is 4px below the edge
    // the tallest share (15%) fills the plot; every other bar is its share of that
    current.forEach((c, i) => expect(heights[i]).toBeCloseTo((plot * c) / 15, 1));
    refYs.forEach((y) => expect(base - y).toBeCloseTo((plot * 10) / 15, 1));
    expect(title).toContain('largest difference at bin 1 (below 1): reference 10%, current 5%');
    expect(allText(root)).toContain('bin 5 (4 to 5): reference 10%, current 10%');
    expect(withClass(root, 'tick')).toHaveLength(9);
  });

  it('handles zero totals without NaN', () => {
    const { root, title } = checkChart(overlaidHistogram([0, 0, 0], [0, 0, 0], size));
    expect(histogramShapes(root).heights).toEqual([0, 0, 0]);
    expect(withClass(root, 'ref')).toEqual([]);
    expect(title).toContain('reference n=0');
    const { root: half } = checkChart(overlaidHistogram([0, 0], [1, 3], size));
    expect(histogramShapes(half).heights[0]! * 3).toBeCloseTo(histogramShapes(half).heights[1]!, 1);
  });

  it('rejects different bins, negative or non-finite counts and labels of the wrong length', () => {
    expect(() => overlaidHistogram([1, 2], [1, 2, 3], size)).toThrow(badInput);
    expect(() => overlaidHistogram([1, -2], [1, 2], size)).toThrow(badInput);
    expect(() => overlaidHistogram([1, 2], [1, Number.POSITIVE_INFINITY], size)).toThrow(badInput);
    expect(() => overlaidHistogram([1, 2, 3], [1, 2, 3], { ...size, labels: ['a'] })).toThrow(badInput);
    expect(withClass(checkChart(overlaidHistogram([1, 2, 3], [1, 2, 3], { ...size, labels: [] })).root, 'tick')).toEqual([]);
  });

  it('escapes labels', () => {
    const { root } = checkChart(overlaidHistogram([1, 1], [1, 2], { ...size, labels: [HOSTILE, 'b'] }));
    expect(descendants(root).map((e) => e.name)).not.toContain('script');
    expect(allText(root)).toContain(HOSTILE);
  });

  it('keeps bars proportional and inside the viewBox for any counts (zeros, huge)', () => {
    const count = fc.oneof(fc.constant(0), fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true }), fc.constantFrom(Number.MAX_VALUE, Number.MIN_VALUE, 1));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }).chain((n) => fc.tuple(fc.array(count, { minLength: n, maxLength: n }), fc.array(count, { minLength: n, maxLength: n }))), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 80 }), fc.boolean(), ([reference, current], width, height, edgeLabels) => {
        const labels = edgeLabels ? current.slice(1).map((_, i) => `${HOSTILE}${i}`) : undefined;
        const { root } = checkChart(overlaidHistogram(reference, current, { width, height, labels }));
        const { root: bars } = checkChart(contributionBars(current, { width, height, labels }));
        expect(withClass(bars, 'contribution')).toHaveLength(current.length);
        const { heights } = histogramShapes(root);
        expect(heights).toHaveLength(current.length);
        const k = current.indexOf(Math.max(...current));
        if (current[k]! > 0) {
          // height_i = height_k * c_i / c_k, up to the 0.01px rounding of both
          current.forEach((c, i) => expect(Math.abs(heights[i]! - heights[k]! * (c / current[k]!))).toBeLessThan(0.02));
        } else {
          expect(heights.every((h) => h === 0)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('contributionBars', () => {
  const size = { width: 100, height: 30 };

  it('draws heights proportional to the contributions and highlights only the largest', () => {
    const contributions = [0.01, 0, 0.2, 0.03];
    const { root, title } = checkChart(contributionBars(contributions, size));
    const bars = withClass(root, 'contribution');
    const heights = bars.map((b) => Number(b.attrs.height));
    contributions.forEach((c, i) => expect(heights[i]).toBeCloseTo((heights[2]! * c) / 0.2, 1));
    expect(bars.map((b) => classes(b).includes('bad'))).toEqual([false, false, true, false]);
    expect(title).toContain('total 0.24');
    expect(title).toContain('largest at bin 3: 0.2');
    const { title: named } = checkChart(contributionBars(contributions, { ...size, labels: ['a', 'b', 'c', 'd'] }));
    expect(named).toContain('largest at bin 3 (c): 0.2 (83.33% of the total)');
  });

  it('draws all-zero contributions flat, and rejects negative ones', () => {
    const { root, title } = checkChart(contributionBars([0, 0], size));
    expect(withClass(root, 'bad')).toEqual([]);
    expect(title).toContain('all 0');
    expect(() => contributionBars([0.1, -0.01], size)).toThrow(badInput);
  });
});

describe('budgetBar', () => {
  it('draws the budget left in green from 0 to the right', () => {
    const { root, title } = checkChart(budgetBar(0.425));
    const [track] = withClass(root, 'track');
    const [bar] = withClass(root, 'budget', 'ok');
    expect(Number(bar!.attrs.x)).toBeCloseTo(Number(track!.attrs.x), 2);
    expect(Number(bar!.attrs.width)).toBeCloseTo(0.425 * Number(track!.attrs.width), 1);
    expect(withClass(root, 'bad')).toEqual([]);
    expect(title).toBe('error budget remaining: 42.5%');
  });

  it('draws an overspend in red left of 0, scaled down to -100% and stated beyond', () => {
    const { root, title } = checkChart(budgetBar(-0.25, { width: 200, height: 20 }));
    const [track] = withClass(root, 'track');
    const [bar] = withClass(root, 'budget', 'bad');
    const [zero] = withClass(root, 'zero');
    // the scale runs -0.25..1, so 0 sits a fifth of the way along
    expect(Number(zero!.attrs.x1) - Number(track!.attrs.x)).toBeCloseTo(Number(track!.attrs.width) / 5, 1);
    expect(Number(bar!.attrs.x) + Number(bar!.attrs.width)).toBeCloseTo(Number(zero!.attrs.x1), 1);
    expect(title).toBe('error budget overspent: -25% remaining');
    const { root: deep, title: deepTitle } = checkChart(budgetBar(-3));
    expect(Number(withClass(deep, 'budget', 'bad')[0]!.attrs.width)).toBeCloseTo(Number(withClass(deep, 'track')[0]!.attrs.width) / 2, 1);
    expect(deepTitle).toContain('-300%');
    expect(allText(checkChart(budgetBar(Number.NaN)).root)).toContain('no data');
  });
});

describe('lineage', () => {
  it('draws source -> views -> monitors with escaped names', () => {
    const { root, title } = checkChart(lineage(HOSTILE, ['origin_delays', 'carrier'], ['m1']));
    expect(withClass(root, 'node', 'source')).toHaveLength(1);
    expect(withClass(root, 'node', 'view')).toHaveLength(2);
    expect(withClass(root, 'node', 'monitor')).toHaveLength(1);
    expect(withClass(root, 'edge')).toHaveLength(2 + 2);
    expect(title).toBe(`lineage: source ${HOSTILE} feeds 2 views (origin_delays, carrier) and 1 monitor (m1)`);
    expect(descendants(root).map((e) => e.name)).not.toContain('script');
  });

  it('draws only the arrows a monitor reads, and folds long columns into "+N more"', () => {
    const { root } = checkChart(lineage('s', ['a', 'b', 'c'], ['m1', 'm2'], { monitorViews: { m1: ['a'], m2: ['b', 'c'] } }));
    expect(withClass(root, 'edge')).toHaveLength(3 + 3);
    const views = Array.from({ length: 20 }, (_, i) => `view_${i}`);
    const { root: many } = checkChart(lineage('s', views, ['m']));
    const boxes = withClass(many, 'node', 'view');
    expect(boxes).toHaveLength(8);
    expect(allText(boxes.at(-1)!)).toContain('+13 more');
  });
});

describe('tilePlanStrip', () => {
  // the flights example: 1h windows on 5m tiles, 1d and 7d windows on 1h tiles, a latest value
  const view = compileOrThrow(flightsDefinitions).registry.views.find((v) => v.name === 'origin_delays')!;
  // a last without window on 1d tiles: a hop group with history tiles only
  const daily = compileOrThrow([featureView({ name: 'daily_last', source: clicks, entity: user, features: { last_amount: { agg: 'last', field: 'amount', hop: '1d' } } })]).registry.views[0]!;
  const group = (root: XmlElement, hopMs: number): XmlElement => descendants(root).find((e) => e.attrs['data-hop-ms'] === String(hopMs))!;

  it('draws the whole tiles of the longest window plus the partial head, as windowStartMs defines them', () => {
    const { root, title } = checkChart(tilePlanStrip(view, { width: 480 }));
    const hop = 300_000;
    const five = group(root, hop);
    // at any t the window starts tilesPerWindow whole tiles before the head tile (windowStartMs)
    const t = 1_700_000_123_456;
    const wholeTiles = (Math.floor(t / hop) * hop - windowStartMs(t, 3_600_000, hop)) / hop;
    expect(wholeTiles).toBe(12);
    expect(withClass(five, 'tile')).toHaveLength(wholeTiles + 1);
    const [head] = withClass(five, 'tile', 'head');
    const [fill] = withClass(five, 'head-fill');
    const [now] = withClass(five, 'now');
    const [start] = withClass(five, 'window-start');
    const whole = withClass(five, 'tile').filter((e) => !classes(e).includes('head'));
    const headLeft = Number(head!.attrs.x);
    const nowX = Number(now!.attrs.x1);
    // now falls inside the head tile, the fill stops at now, the window starts at the first whole tile
    expect(nowX).toBeGreaterThan(headLeft);
    expect(nowX).toBeLessThan(headLeft + Number(head!.attrs.width));
    expect(Number(fill!.attrs.x) + Number(fill!.attrs.width)).toBeCloseTo(nowX, 1);
    expect(Number(start!.attrs.x1)).toBeLessThanOrEqual(Number(whole[0]!.attrs.x));
    expect(Number(head!.attrs.width)).toBeCloseTo(Number(whole[0]!.attrs.width), 1);
    expect(allText(five)).toContain('window 1h (flights_1h, delay_mean_1h)');
    expect(title).toContain(`hop 5m: a 1h read merges 12 whole tiles + the partial head tile, retention ${formatDurationMs(view.groups[0]!.retentionMs!)}`);
  });

  it('draws a 168-tile window as a hatched band with its count, plus the head', () => {
    const { root, title } = checkChart(tilePlanStrip(view, { width: 480 }));
    const hourly = group(root, 3_600_000);
    expect(withClass(hourly, 'tile')).toHaveLength(1);
    expect(withClass(hourly, 'tile', 'head')).toHaveLength(1);
    expect(withClass(hourly, 'tile-band')).toHaveLength(1);
    expect(withClass(hourly, 'hatch')[0]!.attrs.d).toMatch(/^M/);
    expect(allText(hourly)).toContain('168 tiles × 1h');
    expect(allText(hourly)).toContain('window 7d (delay_stddev_7d)');
    const rollups = view.groups.find((g) => g.hopMs === 3_600_000)!.rollups;
    expect(rollups.length).toBeGreaterThan(0);
    expect(title).toContain(`a 7d read merges 168 whole tiles + the partial head tile, rollups ${rollups.map((s) => `×${s}`).join(' ')}: at most ${worstTilesPerRead(168, rollups)} blocks per read`);
    // the cap is an option: 13 tiles drawn one by one by default, banded under a cap of 10
    expect(withClass(group(checkChart(tilePlanStrip(view, { width: 480, maxDrawnTiles: 10 })).root, 300_000), 'tile-band')).toHaveLength(1);
  });

  it('draws the latest group as one cell and a window-less hop group as history with its retention', () => {
    const { root, title } = checkChart(tilePlanStrip(view, { width: 480 }));
    const latest = group(root, LATEST_GROUP_HOP_MS);
    expect(withClass(latest, 'tile')).toHaveLength(1);
    expect(withClass(latest, 'tile', 'latest')).toHaveLength(1);
    expect(allText(latest)).toContain('latest value');
    expect(title).toContain('latest: one cell for 1 latest value');
    expect(view.groups.map((g) => g.hopMs)).toEqual([300_000, 3_600_000, LATEST_GROUP_HOP_MS]);

    const { root: dailyRoot, title: dailyTitle } = checkChart(tilePlanStrip(daily, { width: 480 }));
    expect(daily.groups.map((g) => g.hopMs)).toEqual([86_400_000, LATEST_GROUP_HOP_MS]);
    const history = group(dailyRoot, 86_400_000);
    expect(withClass(history, 'tile')).toEqual([]);
    expect(withClass(history, 'retention')).toHaveLength(1);
    expect(dailyTitle).toContain(`hop 1d: history tiles, retention ${formatDurationMs(daily.groups[0]!.retentionMs!)}`);
  });

  it('refuses a size too small for its captions', () => {
    expect(() => tilePlanStrip(view, { width: 60 })).toThrow(badInput);
    expect(() => tilePlanStrip(view, { width: 480, height: 100 })).toThrow(badInput);
    expect(() => lineage('s', ['v'], ['m'], { width: 50 })).toThrow(badInput);
  });

  it('escapes names from a hand-built plan', () => {
    const hostile: ViewPlan = { ...view, name: HOSTILE, features: view.features.map((f) => ({ ...f, name: f.name === 'flights_1h' ? HOSTILE : f.name })) };
    const { root, title } = checkChart(tilePlanStrip(hostile, { width: 480 }));
    expect(title).toContain(`tile plan of view ${HOSTILE}`);
    expect(allText(root)).toContain(HOSTILE);
    expect(descendants(root).map((e) => e.name)).not.toContain('script');
  });
});
