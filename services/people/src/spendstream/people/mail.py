"""people's e-mails (invitations) over SMTP (`spendstream.common.smtp`), sent from a worker thread.

An invitation either goes out now or the request fails: no retrying delivery log as alerts keeps."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from spendstream.common import smtp
from spendstream.people.settings import PeopleSettings


class MailUnavailable(Exception):
    """The message could not be handed to the SMTP server (not configured, refused, unreachable)."""


class MailSender:
    def __init__(self, settings: PeopleSettings) -> None:
        self._settings = settings

    @property
    def configured(self) -> bool:
        return self._settings.smtp_configured

    async def send(self, to: str, subject: str, text: str) -> None:
        """Hand one message to the SMTP server; MailUnavailable (with a code, never the message) otherwise."""
        if not self.configured:
            raise MailUnavailable("smtp_not_configured")
        await asyncio.to_thread(self._send, smtp.message(self._settings, to, subject, text))

    def _send(self, message: EmailMessage) -> None:
        try:
            smtp.deliver(self._settings, message)
        except (smtplib.SMTPException, OSError) as exc:
            code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else 0
            raise MailUnavailable(f"smtp_{code}" if code else "smtp_connection_error") from None
