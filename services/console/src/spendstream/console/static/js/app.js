// The console's shell: who is signed in (GET /v1/me, or an API key's scope), the navigation that shows only
// the pages the role allows, and one page at a time rendered into <main>.
import { ApiError, apiKey, get, markSignedIn, post, setApiKey, setCsrf, signedIn } from "./api.js";
import { errorText, h, replace } from "./dom.js";
import account from "./pages/account.js";
import audit from "./pages/audit.js";
import budgets from "./pages/budgets.js";
import explore from "./pages/explore.js";
import findings from "./pages/findings.js";
import invite from "./pages/invite.js";
import members from "./pages/members.js";
import overview from "./pages/overview.js";
import privacy from "./pages/privacy.js";
import signin from "./pages/signin.js";

const PAGES = { overview, explore, budgets, findings, privacy, members, audit };
// The page being rendered: a click may start another before the last one's data has arrived; only the newest
// replaces <main>, and a page's background work (polling) asks `isCurrent` whether its view is still shown.
let current = null;
const ctx = {
  me: null,
  can: (action) => Boolean(ctx.me && ctx.me.actions.includes(action)),
  go,
  refresh: start,
  isCurrent: (view) => view === current,
};

async function keyIdentity() {
  // A key's scope is not named by any route; what it may read tells it (the table is access.py's).
  const table = await get("/console/access.json");
  let scope = "ingest";
  try {
    await get("/v1/admin/workspace");
    scope = "admin";
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      setApiKey(null);
      return null;
    }
    try {
      await get("/v1/findings");
      scope = "read";
    } catch {
      scope = "ingest";
    }
  }
  return { member_id: null, role: `${scope} key`, name: "API key", email: "", actions: table.scopes[scope] };
}

async function whoAmI() {
  if (apiKey()) return keyIdentity();
  if (!signedIn() && location.pathname !== "/") return null;
  try {
    const me = await get("/v1/me");
    setCsrf(me.csrf_token);
    markSignedIn(true);
    return me;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 404)) {
      markSignedIn(false);
      return null;
    }
    throw err;
  }
}

function allowedPages() {
  return [...document.querySelectorAll("#nav a[data-page]")].filter((a) =>
    a.dataset.action.split(" ").some((action) => ctx.can(action)),
  );
}

function renderWho() {
  const who = document.getElementById("who");
  if (!ctx.me) return replace(who);
  const label = ctx.me.name || ctx.me.email || ctx.me.member_id || "";
  replace(
    who,
    ctx.me.member_id ? h("a", { href: "/account", "data-page": "account" }, label) : h("span", {}, label),
    h("span", {}, ctx.me.role),
    h("button", { type: "button", class: "secondary", onclick: signOut }, "Sign out"),
  );
}

async function signOut() {
  if (apiKey()) setApiKey(null);
  else {
    try {
      await post("/v1/auth/signout");
    } catch {
      // Already signed out or expired: the cookie is gone either way once the server forgets it.
    }
  }
  ctx.me = null;
  setCsrf(null);
  markSignedIn(false);
  go("/signin");
}

function go(path) {
  if (location.pathname !== path) history.pushState({}, "", path);
  render();
}

async function render() {
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  renderWho();
  current = null;
  if (!ctx.me && location.pathname === "/invite") {
    nav.hidden = true;
    document.title = "Join · spendstream";
    return invite(main, ctx);
  }
  if (!ctx.me) {
    nav.hidden = true;
    if (location.pathname !== "/signin") history.replaceState({}, "", "/signin");
    document.title = "Sign in · spendstream";
    return signin(main, ctx);
  }
  const links = allowedPages();
  nav.hidden = false;
  if (location.pathname === "/account" && ctx.me.member_id) {
    for (const a of links) a.removeAttribute("aria-current");
    document.title = "Your account · spendstream";
    return show(main, account);
  }
  for (const a of nav.querySelectorAll("a[data-page]")) a.parentElement.hidden = !links.includes(a);
  let name = location.pathname.replace(/^\/+/, "") || "overview";
  if (!links.some((a) => a.dataset.page === name)) {
    if (links.length === 0) return replace(main, h("h1", {}, "Nothing to show"), h("p", {}, "Your role has no pages."));
    name = links[0].dataset.page;
    history.replaceState({}, "", "/" + name);
  }
  for (const a of links) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const link = links.find((a) => a.dataset.page === name);
  document.title = `${link.textContent} · spendstream`;
  return show(main, PAGES[name]);
}

async function show(main, page) {
  const view = h("div", { class: "page" });
  current = view;
  main.dataset.ready = "false";
  main.setAttribute("aria-busy", "true");
  try {
    await page(view, ctx);
  } catch (err) {
    view.append(h("p", { class: "error", role: "alert" }, "This page could not load: ", errorText(err)));
  }
  if (current !== view) return;
  replace(main, view);
  main.removeAttribute("aria-busy");
  main.dataset.ready = "true";
}

async function start() {
  try {
    ctx.me = await whoAmI();
  } catch (err) {
    replace(document.getElementById("main"), h("p", { class: "error" }, "spendstream is not reachable: ", errorText(err)));
    return;
  }
  if (ctx.me && location.pathname === "/signin") history.replaceState({}, "", "/overview");
  await render();
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-page], a.brand");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey) return;
  event.preventDefault();
  go(a.getAttribute("href"));
  document.getElementById("main").focus();
});
window.addEventListener("popstate", render);
// A session that ended elsewhere (expired, signed out, password changed on another device): back to sign-in.
window.addEventListener("spendstream:unauthorized", () => {
  if (!ctx.me) return;
  ctx.me = null;
  go("/signin");
});
start();
