"""Alert e-mail through a real SMTP server that requires STARTTLS (aiosmtpd with a certificate of the test's own)."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spendstream.alerts.mail import MailSender
from spendstream.alerts.settings import AlertsSettings
from spendstream.alerts.webhooks import Failed, Refused
from tests.support import free_port


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Any:
    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    yield port, cert, inbox
    controller.stop()


def _settings(port: int, **values: Any) -> AlertsSettings:
    return AlertsSettings(smtp_host="127.0.0.1", smtp_port=port, kek="", **values)


async def test_mail_goes_over_starttls_verified_against_the_configured_ca(tls_smtp: Any) -> None:
    port, cert, inbox = tls_smtp
    await MailSender(_settings(port, smtp_ca_file=str(cert))).send("fin@example.com", "75 %", "body", "alert-1")
    [raw] = inbox.messages
    message: Message = message_from_bytes(raw)
    assert (message["To"], message["Subject"], message["X-Spendstream-Delivery"]) == (
        "fin@example.com",
        "75 %",
        "alert-1",
    )


async def test_an_unverifiable_certificate_is_never_trusted_and_nothing_goes_in_clear(tls_smtp: Any) -> None:
    port, _, inbox = tls_smtp
    with pytest.raises(Failed):
        await MailSender(_settings(port)).send("fin@example.com", "75 %", "body", "alert-1")
    # Without STARTTLS the server refuses for good (530): the channel is dead-lettered, not retried.
    with pytest.raises(Refused, match="smtp_530"):
        await MailSender(_settings(port, smtp_starttls=False)).send("fin@example.com", "75 %", "body", "alert-1")
    assert inbox.messages == []
