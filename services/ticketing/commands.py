"""Commands the ticketing service accepts over the bus (validated at the edge)."""

from __future__ import annotations

from pydantic import BaseModel, EmailStr, Field, field_validator

from services.ticketing.domain import IDENTITY_CHECKS

USERNAME = Field(min_length=1, max_length=254)


class RequestReset(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    username: str = USERNAME
    reason: str = Field(min_length=1, max_length=2000)
    requested_by: str | None = Field(None, max_length=254)
    channel: str = Field("api", pattern="^(api|email|web)$")

    @field_validator("requested_by")
    @classmethod
    def strip_requester(cls, value: str | None) -> str | None:
        return value.strip() or None if value else None

    @field_validator("name", "username", "reason")
    @classmethod
    def strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class TicketRef(BaseModel):
    ticket: str = Field(min_length=1, max_length=64, description="Ticket id or number")


class AgentAction(TicketRef):
    agent: str = USERNAME

    @field_validator("agent")
    @classmethod
    def strip_agent(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class VerifyIdentity(AgentAction):
    method: str
    note: str = Field("", max_length=2000)

    @field_validator("method")
    @classmethod
    def known_method(cls, value: str) -> str:
        if value not in IDENTITY_CHECKS:
            raise ValueError(f"must be one of {', '.join(IDENTITY_CHECKS)}")
        return value


class ApproveReset(AgentAction):
    pass


class RejectReset(AgentAction):
    reason: str = Field(min_length=1, max_length=2000)


class ListTickets(BaseModel):
    state: str | None = None


class ListQuarantine(BaseModel):
    pass
