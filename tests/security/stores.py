"""Real stores after real resets, for the tests of the evidence around them: two users reset
their passwords through the running services, every service signs a tree head after, and
`rekey audit verify` as the operator runs it (`after_resets` is a fixture of the security
tests, see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from rekey.cli.app import app as rekey_cli
from services.credentials.domain import Account
from shared.errors import IntegrityFailed
from shared.settings import SERVICES
from tests.integration.conftest import USER, System, eventually, start_all
from tests.security.insider import Insider

OTHER = "sam.other@masspasrr.org"
OTHER_EMAIL = "sam.other@example.org"
NEW_PASSWORD = "a brand new and long passphrase"
OTHER_PASSWORD = "another long passphrase of sam"
TEMPORARY = re.compile(r"Temporary password: (\S+)")


async def _reset(system: System, username: str, email: str, password: str) -> None:
    from shared.caught import latest_mail_to

    await system.approved_ticket(username) if username == USER else await _other_ticket(system)
    mail = await eventually(lambda: latest_mail_to(system.mail.folder, email, "temporary"),
                            what=f"the temporary password of {username}")
    temporary = TEMPORARY.search(mail.body).group(1)  # type: ignore[union-attr]
    await system.call("credentials", "change_password", username=username,
                      current_password=temporary, new_password=password)


async def _other_ticket(system: System) -> None:
    ticket = await system.call("ticketing", "request_reset", name="Sam Other", email=OTHER_EMAIL,
                               username=OTHER, reason="lost phone")
    await system.prove_identity(ticket["ticket_number"])
    await system.call("ticketing", "approve", ticket=ticket["ticket_number"],
                      principal=system.principal())


@pytest.fixture
async def after_resets(system: System) -> AsyncIterator[System]:
    """Two users reset their passwords for real; every service signs a tree head after."""
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username=OTHER, email=OTHER_EMAIL,
                      display_name="Sam Other", principal=system.operator())
    await eventually(lambda: system._ticketing_knows(OTHER))
    await _reset(system, USER, "jane.doe@example.org", NEW_PASSWORD)
    await _reset(system, OTHER, OTHER_EMAIL, OTHER_PASSWORD)
    await eventually(lambda: system.event_names("verification").count("MethodsRevoked") >= 2)
    system.signed = {service: (await system.call(service, "tree_head"))["tree_size"]  # type: ignore[attr-defined]
                     for service in SERVICES}
    yield system


def verify(system: System, *args: str) -> tuple[int, str]:
    """`rekey audit verify` as the operator runs it on the machine of the stores."""
    s = system.settings
    env = {"REKEY_STORE": s.store, "REKEY_POSTGRES_DB": s.postgres_db,
           "REKEY_CIPHER_KEY": s.cipher_key.get_secret_value(),
           "REKEY_VAULT_KEY": s.vault_key.get_secret_value(),
           "REKEY_TOKEN_KEY": s.token_key.get_secret_value(),
           "REKEY_NATS_KEYS_DIR": s.nats_keys_dir}
    result = CliRunner().invoke(rekey_cli, ["audit", "verify", "--data-dir", str(s.data_dir),
                                            *args], env=env)
    # A crash is not a verdict: it exits 1 too, which would pass for "tampered".
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


def named(service: str, notification_id: int, user: str) -> str:
    return f"{service} notification id {notification_id} (user {user})"


async def sign_in_refused_and_row_named(system: System, password: str, row: Any) -> str:
    """The user cannot sign in with the password the insider planted, nothing is recorded,
    and the check names the planted row, credentials and the user; the check's output."""
    def users_rows() -> list[Any]:  # others' rows may still arrive (notices being sent)
        return [r for r in Insider(system.settings, "credentials").rows()
                if UUID(str(r.originator_id)) == account(USER)]

    before = users_rows()
    with pytest.raises(IntegrityFailed):
        await system.call("credentials", "sign_in", username=USER, password=password)
    assert users_rows() == before
    code, out = verify(system)
    assert code == 1
    assert named("credentials", row.notification_id, USER) in out
    return out


def account(username: str) -> UUID:
    return Account.id_for(username)


