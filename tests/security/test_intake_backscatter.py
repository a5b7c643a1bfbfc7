"""Backscatter through the mail intake: a forged ``From:`` must not turn the help desk into a
mailer that writes to arbitrary addresses. The acknowledgement goes only to the address on
file (compared by digest); a request from any other sender still becomes (or joins) a ticket."""

from __future__ import annotations

from shared.caught import list_mails
from tests.integration.conftest import USER, USER_EMAIL, System, eventually
from tests.integration.test_intake_mail import WELL_FORMED, acknowledgement, intake, mail, send

__all__ = ["intake"]

FORGED = [f"victim{n}@elsewhere{n}.example" for n in range(4)]


async def test_forged_from_addresses_get_no_acknowledgement(intake: System):
    ticketing = intake.app("ticketing")
    answers = []
    for address in FORGED:  # the same account, the attacker's chosen From each time
        _, answer = await send(intake, mail(f"Jane <{address}>", WELL_FORMED), sender=address)
        answers.append(answer)
    _, nobody = await send(intake, mail(f"No One <{FORGED[0]}>",
                                        WELL_FORMED.replace("jane.doe@masspasrr", "no.one@masspasrr")),
                           sender=FORGED[0])
    answers.append(nobody)
    assert len(set(answers)) == 1  # one answer, whether or not the account exists
    tickets = await eventually(lambda: len(t := ticketing.list_tickets("open")) == 2 and t)
    mine = next(t for t in tickets if t["username"] == USER)
    assert mine["joined_requests"] == len(FORGED) - 1 and "not the one on file" in mine["address_on_file"]
    for ticket in tickets:
        names = [type(e).__name__ for e in ticketing.events.get(ticketing.ticket(ticket["ticket_id"]).id)]
        assert "AcknowledgementIntended" not in names
    await send(intake, mail(f"Jane Doe <{USER_EMAIL}>", WELL_FORMED))  # the owner, on file
    await acknowledgement(intake, USER_EMAIL)
    assert [m.to for m in list_mails(intake.mail.folder)] == [[USER_EMAIL]]
