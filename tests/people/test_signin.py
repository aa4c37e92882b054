"""Signing in: one answer for every wrong credential, sessions that are new at each sign-in and end when they
should, a cookie browsers keep from scripts and other sites, CSRF tokens on every change, audited outcomes."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from argon2 import PasswordHasher

from spendstream.common.access import ROLE_ACTIONS
from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE
from tests.people.signin_support import (
    PASSWORD,
    cookie_attributes,
    running_people,
    set_cookie_headers,
)
from tests.support import Isolation, auth, create_workspace, eventually, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_sign_in_answers_the_member_and_sets_an_http_only_lax_cookie(iso: Isolation) -> None:
    async with running_people(iso) as people:
        member = await people.member("ada@example.com", role="member")
        answer = await people.signin("Ada@Example.com", PASSWORD)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["member_id"] == member.member_id and body["workspace_id"] == "ws_test"
        assert body["role"] == "member" and body["csrf_token"]
        assert answer.headers["cache-control"] == "no-store"
        [header] = set_cookie_headers(answer)
        value, attributes = cookie_attributes(header)
        assert header.startswith(f"{SESSION_COOKIE}=") and len(value) >= 40
        assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= attributes
        assert "Secure" not in attributes  # plain http: a Secure cookie would never come back

        me = await people.client.get("/v1/me")
        assert me.status_code == 200, me.text
        assert me.json() == {
            "member_id": member.member_id,
            "workspace_id": "ws_test",
            "role": "member",
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "totp_enabled": False,
            "csrf_token": body["csrf_token"],
            "actions": sorted(ROLE_ACTIONS["member"]),
        }
        assert "members.write" not in me.json()["actions"]


async def test_the_cookie_is_secure_over_https(iso: Isolation) -> None:
    async with running_people(iso, https=True) as people:
        await people.member("ada@example.com")
        answer = await people.signin("ada@example.com")
        assert answer.status_code == 200, answer.text
        assert "Secure" in cookie_attributes(set_cookie_headers(answer)[0])[1]


async def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(iso: Isolation) -> None:
    forwarded = {"X-Forwarded-Proto": "https"}
    async with running_people(iso) as people:  # the ASGI client's peer, 127.0.0.1, is no trusted proxy here
        await people.member("ada@example.com")
        answer = await people.client.post(
            "/v1/auth/signin", json={"email": "ada@example.com", "password": PASSWORD}, headers=forwarded
        )
        assert "Secure" not in cookie_attributes(set_cookie_headers(answer)[0])[1]
    async with running_people(iso, trusted_proxies=("127.0.0.1",)) as people:
        answer = await people.client.post(
            "/v1/auth/signin", json={"email": "ada@example.com", "password": PASSWORD}, headers=forwarded
        )
        assert answer.status_code == 200, answer.text
        assert "Secure" in cookie_attributes(set_cookie_headers(answer)[0])[1]


async def test_an_unknown_email_and_a_wrong_password_get_the_same_answer_after_the_same_work(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifications: list[str] = []
    real_verify = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        verifications.append("verify")
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    # A realistic cost, so that the password check dominates either path's time; no lockout in the way.
    async with running_people(
        iso,
        password_time_cost=2,
        password_memory_kib=32 * 1024,
        signin_failures_per_account=1000,
        signin_failures_per_address=1000,
    ) as people:
        await people.member("ada@example.com")
        await people.member("sso@example.com", password=None)
        answers = {
            "unknown e-mail": await people.signin("nobody@example.com", PASSWORD),
            "wrong password": await people.signin("ada@example.com", PASSWORD + "x"),
            "no password (SSO only)": await people.signin("sso@example.com", PASSWORD),
            "malformed e-mail": await people.signin("not-an-address", PASSWORD),
            "other workspace": await people.signin("ada@example.com", PASSWORD, workspace_id="ws_other"),
        }
        for case, answer in answers.items():
            assert answer.status_code == 401, case
            assert answer.json() == answers["unknown e-mail"].json(), case
            assert set_cookie_headers(answer) == [], case
        assert answers["unknown e-mail"].json()["error"] == "invalid_credentials"

        # Each failed attempt, whatever its kind, spent exactly one argon2id verification.
        for email, password in (("nobody@example.com", PASSWORD), ("ada@example.com", "wrong-password-123")):
            before = len(verifications)
            await people.signin(email, password)
            assert len(verifications) == before + 1, email

        async def timed(email: str, password: str) -> float:
            start = time.perf_counter()
            answer = await people.signin(email, password)
            assert answer.status_code == 401
            return time.perf_counter() - start

        unknown: list[float] = []
        wrong: list[float] = []
        for _ in range(9):  # interleaved, so that the machine's load falls on both alike
            unknown.append(await timed("nobody@example.com", PASSWORD))
            wrong.append(await timed("ada@example.com", PASSWORD + "x"))
        ratio = statistics.median(unknown) / statistics.median(wrong)
        # Loose on purpose (a shared machine): an unknown e-mail answered without hashing would be many times
        # faster than a wrong password, and this bound would catch it.
        assert 1 / 3 < ratio < 3, (unknown, wrong)


async def test_lockout_per_account_answers_429_with_retry_after_and_ends(iso: Isolation) -> None:
    async with running_people(
        iso, signin_failures_per_account=3, signin_lockout_seconds=2.0, signin_failures_per_address=100
    ) as people:
        await people.member("ada@example.com")
        for _ in range(3):
            assert (await people.signin("ada@example.com", "wrong-password-123")).status_code == 401
        locked = await people.signin("ada@example.com", PASSWORD)  # even the right password waits
        assert locked.status_code == 429, locked.text
        assert 1 <= int(locked.headers["retry-after"]) <= 2
        assert locked.json()["error"] == "too_many_failed_signins"
        assert set_cookie_headers(locked) == []
        # An unknown e-mail locks the same way: the lockout tells nobody which addresses have accounts.
        for _ in range(3):
            assert (await people.signin("nobody@example.com", "wrong-password-123")).status_code == 401
        assert (await people.signin("nobody@example.com", PASSWORD)).status_code == 429
        await asyncio.sleep(2.2)
        assert (await people.signin("ada@example.com", PASSWORD)).status_code == 200


async def test_lockout_per_client_address_covers_every_account_it_tries(iso: Isolation) -> None:
    async with running_people(
        iso, signin_failures_per_account=100, signin_failures_per_address=4, signin_lockout_seconds=60.0
    ) as people:
        await people.member("ada@example.com")
        for n in range(4):
            assert (await people.signin(f"guess{n}@example.com", "wrong-password-123")).status_code == 401
        answer = await people.signin("ada@example.com", PASSWORD)
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 1
        # Another client (through a trusted proxy naming it) is not locked out of the same account.
    async with running_people(iso, trusted_proxies=("127.0.0.1",)) as people:
        other = await people.client.post(
            "/v1/auth/signin",
            json={"email": "ada@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
        assert other.status_code == 200, other.text


async def test_a_successful_sign_in_forgives_the_accounts_earlier_failures(iso: Isolation) -> None:
    async with running_people(iso, signin_failures_per_account=3, signin_failures_per_address=100) as people:
        await people.member("ada@example.com")
        for _ in range(2):
            await people.signin("ada@example.com", "wrong-password-123")
        assert (await people.signin("ada@example.com", PASSWORD)).status_code == 200
        for _ in range(2):
            assert (await people.signin("ada@example.com", "wrong-password-123")).status_code == 401
        assert (await people.signin("ada@example.com", PASSWORD)).status_code == 200


async def test_a_session_id_planted_before_sign_in_is_useless_after_it(iso: Isolation) -> None:
    async with running_people(iso) as people:
        await people.member("mallory@example.com")
        await people.member("ada@example.com")
        # The attacker signs in and plants their own session id in the victim's browser.
        assert (await people.signin("mallory@example.com")).status_code == 200
        planted = people.session_cookie()
        assert planted
        # The victim signs in with the planted cookie in their jar: a new id, and the planted one is dead.
        assert (await people.signin("ada@example.com")).status_code == 200
        fresh = people.session_cookie()
        assert fresh and fresh != planted
        assert await people.sessions.get(planted) is None
        assert (await people.client.get("/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={planted}"})).status_code == 401
        me = await people.client.get("/v1/me")
        assert me.json()["email"] == "ada@example.com"
        # An id made up by the attacker is not adopted either.
        people.client.cookies.set(SESSION_COOKIE, "chosen-by-the-attacker", domain="people.test", path="/")
        assert (await people.signin("ada@example.com")).status_code == 200
        latest = people.session_cookie()
        assert latest not in (None, "chosen-by-the-attacker", fresh)
        # Every sign-in is a new session, even from the same browser, and the one it brought along ends.
        assert (await people.signin("ada@example.com")).status_code == 200
        assert people.session_cookie() != latest and await people.sessions.get(latest or "") is None


async def test_a_session_ends_after_its_idle_time(iso: Isolation) -> None:
    async with running_people(iso, session_idle_seconds=2.0) as people:
        await people.member("ada@example.com")
        started = time.monotonic()
        await people.signin("ada@example.com")
        answer = await people.client.get("/v1/me")
        if time.monotonic() - started < 2.0:  # surely inside the idle time (a loaded machine may be slower)
            assert answer.status_code == 200
        await asyncio.sleep(2.3)
        cookie = {"Cookie": f"{SESSION_COOKIE}={people.session_cookie()}"}  # the server decides, not the jar
        assert (await people.client.get("/v1/me", headers=cookie)).status_code == 401


async def test_a_session_ends_at_its_absolute_expiry_however_busy(iso: Isolation) -> None:
    absolute = 2.0
    async with running_people(iso, session_idle_seconds=60.0, session_absolute_seconds=absolute) as people:
        await people.member("ada@example.com")
        started = time.monotonic()
        assert (await people.signin("ada@example.com")).status_code == 200
        # Sent by hand: the cookie's Max-Age makes a client drop it on time too, and this is about the server.
        cookie = {"Cookie": f"{SESSION_COOKIE}={people.session_cookie()}"}
        answered = 0
        while time.monotonic() - started < absolute - 0.5:
            answer = await people.client.get("/v1/me", headers=cookie)
            if time.monotonic() - started < absolute:  # the session began after `started`: surely alive
                assert answer.status_code == 200, (time.monotonic() - started, answer.text)
                answered += 1
            await asyncio.sleep(0.2)
        assert answered  # the session was in use up to its end
        await asyncio.sleep(max(0.0, absolute + 0.3 - (time.monotonic() - started)))
        assert (await people.client.get("/v1/me", headers=cookie)).status_code == 401


async def test_sign_out_revokes_the_session_and_clears_the_cookie(iso: Isolation) -> None:
    async with running_people(iso) as people:
        await people.member("ada@example.com")
        csrf = (await people.signin("ada@example.com")).json()["csrf_token"]
        session = people.session_cookie()
        assert session
        answer = await people.client.post("/v1/auth/signout", headers={CSRF_HEADER: csrf})
        assert answer.status_code == 204, answer.text
        value, attributes = cookie_attributes(set_cookie_headers(answer)[0])
        assert value == "" and "Max-Age=0" in attributes
        assert await people.sessions.get(session) is None
        assert (await people.client.get("/v1/me", headers={"Cookie": f"{SESSION_COOKIE}={session}"})).status_code == 401


async def test_a_password_change_ends_every_other_session(iso: Isolation) -> None:
    async with running_people(iso) as people:
        await people.member("ada@example.com")
        await people.signin("ada@example.com")
        laptop = people.session_cookie()
        csrf = (await people.signin("ada@example.com")).json()["csrf_token"]
        phone = people.session_cookie()
        assert laptop and phone
        # The first sign-in's session was rotated away by the second (same browser); a laptop's is another one.
        assert await people.sessions.get(laptop) is None
        laptop_id, _ = await people.sessions.create(
            (await people.client.get("/v1/me")).json()["member_id"], "ws_test", "password"
        )
        new_password = "a-new-Passphrase-for-2026"
        answer = await people.client.post(
            "/v1/me/password",
            json={"current_password": PASSWORD, "new_password": new_password},
            headers={CSRF_HEADER: csrf},
        )
        assert answer.status_code == 200, answer.text
        assert await people.sessions.get(laptop_id) is None
        assert await people.sessions.get(phone) is None  # replaced by a new one, handed back now
        assert people.session_cookie() not in (None, phone)
        me = await people.client.get("/v1/me")
        assert me.status_code == 200 and me.json()["csrf_token"] == answer.json()["csrf_token"]
        assert (await people.signin("ada@example.com", PASSWORD)).status_code == 401
        assert (await people.signin("ada@example.com", new_password)).status_code == 200


async def test_a_password_change_needs_the_current_password_and_meets_the_policy(iso: Isolation) -> None:
    async with running_people(iso) as people:
        await people.member("ada@example.com")
        csrf = (await people.signin("ada@example.com")).json()["csrf_token"]

        async def change(current: str, new: str) -> tuple[int, dict[str, str]]:
            answer = await people.client.post(
                "/v1/me/password",
                json={"current_password": current, "new_password": new},
                headers={CSRF_HEADER: csrf},
            )
            assert current not in answer.text and new not in answer.text
            return answer.status_code, answer.json()

        assert await change("not-my-password-9", "a-new-Passphrase-for-2026") == (
            403,
            {"error": "invalid_credentials", "message": "the current password is wrong"},
        )
        for new, code in (
            ("short-1", "too_short"),
            ("x" * 129, "too_long"),
            ("ada@example.com", "contains_email"),
            ("Password12345!", "too_common"),
        ):
            status, body = await change(PASSWORD, new)
            assert (status, body["error"], body["code"], body["field"]) == (
                422,
                "weak_password",
                code,
                "body.new_password",
            ), new
        assert (await people.client.get("/v1/me")).status_code == 200  # nothing changed, still signed in


async def test_removal_from_the_workspace_ends_the_members_sessions(iso: Isolation) -> None:
    async with running_people(iso) as people:
        await people.member("owner@example.com", role="owner")
        ada = await people.member("ada@example.com", role="viewer")
        await people.signin("ada@example.com")
        session = people.session_cookie()
        assert session and (await people.client.get("/v1/me")).status_code == 200
        await people.directory.remove_member(ada.member_id)
        assert await people.sessions.get(session) is None
        assert (await people.client.get("/v1/me")).status_code == 401
        # And the removed member cannot sign in to that workspace any more.
        assert (await people.signin("ada@example.com")).json()["error"] == "invalid_credentials"


async def test_a_session_of_a_member_removed_behind_the_stores_back_is_refused(iso: Isolation) -> None:
    """Even if a revocation were missed, the session check reads the membership live."""
    async with running_people(iso) as people:
        await people.member("owner@example.com", role="owner")
        ada = await people.member("ada@example.com", role="viewer")
        await people.signin("ada@example.com")
        session = people.session_cookie()
        assert session
        removed = ada.model_copy(update={"status": "removed"})
        await people.directory._redis.set(  # the stored membership only, as a crash between two writes leaves it
            people.directory._member_key("ws_test", ada.member_id), removed.model_dump_json()
        )
        assert (await people.client.get("/v1/me")).status_code == 401
        assert await people.sessions.get(session) is None


async def test_a_cookie_authenticated_change_without_the_csrf_token_is_refused(iso: Isolation) -> None:
    async with running_people(iso) as people:
        await people.member("ada@example.com")
        csrf = (await people.signin("ada@example.com")).json()["csrf_token"]
        session = people.session_cookie()
        for path, body in (
            ("/v1/auth/signout", None),
            ("/v1/me/password", {"current_password": PASSWORD, "new_password": "a-new-Passphrase-for-2026"}),
            ("/v1/me/totp/enrol", None),
        ):
            for headers in ({}, {CSRF_HEADER: "0" * 64}, {CSRF_HEADER: csrf[:-1]}):
                answer = await people.client.post(path, json=body, headers=headers)
                assert answer.status_code == 403, (path, headers)
                assert answer.json()["error"] == "csrf"
        # Nothing happened: the session lives, the password is unchanged.
        assert session and await people.sessions.get(session) is not None
        assert (await people.signin("ada@example.com", PASSWORD)).status_code == 200
        # A safe request needs no token.
        assert (await people.client.get("/v1/me")).status_code == 200


async def test_every_sign_in_outcome_is_an_audit_record_naming_no_email(iso: Isolation) -> None:
    async with running_people(iso, signin_failures_per_account=2) as people:
        ada = await people.member("ada@example.com")
        assert (await people.signin("ada@example.com")).status_code == 200
        assert (await people.signin("ada@example.com", "wrong-password-123")).status_code == 401
        assert (await people.signin("nobody@example.com", "wrong-password-123")).status_code == 401
        assert (await people.signin("ada@example.com", "wrong-password-123")).status_code == 401
        assert (await people.signin("ada@example.com")).status_code == 429
        records = [r for r in await people.audit_records() if r.action == "signin.password"]
        seen = [(r.outcome, r.actor_kind, r.actor_id, r.target, r.workspace_id, r.detail) for r in records]
        assert seen == [
            ("success", "member", ada.member_id, ada.member_id, "ws_test", {"method": "password"}),
            ("failure", "anonymous", "anonymous", ada.member_id, "ws_test", {"reason": "invalid_credentials"}),
            ("failure", "anonymous", "anonymous", "", "", {"reason": "invalid_credentials"}),
            ("failure", "anonymous", "anonymous", ada.member_id, "ws_test", {"reason": "invalid_credentials"}),
            ("failure", "anonymous", "anonymous", ada.member_id, "ws_test", {"reason": "locked"}),
        ]
        assert all(r.service == "people" and len(r.client_hash) == 32 for r in records)
        blob = "".join(r.model_dump_json() for r in records)
        assert "example.com" not in blob and PASSWORD not in blob and "127.0.0.1" not in blob


async def test_a_sign_in_whose_audit_record_cannot_be_published_is_refused(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(self: AuditTrail, **_: object) -> None:
        raise AuditUnavailable("the audit record of signin.password could not be published")

    async with running_people(iso) as people:
        await people.member("ada@example.com")
        monkeypatch.setattr(AuditTrail, "record", unavailable)
        for password in (PASSWORD, "wrong-password-123"):
            answer = await people.signin("ada@example.com", password)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "audit_unavailable" and answer.headers["retry-after"]
            assert set_cookie_headers(answer) == []
        monkeypatch.undo()
        assert (await people.signin("ada@example.com")).status_code == 200


async def test_a_hash_made_with_other_parameters_is_remade_at_sign_in(iso: Isolation) -> None:
    async with running_people(iso, password_time_cost=2) as people:
        old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
        person = await people.directory.create_person("ada@example.com", "Ada", old)
        await people.directory.add_member("ws_test", person.person_id, "viewer")
        assert people.passwords.needs_rehash(old)
        assert (await people.signin("ada@example.com")).status_code == 200
        stored = await people.directory.person(person.person_id)
        assert stored is not None and stored.password_hash != old and "t=2" in (stored.password_hash or "")
        assert not people.passwords.needs_rehash(stored.password_hash or "")
        assert (await people.signin("ada@example.com")).status_code == 200


async def test_a_members_own_routes_refuse_api_keys(iso: Isolation) -> None:
    workspace = await create_workspace(iso)
    async with running_people(iso) as people:
        for scope in ("read", "admin"):

            async def refused(scope: str = scope) -> bool:
                answer = await people.client.get("/v1/me", headers=auth(workspace[scope]))
                return answer.status_code == 403 and answer.json()["error"] == "forbidden"

            await eventually(refused)  # once the key table has replayed the new workspace's keys
            answer = await people.client.post(
                "/v1/me/password",
                json={"current_password": PASSWORD, "new_password": "a-new-Passphrase-for-2026"},
                headers=auth(workspace[scope]),
            )
            assert answer.status_code == 403, answer.text


async def test_without_redis_nobody_is_signed_in_and_the_answer_says_so(iso: Isolation) -> None:
    async with running_people(iso, redis_url=f"redis://127.0.0.1:{free_port()}/0") as people:
        answer = await people.signin("ada@example.com")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "signin_unavailable" and answer.headers["retry-after"] == "5"
        assert set_cookie_headers(answer) == []
