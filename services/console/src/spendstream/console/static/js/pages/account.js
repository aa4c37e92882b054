// Your account: set or change your password (POST /v1/me/password). Every other session of yours ends; this
// one continues under a new CSRF token.
import { post, setCsrf } from "../api.js";
import { errorText, h, replace } from "../dom.js";

export default async function account(main, ctx) {
  const message = h("p", { role: "status" });
  const current = h("input", { type: "password", name: "current_password", autocomplete: "current-password",
    required: true });
  const fresh = h("input", { type: "password", name: "new_password", autocomplete: "new-password", required: true,
    minlength: "12" });

  async function change(event) {
    event.preventDefault();
    message.className = "";
    try {
      const answer = await post("/v1/me/password", { current_password: current.value, new_password: fresh.value });
      setCsrf(answer.csrf_token);
      event.target.reset();
      message.textContent = "Password changed. Your other sessions have ended.";
      message.className = "ok";
    } catch (err) {
      message.textContent = errorText(err);
      message.className = "error";
    }
  }

  replace(main, h("h1", {}, "Your account"),
    h("dl", {}, h("dt", {}, "Name"), h("dd", {}, ctx.me.name || ""), h("dt", {}, "E-mail"), h("dd", {}, ctx.me.email || ""),
      h("dt", {}, "Role"), h("dd", {}, ctx.me.role), h("dt", {}, "Two-factor authentication"),
      h("dd", {}, ctx.me.totp_enabled ? "on" : "off")),
    h("h2", {}, "Password"),
    h("p", { class: "muted" }, "Signed in with the one-time link and no password yet? Any text will do as the current one."),
    message,
    h("form", { onsubmit: change, "aria-label": "Change your password" },
      h("label", {}, "Current password", current),
      h("label", {}, "New password (12 characters or more)", fresh),
      h("button", { type: "submit" }, "Change password")));
}
