"""TOTP as a second factor: enrolment confirmed by a code, each code accepted once, backup codes shown once and
good for one sign-in each, the secret sealed at rest."""

from __future__ import annotations

import time

import pyotp
import pytest

from spendstream.common.sessions import CSRF_HEADER
from tests.people.signin_support import PASSWORD, People, running_people
from tests.support import Isolation

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


async def enrolled(people: People, email: str = "ada@example.com") -> tuple[str, list[str], str]:
    """Sign in, enrol and confirm: (secret, backup codes, csrf token)."""
    await people.member(email)
    csrf = (await people.signin(email)).json()["csrf_token"]
    enrolment = await people.client.post("/v1/me/totp/enrol", headers={CSRF_HEADER: csrf})
    assert enrolment.status_code == 200, enrolment.text
    assert enrolment.headers["cache-control"] == "no-store"
    secret = enrolment.json()["secret"]
    assert enrolment.json()["otpauth_uri"].startswith("otpauth://totp/spendstream:")
    confirmed = await people.client.post(
        "/v1/me/totp/confirm", json={"code": code_at(secret)}, headers={CSRF_HEADER: csrf}
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret, confirmed.json()["backup_codes"], csrf


async def test_enrolment_takes_effect_only_when_confirmed_and_is_stored_sealed(iso: Isolation) -> None:
    async with running_people(iso) as people:
        ada = await people.member("ada@example.com")
        csrf = (await people.signin("ada@example.com")).json()["csrf_token"]
        secret = (await people.client.post("/v1/me/totp/enrol", headers={CSRF_HEADER: csrf})).json()["secret"]
        assert (await people.client.get("/v1/me")).json()["totp_enabled"] is False
        assert (await people.signin("ada@example.com")).status_code == 200  # pending: not needed yet
        csrf = (await people.client.get("/v1/me")).json()["csrf_token"]
        wrong = await people.client.post(
            "/v1/me/totp/confirm", json={"code": code_at(secret, 10)}, headers={CSRF_HEADER: csrf}
        )
        assert wrong.status_code == 422 and wrong.json()["error"] == "invalid_code"
        confirmed = await people.client.post(
            "/v1/me/totp/confirm", json={"code": code_at(secret)}, headers={CSRF_HEADER: csrf}
        )
        assert confirmed.status_code == 200
        codes = confirmed.json()["backup_codes"]
        assert len(codes) == 10 and len(set(codes)) == 10
        assert (await people.client.get("/v1/me")).json()["totp_enabled"] is True
        person = await people.directory.person(ada.person_id)
        assert person is not None and person.totp_secret_sealed
        assert secret not in person.model_dump_json()
        assert not [c for c in codes if c in person.model_dump_json() or c.replace("-", "") in person.model_dump_json()]
        assert len(person.backup_code_hashes) == 10
        again = await people.client.post("/v1/me/totp/enrol", headers={CSRF_HEADER: csrf})
        assert again.status_code == 409


async def test_sign_in_then_needs_a_code_and_each_code_works_once(iso: Isolation) -> None:
    async with running_people(iso) as people:
        secret, _, _ = await enrolled(people)
        missing = await people.signin("ada@example.com")
        assert missing.status_code == 401 and missing.json()["error"] == "totp_required"
        wrong_password = await people.signin("ada@example.com", "wrong-password-123", totp_code=code_at(secret, 1))
        assert wrong_password.json()["error"] == "invalid_credentials"  # the code does not reveal the password
        code = code_at(secret, 1)  # the next step: the confirmation spent this one's
        ok = await people.signin("ada@example.com", totp_code=code)
        assert ok.status_code == 200, ok.text
        replay = await people.signin("ada@example.com", totp_code=code)
        assert replay.status_code == 401 and replay.json()["error"] == "totp_required"
        # An earlier step's code, still inside the window, is refused once a later one was used.
        assert (await people.signin("ada@example.com", totp_code=code_at(secret))).status_code == 401
        wrong = await people.signin("ada@example.com", totp_code="000000" if code != "000000" else "111111")
        assert wrong.json()["error"] == "totp_required"
        records = [r for r in await people.audit_records() if r.action == "signin.password"]
        assert [r.detail.get("method") for r in records if r.outcome == "success"] == ["password", "password+totp"]


async def test_each_backup_code_opens_one_sign_in(iso: Isolation) -> None:
    async with running_people(iso) as people:
        _, codes, _ = await enrolled(people)
        first = await people.signin("ada@example.com", backup_code=codes[0])
        assert first.status_code == 200, first.text
        again = await people.signin("ada@example.com", backup_code=codes[0])
        assert again.status_code == 401 and again.json()["error"] == "totp_required"
        # Typed without the dash and in capitals, another code still works, once.
        assert (
            await people.signin("ada@example.com", backup_code=codes[1].replace("-", "").upper())
        ).status_code == 200
        assert (await people.signin("ada@example.com", backup_code=codes[1])).status_code == 401
        assert (await people.signin("ada@example.com", backup_code="aaaaa-bbbbb")).status_code == 401
        person = await people.directory.person_by_email("ada@example.com")
        assert person is not None and person.totp_secret_sealed and len(person.backup_code_hashes) == 8


async def test_disabling_needs_the_password_and_a_code(iso: Isolation) -> None:
    async with running_people(iso) as people:
        secret, codes, _ = await enrolled(people)
        csrf = (await people.signin("ada@example.com", backup_code=codes[0])).json()["csrf_token"]
        refused = await people.client.post(
            "/v1/me/totp/disable",
            json={"password": "wrong-password-123", "totp_code": code_at(secret, 1)},
            headers={CSRF_HEADER: csrf},
        )
        assert refused.status_code == 403 and refused.json()["error"] == "invalid_credentials"
        no_csrf = await people.client.post("/v1/me/totp/disable", json={"password": PASSWORD, "backup_code": codes[1]})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
        assert (await people.client.get("/v1/me")).json()["totp_enabled"] is True
        done = await people.client.post(
            "/v1/me/totp/disable", json={"password": PASSWORD, "backup_code": codes[1]}, headers={CSRF_HEADER: csrf}
        )
        assert done.status_code == 204, done.text
        assert (await people.client.get("/v1/me")).json()["totp_enabled"] is False
        assert (await people.signin("ada@example.com")).status_code == 200
        changes = [r.detail["change"] for r in await people.audit_records() if r.action == "account.totp"]
        assert changes == ["enabled", "disabled"]
