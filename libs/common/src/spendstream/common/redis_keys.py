"""The one Redis key layout every service uses: `<prefix><service>:<kind>:{<workspace_id>}:<rest>`.

The workspace id sits in a hash tag, so a tenant's keys stay on one Redis Cluster slot and an erasure (or its
verification) finds every key of a workspace with one SCAN pattern: `<prefix>*{<workspace_id>}*`.
"""

from __future__ import annotations


def tenant_key(prefix: str, service: str, kind: str, workspace_id: str, *rest: str) -> str:
    return ":".join((f"{prefix}{service}", kind, f"{{{workspace_id}}}", *rest))


def tenant_pattern(prefix: str, workspace_id: str) -> str:
    """A SCAN MATCH pattern for every key of the workspace, across services."""
    escaped = workspace_id.replace("[", "\\[").replace("]", "\\]").replace("*", "\\*").replace("?", "\\?")
    return f"{prefix}*{{{escaped}}}*"
