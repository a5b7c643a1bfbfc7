"""What the local stand-ins caught: the mail sink's ``.eml`` files and the Twilio sim's texts
and calls, read back for the portal's developer pages, the demo, the benchmarks and tests.

The stand-ins themselves are tooling (``rekey.stack``); the formats of their folders live here
so the product's developer pages can read them without importing tooling.
"""

from __future__ import annotations

import email
import email.policy
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import cast

TIME_FORMAT = "%Y%m%dT%H%M%S.%f"
# Envelope headers prepended to the stored message, as aiosmtpd's own Message handler
# names them: the envelope recipients include Bcc, which the headers do not show.
MAIL_FROM_HEADER = "X-MailFrom"
RCPT_TO_HEADER = "X-RcptTo"


# --- mail (rekey.stack.mailsink writes it) --------------------------------------------------
@dataclass(frozen=True)
class Mail:
    """One stored message, with the parts tests and people look at."""

    path: Path
    received_at: datetime
    sender: str
    to: list[str]
    subject: str
    body: str

    def message(self) -> EmailMessage:
        """The whole parsed message, for headers, HTML parts or attachments."""
        return _parse(self.path.read_bytes())


def _mail_paths(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.eml") if not p.name.startswith("."))


def list_mails(folder: Path | str) -> list[Mail]:
    """Every stored message, oldest first; a missing folder holds no mail."""
    return [_stored_mail(path) for path in _mail_paths(folder)]


def newest_mails(folder: Path | str) -> Iterator[Mail]:
    """The stored messages, newest first, each parsed only when reached."""
    return (_stored_mail(path) for path in reversed(_mail_paths(folder)))


@functools.lru_cache(maxsize=4096)
def _stored_mail(path: Path) -> Mail:
    """A stored message never changes (the sink writes it under a temporary name and renames
    it into the folder): parsed once, however often a waiting caller reads the folder. A
    benchmark's or test's poll used to parse every message of the folder each time."""
    return read_mail(path)


def latest_mail_to(folder: Path | str, address: str, subject_contains: str | None = None) -> Mail | None:
    """The newest message for ``address`` (case-insensitive), optionally by subject."""
    wanted = address.strip().lower()
    for mail in newest_mails(folder):
        if wanted not in (to.lower() for to in mail.to):
            continue
        if subject_contains is not None and subject_contains not in mail.subject:
            continue
        return mail
    return None


def read_mail(path: Path) -> Mail:
    """Parse one stored ``.eml`` file."""
    message = _parse(path.read_bytes())
    envelope_to = [addr for _, addr in getaddresses([str(message.get(RCPT_TO_HEADER, ""))])]
    header_to = [addr for _, addr in getaddresses([str(h) for h in message.get_all("to", [])])]
    return Mail(
        path=path,
        received_at=_received_at(path),
        sender=str(message.get("from", "") or message.get(MAIL_FROM_HEADER, "")),
        to=[addr for addr in (envelope_to or header_to) if addr],
        subject=str(message.get("subject", "")),
        body=_text_body(message),
    )


def _parse(data: bytes) -> EmailMessage:
    # policy.default makes the parser build EmailMessage objects.
    return cast(EmailMessage, email.message_from_bytes(data, policy=email.policy.default))


def _text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    content = part.get_content()
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    # SMTP carries CRLF line ends; callers compare against Python strings.
    return str(content).replace("\r\n", "\n")


def _received_at(path: Path) -> datetime:
    stamp = path.name.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


# --- texts and calls (rekey.stack.twilio_sim writes them) ------------------------------
@dataclass
class Text:
    sid: str
    to: str
    from_: str
    body: str
    created_at: str


@dataclass
class Call:
    sid: str
    to: str
    from_: str
    status: str
    created_at: str
    url: str | None = None
    spoken: list[str] = field(default_factory=list)
    pressed: str | None = None


def list_texts(folder: Path | str) -> list[Text]:
    """Every text the sim accepted, oldest first."""
    found = []
    for path in sorted(Path(folder, "messages").glob("*.json")):
        r = json.loads(path.read_text())
        found.append(Text(r["sid"], r["to"], r["from"], r["body"], r["date_created"]))
    return found


def latest_text_to(folder: Path | str, number: str) -> Text | None:
    """The newest text to ``number`` (E.164), or None."""
    return next((text for text in reversed(list_texts(folder)) if text.to == number), None)


def list_calls(folder: Path | str) -> list[Call]:
    found = []
    for path in sorted(Path(folder, "calls").glob("*.json")):
        r = json.loads(path.read_text())
        found.append(Call(r["sid"], r["to"], r["from"], r["status"], r["date_created"],
                          r.get("url"), r.get("spoken", []), r.get("pressed")))
    return found


def latest_call_to(folder: Path | str, number: str) -> Call | None:
    """The newest call to ``number`` (E.164), or None."""
    return next((call for call in reversed(list_calls(folder)) if call.to == number), None)


_PROOF_CODE = re.compile(r"read them this code: (\d{6})")
_MANAGER_LINK = re.compile(r"(https?://\S+/manager/\S+)")


def latest_proof_code(folder: Path | str, ticket_number: str) -> str | None:
    """The newest identity-proof code mailed for a ticket (tests, the demo, dev pages)."""
    for mail in newest_mails(folder):
        if ticket_number in mail.subject and (found := _PROOF_CODE.search(mail.body)):
            return found.group(1)
    return None


def latest_manager_link(folder: Path | str, ticket_number: str) -> str | None:
    """The newest manager's approval link mailed for a ticket."""
    for mail in newest_mails(folder):
        if ticket_number in mail.subject and (found := _MANAGER_LINK.search(mail.body)):
            return found.group(1)
    return None


def shows_code(text: str, code: str) -> bool:
    """Whether ``code`` appears in ``text`` as a code would be written, not as the chance digits
    of a timestamp, an id or a base64 value (tests: no code in events, pages or logs)."""
    return re.search(rf"(?<![0-9A-Za-z_.:+-]){re.escape(code)}(?![0-9A-Za-z_])", text) is not None
