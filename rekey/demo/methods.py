"""The demo's "Keep your account secure" paths other than a plain code: push, text, call.

Each uses what a person has: the reference authenticator (a file in a temporary folder: it
holds the phone's secrets, so never in the data folder), the texts the local Twilio server
keeps, and the sign-in screen's answers.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from rekey.authenticator.app import Authenticator
from rekey.demo.failures import DemoFailed, eventually
from services.verification import totp
from shared.caught import latest_text_to
from shared.client import RekeyClient
from shared.settings import Settings

METHODS = ("app", "push", "sms", "call")
CODE = re.compile(r"^(\d{6}) ")




async def enroll(
    client: RekeyClient, settings: Settings, username: str, token: str, method: str,
    say: Callable[[str], None], console: Console, witness: dict[str, str],
) -> dict[str, Any]:
    """Set up ``method`` for the user; returns the verified answer (with ``mfa_token``)."""
    if method == "push":
        return await _push(client, username, token, say, console, witness)
    if method in ("sms", "call"):
        return await _phone(client, settings, username, token, method, say, console, witness)
    raise DemoFailed(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")


async def _push(client: RekeyClient, username: str, token: str, say: Callable[[str], None],
                console: Console, witness: dict[str, str]) -> dict[str, Any]:
    say('"Keep your account secure": Microsoft Authenticator, "Scan the QR code"')
    registration = await client.call("verification", "start_app_registration", username=username,
                                     token=token)
    witness["totp_seed"] = totp.parse_uri(registration["otpauth_uri"]).secret
    console.print(f"    QR code ({len(registration['qr_svg'])} bytes of SVG) for "
                  f"{registration['issuer']}: {registration['account_name']}")
    with tempfile.TemporaryDirectory(prefix="rekey-phone-") as phone_dir:
        phone = Authenticator(Path(phone_dir) / "authenticator.json", client)
        say("The phone's authenticator scans it and activates notifications (an Ed25519 key)")
        account = await phone.activate(registration["otpauth_uri"], "demo phone")
        console.print(f"    device {account.device_id} activated")

        say("\"Let's try it out\": the web shows a number and notifies the app")
        shown = await client.call("verification", "start_push", username=username, token=token,
                                  location="Worcester, MA, United States (demo)")
        console.print(f"    the web shows [b]{shown['number']}[/]")
        [pending] = await eventually("the request to reach the phone", phone.pending, retry_on=())
        console.print(f"    the phone shows: {pending['application']}, {pending['account']}, "
                      f"from {pending['location']} at {pending['requested_at']}", markup=False)

        say("The person types the number into the app and approves")
        await phone.approve(pending["challenge_id"], shown["number"])
    status = await client.call("verification", "challenge_status", username=username, token=token,
                               challenge_id=shown["challenge_id"])
    console.print(f'    "{status["message"]}"')
    console.print(f'    "Success! ... Default sign-in method: {status["default_label"]}"')
    return dict(status)


async def _phone(client: RekeyClient, settings: Settings, username: str, token: str, method: str,
                 say: Callable[[str], None], console: Console,
                 witness: dict[str, str]) -> dict[str, Any]:
    say('"I want to set up a different method": Phone, United States (+1), '
        + ('"Text me a code"' if method == "sms" else '"Call me"'))
    number = f"(508) 555-01{secrets.randbelow(100):02d}"
    started = await client.call("verification", "start_phone_registration", username=username,
                                token=token, number=number, country="US", channel=method)
    console.print(f"    {started['prompt']}")
    console.print(f"    ({started['note']})")
    if method == "sms":
        e164 = "+1508" + re.sub(r"\D", "", number)[3:]
        folder = Path(settings.data_dir) / "twilio"
        text = await eventually("the text", lambda: latest_text_to(folder, e164), retry_on=())
        code = witness["sms_code"] = CODE.match(text.body).group(1)  # type: ignore[union-attr]
        say("The text arrives; the person types the code")
        verified = await client.call("verification", "verify_code", username=username, token=token,
                                     method_id=started["method_id"], code=code)
        console.print("    code accepted")
    else:
        say('The phone rings; the person answers and presses "#"')

        async def answered() -> dict[str, Any] | None:
            status = await client.call("verification", "challenge_status", username=username,
                                       token=token, challenge_id=started["challenge_id"])
            if status["state"] in ("failed", "expired", "superseded"):
                raise DemoFailed(f"the call ended as {status['state']}")
            return status if status["state"] == "verified" else None

        verified = await eventually("the call to be answered", answered, retry_on=())
        console.print(f'    "{verified["message"]}"')
    console.print(f'    "Success! ... Default sign-in method: {verified["default_label"]}"')
    return dict(verified)
