"""OpenID Connect single sign-on, the relying party's half: the authorization code flow with PKCE against the one
provider an installation configures (`PeopleSettings.oidc_*`).

`FlowCookie` binds a sign-in attempt to the browser that started it: state, nonce and the PKCE verifier travel in a
short-lived cookie signed with a KEK-derived key, so any replica can finish the flow and a callback carrying
another browser's state, or none, is refused. `OidcClient` reads the provider's discovery document and JWKS,
exchanges the code (authlib, `client_secret_basic` or `client_secret_post`) and validates the ID token (joserfc:
signature by the provider's keys, then `iss`, `aud`, `exp`, `nonce`). Every refusal is an `OidcError` whose code
names the check that failed; no message carries a token, the code, the client secret or an e-mail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from spendstream.common import crypto
from spendstream.people.settings import PeopleSettings

FLOW_COOKIE = "ss_oidc"
FLOW_COOKIE_PATH = "/v1/auth/oidc"
FLOW_SECONDS = 600  # time to sign in at the provider
SCOPES = "openid email profile"
# Asymmetric only: a provider's ID token is checked with its published public keys, never a shared secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_LEEWAY_SECONDS = 60  # clock skew tolerated between the provider and this host
_METADATA_SECONDS = 3600.0
_HTTP_TIMEOUT = httpx.Timeout(10.0)
# The provider's own `error` values a callback may pass on; anything else is reported as "other".
PROVIDER_ERRORS = frozenset(
    {
        "access_denied",
        "login_required",
        "consent_required",
        "interaction_required",
        "account_selection_required",
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
    }
)


class OidcError(Exception):
    """A refused sign-in: `code` is the answer's error code, `status` its HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Flow:
    """One sign-in attempt, as the browser carries it between start and callback."""

    state: str
    nonce: str
    code_verifier: str
    workspace_id: str | None
    expires_at: int  # epoch seconds

    @property
    def code_challenge(self) -> str:
        return str(create_s256_code_challenge(self.code_verifier))


class FlowCookie:
    """Makes and reads the signed flow cookie (HMAC-SHA256 under a KEK-derived key)."""

    def __init__(self, kek: bytes, seconds: int = FLOW_SECONDS) -> None:
        self._key = crypto.derived_key(kek, "oidc-flow")
        self.seconds = seconds

    def new(self, workspace_id: str | None = None) -> Flow:
        return Flow(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),  # 64 characters, within RFC 7636's 43..128
            workspace_id=workspace_id,
            expires_at=int(time.time()) + self.seconds,
        )

    def encode(self, flow: Flow) -> str:
        payload = _b64(
            json.dumps(
                {
                    "s": flow.state,
                    "n": flow.nonce,
                    "v": flow.code_verifier,
                    "w": flow.workspace_id,
                    "e": flow.expires_at,
                },
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def decode(self, value: str | None) -> Flow:
        """The flow of a cookie; OidcError `oidc_flow_missing` when absent, altered or expired."""
        missing = OidcError(
            "oidc_flow_missing",
            "no single sign-on attempt of this browser is pending (it expired, or was started elsewhere): start again",
        )
        if not value or "." not in value:
            raise missing
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise missing
        try:
            data = json.loads(_unb64(payload))
            flow = Flow(
                state=str(data["s"]),
                nonce=str(data["n"]),
                code_verifier=str(data["v"]),
                workspace_id=None if data["w"] is None else str(data["w"]),
                expires_at=int(data["e"]),
            )
        except (ValueError, KeyError, TypeError):
            raise missing from None
        if flow.expires_at <= int(time.time()):
            raise missing
        return flow


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery tells of the provider (OpenID Connect Discovery 1.0)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None


@dataclass(frozen=True)
class Identity:
    """The signed-in person as the provider vouches for them."""

    subject: str
    email: str
    email_verified: bool


def _verified(value: Any) -> bool:
    # Some providers send the claim as a string.
    return value is True or (isinstance(value, str) and value.lower() == "true")


class OidcClient:
    """The relying party towards one provider; one per process, safe for concurrent sign-ins."""

    def __init__(self, settings: PeopleSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._issuer = settings.oidc_issuer
        self._client_id = settings.oidc_client_id
        self._client_secret = settings.oidc_client_secret
        self._auth_method = settings.oidc_token_auth_method
        self._redirect_url = settings.oidc_redirect_url
        self._transport = transport
        self._http = httpx.AsyncClient(timeout=_HTTP_TIMEOUT, follow_redirects=False, transport=transport)
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    @property
    def issuer(self) -> str:
        """The configured issuer: the ID token's `iss` and an authorization answer's `iss` (RFC 9207) name it."""
        return self._issuer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get_json(self, url: str, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers=headers)
        except httpx.HTTPError:
            raise OidcError("provider_unavailable", f"the identity provider's {what} could not be read", 502) from None
        if response.status_code != 200:
            raise OidcError(
                "provider_unavailable", f"the identity provider's {what} answered HTTP {response.status_code}", 502
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OidcError("provider_unavailable", f"the identity provider's {what} is not a JSON object", 502)
        return body

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, kept for an hour; its issuer must be the configured one exactly."""
        if self._metadata is not None and time.monotonic() - self._metadata_at < _METADATA_SECONDS:
            return self._metadata
        doc = await self._get_json(f"{self._issuer}/.well-known/openid-configuration", "discovery document")
        if doc.get("issuer") != self._issuer:
            raise OidcError(
                "provider_misconfigured", "the discovery document names another issuer than the configured one", 502
            )
        endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        if not all(isinstance(doc.get(name), str) and doc[name] for name in endpoints):
            raise OidcError("provider_misconfigured", "the discovery document lacks a required endpoint", 502)
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise OidcError("provider_misconfigured", "the provider does not support PKCE with S256", 502)
        userinfo = doc.get("userinfo_endpoint")
        self._metadata = ProviderMetadata(
            issuer=doc["issuer"],
            authorization_endpoint=doc["authorization_endpoint"],
            token_endpoint=doc["token_endpoint"],
            jwks_uri=doc["jwks_uri"],
            userinfo_endpoint=userinfo if isinstance(userinfo, str) and userinfo else None,
        )
        self._metadata_at = time.monotonic()
        return self._metadata

    async def authorization_url(self, flow: Flow) -> str:
        """Where the browser goes to sign in: the code flow with PKCE (S256), state and nonce."""
        meta = await self.metadata()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._client_id,
                "redirect_uri": self._redirect_url,
                "scope": SCOPES,
                "state": flow.state,
                "nonce": flow.nonce,
                "code_challenge": flow.code_challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        return f"{meta.authorization_endpoint}{separator}{query}"

    async def sign_in(self, code: str, flow: Flow) -> Identity:
        """Exchange the code and vouch for the person: a validated ID token, the e-mail from it or userinfo."""
        meta = await self.metadata()
        tokens = await self._exchange(meta, code, flow)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("id_token_missing", "the identity provider returned no ID token", 502)
        claims = await self.verify_id_token(id_token, flow.nonce)
        email, verified = claims.get("email"), claims.get("email_verified")
        if not isinstance(email, str) or not email:
            info = await self._userinfo(meta, tokens.get("access_token"), str(claims["sub"]))
            email, verified = info.get("email"), info.get("email_verified")
        if not isinstance(email, str) or not email:
            raise OidcError("email_missing", "the identity provider did not release an e-mail address", 403)
        return Identity(subject=str(claims["sub"]), email=email, email_verified=_verified(verified))

    async def _exchange(self, meta: ProviderMetadata, code: str, flow: Flow) -> dict[str, Any]:
        client = AsyncOAuth2Client(
            client_id=self._client_id,
            client_secret=self._client_secret.get_secret_value(),
            token_endpoint_auth_method=self._auth_method,
            redirect_uri=self._redirect_url,
            timeout=_HTTP_TIMEOUT.connect,  # authlib hands its timeout on per request, as seconds
            transport=self._transport,
        )
        try:
            async with client:
                token = await client.fetch_token(
                    meta.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=flow.code_verifier,
                )
        except AuthlibBaseError as exc:
            # invalid_grant: a used, expired or foreign code, or a verifier that does not match its challenge.
            reason = exc.error if exc.error in ("invalid_grant", "invalid_client", "unauthorized_client") else "other"
            raise OidcError(
                "oidc_code_rejected",
                f"the identity provider refused the authorization code ({reason}): start again",
            ) from None
        except httpx.HTTPError:
            raise OidcError(
                "provider_unavailable", "the identity provider's token endpoint could not be reached", 502
            ) from None
        except ValueError:
            raise OidcError("provider_unavailable", "the identity provider's token answer is not JSON", 502) from None
        return dict(token)

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            doc = await self._get_json((await self.metadata()).jwks_uri, "key set")
            try:
                self._keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise OidcError(
                    "provider_misconfigured", "the identity provider's key set cannot be read", 502
                ) from None
        return self._keys

    async def verify_id_token(self, id_token: str, nonce: str, now: int | None = None) -> dict[str, Any]:
        """The ID token's claims once its signature (the provider's JWKS), issuer, audience, expiry and nonce hold;
        OidcError naming the first check that fails."""
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(), algorithms=list(ALGORITHMS))
            except InvalidKeyIdError:
                # The provider rotated its keys since they were read.
                token = jwt.decode(id_token, await self._key_set(refresh=True), algorithms=list(ALGORITHMS))
        except BadSignatureError:
            raise OidcError("id_token_invalid_signature", "the ID token's signature does not verify", 502) from None
        except (JoseError, ValueError):
            raise OidcError("id_token_invalid", "the ID token cannot be read or its key is unknown", 502) from None
        claims = dict(token.claims)
        at = int(time.time()) if now is None else now
        if claims.get("iss") != self._issuer:
            raise OidcError("id_token_wrong_issuer", "the ID token was issued by another issuer", 502)
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if self._client_id not in audiences or (
            len(audiences) > 1 and claims.get("azp", self._client_id) != self._client_id
        ):
            raise OidcError("id_token_wrong_audience", "the ID token was issued to another client", 400)
        expiry = claims.get("exp")
        if not isinstance(expiry, int | float) or at >= expiry + _LEEWAY_SECONDS:
            raise OidcError("id_token_expired", "the ID token has expired: start again", 400)
        issued = claims.get("iat")
        if not isinstance(issued, int | float) or issued > at + _LEEWAY_SECONDS:
            raise OidcError("id_token_invalid", "the ID token has no valid issue time", 502)
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce.encode(), nonce.encode()):
            raise OidcError(
                "id_token_nonce_mismatch", "the ID token belongs to another sign-in attempt than this browser's", 400
            )
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise OidcError("id_token_invalid", "the ID token names no subject", 502)
        return claims

    async def _userinfo(self, meta: ProviderMetadata, access_token: Any, subject: str) -> dict[str, Any]:
        if meta.userinfo_endpoint is None or not isinstance(access_token, str):
            return {}
        info = await self._get_json(meta.userinfo_endpoint, "userinfo", {"Authorization": f"Bearer {access_token}"})
        # OpenID Connect Core 5.3.2: userinfo of another subject than the ID token's must not be used.
        if info.get("sub") != subject:
            raise OidcError("provider_misconfigured", "the provider's userinfo names another subject", 502)
        return info
