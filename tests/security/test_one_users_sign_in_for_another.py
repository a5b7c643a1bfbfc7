"""One user's sign-in used for another: a genuine token of USER (a password step from
credentials, an MFA step from verification), sent with another user's name to every endpoint a
person part-way through the guide calls, at each service. Each refuses it, the same way as a
bad token, and nothing is recorded for either user.
"""

from __future__ import annotations

import uuid

import pytest

from shared.errors import AuthenticationFailed
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, eventually, start_all

pytestmark = pytest.mark.security
VICTIM = "sam.victim@masspasrr.org"
SOME_ID = str(uuid.uuid4())

ENDPOINTS: list[tuple[str, str, dict[str, object]]] = [
    ("verification", "status", {}),
    ("verification", "security_info", {}),
    ("verification", "start_app_registration", {}),
    ("verification", "start_phone_registration", {"number": "(508) 555-0142", "channel": "sms"}),
    ("verification", "start_passkey_registration", {}),
    ("verification", "start_challenge", {}),
    ("verification", "start_push", {}),
    ("verification", "verify_code", {"code": "123456"}),
    ("verification", "resend_code", {"method_id": SOME_ID}),
    ("verification", "challenge_status", {"challenge_id": SOME_ID}),
    ("verification", "set_default_method", {"method_id": SOME_ID}),
    ("verification", "remove_method", {"method_id": SOME_ID}),
    ("verification", "verify_passkey", {"challenge_id": SOME_ID, "credential": "{}"}),
    ("consent", "present", {}),
    ("consent", "accept", {"version": 1, "content_hash": "sha256:x", "accepted": True,
                           "confirmed": True}),
    ("consent", "decline", {"version": 1}),
    ("credentials", "session_check", {"stage": "password"}),
]


def _positions(system: System) -> dict[str, int]:
    return {name: system.app(name).max_notification_id() for name in system.runtimes}


@pytest.mark.parametrize("stage", ["password", "mfa"])
async def test_a_users_token_sent_with_another_users_name_is_refused_everywhere(
    system: System, stage: str,
) -> None:
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username=VICTIM,
                      email="sam@example.org", display_name="Sam Victim",
                      password="the victim's own long passphrase", principal=system.operator())
    await eventually(lambda: system._ticketing_knows(VICTIM), what="ticketing to know the victim")
    mine = issue_token(all_issuers(system.settings), USER, stage)
    before = _positions(system)

    accepted = []
    for service, command, extra in ENDPOINTS:
        try:
            await system.call(service, command, username=VICTIM, token=mine, **extra)
        except AuthenticationFailed:
            continue
        except Exception as other:  # any other answer is named below
            accepted.append(f"{service}.{command}: {type(other).__name__}: {other}")
        else:
            accepted.append(f"{service}.{command}: answered")
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "change_password", username=VICTIM, change_token=mine,
                          new_password="an attacker's long passphrase")

    assert accepted == []
    assert _positions(system) == before
