"""The test tooling itself: the embedded NATS server and the mail sink do what they claim."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import aiosmtplib
import psycopg
import pytest
from nats.js.api import StreamConfig

from rekey.stack.inprocess import empty_database
from rekey.stack.mailsink import MailSink
from rekey.stack.natsd import EmbeddedNats, NatsServerError
from rekey.stack.ports import free_port
from shared.caught import latest_mail_to, list_mails
from tests.conftest import connect_as

if TYPE_CHECKING:
    from tests.conftest import SettingsFactory, StoreChoice


async def test_embedded_nats_starts_with_jetstream_enabled(nats_server: EmbeddedNats) -> None:
    nc = await connect_as(nats_server)
    try:
        info = await nc.jetstream().account_info()
        assert info.streams == 0
    finally:
        await nc.close()


async def test_messages_acknowledged_by_jetstream_survive_a_server_restart(
    nats_server: EmbeddedNats,
) -> None:
    nc = await connect_as(nats_server)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="TOOLING", subjects=["tooling.>"]))
        acks = [await js.publish("tooling.event", f"event {n}".encode()) for n in range(3)]
        assert [ack.seq for ack in acks] == [1, 2, 3]
    finally:
        await nc.close()

    nats_server.restart()

    nc = await connect_as(nats_server)
    try:
        js = nc.jetstream()
        stored = [await js.get_msg("TOOLING", seq) for seq in (1, 2, 3)]
        assert [message.data for message in stored] == [b"event 0", b"event 1", b"event 2"]
    finally:
        await nc.close()


def test_restart_keeps_the_same_url_and_store(nats_server: EmbeddedNats) -> None:
    url, store = nats_server.url, nats_server.store_dir
    nats_server.restart()
    assert nats_server.running
    assert (nats_server.url, nats_server.store_dir) == (url, store)


def test_a_port_already_in_use_is_a_clear_error(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    clash = EmbeddedNats(port=nats_server.port, store_dir=tmp_path / "other")
    with pytest.raises(NatsServerError, match="already listens"):
        clash.start()


async def test_mail_sink_stores_a_sent_message_and_finds_it_with_its_decoded_body(
    mail_sink: MailSink,
) -> None:
    message = EmailMessage()
    message["From"] = "Rekey Help Desk <helpdesk@rekey.local>"
    message["To"] = "Ada Lovelace <Ada@Example.org>"
    message["Subject"] = "[secure] Your temporary password"
    # Non-ASCII forces a transfer encoding, so the body must really be decoded.
    message.set_content("Grüße, Ada.\nYour temporary password is: Xq7-pLm2\n")

    await aiosmtplib.send(message, hostname="127.0.0.1", port=mail_sink.port)

    mail = latest_mail_to(mail_sink.folder, "ada@example.org", subject_contains="temporary")
    assert mail is not None
    assert mail.sender == "Rekey Help Desk <helpdesk@rekey.local>"
    assert mail.to == ["Ada@Example.org"]
    assert mail.subject == "[secure] Your temporary password"
    assert mail.body == "Grüße, Ada.\nYour temporary password is: Xq7-pLm2\n"
    assert mail.path.parent == mail_sink.folder
    assert latest_mail_to(mail_sink.folder, "ada@example.org", subject_contains="code") is None
    assert latest_mail_to(mail_sink.folder, "bob@example.org") is None


async def test_mail_sink_lists_mail_in_arrival_order_and_matches_bcc_recipients(
    mail_sink: MailSink,
) -> None:
    for n in range(3):
        message = EmailMessage()
        message["From"] = "helpdesk@rekey.local"
        message["To"] = "team@example.org"
        message["Subject"] = f"code {n}"
        message.set_content(f"Your code is {n}")
        await aiosmtplib.send(
            message,
            hostname="127.0.0.1",
            port=mail_sink.port,
            recipients=["team@example.org", "auditor@example.org"],
        )

    mails = list_mails(mail_sink.folder)
    assert [mail.subject for mail in mails] == ["code 0", "code 1", "code 2"]
    assert [mail.received_at for mail in mails] == sorted(mail.received_at for mail in mails)
    latest = latest_mail_to(mail_sink.folder, "auditor@example.org")
    assert latest is not None
    assert latest.body == "Your code is 2\n"
    assert not list(mail_sink.folder.glob(".*")), "no temporary files are left behind"


async def test_mail_sink_runs_in_the_foreground_until_sigterm(tmp_path: Path) -> None:
    port, folder = free_port(), tmp_path / "mail"
    command = [sys.executable, "-m", "rekey.stack.mailsink", "--folder", str(folder)]
    process = subprocess.Popen([*command, "--port", str(port)])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, "the mail sink exited while starting"
                assert time.monotonic() < deadline, "the mail sink did not start"
                time.sleep(0.05)
        message = EmailMessage()
        message["From"] = "helpdesk@rekey.local"
        message["To"] = "ada@example.org"
        message["Subject"] = "hello"
        message.set_content("hi")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
    assert code == 0
    assert [mail.subject for mail in list_mails(folder)] == ["hello"]


def test_postgres_db_is_a_fresh_empty_database(postgres_db: str) -> None:
    assert postgres_db.startswith("rekey_test_")
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={postgres_db}") as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_a_database_given_back_is_as_empty_as_a_new_one_for_the_next_test(postgres_db: str) -> None:
    info = f"host=127.0.0.1 port=5432 user=postgres dbname={postgres_db}"
    held = psycopg.connect(info, autocommit=True)  # a connection the test left open
    held.execute("CREATE SCHEMA ticketing")
    held.execute("CREATE TABLE ticketing.stored_events (id bigserial PRIMARY KEY)")
    held.execute("INSERT INTO ticketing.stored_events DEFAULT VALUES")
    held.execute("CREATE TABLE public.leftover (id int)")

    assert empty_database(postgres_db)
    with pytest.raises(psycopg.OperationalError):  # ended by the server
        held.execute("SELECT 1")
    with psycopg.connect(info, autocommit=True) as conn:
        schemas = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
                               " AND nspname <> 'information_schema'").fetchall()
        assert schemas == [("public",)]
        assert conn.execute("SELECT count(*) FROM information_schema.tables"
                            " WHERE table_schema = 'public'").fetchone() == (0,)
        # public as PostgreSQL 15 makes it: owned by the database owner, usable by everyone
        assert conn.execute("SELECT pg_get_userbyid(nspowner), has_schema_privilege('public', "
                            "'public', 'USAGE') FROM pg_namespace WHERE nspname = 'public'"
                            ).fetchone() == ("pg_database_owner", True)


def test_settings_factory_isolates_data_and_keys_per_store(
    settings_factory: SettingsFactory, store: StoreChoice, tmp_path: Path
) -> None:
    first = settings_factory("nats://127.0.0.1:1", store.name, store.postgres_db, smtp_port=2525)
    second = settings_factory("nats://127.0.0.1:1", store.name, store.postgres_db)
    assert first.data_dir == tmp_path / "data"
    assert first.smtp_port == 2525
    assert len(first.vault_key_bytes) == 32
    assert first.vault_key_bytes != second.vault_key_bytes
    env = first.store_env("ticketing")
    if store.name == "postgres":
        assert env["POSTGRES_DBNAME"] == store.postgres_db
    else:
        assert env["SQLITE_DBNAME"] == str(tmp_path / "data" / "ticketing.sqlite")
