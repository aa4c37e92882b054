"""people's e-mails (invitations) over SMTP, STARTTLS when configured, sent from a worker thread.

The same settings as alerts' `mail.py`; a separate sender because alerts classifies failures for its retrying
delivery log, while an invitation either goes out now or the request fails."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from spendstream.people.settings import PeopleSettings


class MailUnavailable(Exception):
    """The message could not be handed to the SMTP server (not configured, refused, unreachable)."""


class MailSender:
    def __init__(self, settings: PeopleSettings) -> None:
        self._settings = settings

    @property
    def configured(self) -> bool:
        return bool(self._settings.smtp_host)

    async def send(self, to: str, subject: str, text: str) -> None:
        """Hand one message to the SMTP server; MailUnavailable (with a code, never the message) otherwise."""
        if not self.configured:
            raise MailUnavailable("smtp_not_configured")
        message = EmailMessage()
        message["From"] = self._settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self._settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds) as smtp:
                if s.smtp_starttls:
                    # Verified like any TLS client (hostname and chain), never downgraded to plain text.
                    smtp.starttls(context=ssl.create_default_context(cafile=s.smtp_ca_file or None))
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else 0
            raise MailUnavailable(f"smtp_{code}" if code else "smtp_connection_error") from None
