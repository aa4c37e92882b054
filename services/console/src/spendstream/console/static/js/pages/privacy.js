// Data and privacy: request a customer's (or the whole workspace's) erasure; every erasure request of the
// workspace however it was made (here, the CLI, a compliance tool, a cancellation), followed to its receipt; the
// installation's retention policy and the workspace's erasure schedule. A workspace erasure's receipt token is
// shown once, as text, and a form reads a receipt by its token alone (as the sign-in page's does).
import { get, post, query } from "../api.js";
import { errorText, h, replace, saveBlob, status, table } from "../dom.js";
import { RECEIPT_FORM, receiptForm } from "../receipt.js";

const DONE = new Set(["verified", "failed"]);
const PAGE = 25; // rows per "show older" step
const MAX = 200; // the list route's largest page

export default async function privacy(main, ctx) {
  const requests = h("div", { "aria-live": "polite" });
  let rows = []; // newest first, as GET /v1/deletions answers
  let next = null; // the cursor of the rows older than those shown
  let timer = null;

  function render() {
    replace(requests, table("Erasure requests of this workspace", [
      { label: "Request", value: (r) => r.request_id },
      { label: "Subject", value: subject },
      { label: "State", value: (r) => h("span", { "data-state": r.state }, r.state) },
      { label: "Requested", value: (r) => r.requested_at },
      { label: "Completed", value: (r) => r.completed_at || "" },
      { label: "Receipt", value: (r) => (r.has_receipt
          ? h("button", { type: "button", class: "secondary", onclick: () => download(r) }, "Download receipt")
          : "not yet") },
    ], rows), next
      ? h("button", { type: "button", class: "secondary", onclick: () => older().catch(failed) }, "Show older requests")
      : "");
  }

  // A receipt names a customer by a keyed hash only; its first characters tell requests apart, the whole is in
  // the title and the receipt.
  function subject(r) {
    if (r.subject !== "customer") return "workspace";
    const hash = r.customer_hash || "";
    const digest = hash.slice(hash.indexOf(":") + 1);
    return h("span", { title: hash }, `customer ${digest.slice(0, 12)}…`);
  }

  function failed(err) {
    status(`Could not read the requests: ${errorText(err)}`);
  }

  async function download(r) {
    try {
      // The list leaves the receipt's body out; the request's own route carries it.
      const full = await get(`/v1/deletions/${encodeURIComponent(r.request_id)}`);
      const blob = new Blob([JSON.stringify(full.receipt, null, 2)], { type: "application/json" });
      saveBlob(blob, `spendstream-erasure-receipt-${r.request_id}.json`);
    } catch (err) {
      status(`Could not fetch the receipt: ${errorText(err)}`);
    }
  }

  async function older() {
    const answer = await get(`/v1/deletions${query({ limit: PAGE, cursor: next })}`);
    const shown = new Set(rows.map((r) => r.request_id));
    rows = [...rows, ...answer.deletions.filter((r) => !shown.has(r.request_id))];
    next = answer.next_cursor;
    render();
  }

  // Re-reads every row shown in one page, so that requests arriving meanwhile push none out of the list.
  async function follow() {
    clearTimeout(timer);
    const answer = await get(`/v1/deletions${query({ limit: Math.min(MAX, Math.max(PAGE, rows.length)) })}`);
    rows = answer.deletions;
    next = answer.next_cursor;
    render();
    if (!ctx.isCurrent(main)) return; // left the page
    if (rows.some((r) => !DONE.has(r.state))) timer = setTimeout(() => follow().catch(() => {}), 2000);
  }

  async function request(body) {
    let made;
    try {
      made = await post("/v1/deletions", body);
    } catch (err) {
      status(`Erasure refused: ${errorText(err)}`);
      return;
    }
    if (made && made.receipt_token) {
      // The erasure deletes every key and session of the workspace, this one too: the page stops refreshing
      // (the next call would sign out and take the token off the screen) and the token stays shown.
      clearTimeout(timer);
      showToken(made);
      status("Workspace erasure requested. Keep the receipt token shown on this page.");
      return;
    }
    status("Erasure requested.");
    await follow().catch(failed);
  }

  const tokenCard = h("div", { "aria-live": "polite" });
  function showToken(made) {
    const saveToken = () => saveBlob(
      new Blob([`request_id: ${made.request_id}\nreceipt_token: ${made.receipt_token}\n`], { type: "text/plain" }),
      `spendstream-receipt-token-${made.request_id}.txt`);
    replace(tokenCard, h("div", { class: "card" },
      h("p", {}, "Receipt token of the workspace erasure ", h("strong", {}, made.request_id), ", shown this once:"),
      h("p", { class: "secret", "data-secret": "receipt-token" }, made.receipt_token),
      h("p", {}, "Keep it with the request id. The erasure deletes this workspace's keys and sessions, yours too; "
        + `afterwards this token is the only way to download the receipt (the sign-in page's “${RECEIPT_FORM}”). `
        + "spendstream keeps only its hash and cannot show it again."),
      h("button", { type: "button", class: "secondary", onclick: saveToken }, "Save the token to a file")));
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

  const readable = ctx.can("deletions.read");
  const [ws, policy] = await Promise.all([
    ctx.can("workspace.read") ? get("/v1/admin/workspace") : null,
    readable ? get("/v1/retention") : null,
  ]);

  const workspace = ws
    ? h("dl", {},
      h("dt", {}, "Workspace"), h("dd", {}, ws.name, " (", ws.workspace_id, ")"),
      h("dt", {}, "Status"), h("dd", {}, ws.status))
    : h("p", { class: "muted" }, "The workspace's record is not readable with this role.");

  let retention = h("p", { class: "muted" }, "The retention policy is not readable with this role.");
  if (policy) {
    const due = policy.scheduled_erasure;
    retention = h("dl", {},
      h("dt", {}, "Usage data kept"),
      h("dd", { "data-figure": "retention-months" }, `${policy.usage_retention_months} months`),
      h("dt", {}, "Grace after cancellation"),
      h("dd", { "data-figure": "grace-days" }, `${policy.cancellation_grace_days} days`),
      h("dt", {}, "An erasure deletes from"),
      h("dd", { "data-figure": "erasure-owners" }, policy.erasure_owners.join(", ")),
      h("dt", {}, "Scheduled erasure"),
      h("dd", { "data-figure": "scheduled-erasure" }, due
        ? `${due.cause} ${due.since}; the workspace's data is erased on ${due.erasure_due_at}` +
          (due.cause === "cancelled" ? " unless reactivated" : "")
        : "none: the workspace is not cancelled"),
      h("dt", {}, "Erasures"), h("dd", {}, "verified store by store and receipted; receipts below"));
  }

  replace(main, h("h1", {}, "Data and privacy"), workspace,
    h("h2", {}, "Retention"), retention,
    ctx.can("erasures.customer") ? [h("h2", {}, "Erase a customer's data"), customerForm] : "",
    ctx.can("erasures.workspace") ? [h("h2", {}, "Erase the workspace"), wsForm, tokenCard] : "",
    h("h2", {}, "Requests"), requests,
    h("h2", {}, RECEIPT_FORM), receiptForm());
  if (readable) await follow();
  else replace(requests, h("p", { class: "muted" }, "Erasure requests are not readable with this role."));
}
