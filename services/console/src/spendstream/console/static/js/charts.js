// Charts drawn by Chart.js (npm, shipped in /assets/vendor). Hundreds of series stay readable: the top N by
// cost are drawn, the rest summed as one "Other" series. GET /v1/usage?top=N does the summing server-side (rows
// with `other` true); rows without it are ranked and summed here. Each chart has a text alternative; the table
// beside it holds the exact figures.
import { h } from "./dom.js";

const PALETTE = ["#0b5cad", "#e66100", "#1a7f37", "#8250df", "#bf3989", "#0a7f8c", "#9a6700", "#57606a", "#cf222e",
  "#6639ba"];
const OTHER = Symbol("other");

// A series' name: its values of the given dimensions, "(none)" for an empty one.
export function seriesName(row, dimensions) {
  return [dimensions].flat().map((d) => (row[d] === "" ? "(none)" : String(row[d]))).join(" / ");
}

export function otherLabel(count) {
  return `Other (${count} series)`;
}

// The n costliest series of rows that are not a summed rest, and how many series the rest sums: the answer's
// `other_series` when the server summed it, else those left out here.
export function topSeries(rows, dimensions, n = 8, otherSeries = 0) {
  const totals = new Map();
  for (const r of rows) {
    if (r.other) continue;
    const name = seriesName(r, dimensions);
    totals.set(name, (totals.get(name) || 0) + Number(r.cost_usd));
  }
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const top = ranked.slice(0, n).map(([k]) => k);
  const rest = otherSeries + Math.max(0, ranked.length - n);
  return { top, rest };
}

const seriesOf = (r, top, dimensions) => {
  if (r.other) return OTHER;
  const name = seriesName(r, dimensions);
  return top.includes(name) ? name : OTHER;
};

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

// `dimensions`: one dimension or several (a series is then their values together); `otherSeries`: the answer's
// `other_series` when it was asked with top.
export function stackedByDay(label, rows, dimensions, from, to, n = 8, otherSeries = 0) {
  const { top, rest } = topSeries(rows, dimensions, n, otherSeries);
  const days = daysBetween(from, to);
  const index = new Map(days.map((d, i) => [d, i]));
  const names = rest > 0 || rows.some((r) => r.other) ? [...top, OTHER] : top;
  const data = new Map(names.map((name) => [name, new Array(days.length).fill(0)]));
  for (const r of rows) {
    const i = index.get(String(r.day));
    if (i !== undefined) data.get(seriesOf(r, top, dimensions))[i] += Number(r.cost_usd);
  }
  const datasets = names.map((name, i) => ({
    label: name === OTHER ? otherLabel(rest) : name,
    data: data.get(name),
    backgroundColor: name === OTHER ? "#afb8c1" : PALETTE[i % PALETTE.length],
    stack: "cost",
  }));
  return draw(label, { type: "bar", data: { labels: days, datasets }, stacked: true });
}

export function barsOf(label, rows, dimensions, n = 12, otherSeries = 0) {
  const { top, rest } = topSeries(rows, dimensions, n, otherSeries);
  const sums = new Map([...top, OTHER].map((name) => [name, 0]));
  for (const r of rows) {
    const series = seriesOf(r, top, dimensions);
    sums.set(series, sums.get(series) + Number(r.cost_usd));
  }
  const labels = [...top];
  const values = top.map((name) => sums.get(name));
  if (rest > 0 || rows.some((r) => r.other)) {
    labels.push(otherLabel(rest));
    values.push(sums.get(OTHER));
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
