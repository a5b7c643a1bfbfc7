"""aiosmtpd's logger ("mail.log") in a Rekey process: never a DEBUG line (it would hold every
line of every received message, temporary passwords included), and otherwise the process's
level, so a process that logs at WARNING gets none of its per-connection INFO lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared.logs import SMTP_SERVER_LOGGER, keep_mail_out_of_logs


@pytest.fixture
def kept() -> Iterator[list[logging.LogRecord]]:
    """The records that reach the root logger's handlers, with the root's level restored."""
    root = logging.getLogger()
    level = root.level
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    root.addHandler(handler)
    keep_mail_out_of_logs()
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_received_messages_lines_never_reach_a_log_even_at_debug(kept):
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger(SMTP_SERVER_LOGGER).debug("Data: b'Your temporary password: abc'")
    assert kept == []


def test_a_process_at_info_still_logs_its_connections(kept):
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger(SMTP_SERVER_LOGGER).info("Peer: ('127.0.0.1', 40964)")
    assert [r.getMessage() for r in kept] == ["Peer: ('127.0.0.1', 40964)"]


def test_a_process_at_warning_gets_no_connection_lines(kept):
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger(SMTP_SERVER_LOGGER).info("Peer: ('127.0.0.1', 40964)")
    logging.getLogger(SMTP_SERVER_LOGGER).warning("a real problem")
    assert [r.getMessage() for r in kept] == ["a real problem"]


def test_setting_it_up_twice_adds_one_filter():
    keep_mail_out_of_logs()
    keep_mail_out_of_logs()
    assert len(logging.getLogger(SMTP_SERVER_LOGGER).filters) == 1
