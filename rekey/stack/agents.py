"""A help-desk agent as the demo, benchmarks and tests bring one in: invited by the operator,
the invitation read from the mail it arrived in, redeemed with a password and an authenticator
app (pyotp standing in for the phone), then signed in with the password and a fresh code.

Nothing here is a way around the product: it does what an agent does, through the services'
own endpoints, with what the agent has (the mail, the app's key).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyotp

from services.verification.totp import PERIOD, parse_uri
from shared.caught import list_mails
from shared.clock import SYSTEM_CLOCK, Clock
from shared.principals import operator_principal
from shared.settings import Settings
from shared.waiting import eventually

Call = Callable[..., Awaitable[Any]]  # (service, command, **payload) -> the reply
INVITATION_LINK = re.compile(r"/console/invite/([A-Za-z0-9_\-]+)")
INVITATION_SUBJECT = "help-desk invitation"


class AuthenticatorApp:
    """An agent's authenticator app: each code is used once, as credentials demands, so a
    second sign-in within one 30-second step uses the next step's code (accepted one step
    early), and a third waits for the step to come.

    It reads the time from ``clock``: a test running credentials on a ``ManualClock`` gives
    the app the same one, and the wait for the next step then passes at once."""

    def __init__(self, seed: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.seed = seed
        self.clock = clock
        self.last_step = int(clock.time() // PERIOD)  # the redeeming code's step is spent

    def wait(self) -> float:
        """Seconds until the next unused code is accepted (0: now)."""
        step = self.last_step + 1
        return max(0.0, (step - 1) * PERIOD - self.clock.time())

    def code(self) -> str:
        """The next unused code; call when :meth:`wait` is 0 (see :meth:`next_code`)."""
        step = max(int(self.clock.time() // PERIOD), self.last_step + 1)
        self.last_step = step
        return pyotp.TOTP(self.seed).at(step * PERIOD)

    def code_when_due(self) -> str:
        """:meth:`next_code` for a caller without an event loop (on the system clock)."""
        time.sleep(self.wait())
        return self.code()

    async def next_code(self) -> str:
        await self.clock.sleep(self.wait())
        return self.code()


def invitation_mails(mail_folder: Path, email: str) -> int:
    return sum(1 for m in list_mails(mail_folder)
               if email.lower() in (t.lower() for t in m.to) and INVITATION_SUBJECT in m.subject)


async def invitation_secret(mail_folder: Path, email: str, seen: int) -> str:
    """The secret of the invitation mailed after the ``seen`` earlier ones."""

    def arrived() -> str | None:
        mails = [m for m in list_mails(mail_folder)
                 if email.lower() in (t.lower() for t in m.to) and INVITATION_SUBJECT in m.subject]
        if len(mails) <= seen:
            return None
        found = INVITATION_LINK.search(mails[-1].body)
        return found.group(1) if found else None

    return str(await eventually(arrived, what=f"the invitation mail to {email}", timeout=30))


async def invite_with_app(call: Call, settings: Settings, mail_folder: Path, username: str,
                          email: str, display_name: str, password: str,
                          clock: Clock = SYSTEM_CLOCK) -> AuthenticatorApp:
    """Invite (or re-invite) an agent and redeem the invitation with an authenticator app
    reading ``clock`` (the clock credentials runs on)."""
    seen = invitation_mails(mail_folder, email)
    await call("credentials", "invite_agent", username=username, email=email,
               display_name=display_name, principal=operator_principal(settings))
    secret = await invitation_secret(mail_folder, email, seen)
    begun = await call("credentials", "begin_invitation", invitation=secret, factor_type="totp")
    app = AuthenticatorApp(parse_uri(begun["otpauth_uri"]).secret, clock)
    await call("credentials", "redeem_invitation", invitation=secret, password=password,
               factor_type="totp", code=pyotp.TOTP(app.seed).at(clock.time()))
    app.last_step = int(clock.time() // PERIOD)
    return app


async def agent_principal(call: Call, username: str, password: str, app: AuthenticatorApp,
                          channel: str = "cli") -> str:
    """Sign in as an agent does: the password, then a code from the app."""
    answer = await call("credentials", "sign_in", username=username, password=password,
                        channel=channel)
    second = answer["second_factor"]
    code = await app.next_code()
    signed = await call("credentials", "agent_totp_verify", token=second["token"], code=code,
                        channel=channel)
    return str(signed["principal"])
