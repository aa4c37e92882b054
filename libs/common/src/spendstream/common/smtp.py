"""E-mail over SMTP, as every service that sends mail speaks it (alerts' alert e-mails, people's invitations).

One set of `SPENDSTREAM_SMTP_*` settings configures them all, so an operator sets the mail server once; each
service classifies the exceptions `deliver` raises by its own needs (alerts retries, an invitation fails now).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from pydantic import BaseModel, Field, SecretStr


class SmtpSettings(BaseModel):
    """The SMTP fields, mixed into a service's settings; an empty host disables e-mail."""

    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_ca_file: str = ""  # a CA bundle to verify the SMTP server with; empty: the system's
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = Field(default="spendstream@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host)


def message(settings: SmtpSettings, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text message from the configured sender."""
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    return msg


def deliver(settings: SmtpSettings, msg: EmailMessage) -> None:
    """Hand one message to the SMTP server. Blocking: call it from a worker thread.

    Raises what smtplib raises (`smtplib.SMTPException`, `OSError`); never a message's content."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            # Verified like any TLS client (hostname and chain), never downgraded to plain text.
            smtp.starttls(context=ssl.create_default_context(cafile=settings.smtp_ca_file or None))
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(msg)
