"""Commands the ticketing service accepts over the bus (validated at the edge)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, field_validator

from shared.commands import TOKEN, USERNAME, Command
from shared.contracts.client import ClientContext
from shared.idempotency import IdempotencyKey


def _not_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


# Stripped of surrounding spaces, and refused when nothing is left.
NotBlank = Annotated[str, AfterValidator(_not_blank)]


PRINCIPAL_MAX = 4096


class RequestReset(Command):
    name: NotBlank = Field(min_length=1, max_length=200)
    email: EmailStr
    username: NotBlank = USERNAME
    reason: NotBlank = Field(min_length=1, max_length=2000)
    channel: str = Field("api", pattern="^(api|email|web)$")
    principal: str | None = Field(
        None, max_length=PRINCIPAL_MAX, description="An agent filing for someone: their principal"
    )
    client: ClientContext | None = Field(
        None, description="The web client (the portal sends it; mail, API and CLI do not)"
    )
    idempotency_key: IdempotencyKey = None


class TicketRef(Command):
    ticket: str = Field(min_length=1, max_length=64, description="Ticket id or number")


class AgentAction(TicketRef):
    """The acting agent is whoever the signed principal says, never a name in the command."""

    principal: str = Field(min_length=1, max_length=PRINCIPAL_MAX,
                           description="The acting agent's signed principal")


class StartProof(AgentAction):
    """Start a proof the system runs; where it goes is on file, never in the command."""

    kind: Literal["call_back", "email_code", "manager_approval", "method_challenge"]


class AnswerProofCode(AgentAction):
    proof_id: str = Field(min_length=1, max_length=64)
    code: str = Field(pattern=r"^\d{6}$", description="The code the person read back")

    @field_validator("code", mode="before")
    @classmethod
    def digits_only(cls, value: object) -> object:
        return value.replace(" ", "").strip() if isinstance(value, str) else value


class AttestIdCheck(AgentAction):
    note: NotBlank = Field(min_length=1, max_length=2000,
                           description="What was checked: the document, where, by whom")


class ManagerLinkRef(Command):
    token: str = Field(min_length=1, max_length=4096)


class ManagerDecision(ManagerLinkRef):
    approve: bool


class ApproveReset(AgentAction):
    pass


class RejectReset(AgentAction):
    reason: str = Field(min_length=1, max_length=2000)


class CloseReview(AgentAction):
    note: str = Field(min_length=1, max_length=2000,
                      description="What the review found (e.g. the person did not ask for it)")


class CancelLink(Command):
    """The link mailed to the address on file when a reset was scheduled (credentials signs
    it): what it would cancel."""

    token: str = TOKEN


class CancelReset(CancelLink):
    """The person confirmed cancelling; where from, for the record."""

    client: ClientContext | None = Field(None, description="The web client the portal saw")


VIEWER = Field(None, max_length=PRINCIPAL_MAX, description="The viewing agent's principal (next_actions)")


class ListTickets(Command):
    state: str | None = None
    principal: str | None = VIEWER


class ShowTicket(TicketRef):
    principal: str | None = VIEWER


class ListQuarantine(Command):
    pass
