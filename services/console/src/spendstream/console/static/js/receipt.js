// A workspace erasure's receipt by its receipt token alone (GET /v1/deletions/{id}/receipt, header
// X-Receipt-Token): for its requester once the erasure has deleted the workspace's keys and sessions. No key and
// no cookie go with it, and its 401 is no sign-out (api.js `call` would treat it as one), so it fetches by itself.
import { h, saveBlob } from "./dom.js";

export const RECEIPT_FORM = "Download a workspace erasure receipt";

export function receiptForm() {
  const message = h("p", { role: "status" });
  const requestId = h("input", {
    name: "request_id", required: true, pattern: "[A-Za-z0-9_\\-]{1,64}", autocomplete: "off",
  });
  const token = h("input", { type: "password", name: "receipt_token", required: true, autocomplete: "off" });

  async function download(event) {
    event.preventDefault();
    message.textContent = "";
    const id = requestId.value.trim();
    let response;
    try {
      response = await fetch(`/v1/deletions/${encodeURIComponent(id)}/receipt`, {
        headers: { Accept: "application/json", "X-Receipt-Token": token.value.trim() },
        credentials: "omit",
        redirect: "error",
      });
    } catch {
      message.textContent = "The service could not be reached.";
      return;
    }
    if (response.status === 401) {
      message.textContent = "This token is not the receipt token of that request.";
      return;
    }
    if (response.status === 429) {
      message.textContent = "Too many wrong tokens from here: try again later.";
      return;
    }
    if (!response.ok) {
      message.textContent = `The receipt could not be read (HTTP ${response.status}).`;
      return;
    }
    const answer = await response.json();
    saveBlob(new Blob([JSON.stringify(answer, null, 2)], { type: "application/json" }),
      `spendstream-erasure-receipt-${id}.json`);
    message.textContent = answer.receipt
      ? `Receipt saved: the request is ${answer.state}.`
      : `Saved, without a receipt yet: the request is ${answer.state}.`;
  }

  return h("form", { "aria-label": RECEIPT_FORM, onsubmit: download },
    h("label", {}, "Request id", requestId),
    h("label", {}, "Receipt token", token),
    h("button", { type: "submit", class: "secondary" }, "Download receipt"),
    message);
}
