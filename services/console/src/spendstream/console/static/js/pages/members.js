// Members and keys: invite, change roles, remove (people service); issue keys (shown once) and revoke them.
import { del, get, patch, post } from "../api.js";
import { errorText, h, replace, status, table } from "../dom.js";

const ROLES = ["viewer", "member", "admin", "owner"];

function section(title, body) {
  return h("section", {}, h("h2", {}, title), body);
}

async function guarded(box, load) {
  try {
    await load();
  } catch (err) {
    replace(box, h("p", { class: "error", role: "alert" }, errorText(err)));
  }
}

export default async function members(main, ctx) {
  const membersBox = h("div");
  const invitesBox = h("div");
  const keysBox = h("div");
  const shown = h("div", { "aria-live": "polite" });

  async function loadMembers() {
    const answer = await get("/v1/members");
    const list = Array.isArray(answer) ? answer : answer.members;
    replace(membersBox, table("Members", [
      { label: "Name", value: (m) => m.name || "" },
      { label: "E-mail", value: (m) => m.email || "" },
      { label: "Role", value: (m) => (ctx.can("members.write") ? roleSelect(m) : m.role) },
      { label: "Actions", value: (m) => (ctx.can("members.write") && m.member_id !== ctx.me.member_id ? removeButton(m) : "") },
    ], list));
  }

  function roleSelect(m) {
    const select = h("select", { "aria-label": `Role of ${m.email || m.member_id}` },
      ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)));
    select.addEventListener("change", async () => {
      try {
        await patch(`/v1/members/${encodeURIComponent(m.member_id)}`, { role: select.value });
        status("Role changed.");
      } catch (err) {
        status(`Role not changed: ${errorText(err)}`);
        select.value = m.role;
      }
    });
    return select;
  }

  function removeButton(m) {
    const button = h("button", { type: "button", class: "danger", "aria-label": `Remove ${m.email || m.member_id}` }, "Remove");
    button.addEventListener("click", async () => {
      if (button.dataset.armed !== "true") {
        button.dataset.armed = "true";
        button.textContent = "Confirm remove";
        return;
      }
      try {
        await del(`/v1/members/${encodeURIComponent(m.member_id)}`);
        status("Member removed.");
        await loadMembers();
      } catch (err) {
        status(`Not removed: ${errorText(err)}`);
      }
    });
    return button;
  }

  async function loadInvites() {
    const answer = await get("/v1/invitations");
    const list = Array.isArray(answer) ? answer : answer.invitations;
    const email = h("input", { type: "email", name: "email", required: true });
    const role = h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r, selected: r === "member" }, r)));
    async function invite(event) {
      event.preventDefault();
      try {
        await post("/v1/invitations", { email: email.value, role: role.value });
        status("Invitation sent.");
        await loadInvites();
      } catch (err) {
        status(`Not invited: ${errorText(err)}`);
      }
    }
    replace(invitesBox,
      table("Pending invitations", [
        { label: "E-mail", value: (i) => i.email || "" },
        { label: "Role", value: (i) => i.role },
        { label: "Expires", value: (i) => i.expires_at },
        { label: "Actions", value: (i) => h("button", { type: "button", class: "secondary", onclick: async () => {
            await del(`/v1/invitations/${encodeURIComponent(i.invitation_id)}`);
            await loadInvites();
          } }, "Withdraw") },
      ], list),
      h("form", { onsubmit: invite, "aria-label": "Invite a member" },
        h("label", {}, "E-mail", email), h("label", {}, "Role", role), h("button", { type: "submit" }, "Invite")));
  }

  async function loadKeys() {
    const keys = await get("/v1/admin/keys");
    const scope = h("select", { name: "scope" }, ["ingest", "read", "admin"].map((s) => h("option", { value: s }, s)));
    async function issue(event) {
      event.preventDefault();
      try {
        const made = await post("/v1/admin/keys", { scope: scope.value });
        replace(shown, h("div", { class: "card" }, h("p", {}, `The new ${made.scope} key, shown this once:`),
          h("p", { class: "secret", "data-secret": "key" }, made.key)));
        await loadKeys();
      } catch (err) {
        status(`No key issued: ${errorText(err)}`);
      }
    }
    replace(keysBox,
      table("API keys", [
        { label: "Key id", value: (k) => k.key_id },
        { label: "Scope", value: (k) => k.scope },
        { label: "Created", value: (k) => k.created_at },
        { label: "State", value: (k) => (k.revoked_at ? `revoked ${k.revoked_at}` : "active") },
        { label: "Actions", value: (k) => (!k.revoked_at && ctx.can("keys.manage") ? revokeButton(k) : "") },
      ], keys),
      ctx.can("keys.issue")
        ? h("form", { onsubmit: issue, "aria-label": "Issue a key" }, h("label", {}, "Scope", scope),
            h("button", { type: "submit" }, "Issue key"))
        : "");
  }

  function revokeButton(k) {
    const button = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${k.key_id}` }, "Revoke");
    button.addEventListener("click", async () => {
      if (button.dataset.armed !== "true") {
        button.dataset.armed = "true";
        button.textContent = "Confirm revoke";
        return;
      }
      try {
        await del(`/v1/admin/keys/${encodeURIComponent(k.key_id)}`);
        status("Key revoked.");
        await loadKeys();
      } catch (err) {
        status(`Not revoked: ${errorText(err)}`);
      }
    });
    return button;
  }

  replace(main, h("h1", {}, "Members and keys"),
    ctx.can("members.read") ? [section("Members", membersBox), section("Invitations", invitesBox)] : "",
    ctx.can("keys.read") ? section("API keys", h("div", {}, keysBox, shown)) : "");
  await Promise.all([
    ctx.can("members.read") ? guarded(membersBox, loadMembers) : null,
    ctx.can("members.read") ? guarded(invitesBox, loadInvites) : null,
    ctx.can("keys.read") ? guarded(keysBox, loadKeys) : null,
  ]);
}
