// Line charts of per-epoch metrics as inline SVG. The figure's data-points attribute says how
// many epochs it shows (the tests watch it grow while a job trains).

import { fmtNum, h, replace, s } from "./dom.js";

const W = 560;
const H = 220;
const M = { top: 10, right: 14, bottom: 28, left: 56 };

/** A chart that redraws itself: chart.update(new Map([[name, [[epoch, value], ...]], ...])). */
export function lineChart(title, key) {
  const body = h("div", { class: "plot" });
  const legend = h("div", { class: "legend" });
  const figure = h("figure", { class: "chart card", "data-chart": key, "data-points": "0" },
    h("figcaption", {}, title), body, legend);
  figure.update = (series) => {
    const points = Math.max(0, ...[...series.values()].map((p) => p.length));
    figure.dataset.points = String(points);
    replace(body, points ? plot(series) : h("p", { class: "muted" }, "No points yet."));
    replace(legend, [...series.keys()].map((name, i) =>
      h("span", {}, h("span", { class: `swatch c${i % 6}` }), name)));
  };
  return figure;
}

function plot(series) {
  const all = [...series.values()].flat();
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const [x0, x1] = widen(Math.min(...xs), Math.max(...xs), 0.5);
  const [y0, y1] = widen(Math.min(...ys), Math.max(...ys), Math.abs(Math.max(...ys)) * 0.05 || 0.5);
  const px = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": [...series.keys()].join(", ") });
  for (const t of ticks(y0, y1, 5)) {
    svg.append(
      s("line", { class: "gridline", x1: M.left, x2: W - M.right, y1: py(t), y2: py(t) }),
      s("text", { class: "axis", x: M.left - 6, y: py(t) + 3, "text-anchor": "end" }, fmtNum(t)),
    );
  }
  for (const t of ticks(x0, x1, 8).filter(Number.isInteger)) {
    svg.append(s("text", { class: "axis", x: px(t), y: H - M.bottom + 14, "text-anchor": "middle" }, t));
  }
  svg.append(
    s("g", { class: "axis" },
      s("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }),
      s("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom })),
    s("text", { class: "axis", x: W - M.right, y: H - 2, "text-anchor": "end" }, "epoch"),
  );
  [...series.entries()].forEach(([name, points], i) => {
    const color = `c${i % 6}`;
    const path = points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { class: `series ${color}`, points: path, "data-series": name }));
    for (const [x, y] of points) {
      svg.append(s("circle", { class: `dot ${color}`, cx: px(x), cy: py(y), r: 2.5 },
        s("title", {}, `${name}, epoch ${x}: ${fmtNum(y)}`)));
    }
  });
  return svg;
}

function widen(lo, hi, pad) {
  return lo === hi ? [lo - pad, hi + pad] : [lo, hi];
}

/** About n round numbers between lo and hi. */
function ticks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw) ?? 10 * mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Number(t.toPrecision(12)));
  }
  return out;
}
