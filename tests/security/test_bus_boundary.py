"""The bus is a trust boundary: who may connect, publish, subscribe and answer.

Each test plays one attacker from the threat model ("anyone on the service network", "a
compromised portal") against a running system, and checks that the server refused the attempt
and that nothing changed in any store.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import nats
import pytest

from shared.bus.connection import BusRefused, connect
from shared.client import RekeyClient
from shared.contracts.envelope import STREAM_NAME
from shared.errors import RekeyError, Unavailable
from shared.waiting import eventually
from tests.conftest import connect_as
from tests.integration.conftest import AGENT, AGENT_PASSWORD, USER, USER_EMAIL, System, start_all

pytestmark = pytest.mark.security


async def _as(system: System, identity: str) -> Any:
    return await connect(system.settings, identity, name=f"attacker-{identity}", attempts=3)


def _violation(nc: Any, subject: str) -> bool:
    error = str(nc.last_error or "").lower()
    return "permissions violation" in error and subject.lower() in error


async def _refused_request(nc: Any, subject: str, payload: dict[str, Any],
                           headers: dict[str, str] | None = None) -> None:
    """The server drops the request and says why (a permissions violation); nothing answers.

    The server's -ERR arrives at once, so the test waits for it instead of for a timeout.
    """
    answers: list[bytes] = []

    async def keep(msg: Any) -> None:
        answers.append(msg.data)

    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=keep)
    await nc.publish(subject, json.dumps(payload).encode(), reply=inbox, headers=headers)
    await nc.flush()
    await eventually(lambda: _violation(nc, subject), timeout=5,
                     what=f"the server to refuse {subject}")
    await nc.flush()
    assert answers == []


async def _stream_count(system: System) -> int:
    inspector = await connect_as(system.nats)
    try:
        return (await inspector.jetstream().stream_info(STREAM_NAME)).state.messages
    finally:
        await inspector.close()


async def test_a_client_without_credentials_is_refused_at_connect(system: System) -> None:
    context = ssl.create_default_context(cafile=system.settings.nats_ca_file)
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await nats.connect(system.settings.nats_url, tls=context, allow_reconnect=False,
                           connect_timeout=2)


async def test_a_client_with_a_key_the_server_does_not_know_is_refused(system, tmp_path) -> None:
    from rekey.stack.buskeys import new_seed

    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "ticketing.nk").write_bytes(new_seed())
    stranger = system.settings.model_copy(update={"nats_keys_dir": str(tmp_path / "stranger")})
    with pytest.raises(BusRefused, match="refused identity 'ticketing'"):
        await connect(stranger, "ticketing", attempts=2)


async def test_a_plain_text_connection_is_refused(system: System) -> None:
    plain = system.settings.nats_url.replace("tls://", "nats://")
    seed = (system.nats.keys.seed("operator")).decode()  # type: ignore[union-attr]
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises several kinds here
        await nats.connect(plain, nkeys_seed_str=seed, allow_reconnect=False, connect_timeout=2)


async def test_a_server_certificate_from_another_ca_is_refused(system, tmp_path) -> None:
    from rekey.stack.buskeys import BusKeys

    other = BusKeys.create(tmp_path / "other-ca")
    fooled = system.settings.model_copy(update={"nats_ca_file": str(other.ca_file)})
    with pytest.raises(ConnectionError):
        await connect(fooled, "operator", attempts=1)


async def test_a_sniffer_with_the_portal_identity_sees_no_command_and_no_event(system) -> None:
    await start_all(system)
    sniffer = await _as(system, "portal")
    seen: list[str] = []

    async def keep(msg: Any) -> None:
        seen.append(msg.subject)

    try:
        for subject in (">", "rekey.rpc.>", "rekey.events.>", "_INBOX_operator.>"):
            await sniffer.subscribe(subject, cb=keep)
            await sniffer.flush()
            await asyncio.sleep(0.1)
            assert _violation(sniffer, subject), f"subscribing to {subject} was not refused"
        await system.provision()  # passwords cross the bus now
        await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
        await asyncio.sleep(0.3)
        assert seen == []
    finally:
        await sniffer.close()


async def test_the_portal_identity_cannot_create_an_agent(system: System) -> None:
    await start_all(system)
    portal = await _as(system, "portal")
    try:
        await _refused_request(portal, "rekey.rpc.credentials.register_account", {
            "username": "mallory", "email": "mallory@example.org", "display_name": "Mallory",
            "role": "agent", "password": "a long enough password for an agent"})
    finally:
        await portal.close()
    with pytest.raises(Exception, match=r"(?i)no account|not found|unknown"):
        await system.call("credentials", "account", username="mallory")
    assert "AccountRegistered" not in system.event_names("credentials")


async def test_a_rogue_responder_cannot_answer_in_a_services_place(system: System) -> None:
    await start_all(system)
    await system.provision()
    for identity in ("portal", "operator", "ticketing", "device"):
        rogue = await _as(system, identity)
        try:
            await rogue.subscribe("rekey.rpc.credentials.sign_in", queue="credentials")
            await rogue.flush()
            await asyncio.sleep(0.1)
            assert _violation(rogue, "rekey.rpc.credentials.sign_in"), identity
        finally:
            await rogue.close()
    # the real service still answers, and a wrong password is still wrong
    with pytest.raises(Exception, match=r"(?i)username or password"):
        await system.call("credentials", "sign_in", username=AGENT, password="wrong password!!")


async def test_a_forged_reset_approval_is_refused_and_nothing_is_reset(system: System) -> None:
    await start_all(system)
    await system.provision()
    before = await _stream_count(system)
    forged = {"name": "ResetApproved", "source": "ticketing", "subject": USER}
    for identity in ("portal", "operator", "credentials", "verification", "consent"):
        attacker = await _as(system, identity)
        try:
            await _refused_request(attacker, "rekey.events.ticketing.ResetApproved", forged,
                                   headers={"Nats-Msg-Id": "ticketing:999"})
        finally:
            await attacker.close()
    assert await _stream_count(system) == before
    assert "PasswordIssued" not in system.event_names("credentials")
    assert "MethodsRevoked" not in system.event_names("verification")


async def test_a_service_cannot_purge_or_delete_the_event_stream(system: System) -> None:
    await start_all(system)
    await system.provision()
    before = await _stream_count(system)
    service = await _as(system, "ticketing")
    try:
        for subject in (f"$JS.API.STREAM.PURGE.{STREAM_NAME}", f"$JS.API.STREAM.DELETE.{STREAM_NAME}",
                        f"$JS.API.STREAM.UPDATE.{STREAM_NAME}"):
            await _refused_request(service, subject, {})
    finally:
        await service.close()
    assert await _stream_count(system) == before > 0


async def test_only_the_audit_service_may_delete_a_message_from_the_stream(system: System) -> None:
    """Deleting an erased user's messages is the audit service's alone: no other service, the
    portal, the operator or the auditor can take an event off the stream."""
    await start_all(system)
    await system.provision()
    before = await _stream_count(system)
    subject = f"$JS.API.STREAM.MSG.DELETE.{STREAM_NAME}"
    for name in ("ticketing", "credentials", "portal", "operator", "auditor"):
        attacker = await _as(system, name)
        try:
            await _refused_request(attacker, subject, {"seq": 1, "no_erase": False})
        finally:
            await attacker.close()
    assert await _stream_count(system) == before > 0


async def test_nobody_but_the_auditor_reads_a_history(system: System) -> None:
    await start_all(system)
    await system.provision()
    for identity in ("portal", "operator", "device"):
        nc = await _as(system, identity)
        try:
            await _refused_request(nc, "rekey.rpc.credentials.history", {"username": USER})
        finally:
            await nc.close()
    auditor = await _as(system, "auditor")
    try:
        events = await RekeyClient(auditor, timeout=5).call("credentials", "history", username=USER)
        assert [e["name"] for e in events][:1] == ["AccountRegistered"]
        assert USER_EMAIL not in json.dumps(events)
    finally:
        await auditor.close()


async def test_the_auditor_cannot_change_anything(system: System) -> None:
    await start_all(system)
    await system.provision()
    auditor = await _as(system, "auditor")
    try:
        await _refused_request(auditor, "rekey.rpc.ticketing.request_reset", {
            "name": "Jane Doe", "email": USER_EMAIL, "username": USER, "reason": "new phone"})
    finally:
        await auditor.close()
    assert "ResetRequested" not in system.event_names("ticketing")


async def test_replies_to_the_portal_cannot_be_read_by_another_identity(system: System) -> None:
    await start_all(system)
    await system.provision()
    eavesdropper = await _as(system, "device")
    seen: list[bytes] = []

    async def keep(msg: Any) -> None:
        seen.append(msg.data)

    try:
        await eavesdropper.subscribe("_INBOX_portal.>", cb=keep)
        await eavesdropper.flush()
        await asyncio.sleep(0.1)
        assert _violation(eavesdropper, "_INBOX_portal.>")
        portal = await _as(system, "portal")
        try:
            answer = await RekeyClient(portal, timeout=5).call(
                "credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
            assert answer["username"] == AGENT
        finally:
            await portal.close()
        await asyncio.sleep(0.2)
        assert seen == []
    finally:
        await eavesdropper.close()


async def test_the_portal_cannot_call_operator_commands(system: System) -> None:
    await start_all(system)
    portal = await _as(system, "portal")
    try:
        for service, command in (("credentials", "unlock"), ("ticketing", "quarantine"),
                                 ("ticketing", "health"), ("verification", "device_activate")):
            await _refused_request(portal, f"rekey.rpc.{service}.{command}", {})
        with pytest.raises(Unavailable):  # what the portal's own client makes of it
            await RekeyClient(portal, timeout=0.5).call("credentials", "register_account")
    finally:
        await portal.close()


async def test_a_compromised_portal_cannot_look_up_accounts_or_their_facts(system: System) -> None:
    """The portal's key on a compromised host asks, with no sign-in at all, whether a username
    exists and what is on file for it (role, privileged, masked address and phone, manager,
    failed sign-ins): the target list an impostor wants. The portal never needs it, so the
    server refuses the request; the portal still signs users in (one answer for all)."""
    await start_all(system)
    await system.provision()
    portal = await _as(system, "portal")
    try:
        for username in (USER, AGENT, "nobody@masspasrr.org"):
            await _refused_request(portal, "rekey.rpc.credentials.account", {"username": username})
        answer = await RekeyClient(portal, timeout=5).call(
            "credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
        assert answer["username"] == AGENT
    finally:
        await portal.close()


async def test_a_compromised_portal_cannot_read_tickets_without_an_agents_sign_in(
    system: System,
) -> None:
    """The console lists and shows tickets with the signed-in agent's principal. The portal's
    key alone (no principal, or one it forged, or a user's sign-in token in its place) reads
    no ticket: not who asked for a reset, from which address, why, nor its timeline."""
    from shared.tokens import all_issuers, issue_token
    from tests.security.test_principals import _signed_by

    await start_all(system)
    await system.provision()
    ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username=USER, reason="new phone")
    number = ticket["ticket_number"]
    portal = await _as(system, "portal")
    client = RekeyClient(portal, timeout=5)
    not_agents = [None, _signed_by(system, "portal"),
                  issue_token(all_issuers(system.settings), USER, "password"),
                  system.operator()]
    try:
        for principal in not_agents:
            extra = {} if principal is None else {"principal": principal}
            with pytest.raises(RekeyError):
                await client.call("ticketing", "list", **extra)
            with pytest.raises(RekeyError):
                await client.call("ticketing", "show", ticket=number, **extra)
        shown = await client.call("ticketing", "show", ticket=number,
                                  principal=system.principal())  # an agent signed in: shown
        assert shown["username"] == USER
    finally:
        await portal.close()


async def test_a_compromised_portal_cannot_ask_whether_someone_accepted_the_agreement(
    system: System,
) -> None:
    """consent's status told the portal's key alone whether any username had accepted the
    agreement (so that the account exists and is in use); it now wants that user's MFA step."""
    from shared.tokens import all_issuers, issue_token

    await start_all(system)
    await system.provision()
    portal = await _as(system, "portal")
    client = RekeyClient(portal, timeout=5)
    keys = all_issuers(system.settings)
    try:
        for payload in ({"username": USER},
                        {"username": USER, "token": issue_token(keys, AGENT, "mfa")},
                        {"username": USER, "token": issue_token(keys, USER, "password")}):
            with pytest.raises(RekeyError):
                await client.call("consent", "status", **payload)
        mine = await client.call("consent", "status", username=USER,
                                 token=issue_token(keys, USER, "mfa"))
        assert mine["current"] is False
    finally:
        await portal.close()



@pytest.mark.parametrize("identity", ["portal", "auditor", "device"])
async def test_no_identity_but_the_operator_drops_snapshot_tables(system: System,
                                                                  identity: str) -> None:
    from tests.integration.test_old_snapshot_tables import OLD_FINGERPRINT, create, tables

    await system.start("credentials")
    prefix = system.app("credentials").recorder.events_table_name.removesuffix("_events")
    create(system, "credentials", f"{prefix}_snapshots_{OLD_FINGERPRINT}")
    before = tables(system, "credentials")
    caller = await _as(system, identity)
    try:
        await _refused_request(caller, "rekey.rpc.credentials.drop_old_snapshots", {})
    finally:
        await caller.close()
    assert tables(system, "credentials") == before
