"""Sign-in tokens only from the service that ran the step: a password step from credentials,
an MFA step from verification. A compromised portal (or any other holder of one key) cannot
mint a step to enrol its own authenticator on a victim's account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from shared.errors import AuthenticationFailed
from shared.signing_keys import own_key
from tests.integration.conftest import USER, System, start_all

pytestmark = pytest.mark.security


def _claims(stage: str, issuer: str) -> dict[str, object]:
    now = time.time()
    return {"iss": issuer, "aud": "rekey-sign-in", "sub": USER, "stage": stage,
            "iat": round(now, 3), "exp": int(now) + 600}


def _signed_with(system: System, identity: str, stage: str, issuer: str) -> str:
    from pathlib import Path

    key = own_key(Path(system.settings.nats_keys_dir), identity)
    return jwt.encode(_claims(stage, issuer), key, algorithm="EdDSA")


async def _enrolment_refused(system: System, token: str) -> None:
    before = system.app("verification").max_notification_id()
    with pytest.raises(AuthenticationFailed):
        await system.call("verification", "start_app_registration", username=USER, token=token)
    assert system.app("verification").max_notification_id() == before
    assert "MethodRegistrationStarted" not in system.event_names("verification")


@pytest.mark.parametrize("identity", ["portal", "verification", "consent", "operator"])
async def test_a_password_step_signed_by_anyone_but_credentials_enrols_nothing(
    system: System, identity: str
) -> None:
    await start_all(system)
    await system.provision()
    await _enrolment_refused(system, _signed_with(system, identity, "password", "credentials"))


async def test_a_token_made_with_the_shared_token_key_enrols_nothing(system: System) -> None:
    """The old HMAC form under REKEY_TOKEN_KEY, which every service held, counts for nothing."""
    await start_all(system)
    await system.provision()
    payload = base64.urlsafe_b64encode(json.dumps(_claims("password", "credentials")).encode())
    payload_text = payload.rstrip(b"=").decode()
    mac = hmac.new(system.settings.token_key_bytes, payload_text.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    await _enrolment_refused(system, f"{payload_text}.{signature}")


async def test_an_mfa_step_signed_by_credentials_is_not_an_mfa_step(system: System) -> None:
    await start_all(system)
    await system.provision()
    token = _signed_with(system, "credentials", "mfa", "verification")
    with pytest.raises(AuthenticationFailed):
        await system.call("consent", "present", username=USER, token=token)
