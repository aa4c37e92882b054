// Overview: this month's spend against each budget (with the forecast to month end), spend by day stacked by
// model or by feature, the top features, models and customers, unpriced models, and the watermark.
import { get, query } from "../api.js";
import { dropCharts, otherLabel, stackedByDay } from "../charts.js";
import { h, int, isoDay, replace, table, usd } from "../dom.js";

export function monthRange(now = new Date()) {
  const from = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const days = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).getUTCDate();
  return { from: isoDay(from), to: isoDay(now), elapsed: now.getUTCDate(), days };
}

// The tables list the ten costliest values and the chart stacks the ten costliest series (one colour each): the
// page asks for just those (top), the rest summed server-side into one row marked `other`, and for its four
// groupings in one call (GET /v1/usage/groupings: one scan instead of four queries queuing for the cores).
const TOP = 10;
const GROUPINGS = ["model", "feature", "customer_id", "day,model"];

// A ranking's rows, costliest first, then the row of the rest (if any).
const ranked = (rows) => [
  ...rows.filter((r) => !r.other).sort((a, b) => Number(b.cost_usd) - Number(a.cost_usd)),
  ...rows.filter((r) => r.other),
];

export default async function overview(main, ctx) {
  dropCharts();
  const month = monthRange();
  const range = { from: month.from, to: month.to };
  const usage = (group_by, extra = {}) => get("/v1/usage" + query({ ...range, group_by, ...extra }));
  const [page, budgets] = await Promise.all([
    get("/v1/usage/groupings" + query({ ...range, group_by: GROUPINGS, top: TOP })),
    ctx.can("budgets.read") ? get("/v1/budgets") : Promise.resolve([]),
  ]);
  // Each grouping as /v1/usage answers it: its rows and other_series, the page's totals, unpriced models, watermark.
  const [byModel, byFeature, byCustomer, byDayModel] = page.groupings.map((g) => ({ ...page, ...g }));
  const totals = byModel.totals;
  const forecast = (Number(totals.cost_usd) / month.elapsed) * month.days;

  const stackBy = h(
    "select",
    { id: "stack-by" },
    h("option", { value: "model" }, "model"),
    h("option", { value: "feature" }, "feature"),
  );
  const stacked = (dimension, answer) =>
    stackedByDay(`Spend by day, stacked by ${dimension}`, answer.rows, dimension, month.from, month.to, TOP,
      answer.other_series);
  const chartBox = h("div", {}, stacked("model", byDayModel));
  stackBy.addEventListener("change", async () => {
    const dimension = stackBy.value;
    const answer = dimension === "model" ? byDayModel : await usage(`day,${dimension}`, { top: TOP });
    dropCharts();
    replace(chartBox, stacked(dimension, answer));
  });

  const budgetRows = await Promise.all(
    budgets.map(async (b) => {
      let spent;
      if (b.state) spent = Number(b.state.committed_usd);
      else if (b.scope) spent = Number((await usage("", { [b.scope.tag]: b.scope.value })).totals.cost_usd);
      else spent = Number(totals.cost_usd);
      return { ...b, spent, forecast: (spent / month.elapsed) * month.days };
    }),
  );

  replace(
    main,
    h("h1", {}, "Overview"),
    h("p", { class: "muted" }, `This month, ${month.from} to ${month.to} (UTC). Figures as fresh as `,
      h("span", { "data-figure": "watermark" }, byModel.watermark ? new Date(byModel.watermark).toISOString() : "no data yet"),
      "."),
    h(
      "div",
      { class: "grid" },
      h("div", { class: "card" }, h("div", { class: "muted" }, "Spend this month"),
        h("div", { class: "figure", "data-figure": "total-cost" }, usd(totals.cost_usd))),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Requests"),
        h("div", { class: "figure", "data-figure": "total-requests" }, int(totals.requests))),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Forecast to month end"),
        h("div", { class: "figure", "data-figure": "forecast" }, usd(forecast))),
    ),
    ctx.can("budgets.read")
      ? [
          h("h2", {}, "Budgets this month"),
          budgetRows.length === 0
            ? h("p", { class: "muted" }, "No budget yet.")
            : budgetRows.map((b) => {
                const share = Math.min(100, (b.spent / Number(b.amount_usd)) * 100);
                const over = b.forecast > Number(b.amount_usd);
                return h(
                  "div",
                  { class: "card", "data-budget": b.budget_id },
                  h("strong", {}, b.name),
                  h("div", {}, `${usd(b.spent)} of ${usd(b.amount_usd)}; forecast ${usd(b.forecast)} by month end`,
                    over ? h("span", { class: "error" }, " (over budget)") : ""),
                  h("div", { class: over ? "meter over" : "meter", role: "meter", "aria-label": `${b.name}: spent`,
                    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": share.toFixed(0) },
                    h("span", { style: null, "data-width": share.toFixed(1) })),
                );
              }),
        ]
      : "",
    h("h2", {}, "Spend by day"),
    h("label", { class: "inline" }, "Stack by ", stackBy),
    chartBox,
    h("div", { class: "grid" },
      h("div", {}, table("Top features", cols("feature", byFeature), ranked(byFeature.rows))),
      h("div", {}, table("Top models", cols("model", byModel), ranked(byModel.rows))),
      h("div", {}, table("Top customers", cols("customer_id", byCustomer), ranked(byCustomer.rows)))),
    h("h2", {}, "Models without a price"),
    table("Models the price table could not price", [
      { label: "Provider", value: (r) => r.provider },
      { label: "Model", value: (r) => r.model },
      { label: "Requests", value: (r) => int(r.requests), num: true },
    ], byModel.unknown_models),
  );
  // Widths set through the CSSOM: the style-src policy forbids style attributes in markup.
  for (const bar of main.querySelectorAll("[data-width]")) bar.style.width = bar.dataset.width + "%";
}

function cols(dimension, answer) {
  return [
    { label: dimension === "customer_id" ? "Customer" : dimension[0].toUpperCase() + dimension.slice(1),
      value: (r) => (r.other ? otherLabel(answer.other_series) : r[dimension] === "" ? "(none)" : r[dimension]) },
    { label: "Requests", value: (r) => int(r.requests), num: true },
    { label: "Cost", value: (r) => usd(r.cost_usd), num: true },
  ];
}
