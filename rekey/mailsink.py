"""A local SMTP sink: every message it accepts becomes one ``.eml`` file in a folder.

It stands in for the outgoing mail server on a developer's machine, in tests and in the
compose stack, so the codes and temporary passwords Rekey mails can be read back by a
person (open the file) or by a test (:func:`latest_mail_to`). File names start with the
UTC arrival time, so sorting them sorts by arrival. A message is written to a hidden
temporary file, flushed to disk and then renamed, and SMTP's ``250`` is only sent after
that: a reader never sees half a message and an accepted message is never lost.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import logging
import os
import signal
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y%m%dT%H%M%S.%f"
# Envelope headers prepended to the stored message, as aiosmtpd's own Message handler
# names them: the envelope recipients include Bcc, which the headers do not show.
MAIL_FROM_HEADER = "X-MailFrom"
RCPT_TO_HEADER = "X-RcptTo"


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


class _StoreHandler:
    """aiosmtpd handler that writes each message's raw bytes to the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        sender = envelope.mail_from or ""
        recipients = ", ".join(envelope.rcpt_tos)
        headers = f"{MAIL_FROM_HEADER}: {sender}\r\n{RCPT_TO_HEADER}: {recipients}\r\n"
        data = headers.encode("utf-8") + content
        try:
            path = await asyncio.to_thread(store_message, self.folder, data)
        except OSError:
            log.exception("could not store a message from %s", sender)
            return "451 Requested action aborted: could not store the message"
        log.info("stored mail from %s to %s as %s", sender, recipients, path.name)
        return "250 Message accepted for delivery"


def store_message(folder: Path, data: bytes, now: datetime | None = None) -> Path:
    """Write ``data`` atomically as ``<UTC time>-<uuid8>.eml`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime(TIME_FORMAT)
    name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
    temporary = folder / f".{name}.part"
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    final = folder / name
    os.replace(temporary, final)
    return final


class MailSink:
    """An SMTP server on ``host:port`` (own thread) that stores mail in ``folder``."""

    def __init__(self, folder: Path | str, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.folder = Path(folder)
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen; returns once the server answers."""
        if self._controller is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _StoreHandler(self.folder),
            hostname=self.host,
            port=self.port,
            enable_SMTPUTF8=True,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def list_mails(folder: Path | str) -> list[Mail]:
    """Every stored message, oldest first; a missing folder holds no mail."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.glob("*.eml") if not p.name.startswith("."))
    return [read_mail(path) for path in paths]


def latest_mail_to(folder: Path | str, address: str, subject_contains: str | None = None) -> Mail | None:
    """The newest message for ``address`` (case-insensitive), optionally by subject."""
    wanted = address.strip().lower()
    for mail in reversed(list_mails(folder)):
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


def main(argv: list[str] | None = None) -> None:
    """Run the sink in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m rekey.mailsink",
        description="Local SMTP sink: stores every message as an .eml file.",
    )
    parser.add_argument("--folder", type=Path, default=Path(".rekey/mail"))
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("REKEY_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sink = MailSink(args.folder, host=args.host, port=args.port)
    sink.start()
    log.info("mail sink on %s:%d, storing in %s", args.host, args.port, args.folder.resolve())
    try:
        while not done.wait(1.0):
            pass
    finally:
        sink.stop()
        log.info("mail sink stopped")


if __name__ == "__main__":
    main()
