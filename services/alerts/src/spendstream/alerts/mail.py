"""Alert e-mails over SMTP (`spendstream.common.smtp`), sent from a worker thread; failures classified for the
retrying delivery log."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from spendstream.alerts.settings import AlertsSettings
from spendstream.alerts.webhooks import Failed, Refused
from spendstream.common import smtp


class MailSender:
    def __init__(self, settings: AlertsSettings) -> None:
        self._settings = settings

    @property
    def configured(self) -> bool:
        return self._settings.smtp_configured

    async def send(self, to: str, subject: str, text: str, alert_id: str) -> None:
        if not self.configured:
            raise Refused("smtp_not_configured")
        message = smtp.message(self._settings, to, subject, text)
        # Receivers (and tests) can recognise a re-sent alert by this header.
        message["X-Spendstream-Delivery"] = alert_id
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        try:
            smtp.deliver(self._settings, message)
        except smtplib.SMTPRecipientsRefused:
            raise Refused("recipient_refused") from None
        except (smtplib.SMTPException, OSError) as exc:
            code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else 0
            if 500 <= code < 600:
                raise Refused(f"smtp_{code}") from None
            raise Failed(f"smtp_{code}" if code else "connection_error") from None
