"""The help desk's mail intake: real SMTP into the ticketing service, tickets or quarantine."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from rekey.stack.ports import free_port
from shared.caught import latest_mail_to, list_mails
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, start_all

HELPDESK = "helpdesk@rekey.local"


@pytest.fixture
async def intake(system: System) -> System:
    system.settings.intake_port = free_port()
    system.settings.helpdesk_address = HELPDESK
    await start_all(system)
    await system.provision()
    return system


def mail(sender: str, body: str, subject: str = "MFA reset please", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = HELPDESK
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(body)
    return msg


async def send(system: System, message: EmailMessage | bytes, sender: str = USER_EMAIL,
               to: str = HELPDESK):
    return await aiosmtplib.send(message, hostname="127.0.0.1", port=system.settings.intake_port,
                                 sender=sender, recipients=[to], timeout=10)


WELL_FORMED = (
    "Hello help desk,\n\nPlease open a ticket to reset my MFA: I have a new phone.\n\n"
    "Name: Jane Doe\nUsername: jane.doe@masspasrr.org\nReason: new phone\n\nThanks,\nJane\n"
)


async def acknowledgement(system: System, to: str):
    return await eventually(lambda: latest_mail_to(system.mail.folder, to, "received"),
                            what=f"the acknowledgement to {to}")


async def test_a_well_formed_mail_opens_a_ticket_and_is_acknowledged_with_its_number(intake: System):
    await send(intake, mail(f"Jane Doe <{USER_EMAIL}>", WELL_FORMED))
    [ticket] = await eventually(lambda: intake.app("ticketing").list_tickets("open"))
    assert (ticket["username"], ticket["name"], ticket["reason"]) == (USER, "Jane Doe", "new phone")
    assert ticket["channel"] == "email" and "proves nothing" in ticket["address_on_file"]
    [requested] = [e for e in intake.app("ticketing").envelopes() if e.name == "ResetRequested"]
    assert requested.context is not None and requested.context.channel == "mail"
    ack = await acknowledgement(intake, USER_EMAIL)
    assert ticket["ticket_number"] in ack.subject and ticket["ticket_number"] in ack.body
    await eventually(lambda: "AcknowledgementSent" in
                     [type(e).__name__ for e in intake.app("ticketing").events.get(
                         intake.app("ticketing").ticket(ticket["ticket_number"]).id)])


async def test_the_answer_reads_the_same_whether_or_not_the_account_exists(intake: System):
    _, known = await send(intake, mail(f"Jane Doe <{USER_EMAIL}>", WELL_FORMED))
    _, unknown = await send(intake, mail("Nobody <nobody@example.org>",
                                         WELL_FORMED.replace("jane.doe@masspasrr", "nobody@masspasrr")),
                            sender="nobody@example.org")
    assert known == unknown
    await acknowledgement(intake, USER_EMAIL)
    assert latest_mail_to(intake.mail.folder, "nobody@example.org") is None  # not on file


async def test_a_mail_from_an_address_not_on_file_opens_an_unverified_ticket(intake: System):
    await send(intake, mail("Jane <jane@attacker.example>", WELL_FORMED), sender="jane@attacker.example")
    [ticket] = await eventually(lambda: intake.app("ticketing").list_tickets("open"))
    assert ticket["address_on_file"] == "The address typed is not the one on file"


async def test_a_username_is_found_without_labels_and_the_reason_from_the_text(intake: System):
    body = "Hi, I lost my phone and need my MFA reset for jane.doe@masspasrr.org please.\n"
    await send(intake, mail(f"Jane Doe <{USER_EMAIL}>", body, subject="help"))
    [ticket] = await eventually(lambda: intake.app("ticketing").list_tickets("open"))
    assert ticket["username"] == USER
    assert "lost my phone" in ticket["reason"]


async def quarantined(system: System, count: int = 1) -> list[dict]:
    return await eventually(
        lambda: (q := system.app("ticketing").quarantined()) and len(q) >= count and q,
        what="quarantine",
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (mail(USER_EMAIL, "Please reset my MFA, new phone.", subject="reset"), "no portal username"),
        (mail(USER_EMAIL, "Lunch on Friday?\nUsername: jane.doe@masspasrr.org", subject="hi"),
         "does not ask"),
        (mail(USER_EMAIL, "MFA reset\nUsername: jane doe; DROP TABLE tickets"), "not a valid username"),
    ],
    ids=["no-username", "not-a-reset", "hostile-username"],
)
async def test_a_mail_that_cannot_become_a_ticket_is_quarantined_with_its_reason(
    intake: System, message: EmailMessage, reason: str
):
    await send(intake, message)
    [kept] = await quarantined(intake)
    assert reason in kept["reason"]
    kept_bytes = Path(kept["path"]).read_bytes().replace(b"\r\n", b"\n")
    assert kept_bytes == bytes(message).replace(b"\r\n", b"\n")  # nothing lost
    assert intake.app("ticketing").list_tickets() == []
    assert latest_mail_to(intake.mail.folder, USER_EMAIL) is None  # no reply to junk


async def test_html_only_and_attachment_only_mail_is_quarantined_as_non_text(intake: System):
    html = EmailMessage()
    html["From"], html["To"], html["Subject"] = USER_EMAIL, HELPDESK, "MFA reset"
    html.set_content("<p>Username: jane.doe@masspasrr.org</p>", subtype="html")
    await send(intake, html)
    binary = EmailMessage()
    binary["From"], binary["To"], binary["Subject"] = USER_EMAIL, HELPDESK, "MFA reset"
    binary.add_attachment(b"\x00\x01MZ binary", maintype="application", subtype="octet-stream",
                          filename="reset.exe")
    await send(intake, binary)
    kept = await quarantined(intake, 2)
    assert all("no plain-text part" in k["reason"] for k in kept)


async def test_malformed_raw_bytes_are_quarantined_not_lost(intake: System):
    raw = b"From: \r\nSubject: =?utf-8?q?MFA_reset?=\r\n\r\n\xff\xfe garbage \x00 Username: x\r\n"
    await send(intake, raw)
    [kept] = await quarantined(intake)
    assert "sender" in kept["reason"] or "malformed" in kept["reason"]


async def test_header_injection_in_the_name_is_neutralised(intake: System):
    body = WELL_FORMED.replace("Name: Jane Doe", "Name: Jane\u0000Doe\u001b[31m\u2028Bcc: x@evil.example")
    await send(intake, mail(USER_EMAIL, body))
    [ticket] = await eventually(lambda: intake.app("ticketing").list_tickets("open"))
    assert "\n" not in ticket["name"] and "\x1b" not in ticket["name"] and "\x00" not in ticket["name"]
    await acknowledgement(intake, USER_EMAIL)
    assert not any("x@evil.example" in m.to for m in list_mails(intake.mail.folder))


async def test_oversized_mail_and_other_recipients_are_refused_at_smtp_and_record_nothing(intake: System):
    intake_app = intake.app("ticketing")
    before = intake_app.max_notification_id()
    big = mail(USER_EMAIL, WELL_FORMED + "x" * (intake.settings.intake_max_bytes + 10))
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(intake, big)
    assert refused.value.code == 552
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(intake, mail(USER_EMAIL, WELL_FORMED), to="ceo@rekey.local")
    assert intake_app.max_notification_id() == before


async def test_a_second_mail_for_the_same_account_joins_the_ticket_and_gets_the_same_number(
    intake: System,
):
    await send(intake, mail(USER_EMAIL, WELL_FORMED))
    await send(intake, mail(USER_EMAIL, WELL_FORMED))
    [ticket] = await eventually(
        lambda: [t for t in intake.app("ticketing").list_tickets("open") if t["joined_requests"] == 1]
    )
    acks = await eventually(
        lambda: len(m := [x for x in list_mails(intake.mail.folder) if "received" in x.subject]) == 2
        and m
    )
    assert all(ticket["ticket_number"] in a.subject for a in acks)


async def test_rate_limited_mail_is_refused_for_later_and_records_nothing(intake: System):
    intake.settings.requests_per_sender = 1
    sender = "jane@example.net"  # not on file: no acknowledgement is recorded meanwhile
    await send(intake, mail(sender, WELL_FORMED), sender=sender)
    before = intake.app("ticketing").max_notification_id()
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(intake, mail(sender, WELL_FORMED), sender=sender)
    assert refused.value.code == 451 and "Too many" in refused.value.message
    assert intake.app("ticketing").quarantined() == []
    assert intake.app("ticketing").max_notification_id() == before


async def test_a_mail_sent_again_by_the_mail_server_files_nothing_new(intake: System):
    """A sending server that timed out waiting for our answer delivers the same mail again."""
    same = mail(USER_EMAIL, WELL_FORMED, **{"Message-ID": "<retry-1@mail.example.org>"})
    await send(intake, same)
    await send(intake, same)
    [ticket] = await eventually(lambda: intake.app("ticketing").list_tickets("open"))
    assert ticket["joined_requests"] == 0
    assert intake.event_names("ticketing").count("ResetRequested") == 1
