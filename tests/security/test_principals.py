"""Principals, not names: an agent acts only with a principal credentials signed at sign-in.

The attackers: anyone on the bus who knows agents' names ("approve as helpdesk.agent"), a
compromised portal that signs its own assertions, a holder of the operator's key, and a phished
agent trying to pass four-eyes alone. Each attempt is refused and records nothing.
"""

from __future__ import annotations

import time

import jwt
import pytest

from shared.errors import AuthenticationFailed, NotAllowed
from shared.principals import PrincipalIssuer, _private_key
from tests.integration.conftest import AGENT, AGENT_PASSWORD, USER, USER_EMAIL, System, start_all

pytestmark = pytest.mark.security
SECOND = "agent.jones"


async def _ticket(system: System) -> str:
    answer = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username=USER, reason="new phone")
    return str(answer["ticket_number"])


def _signed_by(system: System, identity: str, **claims: object) -> str:
    """A JWT in principal form, signed with ``identity``'s own key (the attacker's)."""
    assert system.nats.keys is not None
    now = int(time.time())
    body = {"iss": "credentials", "aud": "rekey", "sub": AGENT, "knd": "agent", "chn": "console",
            "sid": "x", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, _private_key(system.nats.keys.seed(identity)), algorithm="EdDSA")


async def _refused(system: System, principal: str, error: type[Exception]) -> None:
    number = await _ticket(system)
    before = system.app("ticketing").max_notification_id()
    with pytest.raises(error):
        await system.call("ticketing", "approve", ticket=number, principal=principal)
    with pytest.raises(error):
        await system.call("ticketing", "attest_id_check", ticket=number, principal=principal,
                          note="passport seen")
    assert system.app("ticketing").max_notification_id() == before
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_an_agents_name_alone_approves_nothing(system: System) -> None:
    await start_all(system)
    await system.provision()
    number = await _ticket(system)
    with pytest.raises(Exception, match="principal"):
        await system.call("ticketing", "approve", ticket=number, agent=AGENT)
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_a_principal_the_portal_signed_itself_is_refused(system: System) -> None:
    await start_all(system)
    await system.provision()
    await _refused(system, _signed_by(system, "portal"), AuthenticationFailed)


async def test_the_operators_key_cannot_vouch_for_an_agent(system: System) -> None:
    await start_all(system)
    await system.provision()
    assert system.nats.keys is not None
    with pytest.raises(ValueError, match="does not vouch"):
        PrincipalIssuer("operator", system.nats.keys.seed("operator")).issue(
            "agent", AGENT, channel="cli", ttl_seconds=60)
    await _refused(system, _signed_by(system, "operator", iss="operator"), NotAllowed)


async def test_a_principal_with_a_changed_name_is_refused(system: System) -> None:
    await start_all(system)
    await system.provision()
    genuine = system.principal(AGENT)
    header, payload, signature = genuine.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(AGENT.encode(), b"agent.other")).decode()
    await _refused(system, f"{header}.{forged_payload}.{signature}", AuthenticationFailed)


async def test_an_unsigned_principal_is_refused(system: System) -> None:
    await start_all(system)
    await system.provision()
    now = int(time.time())
    unsigned = jwt.encode({"iss": "credentials", "aud": "rekey", "sub": AGENT, "knd": "agent",
                           "iat": now, "exp": now + 600}, key=None, algorithm="none")
    await _refused(system, unsigned, AuthenticationFailed)


async def test_an_expired_principal_is_refused(system: System) -> None:
    await start_all(system)
    await system.provision()
    then = int(time.time()) - 7200
    expired = _signed_by(system, "credentials", iat=then, exp=then + 3600)
    await _refused(system, expired, AuthenticationFailed)


async def test_one_agent_cannot_pass_four_eyes_alone(system: System) -> None:
    """A phished agent has one principal; a second approval needs a second signed-in agent."""
    system.settings.four_eyes = "all"
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username=SECOND, email="j@example.org",
                      display_name="Agent Jones", role="agent", password=AGENT_PASSWORD + " two",
                      principal=system.operator())
    mine = await system.signed_in_agent(await system.invited_agent())  # password and a code
    number = await _ticket(system)
    await system.prove_identity(number)
    first = await system.call("ticketing", "approve", ticket=number, principal=mine)
    assert first["state"] == "awaiting_second_approval"
    with pytest.raises(NotAllowed, match="second agent"):
        await system.call("ticketing", "approve", ticket=number, principal=mine)
    with pytest.raises(AuthenticationFailed):  # the second agent's name, but not their sign-in
        await system.call("ticketing", "approve", ticket=number,
                          principal=_signed_by(system, "portal", sub=SECOND))
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_a_user_sign_in_gets_no_agent_principal(system: System) -> None:
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username="plain.user@masspasrr.org",
                      email="p@example.org", display_name="P", password="a long user passphrase!",
                      principal=system.operator())
    answer = await system.call("credentials", "sign_in", username="plain.user@masspasrr.org",
                               password="a long user passphrase!")
    assert "principal" not in answer


async def test_only_the_operators_own_key_provisions_an_agent(system: System) -> None:
    """Creating agents is the operator's: the portal's key, or an agent's sign-in, is refused."""
    await start_all(system)
    await system.provision()
    agent = {"username": "mallory", "email": "m@example.org", "display_name": "Mallory",
             "role": "agent", "password": "a long enough password for an agent"}
    before = system.app("credentials").max_notification_id()
    forged = _signed_by(system, "portal", iss="operator", sub="operator", knd="operator")
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "register_account", **agent, principal=forged)
    with pytest.raises(NotAllowed):
        await system.call("credentials", "register_account", **agent, principal=system.principal())
    assert system.app("credentials").max_notification_id() == before
    created = await system.call("credentials", "register_account", **agent,
                                principal=system.operator())
    assert created["role"] == "agent"


async def test_the_portals_key_with_a_principal_that_is_not_an_agents_sign_in_acts_on_nothing(
    system: System,
) -> None:
    """A compromised portal host sends agent commands over its own bus identity, with what it
    can lay hands on instead of a live agent sign-in: an expired one, one without a second
    factor, one it signed itself, the operator's, a user's sign-in token. All refused; nothing
    recorded anywhere."""
    from shared.bus.connection import connect
    from shared.client import RekeyClient
    from shared.tokens import all_issuers, issue_token

    await start_all(system)
    await system.provision()
    number = await _ticket(system)
    await system.prove_identity(number)
    then = int(time.time()) - 7200
    not_live = {
        "expired": _signed_by(system, "credentials", iat=then, exp=then + 600,
                              amr=["pwd", "otp"]),
        "password only": _signed_by(system, "credentials", amr=["pwd"]),
        "portal-signed": _signed_by(system, "portal", amr=["pwd", "otp"]),
        "operator's": system.operator(),
        "a user's token": issue_token(all_issuers(system.settings), USER, "password"),
    }
    commands = [("approve", {}), ("reject", {"reason": "no"}),
                ("attest_id_check", {"note": "seen"}), ("start_proof", {"kind": "email_code"}),
                ("close_review", {"note": "fine"})]
    before = {name: system.app(name).max_notification_id() for name in system.runtimes}
    portal = await connect(system.settings, "portal", name="compromised-portal", attempts=3)
    client = RekeyClient(portal, timeout=5)
    try:
        for principal in not_live.values():
            for command, extra in commands:
                with pytest.raises((AuthenticationFailed, NotAllowed)):
                    await client.call("ticketing", command, ticket=number, principal=principal,
                                      **extra)
            with pytest.raises((AuthenticationFailed, NotAllowed)):
                await client.call("credentials", "session_check", username=AGENT,
                                  principal=principal)
    finally:
        await portal.close()
    assert {name: system.app(name).max_notification_id() for name in system.runtimes} == before
    assert "ResetApproved" not in system.event_names("ticketing")
