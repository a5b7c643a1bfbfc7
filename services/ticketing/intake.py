"""The help desk's mail intake: an SMTP endpoint (aiosmtpd) that turns reset mails into tickets.

At the SMTP level the intake refuses what it can decide there: recipients other than the help
desk address (550), mail over ``REKEY_INTAKE_MAX_BYTES`` (552), mail over the intake's limits
(451) and mail to quarantine when the quarantine is full (452); the sending server then keeps
the mail (and retries a 4xx later) or tells its sender. Every mail it accepts (250) either
becomes a ticket (or joins the account's open one) or is quarantined with a reason: its raw
bytes in the quarantine folder and a ``MailQuarantined`` event. Nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import ValidationError

from services.ticketing.commands import RequestReset
from services.ticketing.mime_limits import TooComplex, parse_bounded
from shared.concurrency import in_thread
from shared.context import acting
from shared.contracts.envelope import ActionContext
from shared.errors import RateLimited, RekeyError
from shared.logs import keep_mail_out_of_logs
from shared.settings import Settings

log = logging.getLogger(__name__)
keep_mail_out_of_logs()  # received messages are logged line by line at DEBUG

ASKS_FOR_RESET = re.compile(
    r"\b(mfa|multi[- ]?factor|two[- ]?factor|2fa|authenticator|reset|new (?:phone|cell))", re.I
)
LABELS = {
    "username": re.compile(r"^\s*(?:portal\s+)?user\s*-?\s*name\s*[:=]\s*(.+?)\s*$", re.I | re.M),
    "name": re.compile(r"^\s*(?:full\s+)?name\s*[:=]\s*(.+?)\s*$", re.I | re.M),
    "reason": re.compile(r"^\s*reason\s*[:=]\s*(.+?)\s*$", re.I | re.M),
}
USERNAME_SHAPE = re.compile(r"^[A-Za-z0-9._%+\-]+(?:@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})?$")


@dataclass(frozen=True)
class Refusal:
    """Why a mail cannot become a ticket (it is quarantined with this reason)."""

    reason: str


def clean(text: str, limit: int) -> str:
    """One line of printable text: control characters (header injection, ANSI) removed."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()[:limit]


def parse_request(raw: bytes, settings: Settings) -> RequestReset | Refusal:
    """The reset request a mail makes, or the reason it makes none."""
    try:
        message = parse_bounded(
            raw, max_depth=settings.intake_mime_max_depth, max_parts=settings.intake_mime_max_parts,
            max_seconds=settings.intake_mime_max_seconds,
        )
    except TooComplex as exc:
        return Refusal(str(exc))
    except Exception as exc:  # the parser is lenient; a hostile structure may still break it
        return Refusal(f"malformed message ({type(exc).__name__})")
    try:
        sender_name, sender = parseaddr(str(message.get("from", "")))
        subject = clean(str(message.get("subject", "")), 300)
    except Exception as exc:  # the parser is lenient; header decoding may still fail
        return Refusal(f"malformed headers ({type(exc).__name__})")
    if message.defects and not sender:
        return Refusal("malformed message: " + type(message.defects[0]).__name__)
    if not sender or "@" not in sender:
        return Refusal("no sender address in From")
    try:
        part = message.get_body(preferencelist=("plain",))
    except Exception:
        part = None
    if part is None:
        return Refusal(f"no plain-text part ({message.get_content_type()})")
    try:
        body = part.get_content()
    except Exception as exc:
        return Refusal(f"undecodable text ({type(exc).__name__})")
    if not isinstance(body, str):
        return Refusal("the text part is not text")
    body = body.replace("\r\n", "\n")[:20_000]
    if not ASKS_FOR_RESET.search(f"{subject}\n{body}"):
        return Refusal("does not ask for an MFA reset")

    def label(name: str) -> str | None:
        found = LABELS[name].search(body)
        return clean(found.group(1), 2000) if found else None

    username = label("username")
    if username is None:
        domain = re.escape(settings.portal_username_domain)
        found = re.search(rf"[A-Za-z0-9._%+\-]+@{domain}\b", body, re.I)
        if found:
            username = found.group(0)
        elif sender.lower().endswith("@" + settings.portal_username_domain.lower()):
            username = sender
    if not username:
        return Refusal("no portal username in the message")
    username = username.strip("<>\"' ")
    if not USERNAME_SHAPE.match(username) or len(username) > 254:
        return Refusal("the portal username is not a valid username")
    name = label("name") or clean(sender_name, 200) or sender.split("@")[0]
    reason = label("reason") or _first_words(body) or subject or "MFA reset requested by email"
    try:
        return RequestReset(
            name=clean(name, 200), email=sender, username=username, reason=clean(reason, 2000),
            channel="email",
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        return Refusal(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def _first_words(body: str) -> str:
    lines = []
    for line in body.splitlines():
        line = line.strip()
        if not line or line.startswith(">") or any(p.match(line) for p in LABELS.values()):
            continue
        if line.startswith("--"):
            break
        lines.append(line)
        if sum(len(x) for x in lines) > 300:
            break
    return clean(" ".join(lines), 500)


def sender_domain(address: str) -> str:
    """The domain the intake's per-domain limit counts (``-`` for a mail without one)."""
    return clean(address.rpartition("@")[2], 255).lower() or "-"


def refused_for_now(exc: RateLimited) -> str:
    """A temporary SMTP refusal: the sending server keeps the mail and tries again later."""
    log.warning("intake mail refused for now: %s", exc.message)
    return f"451 4.7.1 {clean(exc.message, 400)}"


class IntakeHandler:
    """aiosmtpd handler: the help desk address only; each mail a ticket or quarantined."""

    def __init__(self, settings: Settings, app: Any, on_ticket: Any = None) -> None:
        self.settings = settings
        self.app = app
        self.on_ticket = on_ticket  # called after a ticket is filed (sends the acknowledgement)
        self.folder = Path(settings.intake_quarantine_dir or Path(settings.data_dir) / "quarantine")
        self.keeping = asyncio.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.strip().lower() != self.settings.helpdesk_address.strip().lower():
            return "550 5.1.1 This server only accepts mail for the help desk"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="surrogateescape")
        try:
            with acting(ActionContext(channel="mail")):
                return await self.take(raw, str(envelope.mail_from or ""))
        except Exception:
            log.exception("the intake could not record a mail")
            return "451 4.3.0 Try again later"

    async def take(self, raw: bytes, mail_from: str) -> str:
        """File the mail's request, or quarantine it; the application only through ``in_thread``
        (a second mail joining a ticket races the acknowledgement being recorded on it)."""
        parsed = await asyncio.to_thread(parse_request, raw, self.settings)
        domain = sender_domain(str(parsed.email) if isinstance(parsed, RequestReset) else mail_from)
        if isinstance(parsed, Refusal):
            return await self.quarantine(raw, mail_from, parsed, domain)
        # A mail server that sends the same mail again (our answer timed out) files nothing new.
        parsed = parsed.model_copy(update={"idempotency_key": mail_key(raw)})
        try:
            result = await in_thread(
                self.app.request_reset, parsed, acknowledge=True, by_mail_from=domain
            )
        except RateLimited as exc:
            return refused_for_now(exc)
        except RekeyError as exc:  # already counted against the intake's limits
            return await self.quarantine(raw, mail_from, Refusal(exc.message), None)
        log.info("intake mail filed as ticket %s", result["ticket_number"])
        if self.on_ticket is not None:
            self.on_ticket()
        return "250 2.0.0 Request received"

    async def quarantine(self, raw: bytes, mail_from: str, refusal: Refusal, domain: str | None
                         ) -> str:
        """Keep a mail that makes no ticket, if the quarantine has room and the intake's limits
        (``domain``: still to be counted) allow it; else refuse it for now, recording nothing."""
        async with self.keeping:  # one mail at a time checks the room and takes it
            if not await asyncio.to_thread(self.room_for, len(raw)):
                log.warning("intake mail refused, the quarantine is full: %s", refusal.reason)
                return "452 4.3.1 The help desk's quarantine is full; try again later"
            if domain is not None:
                try:
                    await in_thread(self.app.admit_mail, domain)
                except RateLimited as exc:
                    return refused_for_now(exc)
            path, digest = await asyncio.to_thread(self.keep, raw)
        await in_thread(self.app.quarantine, refusal.reason, mail_from, len(raw), digest, path)
        log.warning("intake mail quarantined: %s", refusal.reason)
        return "250 2.0.0 Received"

    def room_for(self, size: int) -> bool:
        """Whether the quarantine folder stays within its caps (mails and bytes) with one more."""
        if not self.folder.is_dir():
            return True
        sizes = [entry.stat().st_size for entry in os.scandir(self.folder) if entry.is_file()]
        return (len(sizes) < self.settings.intake_quarantine_max_mails
                and sum(sizes) + size <= self.settings.intake_quarantine_max_bytes)

    def keep(self, raw: bytes) -> tuple[str, str]:
        """The raw mail into the quarantine folder; its path and SHA-256."""
        digest = hashlib.sha256(raw).hexdigest()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{digest[:32]}.eml"
        temporary = path.with_suffix(".part")
        temporary.write_bytes(raw)
        temporary.replace(path)
        return str(path), digest


async def serve_intake(settings: Settings, handler: IntakeHandler, stopping: asyncio.Event) -> None:
    """Listen on ``intake_host:intake_port`` until ``stopping`` is set."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=settings.intake_max_bytes,
            enable_SMTPUTF8=True,
            hostname="rekey-intake",
            ident="Rekey help desk intake",
        ),
        host=settings.intake_host,
        port=settings.intake_port,
    )
    log.info("mail intake on %s:%s", settings.intake_host, settings.intake_port)
    try:
        await stopping.wait()
    finally:
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 2)
        except TimeoutError:
            log.debug("intake connections still open at stop")


def mail_key(raw: bytes) -> str | None:
    """The idempotency key of one mail: the digest of its Message-ID (None without one)."""
    from email.parser import BytesHeaderParser

    message_id = str(BytesHeaderParser().parsebytes(raw).get("Message-ID") or "").strip()
    if not message_id:
        return None
    return "mail-" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:40]
