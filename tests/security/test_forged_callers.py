"""A service records who called it: the bus identity whose key signed the request.

The attacker is the compromised portal host of the threat model: it holds the portal's bus key
and may call the portal's endpoints, and it tries to have its actions recorded as someone
else's (the operator's command line) by naming that identity's reply inbox, which NATS does not
check. The service must refuse, say why to the inbox named, and record nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import context
from shared.bus.callers import signed_headers
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.errors import InvalidRequest
from shared.waiting import eventually
from tests.conftest import connect_as
from tests.integration.conftest import USER, USER_EMAIL, System, start_all

pytestmark = pytest.mark.security

REQUEST = {"name": "Jane Doe", "email": USER_EMAIL, "username": USER, "reason": "new phone"}
SUBJECT = "rekey.rpc.ticketing.request_reset"


async def _answer_in_the_operators_inbox(system: System, send: Any) -> dict[str, Any]:
    """What the service answered to ``_INBOX_operator.forged`` (read by the tests' inspector,
    since the portal may not subscribe there) after ``send(portal)``."""
    answers: list[bytes] = []
    inspector = await connect_as(system.nats)
    portal = await connect(system.settings, "portal", name="attacker-portal", attempts=3)
    try:
        async def keep(msg: Any) -> None:
            answers.append(msg.data)

        await inspector.subscribe("_INBOX_operator.forged", cb=keep)
        await inspector.flush()
        await send(portal)
        await portal.flush()
        await eventually(lambda: answers, what="the service's answer")
    finally:
        await portal.close()
        await inspector.close()
    return json.loads(answers[0])


async def test_a_compromised_portal_cannot_be_recorded_as_the_operator_by_naming_its_inbox(
    system: System,
) -> None:
    await start_all(system)
    await system.provision()
    data = json.dumps(REQUEST).encode()

    async def send(portal: Any) -> None:  # signed, with the portal's own key
        await portal.publish(SUBJECT, data, reply="_INBOX_operator.forged",
                             headers=signed_headers(portal, SUBJECT, data))

    answer = await _answer_in_the_operators_inbox(system, send)
    assert answer["error"]["code"] == "caller_unverified"
    assert "ResetRequested" not in system.event_names("ticketing")


async def test_a_compromised_portal_cannot_send_an_unsigned_request_in_the_operators_name(
    system: System,
) -> None:
    await start_all(system)
    await system.provision()

    async def send(portal: Any) -> None:
        await portal.publish(SUBJECT, json.dumps(REQUEST).encode(),
                             reply="_INBOX_operator.forged")

    answer = await _answer_in_the_operators_inbox(system, send)
    assert answer["error"]["code"] == "caller_unverified"
    assert "ResetRequested" not in system.event_names("ticketing")


async def test_a_request_whose_body_was_changed_after_signing_is_refused(system: System) -> None:
    """The signature covers the body: a signed request for one username cannot carry another."""
    await start_all(system)
    await system.provision()
    portal = await connect(system.settings, "portal", name="attacker-portal", attempts=3)
    try:
        signed = signed_headers(portal, SUBJECT, json.dumps(REQUEST).encode())
        other = json.dumps({**REQUEST, "username": "someone.else@masspasrr.org"}).encode()
        reply = await portal.request(SUBJECT, other, timeout=5, headers=signed)
        assert json.loads(reply.data)["error"]["code"] == "caller_unverified"
    finally:
        await portal.close()
    assert "ResetRequested" not in system.event_names("ticketing")


async def request_as(system: System, identity: str, **extra: Any) -> dict[str, Any]:
    """A reset request sent on ``identity``'s own connection, signed with its key."""
    nc = await connect(system.settings, identity, name=identity, attempts=3)
    try:
        return await RekeyClient(nc, timeout=10).call("ticketing", "request_reset", **REQUEST,
                                                      **extra)
    finally:
        await nc.close()


async def test_each_request_is_recorded_with_the_identity_that_signed_it(system: System) -> None:
    """The portal's own signed request works, and is recorded as the portal's (not the
    operator's, whose inbox the tests' client does not use either)."""
    await start_all(system)
    await system.provision()
    await request_as(system, "portal")
    [requested] = [e for e in system.app("ticketing").envelopes() if e.name == "ResetRequested"]
    assert requested.context is not None
    assert (requested.context.caller, requested.context.channel) == ("portal", "portal")


async def test_a_bus_caller_cannot_file_a_request_as_if_it_came_by_mail(system: System) -> None:
    """The ticket's channel is what the agent and the auditor read: only the mail intake files
    one as ``email``; over the bus the claim is refused and nothing is filed."""
    await start_all(system)
    await system.provision()
    with pytest.raises(InvalidRequest, match="only the help desk's mail intake"):
        await request_as(system, "portal", channel="email")
    assert "ResetRequested" not in system.event_names("ticketing")


async def test_an_operator_cannot_file_a_request_as_if_it_came_from_the_web_form(
        system: System) -> None:
    """``web`` on a ticket says the person used the portal's form (and its acknowledgement goes
    to the address on file): over the bus only the portal's edge may say so. The operator's
    command line claiming it, even with the portal's channel header, is refused and nothing is
    filed; the portal's own request is filed as ``web``."""
    await start_all(system)
    await system.provision()
    with pytest.raises(InvalidRequest, match="only the portal's web form"):
        await request_as(system, "operator", channel="web")
    with context.calling_as(channel="portal", session_id=None), \
            pytest.raises(InvalidRequest, match="only the portal's web form"):
        await request_as(system, "operator", channel="web")
    assert "ResetRequested" not in system.event_names("ticketing")
    await request_as(system, "portal", channel="web")
    [requested] = [e for e in system.app("ticketing").envelopes() if e.name == "ResetRequested"]
    assert requested.body["channel"] == "web"
    assert requested.context is not None and requested.context.caller == "portal"
