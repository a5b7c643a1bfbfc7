"""Masking of personal data shown in public events and history output."""

from __future__ import annotations


def mask_email(address: str) -> str:
    """``jane.doe@example.org`` -> ``j•••@example.org``."""
    local, _, domain = address.partition("@")
    if not domain:
        return "•••"
    return f"{local[:1]}•••@{domain}"


def mask_phone(e164: str) -> str:
    """``+15085551234`` -> ``+1 ••• ••• 1234`` (the last four digits stay readable)."""
    digits = e164.lstrip("+")
    if len(digits) <= 4:
        return "•••"
    country = digits[: len(digits) - 10] if len(digits) > 10 else ""
    prefix = f"+{country} " if country else "+"
    return f"{prefix}••• ••• {digits[-4:]}"
