"""Published agreement versions and one user's consent record."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.application import REKEY_NAMESPACE, UserAggregate
from shared.errors import InvalidRequest

SYSTEM_SUBJECT = "-"


class ConfirmWithoutAccept(InvalidRequest):
    """"Confirm" was pressed without ticking "I Accept"."""


class StaleAgreement(InvalidRequest):
    """The person accepted a version or text that is not the current one."""


class Agreement(Aggregate):
    """One published version; its text is in the code, its hash is on record."""

    @staticmethod
    def create_id(version: int) -> UUID:
        from uuid import uuid5

        return uuid5(REKEY_NAMESPACE, f"agreement:{version}")

    @event("AgreementPublished")
    def __init__(self, version: int, title: str, content_hash: str, clauses: int) -> None:
        self.version = version
        self.title = title
        self.content_hash = content_hash
        self.clauses = clauses

    @property
    def subject(self) -> str:
        return SYSTEM_SUBJECT


class Consent(UserAggregate):
    @event("ConsentFileOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.accepted_version: int | None = None
        self.accepted_hash: str | None = None

    @event("AgreementPresented")
    def present(self, version: int, content_hash: str, actor: str) -> None:
        pass

    def accept(
        self, agreement: Agreement, content_hash: str, accepted: bool, confirmed: bool
    ) -> None:
        self.check_ticked(accepted, confirmed)
        self.check_current(agreement, content_hash)
        self._accepted(version=agreement.version, content_hash=content_hash, actor=self.username)

    def check_ticked(self, accepted: bool, confirmed: bool) -> None:
        if not (accepted and confirmed):
            raise ConfirmWithoutAccept('Tick "I Accept", then choose "Confirm".')

    def check_current(self, agreement: Agreement, content_hash: str) -> None:
        if content_hash != agreement.content_hash:
            raise StaleAgreement("The agreement has changed since it was shown. Read it again.")

    @event("AgreementAccepted")
    def _accepted(self, version: int, content_hash: str, actor: str) -> None:
        self.accepted_version = version
        self.accepted_hash = content_hash

    @event("AgreementDeclined")
    def decline(self, version: int, content_hash: str, actor: str) -> None:
        self.accepted_version = None
        self.accepted_hash = None
