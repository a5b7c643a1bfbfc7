"""Each service with a real nats-server and its real store: the reset, end to end in-process."""

from __future__ import annotations

import re
import unicodedata

import pyotp
import pytest

from rekey.stack.journey import complete_reset
from services.verification import totp
from shared.caught import latest_mail_to
from shared.errors import (
    AuthenticationFailed,
    Conflict,
    Expired,
    InvalidRequest,
    NotAllowed,
    NotFound,
)
from tests.integration.conftest import (
    AGENT,
    USER,
    USER_EMAIL,
    System,
    eventually,
    start_all,
)

TEMPORARY = re.compile(r"Temporary password: (\S+)")
NEW_PASSWORD = "a brand new and long passphrase"


async def temporary_password(system: System) -> str:
    mail = await eventually(
        lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "temporary"), what="the mail"
    )
    return TEMPORARY.search(mail.body).group(1)


async def app_registration_started(system: System) -> tuple[str, dict]:
    """Reset approved, new password chosen, the authenticator app's registration begun."""
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    temporary = await temporary_password(system)
    token = (await system.call("credentials", "change_password", username=USER,
                               current_password=temporary, new_password=NEW_PASSWORD))["token"]
    registration = await system.call("verification", "start_app_registration", username=USER,
                                     token=token)
    return token, registration


async def test_an_approved_reset_revokes_methods_and_mails_a_temporary_password(system: System):
    await start_all(system)
    await system.provision()
    await system.approved_ticket()

    password = await temporary_password(system)
    assert len(password) == 16
    await eventually(lambda: "MethodsRevoked" in system.event_names("verification"))
    await eventually(lambda: "TemporaryPasswordSent" in system.event_names("credentials"))
    signed = await system.call("credentials", "sign_in", username=USER, password=password)
    assert signed["must_change_password"] is True
    assert "token" not in signed  # no way past the password step until it is changed
    changed = await system.call("credentials", "change_password", username=USER,
                                change_token=signed["change_token"], new_password=NEW_PASSWORD)
    assert changed["token"]
    assert password not in str(signed)


async def test_a_change_token_stops_working_when_a_new_temporary_password_is_issued(
    system: System,
):
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    first = await temporary_password(system)
    old = (await system.call("credentials", "sign_in", username=USER, password=first))
    await system.approved_ticket()  # a second reset issues another temporary password

    async def reissued() -> bool:
        return await temporary_password(system) != first

    await eventually(reissued, what="the second temporary password")
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "change_password", username=USER,
                          change_token=old["change_token"], new_password=NEW_PASSWORD)
    with pytest.raises(InvalidRequest, match="either the current password or the change token"):
        await system.call("credentials", "change_password", username=USER,
                          new_password=NEW_PASSWORD)


async def test_a_new_password_that_is_the_current_one_is_refused_and_changes_nothing(system: System):
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    temporary = await temporary_password(system)
    signed = await system.call("credentials", "sign_in", username=USER, password=temporary)
    with pytest.raises(InvalidRequest, match="different from the current one"):  # by its hash
        await system.call("credentials", "change_password", username=USER,
                          change_token=signed["change_token"], new_password=temporary)
    accented = "une très longue phrase de passe à moi"
    await system.call("credentials", "change_password", username=USER, current_password=temporary,
                      new_password=accented)
    changes = system.event_names("credentials").count("PasswordChanged")
    with pytest.raises(InvalidRequest, match="different from the current one"):  # as typed: NFD too
        await system.call("credentials", "change_password", username=USER, current_password=accented,
                          new_password=unicodedata.normalize("NFD", accented))

    assert system.event_names("credentials").count("PasswordChanged") == changes
    signed = await system.call("credentials", "sign_in", username=USER, password=accented)
    assert signed["must_change_password"] is False


async def test_the_whole_guide_closes_the_ticket_and_history_is_secret_free(system: System):
    await start_all(system)
    await system.provision()
    number = await system.approved_ticket()
    temporary = await temporary_password(system)
    completed = await complete_reset(system, USER, temporary, NEW_PASSWORD)

    async def closed():
        return (await system.call("ticketing", "show", ticket=number))["state"] == "closed"

    await eventually(closed, what="the ticket to close")
    history = []
    for service in ("ticketing", "credentials", "verification", "consent"):
        history += await system.call(service, "history", username=USER)
    names = {e["name"] for e in history}
    assert {"ResetRequested", "ResetApproved", "PasswordIssued", "TemporaryPasswordSent",
            "SignInSucceeded", "PasswordChanged", "MethodsRevoked", "MethodRegistered",
            "ChallengeVerified", "DefaultMethodSet", "AgreementAccepted", "TicketClosed"} <= names
    text = str(history)
    for secret in (temporary, NEW_PASSWORD, completed.seed, completed.registration["secret_key"]):
        assert secret not in text


async def test_a_malformed_request_is_refused_and_records_nothing(system: System):
    await start_all(system)
    before = system.app("ticketing").max_notification_id()
    with pytest.raises(InvalidRequest) as refused:
        await system.call("ticketing", "request_reset", name="", email="not-an-email",
                          username="x", reason="new phone")
    assert "email" in refused.value.message
    assert system.app("ticketing").max_notification_id() == before


async def test_the_requester_cannot_approve_their_own_request(system: System):
    await start_all(system)
    await system.provision()
    ticket = await system.call("ticketing", "request_reset", name="Jane", email=USER_EMAIL,
                               username=USER, reason="new phone", principal=system.principal())
    before = system.app("ticketing").max_notification_id()
    with pytest.raises(NotAllowed, match="requested"):
        await system.call("ticketing", "approve", ticket=ticket["ticket_number"],
                          principal=system.principal())
    assert system.app("ticketing").max_notification_id() == before


async def test_a_second_approval_is_refused(system: System):
    await start_all(system)
    await system.provision()
    number = await system.approved_ticket()
    with pytest.raises(Conflict, match="already approved"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    assert system.event_names("ticketing").count("ResetApproved") == 1


async def test_a_reset_for_an_unknown_user_cannot_be_approved(system: System):
    await start_all(system)
    await system.provision()
    ticket = await system.call("ticketing", "request_reset", name="Nobody", email="n@example.org",
                               username="nobody@masspasrr.org", reason="new phone")
    with pytest.raises(NotFound, match="no portal account"):
        await system.call("ticketing", "approve", ticket=ticket["ticket_number"],
                          principal=system.principal())
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_a_non_agent_cannot_approve(system: System):
    await start_all(system)
    await system.provision()
    ticket = await system.call("ticketing", "request_reset", name="Jane", email=USER_EMAIL,
                               username=AGENT, reason="new phone")
    with pytest.raises(NotAllowed, match="not a help-desk agent"):
        await system.call("ticketing", "approve", ticket=ticket["ticket_number"],
                          principal=system.principal(USER))


async def test_unknown_users_and_wrong_passwords_get_the_same_answer(system: System):
    await start_all(system)
    await system.provision()
    with pytest.raises(AuthenticationFailed) as unknown:
        await system.call("credentials", "sign_in", username="ghost", password="whatever")
    with pytest.raises(AuthenticationFailed) as wrong:
        await system.call("credentials", "sign_in", username=AGENT, password="not it")
    assert unknown.value.message == wrong.value.message
    assert "SignInFailed" in system.event_names("credentials")


async def test_a_wrong_code_is_recorded_as_failed_and_registers_nothing(system: System):
    token, registration = await app_registration_started(system)
    with pytest.raises(InvalidRequest, match="not right"):
        await system.call("verification", "verify_code", username=USER, token=token,
                          method_id=registration["method_id"], code="000000x"[:6])
    names = system.event_names("verification")
    assert "ChallengeFailed" in names
    assert "MethodRegistered" not in names


async def test_verification_refuses_a_forged_token(system: System):
    await start_all(system)
    with pytest.raises(AuthenticationFailed):
        await system.call("verification", "start_app_registration", username=USER,
                          token="eyJzdWIiOiJqYW5lIn0.forged")


async def test_an_expired_temporary_password_is_refused(system: System):
    system.settings.temp_password_hours = 0
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    temporary = await temporary_password(system)
    with pytest.raises(Expired, match="expired"):
        await system.call("credentials", "sign_in", username=USER, password=temporary)
    with pytest.raises(Expired):
        await system.call("credentials", "change_password", username=USER,
                          current_password=temporary, new_password=NEW_PASSWORD)
    assert "PasswordChanged" not in [e.name for e in system.app("credentials").history(USER)]


async def test_the_agreement_cannot_be_confirmed_without_accepting(system: System):
    from shared.tokens import all_issuers, issue_token

    await start_all(system)
    token = issue_token(all_issuers(system.settings), USER, "mfa")
    agreement = await system.call("consent", "present", username=USER, token=token)
    assert len(agreement["clauses"]) == 21
    with pytest.raises(InvalidRequest, match="I Accept"):
        await system.call("consent", "accept", username=USER, token=token, version=1,
                          content_hash=agreement["content_hash"], accepted=False, confirmed=True)
    assert "AgreementAccepted" not in system.event_names("consent")
    with pytest.raises(AuthenticationFailed):  # a password-stage token is not enough
        await system.call("consent", "present", username=USER,
                          token=issue_token(all_issuers(system.settings), USER, "password"))


async def test_once_a_method_exists_a_password_alone_cannot_enrol_another(system: System):
    token, registration = await app_registration_started(system)
    seed = totp.parse_uri(registration["otpauth_uri"]).secret
    verified = await system.call("verification", "verify_code", username=USER, token=token,
                                 method_id=registration["method_id"], code=pyotp.TOTP(seed).now())

    before = system.app("verification").max_notification_id()
    with pytest.raises(AuthenticationFailed, match="Sign in with your current method"):
        await system.call("verification", "start_app_registration", username=USER, token=token)
    assert system.app("verification").max_notification_id() == before
    second = await system.call("verification", "start_app_registration", username=USER,
                               token=verified["mfa_token"])
    assert second["method_id"] != registration["method_id"]


async def test_a_sign_in_from_before_the_reset_cannot_enrol_a_method_after_it(system: System):
    from shared.tokens import all_issuers, issue_token

    await start_all(system)
    await system.provision()
    stale = issue_token(all_issuers(system.settings), USER, "password")
    await system.approved_ticket()
    await eventually(lambda: "MethodsRevoked" in system.event_names("verification"))
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        await system.call("verification", "start_app_registration", username=USER, token=stale)
    assert "MethodRegistrationStarted" not in system.event_names("verification")
