"""Post-reset detection rules (services/ticketing/detection.py): facts and times in, flags out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.ticketing.detection import (
    OTHER_NETWORK,
    PRIVILEGED_ACCOUNT,
    SECOND_METHOD,
    SEVERAL_RESETS,
    RequestsFrom,
    Thresholds,
    on_method_registered,
    on_request,
)

RESET = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Thresholds(resets_per_address=3, window=timedelta(hours=24),
                   second_method_within=timedelta(minutes=60))
OFFICE = {"address": "203.0.113.7", "network": "203.0.113.0/24", "user_agent": "Firefox"}
OFFICE_2 = {"address": "203.0.113.99", "network": "203.0.113.0/24", "user_agent": "Edge"}
ELSEWHERE = {"address": "198.51.100.4", "network": "198.51.100.0/24", "user_agent": "curl"}


def rules(flags):
    return [f.rule for f in flags]


def method(at_minutes: float, asked=OFFICE, used=OFFICE, before=0, country=lambda a: None):
    return on_method_registered(
        reset_at=RESET, registered_at=RESET + timedelta(minutes=at_minutes), request_client=asked,
        method_client=used, methods_before=before, thresholds=RULES, country=country,
    )


def test_a_request_for_a_privileged_account_is_flagged_with_its_role():
    [flag] = on_request(privileged=True, role="agent", requests_from_address=1,
                        address="203.0.113.7", thresholds=RULES)
    assert flag.rule == PRIVILEGED_ACCOUNT and "privileged" in flag.summary


def test_an_ordinary_request_is_not_flagged():
    assert on_request(privileged=False, role="user", requests_from_address=2,
                      address="203.0.113.7", thresholds=RULES) == []


def test_the_third_request_from_one_address_is_flagged_with_the_count():
    [flag] = on_request(privileged=False, role=None, requests_from_address=3,
                        address="203.0.113.7", thresholds=RULES)
    assert flag.rule == SEVERAL_RESETS
    assert flag.evidence == {"address": "203.0.113.7", "requests": "3", "window_hours": "24"}


def test_requests_from_an_address_are_counted_within_the_window_only():
    index = RequestsFrom("203.0.113.7")
    window = timedelta(hours=24)
    assert index.count(RESET, window) == 1
    assert index.count(RESET + timedelta(hours=1), window) == 2
    assert index.count(RESET + timedelta(hours=24, minutes=30), window) == 2  # the first fell out


def test_a_method_from_the_network_the_request_came_from_is_not_flagged():
    assert method(5, OFFICE, OFFICE_2) == []


def test_a_method_from_another_network_is_flagged_with_both_addresses():
    [flag] = method(5, OFFICE, ELSEWHERE)
    assert flag.rule == OTHER_NETWORK
    assert flag.evidence["request_network"] == "203.0.113.0/24"
    assert flag.evidence["method_address"] == "198.51.100.4"
    assert "198.51.100.0/24" in flag.summary


def test_with_a_country_database_the_evidence_names_both_countries():
    countries = {"203.0.113.7": "US", "198.51.100.4": "RO"}
    [flag] = method(5, OFFICE, ELSEWHERE, country=countries.get)
    assert (flag.evidence["request_country"], flag.evidence["method_country"]) == ("US", "RO")
    assert "US then RO" in flag.summary


def test_without_an_address_on_either_side_there_is_nothing_to_compare():
    assert method(5, None, ELSEWHERE) == []
    assert method(5, OFFICE, None) == []


def test_a_method_long_after_the_reset_or_before_it_is_not_judged():
    assert method(24 * 60 + 1, OFFICE, ELSEWHERE) == []
    assert method(-1, OFFICE, ELSEWHERE) == []


def test_a_second_method_within_the_minutes_after_a_reset_is_flagged():
    assert method(10, before=0) == []
    [flag] = method(10, before=1)
    assert flag.rule == SECOND_METHOD and flag.evidence["minutes_after_reset"] == "10"
    assert method(61, before=1) == []


def test_a_second_method_from_another_network_raises_both_flags():
    assert rules(method(10, OFFICE, ELSEWHERE, before=1)) == [OTHER_NETWORK, SECOND_METHOD]


def test_the_cli_shows_where_a_request_came_from_and_its_flags():
    from rekey.cli.ticket_views import ticket_summary

    summary = ticket_summary({
        "ticket_number": "RK-1", "state": "open", "name": "Jane", "email": "j@x", "username": "jane",
        "reason": "new phone", "client": OFFICE,
        "flags": [{"rule": SEVERAL_RESETS, "label": "Several resets from one address",
                   "summary": "3 reset requests came from 203.0.113.7 within 24 hours."}],
    })
    assert "requested from 203.0.113.7 (203.0.113.0/24)" in summary
    assert "FLAGGED Several resets from one address: 3 reset requests" in summary
