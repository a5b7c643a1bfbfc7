"""Passkeys and security keys (WebAuthn) with the ``webauthn`` package: the options a browser
needs, and the checks of what it answers, for agents (credentials) and users (verification).
The relying party is the portal: its id and origin come from settings (``REKEY_WEBAUTHN_RP_ID``,
``REKEY_PORTAL_PUBLIC_URL``), so a key registered on a look-alike site answers nothing here (the
browser binds each assertion to the origin). Each caller keeps its own rules (single-use
challenges, the sign counter) and says its own refusal (``refused``).

``webauthn`` (and the ASN.1 and CBOR parsers it brings, about 5 MB) is imported by the first
passkey operation, not with this module: most processes that import it never see a passkey."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.errors import AuthenticationFailed
from shared.settings import Settings

REFUSED_REGISTRATION = ("The passkey or security key could not be registered. Try again, or set up "
                        "an authenticator app instead.")
REFUSED = "The passkey or security key was not accepted. Try again, or sign in another way."


class PasskeyRefused(AuthenticationFailed):
    """A forged, replayed, unknown or malformed passkey answer."""


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    origin: str
    name: str

    @classmethod
    def of(cls, settings: Settings) -> RelyingParty:
        return cls(settings.passkey_rp_id, settings.passkey_origin, settings.portal_name)


def challenge_digest(challenge: str) -> str:
    return hashlib.sha256(challenge.encode()).hexdigest()[:32]


def registration_options(rp: RelyingParty, username: str, display_name: str, user_id: bytes,
                         existing: list[str]) -> tuple[str, str]:
    """The options for ``navigator.credentials.create`` (JSON) and their challenge."""
    import webauthn
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = webauthn.generate_registration_options(
        rp_id=rp.rp_id, rp_name=rp.name, user_name=username, user_id=user_id,
        user_display_name=display_name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c)) for c in existing],
    )
    return webauthn.options_to_json(options), bytes_to_base64url(options.challenge)


def authentication_options(rp: RelyingParty, credential_ids: list[str]) -> tuple[str, str]:
    """The options for ``navigator.credentials.get`` (JSON) and their challenge."""
    import webauthn
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

    options = webauthn.generate_authentication_options(
        rp_id=rp.rp_id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c))
                           for c in credential_ids],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return webauthn.options_to_json(options), bytes_to_base64url(options.challenge)


def parsed(credential: str, refused: str = REFUSED) -> dict[str, Any]:
    try:
        value = json.loads(credential)
    except ValueError:
        raise PasskeyRefused(refused) from None
    if not isinstance(value, dict):
        raise PasskeyRefused(refused)
    return value


def challenge_of(credential: dict[str, Any], refused: str = REFUSED) -> str:
    """The challenge the browser signed (the caller checks it is one it issued, unused)."""
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json

    try:
        data = parse_client_data_json(base64url_to_bytes(credential["response"]["clientDataJSON"]))
    except Exception:
        raise PasskeyRefused(refused) from None
    return bytes_to_base64url(data.challenge)


@dataclass(frozen=True)
class NewPasskey:
    credential_id: str
    public_key: str
    sign_count: int


def verified_registration(rp: RelyingParty, credential: dict[str, Any], challenge: str) -> NewPasskey:
    import webauthn
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
    from webauthn.helpers.exceptions import InvalidRegistrationResponse

    try:
        verified = webauthn.verify_registration_response(
            credential=credential, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.rp_id, expected_origin=rp.origin, require_user_verification=True,
        )
    except (InvalidRegistrationResponse, KeyError, ValueError, TypeError):
        raise PasskeyRefused(REFUSED_REGISTRATION) from None
    return NewPasskey(bytes_to_base64url(verified.credential_id),
                      bytes_to_base64url(verified.credential_public_key), verified.sign_count)


def verified_sign_count(rp: RelyingParty, credential: dict[str, Any], challenge: str,
                        public_key: str, sign_count: int, refused: str = REFUSED) -> int:
    """The authenticator's new signature counter, once its assertion is verified."""
    import webauthn
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.exceptions import InvalidAuthenticationResponse

    try:
        verified = webauthn.verify_authentication_response(
            credential=credential, expected_challenge=base64url_to_bytes(challenge),
            expected_rp_id=rp.rp_id, expected_origin=rp.origin,
            credential_public_key=base64url_to_bytes(public_key),
            credential_current_sign_count=sign_count, require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, KeyError, ValueError, TypeError):
        raise PasskeyRefused(refused) from None
    return int(verified.new_sign_count)
