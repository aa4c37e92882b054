"""people's configuration: the shared base plus sign-in, invitations and single sign-on."""

from __future__ import annotations

from pydantic import Field

from spendstream.common.settings import BaseServiceSettings


class PeopleSettings(BaseServiceSettings):
    http_port: int = Field(default=8086, ge=1, le=65535)

    # Sign-in (`passwords.py`, `lockout.py`, `signin_api.py`).
    # argon2id's cost: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes). A stored hash made with
    # other parameters is re-made at the member's next successful sign-in.
    password_time_cost: int = Field(default=3, ge=1, le=20)
    password_memory_kib: int = Field(default=64 * 1024, ge=8 * 1024, le=4 * 1024 * 1024)
    password_parallelism: int = Field(default=4, ge=1, le=64)
    # Failed sign-ins tolerated per account (the e-mail as typed, known or not) and per client address within the
    # window; one more locks that account or address out for `signin_lockout_seconds` (429, Retry-After).
    signin_failures_per_account: int = Field(default=5, ge=1)
    signin_failures_per_address: int = Field(default=20, ge=1)
    signin_failure_window_seconds: float = Field(default=900.0, gt=0)
    signin_lockout_seconds: float = Field(default=900.0, gt=0)
    # Addresses of the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (TLS ends there);
    # from any other peer those headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # The issuer name authenticator apps show beside the account.
    totp_issuer: str = Field(default="spendstream", min_length=1, max_length=64)
