"""Parsing a hostile mail within bounds: MIME depth, number of parts and CPU time.

The standard library's feed parser checks every line against every open multipart boundary, so
a deeply nested mail costs time in the product of its lines and its depth (seconds of CPU for
one mail), and walking it later recurses as deep as it nests. A cheap count of Content-Type
headers (a line in a body may look like one; that only errs towards refusing) stops the worst
before parsing; the parse itself is fed in chunks against a CPU-time budget;
the parsed tree is then measured without recursion.
"""

from __future__ import annotations

import re
import time
from email.message import EmailMessage, Message
from email.parser import BytesFeedParser
from email.policy import default
from typing import cast

CONTENT_TYPE_HEADER = re.compile(rb"^content-type:", re.I | re.M)
CHUNK = 4096


class TooComplex(ValueError):
    """The mail's MIME structure is over a limit; the message says which, in words."""


def parse_bounded(raw: bytes, *, max_depth: int, max_parts: int, max_seconds: float
                  ) -> EmailMessage:
    """The parsed mail, or ``TooComplex`` once it nests deeper than ``max_depth`` multiparts,
    holds more than ``max_parts`` parts, or takes more than ``max_seconds`` of this thread's CPU."""
    if len(CONTENT_TYPE_HEADER.findall(raw)) > max_parts:  # each starts a part of its own
        raise TooComplex(f"too many MIME parts (more than {max_parts})")
    started = time.thread_time()
    parser = BytesFeedParser(policy=default)
    for offset in range(0, len(raw), CHUNK):
        # Checked before each further chunk, not after the last: the budget stops a parse that
        # goes on, and a mail already read whole is never refused for time (on a host that
        # pauses this machine, a small mail's one step could cross the budget: seen in CI).
        if offset and time.thread_time() - started > max_seconds:
            raise TooComplex(f"the MIME structure took too long to read (over {max_seconds:g} s)")
        parser.feed(raw[offset:offset + CHUNK])
    message = cast(EmailMessage, parser.close())
    measure(message, max_depth=max_depth, max_parts=max_parts)
    return message


def measure(message: Message, *, max_depth: int, max_parts: int) -> None:
    """``TooComplex`` if the tree nests more than ``max_depth`` multipart levels or holds more
    than ``max_parts`` parts (walked with a list, not recursion)."""
    parts = 0
    pending: list[tuple[Message, int]] = [(message, 0)]
    while pending:
        part, depth = pending.pop()
        parts += 1
        if parts > max_parts:
            raise TooComplex(f"too many MIME parts (more than {max_parts})")
        if part.is_multipart():
            if depth + 1 > max_depth:
                raise TooComplex(f"MIME nested too deeply (more than {max_depth} levels)")
            pending.extend((child, depth + 1) for child in cast(list[Message], part.get_payload()))
