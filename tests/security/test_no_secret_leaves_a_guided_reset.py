"""Whatever happens, no secret (password, temporary password, code, seed, token) is in an
event, a log line, a history or an export, nor on the bus in clear. An attacker who reads the
logs (a log collector, a support bundle), the event stream (anyone with the inspector's or a
consumer's rights) or an auditor's export finds none of the secrets of a whole guided reset.

The reset runs on the real services and bus with every log record of every service captured
as the processes write them (JSON lines, at DEBUG); each secret the person and the agent saw
is then looked for in every log line, every event body, every history, the audit service's
export, the raw bytes of every message on the event stream, and the ticket as the agent who
approved it sees it (a phished agent must never see a credential).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pyotp
import pytest
from pythonjsonlogger.json import JsonFormatter

from services.verification import totp
from shared.caught import latest_mail_to, latest_proof_code
from shared.client import RekeyClient
from shared.contracts.envelope import STREAM_NAME
from shared.settings import SERVICES
from tests.conftest import connect_as
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, start_all

pytestmark = pytest.mark.security
TEMPORARY = re.compile(r"Temporary password: (\S+)")
NEW_PASSWORD = "a brand new and long passphrase"


@contextmanager
def every_log_line() -> Iterator[io.StringIO]:
    """Every record any logger emits, formatted as the processes write them (JSON)."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _stream_bytes(system: System) -> bytes:
    inspector = await connect_as(system.nats)
    try:
        js = inspector.jetstream()
        last = (await js.stream_info(STREAM_NAME)).state.last_seq
        found = b""
        for seq in range(1, last + 1):
            try:
                message = await js.get_msg(STREAM_NAME, seq)
            except Exception:  # noqa: S112 - a sequence with no message (deleted): nothing to read
                continue
            found += (message.data or b"") + json.dumps(message.headers or {}).encode()
        return found
    finally:
        await inspector.close()


async def _export(system: System) -> str:
    auditor = await connect_as(system.nats, "auditor")
    try:
        client = RekeyClient(auditor, timeout=10)
        return json.dumps(await client.call("audit", "events", upto=10**9))
    finally:
        await auditor.close()


async def test_no_secret_of_a_guided_reset_is_in_a_log_line_event_history_export_or_the_stream(
    system: System,
) -> None:
    with every_log_line() as logs:
        await system.start("audit")
        await start_all(system)
        await system.provision()
        principal = system.principal()
        number = await system.approved_ticket()
        proof_code = latest_proof_code(system.mail.folder, number)
        mail = await eventually(lambda: latest_mail_to(system.mail.folder, USER_EMAIL, "temporary"))
        temporary = TEMPORARY.search(mail.body).group(1)  # type: ignore[union-attr]
        first = await system.call("credentials", "sign_in", username=USER, password=temporary)
        password_token = (await system.call(
            "credentials", "change_password", username=USER, change_token=first["change_token"],
            new_password=NEW_PASSWORD))["token"]
        registration = await system.call("verification", "start_app_registration",
                                         username=USER, token=password_token)
        seed = totp.parse_uri(registration["otpauth_uri"]).secret
        code = pyotp.TOTP(seed).now()
        verified = await system.call("verification", "verify_code", username=USER,
                                     token=password_token, method_id=registration["method_id"],
                                     code=code)
        mfa = verified["mfa_token"]
        agreement = await system.call("consent", "present", username=USER, token=mfa)
        await system.call("consent", "accept", username=USER, token=mfa,
                          version=agreement["version"], content_hash=agreement["content_hash"],
                          accepted=True, confirmed=True)
        await eventually(lambda: "TicketClosed" in system.event_names("ticketing"),
                         what="the ticket to close")
        await eventually(lambda: system.app("audit").projection.count_all() >= sum(
            len(list(system.app(s).envelopes())) for s in SERVICES),
            what="the audit service to hold every event")
        histories = [await system.call(s, "history", username=USER) for s in SERVICES]
        agents_view = [await system.call("ticketing", "show", ticket=number, principal=principal),
                       await system.call("ticketing", "list", principal=principal)]
        export = await _export(system)
        stream = await _stream_bytes(system)
    events = "".join(e.model_dump_json() for s in SERVICES for e in system.app(s).envelopes())

    secrets = {"temporary password": temporary, "new password": NEW_PASSWORD,
               "change token": first["change_token"], "password token": password_token,
               "MFA token": mfa, "agent principal": principal, "TOTP seed": seed,
               "secret key shown": registration["secret_key"].replace(" ", "")}
    codes = {"TOTP code": code, "identity proof code": proof_code}
    places = {"log lines": logs.getvalue(), "event bodies": events,
              "histories": json.dumps(histories), "export": export,
              "what an agent is shown": json.dumps(agents_view),
              "the event stream": stream.decode(errors="replace")}
    assert "PasswordChanged" in events and "PasswordChanged" in export  # read, so it means something
    assert "TicketClosed" in places["the event stream"]
    found = [f"{name} in {where}" for name, secret in secrets.items() for where, text in
             places.items() if secret and (secret in text or secret.lower() in text.lower())]
    found += [f"{name} in {where}" for name, value in codes.items() for where, text in
              places.items() if value and re.search(rf"(?<!\d){value}(?!\d)", text)]
    assert found == []
