"""Real stores after real resets, for the tests of the evidence around them: two users reset
their passwords through the running services, every service signs a tree head after (once per
worker and store; each test runs on its own copy), and `rekey audit verify` as the operator
runs it (`after_resets` is a fixture of the security tests, see conftest.py)."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from rekey.cli.app import app as rekey_cli
from rekey.stack.buskeys import BusKeys
from rekey.stack.inprocess import copy_database, scratch_settings
from rekey.stack.mailsink import MailSink
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from services.credentials.domain import Account
from shared.errors import IntegrityFailed
from shared.settings import SERVICES, Settings
from tests.conftest import INSPECTOR, ScratchDatabases, StoreChoice, without_rekey_variables
from tests.integration.conftest import USER, System, connected, eventually, start_all
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


@dataclass(frozen=True)
class ResetStores:
    """What two real resets left behind (stores, heads, bus keys, JetStream, mail) in ``folder``,
    with the settings that read it and the tree sizes the services signed."""

    folder: Path
    settings: Settings
    signed: dict[str, int]


@pytest.fixture(scope="session")
def reset_stores() -> dict[str, ResetStores]:
    """This worker's :class:`ResetStores`, one per store, made by the first test that asks."""
    return {}


async def _the_resets(system: System) -> dict[str, int]:
    """Two users reset their passwords for real; every service signs a tree head after."""
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username=OTHER, email=OTHER_EMAIL,
                      display_name="Sam Other", principal=system.operator())
    await eventually(lambda: system._ticketing_knows(OTHER))
    await _reset(system, USER, "jane.doe@example.org", NEW_PASSWORD)
    await _reset(system, OTHER, OTHER_EMAIL, OTHER_PASSWORD)
    await eventually(lambda: system.event_names("verification").count("MethodsRevoked") >= 2)
    return await _signed_once_idle(system)


async def _signed_once_idle(system: System) -> dict[str, int]:
    """Every service signs a tree head once nothing more is on its way (an event recorded after
    its head would be signed by the next start: a copy's head would then be newer than this)."""
    await eventually(system.caught_up, what="every service idle")
    return {service: (await system.call(service, "tree_head"))["tree_size"]
            for service in SERVICES}


@contextlib.asynccontextmanager
async def _running_on(folder: Path, settings: Callable[[EmbeddedNats, MailSink], Settings]
                      ) -> AsyncIterator[System]:
    """A nats-server, a mail sink and a connected System on the bus keys, JetStream store and
    mail folder in ``folder``; every service stopped, and the server, after."""
    nats = EmbeddedNats(port=free_port(), store_dir=folder / "nats",
                        keys=BusKeys.create(folder / "bus"), extra_identities=[INSPECTOR])
    mail = MailSink(folder / "mail", port=free_port())
    with contextlib.ExitStack() as held:
        nats.start()
        held.callback(nats.stop)
        mail.start()
        held.callback(mail.stop)
        async with connected(System(settings(nats, mail), nats, mail)) as system:
            yield system


async def _made(store: StoreChoice, folder: Path, databases: ScratchDatabases) -> ResetStores:
    database = databases.take() if store.name == "postgres" else None  # dropped at the end

    def settings(nats: EmbeddedNats, mail: MailSink) -> Settings:
        return scratch_settings(folder / "data", nats, store.name, database, mail.port)

    async with _running_on(folder, settings) as system:
        signed = await _the_resets(system)
    return ResetStores(folder, system.settings, signed)


@pytest.fixture
async def after_resets(store: StoreChoice, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch, scratch_databases: ScratchDatabases,
                       reset_stores: dict[str, ResetStores]) -> AsyncIterator[System]:
    """The services running on a copy of the stores two real resets left (`_the_resets`).

    The resets run once per worker and store, through the running services as ever; each test
    then gets its own byte-for-byte copy (folders, database, JetStream) and its own nats-server
    and mail sink, so what one test tampers with no other sees. Running the resets for every
    test took 150 s of the suite's worker time for the tampering tests alone.
    """
    without_rekey_variables(monkeypatch)
    if store.name not in reset_stores:
        reset_stores[store.name] = await _made(
            store, tmp_path_factory.mktemp(f"after-resets-{store.name}"), scratch_databases)
    made = reset_stores[store.name]
    folder = tmp_path / "after-resets"
    shutil.copytree(made.folder, folder, symlinks=True)
    if store.postgres_db is not None:
        copy_database(made.settings.postgres_db, store.postgres_db)

    def settings(nats: EmbeddedNats, mail: MailSink) -> Settings:
        return made.settings.model_copy(update={
            **nats.client_settings(), "data_dir": folder / "data", "smtp_port": mail.port,
            "postgres_db": store.postgres_db or made.settings.postgres_db})

    async with _running_on(folder, settings) as system:
        await start_all(system)
        # Signed again on the copy: what a start-up sweep records is under a head too.
        system.signed = await _signed_once_idle(system)  # type: ignore[attr-defined]
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


