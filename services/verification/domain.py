"""A user's MFA enrolment: methods, devices, challenges and their outcomes, the default method.

Secrets never enter these events: TOTP seeds and phone numbers live in the vault (events hold
an opaque reference), one-time codes and push numbers only as keyed hashes, devices only by
their public key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.verification.totp import DIGITS
from shared.application import REKEY_NAMESPACE, UserAggregate
from shared.errors import (
    AuthenticationFailed,
    Conflict,
    Expired,
    InvalidRequest,
    Locked,
    NotFound,
    RateLimited,
)
from shared.secrets import keyed_hash
from shared.upcasting import gained

APP = "authenticator_app"
PHONE = "phone"
PASSKEY = "passkey"  # a passkey or a security key (WebAuthn)
METHOD_LABELS = {APP: "Microsoft Authenticator", PHONE: "Phone", PASSKEY: "Passkey or security key"}
OTHER_APP_LABEL = "Authenticator app"  # "I want to use a different authenticator app"
LOCK_AFTER_FAILURES = 5
PUSH_MAX_WRONG = 3

# challenge kinds
TOTP, PUSH, SMS, CALL, WEBAUTHN = "totp", "push", "sms", "call", "webauthn"
# a step's channel, as a screen tells it: "app" (type the app's code), "push", "sms", "call"
APP_CHANNEL = "app"
PENDING, VERIFIED, FAILED, DENIED, SUPERSEDED = "pending", "verified", "failed", "denied", "superseded"
IDENTITY_PROOF = "identity_proof"  # a push the help desk sent to prove who is on the phone
CODE_DIGITS = DIGITS  # every code a person types: the app's TOTP codes and the codes sent
# Which challenges an enrollment's state keeps: those of the last day, at most the latest 100.
# A challenge lives minutes, and no rule counts back further or more (the settings cap the
# send window at a day and the sends in it at 50). Every sign-in issues one, so without these
# an enrollment grew for as long as it was used (its events stay, all of them).
CHALLENGES_KEPT_FOR = timedelta(hours=24)
CHALLENGES_KEPT = 100
SENDS_KEPT = 50  # a number's latest sends, all the per-number limit counts (capped at 50)


# --- how codes are kept: keyed hashes, compared in constant time --------------------------------
def code_hash(key: bytes, challenge_id: str, code: str) -> str:
    """A sent code or a push number as stored: keyed, and bound to its challenge."""
    return keyed_hash(key, f"{challenge_id}:{code}")


def activation_hash(key: bytes, activation_code: str) -> str:
    return keyed_hash(key, f"activation:{activation_code}")


def phone_hash(key: bytes, e164: str) -> str:
    """A phone number's stand-in for the per-number send limit (the number stays in the vault)."""
    return keyed_hash(key, f"phone:{e164}")


def _same_hash(expected: str | None, actual: str) -> bool:
    return expected is not None and hmac.compare_digest(actual, expected)


class MethodLockedError(Locked):
    """Too many wrong codes in a row for this method."""


class UnknownMethod(NotFound):
    """No such method for this user."""


class LastMethod(Conflict):
    """Removing it would leave the account without a way to sign in."""


class DefaultNotRemovable(Conflict):
    """The default method is removed only once another method is the default."""


class NotRegistered(InvalidRequest):
    """The method's setup was never finished."""


class CodeRejected(InvalidRequest):
    """The code was wrong, expired or already used."""


class ChallengeClosed(Conflict):
    """The challenge was already answered, denied, replaced or killed."""


class ChallengeExpired(Expired):
    """The challenge outlived its time."""


class PasskeyNotAccepted(AuthenticationFailed):
    """A passkey answer for another challenge, key or account, replayed, or a cloned key."""


PASSKEY_NOT_ACCEPTED = ("The passkey or security key was not accepted. Try again, or sign in "
                        "another way.")


class UnknownDevice(AuthenticationFailed):
    """No such device, or the signature does not match its key."""


class SendRateLimited(RateLimited):
    """Too many texts or calls."""


class PushRateLimited(RateLimited):
    """Too many push requests for a user or a device (push bombing)."""


@dataclass
class Device:
    device_id: str
    public_key: str  # base64 of the raw Ed25519 public key: not a secret
    name: str
    activated_at: datetime


@dataclass
class Challenge:
    challenge_id: str
    method_id: str
    kind: str
    purpose: str
    issued_at: datetime | None = None
    expires_at: datetime | None = None
    code_hash: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    wrong: int = 0
    state: str = PENDING
    nonces: set[str] = field(default_factory=set)

    def alive(self, now: datetime) -> bool:
        return self.state == PENDING and (self.expires_at is None or now <= self.expires_at)

    def status(self, now: datetime) -> str:
        if self.state == PENDING and self.expires_at is not None and now > self.expires_at:
            return "expired"
        return self.state

    @property
    def channel(self) -> str:
        return {TOTP: APP_CHANNEL, WEBAUTHN: PASSKEY}.get(self.kind, self.kind)

    @property
    def takes_code(self) -> bool:
        """Whether a code typed on the screen answers it: the app's, a text's, one a call read out."""
        return self.kind == TOTP or (self.kind in (SMS, CALL) and self.code_hash is not None)

    def matches(self, key: bytes, code: str) -> bool:
        """Whether ``code`` (or the push number) is the one this challenge was issued with."""
        return _same_hash(self.code_hash, code_hash(key, self.challenge_id, code))


@dataclass
class Method:
    method_id: str
    method_type: str
    label: str
    secret_ref: str
    started_at: datetime
    registered: bool = False
    failures: int = 0
    locked: bool = False
    last_step: int = -1
    challenges: list[str] = field(default_factory=list)
    channel: str | None = None
    masked_phone: str | None = None
    phone_hash: str | None = None
    activation_hash: str | None = None
    devices: dict[str, Device] = field(default_factory=dict)
    client: dict[str, str] | None = None  # who started it on the web (address, network, agent)
    registered_at: datetime | None = None  # its first check passed (absent in older stores)
    last_used: datetime | None = None  # its latest verified challenge
    # a passkey: its credential id and public key (not secrets) and the authenticator's counter
    credential_id: str | None = None
    public_key: str | None = None
    sign_count: int = 0

    def activation_matches(self, key: bytes, activation_code: str) -> bool:
        return _same_hash(self.activation_hash, activation_hash(key, activation_code))


class Enrollment(UserAggregate):
    @event("EnrollmentOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.methods: dict[str, Method] = {}
        self.default_method: str | None = None
        self.issued: dict[str, Challenge] = {}
        self.reset_at: datetime | None = None

    # --- queries -----------------------------------------------------------------------------
    @property
    def registered(self) -> list[Method]:
        return [m for m in self.methods.values() if m.registered]

    def method(self, method_id: str) -> Method:
        found = self.methods.get(method_id)
        if found is None:
            raise UnknownMethod("That sign-in method is not set up for this account.")
        return found

    def challenge(self, challenge_id: str) -> Challenge:
        found = self.issued.get(challenge_id)
        if found is None or found.method_id not in self.methods:
            raise NotFound("There is no such challenge for this account.")
        return found

    def latest_challenge(self, method_id: str, kinds: tuple[str, ...]) -> Challenge | None:
        for challenge_id in reversed(self.method(method_id).challenges):
            challenge = self.issued.get(challenge_id)
            if challenge is not None and challenge.kind in kinds:
                return challenge
        return None

    def device(self, method_id: str, device_id: str) -> Device:
        method = self.methods.get(method_id)
        found = method.devices.get(device_id) if method else None
        if found is None:
            raise UnknownDevice("This device is not activated for that account.")
        return found

    def sends_since(self, since: datetime) -> int:
        return sum(
            1
            for c in self.issued.values()
            if c.kind in (SMS, CALL) and c.issued_at is not None and c.issued_at >= since
        )

    def check_registered(self, method: Method) -> None:
        if not method.registered:
            raise NotRegistered("That sign-in method is not set up yet.")

    def check_not_last(self, method: Method) -> None:
        if [m.method_id for m in self.registered] == [method.method_id]:
            raise LastMethod(
                "This is your only sign-in method. Add another one before you remove it."
            )

    def check_not_default(self, method: Method) -> None:
        if method.method_id == self.default_method:
            raise DefaultNotRemovable(
                "This is your default sign-in method. Make another method the default first, "
                "then remove this one."
            )

    def check_usable(self, method: Method) -> None:
        if method.locked:
            raise MethodLockedError(
                "This method is locked after too many wrong codes. Call the help desk."
            )

    # --- the cancel window: a text to a phone that survives ----------------------------------
    def phone_to_tell(self) -> Method | None:
        """A registered, unlocked phone (the default first) to tell of a scheduled reset."""
        phones = [m for m in self.registered
                  if m.method_type == PHONE and m.channel == SMS and not m.locked]
        phones.sort(key=lambda m: m.method_id != self.default_method)
        return phones[0] if phones else None

    @event("ResetNoticeIntended")
    def intend_reset_notice(self, intent_id: str, method_id: str, ticket_id: str | None) -> None:
        """A text about a scheduled reset, to the phone on this enrollment (sent after commit)."""

    @event("ResetNoticeTexted")
    def mark_reset_notice(self, intent_id: str, method_id: str, masked_to: str,
                          error: str | None = None) -> None:
        """The text's outcome: sent (``error`` None) or not, with the reason."""

    # --- revocation on an approved reset -----------------------------------------------------
    def revoke_before(self, approved_at: datetime, ticket_id: str | None) -> list[Method]:
        """Revoke every method set up before the reset was approved; returns them.

        Methods started after the approval are the user's new ones: the approval may reach
        this service after the user has already begun to set up a method.
        """
        old = [m for m in self.methods.values() if m.started_at <= approved_at]
        self._revoked(
            ticket_id=ticket_id, revoked=sorted(m.method_id for m in old), reset_at=approved_at
        )
        return old

    @event("MethodsRevoked")
    def _revoked(
        self, ticket_id: str | None, revoked: list[str], reset_at: datetime | None = None
    ) -> None:
        # reset_at is absent from events stored before it was recorded: they change nothing.
        if reset_at is not None:
            self.reset_at = reset_at
        for method_id in revoked:
            self.methods.pop(method_id, None)
        self.issued = {k: c for k, c in self.issued.items() if c.method_id in self.methods}
        if self.default_method in revoked:
            self.default_method = None

    # --- Security info: the user removes a method or changes the default ----------------------
    def remove(self, method_id: str, client: dict[str, str] | None = None) -> Method:
        method = self.method(method_id)
        self.check_registered(method)
        self.check_not_last(method)
        self.check_not_default(method)
        self._method_removed(method_id=method_id, method_type=method.method_type,
                             label=method.label, masked_phone=method.masked_phone, client=client)
        return method

    @event("MethodRemoved")
    def _method_removed(self, method_id: str, method_type: str, label: str,
                        masked_phone: str | None = None,
                        client: dict[str, str] | None = None) -> None:
        self.methods.pop(method_id, None)
        self.issued = {k: c for k, c in self.issued.items() if c.method_id in self.methods}

    def change_default(self, method_id: str, client: dict[str, str] | None = None) -> bool:
        """The user's choice of default; False when it already is the default (nothing recorded)."""
        method = self.method(method_id)
        self.check_registered(method)
        self.check_usable(method)
        if self.default_method == method_id:
            return False
        self._default_changed(method_id=method_id, method_type=method.method_type,
                              label=method.label, masked_phone=method.masked_phone,
                              previous_method_id=self.default_method, client=client)
        return True

    @event("DefaultMethodChanged")
    def _default_changed(self, method_id: str, method_type: str, label: str,
                         masked_phone: str | None = None, previous_method_id: str | None = None,
                         client: dict[str, str] | None = None) -> None:
        self.default_method = method_id

    # --- registration ------------------------------------------------------------------------
    def replace_setups(self, method_type: str) -> list[Method]:
        """A new setup of ``method_type`` replaces the unfinished ones, which stop working (an
        app that scanned an earlier QR code no longer signs in): never two live keys waiting."""
        earlier = [m for m in self.methods.values()
                   if m.method_type == method_type and not m.registered]
        if earlier:
            self._setups_replaced(method_ids=[m.method_id for m in earlier], method_type=method_type)
        return earlier

    @event("MethodSetupsReplaced")
    def _setups_replaced(self, method_ids: list[str], method_type: str) -> None:
        for method_id in method_ids:
            self.methods.pop(method_id, None)

    @event("MethodRegistrationStarted")
    def start_registration(
        self,
        method_id: str,
        method_type: str,
        secret_ref: str,
        started_at: datetime,
        channel: str | None = None,
        masked_phone: str | None = None,
        phone_hash: str | None = None,
        activation_hash: str | None = None,
        client: dict[str, str] | None = None,
        label: str | None = None,
    ) -> None:
        label = label or METHOD_LABELS.get(method_type, method_type)
        if masked_phone:
            label = f"{label} {masked_phone}"
        self.methods[method_id] = Method(
            method_id, method_type, label, secret_ref, started_at, channel=channel,
            masked_phone=masked_phone, phone_hash=phone_hash, activation_hash=activation_hash,
            client=client,
        )

    def activate_device(
        self, method_id: str, activation_ok: bool, device_id: str, public_key: str, name: str,
        fingerprint: str, now: datetime,
    ) -> None:
        method = self.method(method_id)
        self.check_usable(method)
        if method.activation_hash is None:
            raise ChallengeClosed("This activation code was already used. Start the setup again.")
        if not activation_ok:
            raise UnknownDevice("The activation code is not right.")
        self._device_activated(
            method_id=method_id, method_type=method.method_type, device_id=device_id,
            public_key=public_key, device_name=name, key_fingerprint=fingerprint, activated_at=now,
        )

    @event("DeviceActivated")
    def _device_activated(
        self, method_id: str, method_type: str, device_id: str, public_key: str,
        device_name: str, key_fingerprint: str, activated_at: datetime,
    ) -> None:
        method = self.methods[method_id]
        method.activation_hash = None
        method.devices[device_id] = Device(device_id, public_key, device_name, activated_at)

    # --- challenges --------------------------------------------------------------------------
    @event("ChallengeIssued")
    def issue_challenge(
        self,
        challenge_id: str,
        method_id: str,
        method_type: str,
        purpose: str,
        kind: str = TOTP,
        issued_at: datetime | None = None,
        expires_at: datetime | None = None,
        code_hash: str | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        self._forget_old_challenges(issued_at)
        method = self.methods[method_id]
        for old_id in method.challenges:  # a new code or request replaces the one before
            old = self.issued.get(old_id)
            if old is None or old.state != PENDING:
                continue
            if (kind in (SMS, CALL) and old.kind in (SMS, CALL)) or (
                # a sign-in or setup push replaces the one before (one request on the phone);
                # the help desk's identity proof is left alone, and leaves others alone
                kind == PUSH and old.kind == PUSH and old.purpose == purpose
                and purpose != IDENTITY_PROOF
            ):
                old.state = SUPERSEDED
        method.challenges.append(challenge_id)
        self.issued[challenge_id] = Challenge(
            challenge_id, method_id, kind, purpose, issued_at, expires_at, code_hash,
            dict(context or {}),
        )

    def _forget_old_challenges(self, now: datetime | None) -> None:
        """Before a new challenge: drop from the state (not the store) those issued a day
        before it, and the oldest beyond :data:`CHALLENGES_KEPT` with the new one."""
        cutoff = now - CHALLENGES_KEPT_FOR if now is not None else None
        beyond = len(self.issued) + 1 - CHALLENGES_KEPT
        old = {key for n, (key, c) in enumerate(self.issued.items())
               if n < beyond or (cutoff is not None and c.issued_at is not None
                                 and c.issued_at < cutoff)}
        if not old:
            return
        self.issued = {key: c for key, c in self.issued.items() if key not in old}
        for method in self.methods.values():
            method.challenges = [key for key in method.challenges if key not in old]

    def verify(
        self, method_id: str, challenge_id: str, step: int | None,
        lock_after: int = LOCK_AFTER_FAILURES, now: datetime | None = None,
    ) -> bool:
        """Record the outcome of a TOTP check (the matching time step, if any)."""
        method = self.method(method_id)
        self.check_usable(method)
        if step is None or step <= method.last_step:
            reason = "wrong code" if step is None else "code already used"
            self._fail(method, challenge_id, reason, lock_after)
            return False
        self._succeed(method, challenge_id, step=step, now=now)
        return True

    def verify_sent_code(
        self, method_id: str, code_matches: bool, now: datetime, lock_after: int = LOCK_AFTER_FAILURES
    ) -> bool:
        """Check a code sent by text or read out by a call against the latest one sent."""
        method = self.method(method_id)
        self.check_usable(method)
        challenge = self.latest_challenge(method_id, (SMS, CALL))
        if challenge is None or challenge.state != PENDING or challenge.code_hash is None:
            raise CodeRejected("No code is waiting for this phone. Ask for a new code.")
        if not challenge.alive(now):
            raise ChallengeExpired("That code has expired. Ask for a new code.")
        if not code_matches:
            self._fail(method, challenge.challenge_id, "wrong code", lock_after)
            return False
        self._succeed(method, challenge.challenge_id, now=now)
        return True

    def answer_call(
        self, challenge_id: str, digits: str, now: datetime, lock_after: int = LOCK_AFTER_FAILURES
    ) -> bool | None:
        """The person pressed ``digits`` during the call; None when nothing changed."""
        challenge = self.issued.get(challenge_id)
        if challenge is None or challenge.kind != CALL or not challenge.alive(now):
            return None
        method = self.method(challenge.method_id)
        if method.locked or challenge.code_hash is not None:
            return None
        if digits != "#":
            self._fail(method, challenge_id, "wrong key pressed", lock_after, dead=True)
            return False
        self._succeed(method, challenge_id, now=now)
        return True

    def call_not_answered(self, challenge_id: str, status: str, now: datetime) -> None:
        challenge = self.issued.get(challenge_id)
        if challenge is None or challenge.kind != CALL or not challenge.alive(now):
            return
        method = self.method(challenge.method_id)
        self._challenge_failed(
            challenge_id=challenge_id, method_id=method.method_id, method_type=method.method_type,
            reason=f"call {status}", failures=method.failures, dead=True,
        )

    def answer_push(
        self,
        challenge_id: str,
        device_id: str,
        number_ok: bool,
        nonce: str,
        now: datetime,
        max_wrong: int = PUSH_MAX_WRONG,
        lock_after: int = LOCK_AFTER_FAILURES,
    ) -> bool:
        challenge, method = self._open_push(challenge_id, device_id, nonce, now)
        if not number_ok:
            dead = challenge.wrong + 1 >= max_wrong
            self._fail(method, challenge_id, "wrong number", lock_after, dead=dead, nonce=nonce,
                       device_id=device_id)
            return False
        self._succeed(method, challenge_id, nonce=nonce, device_id=device_id, now=now)
        return True

    def deny_push(self, challenge_id: str, device_id: str, nonce: str, now: datetime) -> None:
        challenge, method = self._open_push(challenge_id, device_id, nonce, now)
        self._challenge_denied(
            challenge_id=challenge_id, method_id=method.method_id, method_type=method.method_type,
            device_id=device_id, context=dict(challenge.context), nonce=nonce,
        )

    def _open_push(
        self, challenge_id: str, device_id: str, nonce: str, now: datetime
    ) -> tuple[Challenge, Method]:
        challenge = self.issued.get(challenge_id)
        if challenge is None or challenge.kind != PUSH:
            raise NotFound("There is no such sign-in request.")
        method = self.method(challenge.method_id)
        if device_id not in method.devices:
            raise UnknownDevice("This device is not activated for that account.")
        self.check_usable(method)
        if nonce in challenge.nonces:
            raise ChallengeClosed("This answer was already received.")
        if challenge.state != PENDING:
            raise ChallengeClosed(f"This sign-in request is already {challenge.state}.")
        if not challenge.alive(now):
            raise ChallengeExpired("This sign-in request has expired.")
        return challenge, method

    # --- passkeys: each challenge answered once, the counter only moves forward ---------------
    def open_passkey_challenge(self, challenge_id: str, key: bytes, signed_challenge: str,
                               now: datetime) -> tuple[Challenge, Method]:
        """The live WebAuthn challenge ``challenge_id`` that the browser signed, and its method;
        an answer to another challenge, or to one already answered or expired, is refused
        before anything is recorded."""
        challenge = self.issued.get(challenge_id)
        if challenge is None or challenge.kind != WEBAUTHN or not challenge.alive(now) \
                or not challenge.matches(key, signed_challenge):
            raise PasskeyNotAccepted(PASSKEY_NOT_ACCEPTED)
        method = self.method(challenge.method_id)
        self.check_usable(method)
        return challenge, method

    def check_new_passkey(self, credential_id: str) -> None:
        if any(m.credential_id == credential_id for m in self.registered):
            raise Conflict("This passkey or security key is already set up for your account.")

    def attest_passkey(self, method_id: str, challenge_id: str, credential_id: str,
                       public_key: str, sign_count: int, now: datetime) -> None:
        """The browser's new credential was verified: the method is registered."""
        self.check_new_passkey(credential_id)
        self._passkey_attested(method_id=method_id, credential_id=credential_id,
                               public_key=public_key, sign_count=sign_count)
        self._succeed(self.methods[method_id], challenge_id, now=now)

    @event("PasskeyAttested")
    def _passkey_attested(self, method_id: str, credential_id: str, public_key: str,
                          sign_count: int) -> None:
        method = self.methods[method_id]
        method.credential_id, method.public_key, method.sign_count = \
            credential_id, public_key, sign_count

    def check_sign_count(self, method: Method, sign_count: int) -> None:
        """A counter that does not move forward means a cloned key (both zero: no counter)."""
        if (sign_count or method.sign_count) and sign_count <= method.sign_count:
            raise PasskeyNotAccepted(PASSKEY_NOT_ACCEPTED)

    def use_passkey(self, method: Method, challenge_id: str, sign_count: int,
                    now: datetime) -> None:
        self.check_sign_count(method, sign_count)
        self._succeed(method, challenge_id, now=now, sign_count=sign_count)

    def passkey_refused(self, method: Method, challenge_id: str, lock_after: int) -> None:
        """A signature that does not verify: the challenge is spent, the failure counts."""
        self._fail(method, challenge_id, "passkey not accepted", lock_after, dead=True)

    # --- delivery of texts and calls ---------------------------------------------------------
    @event("CodeDispatched")
    def mark_sent(self, challenge_id: str, method_id: str, channel: str, masked_phone: str) -> None:
        pass

    @event("CodeDeliveryFailed")
    def mark_delivery_failed(self, challenge_id: str, method_id: str, channel: str, reason: str) -> None:
        challenge = self.issued.get(challenge_id)
        if challenge is not None and challenge.state == PENDING:
            challenge.state = FAILED

    # --- outcomes ----------------------------------------------------------------------------
    def _succeed(self, method: Method, challenge_id: str, step: int | None = None,
                 nonce: str | None = None, device_id: str | None = None,
                 now: datetime | None = None, sign_count: int | None = None) -> None:
        self._challenge_verified(
            challenge_id=challenge_id, method_id=method.method_id, method_type=method.method_type,
            step=step, nonce=nonce, device_id=device_id, at=now, sign_count=sign_count,
        )
        if not method.registered:
            self._method_registered(
                method_id=method.method_id, method_type=method.method_type, label=method.label,
                masked_phone=method.masked_phone, client=method.client, registered_at=now,
            )
        if self.default_method is None:
            self.set_default(method.method_id)

    def _fail(self, method: Method, challenge_id: str, reason: str, lock_after: int,
              dead: bool = False, nonce: str | None = None, device_id: str | None = None) -> None:
        self._challenge_failed(
            challenge_id=challenge_id, method_id=method.method_id, method_type=method.method_type,
            reason=reason, failures=method.failures + 1, dead=dead, nonce=nonce,
            device_id=device_id,
        )
        if self.methods[method.method_id].failures >= lock_after:
            self._method_locked(method_id=method.method_id, method_type=method.method_type)

    def set_default(self, method_id: str) -> None:
        method = self.method(method_id)
        if not method.registered:
            raise InvalidRequest("Only a method that is set up can be the default.")
        if self.default_method == method_id:
            return
        self._default_set(
            method_id=method_id, method_type=method.method_type, label=method.label,
            masked_phone=method.masked_phone,
        )

    @event("ChallengeVerified")
    def _challenge_verified(
        self, challenge_id: str, method_id: str, method_type: str, step: int | None = None,
        nonce: str | None = None, device_id: str | None = None, at: datetime | None = None,
        sign_count: int | None = None,
    ) -> None:
        method = self.methods[method_id]
        method.failures = 0
        method.last_used = at or method.last_used
        if sign_count is not None:
            method.sign_count = sign_count
        if step is not None:
            method.last_step = step
        challenge = self.issued.get(challenge_id)
        if challenge is not None:
            challenge.state = VERIFIED
            if nonce:
                challenge.nonces.add(nonce)

    @event("ChallengeFailed")
    def _challenge_failed(
        self, challenge_id: str, method_id: str, method_type: str, reason: str, failures: int,
        dead: bool = False, nonce: str | None = None, device_id: str | None = None,
    ) -> None:
        self.methods[method_id].failures = failures
        challenge = self.issued.get(challenge_id)
        if challenge is not None:
            challenge.wrong += 1
            if nonce:
                challenge.nonces.add(nonce)
            if dead:
                challenge.state = FAILED

    @event("ChallengeDenied")
    def _challenge_denied(
        self, challenge_id: str, method_id: str, method_type: str, device_id: str,
        context: dict[str, str], nonce: str,
    ) -> None:
        challenge = self.issued[challenge_id]
        challenge.state = DENIED
        challenge.nonces.add(nonce)

    @event("MethodLocked")
    def _method_locked(self, method_id: str, method_type: str) -> None:
        self.methods[method_id].locked = True
        for challenge in self.issued.values():
            if challenge.method_id == method_id and challenge.state == PENDING:
                challenge.state = FAILED

    @event("MethodRegistered")
    def _method_registered(
        self, method_id: str, method_type: str, label: str, masked_phone: str | None = None,
        client: dict[str, str] | None = None, registered_at: datetime | None = None,
    ) -> None:
        """``client``: the web client that started the registration (None: not on the web)."""
        self.methods[method_id].registered = True
        self.methods[method_id].registered_at = registered_at

    @event("DefaultMethodSet")
    def _default_set(
        self, method_id: str, method_type: str, label: str, masked_phone: str | None = None
    ) -> None:
        self.default_method = method_id


class PhoneSends(Aggregate):
    """Texts and calls to one phone number, whoever asked: the per-number rate limit."""

    @staticmethod
    def create_id(phone_hash: str) -> UUID:
        return uuid5(REKEY_NAMESPACE, f"PhoneSends:{phone_hash}")

    @event("PhoneSendsOpened")
    def __init__(self, phone_hash: str) -> None:
        self.sends: list[datetime] = []

    def since(self, moment: datetime) -> int:
        return sum(1 for s in self.sends if s >= moment)

    @event("PhoneSendCounted")
    def count(self, at: datetime) -> None:
        self.sends.append(at)
        del self.sends[:-SENDS_KEPT]


# Fields added since events were first stored (shared/upcasting.py).
gained(Enrollment.MethodRegistrationStarted, 2, client=None, label=None)  # type: ignore[attr-defined]
gained(Enrollment.MethodRegistered, 2, client=None, registered_at=None)  # type: ignore[attr-defined]
gained(Enrollment.ChallengeVerified, 2, at=None, sign_count=None)  # type: ignore[attr-defined]
