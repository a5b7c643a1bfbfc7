"""Secure email with aiosmtplib: TLS as configured, retries with backoff, a subject tag.

``REKEY_SMTP_TLS`` is ``starttls`` or ``implicit`` for a real mail server; the server's
certificate is always verified (against ``REKEY_SMTP_CA_FILE`` when set, else the system's
CAs), and its name must match ``REKEY_SMTP_HOST``. ``none`` is for the local mail sink only:
a mailer refuses it for any host but a loopback one, since the mail carries temporary passwords.

A mailer keeps its SMTP connections open between mails (up to :data:`KEPT_CONNECTIONS` idle,
each for at most :data:`KEPT_SECONDS`): opening one per mail cost TCP and TLS handshakes, EHLO,
the client's own host name looked up (``socket.getfqdn``, in a worker thread) and QUIT, about
half of a mail's CPU in a service (docs/benchmarks.md). A kept connection is reused only while
its transport is still open (a server that closed it idle is noticed by the event loop) and is
dropped after any failure; a send that fails on it is an ordinary failed attempt, retried by
:meth:`Mailer.send_with_retries` exactly as a failure on a fresh connection is, so reuse adds no
way for a mail to go twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from email.message import EmailMessage
from email.utils import getaddresses

import aiosmtplib

from shared.hosts import is_loopback
from shared.masking import mask_email
from shared.metrics import MAILS_FAILED, MAILS_SENT
from shared.settings import Settings

log = logging.getLogger(__name__)

# Idle SMTP connections a mailer keeps for the next mails, and for how long. Many servers close
# an idle client after a minute or more (RFC 5321 4.5.3.2.7 asks them to wait at least 5 minutes);
# a connection idle longer than this is closed by us rather than risked.
KEPT_CONNECTIONS = 4
KEPT_SECONDS = 30.0


class PlainMailRefused(RuntimeError):
    """Mail in clear was asked for to a host beyond this machine."""


def check_mail_transport(settings: Settings) -> None:
    """Raises :class:`PlainMailRefused` for ``REKEY_SMTP_TLS=none`` to a non-loopback host."""
    if settings.smtp_tls == "none" and not is_loopback(settings.smtp_host):
        raise PlainMailRefused(
            f"refusing to send mail in clear to {settings.smtp_host!r}: REKEY_SMTP_TLS=none is "
            "allowed only for a loopback REKEY_SMTP_HOST (127.0.0.0/8, ::1, localhost); "
            "set REKEY_SMTP_TLS=starttls or implicit"
        )


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
        check_mail_transport(settings)  # at the service's start: no mail leaves in clear
        self.settings = settings
        self.attempts = attempts if attempts is not None else settings.mail_attempts
        self.first_delay = (
            first_delay if first_delay is not None else settings.mail_first_retry_seconds
        )
        self.tls_context = tls_context or tls_context_for(settings)
        # (connection, its event loop, when it was last used): the newest last
        self._kept: list[tuple[aiosmtplib.SMTP, asyncio.AbstractEventLoop, float]] = []
        self._local_hostname: str | None = None  # looked up once, not per connection

    def message(self, to: str, subject: str, body: str, *, tagged: bool = True) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_sender
        msg["To"] = to
        tag = self.settings.smtp_subject_tag if tagged else ""
        msg["Subject"] = f"{tag} {subject}" if tag else subject
        msg.set_content(body)
        return msg

    async def send(self, msg: EmailMessage) -> None:
        """Send once, over a kept connection or a new one; raises on failure.

        The caller decides about retries. The connection is kept for the next mail only when
        this one was accepted; after any failure it is closed.
        """
        smtp = self._take() or await self._connect()
        try:
            await smtp.send_message(msg)
        except BaseException:
            smtp.close()
            raise
        self._keep(smtp)

    def _take(self) -> aiosmtplib.SMTP | None:
        loop, now = asyncio.get_running_loop(), time.monotonic()
        while self._kept:
            smtp, kept_on, since = self._kept.pop()
            if kept_on is loop and smtp.is_connected and now - since < KEPT_SECONDS:
                return smtp
            self._drop(smtp)
        return None

    def _keep(self, smtp: aiosmtplib.SMTP) -> None:
        self._kept.append((smtp, asyncio.get_running_loop(), time.monotonic()))
        while len(self._kept) > KEPT_CONNECTIONS:
            self._drop(self._kept.pop(0)[0])

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            local_hostname=self._local_hostname,
            username=s.smtp_username or None,
            password=s.smtp_password.get_secret_value() or None,
            use_tls=s.smtp_tls == "implicit",
            start_tls=s.smtp_tls == "starttls",
            tls_context=self.tls_context,
            timeout=10,
        )
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()
            raise
        return smtp

    @staticmethod
    def _drop(smtp: aiosmtplib.SMTP) -> None:
        """Close a connection no longer kept (its transport only: no QUIT owed to a server)."""
        with contextlib.suppress(Exception):
            smtp.close()

    def close(self) -> None:
        """Close the kept connections (at the service's stop)."""
        kept, self._kept = self._kept, []
        for smtp, _, _ in kept:
            self._drop(smtp)

    async def send_with_retries(self, msg: EmailMessage) -> str | None:
        """Returns None when sent, or the last error after the retry budget."""
        delay = self.first_delay
        error = "not attempted"
        for attempt in range(1, self.attempts + 1):
            try:
                await self.send(msg)
                MAILS_SENT.inc()
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
        MAILS_FAILED.inc()
        return error

