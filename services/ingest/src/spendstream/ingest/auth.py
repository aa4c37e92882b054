"""Who is calling, beyond `common.http_auth.Access`: the workspace's status.

The workspace always comes from the key (or the session), never from the payload. A key of a deleted (or
unknown) workspace is 401; a cancelled workspace keeps its administration (to reactivate) but sends no more
events (403) until it is reactivated.
"""

from __future__ import annotations

from fastapi import HTTPException

from spendstream.common.access import Action
from spendstream.common.http_auth import Caller, WorkspaceGate, unauthorized
from spendstream.common.members import MemberDirectory
from spendstream.common.tenants import KeyDirectory, Principal
from spendstream.ingest.workspaces import WorkspaceDirectory


async def resolve(
    keys: KeyDirectory, workspaces: WorkspaceDirectory, key: str | None, members: MemberDirectory | None = None
) -> Principal | None:
    """The principal of a valid key whose workspace exists and is not deleted, and whose issuing member (if a
    member issued it) is still an active member, else None. The raw intake's check, as `Access` is HTTP's."""
    principal = keys.authenticate(key) if key else None
    if principal is None:
        return None
    if principal.issued_by is not None and (
        members is None or await members.active(principal.issued_by, principal.workspace_id) is None
    ):
        return None
    workspace = workspaces.get(principal.workspace_id)
    if workspace is None:
        # The key's workspace record may be a poll behind the key itself (both written at creation).
        await workspaces.table.catch_up()
        workspace = workspaces.get(principal.workspace_id)
    if workspace is None or workspace.status == "deleted":
        return None
    return principal


def workspace_gate(workspaces: WorkspaceDirectory) -> WorkspaceGate:
    """ingest's addition to the access check (`Access(gate=...)`): a deleted (or unknown) workspace's callers
    are unknown (401); a cancelled workspace keeps its administration (to reactivate) but sends no events (403)
    until it is reactivated."""

    async def gate(caller: Caller, action: Action) -> None:
        workspace = workspaces.get(caller.workspace_id)
        if workspace is None:
            # The key's workspace record may be a poll behind the key itself (both written at creation).
            await workspaces.table.catch_up()
            workspace = workspaces.get(caller.workspace_id)
        if workspace is None or workspace.status == "deleted":
            raise unauthorized()
        if workspace.status == "cancelled" and action == "events.write":
            raise HTTPException(
                403,
                detail={
                    "error": "workspace_cancelled",
                    "message": "the workspace is cancelled; reactivate it to send events",
                },
            )

    return gate
