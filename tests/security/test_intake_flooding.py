"""Flooding the mail intake with forged ``From:`` addresses: the per-account, per-sender-domain
and global limits hold whatever address a mail claims, and over a limit the intake answers
451 (the sending server keeps the mail) and records nothing."""

from __future__ import annotations

import aiosmtplib
import pytest

from shared.caught import list_mails
from tests.integration.conftest import USER, System
from tests.integration.test_intake_mail import WELL_FORMED, intake, mail, send

__all__ = ["intake"]


def for_account(username: str) -> str:
    return WELL_FORMED.replace(USER, username)


async def refused_for_now(system: System, sender: str, body: str) -> str:
    """Send a mail the intake must refuse for now; checks nothing was recorded."""
    ticketing = system.app("ticketing")
    before = ticketing.max_notification_id()
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(system, mail(sender, body), sender=sender)
    assert refused.value.code == 451 and "Too many" in refused.value.message
    assert ticketing.max_notification_id() == before
    return refused.value.message


async def test_forged_from_addresses_cannot_dodge_the_per_account_limit(intake: System):
    limit = intake.settings.requests_per_account
    for n in range(limit):
        await send(intake, mail(f"x{n}@forged{n}.example", WELL_FORMED), sender=f"x{n}@forged{n}.example")
    for n in range(limit, 25):  # a fresh From (and domain) each time does not help
        await refused_for_now(intake, f"x{n}@forged{n}.example", WELL_FORMED)
    [ticket] = intake.app("ticketing").list_tickets()
    assert ticket["joined_requests"] == limit - 1
    assert intake.app("ticketing").quarantined() == [] and list_mails(intake.mail.folder) == []


async def test_one_sender_domain_cannot_flood_the_intake(intake: System):
    intake.settings.intake_mails_per_domain = 3
    for n in range(3):
        await send(intake, mail(f"a{n}@flood.example", for_account(f"user{n}@masspasrr.org")),
                   sender=f"a{n}@flood.example")
    await refused_for_now(intake, "a9@FLOOD.example", for_account("user9@masspasrr.org"))
    await refused_for_now(intake, "junk@flood.example", "Lunch on Friday?")  # junk counts too
    await send(intake, mail("b@other.example", for_account("user8@masspasrr.org")),
               sender="b@other.example")  # another domain still gets through
    assert len(intake.app("ticketing").list_tickets()) == 4


async def test_many_sender_domains_cannot_flood_the_intake(intake: System):
    intake.settings.intake_mails_per_window = 4
    for n in range(4):
        await send(intake, mail(f"a@d{n}.example", for_account(f"user{n}@masspasrr.org")),
                   sender=f"a@d{n}.example")
    for n in range(4, 8):
        await refused_for_now(intake, f"a@d{n}.example", for_account(f"user{n}@masspasrr.org"))
    assert len(intake.app("ticketing").list_tickets()) == 4
