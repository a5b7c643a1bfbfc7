"""A user's MFA enrolment: methods, devices, challenges and their outcomes, the default method.

Secrets never enter these events: TOTP seeds and phone numbers live in the vault (events hold
an opaque reference), one-time codes and push numbers only as keyed hashes, devices only by
their public key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

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

APP = "authenticator_app"
PHONE = "phone"
METHOD_LABELS = {APP: "Microsoft Authenticator", PHONE: "Phone"}
LOCK_AFTER_FAILURES = 5
PUSH_MAX_WRONG = 3

# challenge kinds
TOTP, PUSH, SMS, CALL = "totp", "push", "sms", "call"
PENDING, VERIFIED, FAILED, DENIED, SUPERSEDED = "pending", "verified", "failed", "denied", "superseded"


class MethodLockedError(Locked):
    """Too many wrong codes in a row for this method."""


class UnknownMethod(NotFound):
    """No such method for this user."""


class CodeRejected(InvalidRequest):
    """The code was wrong, expired or already used."""


class ChallengeClosed(Conflict):
    """The challenge was already answered, denied, replaced or killed."""


class ChallengeExpired(Expired):
    """The challenge outlived its time."""


class UnknownDevice(AuthenticationFailed):
    """No such device, or the signature does not match its key."""


class SendRateLimited(RateLimited):
    """Too many texts or calls."""


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

    def check_usable(self, method: Method) -> None:
        if method.locked:
            raise MethodLockedError(
                "This method is locked after too many wrong codes. Call the help desk."
            )

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

    # --- registration ------------------------------------------------------------------------
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
    ) -> None:
        label = METHOD_LABELS.get(method_type, method_type)
        if masked_phone:
            label = f"{label} {masked_phone}"
        self.methods[method_id] = Method(
            method_id, method_type, label, secret_ref, started_at, channel=channel,
            masked_phone=masked_phone, phone_hash=phone_hash, activation_hash=activation_hash,
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
        method = self.methods[method_id]
        if kind in (SMS, CALL):  # a new code invalidates the old one
            for old_id in method.challenges:
                old = self.issued.get(old_id)
                if old is not None and old.kind in (SMS, CALL) and old.state == PENDING:
                    old.state = SUPERSEDED
        method.challenges.append(challenge_id)
        self.issued[challenge_id] = Challenge(
            challenge_id, method_id, kind, purpose, issued_at, expires_at, code_hash,
            dict(context or {}),
        )

    def verify(
        self, method_id: str, challenge_id: str, step: int | None,
        lock_after: int = LOCK_AFTER_FAILURES,
    ) -> bool:
        """Record the outcome of a TOTP check (the matching time step, if any)."""
        method = self.method(method_id)
        self.check_usable(method)
        if step is None or step <= method.last_step:
            reason = "wrong code" if step is None else "code already used"
            self._fail(method, challenge_id, reason, lock_after)
            return False
        self._succeed(method, challenge_id, step=step)
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
        self._succeed(method, challenge.challenge_id)
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
        self._succeed(method, challenge_id)
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
        self._succeed(method, challenge_id, nonce=nonce, device_id=device_id)
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
                 nonce: str | None = None, device_id: str | None = None) -> None:
        self._challenge_verified(
            challenge_id=challenge_id, method_id=method.method_id, method_type=method.method_type,
            step=step, nonce=nonce, device_id=device_id,
        )
        if not method.registered:
            self._method_registered(
                method_id=method.method_id, method_type=method.method_type, label=method.label,
                masked_phone=method.masked_phone,
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
        nonce: str | None = None, device_id: str | None = None,
    ) -> None:
        method = self.methods[method_id]
        method.failures = 0
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
        self, method_id: str, method_type: str, label: str, masked_phone: str | None = None
    ) -> None:
        self.methods[method_id].registered = True

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
        del self.sends[:-50]
