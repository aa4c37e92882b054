// Charts drawn by Chart.js (npm, shipped in /assets/vendor). Hundreds of series stay readable: the top N by
// cost are drawn, the rest summed as "other". Each chart has a text alternative; the table beside it holds
// the exact figures.
import { h } from "./dom.js";

const PALETTE = ["#0b5cad", "#e66100", "#1a7f37", "#8250df", "#bf3989", "#0a7f8c", "#9a6700", "#57606a", "#cf222e",
  "#6639ba"];
export const OTHER = "other";

export function topSeries(rows, dimension, n = 8) {
  const totals = new Map();
  for (const r of rows) totals.set(r[dimension], (totals.get(r[dimension]) || 0) + Number(r.cost_usd));
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]);
  const top = ranked.slice(0, n).map(([k]) => k);
  return { top, hasOther: ranked.length > n };
}

function daysBetween(from, to) {
  const out = [];
  for (let d = new Date(from + "T00:00:00Z"); d <= new Date(to + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) {
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

let charts = [];

export function dropCharts() {
  for (const c of charts) c.destroy();
  charts = [];
}

export function stackedByDay(label, rows, dimension, from, to, n = 8) {
  const { top, hasOther } = topSeries(rows, dimension, n);
  const days = daysBetween(from, to);
  const index = new Map(days.map((d, i) => [d, i]));
  const names = hasOther ? [...top, OTHER] : top;
  const data = new Map(names.map((name) => [name, new Array(days.length).fill(0)]));
  for (const r of rows) {
    const series = top.includes(r[dimension]) ? r[dimension] : OTHER;
    const i = index.get(String(r.day));
    if (i !== undefined) data.get(series)[i] += Number(r.cost_usd);
  }
  const datasets = names.map((name, i) => ({
    label: name === "" ? "(none)" : String(name),
    data: data.get(name),
    backgroundColor: name === OTHER ? "#afb8c1" : PALETTE[i % PALETTE.length],
    stack: "cost",
  }));
  return draw(label, { type: "bar", data: { labels: days, datasets }, stacked: true });
}

export function barsOf(label, rows, dimension, n = 12) {
  const { top, hasOther } = topSeries(rows, dimension, n);
  const values = top.map((k) => rows.filter((r) => r[dimension] === k).reduce((s, r) => s + Number(r.cost_usd), 0));
  const labels = top.map((k) => (k === "" ? "(none)" : String(k)));
  if (hasOther) {
    labels.push(OTHER);
    values.push(rows.filter((r) => !top.includes(r[dimension])).reduce((s, r) => s + Number(r.cost_usd), 0));
  }
  const datasets = [{ label: "cost (USD)", data: values, backgroundColor: PALETTE[0] }];
  return draw(label, { type: "bar", data: { labels, datasets }, stacked: false });
}

function draw(label, { type, data, stacked }) {
  const canvas = h("canvas", { role: "img", "aria-label": label });
  const box = h("div", { class: "chart" }, canvas);
  if (!window.Chart) return h("p", { class: "muted" }, "The chart library did not load.");
  charts.push(
    new window.Chart(canvas, {
      type,
      data,
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: data.datasets.length > 1, position: "bottom" } },
        scales: { x: { stacked }, y: { stacked, beginAtZero: true, title: { display: true, text: "USD" } } },
      },
    }),
  );
  return box;
}
