// Explore: any grouping and filter of GET /v1/usage over any UTC day range, as a chart and a table; the
// workspace's data exported as CSV or JSON (GET /v1/export, every event and rollup row: never the top only).
// The chart and the table show the same rows: the N costliest series (top=N) and the rest summed as "Other".
import { call, get, query } from "../api.js";
import { barsOf, dropCharts, otherLabel, stackedByDay } from "../charts.js";
import { errorText, h, int, isoDay, replace, saveBlob, status, table, usd } from "../dom.js";

const GROUPS = ["day", "provider", "model", "feature", "route", "task_type", "customer_plan", "customer_id", "service_tier"];
const FILTERS = GROUPS.slice(1);
const SERIES = 10; // the series a chart opens with: readable stacked or as bars
const MAX_SERIES = 1000; // GET /v1/usage's bound on top

export default async function explore(main, ctx) {
  dropCharts();
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 30 * 86400000);
  const from = h("input", { type: "date", name: "from", value: isoDay(monthAgo), required: true });
  const to = h("input", { type: "date", name: "to", value: isoDay(today), required: true });
  const groups = GROUPS.map((g) =>
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "group_by", value: g, checked: g === "model" }), " ", g),
  );
  const filterDim = h("select", { name: "filter_dimension" }, h("option", { value: "" }, "no filter"),
    FILTERS.map((f) => h("option", { value: f }, f)));
  const filterValue = h("input", { name: "filter_value", placeholder: "values, comma-separated" });
  const series = h("input", { type: "number", name: "top", min: "1", max: String(MAX_SERIES), step: "1",
    value: String(SERIES), required: true });
  const result = h("div", { "aria-live": "polite" });

  async function run(event) {
    if (event) event.preventDefault();
    const group_by = groups.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    const params = { from: from.value, to: to.value, group_by: group_by.join(",") };
    if (group_by.some((g) => g !== "day")) params.top = series.value;
    if (filterDim.value && filterValue.value.trim()) {
      params[filterDim.value] = filterValue.value.split(",").map((v) => v.trim()).filter(Boolean);
    }
    dropCharts();
    replace(result, h("p", { class: "muted" }, "Loading…"));
    try {
      const data = await get("/v1/usage" + query(params));
      replace(result, view(data, group_by, params));
    } catch (err) {
      replace(result, h("p", { class: "error", role: "alert" }, errorText(err)));
    }
  }

  async function exportAs(format) {
    try {
      const response = await call("GET", "/v1/export" + query({ format }), undefined, { raw: true });
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      saveBlob(await response.blob(), name ? name[1] : `spendstream-export.${format}`);
      status(`Export (${format.toUpperCase()}) downloaded.`);
    } catch (err) {
      status(`Export failed: ${errorText(err)}`);
    }
  }

  replace(
    main,
    h("h1", {}, "Explore"),
    h(
      "form",
      { onsubmit: run, "aria-label": "Usage query" },
      h("label", {}, "From (UTC)", from),
      h("label", {}, "To (UTC, inclusive)", to),
      h("fieldset", {}, h("legend", {}, "Group by"), groups),
      h("label", {}, "Filter on", filterDim),
      h("label", {}, "Filter values", filterValue),
      h("label", {}, "Series shown (the costliest; the rest as one “Other” row)", series),
      h("button", { type: "submit" }, "Show"),
    ),
    ctx.can("export.read")
      ? h("p", {}, "Export every stored event and rollup row: ",
          h("button", { type: "button", class: "secondary", onclick: () => exportAs("csv") }, "Export CSV"), " ",
          h("button", { type: "button", class: "secondary", onclick: () => exportAs("json") }, "Export JSON"))
      : "",
    result,
  );
  await run();
}

function view(data, group_by, params) {
  const dims = group_by.filter((g) => g !== "day");
  const n = Number(params.top || SERIES);
  const others = data.other_series || 0;
  let chart = h("p", { class: "muted" }, "Group by at least one dimension to draw a chart.");
  if (group_by.includes("day") && dims.length > 0) {
    chart = stackedByDay(`Cost by day, stacked by ${dims.join(" / ")}`, data.rows, dims, params.from, params.to, n,
      others);
  } else if (group_by.includes("day")) {
    chart = stackedByDay("Cost by day", data.rows.map((r) => ({ ...r, all: "all" })), "all", params.from, params.to);
  } else if (dims.length > 0) {
    chart = barsOf(`Cost by ${dims.join(" / ")}`, data.rows, dims, n, others);
  }
  // The kept series' rows, costliest first, then the rest's; the rest is labelled in its first series column.
  const rows = [
    ...data.rows.filter((r) => !r.other).sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd)),
    ...data.rows.filter((r) => r.other),
  ];
  const cell = (r, g) => {
    if (r.other && g === dims[0]) return otherLabel(others);
    if (r.other && g !== "day") return "";
    return r[g] === "" ? "(none)" : String(r[g]);
  };
  const columns = [
    ...group_by.map((g) => ({ label: g, value: (r) => cell(r, g) })),
    { label: "Requests", value: (r) => int(r.requests), num: true },
    { label: "Input tokens", value: (r) => int(r.input_tokens), num: true },
    { label: "Output tokens", value: (r) => int(r.output_tokens), num: true },
    { label: "Cost", value: (r) => usd(r.cost_usd), num: true },
  ];
  return h(
    "div",
    {},
    h("p", {}, `${data.start} to ${data.end}: `, h("strong", { "data-figure": "total-cost" }, usd(data.totals.cost_usd)),
      " over ", h("strong", { "data-figure": "total-requests" }, int(data.totals.requests)), " requests."),
    others > 0
      ? h("p", { class: "muted" }, `The ${n} costliest series of ${n + others}; the other ${others} are summed `
          + "as one row per group (the export holds every event and rollup row).")
      : "",
    chart,
    table(`${rows.length} rows`, columns, rows),
  );
}
