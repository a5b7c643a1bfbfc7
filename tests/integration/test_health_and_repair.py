"""What an operator sees when things break: readiness, metrics, status, gaps and repairs,
and a caller's retry that does not file a second ticket (issue 12, points 1, 3 and 4)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rekey.cli.status import gather_status, republish_all
from rekey.stack.ports import free_port
from shared import deadlines
from shared.bus.callers import signed_headers
from shared.contracts.envelope import STREAM_NAME
from shared.errors import Conflict, Unavailable
from shared.settings import SERVICES
from tests.integration.conftest import USER, USER_EMAIL, System, connected, eventually, start_all
from tests.integration.cutoff import Cutoff


async def start_with_health(system: System, name: str, **overrides: Any) -> int:
    """Start ``name`` serving /livez, /readyz and /metrics on a port of its own."""
    port = free_port()
    shared = system.settings
    system.settings = shared.model_copy(update={"health_port": port, **overrides})
    try:
        await system.start(name)
    finally:
        system.settings = shared
    return port


async def get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as answer:
        text = await answer.text()
        return answer.status, (json.loads(text) if path != "/metrics" else text)


def failing(body: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in body["checks"] if not c["ok"]}


async def test_readyz_names_nats_while_it_is_down_and_each_way_is_logged_once(
    system: System, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    port = await start_with_health(system, "ticketing")
    _, body = await eventually(lambda: _ready(port), what="ticketing to be ready")
    assert {c["name"] for c in body["checks"]} >= {"nats", "store", "relay", "consumer"}

    system.nats.stop()
    body = await eventually(lambda: _not_ready(port), what="readyz to say no")
    assert "NATS connection lost" in failing(body)["nats"]
    await asyncio.sleep(0)  # reconnect attempts go on (every 0.5 s) while the test looks

    async def consumer_noticed() -> bool:
        return any("ticketing consumer failing" in r.getMessage() for r in caplog.records)

    await eventually(consumer_noticed, what="the consumer to notice")
    system.nats.start()
    await eventually(lambda: _ready(port), what="ticketing to be ready again")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("NATS connection lost (ticketing)" in line for line in lines) == 1
    assert sum("NATS connection restored (ticketing" in line for line in lines) == 1
    assert sum("ticketing consumer failing" in line for line in lines) == 1
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("shared.bus")]


async def _ready(port: int) -> tuple[int, Any] | None:
    status, body = await get(port, "/readyz")
    return (status, body) if status == 200 and body["ok"] else None


async def _not_ready(port: int) -> dict[str, Any] | None:
    status, body = await get(port, "/readyz")
    return body if status == 503 and not body["ok"] else None


async def test_metrics_after_a_reset_show_requests_argon2_mail_relay_and_consumers(system: System):
    port = await start_with_health(system, "ticketing")
    for name in SERVICES:
        if name != "ticketing":
            await system.start(name)
    await system.provision()
    await system.approved_ticket()
    await eventually(lambda: "TemporaryPasswordSent" in system.event_names("credentials"),
                     what="the temporary password mailed")
    status, text = await get(port, "/metrics")
    assert status == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in samples.items()
                   if n == name and set(labels.items()) <= set(ls))

    assert value("rekey_request_seconds_count", service="ticketing", endpoint="request_reset") >= 1
    assert value("rekey_request_seconds_count", service="credentials", endpoint="register_account") >= 2
    assert value("rekey_argon2_seconds_count", operation="hash") >= 1
    assert value("rekey_mails_sent_total") >= 1
    assert value("rekey_relay_published_total", service="ticketing") >= 1
    assert value("rekey_consumer_handled_total", service="credentials") >= 1
    assert value("rekey_nats_connected", identity="ticketing") == 1
    assert ("rekey_request_errors_total" in text and "rekey_relay_lag_events" in text
            and "rekey_consumer_redeliveries_total" in text and "rekey_texts_sent_total" in text)


@pytest.fixture
async def cut_off_postgres(nats_server, mail_sink, settings_factory, postgres_db) -> AsyncIterator[tuple]:
    """A PostgreSQL system whose services reach the database through a :class:`Cutoff`."""
    cutoff = await Cutoff(5432).start()
    settings = settings_factory(nats_server, store="postgres", postgres_db=postgres_db,
                                smtp_port=mail_sink.port, postgres_port=cutoff.port)
    system = System(settings, nats_server, mail_sink)
    async with connected(system):
        yield system, cutoff
        await cutoff.cut()
        await cutoff.start()  # the database is back: the services stop as they normally do
    await cutoff.cut()


async def test_status_and_readyz_name_postgresql_unreachable_from_credentials_in_under_3_s(
    cut_off_postgres,
):
    system, cutoff = cut_off_postgres
    port = await start_with_health(system, "credentials")
    await system.start("ticketing")
    healthy = await gather_status(system.settings, processes=("credentials", "ticketing"))
    assert healthy["problems"] == [], healthy["problems"]
    await cutoff.cut()

    async def named() -> dict[str, Any] | None:
        report = await gather_status(system.settings, processes=("credentials", "ticketing"))
        return report if any("PostgreSQL unreachable from credentials" in p
                             for p in report["problems"]) else None

    report = await eventually(named, what="status to name the database")
    assert report["seconds"] < 3
    assert report["nats"]["ok"]
    assert any("PostgreSQL unreachable from ticketing" in p for p in report["problems"])
    store = next(c for c in report["services"]["credentials"]["checks"] if c["name"] == "store")
    assert not store["ok"]
    status, body = await get(port, "/readyz")  # what the orchestrator's probe sees
    assert status == 503 and "PostgreSQL unreachable from credentials" in failing(body)["store"]


async def test_status_with_nats_down_says_so_at_once_and_asks_nobody_else(system: System):
    system.nats.stop()
    started = time.monotonic()
    report = await gather_status(system.settings)
    assert time.monotonic() - started < 3
    assert not report["nats"]["ok"] and "NATS unreachable" in report["nats"]["detail"]
    assert report["problems"][0].startswith("NATS unreachable")
    system.nats.start()


async def test_a_purged_stream_shows_as_a_gap_and_republish_from_the_stores_fills_it(system: System):
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    await eventually(lambda: "TemporaryPasswordSent" in system.event_names("credentials"),
                     what="the reset's password mailed")
    await eventually(system.caught_up, what="relays and consumers to settle")
    issued = system.event_names("credentials").count("PasswordIssued")
    mails = sorted(system.mail.folder.rglob("*.eml"))

    await system._nc.jetstream().purge_stream(STREAM_NAME)
    ticketing = await system.call("ticketing", "health")
    assert ticketing["relay_lag"] == 0  # the relay is not behind: the stream lost them
    assert ticketing["stream_events"] == 0 and ticketing["gap"] == ticketing["relayed_events"] > 0
    report = await gather_status(system.settings, processes=SERVICES)
    assert any("ticketing: the stream holds 0 of its events" in p for p in report["problems"])

    steps: list[tuple[str, int, int]] = []
    done = await republish_all(system.client, list(SERVICES), run="test-run",
                               progress=lambda *step: steps.append(step))
    assert done["ticketing"] == ticketing["relayed_events"]
    assert steps[-1][1] == steps[-1][2]  # the bar reaches its end
    for name in SERVICES:
        assert (await system.call(name, "health"))["gap"] == 0
    await eventually(system.caught_up, what="consumers to take the copies")
    assert system.event_names("credentials").count("PasswordIssued") == issued  # nothing twice
    assert sorted(system.mail.folder.rglob("*.eml")) == mails  # no mail sent again


async def test_a_retried_reset_request_with_the_same_key_returns_the_first_ticket(system: System):
    await start_all(system)
    await system.provision()
    request = {"name": "Jane Doe", "email": USER_EMAIL, "username": USER, "reason": "new phone",
               "idempotency_key": "retry-after-timeout-0001"}
    first = await system.call("ticketing", "request_reset", **request)
    again = await system.call("ticketing", "request_reset", **request)
    assert again == first and not again["joined"]
    assert system.event_names("ticketing").count("ResetRequested") == 1
    assert "RequestJoined" not in system.event_names("ticketing")
    with pytest.raises(Conflict, match="already used for a different request"):
        await system.call("ticketing", "request_reset", **{**request, "reason": "lost phone"})


async def test_a_request_whose_caller_stopped_waiting_is_not_carried_out(system: System):
    await start_all(system)
    await system.provision()
    request = {"name": "Jane Doe", "email": USER_EMAIL, "username": USER, "reason": "new phone"}
    subject, data = "rekey.rpc.ticketing.request_reset", json.dumps(request).encode()
    reply = await system._nc.request(
        subject, data, timeout=5, headers={**signed_headers(system._nc, subject, data),
                                           **deadlines.header(-5)})  # ended 5 s ago
    answer = json.loads(reply.data)
    assert answer["error"]["code"] == "deadline_exceeded"
    assert "nothing was changed" in answer["error"]["message"]
    assert "ResetRequested" not in system.event_names("ticketing")
    assert (await system.call("ticketing", "request_reset", **request))["ticket_number"]


def test_the_portal_s_health_names_nats_when_it_is_down_and_recovers(nats_server, settings_factory):
    from starlette.testclient import TestClient

    from services.portal.app import create_app

    settings = settings_factory(nats_server)
    with TestClient(create_app(settings)) as web:
        assert web.get("/healthz").status_code == 200
        nats_server.stop()

        def says_nats() -> str | None:
            answer = web.get("/healthz")
            return answer.text if answer.status_code == 503 else None

        assert "NATS connection lost" in wait_sync(says_nats)
        nats_server.start()
        assert wait_sync(lambda: web.get("/healthz").status_code == 200)


def wait_sync(check: Any, timeout: float = 20.0) -> Any:
    """For a test without an event loop of its own (the portal's runs in the TestClient)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("timed out")


async def test_a_caller_is_told_nats_is_down_not_that_a_service_is(system: System):
    await system.start("credentials")
    system.nats.stop()
    await eventually(lambda: not system._nc.is_connected, what="the test's client to notice")
    with pytest.raises(Unavailable, match=r"message bus \(NATS\) is not reachable"):
        await system.call("credentials", "health")
    system.nats.start()


async def test_a_reset_form_sent_twice_from_the_portal_files_one_request(system: System):
    import re

    from starlette.testclient import TestClient

    from services.portal.app import create_app

    await system.start("credentials")
    await system.start("ticketing")
    await system.provision()
    web = TestClient(create_app(system.settings), base_url="https://localhost")
    await asyncio.to_thread(web.__enter__)  # the portal's loop in its thread; the services' here
    try:
        page = (await asyncio.to_thread(web.get, "/request-reset")).text
        fields = dict(re.findall(r'name="(csrf|request_key)" value="([^"]+)"', page))
        form = {**fields, "name": "Jane Doe", "email": USER_EMAIL, "username": USER,
                "reason": "new phone"}
        for _ in range(2):  # the person's browser sends the form again (a reload, a retry)
            sent = await asyncio.to_thread(web.post, "/request-reset", data=form)
            assert sent.status_code == 200, sent.text
    finally:
        await asyncio.to_thread(web.__exit__, None, None, None)
    names = system.event_names("ticketing")
    assert names.count("ResetRequested") == 1 and "RequestJoined" not in names
