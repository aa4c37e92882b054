"""Single sign-on against a real OpenID provider (the certified `oidc-provider`, run locally by node).

A person the workspace invited signs on and holds a session; every way the sign-on can go wrong -- another
browser's state, a replayed code, an ID token of another attempt or another client, an unverified, foreign or
uninvited e-mail -- is refused with its own error code and audited, and no log line carries a secret.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlencode

import httpx
import pytest
import redis.asyncio as aioredis
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import MemberRecord
from spendstream.common.sessions import SESSION_COOKIE, SessionRecord, SessionRedis, SessionStore
from spendstream.common.topics import MEMBERS
from spendstream.people.app import create_service
from spendstream.people.directory import Directory, Membership
from spendstream.people.oidc import FLOW_COOKIE, OidcClient, OidcError
from spendstream.people.settings import PeopleSettings
from tests.people.oidc_provider import CLIENTS, REDIRECT_URL, Provider, query_of, running, sign_in_at_provider
from tests.support import Isolation, audit_records, free_port, serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with running(tmp_path_factory.mktemp("oidc-provider")) as started:
        yield started


def sso_settings(
    iso: Isolation, provider: Provider, client_id: str = "spendstream-basic", **overrides: Any
) -> PeopleSettings:
    secret, method = CLIENTS[client_id]
    values: dict[str, Any] = {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": client_id,
        "oidc_client_secret": secret,
        "oidc_redirect_url": REDIRECT_URL,
        "oidc_token_auth_method": method,
    }
    return iso.settings(PeopleSettings, **(values | overrides))


@asynccontextmanager
async def people(settings: PeopleSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving([create_service(settings)]) as client:
        yield client


@asynccontextmanager
async def directory(iso: Isolation) -> AsyncIterator[tuple[Directory, SessionStore]]:
    settings = iso.settings(PeopleSettings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    broker = make_broker(settings, "tests")
    await broker.connect()
    members = Publisher(broker, MEMBERS, settings.topic_prefix)

    async def publish(record: MemberRecord) -> None:
        await members.publish(record, record.member_id)

    sessions = SessionStore(settings, cast(SessionRedis, redis))
    try:
        yield (
            Directory(
                redis=redis,
                redis_prefix=settings.redis_prefix,
                kek=settings.kek_bytes(),
                publish=publish,
                sessions=sessions,
            ),
            sessions,
        )
    finally:
        await broker.stop()
        await redis.aclose()


async def invite(iso: Isolation, email: str, workspace_id: str = "ws_sso", role: str = "member") -> Membership:
    """The person as an admin's invitation leaves them: a person with an active membership."""
    async with directory(iso) as (found, _):
        person = await found.create_person(email, "Sam Sign-On")
        return await found.add_member(workspace_id, person.person_id, role)  # type: ignore[arg-type]


async def session_of(iso: Isolation, response: httpx.Response) -> SessionRecord | None:
    session_id = response.cookies.get(SESSION_COOKIE)
    if session_id is None:
        return None
    async with directory(iso) as (_, sessions):
        return await sessions.get(session_id)


def email() -> str:
    return f"sam.{uuid.uuid4().hex[:8]}@example.com"


async def start(app: httpx.AsyncClient) -> str:
    response = await app.get("/v1/auth/oidc/start")
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def sign_on(app: httpx.AsyncClient, login: str) -> httpx.Response:
    """Start at spendstream, sign in at the provider, come back to the callback."""
    back = await sign_in_at_provider(await start(app), login)
    return await app.get(back)


def cookie_header(response: httpx.Response, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def refused(response: httpx.Response, status: int, error: str) -> None:
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert SESSION_COOKIE not in response.cookies


@pytest.mark.parametrize("client_id", ["spendstream-basic", "spendstream-post"])
async def test_an_invited_person_signs_on_and_holds_a_session(
    iso: Isolation, provider: Provider, client_id: str
) -> None:
    address = email()
    membership = await invite(iso, address, role="admin")
    async with people(sso_settings(iso, provider, client_id)) as app:
        response = await sign_on(app, f"verified:{address}")

        assert response.status_code == 302 and response.headers["location"] == "/"
        flags = {part.strip().lower() for part in cookie_header(response, SESSION_COOKIE).split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        assert "secure" not in flags  # plain http here; Secure comes with https
        assert cookie_header(response, FLOW_COOKIE).count("Max-Age=0") == 1  # the attempt is over
        session = await session_of(iso, response)
        assert session is not None and session.method == "oidc"
        me = await app.get("/v1/me")  # the client sends the cookie it was given
        assert me.status_code == 200, me.text
        assert (me.json()["member_id"], me.json()["workspace_id"], me.json()["role"], me.json()["email"]) == (
            membership.member_id,
            membership.workspace_id,
            "admin",
            address,
        )

    successes = [r for r in await audit_records(iso) if r.action == "signin.oidc" and r.outcome == "success"]
    assert [(r.workspace_id, r.actor_kind, r.actor_id) for r in successes] == [
        (membership.workspace_id, "member", membership.member_id)
    ]
    assert successes[0].client_hash and address not in successes[0].model_dump_json()


async def test_a_session_id_fixed_before_sign_on_is_useless_after_it(iso: Isolation, provider: Provider) -> None:
    address = email()
    membership = await invite(iso, address)
    async with directory(iso) as (_, sessions):
        planted, _ = await sessions.create(membership.member_id, membership.workspace_id, "password")
    async with people(sso_settings(iso, provider)) as app:
        app.cookies.set(SESSION_COOKIE, planted)
        response = await sign_on(app, f"verified:{address}")
        assert response.status_code == 302 and response.cookies[SESSION_COOKIE] != planted
    async with directory(iso) as (_, sessions):
        assert await sessions.get(planted) is None
        assert await sessions.get(response.cookies[SESSION_COOKIE]) is not None


async def test_start_sends_the_browser_to_the_provider_with_pkce_state_and_nonce_bound_to_a_cookie(
    iso: Isolation, provider: Provider
) -> None:
    async with people(sso_settings(iso, provider)) as app:
        response = await app.get("/v1/auth/oidc/start")

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{provider.issuer}/auth?")
    query = query_of(location)
    assert query["response_type"] == "code" and query["client_id"] == "spendstream-basic"
    assert query["redirect_uri"] == REDIRECT_URL and set(query["scope"].split()) >= {"openid", "email"}
    assert query["code_challenge_method"] == "S256"
    header = cookie_header(response, FLOW_COOKIE)
    assert {"httponly", "samesite=lax", "path=/v1/auth/oidc", "max-age=600"} <= {
        p.strip().lower() for p in header.split(";")[1:]
    }
    payload = response.cookies[FLOW_COOKIE].split(".")[0]
    flow = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # The browser's cookie holds the very state, nonce and verifier the provider was given (its challenge).
    assert (flow["s"], flow["n"]) == (query["state"], query["nonce"])
    assert create_s256_code_challenge(flow["v"]) == query["code_challenge"]


async def test_an_answer_for_another_browsers_attempt_is_refused(iso: Isolation, provider: Provider) -> None:
    address = email()
    await invite(iso, address)
    async with people(sso_settings(iso, provider)) as app:
        back = await sign_in_at_provider(await start(app), f"verified:{address}")
        query = query_of(back)

        wrong_state = back.replace(f"state={query['state']}", "state=" + "x" * 43)
        refused(await app.get(wrong_state), 400, "oidc_state_mismatch")

        # A refusal ends the attempt; in a new one, the right state but an answer naming another provider
        # (RFC 9207's mix-up defence).
        back = await sign_in_at_provider(await start(app), f"verified:{address}")
        assert query_of(back)["iss"] == provider.issuer
        refused(await app.get(back.replace("iss=http", "iss=https")), 400, "oidc_issuer_mismatch")
        back = await sign_in_at_provider(await start(app), f"verified:{address}")

        # Another browser (no flow cookie) brings the victim's code.
        async with people(sso_settings(iso, provider)) as other_browser:
            refused(await other_browser.get(back), 400, "oidc_flow_missing")

        # A flow cookie altered in the browser.
        await start(app)
        value = app.cookies[FLOW_COOKIE]
        app.cookies.set(FLOW_COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/v1/auth/oidc")
        refused(await app.get(back), 400, "oidc_flow_missing")

    reasons = [r.detail.get("reason") for r in await audit_records(iso) if r.outcome == "failure"]
    assert reasons == ["oidc_state_mismatch", "oidc_issuer_mismatch", "oidc_flow_missing", "oidc_flow_missing"]


async def test_a_replayed_code_is_refused(iso: Isolation, provider: Provider) -> None:
    address = email()
    await invite(iso, address)
    async with people(sso_settings(iso, provider)) as app:
        back = await sign_in_at_provider(await start(app), f"verified:{address}")
        flow_cookie = app.cookies[FLOW_COOKIE]
        first = await app.get(back)
        assert first.status_code == 302 and await session_of(iso, first) is not None

        # The same callback again, flow cookie and all (a copied request): the provider has used the code.
        app.cookies.clear()
        app.cookies.set(FLOW_COOKIE, flow_cookie, path="/v1/auth/oidc")
        again = await app.get(back)
        refused(again, 400, "oidc_code_rejected")
        assert "invalid_grant" in again.json()["message"]


async def test_an_id_token_of_another_attempt_is_refused_by_its_nonce(iso: Isolation, provider: Provider) -> None:
    address = email()
    await invite(iso, address)
    async with people(sso_settings(iso, provider)) as app:
        location = await start(app)
        # The code comes from an authorization request with this browser's state and PKCE but another nonce.
        injected = location.replace(f"nonce={query_of(location)['nonce']}", "nonce=" + "n" * 43)
        back = await sign_in_at_provider(injected, f"verified:{address}")
        refused(await app.get(back), 400, "id_token_nonce_mismatch")


async def test_a_code_issued_to_another_client_is_refused(iso: Isolation, provider: Provider) -> None:
    address = email()
    await invite(iso, address)
    async with people(sso_settings(iso, provider)) as app:
        location = await start(app)
        foreign = location.replace("client_id=spendstream-basic", "client_id=other-app")
        back = await sign_in_at_provider(foreign, f"verified:{address}")
        refused(await app.get(back), 400, "oidc_code_rejected")


async def _id_token_for(provider: Provider, client_id: str, login: str, nonce: str) -> str:
    """A real ID token the provider issued to `client_id` (the test plays that client)."""
    verifier = "v" * 64
    authorize = f"{provider.issuer}/auth?" + urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URL,
            "scope": "openid email",
            "state": "s" * 32,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    code = query_of(await sign_in_at_provider(authorize, login))["code"]
    async with httpx.AsyncClient() as client:
        token = await client.post(
            f"{provider.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URL,
                "code_verifier": verifier,
            },
            auth=(client_id, CLIENTS[client_id][0]),
        )
    assert token.status_code == 200, token.text
    return str(token.json()["id_token"])


async def test_the_id_token_is_checked_for_audience_expiry_signature_and_nonce(
    iso: Isolation, provider: Provider
) -> None:
    nonce = "n" * 43
    foreign = await _id_token_for(provider, "other-app", f"verified:{email()}", nonce)
    mine = await _id_token_for(provider, "spendstream-basic", f"verified:{email()}", nonce)
    client = OidcClient(sso_settings(iso, provider))
    try:
        claims = await client.verify_id_token(mine, nonce)
        assert claims["aud"] == "spendstream-basic"

        async def reason(token: str, nonce: str = nonce, now: int | None = None) -> str:
            with pytest.raises(OidcError) as refused:
                await client.verify_id_token(token, nonce, now=now)
            return refused.value.code

        assert await reason(foreign) == "id_token_wrong_audience"
        assert await reason(mine, nonce="m" * 43) == "id_token_nonce_mismatch"
        assert await reason(mine, now=int(claims["exp"]) + 61) == "id_token_expired"
        header, body, signature = mine.split(".")
        forged_body = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        forged_body["sub"] = "someone-else"
        forged = base64.urlsafe_b64encode(json.dumps(forged_body).encode()).rstrip(b"=").decode()
        assert await reason(f"{header}.{forged}.{signature}") == "id_token_invalid_signature"
    finally:
        await client.aclose()


async def test_an_unverified_e_mail_is_refused(iso: Isolation, provider: Provider) -> None:
    address = email()
    await invite(iso, address)
    async with people(sso_settings(iso, provider)) as app:
        refused(await sign_on(app, f"unverified:{address}"), 403, "email_not_verified")


async def test_an_uninvited_person_is_refused_and_told_to_ask_for_an_invitation(
    iso: Isolation, provider: Provider
) -> None:
    async with people(sso_settings(iso, provider)) as app:
        response = await sign_on(app, f"verified:{email()}")
    refused(response, 403, "not_invited")
    assert "invitation" in response.json()["message"]
    failures = [r for r in await audit_records(iso) if r.action == "signin.oidc"]
    assert [(r.outcome, r.actor_kind, r.detail) for r in failures] == [
        ("failure", "anonymous", {"reason": "not_invited"})
    ]


async def test_a_removed_member_is_no_longer_let_in(iso: Isolation, provider: Provider) -> None:
    address = email()
    membership = await invite(iso, address)
    await invite(iso, f"owner.{address}", role="owner")  # the workspace keeps an owner
    async with directory(iso) as (found, _):
        await found.remove_member(membership.member_id)
    async with people(sso_settings(iso, provider)) as app:
        refused(await sign_on(app, f"verified:{address}"), 403, "not_invited")


async def test_an_e_mail_outside_the_allowed_domains_is_refused(iso: Isolation, provider: Provider) -> None:
    address = email()
    await invite(iso, address)
    settings = sso_settings(iso, provider, oidc_allowed_email_domains="example.org, corp.example.net")
    async with people(settings) as app:
        refused(await sign_on(app, f"verified:{address}"), 403, "email_domain_not_allowed")


async def test_a_sign_in_the_person_cancels_at_the_provider_is_refused(iso: Isolation, provider: Provider) -> None:
    async with people(sso_settings(iso, provider)) as app:
        back = await sign_in_at_provider(await start(app), "verified:x@example.com", abort=True)
        response = await app.get(back)
    refused(response, 400, "provider_error")
    assert "access_denied" in response.json()["message"]


async def test_a_person_of_several_workspaces_enters_the_one_named_else_the_oldest(
    iso: Isolation, provider: Provider
) -> None:
    address = email()
    first = await invite(iso, address, workspace_id="ws_one")
    async with directory(iso) as (found, _):
        person = await found.person_by_email(address)
        assert person is not None
        second = await found.add_member("ws_two", person.person_id, "viewer")
    async with people(sso_settings(iso, provider)) as app:
        oldest = await session_of(iso, await sign_on(app, f"verified:{address}"))
        location = (await app.get("/v1/auth/oidc/start", params={"workspace_id": "ws_two"})).headers["location"]
        named = await session_of(iso, await app.get(await sign_in_at_provider(location, f"verified:{address}")))
    assert oldest is not None and (oldest.workspace_id, oldest.member_id) == ("ws_one", first.member_id)
    assert named is not None and (named.workspace_id, named.member_id) == ("ws_two", second.member_id)


async def test_no_session_without_its_audit_record(
    iso: Isolation, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = email()
    membership = await invite(iso, address)

    async def unavailable(self: AuditTrail, **_: object) -> None:
        raise AuditUnavailable("the audit topic is unreachable")

    async with people(sso_settings(iso, provider)) as app:
        back = await sign_in_at_provider(await start(app), f"verified:{address}")
        with monkeypatch.context() as patched:
            patched.setattr(AuditTrail, "record", unavailable)
            response = await app.get(back)
        refused(response, 503, "audit_unavailable")
        assert response.headers["retry-after"] == "5"
        async with directory(iso) as (_, sessions):
            assert await sessions.revoke_member(membership.workspace_id, membership.member_id) == 0
        assert (await sign_on(app, f"verified:{address}")).status_code == 302  # a new attempt, once it is back


async def test_a_provider_whose_discovery_names_another_issuer_is_not_used(iso: Isolation, provider: Provider) -> None:
    # The same provider by another name: its discovery document names the issuer it was started as.
    other_name = Provider(issuer=provider.issuer.replace("127.0.0.1", "localhost"))
    async with people(sso_settings(iso, other_name)) as app:
        response = await app.get("/v1/auth/oidc/start")
    assert (response.status_code, response.json()["error"]) == (502, "provider_misconfigured")


async def test_an_unreachable_provider_is_reported_as_such(iso: Isolation) -> None:
    down = Provider(issuer=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    async with people(sso_settings(iso, down)) as app:
        response = await app.get("/v1/auth/oidc/start")
    assert (response.status_code, response.json()["error"]) == (502, "provider_unavailable")
    assert FLOW_COOKIE not in response.cookies


async def test_without_a_provider_the_routes_answer_sso_not_configured(iso: Isolation) -> None:
    async with people(iso.settings(PeopleSettings)) as app:
        for path in ("/v1/auth/oidc/start", "/v1/auth/oidc/callback?state=x&code=y"):
            response = await app.get(path)
            assert (response.status_code, response.json()["error"]) == (404, "sso_not_configured")
        # What a sign-in page asks before anyone is signed in: no single sign-on to offer.
        methods = await app.get("/v1/auth/methods")
        assert methods.status_code == 200 and methods.json() == {"password": True, "sso": False}


async def test_with_a_provider_the_sign_in_methods_offer_single_sign_on_and_name_nothing_of_it(
    iso: Isolation, provider: Provider
) -> None:
    settings = sso_settings(iso, provider)
    async with people(settings) as app:
        methods = await app.get("/v1/auth/methods")
        assert methods.status_code == 200 and methods.json() == {"password": True, "sso": True}
        assert provider.issuer not in methods.text and settings.oidc_client_id not in methods.text
        # And what it offers works: start sends the browser to the provider.
        assert (await start(app)).startswith(provider.issuer)


def test_single_sign_on_is_configured_whole_or_not_at_all(iso: Isolation) -> None:
    with pytest.raises(ValueError) as error:
        iso.settings(PeopleSettings, oidc_issuer="https://idp.example.com", oidc_client_id="spendstream")
    assert "SPENDSTREAM_OIDC_CLIENT_SECRET" in str(error.value) and "SPENDSTREAM_OIDC_REDIRECT_URL" in str(error.value)


async def test_no_log_line_carries_a_token_the_code_the_secret_or_the_e_mail(
    iso: Isolation, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    address = email()
    await invite(iso, address)
    async with people(sso_settings(iso, provider)) as app:
        back = await sign_in_at_provider(await start(app), f"verified:{address}")
        assert (await app.get(back)).status_code == 302
        unverified = await sign_on(app, f"unverified:{address}")
        assert unverified.status_code == 403
        session_id = (await sign_on(app, f"verified:{address}")).cookies[SESSION_COOKIE]

    # The test's own browser logs its requests and the provider's redirects (the callback URL carries the code
    # and state): those lines are not the service's. Everything else -- people's calls to the provider, its
    # audit and member records -- is checked.
    browser = (f"{REDIRECT_URL}?", f"{provider.issuer}/auth?", f"{provider.issuer}/interaction")
    lines = [f"{r.getMessage()} {r.args!r}" for r in caplog.records]
    text = "\n".join(line for line in lines if not any(marker in line for marker in browser))
    # The check saw the service's side: its code exchanges and its refusal.
    assert f"POST {provider.issuer}/token" in text and "single sign-on refused: email_not_verified" in text
    secrets = [CLIENTS["spendstream-basic"][0], query_of(back)["code"], query_of(back)["state"], address, session_id]
    assert [line for line in text.splitlines() if any(s in line for s in secrets)] == []
    assert re.search(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ", text) is None  # no JWT (ID token)
