"""Phone numbers: parsed and validated with ``phonenumbers``, stored as E.164, shown masked."""

from __future__ import annotations

import phonenumbers

from shared.errors import InvalidRequest
from shared.masking import mask_phone

# The country choice the "What phone number would you like to use?" list offers, US first.
_OTHERS = {
    "CA": "Canada", "GB": "United Kingdom", "IE": "Ireland", "DE": "Germany",
    "FR": "France", "IN": "India", "MX": "Mexico", "PR": "Puerto Rico",
}
COUNTRIES: list[tuple[str, str]] = [
    ("US", "United States (+1)"),
    *sorted(
        ((r, f"{n} (+{phonenumbers.country_code_for_region(r)})") for r, n in _OTHERS.items()),
        key=lambda item: item[1],
    ),
]
DIRECT_LINE_NOTE = (
    "You will need this phone each time you sign in to the portal. It must be a direct line."
)


def parse_phone(number: str, country: str = "US") -> str:
    """The E.164 form of a valid number, or a clear refusal."""
    try:
        parsed = phonenumbers.parse(number, country.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidRequest("That is not a phone number. Check the number and the country.") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidRequest("That phone number is not valid for the country chosen.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def masked(e164: str) -> str:
    return mask_phone(e164)
