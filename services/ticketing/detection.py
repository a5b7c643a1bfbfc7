"""Post-reset detection: the rules that flag a reset for the security team to look at.

A flag stops nothing: it is a ``ResetFlagged`` event on the ticket with the rule and its
evidence, a line in the console (on the ticket and in the list) and, when
``REKEY_SECURITY_ADDRESS`` is set, a mail to it. The rules:

- ``privileged_account``: a reset is requested for a privileged account (an agent, or an account
  provisioned as privileged: ``AccountFile.privileged``).
- ``several_resets_from_one_address``: ``REKEY_DETECT_RESETS_PER_ADDRESS`` requests or more come
  from one client address within ``REKEY_DETECT_WINDOW_HOURS``.
- ``method_from_another_network``: within ``REKEY_DETECT_WINDOW_HOURS`` after a reset, a method is
  registered from another network than the request came from. "Network" is the /24 (IPv4) or
  /48 (IPv6): no GeoIP database ships with Rekey. With ``REKEY_GEOIP_DB`` (a MaxMind country
  database, read only if the ``maxminddb`` package is installed) the evidence also names both
  countries. A request by mail or CLI has no address: nothing to compare, no flag.
- ``second_method_soon_after_reset``: a second method is registered within
  ``REKEY_DETECT_SECOND_METHOD_MINUTES`` of the reset.

The functions here are pure (facts and times in, flags out); the application gathers the facts
(``TicketingApplication.request_reset`` and ``on_method_registered``) and records the flags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.application import REKEY_NAMESPACE

log = logging.getLogger(__name__)

PRIVILEGED_ACCOUNT = "privileged_account"
SEVERAL_RESETS = "several_resets_from_one_address"
OTHER_NETWORK = "method_from_another_network"
SECOND_METHOD = "second_method_soon_after_reset"

# What the console shows for each rule (ticketing sends the words with the facts).
RULE_LABELS = {
    PRIVILEGED_ACCOUNT: "Privileged account",
    SEVERAL_RESETS: "Several resets from one address",
    OTHER_NETWORK: "New method from another network",
    SECOND_METHOD: "Second method soon after the reset",
}

@dataclass(frozen=True)
class Thresholds:
    resets_per_address: int = 3
    window: timedelta = timedelta(hours=24)
    second_method_within: timedelta = timedelta(minutes=60)

    @classmethod
    def of(cls, settings: Any) -> Thresholds:
        return cls(
            settings.detect_resets_per_address,
            timedelta(hours=settings.detect_window_hours),
            timedelta(minutes=settings.detect_second_method_minutes),
        )


@dataclass(frozen=True)
class Flag:
    rule: str
    summary: str  # what happened, in words
    evidence: dict[str, str] = field(default_factory=dict)


# --- the rules -------------------------------------------------------------------------------
def on_request(
    *, privileged: bool, role: str | None, requests_from_address: int, address: str | None,
    thresholds: Thresholds,
) -> list[Flag]:
    """Flags for a reset request. ``requests_from_address``: requests from the client's
    address within the window, this one included (0 without an address)."""
    flags = []
    if privileged:
        flags.append(Flag(
            PRIVILEGED_ACCOUNT,
            "A reset was requested for a privileged account"
            + (f" (role: {role})." if role else "."),
            {"role": role or ""},
        ))
    if address and requests_from_address >= thresholds.resets_per_address:
        hours = thresholds.window.total_seconds() / 3600
        flags.append(Flag(
            SEVERAL_RESETS,
            f"{requests_from_address} reset requests came from {address} within {hours:g} hours.",
            {"address": address, "requests": str(requests_from_address), "window_hours": f"{hours:g}"},
        ))
    return flags


def on_method_registered(
    *, reset_at: datetime, registered_at: datetime, request_client: Mapping[str, str] | None,
    method_client: Mapping[str, str] | None, methods_before: int, thresholds: Thresholds,
    country: Callable[[str], str | None] = lambda address: None,
) -> list[Flag]:
    """Flags for a method registered at ``registered_at`` after the reset at ``reset_at``.
    ``methods_before``: methods already registered since that reset."""
    since = registered_at - reset_at
    if since < timedelta(0) or since > thresholds.window:
        return []
    flags = []
    asked, used = request_client or {}, method_client or {}
    if asked.get("network") and used.get("network") and asked["network"] != used["network"]:
        evidence = {
            "request_address": asked.get("address", ""), "request_network": asked["network"],
            "method_address": used.get("address", ""), "method_network": used["network"],
            "method_user_agent": used.get("user_agent", ""),
        }
        summary = (f"The new method was registered from {used['network']}, not from the network "
                   f"the request came from ({asked['network']}).")
        countries = country(asked.get("address", "")), country(used.get("address", ""))
        if all(countries):
            evidence["request_country"], evidence["method_country"] = countries  # type: ignore[assignment]
            if countries[0] != countries[1]:
                summary += f" Countries: {countries[0]} then {countries[1]}."
        flags.append(Flag(OTHER_NETWORK, summary, evidence))
    if methods_before >= 1 and since <= thresholds.second_method_within:
        minutes = max(1, round(since.total_seconds() / 60))
        flags.append(Flag(
            SECOND_METHOD,
            f"Method number {methods_before + 1} was registered {minutes} minutes after the reset.",
            {"methods": str(methods_before + 1), "minutes_after_reset": str(minutes)},
        ))
    return flags


# --- requests per client address ---------------------------------------------------------------
class RequestsFrom(Aggregate):
    """Index: reset requests from one client address (id: the ``uuid5`` of the address), so the
    several-resets rule counts them without reading every ticket."""

    subject = ""  # about an address, not a user

    @event("RequestsFromAddressOpened")
    def __init__(self, address: str) -> None:
        self.address = address
        self.times: list[datetime] = []

    @staticmethod
    def create_id(address: str) -> UUID:
        return uuid5(REKEY_NAMESPACE, f"requests-from:{address}")

    def count(self, at: datetime, window: timedelta) -> int:
        """Record one request at ``at``; the requests within ``window`` before it, this one too."""
        self._requested(at=at)
        return sum(1 for t in self.times if at - window < t <= at)

    @event("RequestFromAddress")
    def _requested(self, at: datetime) -> None:
        self.times.append(at)
        if len(self.times) > 1000:  # only recent ones are ever counted
            del self.times[:-1000]


# --- optional countries --------------------------------------------------------------------
def country_lookup(path: str) -> Callable[[str], str | None]:
    """A country (ISO code) for an address from a MaxMind database at ``path``, if configured
    and the ``maxminddb`` package is installed; otherwise always None (networks decide)."""
    if not path:
        return lambda address: None
    try:
        import maxminddb  # type: ignore[import-not-found]
    except ImportError:
        log.warning("REKEY_GEOIP_DB is set but the maxminddb package is not installed: "
                    "detection compares networks only")
        return lambda address: None
    reader = maxminddb.open_database(path)

    def country(address: str) -> str | None:
        try:
            record = reader.get(address)
        except ValueError:
            return None
        if isinstance(record, dict):
            found = record.get("country") or record.get("registered_country") or {}
            return found.get("iso_code") if isinstance(found, dict) else None
        return None

    return country
