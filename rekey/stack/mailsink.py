"""A local SMTP sink: every message it accepts becomes one ``.eml`` file in a folder.

It stands in for the outgoing mail server on a developer's machine, in tests and in the
compose stack, so the codes and temporary passwords Rekey mails can be read back by a
person (open the file) or by a test (:func:`shared.caught.latest_mail_to`). File names start with the
UTC arrival time, so sorting them sorts by arrival. A message is written to a hidden
temporary file, flushed to disk and then renamed, and SMTP's ``250`` is only sent after
that: a reader never sees half a message and an accepted message is never lost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from rekey.stack.startable import Startable
from shared.caught import MAIL_FROM_HEADER, RCPT_TO_HEADER, TIME_FORMAT
from shared.files import keep_files_private
from shared.logs import keep_mail_out_of_logs

keep_mail_out_of_logs()  # received messages hold temporary passwords and codes

log = logging.getLogger(__name__)


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


class MailSink(Startable):
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


def main(argv: list[str] | None = None) -> None:
    """Run the sink in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m rekey.stack.mailsink",
        description="Local SMTP sink: stores every message as an .eml file.",
    )
    parser.add_argument("--folder", type=Path, default=Path(".rekey/mail"))
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    keep_files_private()  # caught mail holds temporary passwords
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
