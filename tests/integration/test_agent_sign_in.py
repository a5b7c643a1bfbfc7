"""Agents sign in with a password and a second factor, over the bus, on both stores.

An operator invites an agent; the agent redeems the mailed invitation with a password and an
authenticator app or a passkey; a sign-in is then the password and a fresh code (or the
passkey), and only that earns the principal tickets are handled with.
"""

from __future__ import annotations

import jwt
import pyotp
import pytest
from eventsourcing.persistence import IntegrityError

from rekey.stack.agents import INVITATION_SUBJECT, invitation_mails, invitation_secret
from services.verification.totp import parse_uri
from shared.caught import list_mails
from shared.errors import AuthenticationFailed
from shared.principals import operator_principal
from tests.integration.conftest import AGENT_PASSWORD, USER_EMAIL, System, start_all
from tests.softkey import SoftKey

NEW = "agent.brown"
NEW_EMAIL = "brown@example.org"


async def _invite(system: System, username: str = NEW, email: str = NEW_EMAIL) -> str:
    seen = invitation_mails(system.mail.folder, email)
    await system.call("credentials", "invite_agent", username=username, email=email,
                      display_name="Agent Brown", principal=operator_principal(system.settings))
    return await invitation_secret(system.mail.folder, email, seen)


async def test_an_invited_agent_redeems_with_an_app_and_acts_only_after_a_code(system: System):
    await start_all(system)
    await system.provision()
    app = await system.invited_agent(NEW, AGENT_PASSWORD + " brown", NEW_EMAIL)
    mail = [m for m in list_mails(system.mail.folder)
            if INVITATION_SUBJECT in m.subject][-1]
    assert "/console/invite/" in mail.body and NEW_EMAIL in mail.to

    answer = await system.call("credentials", "sign_in", username=NEW,
                               password=AGENT_PASSWORD + " brown", channel="console")
    assert "principal" not in answer
    assert answer["second_factor"]["factors"] == ["totp"]
    principal = await system.signed_in_agent(app, NEW, AGENT_PASSWORD + " brown")
    claims = jwt.decode(principal, options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp"] and claims["sub"] == NEW

    ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username="jane.doe@masspasrr.org", reason="new phone")
    shown = await system.call("ticketing", "show", ticket=ticket["ticket_number"], principal=principal)
    assert shown["state"] == "open"
    names = system.event_names("credentials")
    for name in ("AgentInvited", "InvitationMailed", "AgentFactorEnrolled", "InvitationRedeemed",
                 "AuthenticatorCodeUsed"):
        assert name in names


async def test_an_agent_enrols_a_passkey_and_signs_in_with_it(system: System):
    await start_all(system)
    await system.provision()
    secret = await _invite(system)
    begun = await system.call("credentials", "begin_invitation", invitation=secret,
                              factor_type="passkey")
    key = SoftKey(origin=system.settings.passkey_origin, rp_id=system.settings.passkey_rp_id)
    await system.call("credentials", "redeem_invitation", invitation=secret, factor_type="passkey",
                      password=AGENT_PASSWORD + " brown", challenge_token=begun["challenge_token"],
                      credential=key.create(begun["options"]))

    answer = await system.call("credentials", "sign_in", username=NEW,
                               password=AGENT_PASSWORD + " brown", channel="console")
    assert answer["second_factor"]["factors"] == ["passkey"]
    options = await system.call("credentials", "agent_passkey_options",
                                token=answer["second_factor"]["token"])
    signed = await system.call("credentials", "agent_passkey_verify",
                               challenge_token=options["challenge_token"],
                               credential=key.get(options["options"]))
    claims = jwt.decode(signed["principal"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "hwk"]
    assert "PasskeyUsed" in system.event_names("credentials")


async def test_an_operator_lists_agents_and_revokes_a_factor(system: System):
    await start_all(system)
    await system.provision()
    app = await system.invited_agent(NEW, AGENT_PASSWORD + " brown", NEW_EMAIL)
    agents = await system.call("credentials", "list_agents", principal=system.operator())
    brown = next(a for a in agents if a["username"] == NEW)
    assert [f["factor_type"] for f in brown["factors"]] == ["totp"] and brown["invitation"] is None
    await system.call("credentials", "revoke_agent_factor", username=NEW,
                      factor_id=brown["factors"][0]["factor_id"], principal=system.operator())
    with pytest.raises(AuthenticationFailed):
        await system.signed_in_agent(app, NEW, AGENT_PASSWORD + " brown")
    assert "AgentFactorRevoked" in system.event_names("credentials")


async def test_a_redemption_that_meets_a_concurrent_write_is_tried_again_and_works(system: System):
    """The invitation's "mailed" record can land between reading and saving the account: the
    save conflicts and the redemption is run again, with the app's key still to be found."""
    await start_all(system)
    await system.provision()
    secret = await _invite(system)
    begun = await system.call("credentials", "begin_invitation", invitation=secret, factor_type="totp")
    app = system.app("credentials")
    save, conflicts = app.save, []

    def conflicting_once(*aggregates: object, **kwargs: object) -> object:
        if not conflicts:
            conflicts.append(True)
            raise IntegrityError("another writer saved this account first")
        return save(*aggregates, **kwargs)

    app.save = conflicting_once
    try:
        await system.call("credentials", "redeem_invitation", invitation=secret,
                          password=AGENT_PASSWORD + " brown", factor_type="totp",
                          code=pyotp.TOTP(parse_uri(begun["otpauth_uri"]).secret).now())
    finally:
        app.save = save
    assert conflicts and "InvitationRedeemed" in system.event_names("credentials")


async def test_the_invitation_shows_the_same_app_key_until_it_is_redeemed(system: System):
    """A wrong code re-shows the page: the key the app already scanned must still be the one."""
    await start_all(system)
    await system.provision()
    secret = await _invite(system)
    first = await system.call("credentials", "begin_invitation", invitation=secret, factor_type="totp")
    again = await system.call("credentials", "begin_invitation", invitation=secret, factor_type="totp")
    assert first["otpauth_uri"] == again["otpauth_uri"]
