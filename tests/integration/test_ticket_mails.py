"""The mails a ticket sends: the acknowledgement of a web form request (its ticket number, to the
address on file only) and the notice of a rejection (not approved, whom to call); each sent
once, through the real SMTP sink, however often the service restarts."""

from __future__ import annotations

from shared.caught import latest_mail_to, list_mails
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, from_the_web_form, start_all

IMPOSTOR = "jane.doe.new@attacker.example"


async def web_request(system: System, email: str = USER_EMAIL, username: str = USER) -> dict:
    with from_the_web_form():
        return await system.call("ticketing", "request_reset", name="Jane Doe", email=email,
                                 username=username, reason="new phone", channel="web")


def ticket_events(system: System, number: str) -> list[str]:
    app = system.app("ticketing")
    return [type(e).__name__ for e in app.events.get(app.ticket(number).id)]


def mails_to(system: System, address: str) -> list:
    return [m for m in list_mails(system.mail.folder) if address in m.to]


async def test_a_web_request_mails_its_ticket_number_to_the_address_on_file(system: System):
    await start_all(system)
    await system.provision()
    number = (await web_request(system))["ticket_number"]
    ack = await eventually(lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "received"),
                           what="the acknowledgement")
    assert number in ack.subject and number in ack.body
    assert system.settings.helpdesk_contact in ack.body
    await eventually(lambda: "AcknowledgementSent" in ticket_events(system, number))


async def test_an_impostor_s_typed_address_gets_nothing_the_owner_hears_of_the_request(
    system: System,
):
    await start_all(system)
    await system.provision()
    number = (await web_request(system, email=IMPOSTOR))["ticket_number"]
    ack = await eventually(lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "received"),
                           what="the acknowledgement to the address on file")
    assert number in ack.body and "If you did not send this request" in ack.body
    assert mails_to(system, IMPOSTOR) == []


async def test_a_web_request_for_an_unknown_username_mails_nobody_and_answers_the_same(
    system: System,
):
    await start_all(system)
    await system.provision()
    unknown = await web_request(system, email="probe@attacker.example",
                                username="no.one@masspasrr.org")
    known = await web_request(system)
    assert set(unknown) == set(known) and unknown["joined"] == known["joined"] is False
    await eventually(lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "received"))
    assert mails_to(system, "probe@attacker.example") == []
    assert "AcknowledgementIntended" not in ticket_events(system, unknown["ticket_number"])


async def test_a_rejected_ticket_tells_the_address_on_file_it_was_not_approved_and_whom_to_call(
    system: System,
):
    await start_all(system)
    await system.provision()
    number = (await web_request(system, email=IMPOSTOR))["ticket_number"]
    await system.call("ticketing", "reject", ticket=number, principal=system.principal(),
                      reason="the caller did not know the manager's name")
    notice = await eventually(
        lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "not approved"),
        what="the rejection notice")
    assert number in notice.subject and number in notice.body
    assert f"call {system.settings.helpdesk_contact}" in notice.body
    assert "manager's name" not in notice.body  # the agent's reason stays on the ticket
    assert [m for m in mails_to(system, IMPOSTOR)] == []
    await eventually(lambda: "RejectionNoticeSent" in ticket_events(system, number))


async def test_a_rejected_request_for_an_unknown_username_mails_nobody(system: System):
    await start_all(system)
    await system.provision()
    number = (await web_request(system, email="probe@attacker.example",
                                username="no.one@masspasrr.org"))["ticket_number"]
    await system.call("ticketing", "reject", ticket=number, principal=system.principal(),
                      reason="no such account")
    assert "RejectionNoticeIntended" not in ticket_events(system, number)
    assert mails_to(system, "probe@attacker.example") == []


async def test_an_intent_left_by_a_stop_is_sent_once_at_start_and_never_again(system: System):
    await start_all(system)
    await system.provision()
    await system.stop("ticketing")
    app_settings = system.settings
    # The mails' intents recorded while nothing sends them (a stop between saving and sending).
    from services.ticketing.application import TicketingApplication
    from services.ticketing.commands import RejectReset, RequestReset

    offline = TicketingApplication(app_settings)
    with from_the_web_form():
        number = offline.request_reset(RequestReset(
            name="Jane Doe", email=USER_EMAIL, username=USER, reason="new phone",
            channel="web"))["ticket_number"]
    offline.reject(RejectReset(ticket=number, principal=system.principal(), reason="no answer"))
    offline.close()
    await system.start("ticketing")
    await eventually(lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "not approved"),
                     what="the rejection notice sent by the start-up sweep")
    await eventually(lambda: {"AcknowledgementSent", "RejectionNoticeSent"}
                     <= set(ticket_events(system, number)))
    sent = len(mails_to(system, USER_EMAIL))
    assert sent == 2  # the acknowledgement and the notice, once each
    await system.stop("ticketing")
    await system.start("ticketing")
    await system.call("ticketing", "show", ticket=number)
    assert len(mails_to(system, USER_EMAIL)) == sent
