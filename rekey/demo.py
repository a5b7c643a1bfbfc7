"""``rekey demo``: the user guide, walked step by step against a running Rekey.

It uses only what a person has: the help-desk API, the mail that arrives, the sign-in
answers, and an authenticator app (here: pyotp computing the code from the QR's URI).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp
from rich.console import Console
from rich.markup import escape

from rekey.mailsink import latest_mail_to
from rekey.render import history_table
from services.audit.history import history_over_bus
from shared.bus.stream import connect
from shared.client import RekeyClient
from shared.errors import Conflict, NotAllowed, NotFound, RekeyError
from shared.settings import Settings
from shared.waiting import StillWaiting
from shared.waiting import eventually as wait_until

TEMPORARY = re.compile(r"Temporary password: (\S+)")
AGENT = "helpdesk.agent"
AGENT_PASSWORD = "help desk agent demo passphrase"  # noqa: S105 - a demo account's password


class DemoFailed(RuntimeError):
    pass


async def eventually(
    what: str,
    attempt: Callable[[], Awaitable[Any]],
    timeout: float = 30.0,
    retry_on: tuple[type[Exception], ...] = (NotFound,),
) -> Any:
    """Retry while the services catch up with each other's events (eventual consistency)."""
    try:
        return await wait_until(
            attempt, what=what, timeout=timeout, interval=0.2, retry_on=retry_on
        )
    except StillWaiting as exc:
        raise DemoFailed(str(exc)) from None


async def run_demo(
    settings: Settings,
    username: str,
    console: Console,
    *,
    new_password: str | None = None,
    witness: dict[str, str] | None = None,
    method: str = "app",
) -> int:
    """Walk the guide; returns the exit code. ``witness`` receives the secrets the person
    handled (temporary and new password, TOTP seed), so a test can prove no store kept them."""
    witness = {} if witness is None else witness
    nc = await connect(settings.nats_url, "rekey-demo", attempts=10)
    client = RekeyClient(nc)
    mail_folder = Path(settings.data_dir) / "mail"
    email = f"{username.split('@')[0]}@example.org"
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"[bold cyan]{step:>2}.[/] {escape(text)}")

    try:
        say(f"Provisioning the portal account {username} and the agent {AGENT}")
        for account in (
            {"username": username, "email": email, "display_name": "Demo User"},
            {"username": AGENT, "email": "agent@example.org", "display_name": "Help Desk Agent",
             "role": "agent", "password": AGENT_PASSWORD},
        ):
            try:
                await client.call("credentials", "register_account", **account)
            except Conflict:
                console.print(f"    ({account['username']} already exists)")

        say("The user asks the help desk for an MFA reset (new phone)")
        ticket = await client.call(
            "ticketing", "request_reset", name="Demo User", email=email, username=username,
            reason="New phone: my old one was lost", channel="api",
        )
        number = ticket["ticket_number"]
        console.print(f"    ticket [b]{number}[/] opened")

        say("The agent verifies the person by calling back the number on file")
        await eventually(
            "ticketing to learn of the agent's account",
            lambda: client.call(
                "ticketing", "verify_identity", ticket=number, agent=AGENT, method="call_back",
                note="Called back the phone number on file; the user confirmed the request.",
            ),
            retry_on=(NotAllowed,),
        )

        say("The agent approves the reset: MFA methods revoked, password reset")
        approved = await eventually(
            "ticketing to learn of the user's account",
            lambda: client.call("ticketing", "approve", ticket=number, agent=AGENT),
        )
        console.print(f"    ticket {number} is {approved['state']}")

        say("The temporary password arrives by secure email")
        mail = await eventually(
            "the temporary password mail",
            lambda: asyncio.to_thread(latest_mail_to, mail_folder, email, "temporary"),
        )
        match = TEMPORARY.search(mail.body)
        if not match:
            raise DemoFailed("the mail holds no temporary password")
        temporary = witness["temporary_password"] = match.group(1)
        console.print(f"    mail {mail.subject!r} to {email} (password not shown)", markup=False)

        say("The user signs in with the username and the temporary password")
        signed = await client.call("credentials", "sign_in", username=username, password=temporary)
        if not signed["must_change_password"]:
            raise DemoFailed("a temporary password must be changed at first sign-in")
        console.print("    the portal asks for a new password")

        say("The user chooses a new password")
        new_password = new_password or f"{secrets.token_urlsafe(12)} demo passphrase"
        witness["new_password"] = new_password
        changed = await client.call(
            "credentials", "change_password", username=username, current_password=temporary,
            new_password=new_password,
        )
        token = changed["token"]

        if method != "app":  # push, sms, call: rekey/verification_demo.py
            from rekey.verification_demo import enroll

            verified = await enroll(client, settings, username, token, method, say, console, witness)
        else:
            say('"Keep your account secure": Microsoft Authenticator, "Scan the QR code"')
            status = await client.call("verification", "status", username=username, token=token)
            if not status["must_enroll"]:
                raise DemoFailed("methods were not revoked by the reset")
            registration = await client.call(
                "verification", "start_app_registration", username=username, token=token
            )
            console.print(
                f"    \"Can't scan image?\" account name: {registration['account_name']}, "
                "secret key: (shown to the user only)"
            )

            say("The phone's app scans the QR code and shows a 6-digit code")
            seed = witness["totp_seed"] = parse_qs(urlparse(registration["otpauth_uri"]).query)["secret"][0]
            code = pyotp.TOTP(seed).now()
            verified = await client.call(
                "verification", "verify_code", username=username, token=token,
                method_id=registration["method_id"], code=code,
            )
            console.print(
                f'    "Success! ... Default sign-in method: {verified["default_label"]}"'
            )

        say('The Data Access Agreement: "I Accept", then "Confirm"')
        agreement = await client.call(
            "consent", "present", username=username, token=verified["mfa_token"]
        )
        console.print(
            f"    {agreement['title']}: {len(agreement['clauses'])} clauses, "
            f"{agreement['content_hash'][:23]}..."
        )
        await client.call(
            "consent", "accept", username=username, token=verified["mfa_token"],
            version=agreement["version"], content_hash=agreement["content_hash"],
            accepted=True, confirmed=True,
        )

        say("The ticket closes once the agreement is accepted")

        async def closed() -> bool:
            shown = await client.call("ticketing", "show", ticket=number)
            return bool(shown["state"] == "closed")

        await eventually("the ticket to close", closed)
        console.print(f"    ticket {number} is closed; the portal opens")

        say(f"History of {username}, rebuilt from the event stores")
        console.print(history_table(await history_over_bus(client, username)))
        console.print("[bold green]Demo complete: every step succeeded.[/]")
        return 0
    except (RekeyError, DemoFailed) as exc:
        console.print(f"[bold red]Demo failed at step {step}:[/] {escape(str(exc))}")
        return 1
    finally:
        await nc.close()
