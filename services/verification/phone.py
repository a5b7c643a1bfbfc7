"""Phone numbers as verification uses them: the shared parsing and policy (shared/phones.py)."""

from __future__ import annotations

from shared.phones import (
    COUNTRIES,
    DEFAULT_NUMBER_TYPES,
    DIRECT_LINE_NOTE,
    PHONE_COUNTRIES,
    UNREACHABLE,
    Country,
    PhonePolicy,
    UnreachablePhone,
    masked,
    parse_phone,
)

__all__ = [
    "COUNTRIES", "DEFAULT_NUMBER_TYPES", "DIRECT_LINE_NOTE", "PHONE_COUNTRIES", "UNREACHABLE",
    "Country", "PhonePolicy", "UnreachablePhone", "masked", "parse_phone",
]
