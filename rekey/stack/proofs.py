"""The identity proofs a person and an agent run by hand, scripted for the demo, the
benchmarks and the tests: a code mailed to the address on file, read back from the caught mail
(1 point), and an ID check (1 point), which meet the default policy for an ordinary account."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shared.caught import latest_manager_link, latest_proof_code
from shared.client import RekeyClient

Wait = Callable[[Callable[[], Any]], Awaitable[Any]]


async def prove_by_mail_and_id(
    client: RekeyClient, mail_folder: Path, ticket: str, principal: str, wait: Wait,
    note: str = "Photo ID checked at the service desk; it matches the user.",
) -> dict[str, Any]:
    """Start the mailed-code proof, type the code the mail sink caught, attest an ID check;
    ``wait`` retries an attempt until it answers (each caller has its own patience)."""
    started = await wait(lambda: client.call("ticketing", "start_proof", ticket=ticket,
                                             principal=principal, kind="email_code"))
    number = started["ticket_number"]
    code = await wait(lambda: asyncio.to_thread(latest_proof_code, mail_folder, number))
    await client.call("ticketing", "answer_proof_code", ticket=ticket, principal=principal,
                      proof_id=started["proof_id"], code=code)
    return dict(await client.call("ticketing", "attest_id_check", ticket=ticket,
                                  principal=principal, note=note))


async def prove_by_manager(client: RekeyClient, mail_folder: Path, ticket: str, principal: str,
                           wait: Wait) -> dict[str, Any]:
    """Start the manager's proof and approve from the link the mail sink caught, as the manager
    on file would (2 points: with the two above, enough for a privileged account)."""
    started = await wait(lambda: client.call("ticketing", "start_proof", ticket=ticket,
                                             principal=principal, kind="manager_approval"))
    number = started["ticket_number"]
    link = await wait(lambda: asyncio.to_thread(latest_manager_link, mail_folder, number))
    await client.call("ticketing", "manager_decide", token=link.rsplit("/", 1)[1], approve=True)
    return dict(await client.call("ticketing", "show", ticket=ticket, principal=principal))
