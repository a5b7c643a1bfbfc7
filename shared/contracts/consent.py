"""Public events of the consent service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from shared.contracts.base import EventBody


class AgreementPublished(EventBody):
    version: int
    title: str
    content_hash: str
    clauses: int


class AgreementPresented(EventBody):
    version: int
    content_hash: str


class AgreementAccepted(EventBody):
    version: int
    content_hash: str


class AgreementDeclined(EventBody):
    version: int
    content_hash: str
