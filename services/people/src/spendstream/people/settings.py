"""people's configuration: the shared base plus sign-in, invitations and single sign-on."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from spendstream.common.settings import BaseServiceSettings, is_http_url

_OIDC_REQUIRED = ("oidc_issuer", "oidc_client_id", "oidc_client_secret", "oidc_redirect_url")


class PeopleSettings(BaseServiceSettings):
    http_port: int = Field(default=8086, ge=1, le=65535)

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
