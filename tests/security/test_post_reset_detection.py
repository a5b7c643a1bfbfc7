"""Post-reset detection against a running system (real nats-server, both stores): an impostor
who talked a reset past the help desk, then enrols their own device from elsewhere, or asks for
several resets from one place, or goes for an agent's account, is flagged on the ticket, in the
console's facts and by a mail to the security address. A flag stops nothing; it is evidence."""

from __future__ import annotations

from typing import Any

import pyotp

from services.ticketing.detection import (
    OTHER_NETWORK,
    PRIVILEGED_ACCOUNT,
    SECOND_METHOD,
    SEVERAL_RESETS,
)
from services.verification import totp
from shared.caught import latest_mail_to, list_mails
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    USER,
    USER_EMAIL,
    System,
    eventually,
    from_the_web_form,
    start_all,
)
from tests.integration.test_reset_over_the_bus import NEW_PASSWORD, temporary_password
from tests.security.test_sign_in_abuse import portal_for, post_form

OFFICE = {"address": "203.0.113.7", "user_agent": "Mozilla/5.0 (the real user)"}
OFFICE_DESK_2 = {"address": "203.0.113.80", "user_agent": "Mozilla/5.0 (another desk)"}
ELSEWHERE = {"address": "198.51.100.4", "user_agent": "curl/8.5 (the impostor)"}
SECURITY = "security@example.org"


async def started(system: System) -> None:
    system.settings.security_address = SECURITY
    await start_all(system)
    await system.provision()


async def request(system: System, client: dict[str, str] | None, username: str = USER,
                  email: str = USER_EMAIL) -> dict[str, Any]:
    with from_the_web_form():
        return await system.call("ticketing", "request_reset", name="Jane Doe", email=email,
                                 username=username, reason="lost my phone", channel="web",
                                 client=client)


async def reset_then_register(system: System, request_from: dict[str, str],
                              register_from: dict[str, str]) -> tuple[str, str, str]:
    """A reset requested from ``request_from`` and approved; the app registered from
    ``register_from``. The ticket number, the password step's token and the MFA token the
    registration earned."""
    await started(system)
    await request(system, request_from)
    number = await system.approved_ticket()  # joins the open ticket and approves it
    temporary = await temporary_password(system)
    token = (await system.call("credentials", "change_password", username=USER,
                               current_password=temporary, new_password=NEW_PASSWORD))["token"]
    return number, token, await register_app(system, token, register_from)


async def register_app(system: System, token: str, client: dict[str, str],
                       mfa_token: str | None = None) -> str:
    """An app registered (``mfa_token``: a method exists, so adding one needs MFA first)."""
    registration = await system.call("verification", "start_app_registration", username=USER,
                                     token=mfa_token or token, client=client)
    seed = totp.parse_uri(registration["otpauth_uri"]).secret
    verified = await system.call("verification", "verify_code", username=USER, token=token,
                                 method_id=registration["method_id"], code=pyotp.TOTP(seed).now())
    return str(verified["mfa_token"])


async def flags(system: System, number: str) -> list[str]:
    ticket = await system.call("ticketing", "show", ticket=number)
    return [f["rule"] for f in ticket["flags"]]


async def methods_noted(system: System, number: str, count: int) -> dict[str, Any]:
    async def noted() -> dict[str, Any] | None:
        ticket = await system.call("ticketing", "show", ticket=number)
        seen = [t for t in ticket["timeline"] if t["event"] == "NewMethodNoted"]
        return ticket if len(seen) >= count else None

    return await eventually(noted, what=f"{count} new method(s) noted on the ticket")


async def test_a_method_registered_from_another_network_after_a_reset_is_flagged(system: System):
    number, _, _ = await reset_then_register(system, OFFICE, ELSEWHERE)

    ticket = await methods_noted(system, number, 1)
    registered = [(e.occurred_at, e.body.get("client")) for e in
                  system.app("verification").envelopes() if e.name == "MethodRegistered"]
    assert len(ticket["flags"]) == 1, (ticket["client"], ticket["timeline"], registered)
    [flag] = ticket["flags"]
    assert flag["rule"] == OTHER_NETWORK and flag["label"]
    assert flag["evidence"]["request_network"] == "203.0.113.0/24"
    assert flag["evidence"]["method_address"] == "198.51.100.4"
    assert flag["evidence"]["method_user_agent"].startswith("curl")
    [published] = [e for e in system.app("ticketing").envelopes() if e.name == "ResetFlagged"]
    assert published.actor == "system" and published.subject == USER
    assert published.body["rule"] == OTHER_NETWORK
    mail = await eventually(lambda: latest_mail_to(system.mail.folder, SECURITY, number),
                            what="the mail to the security address")
    assert OTHER_NETWORK in mail.subject and "198.51.100.0/24" in mail.body
    # Nothing was stopped: the flag is evidence for people, the method stays registered.
    assert "MethodRegistered" in system.event_names("verification")


async def test_a_method_registered_from_the_requests_network_is_not_flagged(system: System):
    number, _, _ = await reset_then_register(system, OFFICE, OFFICE_DESK_2)

    ticket = await methods_noted(system, number, 1)
    assert ticket["flags"] == []
    assert latest_mail_to(system.mail.folder, SECURITY) is None


async def test_a_second_method_soon_after_a_reset_is_flagged(system: System):
    number, token, mfa_token = await reset_then_register(system, OFFICE, OFFICE)

    await register_app(system, token, OFFICE, mfa_token)

    await methods_noted(system, number, 2)
    assert await flags(system, number) == [SECOND_METHOD]


async def test_several_resets_from_one_address_are_flagged(system: System):
    await started(system)
    numbers = []
    for i in range(3):  # three accounts, one address: someone is working through a list
        answer = await request(system, ELSEWHERE, f"victim{i}@masspasrr.org", f"v{i}@example.org")
        numbers.append(answer["ticket_number"])

    assert [await flags(system, n) for n in numbers] == [[], [], [SEVERAL_RESETS]]
    ticket = await system.call("ticketing", "show", ticket=numbers[-1])
    assert ticket["flags"][0]["evidence"] == {
        "address": "198.51.100.4", "requests": "3", "window_hours": "24"
    }
    assert ticket["client"]["address"] == "198.51.100.4"
    await eventually(lambda: latest_mail_to(system.mail.folder, SECURITY, numbers[-1]),
                     what="the mail to the security address")
    # The requester's answer is the same as for any request: nothing tells them.
    assert set(answer) == {"ticket_id", "ticket_number", "joined"}


async def test_a_reset_requested_for_a_privileged_account_is_flagged(system: System):
    await started(system)
    agent = await request(system, OFFICE, AGENT, "smith@example.org")
    user = await request(system, OFFICE_DESK_2)

    assert await flags(system, agent["ticket_number"]) == [PRIVILEGED_ACCOUNT]
    assert await flags(system, user["ticket_number"]) == []
    listed = {t["ticket_number"]: t["flags"] for t in await system.call("ticketing", "list")}
    assert [f["rule"] for f in listed[agent["ticket_number"]]] == [PRIVILEGED_ACCOUNT]


async def test_requests_by_mail_or_cli_are_recorded_without_an_address(system: System):
    await started(system)
    answer = await request(system, None)

    ticket = await system.call("ticketing", "show", ticket=answer["ticket_number"])
    assert ticket["client"] is None and ticket["channel"] == "web"
    assert ticket["flags"] == []


async def test_the_console_shows_the_flags_on_the_ticket_and_in_the_list(system: System):
    await started(system)
    other = await system.invited_agent("other.agent", AGENT_PASSWORD + " too", "o@example.org")
    flagged = await request(system, ELSEWHERE, AGENT, "smith@example.org")
    number = flagged["ticket_number"]
    async with portal_for(system) as browser:
        console = browser("127.0.0.1")
        signed = await post_form(console, "/console/sign-in",
                                 {"username": "other.agent", "password": AGENT_PASSWORD + " too"})
        assert signed.status_code == 303
        coded = await post_form(console, "/console/sign-in/code", {"code": await other.next_code()})
        assert coded.status_code == 303 and coded.headers["location"] == "/console"
        listed = await console.get("/console")
        page = await console.get(f"/console/tickets/{number}")
    row = listed.text[listed.text.index(number):]
    assert "Privileged account" in row[:row.index("</tr>")]
    assert "Flagged for the security team" in page.text
    assert "A reset was requested for a privileged account (role: agent)." in page.text
    assert "198.51.100.4 (network 198.51.100.0/24)" in page.text  # where the request came from


async def test_an_alert_left_unsent_by_a_crash_is_mailed_once_after_the_restart(system: System):
    await started(system)
    ticketing = system.app("ticketing")
    ticketing.send_alert = lambda alert: None  # the process dies between the commit and the send
    number = (await request(system, OFFICE, AGENT, "smith@example.org"))["ticket_number"]
    assert [a.rule for a in ticketing.unsent_alerts()] == [PRIVILEGED_ACCOUNT]

    await system.stop("ticketing")
    await system.start("ticketing")

    await eventually(lambda: not system.app("ticketing").unsent_alerts(), what="the alert sent")
    mails = [m for m in list_mails(system.mail.folder) if SECURITY in m.to]
    assert len(mails) == 1 and number in mails[0].subject
    restarted = system.app("ticketing")
    recorded = [type(e).__name__ for e in restarted.events.get(restarted.ticket(number).id)]
    assert recorded.count("ResetFlagged") == recorded.count("SecurityAlertSent") == 1
