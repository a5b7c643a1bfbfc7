"""Phone numbers: parsed and validated with ``phonenumbers``, stored as E.164, shown masked.

Shared: verification registers phones as sign-in methods; credentials keeps one on file for
help-desk call-backs. Both apply the same number-type and region policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import phonenumbers
from phonenumbers import PhoneNumberType

from shared.errors import InvalidRequest
from shared.masking import mask_phone

# The countries and regions the "What phone number would you like to use?" list offers.
_OTHERS = {
    "CA": "Canada", "GB": "United Kingdom", "IE": "Ireland", "DE": "Germany",
    "FR": "France", "IN": "India", "MX": "Mexico", "PR": "Puerto Rico",
}


class Country(TypedDict):
    region: str  # ISO 3166 region code, what start_phone_registration's ``country`` takes
    name: str
    calling_code: int


PHONE_COUNTRIES: list[Country] = [
    {"region": region, "name": name, "calling_code": phonenumbers.country_code_for_region(region)}
    for region, name in [("US", "United States"), *sorted(_OTHERS.items(), key=lambda item: item[1])]
]
"""The one list, in display order (United States first): what ``phone_countries`` answers."""
COUNTRIES: list[tuple[str, str]] = [
    (c["region"], f"{c['name']} (+{c['calling_code']})") for c in PHONE_COUNTRIES
]


class UnreachablePhone(InvalidRequest):
    """A number of a type or region that does not get codes (premium-rate, satellite, ...)."""


DIRECT_LINE_NOTE = (
    "You will need this phone each time you sign in to the portal. It must be a direct line."
)


UNREACHABLE = "This number can't receive sign-in codes. Use a mobile or landline number."
DEFAULT_NUMBER_TYPES = "mobile,fixed_line,fixed_line_or_mobile"


@dataclass(frozen=True)
class PhonePolicy:
    """Which numbers may get codes: premium-rate, shared-cost, satellite and the like pump
    money to whoever rents them (SMS pumping, toll fraud), so only the number types and the
    regions allowed here get a text or a call."""

    regions: tuple[str, ...] = tuple(c["region"] for c in PHONE_COUNTRIES)
    types: frozenset[int] = frozenset(
        getattr(PhoneNumberType, name.upper()) for name in DEFAULT_NUMBER_TYPES.split(",")
    )

    @classmethod
    def from_settings(cls, regions: str, types: str) -> PhonePolicy:
        """From REKEY_PHONE_REGIONS (empty: the whole list) and REKEY_PHONE_NUMBER_TYPES; a
        name that is not known stops the service at start, not a user at registration."""
        offered = [c["region"] for c in PHONE_COUNTRIES]
        chosen = [r.strip().upper() for r in regions.split(",") if r.strip()] or offered
        if unknown := [r for r in chosen if r not in offered]:
            raise ValueError(f"REKEY_PHONE_REGIONS: not in the phone country list: {unknown}")
        names = [t.strip().upper() for t in types.split(",") if t.strip()]
        if unknown := [n for n in names if not isinstance(getattr(PhoneNumberType, n, None), int)]:
            raise ValueError(f"REKEY_PHONE_NUMBER_TYPES: not a phonenumbers type: {unknown}")
        return cls(tuple(r for r in offered if r in chosen),
                   frozenset(getattr(PhoneNumberType, n) for n in names))

    def countries(self) -> list[Country]:
        """The list, in display order, narrowed to the regions allowed."""
        return [c for c in PHONE_COUNTRIES if c["region"] in self.regions]


def parse_phone(number: str, country: str = "US", policy: PhonePolicy = PhonePolicy()) -> str:
    """The E.164 form of a valid number of an allowed type in an allowed region, or a clear
    refusal."""
    if country.upper() not in policy.regions:
        raise InvalidRequest("Choose a country or region from the list.")
    try:
        parsed = phonenumbers.parse(number, country.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidRequest("That is not a phone number. Check the number and the country.") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidRequest("That phone number is not valid for the country chosen.")
    # A "+" overrides the country chosen: the number's own region is what must be allowed
    # (satellite and other non-geographic numbers have none, "001").
    if (phonenumbers.region_code_for_number(parsed) not in policy.regions
            or phonenumbers.number_type(parsed) not in policy.types):
        raise UnreachablePhone(UNREACHABLE)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def masked(e164: str) -> str:
    return mask_phone(e164)
