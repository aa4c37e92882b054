"""Alert e-mails over SMTP (STARTTLS when configured), sent from a worker thread with the stdlib client."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from spendstream.alerts.settings import AlertsSettings
from spendstream.alerts.webhooks import Failed, Refused


class MailSender:
    def __init__(self, settings: AlertsSettings) -> None:
        self._settings = settings

    @property
    def configured(self) -> bool:
        return bool(self._settings.smtp_host)

    async def send(self, to: str, subject: str, text: str, alert_id: str) -> None:
        if not self.configured:
            raise Refused("smtp_not_configured")
        message = EmailMessage()
        message["From"] = self._settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        # Receivers (and tests) can recognise a re-sent alert by this header.
        message["X-Spendstream-Delivery"] = alert_id
        message.set_content(text)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self._settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.webhook_timeout_seconds) as smtp:
                if s.smtp_starttls:
                    # Verified like any TLS client (hostname and chain), never downgraded to plain text.
                    smtp.starttls(context=ssl.create_default_context(cafile=s.smtp_ca_file or None))
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused:
            raise Refused("recipient_refused") from None
        except (smtplib.SMTPException, OSError) as exc:
            code = exc.smtp_code if isinstance(exc, smtplib.SMTPResponseException) else 0
            if 500 <= code < 600:
                raise Refused(f"smtp_{code}") from None
            raise Failed(f"smtp_{code}" if code else "connection_error") from None
