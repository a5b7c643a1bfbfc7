"""What an operator reads: log lines, readiness checks, deadlines and idempotency keys."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from shared import deadlines
from shared.errors import DeadlineExceeded
from shared.health import Check, report, run_checks
from shared.idempotency import CommandAnswered, KeyReused, fingerprint
from shared.logs import Outage, RepeatFilter, configure
from shared.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, level: int = logging.ERROR, name: str = "shared.bus.relay") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_a_repeated_error_is_written_once_a_minute_and_then_says_how_many_were_held_back():
    clock = Clock()
    repeats = RepeatFilter(window=60, clock=clock)
    assert repeats.filter(record("relay failed"))
    assert [repeats.filter(record("relay failed")) for _ in range(50)] == [False] * 50
    assert repeats.filter(record("another failure"))  # a different message is news
    assert repeats.filter(record("relay failed", logging.INFO))  # info is never held back
    clock.now = 61
    again = record("relay failed")
    assert repeats.filter(again) and again.repeated == 50
    for _ in range(3):  # a connection that flaps: every loss and every return is written
        lost = record("NATS connection lost (%s); reconnecting")
        lost.transition = True
        assert repeats.filter(lost)


def test_a_dependency_that_fails_and_comes_back_writes_two_lines(caplog: pytest.LogCaptureFixture):
    outage = Outage(logging.getLogger("shared.bus.consumer"), "ticketing consumer")
    with caplog.at_level(logging.INFO):
        for _ in range(30):
            outage.failed(ConnectionError("nats: connection closed"))
        outage.succeeded()
        outage.succeeded()
    assert [r.getMessage() for r in caplog.records] == [
        "ticketing consumer failing, retrying quietly: ConnectionError: nats: connection closed",
        "ticketing consumer working again after 30 failed attempt(s)",
    ]


def test_log_lines_are_one_json_object_each_with_the_process_name(monkeypatch: pytest.MonkeyPatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure("ticketing", "INFO", "json")
        logging.getLogger("shared.runtime").info("ticketing service started")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    line = json.loads(out.getvalue().strip())
    assert line["message"] == "ticketing service started"
    assert line["process"] == "ticketing" and line["level"] == "INFO" and line["logger"] == "shared.runtime"


async def test_a_check_that_hangs_fails_in_time_naming_why():
    async def hangs() -> Check:
        await asyncio.sleep(30)
        return Check("store", True)

    async def fine() -> Check:
        return Check("nats", True)

    checks = await run_checks([("store", hangs), ("nats", fine)], timeout=0.05)
    assert report(checks) == {"ok": False, "checks": [
        {"name": "store", "ok": False, "detail": "no answer within 0.05 s"},
        {"name": "nats", "ok": True, "detail": ""},
    ]}


def test_a_request_past_its_deadline_is_refused_before_any_work():
    due = 1_000.0
    deadlines.check(due, now=due)  # on time (and within the grace for clock skew)
    with pytest.raises(DeadlineExceeded, match="nothing was changed"):
        deadlines.check(due, now=due + 1)
    assert deadlines.from_headers(deadlines.header(5, now=due)) == due + 5
    assert deadlines.from_headers({"Rekey-Deadline": "soon"}) is None
    assert deadlines.from_headers(None) is None


def test_the_first_store_call_of_a_request_checks_the_deadline_and_later_ones_do_not():
    with deadlines.within(None):
        deadlines.starting_work()
    with pytest.raises(DeadlineExceeded), deadlines.within(deadlines.from_headers(deadlines.header(10))):
        state = deadlines._current.get()
        assert state is not None
        state["deadline"] = 0.0  # the caller gave up while the call waited for a thread
        deadlines.starting_work()


def test_an_idempotency_key_reused_for_another_request_is_refused_and_secrets_are_not_hashed():
    from services.credentials.commands import RegisterAccount

    base = {"username": "pat@masspasrr.org", "email": "pat@example.org", "display_name": "Pat",
            "principal": "signed-1", "idempotency_key": "key-0000001"}
    first = RegisterAccount(**base, password="first secret passphrase")
    again = RegisterAccount(**{**base, "principal": "signed-2"}, password="other passphrase")
    assert fingerprint(first) == fingerprint(again)  # who signed it and secrets: not compared
    answered = CommandAnswered(service="credentials", command="register_account",
                               key="key-0000001", request=fingerprint(first), answer={"ok": 1})
    answered.check_same_request(fingerprint(again))
    other = RegisterAccount(**{**base, "display_name": "Someone else"})
    with pytest.raises(KeyReused, match="different request"):
        answered.check_same_request(fingerprint(other))
    assert answered.id == CommandAnswered.create_id("credentials", "register_account", "key-0000001")


def test_health_listens_on_loopback_and_only_when_given_a_port():
    settings = Settings()
    assert settings.health_port == 0 and settings.health_host == "127.0.0.1"
    assert settings.log_format == "json"
