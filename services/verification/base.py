"""What every method family of the verification application shares.

The store, the vault, the key that hashes one-time codes, who a token vouches for, and the
facts a screen needs about a method or a step. The families (``methods_app``, ``methods_push``,
``methods_phone``) build on this base; ``application`` composes them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import JSONTranscoder

from services.verification.domain import (
    APP_CHANNEL,
    CALL,
    CODE_DIGITS,
    PASSKEY,
    PHONE,
    PUSH,
    SMS,
    Challenge,
    Device,
    Enrollment,
    Method,
    PhoneSends,
)
from services.verification.phone import PhonePolicy
from shared.application import ServiceApplication
from shared.clock import Clock
from shared.errors import AuthenticationFailed, Conflict
from shared.rate_limits import SlidingWindow
from shared.secrets import Vault
from shared.settings import Settings
from shared.tokens import SignedInBeforeReset, issue_token
from shared.transcodings import DataclassAsDict, SetAsSortedList


class ProofRun:
    """What verification runs for a help desk's identity proof (a call-back, a push): it is
    about the user it reaches (mixed into those aggregates)."""

    username: str

    @property
    def subject(self) -> str:
        return self.username


class FreshMfaRequired(AuthenticationFailed):
    """A change to the sign-in methods needs a recent check of a method, not only a sign-in."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def step_facts(channel: str, takes_code: bool) -> dict[str, Any]:
    """What a screen needs of a step, so no edge keeps its own copy of the rules: where it
    happens ("app", "push", "sms", "call"), whether a code typed on the screen answers it,
    and how many digits that code has."""
    return {"channel": channel, "takes_code": takes_code,
            "code_length": CODE_DIGITS if takes_code else None}


class VerificationBase(ServiceApplication):
    service: ClassVar[str] = "verification"
    # Every sign-in issues a challenge and records its outcome on the user's enrollment, so it
    # grew for as long as the account was used: the 800th authenticator code took 425 ms, each
    # request replaying 1,600 events. A snapshot every 20 events bounds the replay, and the
    # state keeps a day of challenges (CHALLENGES_KEPT_FOR). Snapshots are a cache, sealed and
    # bound like events (docs/architecture.md).
    # A phone number's sends (the per-number limit) grow the same way, a text at a time.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Enrollment: 20, PhoneSends: 20}
    system_events = frozenset({
        "MethodsRevoked", "MethodLocked", "CodeDispatched", "CodeDeliveryFailed", "CallBackFailed",
        "MethodChallengeFailed",
    })

    def __init__(
        self, settings: Settings, env: dict[str, str] | None = None, *, clock: Clock | None = None
    ) -> None:
        super().__init__(settings, env, clock=clock)
        self.vault = Vault(settings, self.service, create=self.creates_tables)
        self.code_key = hmac.new(settings.vault_key_bytes, b"rekey one-time codes", hashlib.sha256).digest()
        self.phone_policy = PhonePolicy.from_settings(settings.phone_regions,
                                                      settings.phone_number_types)
        # In memory, like every sliding window: a restart forgets it (see shared/rate_limits.py).
        self.push_limits = SlidingWindow(
            settings.push_limit_per_user, settings.push_limit_window_minutes * 60, clock=self.clock
        )

    def close(self) -> None:
        self.vault.close()
        super().close()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """What an enrollment's snapshot holds beside plain values."""
        super().register_transcodings(transcoder)
        for cls in (Method, Challenge, Device):
            transcoder.register(DataclassAsDict(cls))
        transcoder.register(SetAsSortedList())

    # --- who is asking -----------------------------------------------------------------------
    def _signed_in(self, username: str, token: str, stage: str = "password",
                   **checks: Any) -> str:
        """The username a token vouches for; tokens from before the last reset do not count.

        Where a password step is enough, a completed MFA sign-in of the portal session's life
        is too (it was earned with more): Security info challenges the default method again,
        and checks a method being added, with the session's MFA token. ``checks``: as
        :meth:`signed_in` takes them."""
        if stage != "password":
            return self.signed_in(token, stage, username, **checks)
        try:
            return self.signed_in(token, stage, username, **checks)
        except SignedInBeforeReset:
            raise  # a reset ended this sign-in, whatever stage it was
        except AuthenticationFailed:
            return self.signed_in(token, "mfa", username,
                                  max_age=self.settings.portal_session_hours * 3600, **checks)

    def _enrolled(self, username: str, token: str) -> tuple[str, Enrollment]:
        """:meth:`_signed_in` and the user's enrollment, read from the store once: the token's
        check needs the enrollment's reset time too, and reading it twice was a fifth of a
        code check's time (docs/benchmarks.md)."""
        stored = self._stored_enrollment(username)
        username = self._signed_in(username, token,
                                   issued_after=self._last_reset(username, stored))
        return username, stored or Enrollment(username=username)

    def _fresh_mfa(self, username: str, token: str, **checks: Any) -> str:
        """The username of an MFA sign-in checked within ``fresh_mfa_minutes``: what adding,
        removing a method or changing the default needs once a method exists. ``checks``: as
        :meth:`signed_in` takes them."""
        if "issued_after" not in checks:  # one read for both checks
            checks["issued_after"] = self.last_reset(username)
        username = self.signed_in(token, "mfa", username,  # forged, reset: refused as such
                                  max_age=self.settings.portal_session_hours * 3600, **checks)
        try:
            return self.signed_in(token, "mfa", username,
                                  max_age=self.settings.fresh_mfa_minutes * 60, **checks)
        except AuthenticationFailed:
            raise FreshMfaRequired(
                "To change your sign-in methods, confirm it's you with your default method "
                "first."
            ) from None

    def is_fresh(self, username: str, token: str) -> bool:
        try:
            self._fresh_mfa(username, token)
        except AuthenticationFailed:
            return False
        return True

    def last_reset(self, username: str) -> datetime | None:
        """The shared mark, or (stores from before it) the last revocation's approval time."""
        return self._last_reset(username, self._stored_enrollment(username))

    def _last_reset(self, username: str, enrollment: Enrollment | None) -> datetime | None:
        reset_at = enrollment.reset_at if enrollment is not None else None
        times = [t for t in (super().last_reset(username), reset_at) if t is not None]
        return max(times, default=None)

    def _pending_setup(self, enrollment: Enrollment, method_id: str) -> Method:
        """The method a retried setup (same idempotency key) started, while it is still being
        set up; once it is registered, removed or revoked, the key is spent."""
        method = enrollment.methods.get(method_id)
        if method is None or method.registered:
            raise Conflict("This setup is already finished (or was cancelled); start a new one "
                           "with a new idempotency key.")
        return method

    def _may_change_methods(self, username: str, token: str) -> tuple[str, Enrollment]:
        """The first method needs only the password step; once a user has a method, adding
        or changing one needs an MFA check within ``fresh_mfa_minutes``, or a stolen password
        (or a session left open) would let anyone enrol their own phone."""
        stored = self._stored_enrollment(username)
        reset_at = self._last_reset(username, stored)
        try:
            username = self.signed_in(token, "password", username, issued_after=reset_at)
        except SignedInBeforeReset:
            raise
        except AuthenticationFailed as not_a_password_step:
            try:
                username = self._fresh_mfa(username, token, issued_after=reset_at)
                return username, stored or Enrollment(username=username)
            except FreshMfaRequired:
                raise
            except AuthenticationFailed:
                raise not_a_password_step from None
        enrollment = stored or Enrollment(username=username)
        if enrollment.registered:
            raise AuthenticationFailed(
                "Sign in with your current method first to add or change a sign-in method."
            )
        return username, enrollment

    def _enrollment(self, username: str) -> Enrollment:
        return self._stored_enrollment(username) or Enrollment(username=username)

    def _stored_enrollment(self, username: str) -> Enrollment | None:
        try:
            return self.repository.get(Enrollment.id_for(username))
        except AggregateNotFoundError:
            return None

    # --- what replies say --------------------------------------------------------------------
    def _describe(self, enrollment: Enrollment, m: Method) -> dict[str, Any]:
        return {
            "method_id": m.method_id, "method_type": m.method_type, "label": m.label,
            "masked_phone": m.masked_phone, "push": bool(m.devices),
            "locked": m.locked, "default": m.method_id == enrollment.default_method,
            "added": (m.registered_at or m.started_at).isoformat(),
            "last_used": m.last_used.isoformat() if m.last_used else None,
            **self._method_step(m),
        }

    def _method_step(self, m: Method) -> dict[str, Any]:
        """The step a challenge of this method takes now (as ``start_challenge`` would)."""
        if m.method_type == PHONE:
            channel = CALL if m.channel == CALL else SMS
            return step_facts(channel, channel == SMS or self._calls_read_code())
        if m.method_type == PASSKEY:
            return step_facts(PASSKEY, takes_code=False)
        if m.devices:
            return step_facts(PUSH, takes_code=False)
        return step_facts(APP_CHANNEL, takes_code=True)

    def _calls_read_code(self) -> bool:
        """REKEY_CALL_MODE=read_code: a call reads out a code to type (else: answer with #)."""
        return self.settings.call_mode == "read_code"

    def _verified(self, username: str, enrollment: Enrollment, method_id: str) -> dict[str, Any]:
        default = enrollment.default_method
        return {
            "verified": True,
            "method_id": method_id,
            "default_method": default,
            "default_label": enrollment.methods[default].label if default else None,
            "mfa_token": issue_token(self.token_keys, username, "mfa"),
        }
