// Charts as SVG built in the DOM: bars for the ledger's totals, a line for live rates.

import { h, svg } from "./dom";

export interface Bar {
  label: string;
  short?: string; // what the axis shows, when the label is long
  values: number[]; // stacked, in the order of the series
}

const COLORS = ["series-a", "series-b", "series-c"];

/** Stacked bars, one per label; each rect carries its value for screen readers and tests. */
export function bars(title: string, series: string[], data: Bar[]): HTMLElement {
  const width = Math.max(320, data.length * 48 + 60);
  const height = 200;
  const top = Math.max(1, ...data.map((d) => d.values.reduce((a, b) => a + b, 0)));
  const plot = height - 40;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart" });
  chart.appendChild(svg("line", { x1: 40, y1: plot, x2: width, y2: plot, class: "axis" }));
  const topLabel = svg("text", { x: 36, y: 12, "text-anchor": "end", class: "tick" });
  topLabel.textContent = compact(top);
  chart.appendChild(topLabel);
  data.forEach((bar, i) => {
    const x = 48 + i * 48;
    let y = plot;
    bar.values.forEach((value, s) => {
      const tall = (value / top) * (plot - 16);
      y -= tall;
      const rect = svg("rect", { x, y, width: 32, height: Math.max(0, tall), class: `bar ${COLORS[s % COLORS.length]}`, "data-label": bar.label, "data-series": series[s], "data-value": value });
      const tip = svg("title");
      tip.textContent = `${bar.label} ${series[s]}: ${value}`;
      rect.appendChild(tip);
      chart.appendChild(rect);
    });
    const label = svg("text", { x: x + 16, y: height - 22, "text-anchor": "middle", class: "tick" });
    const shown = bar.short ?? bar.label;
    label.textContent = shown.length > 8 ? `${shown.slice(0, 7)}…` : shown;
    chart.appendChild(label);
  });
  const legend = h("ul", { class: "legend" }, ...series.map((name, s) => h("li", { class: COLORS[s % COLORS.length] }, name)));
  return h("figure", { class: "figure" }, h("figcaption", {}, title), chart, legend);
}

/** A line over the last points (null: no value then). */
export function line(title: string, points: (number | null)[], unit: string): HTMLElement {
  const width = 320;
  const height = 90;
  const known = points.filter((p): p is number => p !== null);
  const top = Math.max(1e-9, ...known);
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const path = points
    .map((p, i) => (p === null ? null : `${i * step},${height - 8 - (p / top) * (height - 16)}`))
    .filter((p) => p !== null)
    .map((p, i) => `${i === 0 ? "M" : "L"}${p}`)
    .join(" ");
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart spark" });
  if (path) chart.appendChild(svg("path", { d: path, class: "spark-line" }));
  const last = known.length ? known[known.length - 1] : null;
  return h(
    "figure",
    { class: "figure metric" },
    h("figcaption", {}, title, " ", h("strong", { class: "metric-value" }, last === null ? "–" : `${compact(last)} ${unit}`)),
    chart,
  );
}

export function compact(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  if (Number.isInteger(value)) return String(value);
  return value >= 10 ? value.toFixed(1) : value.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
}
