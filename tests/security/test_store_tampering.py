"""An insider with write access to a store (SQL, and in some tests the cipher key) tampers with
it after real resets; `rekey audit verify` names every bad row (service, notification id, user)
and exits non-zero, and a tampered row is refused when the service reads it.

Each test runs on SQLite and PostgreSQL. The services sign their tree heads first (on demand,
as the interval would), so the heads file holds the evidence the check compares the store with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.credentials.passwords import hash_password
from services.ticketing.domain import AccountFile
from shared.errors import IntegrityFailed
from shared.settings import SERVICES
from tests.integration.conftest import USER, System, eventually
from tests.security.insider import Insider, Row
from tests.security.stores import (
    NEW_PASSWORD,
    OTHER,
    OTHER_PASSWORD,
    account,
    named,
    sign_in_refused_and_row_named,
    verify,
)

pytestmark = pytest.mark.security


def _at(insider: Insider, aggregate: object, version: int) -> Row:
    """The row the insider put at ``version`` of ``aggregate``."""
    return next(r for r in insider.rows()
                if str(r.originator_id) == str(aggregate) and r.originator_version == version)

async def test_untouched_stores_verify_intact_after_real_resets(after_resets: System) -> None:
    code, out = verify(after_resets)
    assert code == 0, out
    assert "TAMPERED" not in out
    assert out.count("intact") == len(SERVICES)


async def test_a_flipped_ciphertext_byte_is_named_not_a_crash(after_resets: System) -> None:
    credentials, ticketing = Insider(after_resets.settings, "credentials"), Insider(
        after_resets.settings, "ticketing")
    changed = credentials.row("PasswordChanged", account(USER))
    credentials.flip_byte(changed)
    opened = ticketing.row("AccountFileOpened", AccountFile.id_for(OTHER))
    ticketing.flip_byte(opened, at=40)

    code, out = verify(after_resets)

    assert code == 1
    assert named("credentials", changed.notification_id, USER) in out
    assert f"ticketing notification id {opened.notification_id} (user" in out  # both, not one
    with pytest.raises(IntegrityFailed):
        await after_resets.call("credentials", "sign_in", username=USER, password=NEW_PASSWORD)


async def test_a_public_field_reencrypted_with_the_key_is_named(after_resets: System) -> None:
    insider = Insider(after_resets.settings, "credentials")
    registered = insider.row("AccountRegistered", account(USER))
    insider.reencrypt(registered, display_name="Someone Else")

    code, out = verify(after_resets)

    assert code == 1
    assert named("credentials", registered.notification_id, USER) in out
    assert "place binding does not match" in out


async def test_a_password_hash_reencrypted_by_an_insider_is_detected(after_resets: System) -> None:
    insider = Insider(after_resets.settings, "credentials")
    changed = insider.row("PasswordChanged", account(USER), last=True)
    insider.reencrypt(changed, password_hash=hash_password("the insider knows this one"))

    await sign_in_refused_and_row_named(after_resets, "the insider knows this one", changed)


async def test_a_password_hash_with_its_binding_stripped_is_refused(after_resets: System) -> None:
    from shared.binding import split_state

    insider = Insider(after_resets.settings, "credentials")
    changed = insider.row("PasswordChanged", account(USER), last=True)
    insider.set_state(changed, split_state(changed.state)[1])
    insider.reencrypt(insider.row("PasswordChanged", account(USER), last=True),
                      password_hash=hash_password("the insider knows this one"))

    await sign_in_refused_and_row_named(after_resets, "the insider knows this one", changed)


async def test_a_private_event_changed_or_deleted_is_detected(after_resets: System) -> None:
    insider = Insider(after_resets.settings, "ticketing")
    noted = insider.row("AccountNoted", AccountFile.id_for(USER))
    filed = insider.row("TicketFiled", AccountFile.id_for(OTHER))
    insider.reencrypt(noted, role="agent")
    insider.delete(filed)

    code, out = verify(after_resets)

    assert code == 1
    assert named("ticketing", noted.notification_id, USER) in out
    assert named("ticketing", filed.notification_id, OTHER) in out
    assert "deleted" in out


async def test_public_events_deleted_are_each_named(after_resets: System) -> None:
    insider = Insider(after_resets.settings, "credentials")
    signed = insider.rows()[: after_resets.signed["credentials"]]  # type: ignore[attr-defined]
    gone = [insider.row("PasswordIssued", account(USER)), *signed[-2:]]  # one, and the last two
    for row in gone:
        insider.delete(row)

    code, out = verify(after_resets)

    assert code == 1
    for row in gone:
        assert f"credentials notification id {row.notification_id} (user" in out
    assert named("credentials", gone[0].notification_id, USER) in out


async def test_a_forged_event_appended_is_detected(after_resets: System) -> None:
    insider = Insider(after_resets.settings, "credentials")
    last = insider.row("PasswordChanged", account(USER), last=True)
    state = last.state
    insider.insert(None, last.originator_id, 99, last.topic, state)  # a copy of a bound row
    forged = _at(insider, last.originator_id, 99)  # not rows()[-1]: a late notice may follow

    code, out = verify(after_resets)

    assert code == 1
    assert named("credentials", forged.notification_id, USER) in out


async def test_a_forged_event_backdated_into_the_middle_is_detected(after_resets: System) -> None:
    insider = Insider(after_resets.settings, "credentials")
    issued = insider.row("PasswordIssued", account(USER))
    insider.make_room_after(issued.notification_id)
    insider.insert(issued.notification_id + 1, issued.originator_id, 98, issued.topic,
                   issued.state)

    code, out = verify(after_resets)

    assert code == 1
    assert named("credentials", issued.notification_id + 1, USER) in out
    assert "inserted between rows a tree head signed" in out or "changed since" in out


async def test_another_accounts_password_changed_copied_onto_a_user_is_refused(
    after_resets: System,
) -> None:
    insider = Insider(after_resets.settings, "credentials")
    theirs = insider.row("PasswordChanged", account(OTHER), last=True)
    mine = insider.row("PasswordChanged", account(USER), last=True)
    version = max(r.originator_version for r in insider.rows()
                  if r.originator_id == mine.originator_id) + 1
    insider.insert(None, mine.originator_id, version, theirs.topic, theirs.state)
    copied = _at(insider, mine.originator_id, version)  # not rows()[-1]: a late notice may follow

    await sign_in_refused_and_row_named(after_resets, OTHER_PASSWORD, copied)


@pytest.mark.parametrize("position", [0, -1])
async def test_a_row_inserted_at_notification_id_zero_is_found(
    after_resets: System, position: int,
) -> None:
    insider = Insider(after_resets.settings, "credentials")
    theirs = insider.row("PasswordChanged", account(OTHER), last=True)
    mine = insider.row("PasswordChanged", account(USER), last=True)
    insider.insert(position, mine.originator_id, 90, theirs.topic, theirs.state)

    out = await sign_in_refused_and_row_named(after_resets, OTHER_PASSWORD,
                                              insider.rows()[0])
    assert named("credentials", position, USER) in out
    assert "outside the log" in out


async def test_another_users_event_edited_is_detected_without_a_checkpoint(
    after_resets: System,
) -> None:
    insider = Insider(after_resets.settings, "verification")
    revoked = [r for r in insider.rows() if r.name == "MethodsRevoked"][-1]
    insider.reencrypt(revoked, reason="nothing happened")

    code, out = verify(after_resets)

    assert code == 1
    assert f"verification notification id {revoked.notification_id} (user {OTHER})" in out \
        or f"verification notification id {revoked.notification_id} (user {USER})" in out
    assert "TAMPERED" in out


def test_the_stack_rekey_up_runs_signs_heads_the_auditor_asks_for_and_verify_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`rekey up`'s stack: heads files 0600 from the start, `rekey audit heads` as the auditor
    makes each service sign one now, and `rekey audit verify` finds the stores intact; then a
    flipped byte in a real store is named."""
    import asyncio
    import io
    import subprocess
    import sys

    from rich.console import Console

    from rekey.demo.guide import run_demo
    from tests.security.conftest import up_stack

    folder = tmp_path / "rekey"

    def rekey(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rekey", *args, "--data-dir", str(folder)],
                              env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                              timeout=120)

    with up_stack(folder, monkeypatch) as stack:
        assert asyncio.run(run_demo(stack.settings, USER, Console(file=io.StringIO()))) == 0
        asked = rekey("audit", "heads")
        assert asked.returncode == 0, asked.stderr
        assert all(service in asked.stdout for service in SERVICES)
        for service in SERVICES:
            heads = folder / "heads" / f"{service}.jsonl"
            assert heads.stat().st_mode & 0o777 == 0o600
            assert len(heads.read_text().splitlines()) >= 2  # at start, and on demand

        intact = rekey("audit", "verify")
        assert intact.returncode == 0, intact.stdout + intact.stderr

        insider = Insider(stack.settings, "credentials")
        registered = insider.row("AccountRegistered", account(USER))
        insider.flip_byte(registered)
        tampered = rekey("audit", "verify")
    assert tampered.returncode == 1
    assert named("credentials", registered.notification_id, USER) in " ".join(
        tampered.stdout.split())


async def test_a_deleted_row_hidden_by_removing_the_local_heads_is_named_by_the_witness(
    after_resets: System, tmp_path: Path,
) -> None:
    import shutil

    heads = after_resets.settings.data_dir / "heads"
    witness = shutil.copytree(heads, tmp_path / "shipped-heads")  # the operator's copy elsewhere
    insider = Insider(after_resets.settings, "credentials")
    issued = insider.row("PasswordIssued", account(USER))
    insider.delete(issued)
    shutil.rmtree(heads)  # the insider also wipes the evidence beside the store

    local_code, local = verify(after_resets)
    code, out = verify(after_resets, "--heads", str(witness))

    assert local_code == 1
    assert "credentials heads (user unknown): no signed tree head" in local  # only what it lacks
    assert code == 1
    assert named("credentials", issued.notification_id, USER) in out
    assert "deleted" in out


async def test_a_deleted_row_hidden_by_removing_the_local_heads_is_named_by_the_audit_copy(
    after_resets: System,
) -> None:
    """The second witness the system keeps itself: the audit service's copy of every head,
    in its own store, which an insider with the credentials store and its heads file lacks."""
    import shutil

    await after_resets.start("audit")
    witness = after_resets.app("audit").witness
    await eventually(lambda: all(witness.copy.accepted(s) and witness.copy.accepted(s)[-1]
                                 .head.tree_size == after_resets.signed[s] for s in SERVICES),
                     what="the audit service to hold every service's last head")
    await after_resets.stop("audit")
    insider = Insider(after_resets.settings, "credentials")
    issued = insider.row("PasswordIssued", account(USER))
    insider.delete(issued)
    shutil.rmtree(after_resets.settings.data_dir / "heads")

    code, out = verify(after_resets, "--audit-copy")

    assert code == 1
    assert named("credentials", issued.notification_id, USER) in out
    assert "deleted" in out


async def test_a_tree_head_forged_into_the_heads_file_is_named(after_resets: System) -> None:
    import json

    heads = after_resets.settings.data_dir / "heads" / "credentials.jsonl"
    last = json.loads(heads.read_text().splitlines()[-1])
    last["head"]["root_hash"] = "00" * 32  # a head over a rewritten store, without the seed
    with heads.open("a") as out:
        out.write(json.dumps(last) + "\n")

    code, out = verify(after_resets)

    assert code == 1
    assert "credentials heads" in out
    assert "is not signed by credentials's key" in out


async def test_an_auditor_with_only_the_public_keys_still_names_a_changed_row(
    after_resets: System, tmp_path: Path,
) -> None:
    """No evidence seed at hand (the auditor's machine): bindings cannot be checked, the signed
    heads still name the row."""
    import shutil

    keys = tmp_path / "auditor-keys"
    keys.mkdir()
    for public in Path(after_resets.settings.nats_keys_dir).glob("*.heads.pub"):
        shutil.copy(public, keys)
    insider = Insider(after_resets.settings, "credentials")
    changed = insider.row("PasswordChanged", account(USER), last=True)
    insider.reencrypt(changed, password_hash=hash_password("the insider knows this one"))

    code, out = verify(after_resets, "--keys", str(keys))

    assert code == 1
    assert "place bindings not checked" in out
    assert named("credentials", changed.notification_id, USER) in out
    assert "changed since a tree head signed it" in out


def test_a_store_that_cannot_be_read_is_not_reported_as_tampered(tmp_path: Path) -> None:
    """Exit 1 is the verdict "tampered"; a check that could not finish (here a file that is
    not a database; under load, a database refusing a connection) exits 2 and says why, so it
    is never taken for that verdict (a test once saw exit 1 with no row named)."""
    from typer.testing import CliRunner

    from rekey.cli.app import app as rekey_cli

    for service in SERVICES:
        (tmp_path / f"{service}.sqlite").write_bytes(b"not a database " * 16)

    result = CliRunner().invoke(rekey_cli, ["audit", "verify", "--data-dir", str(tmp_path)],
                                env={"REKEY_STORE": "sqlite"})

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = " ".join(result.output.split())
    assert "The check did not finish" in out and "TAMPERED" not in out
