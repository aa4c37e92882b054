"""people's configuration: the shared base plus sign-in, invitations (and their SMTP) and single sign-on."""

from __future__ import annotations

from pydantic import Field, SecretStr

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

    # Invitations and one-time sign-in links (`invitations.py`, `signin_links.py`, `members_api.py`).
    # Where people's links point: the console (invitation page) and this API (one-time sign-in links) as the
    # browser reaches them; empty: http://localhost:<http_port>.
    public_url: str = Field(default="", pattern=r"^(https?://[^\s?#]+)?$")
    invitation_ttl_seconds: int = Field(default=72 * 3600, ge=60, le=30 * 86400)
    signin_link_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 86400)
    # Invitations by e-mail over SMTP (the names alerts uses); an empty host: invitations are refused with 503
    # and the operator's CLI prints a one-time sign-in link instead.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_ca_file: str = ""  # a CA bundle to verify the SMTP server with; empty: the system's
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = Field(default="spendstream@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @property
    def link_base(self) -> str:
        """The base URL of the links people sends and prints."""
        return (self.public_url or f"http://localhost:{self.http_port}").rstrip("/")
