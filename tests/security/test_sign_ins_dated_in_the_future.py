"""Sign-ins dated in the future: a token or principal whose issue time (``iat``) lies ahead of
the checking service's clock, signed with the genuine issuer's key (its clock ran ahead for a
while, or the key was misused for a moment). Freshness is measured from ``iat`` (how recent an
MFA check is, how old a portal session is) and a reset ends only what was issued before it, so
such a token would stay fresh and outlive every reset; each service refuses it, beyond the
clock skew it tolerates, and records nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from shared.errors import AuthenticationFailed
from shared.signing_keys import own_key
from tests.integration.conftest import AGENT, USER, USER_EMAIL, System, start_all

pytestmark = pytest.mark.security
A_DAY = 24 * 3600


def _dated(system: System, issuer: str, claims: dict[str, object], ahead: float) -> str:
    issued = time.time() + ahead
    body = {"iat": round(issued, 3), "exp": int(issued) + 600, **claims}
    key = own_key(Path(system.settings.nats_keys_dir), issuer)
    return jwt.encode(body, key, algorithm="EdDSA")


def _token(system: System, stage: str, ahead: float = A_DAY) -> str:
    issuer = "verification" if stage == "mfa" else "credentials"
    return _dated(system, issuer, {"iss": issuer, "aud": "rekey-sign-in", "sub": USER,
                                   "stage": stage}, ahead)


def _positions(system: System) -> dict[str, int]:
    return {name: system.app(name).max_notification_id() for name in system.runtimes}


async def test_a_sign_in_token_dated_in_the_future_is_refused_at_every_service(
    system: System,
) -> None:
    await start_all(system)
    await system.provision()
    before = _positions(system)
    password, mfa = _token(system, "password"), _token(system, "mfa")

    attempts = [
        ("credentials", "session_check", {"username": USER, "stage": "password", "token": password}),
        ("verification", "start_app_registration", {"username": USER, "token": password}),
        ("verification", "start_app_registration", {"username": USER, "token": mfa}),
        ("consent", "present", {"username": USER, "token": mfa}),
    ]
    for service, command, payload in attempts:
        with pytest.raises(AuthenticationFailed):
            await system.call(service, command, **payload)

    assert _positions(system) == before
    assert "MethodRegistrationStarted" not in system.event_names("verification")
    assert "AgreementPresented" not in system.event_names("consent")
    # Within the tolerated skew the same token is good (the refusal is about the date).
    assert (await system.call("credentials", "session_check", username=USER, stage="password",
                              token=_token(system, "password", ahead=5)))["current"] is True


async def _proved_ticket(system: System) -> dict:
    """A request for the user, with the identity proofs an approval needs: only the principal
    can then stand between it and an approval."""
    await start_all(system)
    await system.provision()
    ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username=USER, reason="new phone")
    await system.prove_identity(ticket["ticket_number"])
    return dict(ticket)


async def test_an_agent_principal_dated_in_the_future_approves_nothing(system: System) -> None:
    ticket = await _proved_ticket(system)
    before = _positions(system)
    principal = _dated(system, "credentials", {
        "iss": "credentials", "aud": "rekey", "sub": AGENT, "knd": "agent", "chn": "console",
        "sid": "s", "amr": ["pwd", "otp"]}, A_DAY)

    with pytest.raises(AuthenticationFailed):
        await system.call("ticketing", "approve", ticket=ticket["ticket_number"],
                          principal=principal)
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "session_check", username=AGENT, principal=principal)

    assert _positions(system) == before
    assert "ResetApproved" not in system.event_names("ticketing")


async def test_a_principal_signed_to_live_for_a_year_acts_on_nothing(system: System) -> None:
    """Short lifetimes hold at every checking service, not only at the issuer: an agent's
    principal (or the operator's) signed to outlive any sign-in Rekey gives is refused."""
    ticket = await _proved_ticket(system)
    before = _positions(system)
    a_year = 365 * A_DAY
    agent = _dated(system, "credentials", {
        "iss": "credentials", "aud": "rekey", "sub": AGENT, "knd": "agent", "chn": "console",
        "sid": "s", "amr": ["pwd", "otp"], "exp": int(time.time()) + a_year}, 0)
    operator = _dated(system, "operator", {
        "iss": "operator", "aud": "rekey", "sub": "operator", "knd": "operator", "chn": "cli",
        "sid": "s", "exp": int(time.time()) + a_year}, 0)

    with pytest.raises(AuthenticationFailed):
        await system.call("ticketing", "approve", ticket=ticket["ticket_number"], principal=agent)
    with pytest.raises(AuthenticationFailed):
        await system.call("credentials", "register_account", username="mallory",
                          email="m@example.org", display_name="Mallory", role="agent",
                          password="a long enough password for an agent", principal=operator)

    assert _positions(system) == before
    assert "ResetApproved" not in system.event_names("ticketing")
