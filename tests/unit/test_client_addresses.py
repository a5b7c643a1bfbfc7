"""The real client address behind trusted proxies, and the network detection compares."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.contracts.client import ClientContext
from shared.network import TrustedProxies, limit_key, network_of

PROXY = "10.0.0.5"
PROXIES = TrustedProxies("10.0.0.0/24, 2001:db8:ffff::/48")


def test_without_trusted_proxies_the_tcp_peer_is_the_client():
    assert TrustedProxies("").client_address("203.0.113.7", ["198.51.100.1"]) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_client():
    assert PROXIES.client_address(PROXY, ["203.0.113.7"]) == "203.0.113.7"


def test_x_forwarded_for_is_read_right_to_left_skipping_trusted_hops():
    # The browser wrote the first entry itself; the proxies appended what they saw.
    header = ["6.6.6.6, 203.0.113.7, 10.0.0.9"]
    assert PROXIES.client_address(PROXY, header) == "203.0.113.7"


def test_several_x_forwarded_for_headers_are_one_list_in_order():
    assert PROXIES.client_address(PROXY, ["6.6.6.6", "203.0.113.7"]) == "203.0.113.7"


def test_an_untrusted_peers_x_forwarded_for_is_ignored():
    assert PROXIES.client_address("203.0.113.7", ["10.0.0.1"]) == "203.0.113.7"


def test_a_garbled_hop_stops_the_walk_at_the_last_trusted_proxy():
    assert PROXIES.client_address(PROXY, ["203.0.113.7, not-an-address"]) == PROXY
    assert PROXIES.client_address(PROXY, []) == PROXY


def test_ipv6_proxies_and_clients_and_ipv4_mapped_peers():
    assert PROXIES.client_address("2001:db8:ffff::1", ["[2001:db8:1::7]:443"]) == "2001:db8:1::7"
    assert PROXIES.client_address("::ffff:10.0.0.5", ["203.0.113.7"]) == "203.0.113.7"


def test_a_proxy_list_that_is_not_cidrs_is_refused_with_the_setting_named():
    with pytest.raises(ValueError, match=r"REKEY_TRUSTED_PROXIES: 'proxy\.local'"):
        TrustedProxies("10.0.0.0/8, proxy.local")


def test_networks_are_the_slash_24_and_the_slash_48():
    assert network_of("203.0.113.7") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2::7") == "2001:db8:1::/48"
    assert network_of("nonsense") == ""


def test_per_address_limits_count_an_ipv6_slash_64_as_one_address():
    assert limit_key("2001:db8:1:2::7") == limit_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert limit_key("203.0.113.7") == "203.0.113.7"


def test_a_client_context_holds_an_ip_address_and_records_its_network():
    client = ClientContext(address="203.0.113.7", user_agent="Firefox")
    assert client.facts() == {
        "address": "203.0.113.7", "network": "203.0.113.0/24", "user_agent": "Firefox"
    }
    with pytest.raises(ValidationError):
        ClientContext(address="example.org")
