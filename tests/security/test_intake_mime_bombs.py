"""MIME bombs at the mail intake: a deeply nested or many-part mail is quarantined with the
reason in milliseconds of ticketing CPU, not seconds, and the intake serves the next mail."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import USER_EMAIL, System, eventually
from tests.integration.test_intake_mail import HELPDESK, WELL_FORMED, intake, mail, send

__all__ = ["intake"]


def bomb(depth: int, siblings: int = 1, padding: int = 0) -> bytes:
    """``depth`` nested multiparts, each holding ``siblings`` text parts, under the size limit."""
    def text(n: int) -> str:
        return f"Content-Type: text/plain\r\n\r\nMFA reset {n}\r\n"
    opened = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
                     for i in range(depth))
    leaves = f"\r\n--b{depth - 1}\r\n".join(text(n) for n in range(siblings)) + "x\r\n" * padding
    closed = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    head = (f"From: {USER_EMAIL}\r\nTo: {HELPDESK}\r\nSubject: MFA reset\r\nMIME-Version: 1.0\r\n"
            "Username: jane.doe@masspasrr.org\r\n")
    return (head + opened + leaves + closed).encode()


@pytest.mark.parametrize(
    ("depth", "siblings", "padding", "reasons"),
    [(800, 1, 0, ("too many MIME parts",)),  # multipart headers counted before parsing
     # few enough to parse, then measured; on a busy machine the CPU budget may run out first,
     # which refuses it just as well
     (60, 1, 15_000, ("nested too deeply", "took too long")),
     (1, 150, 0, ("too many MIME parts",))],
    ids=["deep", "deep-and-long", "wide"],
)
async def test_a_mime_bomb_is_quarantined_quickly_and_the_intake_serves_the_next_mail(
    intake: System, depth: int, siblings: int, padding: int, reasons: tuple[str, ...]
):
    raw = bomb(depth, siblings, padding)
    assert len(raw) < intake.settings.intake_max_bytes
    started = time.perf_counter()
    await send(intake, raw)
    [kept] = await eventually(lambda: intake.app("ticketing").quarantined(), what="quarantine")
    print(f"{depth} levels x {siblings} parts, {len(raw)} bytes: quarantined in "
          f"{(time.perf_counter() - started) * 1000:.0f} ms")
    assert any(reason in kept["reason"] for reason in reasons), kept["reason"]
    assert intake.app("ticketing").list_tickets() == []
    await send(intake, mail(USER_EMAIL, WELL_FORMED))
    [ticket] = intake.app("ticketing").list_tickets()
    assert ticket["channel"] == "email"
