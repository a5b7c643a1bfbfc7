"""Erasure: `rekey audit erase USER` destroys the user's data key in every service, so every
stored event of theirs becomes unreadable (to the services, and to an insider holding every
store key), the erasure is recorded, others are untouched, and the bindings and Merkle proofs
still verify. Only the operator may erase."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from rekey.cli.app import app as rekey_cli
from services.audit.projection import Projection
from services.credentials.domain import Account
from shared.contracts import EventEnvelope
from shared.errors import AuthenticationFailed, DataErased, NotAllowed
from shared.runtime import HistoryQuery
from shared.settings import PROCESSES, SERVICES
from tests.integration.conftest import USER, System, eventually, start_all
from tests.security.insider import Insider
from tests.security.stores import NEW_PASSWORD, OTHER, OTHER_PASSWORD, verify

pytestmark = pytest.mark.security


def erase(system: System, username: str) -> tuple[int, str]:
    s = system.settings
    env = {"REKEY_NATS_URL": s.nats_url, "REKEY_NATS_KEYS_DIR": s.nats_keys_dir,
           "REKEY_NATS_CA_FILE": s.nats_ca_file}
    result = CliRunner().invoke(rekey_cli, ["audit", "erase", username, "--yes", "--data-dir",
                                            str(s.data_dir)], env=env)
    return result.exit_code, result.output


def readable(insider: Insider, row) -> bool:
    try:
        insider.plaintext(row)
    except Exception:
        return False
    return True


async def test_an_erased_user_is_unreadable_everywhere_and_the_proofs_still_verify(
    after_resets: System,
) -> None:
    await after_resets.start("audit")  # its copy of the public events goes too
    await eventually(lambda: after_resets.app("audit").projection.known(USER),
                     what="the audit service to hold the user's events")
    code, out = await asyncio.to_thread(erase, after_resets, USER)
    assert code == 0, out
    assert all(service in out for service in PROCESSES)
    audit = after_resets.app("audit")
    assert not audit.projection.known(USER)
    with pytest.raises(DataErased):
        await after_resets.call("audit", "history", username=USER)
    assert await after_resets.call("audit", "history", username=OTHER)

    with pytest.raises(DataErased):
        await after_resets.call("credentials", "sign_in", username=USER, password=NEW_PASSWORD)
    await after_resets.call("credentials", "sign_in", username=OTHER, password=OTHER_PASSWORD)
    mine = Insider(after_resets.settings, "credentials").row("AccountRegistered",
                                                              Account.id_for(USER))
    theirs = Insider(after_resets.settings, "credentials").row("AccountRegistered",
                                                                Account.id_for(OTHER))
    insider = Insider(after_resets.settings, "credentials")
    assert not readable(insider, mine)  # even with the cipher key and the vault key
    assert readable(insider, theirs)
    for service in SERVICES:
        names = [r.name for r in Insider(after_resets.settings, service).rows()]
        assert "UserDataErased" in names, service

    for service in SERVICES:
        await after_resets.call(service, "tree_head")
    code, out = verify(after_resets)
    assert code == 0, out
    assert "rows belong to erased users" in out


async def test_only_the_operator_can_erase_a_user(after_resets: System) -> None:
    before = Insider(after_resets.settings, "credentials").rows()
    for principal in (after_resets.principal(), "not a principal"):
        with pytest.raises((AuthenticationFailed, NotAllowed)):
            await after_resets.call("credentials", "erase_user", username=USER,
                                    principal=principal)
    assert Insider(after_resets.settings, "credentials").rows() == before
    await after_resets.call("credentials", "sign_in", username=USER, password=NEW_PASSWORD)


# --- the stream: an erased user's public events leave it too ---------------------------------
PERSONAL = (USER, "jane.doe@example.org", "Jane Doe")  # username, e-mail, display name


async def stream_messages(system: System) -> dict[int, bytes]:
    """Every message the event stream holds now, by stream sequence."""
    from nats.js.errors import NotFoundError

    from shared.contracts.envelope import STREAM_NAME

    js = system._nc.jetstream()
    state = (await js.stream_info(STREAM_NAME)).state
    held: dict[int, bytes] = {}
    for seq in range(state.first_seq, state.last_seq + 1):
        try:
            held[seq] = (await js.get_msg(STREAM_NAME, seq)).data or b""
        except NotFoundError:
            continue
    return held


def about(messages: dict[int, bytes], markers: tuple[str, ...]) -> dict[int, bytes]:
    return {seq: data for seq, data in messages.items()
            if any(m.encode() in data for m in markers)}


async def consumed_everything(system: System) -> bool:
    from nats.js.errors import NotFoundError

    from shared.contracts.envelope import STREAM_NAME

    try:
        info = await system._nc.jetstream().consumer_info(STREAM_NAME, "audit")
    except NotFoundError:  # not made yet
        return False
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_an_erased_users_events_leave_the_stream_and_no_loss_is_reported(
    after_resets: System,
) -> None:
    system = after_resets
    await system.start("audit")
    await eventually(lambda: consumed_everything(system), what="the audit service to catch up")
    before = await stream_messages(system)
    assert about(before, PERSONAL), "the user's public events are on the stream in clear"
    others = about(before, (OTHER,))
    assert others

    code, out = await asyncio.to_thread(erase, system, USER)
    assert code == 0, out

    async def gone() -> bool:
        return not about(await stream_messages(system), PERSONAL)

    await eventually(gone, what="the erased user's messages to leave the stream")
    after = await stream_messages(system)
    assert about(after, (OTHER,)) == others  # every other user's message untouched
    assert set(before) - set(after) == set(about(before, PERSONAL))  # and nothing else went

    for service in SERVICES:  # `rekey status`: a deleted message is not a lost one
        health = await system.call(service, "health")
        assert health["gap"] == 0, (service, health)

    # consumers go on: a new event of another user is consumed and recorded
    recorded = len(system.app("audit").history(OTHER))
    await system.call("credentials", "sign_in", username=OTHER, password=OTHER_PASSWORD)
    await eventually(lambda: len(system.app("audit").history(OTHER)) > recorded,
                     what="the audit service to record the other user's sign-in")

    # `rekey repair republish` still works, and publishes nothing of the erased user
    for service in SERVICES:
        done = await system.call(service, "republish", start=1, limit=5000, run="after-erasure")
        assert done["published"] >= 0
    await eventually(lambda: consumed_everything(system), what="the republished copies consumed")
    assert not about(await stream_messages(system), PERSONAL)
    for service in SERVICES:
        assert (await system.call(service, "health"))["gap"] == 0


async def test_a_late_copy_of_an_erased_users_event_is_deleted_as_it_is_consumed(
    after_resets: System,
) -> None:
    """An event about the user consumed after the erasure (a relay that was behind, a copy
    published again) is tracked, never kept, and its message deleted; one already gone from
    the stream ("no message found") counts as done."""
    from shared.contracts import EventEnvelope

    system = after_resets
    await system.start("audit")
    await eventually(lambda: consumed_everything(system), what="the audit service to catch up")
    audit = system.app("audit")
    late = EventEnvelope.model_validate(
        next(e for e in audit.history_rows(HistoryQuery(username=USER))))
    code, out = await asyncio.to_thread(erase, system, USER)
    assert code == 0, out
    await eventually(lambda: not audit.projection.stream_to_delete(),
                     what="the erased user's messages deleted")

    gone_already = 10**9  # a stream sequence the stream does not hold
    copy = late.model_copy(update={"notification_id": late.notification_id + 10**6})
    assert not audit.record(copy, gone_already)  # tracked, not kept

    def deleted_at() -> object:  # the deleter may take it at once: read its row, not the queue
        with audit.recorder.datastore.transaction(commit=False) as c:
            c.execute(audit.projection.sql("SELECT deleted_at FROM {stream} WHERE stream_seq = ?"),
                      (gone_already,))
            row = c.fetchone()
        assert row is not None  # its message is noted for deletion
        return row["deleted_at"] if isinstance(row, dict) else row[0]

    await eventually(lambda: deleted_at() is not None, what="the late copy handled")
    assert not audit.projection.stream_to_delete()
    assert not audit.projection.known(USER)



async def test_an_audit_store_from_before_stream_sequences_were_noted_reads_them_back(
    after_resets: System,
) -> None:
    """Upgrading: the audit service consumed the user's events before it noted where they are
    on the stream; it reads the stream back, so the erasure still takes them off."""
    system = after_resets
    await system.start("audit")
    await eventually(lambda: consumed_everything(system), what="the audit service to catch up")
    audit = system.app("audit")
    with audit.recorder.datastore.transaction(commit=True) as c:  # as an older audit store
        c.execute(audit.projection.sql("DELETE FROM {stream}"))
        c.execute(audit.projection.sql("DELETE FROM {stream}_backfill"))
    await system.stop("audit")
    await system.start("audit")
    audit = system.app("audit")

    def noted() -> int:
        rows = audit.projection._select("SELECT COUNT(*) AS n FROM {stream}", [])
        return int(rows[0]["n"])

    held = await stream_messages(system)
    await eventually(lambda: noted() >= len(held), what="the stream read back")
    code, out = await asyncio.to_thread(erase, system, USER)
    assert code == 0, out

    async def gone() -> bool:
        return not about(await stream_messages(system), PERSONAL)

    await eventually(gone, what="the erased user's messages to leave the stream")
    assert about(await stream_messages(system), (OTHER,)) == about(held, (OTHER,))


class _PausedAfterTheErasedCheck:
    """A datastore whose transactions pause right after a recording's "is this user erased?"
    read, until ``go`` is set: the moment an erasure could slip in between check and insert."""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        self.checked = threading.Event()
        self.go = threading.Event()

    @contextlib.contextmanager
    def transaction(self, commit: bool) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield _Pausing(cursor, self)


class _Pausing:
    def __init__(self, cursor: Any, gate: _PausedAfterTheErasedCheck) -> None:
        self.cursor, self.gate = cursor, gate

    def execute(self, statement: str, *args: Any) -> Any:
        result = self.cursor.execute(statement, *args)
        if "user_digest" in statement and statement.lstrip().startswith("SELECT"):
            self.gate.checked.set()
            self.gate.go.wait(30)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def _waiting_on_a_lock(system: System) -> bool:
    """True once some PostgreSQL session of this test's database waits for a lock."""
    with psycopg.connect(host="127.0.0.1", dbname=system.settings.postgres_db, user="postgres",
                         autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d "
                           "ON d.oid = l.database WHERE d.datname = current_database() "
                           "AND NOT l.granted").fetchone()
        return bool(row and row[0])


async def test_an_event_recorded_while_its_user_is_erased_is_not_kept(system: System) -> None:
    """An attacker (or plain bad luck) times an event about a user to arrive while the operator
    erases them: the audit record must not keep it, whichever way the two interleave."""
    await start_all(system)
    await system.start("audit")
    await system.provision()
    audit = system.app("audit")
    await eventually(lambda: audit.projection.known(USER), what="the user's first event recorded")
    late = EventEnvelope.model_validate_json(audit.projection.history(USER)[0])
    late = late.model_copy(update={"notification_id": late.notification_id + 1_000_000})
    gate = _PausedAfterTheErasedCheck(audit.projection.datastore)
    paused: Projection = copy.copy(audit.projection)  # the same tables, through the gate
    paused.datastore = gate

    def record_as_redelivery_would() -> None:
        for _ in range(3):  # a failed recording is nak'ed and delivered again
            try:
                paused.record(late, None)
                return
            except Exception:
                gate.go.set()

    recording = asyncio.create_task(asyncio.to_thread(record_as_redelivery_would))
    await asyncio.to_thread(gate.checked.wait, 30)
    erasing = asyncio.create_task(asyncio.to_thread(audit.projection.erase, USER, datetime.now(UTC)))
    if system.settings.store == "postgres":  # the erasure runs, or waits for the recording
        await eventually(lambda: erasing.done() or _waiting_on_a_lock(system),
                         what="the erasure to finish or wait")
    else:  # SQLite's one writer connection is the recording's: the erasure asks for it
        await asyncio.wait({erasing}, timeout=0.5)
    gate.go.set()
    await recording
    await erasing

    assert not audit.projection.known(USER)
    assert paused.record(late, None) is False  # delivered once more: tracked, never kept
    assert not audit.projection.known(USER)
