"""`python -m spendstream.people.roles_table`: the README's roles table, printed from `access.py` itself."""

from __future__ import annotations

from spendstream.common.access import ACTIONS, ROLE_ACTIONS, ROLES, SCOPE_ACTIONS


def markdown() -> str:
    """One row per action: which roles hold it, and which key scopes (a member's key is capped by their role)."""
    lines = [
        "| action | " + " | ".join(ROLES) + " | key scopes |",
        "|---|" + "---|" * len(ROLES) + "---|",
    ]
    for action in ACTIONS:
        held = ["✓" if action in ROLE_ACTIONS[role] else "" for role in ROLES]
        scopes = ", ".join(scope for scope, actions in SCOPE_ACTIONS.items() if action in actions)
        lines.append(f"| `{action}` | " + " | ".join(held) + f" | {scopes} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
