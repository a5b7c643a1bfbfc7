"""A phished or malicious agent, signed in at the command line (a principal of channel ``cli``,
password and authenticator code), tries to reset their own account or a colleague's alone, the
way MGM's attackers would have wanted a help-desk insider to. Every step that would hand them
the account is refused with the reason, and no approval, reset or temporary password follows.
"""

from __future__ import annotations

import pytest

from rekey.stack.proofs import prove_by_manager
from shared.errors import NotAllowed, RekeyError
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    System,
    eventually,
    start_all,
)

pytestmark = pytest.mark.security
COLLEAGUE = "agent.jones"


async def _cli_agent(system: System) -> str:
    """The agent's principal as the CLI gets it: password, then a code from their app."""
    from rekey.stack.agents import agent_principal

    app = await system.invited_agent()
    principal = await agent_principal(system.call, AGENT, AGENT_PASSWORD, app, channel="cli")
    assert system.app("ticketing").principals.verify(principal, "agent").channel == "cli"
    return principal


async def _ticket_for(system: System, username: str, email: str) -> str:
    answer = await system.call("ticketing", "request_reset", name=username, email=email,
                               username=username, reason="lost phone")
    return str(answer["ticket_number"])


def _nothing_reset(system: System) -> None:
    assert "ResetApproved" not in system.event_names("ticketing")
    assert "PasswordIssued" not in system.event_names("credentials")
    assert "MethodsRevoked" not in system.event_names("verification")


async def test_an_agent_at_the_cli_cannot_prove_or_approve_a_reset_of_their_own_account(
    system: System,
) -> None:
    await start_all(system)
    await system.provision()
    mine = await _cli_agent(system)
    number = await _ticket_for(system, AGENT, "smith@example.org")
    before = system.app("ticketing").max_notification_id()

    for command, extra in (("attest_id_check", {"note": "it's me"}),
                           ("start_proof", {"kind": "email_code"}),
                           ("approve", {})):
        with pytest.raises(NotAllowed, match=r"their own account|they requested"):
            await system.call("ticketing", command, ticket=number, principal=mine, **extra)

    assert system.app("ticketing").max_notification_id() == before
    _nothing_reset(system)


async def test_an_agent_at_the_cli_cannot_reset_a_colleagues_account_alone(
    system: System,
) -> None:
    """A colleague's account is privileged (agents are): the proofs an agent can run alone are
    not enough, and four-eyes wants a second signed-in agent; and a reset the agent filed for
    the colleague they may not approve at all."""
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username=COLLEAGUE,
                      email="jones@example.org", display_name="Agent Jones", role="agent",
                      manager_email="head.of.desk@example.org",
                      password=AGENT_PASSWORD + " two", principal=system.operator())
    await eventually(lambda: system._ticketing_knows(COLLEAGUE))
    mine = await _cli_agent(system)

    filed = await system.call("ticketing", "request_reset", name="Agent Jones",
                              email="jones@example.org", username=COLLEAGUE,
                              reason="lost phone", principal=mine)
    number = str(filed["ticket_number"])
    with pytest.raises(NotAllowed, match="they requested"):
        await system.call("ticketing", "approve", ticket=number, principal=mine)
    await system.call("ticketing", "reject", ticket=number, principal=mine, reason="filed by me")

    number = await _ticket_for(system, COLLEAGUE, "jones@example.org")
    await system.prove_identity(number)  # mailed code and ID check: an ordinary account's
    with pytest.raises(RekeyError, match="privileged account needs"):
        await system.call("ticketing", "approve", ticket=number, principal=mine)
    await prove_by_manager(system.client, system.mail.folder, number, mine,  # type: ignore[arg-type]
                           lambda attempt: eventually(attempt, what="the manager's link"))
    first = await system.call("ticketing", "approve", ticket=number, principal=mine)
    assert first["state"] == "awaiting_second_approval"
    with pytest.raises(NotAllowed, match="second agent"):
        await system.call("ticketing", "approve", ticket=number, principal=mine)

    _nothing_reset(system)


async def test_an_approval_with_a_cli_principal_is_recorded_as_cli_whatever_the_caller_claims(
    system: System,
) -> None:
    """The caller says "console" (a portal's channel header); the signed principal says the
    agent signed in at the command line: the record keeps who acted and through what as the
    principal says, so a CLI sign-in cannot be passed off as a console action."""
    from shared.context import calling_as

    await start_all(system)
    await system.provision()
    mine = await _cli_agent(system)
    user = await _ticket_for(system, "jane.doe@masspasrr.org", "jane.doe@example.org")
    await system.prove_identity(user)
    with calling_as(channel="console", session_id="a console session"):
        await system.call("ticketing", "approve", ticket=user, principal=mine)

    approved = next(e for e in system.app("ticketing").envelopes() if e.name == "ResetApproved")
    assert approved.context is not None
    assert (approved.context.principal, approved.context.principal_kind) == (AGENT, "agent")
    assert approved.context.channel == "cli"
