"""Secure email with aiosmtplib: TLS as configured, retries with backoff, a subject tag."""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import EmailMessage

import aiosmtplib

from shared.settings import Settings

log = logging.getLogger(__name__)


class Mailer:
    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int = 5,
        first_delay: float = 1.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.attempts = attempts
        self.first_delay = first_delay
        self.tls_context = tls_context

    def message(self, to: str, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_sender
        msg["To"] = to
        tag = self.settings.smtp_subject_tag
        msg["Subject"] = f"{tag} {subject}" if tag else subject
        msg.set_content(body)
        return msg

    async def send(self, msg: EmailMessage) -> None:
        """Send once; raises on failure. The caller decides about retries."""
        s = self.settings
        await aiosmtplib.send(
            msg,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value() or None,
            use_tls=s.smtp_tls == "implicit",
            start_tls=s.smtp_tls == "starttls",
            tls_context=self.tls_context,
            timeout=10,
        )

    async def send_with_retries(self, msg: EmailMessage) -> str | None:
        """Returns None when sent, or the last error after the retry budget."""
        delay = self.first_delay
        error = "not attempted"
        for attempt in range(1, self.attempts + 1):
            try:
                await self.send(msg)
                return None
            except (aiosmtplib.SMTPException, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("mail to the user's address failed (attempt %s): %s", attempt, error)
                if attempt < self.attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        return error
