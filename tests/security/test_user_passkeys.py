"""A user's passkey (WebAuthn) on a running stack, both stores: registered and used only with
answers the real key made, for the challenge issued, for the portal's origin, once each; a
forged, replayed or cloned answer is refused and changes nothing that would let anyone in."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from shared.errors import AuthenticationFailed
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, start_verification
from tests.softkey import SoftKey

pytestmark = pytest.mark.security


def password_token(system: System) -> str:
    return issue_token(all_issuers(system.settings), USER, "password")


def softkey(system: System) -> SoftKey:
    return SoftKey(origin=system.settings.passkey_origin, rp_id=system.settings.passkey_rp_id)


async def registered_passkey(system: System) -> tuple[SoftKey, str]:
    """Verification running, the user's first method a passkey: (the key, its method id)."""
    await start_verification(system)
    key = softkey(system)
    started = await system.call("verification", "start_passkey_registration", username=USER,
                                token=password_token(system))
    done = await system.call("verification", "finish_passkey_registration", username=USER,
                             token=password_token(system), challenge_id=started["challenge_id"],
                             credential=key.create(started["options"]))
    assert done["verified"] is True and done["mfa_token"]
    return key, started["method_id"]


async def sign_in_challenge(system: System) -> dict:
    return await system.call("verification", "start_challenge", username=USER,
                             token=password_token(system))


async def assert_refused(system: System, command: str, **payload: str) -> None:
    app = system.app("verification")
    before = [e.name for e in app.history(USER)]
    with pytest.raises(AuthenticationFailed):
        await system.call("verification", command, username=USER, token=password_token(system),
                          **payload)
    after = [e.name for e in app.history(USER)]
    assert "ChallengeVerified" not in after[len(before):]
    assert "MethodRegistered" not in after[len(before):]


async def test_a_passkey_signs_in_once_per_challenge_and_its_counter_moves_forward(system: System):
    key, method_id = await registered_passkey(system)
    names = [e.name for e in system.app("verification").history(USER)]
    assert "MethodRegistered" in names
    challenge = await sign_in_challenge(system)
    assert challenge["method_id"] == method_id and challenge["channel"] == "passkey"
    assert challenge["takes_code"] is False
    verified = await system.call("verification", "verify_passkey", username=USER,
                                 token=password_token(system), challenge_id=challenge["challenge_id"],
                                 credential=key.get(challenge["options"]))
    assert verified["verified"] is True and verified["mfa_token"]
    method = system.app("verification")._enrollment(USER).methods[method_id]
    assert method.sign_count == key.sign_count and method.public_key


async def test_a_replayed_passkey_assertion_is_refused(system: System):
    key, _ = await registered_passkey(system)
    challenge = await sign_in_challenge(system)
    answer = key.get(challenge["options"])
    await system.call("verification", "verify_passkey", username=USER, token=password_token(system),
                      challenge_id=challenge["challenge_id"], credential=answer)
    await assert_refused(system, "verify_passkey", challenge_id=challenge["challenge_id"],
                         credential=answer)


async def test_an_assertion_for_an_earlier_challenge_does_not_answer_a_new_one(system: System):
    key, _ = await registered_passkey(system)
    first = await sign_in_challenge(system)
    old_answer = key.get(first["options"])
    second = await sign_in_challenge(system)
    await assert_refused(system, "verify_passkey", challenge_id=second["challenge_id"],
                         credential=old_answer)


async def test_an_assertion_signed_with_another_key_is_refused(system: System):
    key, _ = await registered_passkey(system)
    challenge = await sign_in_challenge(system)
    forged = key.get(challenge["options"], key=ec.generate_private_key(ec.SECP256R1()))
    await assert_refused(system, "verify_passkey", challenge_id=challenge["challenge_id"],
                         credential=forged)


async def test_an_assertion_made_on_a_look_alike_site_is_refused(system: System):
    key, _ = await registered_passkey(system)
    challenge = await sign_in_challenge(system)
    phished = key.get(challenge["options"], origin="https://rekey-portal.example.net")
    await assert_refused(system, "verify_passkey", challenge_id=challenge["challenge_id"],
                         credential=phished)


async def test_a_cloned_key_whose_counter_goes_back_is_refused(system: System):
    key, _ = await registered_passkey(system)
    for _ in range(2):
        challenge = await sign_in_challenge(system)
        await system.call("verification", "verify_passkey", username=USER,
                          token=password_token(system), challenge_id=challenge["challenge_id"],
                          credential=key.get(challenge["options"]))
    challenge = await sign_in_challenge(system)
    await assert_refused(system, "verify_passkey", challenge_id=challenge["challenge_id"],
                         credential=key.get(challenge["options"], count=1))


async def test_a_passkey_registration_made_for_a_look_alike_site_is_refused(system: System):
    await start_verification(system)
    started = await system.call("verification", "start_passkey_registration", username=USER,
                                token=password_token(system))
    forged = softkey(system).create(started["options"], origin="https://rekey-portal.example.net")
    await assert_refused(system, "finish_passkey_registration",
                         challenge_id=started["challenge_id"], credential=forged)
    assert system.app("verification")._enrollment(USER).registered == []


async def test_a_stolen_password_cannot_add_a_passkey_once_a_method_exists(system: System):
    await registered_passkey(system)
    await assert_refused(system, "start_passkey_registration")
