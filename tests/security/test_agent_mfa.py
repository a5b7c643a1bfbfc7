"""Attacks on agents' sign-in: a phished password, a stolen or replayed invitation, a forged or
replayed passkey assertion, a replayed authenticator code. Each is refused, and nothing the
attacker could use is recorded (no principal, no spent invitation, no new factor).
"""

from __future__ import annotations

import jwt
import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from rekey.stack.agents import invitation_mails, invitation_secret
from services.verification.totp import parse_uri
from shared.clock import ManualClock
from shared.errors import AuthenticationFailed, Conflict, Expired, NotAllowed
from shared.principals import _private_key, issuer_for, operator_principal
from shared.waiting import eventually
from tests.integration.conftest import AGENT, AGENT_PASSWORD, USER, USER_EMAIL, System, start_all
from tests.softkey import SoftKey

pytestmark = pytest.mark.security
NEW = "agent.brown"
NEW_EMAIL = "brown@example.org"
NEW_PASSWORD = "brown agent passphrase for tests"


async def _ticket(system: System) -> str:
    answer = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username=USER, reason="new phone")
    return str(answer["ticket_number"])


async def _invited(system: System) -> str:
    """The secret of a new invitation, read from the mail, once its sending is recorded."""
    seen = invitation_mails(system.mail.folder, NEW_EMAIL)
    mailed = system.event_names("credentials").count("InvitationMailed")
    await system.call("credentials", "invite_agent", username=NEW, email=NEW_EMAIL,
                      display_name="Agent Brown", principal=operator_principal(system.settings))
    secret = await invitation_secret(system.mail.folder, NEW_EMAIL, seen)
    await eventually(lambda: system.event_names("credentials").count("InvitationMailed") > mailed,
                     what="the invitation's sending to be recorded")
    return secret


async def _with_passkey(system: System) -> SoftKey:
    secret = await _invited(system)
    begun = await system.call("credentials", "begin_invitation", invitation=secret,
                              factor_type="passkey")
    key = SoftKey(origin=system.settings.passkey_origin, rp_id=system.settings.passkey_rp_id)
    await system.call("credentials", "redeem_invitation", invitation=secret, factor_type="passkey",
                      password=NEW_PASSWORD, challenge_token=begun["challenge_token"],
                      credential=key.create(begun["options"]))
    return key


async def _passkey_challenge(system: System) -> dict[str, str]:
    answer = await system.call("credentials", "sign_in", username=NEW, password=NEW_PASSWORD,
                               channel="console")
    return dict(await system.call("credentials", "agent_passkey_options",
                                  token=answer["second_factor"]["token"]))


async def test_a_phished_agent_password_alone_cannot_act_on_a_ticket(system: System):
    await start_all(system)
    await system.provision()
    await system.invited_agent()  # the agent has an authenticator app the phisher does not
    number = await _ticket(system)
    before = system.app("ticketing").max_notification_id()

    answer = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD,
                               channel="console")
    assert "principal" not in answer
    stage_token = answer["second_factor"]["token"]
    # Neither the second-step token nor a credentials-signed principal without a second factor
    # (as an older release issued) approves anything.
    no_mfa = issuer_for(system.settings, "credentials").issue("agent", AGENT, channel="console",
                                                               ttl_seconds=600, amr=("pwd",))
    for principal in (stage_token, no_mfa):
        with pytest.raises(AuthenticationFailed):
            await system.call("ticketing", "approve", ticket=number, principal=principal)
        with pytest.raises(AuthenticationFailed):
            await system.call("ticketing", "attest_id_check", ticket=number, principal=principal,
                              note="passport seen")
    with pytest.raises(AuthenticationFailed, match="second factor"):
        await system.call("ticketing", "show", ticket=number, principal=no_mfa)
    # Guessing codes with the phished password does not pass either.
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "agent_totp_verify", token=stage_token, code="000000")
    assert system.app("ticketing").max_notification_id() == before
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_an_agent_principal_with_a_forged_amr_claim_is_refused(system: System):
    """Adding "otp" to a password-only principal breaks credentials' signature."""
    await start_all(system)
    await system.provision()
    number = await _ticket(system)
    genuine = issuer_for(system.settings, "credentials").issue("agent", AGENT, channel="console",
                                                                ttl_seconds=600, amr=("pwd",))
    claims = jwt.decode(genuine, options={"verify_signature": False})
    assert system.nats.keys is not None
    forged = jwt.encode({**claims, "amr": ["pwd", "otp"]},
                        _private_key(system.nats.keys.seed("portal")), algorithm="EdDSA")
    with pytest.raises(AuthenticationFailed):
        await system.call("ticketing", "approve", ticket=number, principal=forged)
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_a_spent_invitation_cannot_be_redeemed_twice(system: System):
    await start_all(system)
    await system.provision()
    secret = await _invited(system)
    begun = await system.call("credentials", "begin_invitation", invitation=secret, factor_type="totp")
    seed = parse_uri(begun["otpauth_uri"]).secret
    await system.call("credentials", "redeem_invitation", invitation=secret, password=NEW_PASSWORD,
                      factor_type="totp", code=pyotp.TOTP(seed).now())
    before = system.app("credentials").max_notification_id()
    # Whoever finds the mail later cannot set a password or enrol their own factor with it.
    with pytest.raises(Conflict, match="already been used"):
        await system.call("credentials", "invitation", invitation=secret)
    with pytest.raises(Conflict, match="already been used"):
        await system.call("credentials", "begin_invitation", invitation=secret, factor_type="totp")
    with pytest.raises(Conflict, match="already been used"):
        await system.call("credentials", "redeem_invitation", invitation=secret,
                          password="the attacker's own passphrase", factor_type="totp",
                          code=pyotp.TOTP(seed).now())
    assert system.app("credentials").max_notification_id() == before
    agents = await system.call("credentials", "list_agents", principal=system.operator())
    assert len(next(a for a in agents if a["username"] == NEW)["factors"]) == 1


async def test_a_forged_or_expired_invitation_is_refused(system: System):
    clock = ManualClock()
    await system.start("credentials", clock=clock)
    await system.start("ticketing", clock=clock)
    await system.provision()
    with pytest.raises(AuthenticationFailed, match="not valid"):
        await system.call("credentials", "invitation", invitation="x" * 43)
    secret = await _invited(system)
    clock.advance(system.settings.agent_invitation_hours * 3600 + 1)
    before = system.app("credentials").max_notification_id()
    with pytest.raises(Expired, match="expired"):
        await system.call("credentials", "redeem_invitation", invitation=secret,
                          password=NEW_PASSWORD, factor_type="totp", code="123456")
    assert system.app("credentials").max_notification_id() == before


async def test_a_replaced_invitation_no_longer_works(system: System):
    """Inviting again (a lost key) ends the earlier link, wherever it went."""
    await start_all(system)
    await system.provision()
    first = await _invited(system)
    await _invited(system)
    with pytest.raises(AuthenticationFailed, match="not valid"):
        await system.call("credentials", "begin_invitation", invitation=first, factor_type="totp")


async def test_a_forged_passkey_assertion_is_refused(system: System):
    await start_all(system)
    await system.provision()
    key = await _with_passkey(system)
    before = system.app("credentials").max_notification_id()
    # Signed with the attacker's own key, for the agent's credential id.
    challenge = await _passkey_challenge(system)
    forged = key.get(challenge["options"], key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AuthenticationFailed, match="not accepted"):
        await system.call("credentials", "agent_passkey_verify",
                          challenge_token=challenge["challenge_token"], credential=forged)
    # Made on a look-alike site: the browser names that origin, which is not the portal's.
    challenge = await _passkey_challenge(system)
    phished = key.get(challenge["options"], origin="https://rekey-portal.example.net")
    with pytest.raises(AuthenticationFailed, match="not accepted"):
        await system.call("credentials", "agent_passkey_verify",
                          challenge_token=challenge["challenge_token"], credential=phished)
    # For a challenge of its own making, not the one credentials issued.
    challenge = await _passkey_challenge(system)
    own = key.get('{"challenge": "' + "A" * 43 + '"}')
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "agent_passkey_verify",
                          challenge_token=challenge["challenge_token"], credential=own)
    names = system.event_names("credentials")
    assert "PasskeyUsed" not in names
    assert all(e.name in ("SignInSucceeded", "SignInFailed", "AccountLocked")
               for e in system.app("credentials").envelopes(before + 1))


async def test_a_passkey_assertion_cannot_be_replayed(system: System):
    await start_all(system)
    await system.provision()
    key = await _with_passkey(system)
    challenge = await _passkey_challenge(system)
    assertion = key.get(challenge["options"])
    await system.call("credentials", "agent_passkey_verify",
                      challenge_token=challenge["challenge_token"], credential=assertion)
    with pytest.raises(AuthenticationFailed, match="not accepted"):
        await system.call("credentials", "agent_passkey_verify",
                          challenge_token=challenge["challenge_token"], credential=assertion)
    # A cloned key's counter falls behind the genuine key's: refused too.
    challenge = await _passkey_challenge(system)
    with pytest.raises(AuthenticationFailed, match="not accepted"):
        await system.call("credentials", "agent_passkey_verify",
                          challenge_token=challenge["challenge_token"],
                          credential=key.get(challenge["options"], count=1))
    assert system.event_names("credentials").count("PasskeyUsed") == 1


async def test_a_totp_code_cannot_be_replayed(system: System):
    await start_all(system)
    await system.provision()
    app = await system.invited_agent()
    code = await app.next_code()  # a code seen over the agent's shoulder, used by the agent
    first = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD,
                              channel="console")
    await system.call("credentials", "agent_totp_verify", token=first["second_factor"]["token"],
                      code=code)
    used = system.event_names("credentials").count("AuthenticatorCodeUsed")
    second = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD,
                               channel="console")
    with pytest.raises(AuthenticationFailed, match="already used"):
        await system.call("credentials", "agent_totp_verify", token=second["second_factor"]["token"],
                          code=code)
    assert system.event_names("credentials").count("AuthenticatorCodeUsed") == used


async def test_the_portals_key_cannot_invite_an_agent(system: System):
    await start_all(system)
    await system.provision()
    with pytest.raises((AuthenticationFailed, NotAllowed)):
        await system.call("credentials", "invite_agent", username="mallory", email="m@example.org",
                          display_name="Mallory", principal=system.principal())
    assert "AgentInvited" not in system.event_names("credentials")


async def _refused_by_ticketing(system: System, principal: str, number: str) -> bool:
    try:
        await system.call("ticketing", "show", ticket=number, principal=principal)
    except AuthenticationFailed:
        return True
    return False


async def _cannot_reject(system: System, principal: str, number: str) -> None:
    """The refusal of an action (not only of a read), and nothing recorded by it."""
    before = system.app("ticketing").max_notification_id()
    with pytest.raises(AuthenticationFailed, match="Sign in again"):
        await system.call("ticketing", "reject", ticket=number, reason="not the caller",
                          principal=principal)
    assert system.app("ticketing").max_notification_id() == before
    assert system.app("ticketing").show(number, system.principal())["state"] == "open"


async def test_a_stolen_agent_session_cannot_act_once_the_operator_ends_it(system: System):
    clock = ManualClock()  # so the agent's next code comes without a wait for the clock
    await start_all(system, clock=clock)
    await system.provision()
    app = await system.invited_agent()
    stolen = await system.signed_in_agent(app)
    number = await _ticket(system)
    await system.call("ticketing", "show", ticket=number, principal=stolen)  # it works until then
    clock.advance(60)  # the theft is noticed a minute later

    await system.call("credentials", "end_agent_sessions", username=AGENT,
                      reason="session seen from an unknown address", principal=system.operator())
    with pytest.raises(AuthenticationFailed, match="Sign in again"):  # credentials: at once
        await system.call("credentials", "session_check", username=AGENT, principal=stolen)
    await eventually(lambda: _refused_by_ticketing(system, stolen, number),
                     what="ticketing to refuse the ended session")
    await _cannot_reject(system, stolen, number)
    assert "AgentSessionsEnded" in system.event_names("credentials")

    fresh = await system.signed_in_agent(app)  # the agent's own new sign-in works
    assert (await system.call("ticketing", "show", ticket=number, principal=fresh))["state"] == "open"


async def test_a_session_signed_in_with_a_revoked_factor_cannot_act(system: System):
    await start_all(system)
    await system.provision()
    app = await system.invited_agent()
    stolen = await system.signed_in_agent(app)  # the phone with the app is then reported stolen
    number = await _ticket(system)
    [agent] = [a for a in await system.call("credentials", "list_agents", principal=system.operator())
               if a["username"] == AGENT]
    await system.call("credentials", "revoke_agent_factor", username=AGENT,
                      factor_id=agent["factors"][0]["factor_id"], principal=system.operator())
    await eventually(lambda: _refused_by_ticketing(system, stolen, number),
                     what="ticketing to refuse sign-ins made with the revoked factor")
    await _cannot_reject(system, stolen, number)
