"""Client addresses: the real one behind trusted proxies, and the network it belongs to.

Behind the documented TLS proxy every request reaches the portal from the proxy's address, so
the portal reads ``X-Forwarded-For`` - but only from peers in ``REKEY_TRUSTED_PROXIES``
(CIDRs). The header is read right to left, skipping trusted hops: the first address that is
not a trusted proxy is the client. An untrusted peer's header is ignored (anyone can send
one), and so is anything left of the first untrusted hop (that hop could have written it).

The network of an address (its /24 for IPv4, its /48 for IPv6) is what post-reset detection
compares: two addresses in one network are "the same place"; no GeoIP database is needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import cached_property

IPV4_PREFIX = 24
IPV6_PREFIX = 48

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An IP address, or None for anything else (a name, a port suffix, garbage)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" (RFC 7239 style)
        text = text[1:text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def network_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of ``address``; "" when it is not an address."""
    parsed = parse_address(address)
    if parsed is None:
        return ""
    prefix = IPV4_PREFIX if parsed.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` the portal believes (``REKEY_TRUSTED_PROXIES``)."""

    def __init__(self, cidrs: str | Iterable[str]) -> None:
        items = cidrs.split(",") if isinstance(cidrs, str) else list(cidrs)
        networks = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"REKEY_TRUSTED_PROXIES: {item!r} is not an address or a CIDR network"
                ) from None
        self.networks = tuple(networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(
            address.version == n.version and address in n for n in self.networks
        )

    def client_address(self, peer: str, forwarded_for: Iterable[str] = ()) -> str:
        """The real client's address: ``peer`` (the TCP peer) unless it is a trusted proxy, then
        the rightmost ``X-Forwarded-For`` entry that is not a trusted proxy. ``forwarded_for``:
        every ``X-Forwarded-For`` header's value, in order. A malformed entry stops the walk:
        the last trusted hop is then the client as far as anyone can tell."""
        current = parse_address(peer)
        if current is None:
            return peer or "unknown"
        if not self.trusts(current):
            return str(current)  # its X-Forwarded-For is whatever it chose to write
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break
            current = address
            if not self.trusts(address):
                break
        return str(current)

    @cached_property
    def configured(self) -> bool:
        return bool(self.networks)


def limit_key(address: str) -> str:
    """What per-address limits count: the IPv4 address, or the IPv6 /64 (one subscriber's
    usual allocation, so one holder cannot dodge a limit by walking through it)."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
