// Sign in: e-mail and password (and a TOTP or backup code when the account has a second factor), single sign-on
// when the installation has an OpenID provider, or an API key. A workspace erasure's receipt downloads here too,
// by its receipt token: its requester has no session left once the workspace is gone.
import { ApiError, get, markSignedIn, post, setApiKey, setCsrf } from "../api.js";
import { errorText, h, replace } from "../dom.js";
import { RECEIPT_FORM, receiptForm } from "../receipt.js";

export default async function signin(main, ctx) {
  const message = h("p", { role: "alert", class: "error" });
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const totp = h("input", { name: "totp", inputmode: "numeric", pattern: "[0-9]{6}", autocomplete: "one-time-code" });
  const totpLabel = h("label", { hidden: true }, "Authentication code (6 digits)", totp);
  const key = h("input", { type: "password", name: "key", autocomplete: "off" });

  async function withPassword(event) {
    event.preventDefault();
    message.textContent = "";
    const body = { email: email.value, password: password.value };
    if (totp.value) body.totp_code = totp.value;
    try {
      const answer = await post("/v1/auth/signin", body);
      setApiKey(null);
      setCsrf(answer.csrf_token);
      markSignedIn(true);
      await ctx.refresh();
    } catch (err) {
      if (err instanceof ApiError && err.body && err.body.error === "totp_required") {
        totpLabel.hidden = false;
        totp.focus();
        message.textContent = "Enter the code from your authenticator app.";
      } else if (err instanceof ApiError && err.status === 401) {
        message.textContent = "The e-mail or the password is wrong.";
      } else if (err instanceof ApiError && err.status === 429) {
        message.textContent = "Too many attempts: try again later.";
      } else message.textContent = errorText(err);
    }
  }

  async function withKey(event) {
    event.preventDefault();
    message.textContent = "";
    setApiKey(key.value.trim());
    await ctx.refresh();
    if (!ctx.me) message.textContent = "This key is not valid.";
  }

  // Single sign-on is offered only where people has a provider; GET /v1/auth/oidc/start would answer 404
  // otherwise. The start is a navigation, not a fetch: people sends the browser on to the provider, whose answer
  // comes back to people's callback, which sets the session cookie and lands on `/`.
  let sso = "";
  try {
    if ((await get("/v1/auth/methods")).sso) {
      sso = h("p", { class: "sso" }, h("a", { href: "/v1/auth/oidc/start", class: "button", "data-sso": "" },
        "Sign in with SSO"));
    }
  } catch {
    sso = ""; // people unreachable: the password form still shows, and says so when used
  }

  replace(
    main,
    h(
      "section",
      { class: "signin" },
      h("h1", {}, "Sign in to spendstream"),
      message,
      h(
        "form",
        { onsubmit: withPassword, "aria-label": "Sign in with e-mail and password" },
        h("label", {}, "E-mail", email),
        h("label", {}, "Password", password),
        totpLabel,
        h("button", { type: "submit" }, "Sign in"),
      ),
      sso,
      h(
        "details",
        {},
        h("summary", {}, "Use an API key instead"),
        h(
          "form",
          { onsubmit: withKey, "aria-label": "Sign in with an API key" },
          h("label", {}, "API key (kept in this tab only)", key),
          h("button", { type: "submit", class: "secondary" }, "Use key"),
        ),
      ),
      h("details", {}, h("summary", {}, RECEIPT_FORM), receiptForm()),
    ),
  );
}
