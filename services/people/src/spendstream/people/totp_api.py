"""A member's own second factor: POST /v1/me/totp/enrol, /confirm and /disable (session, CSRF token).

Enrolment shows the new secret once (and its otpauth:// URI for a QR code); it takes effect only when a code made
from it is confirmed, which answers the ten backup codes, also shown this once. Disabling needs the password and
a current code or an unused backup code: a session left open on a shared screen cannot remove the factor.
"""

# No `from __future__ import annotations`: FastAPI evaluates the dependencies' annotations at definition time.

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from spendstream.common.audit import AuditUnavailable
from spendstream.common.clients import client_address
from spendstream.common.errors import responses
from spendstream.people.web import AUDIT_UNAVAILABLE, NO_STORE, Me, SignIn, signed_in

log = logging.getLogger(__name__)


class Enrolment(BaseModel):
    secret: str = Field(description="base32, for typing into an authenticator app; shown this once")
    otpauth_uri: str = Field(description="the same secret as an otpauth:// URI, for a QR code")


class Confirmation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$")


class BackupCodes(BaseModel):
    backup_codes: list[str] = Field(description="ten single-use codes, shown this once")


class Disabling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024)
    totp_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    backup_code: str | None = Field(default=None, min_length=1, max_length=64)


def router(ctx: SignIn) -> APIRouter:
    api = APIRouter(tags=["sign-in"])

    async def audit(request: Request, me: Me, change: str) -> None:
        try:
            await ctx.audit.record(
                workspace_id=me.membership.workspace_id,
                actor_kind="member",
                actor_id=me.membership.member_id,
                action="account.totp",
                outcome="success",
                target=me.membership.member_id,
                request_id=me.request_id,
                client_address=client_address(request),
                detail={"change": change},
            )
        except AuditUnavailable:
            log.warning("audit record not published; action refused", extra={"action": "account.totp"})
            raise AUDIT_UNAVAILABLE from None

    @api.post("/v1/me/totp/enrol", response_model=Enrolment, responses=responses(401, 403, 409, 422))
    async def enrol(response: Response, me: Annotated[Me, Depends(signed_in(ctx, "account.write"))]) -> Enrolment:
        """Begin enrolment: a new secret, pending until confirmed within ten minutes."""
        if me.person.totp_secret_sealed is not None:
            raise HTTPException(
                409, detail={"error": "totp_enabled", "message": "TOTP is already on; disable it first to re-enrol"}
            )
        secret = await ctx.factor.begin_enrolment(me.person.person_id)
        response.headers.update(NO_STORE)
        return Enrolment(secret=secret, otpauth_uri=ctx.factor.provisioning_uri(secret, me.person.email))

    @api.post("/v1/me/totp/confirm", response_model=BackupCodes, responses=responses(400, 401, 403, 409, 422, 503))
    async def confirm(
        body: Confirmation,
        request: Request,
        response: Response,
        me: Annotated[Me, Depends(signed_in(ctx, "account.write"))],
    ) -> BackupCodes:
        """Turn TOTP on with a code from the pending secret; answers the backup codes."""
        secret = await ctx.factor.pending_secret(me.person.person_id)
        if secret is None or me.person.totp_secret_sealed is not None:
            raise HTTPException(
                409, detail={"error": "no_pending_enrolment", "message": "begin with POST /v1/me/totp/enrol"}
            )
        if not await ctx.factor.accept_code(me.person.person_id, secret, body.code):
            raise HTTPException(
                422,
                detail={
                    "error": "invalid_code",
                    "message": "the code does not match the pending secret now",
                    "field": "body.code",
                    "code": "mismatch",
                },
            )
        await audit(request, me, "enabled")
        _, codes = await ctx.factor.finish_enrolment(me.person, secret)
        response.headers.update(NO_STORE)
        return BackupCodes(backup_codes=codes)

    @api.post("/v1/me/totp/disable", status_code=204, responses=responses(400, 401, 403, 409, 422, 503))
    async def disable(
        body: Disabling, request: Request, me: Annotated[Me, Depends(signed_in(ctx, "account.write"))]
    ) -> Response:
        """Turn TOTP off (password and a current code or unused backup code): secret and backup codes go."""
        if me.person.totp_secret_sealed is None:
            raise HTTPException(409, detail={"error": "totp_disabled", "message": "TOTP is not on"})
        password_ok = await ctx.passwords.verify(me.person.password_hash, body.password)
        factor_ok = False
        if password_ok and body.totp_code is not None:
            factor_ok = await ctx.factor.accept_totp(me.person, body.totp_code)
        elif password_ok and body.backup_code is not None:
            factor_ok = await ctx.factor.spend_backup_code(me.person, body.backup_code)
        if not factor_ok:
            await ctx.lockout.failed(me.person.email, client_address(request))
            raise HTTPException(
                403,
                detail={
                    "error": "invalid_credentials",
                    "message": "disabling TOTP needs the password and a current code or an unused backup code",
                },
            )
        await audit(request, me, "disabled")
        current = await ctx.directory.person(me.person.person_id)
        await ctx.factor.disable(current or me.person)
        return Response(status_code=204)

    return api
