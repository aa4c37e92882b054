"""Secrets stay secret: API keys are compared in constant time and stored only hashed; the KEK is never logged
or printed; a webhook secret is shown once and sealed on its topic; a provider's admin key (connectors) is in
no answer, log line or topic in clear; invitation and sign-in link tokens are only hashed; client IPs are recorded
nowhere; passwords, TOTP secrets, backup codes and session ids are in no log line, topic record or Redis value in
clear; a workspace erasure's receipt token is shown once and only hashed; the audit log holds ids and a keyed hash
of the client address, never a secret, an e-mail or the address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import pyotp
import pytest
import redis.asyncio as aioredis

from spendstream.common.audit import AuditTrail
from spendstream.common.kafka import make_broker
from spendstream.common.records import AuditOutcome
from spendstream.common.sessions import CSRF_HEADER
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import API_KEYS, BUDGETS, topic_name
from spendstream.connectors.app import create_service as create_connectors
from spendstream.connectors.settings import ConnectorsSettings
from spendstream.rollup.clickhouse import clickhouse_client
from tests.connectors.fake_providers import provider_server
from tests.ingest.topics import read_all, topic_names
from tests.people.signin_support import PASSWORD, running_people
from tests.security.pipeline import running
from tests.support import Isolation, ServiceProcess, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CLIENT_IP = "203.0.113.77"
FORWARDED_IP = "198.51.100.23"


async def _everything_on_topics(iso: Isolation) -> bytes:
    """Keys, values and headers of every record on every topic of the test, as one blob."""
    blob = bytearray()
    for name in await topic_names(iso.stack.kafka, iso.prefix):
        for record in await read_all(iso.stack.kafka, name):
            blob += (record.key or b"") + b"\n" + (record.value or b"") + b"\n"
            for key, value in record.headers or ():
                blob += key.encode() + b"=" + (value or b"") + b"\n"
    return bytes(blob)


def _kek_forms(kek: str) -> list[str]:
    raw = base64.b64decode(kek)
    return [kek, raw.hex(), base64.urlsafe_b64encode(raw).decode(), repr(raw)[2:-1]]


async def test_keys_are_compared_in_constant_time_and_stored_only_as_hashes(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch, captured_logs: io.StringIO
) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: str | bytes, b: str | bytes) -> bool:
        calls.append(1)
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac, "compare_digest", counting)
    ws = await create_workspace(iso)
    async with running(iso) as p:

        async def answered(path: str, key: str, status: int) -> bool:
            return (await p.client.get(path, headers=auth(key))).status_code == status

        # One authenticated route per service: each answer must have gone through compare_digest.
        for path, key, status in (
            ("/v1/admin/workspace", ws["admin"], 200),
            ("/v1/usage", ws["read"], 200),
            ("/v1/budgets", ws["admin"], 200),
            ("/v1/deletions/nope", ws["admin"], 404),
        ):
            await eventually(partial(answered, path, key, status))
            before = len(calls)
            assert await answered(path, key, status)
            assert len(calls) > before, f"{path} authenticated without hmac.compare_digest"
        # A wrong key differing from a real one in its last character is refused the same way.
        assert (await p.client.get("/v1/usage", headers=auth(ws["read"][:-1] + "x"))).status_code == 401

    blob = await _everything_on_topics(iso)
    for scope in ("ingest", "read", "admin"):
        assert ws[scope].encode() not in blob, f"the {scope} key is in clear on a topic"
    key_records = await read_all(iso.stack.kafka, topic_name(API_KEYS, iso.prefix))
    assert {r.key.decode() for r in key_records} >= {
        hashlib.sha256(ws[s].encode()).hexdigest() for s in ("ingest", "read", "admin")
    }
    assert not [s for s in ("ingest", "read", "admin") if ws[s] in captured_logs.getvalue()]


async def test_a_webhook_secret_is_shown_once_and_sealed_on_its_topic(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with running(iso) as p:
        body = {
            "name": "b",
            "amount_usd": "100",
            "webhooks": [
                {"url": "http://127.0.0.1:9/hook"},
                {"url": "http://127.0.0.1:9/own", "secret": "my-own-secret-0123456789"},
            ],
        }

        async def created() -> dict[str, object] | None:
            r = await p.client.post("/v1/budgets", json=body, headers=auth(ws["admin"]))
            assert r.status_code in (201, 401), r.text
            return r.json() if r.status_code == 201 else None

        budget = await eventually(created)
        hooks = budget["webhooks"]
        assert isinstance(hooks, list)
        secrets = [h["secret"] for h in hooks]
        assert all(isinstance(s, str) and len(s) >= 16 for s in secrets) and "my-own-secret-0123456789" in secrets
        budget_id = budget["budget_id"]
        answers = [
            await p.client.get(f"/v1/budgets/{budget_id}", headers=auth(ws["admin"])),
            await p.client.get("/v1/budgets", headers=auth(ws["admin"])),
            await p.client.patch(f"/v1/budgets/{budget_id}", json={"amount_usd": "200"}, headers=auth(ws["admin"])),
            await p.client.get(f"/v1/budgets/{budget_id}/alerts", headers=auth(ws["admin"])),
        ]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert not [s for s in secrets if s in answer.text], answer.request.url
        shown = (await p.client.get(f"/v1/budgets/{budget_id}", headers=auth(ws["admin"]))).json()
        assert [h["secret"] for h in shown["webhooks"]] == [None, None]
    records = await read_all(iso.stack.kafka, topic_name(BUDGETS, iso.prefix))
    assert records
    blob = b"".join((r.value or b"") for r in records)
    for secret in secrets:
        assert isinstance(secret, str)
        assert secret.encode() not in blob and base64.b64encode(secret.encode()) not in blob


async def test_client_ips_are_recorded_nowhere(iso: Isolation, captured_logs: io.StringIO) -> None:
    """ingest keeps no client IP at all (no log field, no metric label, no record): so no log line, topic
    record or metric of a request carries the caller's address, direct or forwarded."""
    ws = await create_workspace(iso)
    async with running(iso, client=(CLIENT_IP, 40001)) as p:
        headers = {**auth(ws["ingest"]), "X-Forwarded-For": FORWARDED_IP, "X-Real-IP": FORWARDED_IP}

        async def sent() -> bool:
            r = await p.client.post(
                "/v1/events", json={"events": [usage_event(), usage_event(prompt="x")]}, headers=headers
            )
            return r.status_code == 202

        await eventually(sent)
        bad_bodies: list[object] = [{"events": []}, {"events": "x"}, [1]]
        for bad in bad_bodies:  # refusals log too
            await p.client.post("/v1/events", json=bad, headers=headers)
        await p.client.post(
            "/v1/events", json={"events": []}, headers={"Authorization": "Bearer nope", "X-Forwarded-For": FORWARDED_IP}
        )
        metrics = (await p.client.get("/metrics")).text
    logs = captured_logs.getvalue()
    assert logs  # the services did log (startup, refusals): the check below looked at something
    blob = await _everything_on_topics(iso)
    for ip in (CLIENT_IP, FORWARDED_IP):
        assert ip not in logs and ip not in metrics and ip.encode() not in blob


def test_the_kek_is_never_printed_or_logged(iso: Isolation, tmp_path: Path) -> None:
    env = {**os.environ, **iso.env(LOG_LEVEL="DEBUG")}
    outputs: list[str] = []
    for argv in (
        ["up", "--check"],
        ["run", "ingest", "--check"],
        ["workspace", "create", "kek-test"],
        ["topics", "list"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "spendstream.cli", *argv], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (argv, done.stderr)
        outputs.append(done.stdout + done.stderr)
    for service in ("ingest", "retention"):
        done = subprocess.run(
            [sys.executable, "-m", f"spendstream.{service}", "--check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        outputs.append(done.stdout + done.stderr)
    # A service started at DEBUG, asked something, then stopped: its whole log.
    log = tmp_path / "ingest.log"
    process = ServiceProcess("ingest", iso.env(LOG_LEVEL="DEBUG"), log)
    process.start()
    try:
        import httpx

        httpx.post(f"{process.url}/v1/events", json={"events": [usage_event()]}, timeout=10)
    finally:
        process.terminate()  # uvicorn re-raises SIGTERM after its graceful shutdown: the code is -15
    outputs.append(log.read_text())
    assert "workspace_id" in outputs[2]  # the create command did print its answer
    for text in outputs:
        assert not [form for form in _kek_forms(iso.kek) if form in text]


async def test_a_providers_admin_key_is_in_no_answer_log_line_or_topic(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    ws = await create_workspace(iso)
    admin_key = "sk-admin-leakcheck-Q7v2Lr9x0Tz4"
    forms = [admin_key, base64.b64encode(admin_key.encode()).decode(), admin_key[:-4]]
    # The provider refuses this key: the refusal travels through logs, state and an alert.
    with provider_server("openai", "another-key-entirely") as (url, provider):
        settings = iso.settings(ConnectorsSettings, connector_openai_base_url=url, connector_pull_seconds=0.3)
        async with serving([create_connectors(settings)]) as client:
            answers = [
                await client.post(
                    "/v1/connectors", json={"provider": "openai", "admin_key": admin_key}, headers=auth(ws["admin"])
                ),
                await client.post(
                    "/v1/connectors", json={"provider": "nope", "admin_key": admin_key}, headers=auth(ws["admin"])
                ),
                await client.post(
                    "/v1/connectors",
                    json={"provider": "openai", "admin_key": admin_key + " x"},
                    headers=auth(ws["admin"]),
                ),
            ]
            connector_id = answers[0].json()["connector_id"]

            async def refused() -> bool:
                shown = await client.get(f"/v1/connectors/{connector_id}", headers=auth(ws["admin"]))
                answers.append(shown)
                return bool(shown.json()["status"] == "unauthorised")

            await eventually(refused, timeout=30)
            answers.append(await client.get("/v1/connectors", headers=auth(ws["admin"])))
        assert provider.requests  # the key did reach the provider, and only there
    assert [a.status_code for a in answers[:3]] == [201, 422, 422]
    for answer in answers:
        assert not [f for f in forms if f in answer.text], answer.request.url
    assert not [f for f in forms if f in captured_logs.getvalue()]
    blob = await _everything_on_topics(iso)
    assert not [f for f in forms if f.encode() in blob]


def _audit_table(iso: Isolation) -> str:
    """Every column of every stored audit record of the test, as text: what a reader of the table sees."""
    client = clickhouse_client(iso.stack.clickhouse)
    rows = client.query(
        f"SELECT * APPLY(toString) FROM {iso.database}.audit_records ORDER BY workspace_id, seq"
    ).result_rows
    return "\n".join("\t".join(str(v) for v in row) for row in rows)


async def test_the_audit_log_holds_no_secret_e_mail_or_client_address(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    """Records published as the services publish them (the acting key or member id, the request's client
    address handed to AuditTrail, which keeps a keyed hash) and stored by rollup: no API key, KEK, e-mail or
    client address is in the table, its API answers, its export or the topic, and the address's hash is keyed
    (a plain SHA-256 of the address, which anyone can compute for every IPv4 address, is not stored)."""
    ws = await create_workspace(iso)
    email = "owner@example.com"
    async with running(iso, client=(CLIENT_IP, 40001)) as p:
        settings = iso.settings(BaseServiceSettings)
        broker = make_broker(settings, "tests-audit")
        await broker.connect()
        try:
            trail = AuditTrail(settings, broker, "people")
            done: list[tuple[str, AuditOutcome]] = [
                ("signin.password", "failure"),
                ("keys.issue", "allowed"),
                ("audit.read", "allowed"),
            ]
            for action, outcome in done:
                await trail.record(
                    workspace_id=ws["workspace_id"],
                    actor_kind="member",
                    actor_id="mem_0123",
                    action=action,
                    outcome=outcome,
                    target="key_0123",
                    request_id="req_0123",
                    client_address=CLIENT_IP,
                )
        finally:
            await broker.stop()

        async def listed() -> str | None:
            answer = await p.client.get("/v1/audit", headers=auth(ws["admin"]))
            return answer.text if answer.status_code == 200 and answer.json()["records"][2:] else None

        answers = [await eventually(listed, timeout=30)]
        for fmt in ("json", "csv"):
            answers.append((await p.client.get(f"/v1/audit/export?format={fmt}", headers=auth(ws["admin"]))).text)
    table = _audit_table(iso)
    assert "mem_0123" in table and "key_0123" in table  # the check below looked at the records
    secrets = [ws["ingest"], ws["read"], ws["admin"], email, CLIENT_IP, FORWARDED_IP, *_kek_forms(iso.kek)]
    plain = hashlib.sha256(CLIENT_IP.encode()).hexdigest()
    blob = await _everything_on_topics(iso)
    for text in (table, *answers):
        assert not [s for s in secrets if s in text]
        assert plain[:32] not in text
    assert not [s for s in secrets if s.encode() in blob]
    assert CLIENT_IP not in captured_logs.getvalue()


async def _everything_in_redis(iso: Isolation) -> bytes:
    """Keys and values of every Redis key of the test (strings, sets, hashes), as one blob."""
    client = aioredis.Redis.from_url(iso.stack.redis, decode_responses=False)
    blob = bytearray()

    def add(*parts: object) -> None:
        for part in parts:
            blob.extend(part if isinstance(part, bytes) else str(part).encode())
        blob.extend(b"\n")

    try:
        async for key in client.scan_iter(match=f"{iso.prefix}*", count=500):
            raw_kind = await client.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            add(key, kind)
            if kind == "string":
                add((await client.get(key)) or b"")
            elif kind == "set":
                add(*(await client.smembers(key)))
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    add(field, b"=", value)
    finally:
        await client.aclose()
    return bytes(blob)


async def test_passwords_totp_secrets_and_session_ids_are_in_no_log_topic_or_redis_value(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    """Sign-in's secrets in clear exist only in the answers meant to carry them: the password nowhere, the TOTP
    secret and backup codes in the enrolment's answers, the session id in its Set-Cookie. Logs (at DEBUG),
    every topic record and every Redis value hold them only hashed or sealed."""
    new_password = "Leakcheck-new-Passphrase-77"
    async with running_people(iso, signin_failures_per_account=50) as people:
        await people.member("ada@example.com")
        wrong = await people.signin("ada@example.com", "Leakcheck-wrong-Passphrase-1")
        unknown = await people.signin("nobody@example.com", "Leakcheck-unknown-Passphrase-2")
        first = await people.signin("ada@example.com")
        csrf = first.json()["csrf_token"]
        sessions = [people.session_cookie()]
        enrolment = await people.client.post("/v1/me/totp/enrol", headers={CSRF_HEADER: csrf})
        secret = enrolment.json()["secret"]
        confirmed = await people.client.post(
            "/v1/me/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers={CSRF_HEADER: csrf}
        )
        codes = confirmed.json()["backup_codes"]
        second = await people.signin("ada@example.com", backup_code=codes[0])
        sessions.append(people.session_cookie())
        weak = await people.client.post(
            "/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "password1234"},
            headers={CSRF_HEADER: second.json()["csrf_token"]},
        )
        changed = await people.client.post(
            "/v1/me/password",
            json={"current_password": PASSWORD, "new_password": new_password},
            headers={CSRF_HEADER: second.json()["csrf_token"]},
        )
        assert changed.status_code == 200, changed.text
        sessions.append(people.session_cookie())
        me = await people.client.get("/v1/me")
    assert [wrong.status_code, unknown.status_code, weak.status_code, me.status_code] == [401, 401, 422, 200]
    live = [s for s in sessions if s]
    assert len(live) == 3
    passwords = [
        PASSWORD,
        new_password,
        "password1234",
        "Leakcheck-wrong-Passphrase-1",
        "Leakcheck-unknown-Passphrase-2",
    ]
    secrets = [secret, base64.b32decode(secret).hex(), *codes, *[c.replace("-", "") for c in codes]]
    for answer in (wrong, unknown, first, second, weak, changed, me):
        assert not [p for p in passwords if p in answer.text], answer.request.url
    for answer in (wrong, unknown, first, second, weak, changed, me):
        assert secret not in answer.text and not [c for c in codes if c in answer.text]
    logs = captured_logs.getvalue()
    assert logs  # the services did log (startup at least): the check below looked at something
    topics = await _everything_on_topics(iso)
    stored = await _everything_in_redis(iso)
    assert b"people:session:" in stored and b"$argon2id$" in stored  # sessions and hashes were looked at
    for form in [*passwords, *secrets, *live, *[s[:24] for s in live]]:
        assert form not in logs, "a sign-in secret is in the logs"
        assert form.encode() not in topics, "a sign-in secret is on a topic"
        assert form.encode() not in stored, "a sign-in secret is in Redis in clear"


async def test_invitation_and_sign_in_link_tokens_are_in_no_answer_log_line_topic_or_redis_key(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    from spendstream.people.bootstrap import add_member
    from tests.people.world import people_service, redis_dump

    # Not the service's logs: aiosmtpd's ("mail.log") is the recipient's mail server, which reads the message by
    # design, and httpx's is the browser's, which knows the link it follows.
    for handler in [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is captured_logs]:
        handler.addFilter(lambda record: not record.name.startswith(("mail.log", "httpx")))
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        answers = [await p.client.get("/v1/invitations", headers=owner.headers())]
        _, token = await p.invite(owner, "invitee@example.com", "member")
        answers.append(await p.client.get("/v1/invitations", headers=owner.headers()))
        answers.append(await p.accept(token, password="short"))
        answers.append(await p.accept(token))
        answers.append(await p.accept(token))
        added = await add_member(p.settings.model_copy(update={"smtp_host": ""}), ws, "second@example.com", "admin")
        assert added.link is not None
        link_token = added.link.rsplit("=", 1)[1]
        answers.append(await p.client.get("/" + added.link.split("/", 3)[3]))
        answers.append(await p.client.get("/" + added.link.split("/", 3)[3]))
        stored = await redis_dump(p.settings)
    assert [a.status_code for a in answers] == [200, 200, 422, 200, 410, 302, 401]
    for secret in (token, link_token):
        assert not [a for a in answers if secret in a.text or secret in str(a.headers)]
        assert secret not in captured_logs.getvalue()
        assert secret.encode() not in stored
        assert secret.encode() not in await _everything_on_topics(iso)


async def test_a_workspace_erasures_receipt_token_is_shown_once_and_in_no_log_line_or_topic(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    ws = await create_workspace(iso)
    async with running(iso) as p:

        async def asked() -> httpx.Response | None:
            r = await p.client.post("/v1/deletions", json={"request_id": "erase-1"}, headers=auth(ws["admin"]))
            assert r.status_code in (202, 401), r.text  # 401 until retention has replayed the new key
            return r if r.status_code == 202 else None

        first = await eventually(asked, timeout=30)
        token = first.json()["receipt_token"]
        assert isinstance(token, str) and len(token) >= 43
        answers = [
            await p.client.post("/v1/deletions", json={"request_id": "erase-1"}, headers=auth(ws["admin"])),
            await p.client.get("/v1/deletions/erase-1/receipt", headers={"X-Receipt-Token": token}),
            await p.client.get("/v1/deletions/erase-1/receipt", headers={"X-Receipt-Token": token[::-1]}),
            await p.client.get("/v1/deletions", headers=auth(ws["admin"])),
        ]
        # The key may already be erased with its workspace by the time the list is asked: 200 or 401, never the token.
        assert [a.status_code for a in answers[:3]] == [200, 200, 401] and answers[3].status_code in (200, 401)
        assert not [a for a in answers if token in a.text or token in str(a.headers)]
    assert "erase-1" in captured_logs.getvalue()  # the request's own lines were captured
    assert token not in captured_logs.getvalue()
    on_topics = await _everything_on_topics(iso)
    assert hashlib.sha256(token.encode()).hexdigest().encode() in on_topics
    assert token.encode() not in on_topics
