// Accept an invitation: the e-mail's link carries its token after `#` (never sent to a server in a URL);
// the invited person chooses a name and a password, and is signed in.
import { ApiError, markSignedIn, post, setApiKey, setCsrf } from "../api.js";
import { errorText, h, replace } from "../dom.js";

export default async function invite(main, ctx) {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const message = h("p", { role: "alert", class: "error" });
  const name = h("input", { name: "name", autocomplete: "name", required: true, maxlength: "120" });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true,
    minlength: "12" });

  async function accept(event) {
    event.preventDefault();
    message.textContent = "";
    try {
      const answer = await post("/v1/invitations/accept", { token, name: name.value, password: password.value });
      setApiKey(null);
      setCsrf(answer.csrf_token);
      markSignedIn(true);
      history.replaceState({}, "", "/overview");
      await ctx.refresh();
    } catch (err) {
      message.textContent = err instanceof ApiError && err.status === 401
        ? "This invitation is unknown, used or expired."
        : errorText(err);
    }
  }

  replace(main, h("section", { class: "signin" }, h("h1", {}, "Join the workspace"),
    token ? "" : h("p", { class: "error" }, "This link carries no invitation token."), message,
    h("form", { onsubmit: accept, "aria-label": "Accept the invitation" },
      h("label", {}, "Your name", name), h("label", {}, "Choose a password (12 characters or more)", password),
      h("button", { type: "submit" }, "Join"))));
}
