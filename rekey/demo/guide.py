"""``rekey demo``: the user guide, walked step by step against a running Rekey.

It uses only what a person has: the help-desk API, the mail that arrives, the sign-in
answers, and an authenticator app (here: pyotp computing the code from the QR's URI).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

import pyotp
from rich.console import Console
from rich.markup import escape

from rekey.demo.failures import DemoFailed, eventually
from rekey.demo.methods import enroll
from rekey.stack.agents import agent_principal, invite_with_app
from rekey.stack.proofs import prove_by_mail_and_id
from rekey.terminal import print_history
from services.audit.history import history_over_bus
from services.verification import totp
from shared.bus.connection import connect
from shared.caught import latest_mail_to
from shared.client import RekeyClient
from shared.errors import Conflict, NotAllowed, NotFound, RekeyError
from shared.principals import operator_principal
from shared.settings import Settings

TEMPORARY = re.compile(r"Temporary password: (\S+)")
AGENT = "helpdesk.agent"
AGENT_PASSWORD = "help desk agent demo passphrase"  # noqa: S105 - a demo account's password


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
    nc = await connect(settings, "operator", name="rekey-demo", attempts=10)
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
        try:
            await client.call("credentials", "register_account", username=username, email=email,
                              display_name="Demo User", principal=operator_principal(settings))
        except Conflict:
            console.print(f"    ({username} already exists)")

        console.print(f"    {AGENT} redeems the mailed invitation: a password and an authenticator app")
        authenticator = await invite_with_app(client.call, settings, mail_folder, AGENT,
                                              "agent@example.org", "Help Desk Agent", AGENT_PASSWORD)
        witness["agent_totp_seed"] = authenticator.seed

        say("The user asks the help desk for an MFA reset (new phone)")
        ticket = await client.call(
            "ticketing", "request_reset", name="Demo User", email=email, username=username,
            reason="New phone: my old one was lost", channel="api",
        )
        number = ticket["ticket_number"]
        console.print(f"    ticket [b]{number}[/] opened")

        say("The agent proves who is asking: a code mailed to the address on file, read back "
            "to the agent, and a photo ID check")
        agent = await agent_principal(client.call, AGENT, AGENT_PASSWORD, authenticator)  # + a code
        proven = await prove_by_mail_and_id(
            client, mail_folder, number, agent,
            lambda attempt: eventually("the proof and its mail", attempt,
                                       retry_on=(NotAllowed, NotFound)),
        )
        console.print(f"    identity proof: {proven['policy']['points']} of "
                      f"{proven['policy']['needed']} points (code not shown)")

        say("The agent approves the reset: MFA methods revoked, password reset")
        approved = await eventually(
            "ticketing to learn of the user's account",
            lambda: client.call("ticketing", "approve", ticket=number, principal=agent),
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

        if method != "app":  # push, sms, call: rekey/demo/methods.py
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
            seed = witness["totp_seed"] = totp.parse_uri(registration["otpauth_uri"]).secret
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
        # Only the auditor's bus identity may read a history.
        auditor = await connect(settings, "auditor", name="rekey-demo-audit", attempts=3)
        try:
            print_history(console, await history_over_bus(RekeyClient(auditor), username))
        finally:
            await auditor.close()
        console.print("[bold green]Demo complete: every step succeeded.[/]")
        return 0
    except (RekeyError, DemoFailed) as exc:
        console.print(f"[bold red]Demo failed at step {step}:[/] {escape(str(exc))}")
        return 1
    finally:
        await nc.close()
