"""The consent application: publish the agreement, present it, record acceptance."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import AggregateNotFoundError

from services.consent import agreement as texts
from services.consent.commands import Accept, Decline, Present
from services.consent.domain import Agreement, Consent
from shared.application import ServiceApplication
from shared.errors import InvalidRequest


class ConsentApplication(ServiceApplication):
    service = "consent"
    system_events = frozenset({"AgreementPublished"})

    def publish_current(self) -> Agreement:
        """Record the current version once; later starts find it and change nothing."""
        current = texts.CURRENT
        try:
            agreement = self.repository.get(Agreement.create_id(current.version))
        except AggregateNotFoundError:
            agreement = Agreement(
                version=current.version,
                title=current.title,
                content_hash=current.content_hash,
                clauses=len(current.clauses),
            )
            self.save(agreement)
        if agreement.content_hash != current.content_hash:
            raise RuntimeError(
                f"agreement version {current.version} was published with other text: "
                "publish changed text as a new version"
            )
        return agreement

    def present(self, cmd: Present) -> dict[str, Any]:
        username = self._after_mfa(cmd.username, cmd.token)
        agreement = self.publish_current()
        consent = self._consent(username)
        consent.present(agreement.version, agreement.content_hash, actor=username)
        self.save(consent)
        return {
            "version": agreement.version,
            "content_hash": agreement.content_hash,
            **texts.CURRENT.parts(),
        }

    def accept(self, cmd: Accept) -> dict[str, Any]:
        username = self._after_mfa(cmd.username, cmd.token)
        agreement = self._version(cmd.version)
        consent = self._consent(username)
        consent.accept(agreement, cmd.content_hash, cmd.accepted, cmd.confirmed)
        self.save(consent)
        return {"accepted_version": agreement.version, "portal_access": True}

    def decline(self, cmd: Decline) -> dict[str, Any]:
        username = self._after_mfa(cmd.username, cmd.token)
        agreement = self._version(cmd.version)
        consent = self._consent(username)
        consent.decline(agreement.version, agreement.content_hash, actor=username)
        self.save(consent)
        return {"accepted_version": None, "portal_access": False}

    def status(self, username: str, token: str) -> dict[str, Any]:
        username = self._after_mfa(username, token)
        current = self.publish_current()
        consent = self.find(Consent.id_for(username))
        if consent is None:
            return {"username": username, "accepted_version": None, "current": False}
        return {
            "username": username,
            "accepted_version": consent.accepted_version,
            "current": consent.accepted_hash == current.content_hash,
        }

    def _version(self, version: int) -> Agreement:
        try:
            return self.repository.get(Agreement.create_id(version))
        except AggregateNotFoundError:
            raise InvalidRequest(f"There is no agreement version {version}.") from None

    def _consent(self, username: str) -> Consent:
        consent = self.find(Consent.id_for(username))
        return Consent(username=username) if consent is None else consent

    def _after_mfa(self, username: str, token: str) -> str:
        return self.signed_in(token, "mfa", username)
