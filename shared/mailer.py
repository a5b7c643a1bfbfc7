"""Secure email with aiosmtplib: TLS as configured, retries with backoff, a subject tag.

``REKEY_SMTP_TLS`` is ``starttls`` or ``implicit`` for a real mail server; the server's
certificate is always verified (against ``REKEY_SMTP_CA_FILE`` when set, else the system's
CAs), and its name must match ``REKEY_SMTP_HOST``. ``none`` is for the local mail sink only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import EmailMessage
from email.utils import getaddresses

import aiosmtplib

from shared.masking import mask_email
from shared.settings import Settings

log = logging.getLogger(__name__)


def tls_context_for(settings: Settings) -> ssl.SSLContext | None:
    """A verifying client context (certificate chain and host name), or None without TLS."""
    if settings.smtp_tls == "none":
        return None
    context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Mailer:
    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int | None = None,
        first_delay: float | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.attempts = attempts if attempts is not None else settings.mail_attempts
        self.first_delay = (
            first_delay if first_delay is not None else settings.mail_first_retry_seconds
        )
        self.tls_context = tls_context or tls_context_for(settings)

    def message(self, to: str, subject: str, body: str, *, tagged: bool = True) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_sender
        msg["To"] = to
        tag = self.settings.smtp_subject_tag if tagged else ""
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
            except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                for address in (str(msg["To"] or ""), *getaddresses([str(msg["To"] or "")])[0][1:]):
                    if address:
                        error = error.replace(address, mask_email(address))
                log.warning("sending a mail failed (attempt %s of %s): %s", attempt, self.attempts, error)
                if attempt < self.attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        return error
