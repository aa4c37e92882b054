// Audit log: filter and page the workspace's audit records, export them, and the hash chain's verification.
import { call, get, query } from "../api.js";
import { errorText, h, replace, saveBlob, status, table } from "../dom.js";

export default async function audit(main) {
  const from = h("input", { type: "date", name: "from" });
  const to = h("input", { type: "date", name: "to" });
  const action = h("input", { name: "action", placeholder: "e.g. budgets.write" });
  const actor = h("input", { name: "actor_id" });
  const outcome = h("select", { name: "outcome" }, ["", "allowed", "success", "failure", "denied"].map((o) =>
    h("option", { value: o }, o || "any")));
  const records = h("div", { "aria-live": "polite" });
  const verify = h("p", { "aria-live": "polite" }, "Verifying the chain…");
  const pages = [];

  const filters = () => ({ from: from.value, to: to.value, action: action.value, actor_id: actor.value,
    outcome: outcome.value });

  async function load(cursor) {
    try {
      const answer = await get("/v1/audit" + query({ ...filters(), cursor, limit: 50 }));
      const next = answer.next_cursor;
      replace(records, table("Audit records", [
        { label: "When", value: (r) => String(r.at || r.occurred_at || r.time || "") },
        { label: "Actor", value: (r) => String(r.actor_id || r.actor || "") },
        { label: "Action", value: (r) => String(r.action) },
        { label: "Target", value: (r) => String(r.target || r.target_id || "") },
        { label: "Outcome", value: (r) => String(r.outcome || "") },
      ], answer.records),
      pages.length ? h("button", { type: "button", class: "secondary", onclick: () => load(pages.pop()) }, "Previous page") : "",
      " ",
      next ? h("button", { type: "button", class: "secondary", onclick: () => {
        pages.push(cursor);
        load(next);
      } }, "Next page") : "");
    } catch (err) {
      replace(records, h("p", { class: "error", role: "alert" }, errorText(err)));
    }
  }

  async function exportAs(format) {
    try {
      const response = await call("GET", "/v1/audit/export" + query({ ...filters(), format }), undefined, { raw: true });
      saveBlob(await response.blob(), `spendstream-audit.${format}`);
      status("Audit export downloaded.");
    } catch (err) {
      status(`Export failed: ${errorText(err)}`);
    }
  }

  replace(main, h("h1", {}, "Audit log"), verify,
    h("form", { "aria-label": "Filter the audit log", onsubmit: (e) => {
      e.preventDefault();
      pages.length = 0;
      load();
    } }, h("label", {}, "From", from), h("label", {}, "To", to), h("label", {}, "Action", action),
      h("label", {}, "Actor id", actor), h("label", {}, "Outcome", outcome), h("button", { type: "submit" }, "Filter")),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => exportAs("csv") }, "Export CSV"), " ",
      h("button", { type: "button", class: "secondary", onclick: () => exportAs("json") }, "Export JSON")),
    records);
  await Promise.all([
    load(),
    get("/v1/audit/verify").then(
      (v) => replace(verify, v.ok
        ? h("span", { class: "ok" }, `Chain verified: ${v.records} records, none altered.`)
        : h("span", { class: "error" }, `Chain broken at record ${v.first_bad && v.first_bad.seq}: ${v.first_bad && v.first_bad.reason}`)),
      (err) => replace(verify, h("span", { class: "error" }, "The chain could not be verified: ", errorText(err))),
    ),
  ]);
}
