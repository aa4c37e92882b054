// Budgets and alerts: create, edit and delete monthly USD budgets (thresholds, webhooks whose secret is shown
// once, e-mails) and read each budget's alerts with their delivery log.
import { del, get, patch, post } from "../api.js";
import { errorText, h, replace, status, table, usd } from "../dom.js";

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

export default async function budgets(main, ctx) {
  const writable = ctx.can("budgets.write");
  const listing = h("div");
  const detail = h("div", { "aria-live": "polite" });
  const secret = h("div", { "aria-live": "polite" });

  async function load() {
    const all = await get("/v1/budgets");
    replace(listing, table("Budgets", [
      { label: "Name", value: (b) => b.name },
      { label: "Amount / month", value: (b) => usd(b.amount_usd), num: true },
      { label: "Scope", value: (b) => (b.scope ? `${b.scope.tag} = ${b.scope.value}` : "whole workspace") },
      { label: "Thresholds (%)", value: (b) => b.thresholds.join(", ") },
      { label: "Channels", value: (b) => `${b.webhooks.length} webhook(s), ${b.emails.length} e-mail(s)` },
      { label: "Actions", value: (b) => actions(b) },
    ], all));
  }

  function actions(b) {
    const alertsButton = h("button", { type: "button", class: "secondary", onclick: () => showAlerts(b) }, "Alerts");
    alertsButton.setAttribute("aria-label", `Alerts of ${b.name}`);
    if (!writable) return alertsButton;
    const edit = h("button", { type: "button", class: "secondary", onclick: () => showEdit(b) }, "Edit");
    edit.setAttribute("aria-label", `Edit ${b.name}`);
    const remove = h("button", { type: "button", class: "danger" }, "Delete");
    remove.setAttribute("aria-label", `Delete ${b.name}`);
    remove.addEventListener("click", async () => {
      if (remove.dataset.armed !== "true") {
        remove.dataset.armed = "true";
        remove.textContent = "Confirm delete";
        return;
      }
      try {
        await del(`/v1/budgets/${encodeURIComponent(b.budget_id)}`);
        status(`Budget deleted.`);
        replace(detail);
        await load();
      } catch (err) {
        status(`Delete failed: ${errorText(err)}`);
      }
    });
    return h("span", {}, alertsButton, " ", edit, " ", remove);
  }

  async function showAlerts(b) {
    const answer = await get(`/v1/budgets/${encodeURIComponent(b.budget_id)}/alerts`);
    const rows = answer.alerts.flatMap((a) =>
      Object.entries(a.channels).map(([channel, d]) => ({ a, channel, d })),
    );
    replace(detail, h("h2", {}, "Alerts of ", b.name), table("Delivery log (last 30 days)", [
      { label: "Alert", value: (r) => String(r.a.kind || r.a.alert_id) },
      { label: "When", value: (r) => String(r.a.at || r.a.fired_at || "") },
      { label: "Channel", value: (r) => r.channel },
      { label: "State", value: (r) => String((r.d && (r.d.status || r.d.state)) || JSON.stringify(r.d)) },
      { label: "Attempts", value: (r) => String((r.d && r.d.attempts) ?? ""), num: true },
    ], rows));
  }

  function showEdit(b) {
    const name = h("input", { name: "name", value: b.name, required: true, maxlength: "120" });
    const amount = h("input", { name: "amount_usd", value: b.amount_usd, inputmode: "decimal", required: true });
    const thresholds = h("input", { name: "thresholds", value: b.thresholds.join(", ") });
    const emails = h("input", { name: "emails", value: b.emails.join(", ") });
    const message = h("p", { role: "alert", class: "error" });
    async function save(event) {
      event.preventDefault();
      try {
        await patch(`/v1/budgets/${encodeURIComponent(b.budget_id)}`, {
          name: name.value,
          amount_usd: amount.value,
          thresholds: list(thresholds.value).map(Number),
          emails: list(emails.value),
        });
        status("Budget saved.");
        replace(detail);
        await load();
      } catch (err) {
        message.textContent = errorText(err);
      }
    }
    replace(detail, h("h2", {}, "Edit ", b.name), message, h("form", { onsubmit: save, "aria-label": "Edit budget" },
      h("label", {}, "Name", name), h("label", {}, "Amount (USD per month)", amount),
      h("label", {}, "Thresholds (% of amount)", thresholds), h("label", {}, "E-mails", emails),
      h("button", { type: "submit" }, "Save")));
    name.focus();
  }

  function createForm() {
    const name = h("input", { name: "name", required: true, maxlength: "120" });
    const amount = h("input", { name: "amount_usd", inputmode: "decimal", required: true });
    const scopeTag = h("select", { name: "scope_tag" }, h("option", { value: "" }, "whole workspace"),
      h("option", { value: "feature" }, "feature"), h("option", { value: "customer_id" }, "customer_id"));
    const scopeValue = h("input", { name: "scope_value" });
    const thresholds = h("input", { name: "thresholds", value: "50, 80, 100" });
    const webhook = h("input", { name: "webhook", type: "url", placeholder: "https://…" });
    const emails = h("input", { name: "emails", placeholder: "a@example.com, b@example.com" });
    const message = h("p", { role: "alert", class: "error" });
    async function create(event) {
      event.preventDefault();
      message.textContent = "";
      const body = { name: name.value, amount_usd: amount.value, thresholds: list(thresholds.value).map(Number),
        emails: list(emails.value) };
      if (scopeTag.value) body.scope = { tag: scopeTag.value, value: scopeValue.value };
      if (webhook.value) body.webhooks = [{ url: webhook.value }];
      try {
        const made = await post("/v1/budgets", body);
        const shown = made.webhooks.filter((w) => w.secret);
        replace(secret, shown.length
          ? h("div", { class: "card" }, h("p", {}, "The webhook's signing secret, shown this once:"),
              shown.map((w) => h("p", { class: "secret", "data-secret": "webhook" }, w.secret)))
          : "");
        status("Budget created.");
        event.target.reset();
        await load();
      } catch (err) {
        message.textContent = errorText(err);
      }
    }
    return h("section", {}, h("h2", {}, "New budget"), message,
      h("form", { onsubmit: create, "aria-label": "New budget" },
        h("label", {}, "Name", name), h("label", {}, "Amount (USD per month)", amount),
        h("label", {}, "Scope", scopeTag), h("label", {}, "Scope value", scopeValue),
        h("label", {}, "Thresholds (% of amount)", thresholds),
        ctx.can("webhooks.write") ? h("label", {}, "Webhook URL", webhook) : "",
        h("label", {}, "E-mails", emails), h("button", { type: "submit" }, "Create budget")),
      secret);
  }

  replace(main, h("h1", {}, "Budgets and alerts"), listing, writable ? createForm() : "", detail);
  await load();
}
