"""people's configuration: the shared base plus sign-in, invitations (and their SMTP) and single sign-on."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from spendstream.common.settings import BaseServiceSettings, is_http_url
from spendstream.common.smtp import SmtpSettings

_OIDC_REQUIRED = ("oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_redirect_url")


# Invitations by e-mail over SMTP (SmtpSettings, the names alerts uses); an empty host: invitations are refused
# with 503 and the operator's CLI prints a one-time sign-in link instead.
class PeopleSettings(BaseServiceSettings, SmtpSettings):
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
    # The issuer name authenticator apps show beside the account.
    totp_issuer: str = Field(default="spendstream", min_length=1, max_length=64)

    # Invitations and one-time sign-in links (`invitations.py`, `signin_links.py`, `members_api.py`).
    # Where people's links point: the console (invitation page) and this API (one-time sign-in links) as the
    # browser reaches them; empty: http://localhost:<http_port>.
    public_url: str = Field(default="", pattern=r"^(https?://[^\s?#]+)?$")
    invitation_ttl_seconds: int = Field(default=72 * 3600, ge=60, le=30 * 86400)
    signin_link_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 86400)

    @property
    def link_base(self) -> str:
        """The base URL of the links people sends and prints."""
        return (self.public_url or f"http://localhost:{self.http_port}").rstrip("/")

    # OpenID Connect single sign-on (`oidc.py`), one provider per installation. All four of issuer, client id,
    # client secret and redirect URL, or none (sign-on off: its routes answer 404 sso_not_configured).
    oidc_issuer: str = (
        ""  # e.g. https://accounts.example.com; discovery reads <issuer>/.well-known/openid-configuration
    )
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")  # never logged
    oidc_redirect_url: str = ""  # <people's public URL>/v1/auth/oidc/callback, registered at the provider
    oidc_token_auth_method: str = Field(default="client_secret_basic", pattern=r"^client_secret_(basic|post)$")
    # Comma-separated e-mail domains a signed-in person must belong to; empty: any domain (still invited only).
    oidc_allowed_email_domains: str = ""

    @field_validator("oidc_issuer", "oidc_redirect_url")
    @classmethod
    def _oidc_url(cls, value: str) -> str:
        if value and not is_http_url(value):
            raise ValueError("must be an http(s):// URL with a host")
        return value.rstrip("/") if value else value

    @field_validator("oidc_allowed_email_domains")
    @classmethod
    def _domains(cls, value: str) -> str:
        for domain in (d.strip() for d in value.split(",") if d.strip()):
            if "@" in domain or "." not in domain.strip(".") or any(c.isspace() for c in domain):
                raise ValueError("must be comma-separated domains such as example.com,example.org")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> PeopleSettings:
        present = [name for name in _OIDC_REQUIRED if self._oidc_value(name)]
        if present and len(present) != len(_OIDC_REQUIRED):
            missing = ", ".join(f"SPENDSTREAM_{n.upper()}" for n in _OIDC_REQUIRED if n not in present)
            raise ValueError(
                f"single sign-on needs all of issuer, client id, client secret and redirect URL; unset: {missing}"
            )
        return self

    def _oidc_value(self, name: str) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    @property
    def oidc_configured(self) -> bool:
        """Single sign-on is on: every one of its required settings is set."""
        return bool(self.oidc_issuer)

    @property
    def oidc_email_domains(self) -> frozenset[str]:
        """The allowed e-mail domains, lower case; empty: any."""
        return frozenset(d.strip().lower().strip(".") for d in self.oidc_allowed_email_domains.split(",") if d.strip())
