// Data and privacy: request a customer's (or the whole workspace's) erasure, follow its state, download its
// receipt; the workspace's status and cancellation schedule.
import { ApiError, get, post } from "../api.js";
import { errorText, h, replace, saveBlob, status, table } from "../dom.js";

const KNOWN = "spendstream.deletions"; // the ids of requests made from this browser, to follow them later
const DONE = new Set(["verified", "failed"]);

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(KNOWN) || "[]");
  } catch {
    return [];
  }
}

function remember(id) {
  localStorage.setItem(KNOWN, JSON.stringify([id, ...remembered().filter((x) => x !== id)].slice(0, 20)));
}

export default async function privacy(main, ctx) {
  const requests = h("div", { "aria-live": "polite" });
  const views = new Map();
  let timer = null;

  function render() {
    replace(requests, table("Erasure requests made here", [
      { label: "Request", value: (r) => r.request_id },
      { label: "Subject", value: (r) => (r.subject === "customer" ? `customer ${r.customer_hash || ""}` : "workspace") },
      { label: "State", value: (r) => h("span", { "data-state": r.state }, r.state) },
      { label: "Requested", value: (r) => r.requested_at },
      { label: "Receipt", value: (r) => (r.receipt
          ? h("button", { type: "button", class: "secondary", onclick: () => download(r) }, "Download receipt")
          : "not yet") },
    ], [...views.values()]));
  }

  function download(r) {
    const blob = new Blob([JSON.stringify(r.receipt, null, 2)], { type: "application/json" });
    saveBlob(blob, `spendstream-erasure-receipt-${r.request_id}.json`);
  }

  async function follow() {
    clearTimeout(timer);
    for (const id of remembered()) {
      if (views.has(id) && DONE.has(views.get(id).state)) continue;
      try {
        views.set(id, await get(`/v1/deletions/${encodeURIComponent(id)}`));
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      }
    }
    render();
    if (!ctx.isCurrent(main)) return; // left the page
    if ([...views.values()].some((v) => !DONE.has(v.state))) timer = setTimeout(() => follow().catch(() => {}), 2000);
  }

  async function request(body) {
    try {
      const made = await post("/v1/deletions", body);
      remember(made.request_id);
      views.set(made.request_id, made);
      status("Erasure requested.");
      await follow();
    } catch (err) {
      status(`Erasure refused: ${errorText(err)}`);
    }
  }

  const customer = h("input", { name: "customer_id", required: true, maxlength: "120", autocomplete: "off" });
  const customerForm = h("form", { "aria-label": "Erase a customer", onsubmit: (e) => {
    e.preventDefault();
    request({ customer_id: customer.value });
    e.target.reset();
  } }, h("label", {}, "Customer id", customer), h("button", { type: "submit", class: "danger" }, "Erase this customer"));

  const confirmWs = h("input", { name: "confirm", autocomplete: "off" });
  const wsForm = h("form", { "aria-label": "Erase the workspace", onsubmit: (e) => {
    e.preventDefault();
    if (confirmWs.value !== "erase the workspace") return status("Type “erase the workspace” to confirm.");
    request({});
  } }, h("label", {}, "Type “erase the workspace” to confirm", confirmWs),
    h("button", { type: "submit", class: "danger" }, "Erase the whole workspace"));

  let workspace = h("p", { class: "muted" }, "The workspace's record is not readable with this role.");
  if (ctx.can("workspace.read")) {
    const ws = await get("/v1/admin/workspace");
    const deleteOn = ws.cancelled_at ? new Date(new Date(ws.cancelled_at).getTime() + 30 * 86400000) : null;
    workspace = h("dl", {},
      h("dt", {}, "Workspace"), h("dd", {}, ws.name, " (", ws.workspace_id, ")"),
      h("dt", {}, "Status"), h("dd", {}, ws.status),
      h("dt", {}, "Cancellation"), h("dd", {}, deleteOn
        ? `cancelled ${ws.cancelled_at}; its data is deleted on ${deleteOn.toISOString().slice(0, 10)} unless reactivated`
        : "not cancelled"),
      h("dt", {}, "Retention"), h("dd", {}, "Raw events and rollups are kept until erased; erasures are verified and receipted."));
  }

  replace(main, h("h1", {}, "Data and privacy"), workspace,
    ctx.can("erasures.customer") ? [h("h2", {}, "Erase a customer's data"), customerForm] : "",
    ctx.can("erasures.workspace") ? [h("h2", {}, "Erase the workspace"), wsForm] : "",
    h("h2", {}, "Requests"), requests);
  await follow();
}
