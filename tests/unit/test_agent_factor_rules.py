"""Rules of an agent's invitation and second factors, and of agent principals: a password alone
makes no principal that any service accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.credentials.domain import (
    PASSKEY,
    TOTP,
    Account,
    InvitationExpired,
    InvitationNotValid,
    InvitationSpent,
    NotAnAgent,
    SecondFactorRefused,
)
from services.portal.agent_sign_in import page_json
from shared.errors import AuthenticationFailed
from shared.principals import ALGORITHM, AUDIENCE, PrincipalCheck
from shared.tokens import TokenKeys, issue_token, verify_token
from tests.unit.recorded import names

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def agent(role: str = "agent") -> Account:
    return Account(username="agent.smith", email="smith@example.org", display_name="Agent Smith",
                   role=role, actor="operator")


def invited(digest: str = "d" * 64) -> Account:
    account = agent()
    account.invite(digest, NOW + timedelta(hours=72), "operator")
    return account


def test_an_invitation_works_until_it_expires_and_then_says_so():
    account = invited()
    account.check_invitation("d" * 64, NOW + timedelta(hours=71))
    with pytest.raises(InvitationExpired, match="expired"):
        account.check_invitation("d" * 64, NOW + timedelta(hours=72))


def test_an_invitation_works_once():
    account = invited()
    account.redeem("d" * 64, TOTP)
    with pytest.raises(InvitationSpent, match="already been used"):
        account.check_invitation("d" * 64, NOW)
    assert names(account)[-1] == "InvitationRedeemed"


def test_a_new_invitation_replaces_the_old_one_and_a_forged_one_is_not_valid():
    account = invited()
    account.invite("e" * 64, NOW + timedelta(hours=72), "operator")
    for digest in ("d" * 64, "f" * 64):
        with pytest.raises(InvitationNotValid, match="not valid"):
            account.check_invitation(digest, NOW)
    account.check_invitation("e" * 64, NOW)


def test_only_agents_have_second_factors():
    with pytest.raises(NotAnAgent):
        agent("user").check_agent()


def test_each_authenticator_time_step_is_accepted_once():
    account = invited()
    account.enrol_factor("totp-1", TOTP, "Authenticator app")
    account.check_step_unused("totp-1", 100)
    account.use_code("totp-1", 100)
    for step in (99, 100):
        with pytest.raises(SecondFactorRefused, match="already used"):
            account.check_step_unused("totp-1", step)
    account.check_step_unused("totp-1", 101)


def test_a_passkey_counter_must_move_forward_unless_the_key_keeps_none():
    account = invited()
    account.enrol_factor("passkey-1", PASSKEY, "Passkey", "cred", "key", sign_count=5)
    account.check_sign_count("passkey-1", 6)
    for count in (5, 4, 0):  # a clone, or a key that went back
        with pytest.raises(SecondFactorRefused):
            account.check_sign_count("passkey-1", count)
    account.enrol_factor("passkey-2", PASSKEY, "Passkey", "cred2", "key2", sign_count=0)
    account.check_sign_count("passkey-2", 0)  # a passkey without a counter (synced passkeys)


def test_a_passkey_challenge_is_used_once_and_an_unknown_key_is_refused():
    account = invited()
    account.enrol_factor("passkey-1", PASSKEY, "Passkey", "cred", "key")
    assert account.passkey_for("cred") == "passkey-1"
    with pytest.raises(SecondFactorRefused):
        account.passkey_for("someone else's key")
    account.use_passkey("passkey-1", 1, "challenge-digest")
    with pytest.raises(SecondFactorRefused):
        account.check_challenge_unused("challenge-digest")


def test_a_revoked_factor_is_gone():
    account = invited()
    account.enrol_factor("totp-1", TOTP, "Authenticator app")
    account.revoke_factor("totp-1", "operator", "lost phone")
    assert account.factor_types() == []


def _principal(key: Ed25519PrivateKey, amr: list[str] | None) -> str:
    import jwt

    claims = {"iss": "credentials", "aud": AUDIENCE, "sub": "agent.smith", "knd": "agent",
              "iat": 1_000, "exp": 2_000, **({"amr": amr} if amr is not None else {})}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


@pytest.mark.parametrize("amr", [None, [], ["pwd"], ["pwd", "sms"]])
def test_an_agent_principal_without_a_second_factor_is_refused(amr):
    key = Ed25519PrivateKey.generate()
    check = PrincipalCheck({}, clock=_Clock())
    check.trusted = {"credentials": [key.public_key()]}
    with pytest.raises(AuthenticationFailed, match="second factor"):
        check.verify(_principal(key, amr), "agent")
    for passed in (["pwd", "otp"], ["pwd", "hwk"]):
        assert check.verify(_principal(key, passed), "agent").amr == tuple(passed)


def test_the_second_step_token_is_not_a_password_token():
    keys = TokenKeys.fresh()
    token = issue_token(keys, "agent.smith", "agent_mfa", 300, bound_to="agent-mfa:x")
    with pytest.raises(AuthenticationFailed):
        verify_token(keys, token, "password", "agent.smith")
    assert verify_token(keys, token, "agent_mfa", "agent.smith", bound_to="agent-mfa:x")
    with pytest.raises(AuthenticationFailed):  # a new password ends it
        verify_token(keys, token, "agent_mfa", "agent.smith", bound_to="agent-mfa:y")


def test_passkey_options_cannot_close_the_script_element_that_holds_them():
    assert "</script>" not in page_json('{"user": {"displayName": "</script><script>x()"}}')


class _Clock:
    def time(self) -> float:
        return 1_500.0
