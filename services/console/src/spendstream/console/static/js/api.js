// The services' public HTTP API, called from the console's own origin with the member's session cookie.
// Every request that changes state carries the session's CSRF token (X-CSRF-Token).

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (body.message || body.error || (body.detail && (body.detail.message || body.detail.error)));
    super(detail ? `${status}: ${detail}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// A session is the people service's cookie (HttpOnly; the console never sees it) plus its CSRF token. An API
// key may stand in for it (the sign-in page's second form): kept in this tab's sessionStorage only, sent as a
// bearer token, which a browser never attaches by itself, so it needs no CSRF token.
const KEY_ITEM = "spendstream.key";
const session = { csrf: null };

export function setCsrf(token) {
  session.csrf = token;
}

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export async function call(method, path, body, { raw = false } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (method !== "GET" && method !== "HEAD") {
    if (session.csrf) headers["X-CSRF-Token"] = session.csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    redirect: "error",
  });
  if (response.status === 401 && !path.startsWith("/v1/auth/") && !path.startsWith("/v1/invitations/accept")) {
    markSignedIn(false);
    window.dispatchEvent(new Event("spendstream:unauthorized"));
  }
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    throw new ApiError(response.status, parsed);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body ?? {});
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== undefined && v !== null && v !== "") q.append(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

// Whether this browser signed in (the cookie itself is HttpOnly): without it, a page other than `/` (where a
// sign-in link and single sign-on land) goes straight to the sign-in form instead of asking the server.
const SIGNED_IN = "spendstream.signed-in";

export function signedIn() {
  return localStorage.getItem(SIGNED_IN) === "1";
}

export function markSignedIn(yes) {
  if (yes) localStorage.setItem(SIGNED_IN, "1");
  else localStorage.removeItem(SIGNED_IN);
}

