"""Who a web action came from: the context the portal passes with each command it sends.

Not an event body: a command field (``client``) that services record as facts on their events
(the address, its network, the user agent). The address is personal data but no secret; the
network (/24 or /48) is what detection compares. CLI and mail callers send none: their
channel says where the action came from.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.network import network_of, parse_address

USER_AGENT_MAX = 300


class ClientContext(BaseModel):
    """The real client address (through the trusted proxies) and the browser's user agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(min_length=2, max_length=64, description="The client's IP address")
    user_agent: str = Field("", max_length=USER_AGENT_MAX, description="The browser's User-Agent")

    @field_validator("address")
    @classmethod
    def an_ip_address(cls, value: str) -> str:
        parsed = parse_address(value)
        if parsed is None:
            raise ValueError("must be an IP address")
        return str(parsed)

    @property
    def network(self) -> str:
        return network_of(self.address)

    def facts(self) -> dict[str, str]:
        """What an event records of it: the address, its network, the user agent."""
        return {"address": self.address, "network": self.network, "user_agent": self.user_agent}


def client_facts(client: ClientContext | None) -> dict[str, str] | None:
    return client.facts() if client is not None else None


class ClientFacts(BaseModel):
    """A client as recorded on a public event (ResetRequested, MethodRegistered, ...)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    address: str = ""
    network: str = ""
    user_agent: str = ""
