"""The help desk's mail intake: an SMTP endpoint (aiosmtpd) that turns reset mails into tickets.

At the SMTP level the intake refuses what it can decide there: recipients other than the help
desk address (550) and mail over ``REKEY_INTAKE_MAX_BYTES`` (552); the sending server then
keeps the mail and tells its sender. Every mail it accepts (250) either becomes a ticket (or
joins the account's open one) or is quarantined with a reason: its raw bytes in the quarantine
folder and a ``MailQuarantined`` event. Nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import ValidationError

from services.ticketing.commands import RequestReset
from shared.errors import RekeyError
from shared.settings import Settings

log = logging.getLogger(__name__)

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
        message = cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))
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


class IntakeHandler:
    """aiosmtpd handler: the help desk address only; each mail a ticket or quarantined."""

    def __init__(self, settings: Settings, app: Any, on_ticket: Any = None) -> None:
        self.settings = settings
        self.app = app
        self.on_ticket = on_ticket  # called after a ticket is filed (sends the acknowledgement)
        self.folder = Path(settings.intake_quarantine_dir or Path(settings.data_dir) / "quarantine")

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
            outcome = await asyncio.to_thread(self.take, raw, str(envelope.mail_from or ""))
        except Exception:
            log.exception("the intake could not record a mail")
            return "451 4.3.0 Try again later"
        return outcome

    def take(self, raw: bytes, mail_from: str) -> str:
        parsed = parse_request(raw, self.settings)
        if isinstance(parsed, RequestReset):
            try:
                result = self.app.request_reset(parsed, acknowledge=True)
            except RekeyError as exc:
                parsed = Refusal(exc.message)
            else:
                log.info("intake mail filed as ticket %s", result["ticket_number"])
                if self.on_ticket is not None:
                    self.on_ticket()
                return "250 2.0.0 Request received; an acknowledgement follows"
        self.quarantine(raw, mail_from, parsed.reason)
        return "250 2.0.0 Received"

    def quarantine(self, raw: bytes, mail_from: str, reason: str) -> None:
        digest = hashlib.sha256(raw).hexdigest()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{digest[:32]}.eml"
        temporary = path.with_suffix(".part")
        temporary.write_bytes(raw)
        temporary.replace(path)
        self.app.quarantine(reason, mail_from, len(raw), digest, str(path))
        log.warning("intake mail quarantined: %s", reason)


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
