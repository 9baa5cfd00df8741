// Inline SVG charts: bars and lines drawn into an <svg> with a fixed viewBox that scales with its
// box (SVG 1.1, "The viewBox attribute"). No library: a few elements per chart, redrawn on update.

/* global document */

const NS = 'http://www.w3.org/2000/svg';
const W = 320;
const H = 120;
const PAD = { left: 4, right: 4, top: 14, bottom: 16 };

function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function reset(svg, label) {
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
}

function note(svg, text) {
  svg.append(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-note' }, text));
}

/**
 * Bars: one <rect> per point, carrying data-label and data-value (the exact value as given, e.g. a
 * decimal string) and a <title> tooltip. `format` writes a value for the axis and tooltip.
 */
export function barChart(svg, points, { label, format = String } = {}) {
  reset(svg, label ?? 'bar chart');
  if (!points.length) return note(svg, 'no data yet');
  const values = points.map((p) => Number(p.value));
  const max = Math.max(0, ...values);
  const min = Math.min(0, ...values);
  const span = max - min || 1;
  const plotH = H - PAD.top - PAD.bottom;
  const zeroY = PAD.top + (max / span) * plotH;
  const step = (W - PAD.left - PAD.right) / points.length;
  const gap = step > 4 ? 1 : 0;
  points.forEach((p, i) => {
    const v = values[i];
    const h = (Math.abs(v) / span) * plotH;
    const rect = svgEl('rect', {
      x: (PAD.left + i * step + gap / 2).toFixed(2),
      y: (v >= 0 ? zeroY - h : zeroY).toFixed(2),
      width: Math.max(0.5, step - gap).toFixed(2),
      height: Math.max(v === 0 ? 0 : 0.5, h).toFixed(2),
      class: v < 0 ? 'bar negative' : 'bar',
      'data-label': p.label,
      'data-value': p.value,
    });
    rect.append(svgEl('title', {}, `${p.label}: ${format(p.value)}`));
    svg.append(rect);
  });
  svg.append(svgEl('line', { x1: PAD.left, x2: W - PAD.right, y1: zeroY, y2: zeroY, class: 'axis' }));
  svg.append(svgEl('text', { x: PAD.left, y: 10, class: 'chart-axis' }, `max ${format(String(max))}`));
  svg.append(svgEl('text', { x: PAD.left, y: H - 3, class: 'chart-axis' }, points[0].short ?? points[0].label));
  if (points.length > 1)
    svg.append(
      svgEl('text', { x: W - PAD.right, y: H - 3, 'text-anchor': 'end', class: 'chart-axis' }, points.at(-1).short ?? points.at(-1).label),
    );
}

/**
 * Lines over time: `series` is [{ name, points: [{ t (ms), v }] }], each drawn as a <polyline> with
 * its latest value in the legend. Missing values (null) break nothing: they are left out.
 */
export function lineChart(svg, series, { label, format = String } = {}) {
  reset(svg, label ?? 'line chart');
  const all = series.flatMap((s) => s.points.filter((p) => p.v !== null && Number.isFinite(p.v)));
  if (!all.length) return note(svg, 'waiting for data');
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t));
  const max = Math.max(...all.map((p) => p.v), 0) || 1;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0 || 1)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + plotH - (v / max) * plotH;
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p.v !== null && Number.isFinite(p.v));
    if (!pts.length) return;
    const line = svgEl('polyline', {
      points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' '),
      class: `line series-${i % 4}`,
      'data-series': s.name,
      'data-points': pts.length,
    });
    line.append(svgEl('title', {}, `${s.name}: ${format(pts.at(-1).v)}`));
    svg.append(line);
    svg.append(
      svgEl(
        'text',
        { x: W - PAD.right, y: 10 + i * 11, 'text-anchor': 'end', class: `chart-legend series-${i % 4}` },
        `${s.name} ${format(pts.at(-1).v)}`,
      ),
    );
  });
  svg.append(svgEl('text', { x: PAD.left, y: 10, class: 'chart-axis' }, `max ${format(max)}`));
  svg.append(svgEl('text', { x: PAD.left, y: H - 3, class: 'chart-axis' }, `last ${Math.round((t1 - t0) / 1000)} s`));
}
