"""The intake reads a mail only within bounds: multipart depth, part count and CPU time."""

from __future__ import annotations

import pytest

from services.ticketing.mime_limits import TooComplex, parse_bounded


def nested(depth: int, text_lines: int = 1) -> bytes:
    opened = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
                     for i in range(depth))
    closed = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    text = "Content-Type: text/plain\r\n\r\n" + "MFA reset\r\n" * text_lines
    return ("From: x@example.org\r\nSubject: reset\r\n" + opened + text + closed).encode()


LIMITS = {"max_depth": 10, "max_parts": 100, "max_seconds": 5.0}


def test_a_mail_within_the_limits_is_read():
    message = parse_bounded(nested(10), **LIMITS)
    assert message.get_body(preferencelist=("plain",)).get_content().startswith("MFA reset")


@pytest.mark.parametrize(("depth", "reason"), [(11, "nested too deeply"), (101, "too many MIME parts")])
def test_a_mail_over_a_structure_limit_is_refused(depth: int, reason: str):
    with pytest.raises(TooComplex, match=reason):
        parse_bounded(nested(depth), **LIMITS)


def test_a_mail_that_takes_too_long_to_read_is_refused():
    with pytest.raises(TooComplex, match="too long"):
        parse_bounded(nested(60, text_lines=5000), **{**LIMITS, "max_seconds": 1e-6})


def test_a_mail_read_whole_in_one_step_is_never_refused_for_time():
    """The budget stops a parse that goes on; a small mail is read in one step, so a pause of
    the host during it (CPU time charged to the thread) cannot have it quarantined."""
    small = nested(3)
    assert len(small) < 4096
    message = parse_bounded(small, **{**LIMITS, "max_seconds": 0.0})
    assert message.get_body(preferencelist=("plain",)).get_content().startswith("MFA reset")


def test_a_mail_with_too_many_parts_side_by_side_is_refused_before_it_is_parsed():
    parts = "\r\n--b\r\n".join("Content-Type: text/plain\r\n\r\nMFA reset" for _ in range(101))
    wide = ('From: x@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            + parts + "\r\n--b--\r\n").encode()
    # no CPU to spare at all: only the count before parsing can give this reason
    with pytest.raises(TooComplex, match="too many MIME parts"):
        parse_bounded(wide, **{**LIMITS, "max_seconds": 0.0})
