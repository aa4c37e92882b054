// Explore: any grouping and filter of GET /v1/usage over any UTC day range, as a chart and a table; the
// workspace's data exported as CSV or JSON (GET /v1/export).
import { call, get, query } from "../api.js";
import { barsOf, dropCharts, stackedByDay } from "../charts.js";
import { errorText, h, int, isoDay, replace, saveBlob, status, table, usd } from "../dom.js";

const GROUPS = ["day", "provider", "model", "feature", "route", "task_type", "customer_plan", "customer_id", "service_tier"];
const FILTERS = GROUPS.slice(1);

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
  const result = h("div", { "aria-live": "polite" });

  async function run(event) {
    if (event) event.preventDefault();
    const group_by = groups.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    const params = { from: from.value, to: to.value, group_by: group_by.join(",") };
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
  let chart = h("p", { class: "muted" }, "Group by at least one dimension to draw a chart.");
  if (group_by.includes("day") && dims.length > 0) {
    chart = stackedByDay(`Cost by day, stacked by ${dims[0]}`, data.rows, dims[0], params.from, params.to);
  } else if (group_by.includes("day")) {
    chart = stackedByDay("Cost by day", data.rows.map((r) => ({ ...r, all: "all" })), "all", params.from, params.to);
  } else if (dims.length > 0) {
    chart = barsOf(`Cost by ${dims[0]}`, data.rows, dims[0]);
  }
  const rows = [...data.rows].sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd));
  const columns = [
    ...group_by.map((g) => ({ label: g, value: (r) => (r[g] === "" ? "(none)" : String(r[g])) })),
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
    chart,
    table(`${rows.length} rows`, columns, rows),
  );
}
