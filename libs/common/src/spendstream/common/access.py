"""Who may do what: the one table of roles and key scopes to permitted actions, shared by every service.

A route names the one action it performs; the caller (a member's session or an API key) is allowed exactly when
that action is in the caller's set. A member's set comes from their role; a key's from its scope, and a key
issued by a member never exceeds that member's role (the intersection of both, read live, so a demotion or a
removal narrows the key at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from spendstream.common.records import KeyScope, Role

ROLES: tuple[Role, ...] = get_args(Role)

Action = Literal[
    # Viewer: read what the workspace measured and decided.
    "workspace.read",  # the workspace's own record (status, plan, cancellation schedule)
    "usage.read",  # /v1/usage, completeness, reconciliation, margin, prices
    "export.read",  # streamed exports
    "findings.read",
    "budgets.read",  # budgets and their alerts' delivery log
    "deletions.read",  # erasure requests, their state and receipts
    # Member: act on spend.
    "budgets.write",
    "keys.read",
    "keys.issue",  # ingest and read keys
    # Admin: run the workspace.
    "keys.manage",  # issue admin keys, revoke any key
    "members.read",
    "members.write",  # invite, change roles below owner, remove members below owner
    "webhooks.write",  # a budget's webhook channel
    "erasures.customer",
    "settings.write",  # price overrides and recompute, connectors, revenue, Stripe, data-key rotation
    "audit.read",
    # Owner: own the workspace.
    "owners.write",  # make, demote or remove admins and owners
    "workspace.lifecycle",  # cancel, reactivate
    "erasures.workspace",
    # Every member, by session only (no key scope holds them): their own profile, credentials and sessions.
    "account.read",  # GET /v1/me, GET /v1/me/export
    "account.write",  # sign-out, password change, TOTP enrolment, DELETE /v1/me
    # Ingest keys only: metering traffic.
    "events.write",
    "reservations.write",
]
ACTIONS: tuple[Action, ...] = get_args(Action)

_VIEWER: frozenset[Action] = frozenset(
    {"workspace.read", "usage.read", "export.read", "findings.read", "budgets.read", "deletions.read"}
)
_MEMBER: frozenset[Action] = _VIEWER | {"budgets.write", "keys.read", "keys.issue"}
_ADMIN: frozenset[Action] = _MEMBER | {
    "keys.manage",
    "members.read",
    "members.write",
    "webhooks.write",
    "erasures.customer",
    "settings.write",
    "audit.read",
}
_OWNER: frozenset[Action] = _ADMIN | {"owners.write", "workspace.lifecycle", "erasures.workspace"}

_ACCOUNT: frozenset[Action] = frozenset({"account.read", "account.write"})

ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    "viewer": _VIEWER | _ACCOUNT,
    "member": _MEMBER | _ACCOUNT,
    "admin": _ADMIN | _ACCOUNT,
    "owner": _OWNER | _ACCOUNT,
}

# A key's scope names what the key is for; `admin` keys made by the operator (workspace creation, the CLI) hold
# the owner's set, and those a member issues are capped by the member's role.
SCOPE_ACTIONS: dict[KeyScope, frozenset[Action]] = {
    "ingest": frozenset({"events.write", "reservations.write"}),
    "read": _VIEWER,
    "admin": _OWNER,
}


def allowed(
    action: Action, role: Role | None = None, scope: KeyScope | None = None, issuer: Role | None = None
) -> bool:
    """Whether a session of `role`, or a key of `scope` (issued by a member of role `issuer`, if any), may act."""
    if role is not None:
        return action in ROLE_ACTIONS[role]
    if scope is None:
        return False
    permitted = SCOPE_ACTIONS[scope]
    if issuer is not None:
        permitted = permitted & issued_cap(issuer)
    return action in permitted


def issued_cap(issuer: Role) -> frozenset[Action]:
    """What a key issued by a member of role `issuer` may hold at most: the role's actions, and metering traffic
    while the role may issue ingest keys (no role writes events by hand, yet that is what an ingest key is for;
    a member demoted below that loses it at once, as any other action)."""
    held = ROLE_ACTIONS[issuer]
    if issue_needs("ingest") in held:
        return held | SCOPE_ACTIONS["ingest"]
    return held


def issue_needs(scope: KeyScope) -> Action:
    """The action issuing a key of `scope` needs: `keys.issue` for ingest and read keys, `keys.manage` for admin."""
    return "keys.issue" if scope in ("ingest", "read") else "keys.manage"


def may_issue(scope: KeyScope, issuer: Role) -> bool:
    """A member may issue a key of `scope` when the key would hold nothing the member's role does not, beside
    metering traffic (an ingest key writes events, which no role does by hand)."""
    return issue_needs(scope) in ROLE_ACTIONS[issuer]


def may_issue_as(can: Callable[[Action], bool], scope: KeyScope) -> bool:
    """`may_issue` for any caller (a session or a key) given its permission check (`Caller.can`)."""
    return can(issue_needs(scope))


def may_assign(actor: Role, target_role: Role) -> bool:
    """Whether a member of role `actor` may give (or take away) `target_role`: owners and admins only by owners."""
    if target_role in ("owner", "admin"):
        return "owners.write" in ROLE_ACTIONS[actor]
    return "members.write" in ROLE_ACTIONS[actor]


def markdown_table() -> str:
    """The table as the README shows it (a test keeps the two equal): one row per action, a column per role and
    key scope."""
    columns: list[tuple[str, frozenset[Action]]] = [
        *((role.capitalize(), ROLE_ACTIONS[role]) for role in ROLES),
        *((f"`{scope}` key", SCOPE_ACTIONS[scope]) for scope in get_args(KeyScope)),
    ]
    lines = [
        "| action | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for action in ACTIONS:
        marks = " | ".join("✓" if action in permitted else "" for _, permitted in columns)
        lines.append(f"| `{action}` | {marks} |")
    return "\n".join(lines)
