"""Agent invitations and method registrations take an idempotency key: a caller's retry after a
timeout gets the first answer (the same invitation, the same method and QR code) and nothing
new is created or sent; the same key for a different request is refused and changes nothing."""

from __future__ import annotations

import pyotp
import pytest

from services.verification import totp
from shared.caught import list_mails, list_texts
from shared.errors import Conflict, NotFound
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, eventually, start_all, start_verification

AGENT = "new.agent"
AGENT_EMAIL = "new.agent@example.org"
NUMBER, E164 = "(508) 555-0142", "+15085550142"


def token_for(system: System) -> str:
    return issue_token(all_issuers(system.settings), USER, "password")


def invitation_mails(system: System) -> list:
    return [m for m in list_mails(system.mail.folder) if AGENT_EMAIL in m.to]


def stored(system: System, service: str) -> list[str]:
    """The names of every event the service stored, public or not."""
    notifications = system.app(service).recorder.select_notifications(start=1, limit=10_000)
    return [n.topic.rsplit(".", 1)[-1] for n in notifications]


def started(system: System) -> list[str]:
    return [e.body["method_id"] for e in system.app("verification").envelopes()
            if e.name == "MethodRegistrationStarted"]


async def test_a_retried_agent_invitation_with_the_same_key_returns_the_first_and_mails_once(
    system: System,
):
    await start_all(system)
    invite = {"username": AGENT, "email": AGENT_EMAIL, "display_name": "New Agent",
              "idempotency_key": "invite-new-agent-0001"}
    first = await system.call("credentials", "invite_agent", principal=system.operator(), **invite)
    await eventually(lambda: len(invitation_mails(system)) == 1, what="the invitation mail")
    again = await system.call("credentials", "invite_agent", principal=system.operator(), **invite)

    assert again == first and first["registered"] is True
    await eventually(lambda: "InvitationMailed" in stored(system, "credentials"),
                     what="the invitation recorded mailed")
    names = stored(system, "credentials")
    assert (names.count("AccountRegistered"), names.count("AgentInvited"),
            names.count("InvitationMailed")) == (1, 1, 1)
    assert len(invitation_mails(system)) == 1


async def test_the_same_invitation_key_for_another_agent_is_refused_and_invites_nobody(
    system: System,
):
    await start_all(system)
    key = "invite-new-agent-0002"
    await system.call("credentials", "invite_agent", username=AGENT, email=AGENT_EMAIL,
                      display_name="New Agent", principal=system.operator(), idempotency_key=key)
    await eventually(lambda: len(invitation_mails(system)) == 1, what="the invitation mail")
    # The mail reaches the sink before credentials records it sent: wait for that record too.
    await eventually(lambda: "InvitationMailed" in stored(system, "credentials"),
                     what="the invitation recorded mailed")
    before = system.app("credentials").max_notification_id()

    with pytest.raises(Conflict, match="already used for a different request"):
        await system.call("credentials", "invite_agent", username="other.agent",
                          email="other.agent@example.org", display_name="Other Agent",
                          principal=system.operator(), idempotency_key=key)
    assert system.app("credentials").max_notification_id() == before
    assert not [m for m in list_mails(system.mail.folder) if "other.agent@example.org" in m.to]


async def test_a_retried_app_registration_returns_the_same_method_and_qr_code(system: System):
    await start_all(system)
    await system.provision()
    request = {"username": USER, "token": token_for(system),
               "idempotency_key": "setup-app-0000001"}
    first = await system.call("verification", "start_app_registration", **request)
    again = await system.call("verification", "start_app_registration", **request)

    assert again == first  # the same seed, activation and QR code: the app scanned either
    assert started(system) == [first["method_id"]]
    seed = totp.parse_uri(again["otpauth_uri"]).secret
    verified = await system.call("verification", "verify_code", username=USER,
                                 token=token_for(system), method_id=first["method_id"],
                                 code=pyotp.TOTP(seed).now())
    assert verified["mfa_token"]
    with pytest.raises(Conflict, match="already finished"):  # the key is spent with its setup
        await system.call("verification", "start_app_registration",
                          **{**request, "token": verified["mfa_token"]})
    assert started(system) == [first["method_id"]]


async def test_the_same_setup_key_for_another_app_is_refused_and_starts_nothing(system: System):
    await start_all(system)
    await system.provision()
    request = {"username": USER, "token": token_for(system), "idempotency_key": "setup-app-0000002"}
    await system.call("verification", "start_app_registration", **request)
    before = system.app("verification").max_notification_id()

    with pytest.raises(Conflict, match="already used for a different request"):
        await system.call("verification", "start_app_registration", **request, app="other")
    assert system.app("verification").max_notification_id() == before


async def test_a_retried_passkey_registration_keeps_one_method_with_a_fresh_challenge(
    system: System,
):
    await start_all(system)
    await system.provision()
    request = {"username": USER, "token": token_for(system), "idempotency_key": "setup-passkey-01"}
    first = await system.call("verification", "start_passkey_registration", **request)
    again = await system.call("verification", "start_passkey_registration", **request)

    assert again["method_id"] == first["method_id"]
    assert again["challenge_id"] != first["challenge_id"]  # a challenge is never shown twice
    assert started(system) == [first["method_id"]]


async def test_a_retried_phone_registration_sends_no_second_text(phone_system: System):
    await start_verification(phone_system)
    request = {"username": USER, "token": token_for(phone_system), "number": NUMBER,
               "channel": "sms", "idempotency_key": "setup-phone-00001"}
    first = await phone_system.call("verification", "start_phone_registration", **request)
    again = await phone_system.call("verification", "start_phone_registration", **request)

    assert again == first
    assert started(phone_system) == [first["method_id"]]
    assert len([t for t in list_texts(phone_system.twilio.folder) if t.to == E164]) == 1
    with pytest.raises(Conflict, match="already used for a different request"):
        await phone_system.call("verification", "start_phone_registration",
                                **{**request, "channel": "call"})
    assert started(phone_system) == [first["method_id"]]


async def test_a_new_app_setup_replaces_an_unfinished_one_whose_codes_then_fail(system: System):
    await start_all(system)
    await system.provision()
    first = await system.call("verification", "start_app_registration", username=USER,
                              token=token_for(system), idempotency_key="setup-app-0000002")
    assert first["replaces_earlier"] is False
    second = await system.call("verification", "start_app_registration", username=USER,
                               token=token_for(system), app="other",
                               idempotency_key="setup-app-0000003")
    assert second["replaces_earlier"] is True  # the portal says the first QR code stopped working
    retried = await system.call("verification", "start_app_registration", username=USER,
                                token=token_for(system), app="other",
                                idempotency_key="setup-app-0000003")
    assert retried == second

    old_seed = totp.parse_uri(first["otpauth_uri"]).secret
    before = system.app("verification").max_notification_id()
    with pytest.raises(NotFound, match="not set up"):  # the app that scanned it no longer works
        await system.call("verification", "verify_code", username=USER, token=token_for(system),
                          method_id=first["method_id"], code=pyotp.TOTP(old_seed).now())
    assert system.app("verification").max_notification_id() == before
    assert "MethodSetupsReplaced" in stored(system, "verification")
    seed = totp.parse_uri(second["otpauth_uri"]).secret
    verified = await system.call("verification", "verify_code", username=USER,
                                 token=token_for(system), method_id=second["method_id"],
                                 code=pyotp.TOTP(seed).now())
    assert verified["mfa_token"]
